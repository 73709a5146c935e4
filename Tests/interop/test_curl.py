"""curl against each of our servers, over HTTP/1.1 and h2c (--http2-prior-knowledge): Connect
unary by hand (protocol digest §1-3, §8-9).

IDs read `server-S-hN[-TRANSPORT]`, e.g. `-k "server-go and h2"`.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

import pytest

from conftest import HTTP_ID, HTTPS, LANGS, PROCEDURE
from kv.v1 import kv_pb2

EMPTY_KEY = "key must not be empty"
HELLO_B64 = "aGVsbG8="

CASES = [pytest.param(s, h, id=f"server-{s}-{HTTP_ID[h]}") for s in LANGS for h in HTTPS]


@dataclass
class Resp:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    cmd: str
    stderr: str

    def header(self, name: str) -> str | None:
        v = self.headers.get(name.lower())
        return v[-1] if v else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            pytest.fail(f"response body is not JSON: {self.body[:500]!r}\n{self}", pytrace=False)

    def __str__(self) -> str:
        hdrs = "\n".join(f"  {k}: {v}" for k, vs in self.headers.items() for v in vs)
        return (f"command: {self.cmd}\nstatus: {self.status}\nheaders:\n{hdrs}\nbody: {self.body[:800]!r}"
                f"{chr(10) + 'curl stderr: ' + self.stderr if self.stderr else ''}")


def curl(srv, procedure: str, body: bytes | None, headers: dict[str, str] | None = None, http: str = "1.1",
         method: str = "POST", content_type: str | None = "application/json") -> Resp:
    tmp = tempfile.mkdtemp(prefix="interop-curl-")
    hdr_file, body_file, req_file = (os.path.join(tmp, n) for n in ("headers", "body", "request"))
    argv = ["curl", "-sS", "--max-time", "20", "-o", body_file, "-D", hdr_file, "-w", "%{http_code}",
            "--http1.1" if http == "1.1" else "--http2-prior-knowledge", "-X", method,
            # curl would otherwise add its own Expect/Accept headers
            "-H", "Expect:", "-H", "Accept:"]
    if content_type is not None:
        argv += ["-H", f"content-type: {content_type}"]
    else:
        argv += ["-H", "content-type:"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if body is not None:
        with open(req_file, "wb") as f:
            f.write(body)
        argv += ["--data-binary", f"@{req_file}"]
    if srv.path:
        argv += ["--unix-socket", srv.path, f"http://localhost{procedure}"]
    else:
        argv += [f"{srv.url}{procedure}"]
    r = subprocess.run(argv, capture_output=True, timeout=30)
    cmd = shlex.join(argv)
    if r.returncode != 0:
        pytest.fail(f"curl failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}\ncommand: {cmd}\n"
                    f"{srv.describe()}", pytrace=False)
    raw = open(hdr_file, "rb").read().decode("latin-1")
    # keep the last header block (skip any 1xx)
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers_out: dict[str, list[str]] = {}
    for line in blocks[-1].split("\n")[1:] if blocks else []:
        if ":" in line:
            k, v = line.split(":", 1)
            headers_out.setdefault(k.strip().lower(), []).append(v.strip())
    return Resp(int(r.stdout.decode() or 0), headers_out, open(body_file, "rb").read(), cmd,
                r.stderr.decode(errors="replace"))


def jbody(obj) -> bytes:
    return json.dumps(obj).encode()


def assert_json_content_type(resp: Resp):
    ct = (resp.header("content-type") or "").lower()
    assert ct.split(";")[0].strip() == "application/json", f"content-type {ct!r}, expected application/json\n{resp}"


def assert_ok_json(resp: Resp, expected: dict, srv):
    assert resp.status == 200, f"expected 200\n{resp}\n{srv.describe()}"
    assert_json_content_type(resp)
    assert resp.json() == expected, f"expected JSON {expected}\n{resp}"


def assert_connect_error(resp: Resp, status: int, code: str, message: str | None = None, srv=None):
    where = f"\n{srv.describe()}" if srv is not None else ""
    assert resp.status == status, f"expected HTTP {status} with code {code}\n{resp}{where}"
    assert_json_content_type(resp)
    body = resp.json()
    assert isinstance(body, dict) and body.get("code") == code, f"expected code {code!r}\n{resp}"
    if message is not None:
        assert body.get("message") == message, f"expected message {message!r}\n{resp}"
    extra = set(body) - {"code", "message", "details"}
    assert not extra, f"unexpected keys {extra} in the Connect error JSON (CU-12)\n{resp}"


@pytest.fixture
def key():
    return f"curl-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("server,http", CASES)
def test_put_get_delete_json(servers, server, http, transport, key):
    srv = servers.get(server, transport)
    assert_ok_json(curl(srv, PROCEDURE + "Put", jbody({"key": key, "value": HELLO_B64}), http=http), {}, srv)
    assert_ok_json(curl(srv, PROCEDURE + "Get", jbody({"key": key}), http=http),
                   {"value": HELLO_B64, "found": True}, srv)
    assert_ok_json(curl(srv, PROCEDURE + "Delete", jbody({"key": key}), http=http), {"existed": True}, srv)
    # defaults are omitted: found=false -> {}, existed=false -> {}
    assert_ok_json(curl(srv, PROCEDURE + "Get", jbody({"key": key}), http=http), {}, srv)
    assert_ok_json(curl(srv, PROCEDURE + "Delete", jbody({"key": key}), http=http), {}, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_json_charset_and_connect_headers(servers, server, http, key):
    """`application/json; charset=utf-8` is the JSON codec (§1.4); Connect-Protocol-Version: 1 and a
    valid Connect-Timeout-Ms are accepted."""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Put", jbody({"key": key, "value": HELLO_B64}), http=http,
             content_type="application/json; charset=utf-8",
             headers={"connect-protocol-version": "1", "connect-timeout-ms": "5000"})
    assert_ok_json(r, {}, srv)
    r = curl(srv, PROCEDURE + "Get", jbody({"key": key}), http=http, content_type="application/json; charset=utf-8")
    assert_ok_json(r, {"value": HELLO_B64, "found": True}, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_proto_codec(servers, server, http, key):
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Put", kv_pb2.PutRequest(key=key, value=b"hello").SerializeToString(), http=http,
             content_type="application/proto")
    assert r.status == 200 and r.header("content-type") == "application/proto", f"{r}\n{srv.describe()}"
    assert r.body == b"", f"PutResponse is empty\n{r}"
    r = curl(srv, PROCEDURE + "Get", kv_pb2.GetRequest(key=key).SerializeToString(), http=http,
             content_type="application/proto")
    assert r.status == 200 and r.header("content-type") == "application/proto", f"{r}\n{srv.describe()}"
    assert kv_pb2.GetResponse.FromString(r.body) == kv_pb2.GetResponse(value=b"hello", found=True), str(r)
    # errors are JSON even for the proto codec (§3.3); an empty body is the empty message (CU-5)
    r = curl(srv, PROCEDURE + "Get", b"", http=http, content_type="application/proto")
    assert_connect_error(r, 400, "invalid_argument", EMPTY_KEY, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_empty_key_error(servers, server, http):
    srv = servers.get(server)
    for proc in ("Put", "Get", "Delete"):
        r = curl(srv, PROCEDURE + proc, jbody({"key": ""}), http=http)
        assert_connect_error(r, 400, "invalid_argument", EMPTY_KEY, srv)
    r = curl(srv, PROCEDURE + "Get", b"{}", http=http)  # missing fields read as defaults
    assert_connect_error(r, 400, "invalid_argument", EMPTY_KEY, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_undecodable_body(servers, server, http):
    """README: a request that does not decode fails with invalid_argument."""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Get", b'{"key": ', http=http)
    assert_connect_error(r, 400, "invalid_argument", None, srv)
    r = curl(srv, PROCEDURE + "Get", b"\x0a\x10abc", http=http, content_type="application/proto")  # truncated field
    assert_connect_error(r, 400, "invalid_argument", None, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_unknown_procedure_404(servers, server, http):
    srv = servers.get(server)
    for path in (PROCEDURE + "NoSuchMethod", "/connectplugin.examples.kv.v1.NoSuchService/Get", PROCEDURE + "get", "/"):
        r = curl(srv, path, jbody({"key": "k"}), http=http)
        assert r.status == 404, f"{path}: expected 404 (GEN-2)\n{r}\n{srv.describe()}"


@pytest.mark.parametrize("server,http", CASES)
def test_unsupported_content_type_415(servers, server, http):
    srv = servers.get(server)
    for ct in ("text/plain", "image/jpeg", "application/connect+proto", "application/xml"):
        r = curl(srv, PROCEDURE + "Get", jbody({"key": "k"}), http=http, content_type=ct)
        assert r.status == 415, f"content-type {ct}: expected 415 (CU-3)\n{r}\n{srv.describe()}"


@pytest.mark.parametrize("server,http", CASES)
def test_415_has_accept_post(servers, server, http):
    """CU-3: a 415 carries Accept-Post listing the supported content types."""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Get", b"k", http=http, content_type="text/plain")
    assert r.status == 415, str(r)
    ap = (r.header("accept-post") or "").lower()
    assert "application/json" in ap and "application/proto" in ap, f"Accept-Post missing or incomplete\n{r}"


@pytest.mark.parametrize("server,http", CASES)
def test_get_method_405(servers, server, http):
    """§3.4: GET on a method that is not NO_SIDE_EFFECTS -> 405 with Allow: POST. (Put: kv.proto marks
    Get and List NO_SIDE_EFFECTS, so a server may serve Connect GET for Get.)"""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Put?connect=v1&encoding=json&message=%7B%22key%22%3A%22k%22%7D", None, http=http,
             method="GET", content_type=None)
    assert r.status == 405, f"expected 405\n{r}\n{srv.describe()}"


@pytest.mark.parametrize("server,http", CASES)
def test_bad_timeout_header(servers, server, http):
    srv = servers.get(server)
    for value in ("abc", "-1", "12345678901", "1.5"):
        r = curl(srv, PROCEDURE + "Get", jbody({"key": "k"}), http=http, headers={"connect-timeout-ms": value})
        assert_connect_error(r, 400, "invalid_argument", None, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_bad_protocol_version(servers, server, http):
    """CU-2: Connect-Protocol-Version present but not 1 -> invalid_argument."""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Get", jbody({"key": "k"}), http=http, headers={"connect-protocol-version": "2"})
    assert_connect_error(r, 400, "invalid_argument", None, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_unsupported_content_encoding(servers, server, http):
    """CU-4: an unsupported Content-Encoding -> unimplemented (HTTP 501)."""
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Get", jbody({"key": "k"}), http=http, headers={"content-encoding": "x-nope"})
    assert_connect_error(r, 501, "unimplemented", None, srv)


@pytest.mark.parametrize("server,http", CASES)
def test_gzip_request_body(servers, server, http, key):
    srv = servers.get(server)
    r = curl(srv, PROCEDURE + "Put", gzip.compress(jbody({"key": key, "value": HELLO_B64})), http=http,
             headers={"content-encoding": "gzip"})
    assert r.status == 200, f"gzip request body rejected\n{r}\n{srv.describe()}"
    body = gzip.decompress(r.body) if r.header("content-encoding") == "gzip" else r.body
    assert json.loads(body) == {}, str(r)
    r = curl(srv, PROCEDURE + "Get", gzip.compress(jbody({"key": key})), http=http,
             headers={"content-encoding": "gzip"})
    assert r.status == 200, str(r)
    body = gzip.decompress(r.body) if r.header("content-encoding") == "gzip" else r.body
    assert json.loads(body) == {"value": HELLO_B64, "found": True}, str(r)


def decoded(r: Resp) -> bytes:
    enc = r.header("content-encoding")
    if enc in (None, "identity"):
        return r.body
    assert enc == "gzip", f"response content-encoding {enc!r}, the client only accepts gzip\n{r}"
    try:
        return gzip.decompress(r.body)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"response body does not gunzip: {e}\n{r}", pytrace=False)


@pytest.mark.parametrize("server,http", CASES)
def test_accept_encoding_gzip_response_decodes(servers, server, http, key):
    srv = servers.get(server)
    curl(srv, PROCEDURE + "Put", jbody({"key": key, "value": HELLO_B64}), http=http)
    r = curl(srv, PROCEDURE + "Get", jbody({"key": key}), http=http, headers={"accept-encoding": "gzip"})
    assert r.status == 200, f"{r}\n{srv.describe()}"
    assert_json_content_type(r)
    assert json.loads(decoded(r)) == {"value": HELLO_B64, "found": True}, str(r)


@pytest.mark.parametrize("server,http", CASES)
def test_accept_encoding_gzip_large_response_is_compressed(servers, server, http, key):
    """CU-8: with `accept-encoding: gzip` a large (64 KiB, compressible) response is sent gzip."""
    srv = servers.get(server)
    import base64

    value = base64.b64encode(b"hello " * 11000).decode()
    assert curl(srv, PROCEDURE + "Put", jbody({"key": key, "value": value}), http=http).status == 200
    r = curl(srv, PROCEDURE + "Get", jbody({"key": key}), http=http, headers={"accept-encoding": "gzip"})
    assert r.status == 200, str(r)
    assert json.loads(decoded(r)) == {"value": value, "found": True}
    assert r.header("content-encoding") == "gzip", (
        f"expected a gzip response body for accept-encoding: gzip (got {len(r.body)} bytes, "
        f"content-encoding {r.header('content-encoding')!r})")
