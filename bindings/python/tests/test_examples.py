"""The Python KV example (examples/python): built with build.sh, run as processes through the
examples/bin wrappers, server against client over every codec × HTTP version, TCP and Unix."""

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from connectplugin import Client, Code, RPCError
from conftest import REPO

EXAMPLES = REPO / "examples"
BIN = EXAMPLES / "bin"
KV = "/connectplugin.examples.kv.v1.KVService"

EXPECTED = [
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "get <empty> error=invalid_argument message=key must not be empty",
]


def _env():
    env = dict(os.environ)
    env.setdefault("SWIFT_BACKTRACE", "enable=no")
    return env


@pytest.fixture(scope="module")
def built():
    subprocess.run(["bash", str(EXAMPLES / "python" / "build.sh")], check=True, capture_output=True, timeout=120)
    for name in ("kv-server-python", "kv-client-python"):
        assert os.access(BIN / name, os.X_OK)


class KVServer:
    def __init__(self, listen):
        # Started from another cwd, to check that the wrappers find everything on their own.
        self.proc = subprocess.Popen(
            [str(BIN / "kv-server-python"), "--listen", listen],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=_env(),
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"server did not start: {line!r} {err!r}")
        self.address = line[len("listening on "):].strip()

    def url(self):
        if self.address.startswith("unix:"):
            return "unix://" + self.address[len("unix:"):]
        return "http://" + self.address

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            _, self.stderr = self.proc.communicate(timeout=15)  # also closes the pipes
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return self.proc.returncode


@pytest.fixture
def tcp_server(built):
    s = KVServer("127.0.0.1:0")
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0


def run_client(url, *args):
    return subprocess.run(
        [str(BIN / "kv-client-python"), "--url", url, *args],
        capture_output=True, text=True, timeout=60, cwd="/", env=_env(),
    )


@pytest.mark.parametrize("http", ["1.1", "2"])
@pytest.mark.parametrize("codec", ["proto", "json"])
def test_client_against_server_tcp(tcp_server, codec, http):
    assert tcp_server.address.startswith("127.0.0.1:") and not tcp_server.address.endswith(":0")
    r = run_client(tcp_server.url(), "--codec", codec, "--http", http)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED
    assert r.stderr == ""


def test_client_defaults(tcp_server):
    r = run_client(tcp_server.url())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_client_against_server_unix(built, codec):
    d = tempfile.mkdtemp(prefix="kv-py-")
    path = os.path.join(d, "kv.sock")
    s = KVServer("unix:" + path)
    try:
        assert s.address == "unix:" + path
        for http in ("2", "1.1"):
            r = run_client("unix://" + path, "--codec", codec, "--http", http)
            assert r.returncode == 0, r.stderr
            assert r.stdout.splitlines() == EXPECTED
    finally:
        assert s.stop(signal.SIGINT) == 0
    assert not os.path.exists(path)
    os.rmdir(d)


def test_server_json_shapes_and_errors(tcp_server):
    with Client(tcp_server.url(), codec="json") as c:
        assert json.loads(c.call_unary(KV + "/Put", b'{"key":"k","value":"aGVsbG8="}').message) == {}
        assert json.loads(c.call_unary(KV + "/Get", b'{"key":"k"}').message) == {"value": "aGVsbG8=", "found": True}
        assert c.call_unary(KV + "/Delete", b'{"key":"k"}').message == b'{"existed":true}'
        assert c.call_unary(KV + "/Get", b'{"key":"k"}').message == b"{}"
        # Missing fields read as defaults: an empty key.
        with pytest.raises(RPCError) as info:
            c.call_unary(KV + "/Get", b"{}")
        assert (info.value.code, info.value.message) == (Code.INVALID_ARGUMENT, "key must not be empty")
        with pytest.raises(RPCError) as info:
            c.call_unary(KV + "/Get", b"{not json")
        assert info.value.code is Code.INVALID_ARGUMENT
        assert "decode" in info.value.message
    with Client(tcp_server.url()) as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(KV + "/Put", b"\xff\xff\xff")
        assert info.value.code is Code.INVALID_ARGUMENT
        assert "decode" in info.value.message


def test_client_reports_unreachable_server(built):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run_client(f"http://127.0.0.1:{port}")
    assert r.returncode == 1
    assert r.stderr.startswith("error: unavailable: ")


def test_server_exits_0_on_sigterm_and_sigint(built):
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = KVServer("127.0.0.1:0")
        assert s.stop(sig) == 0
        assert s.stderr == ""


# ---------------------------------------------------------------------------------------------------
# The streaming scenario (examples/proto/README.md): --scenario stream, protocols, TLS flags
# ---------------------------------------------------------------------------------------------------

import sys  # noqa: E402

sys.path.insert(0, str(REPO / "Tests" / "interop"))
import kvscenario  # noqa: E402  (the exact expected lines, shared with the interop suite)

from _certs import make_certs  # noqa: E402

PROTOCOL_HTTP = [("connect", "1.1"), ("connect", "2"), ("grpc", "2"), ("grpcweb", "1.1"), ("grpcweb", "2")]


class TLSKVServer(KVServer):
    def __init__(self, listen, *flags):
        self.proc = subprocess.Popen(
            [str(BIN / "kv-server-python"), "--listen", listen, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=_env(),
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"server did not start: {line!r} {err!r}")
        self.address = line[len("listening on "):].strip()


@pytest.fixture(scope="module")
def stream_server(built):
    s = KVServer("127.0.0.1:0")
    yield s
    assert s.stop() == 0
    assert s.stderr == ""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("kv-certs"))


def check_stream(r, http):
    assert r.stdout.splitlines() == kvscenario.expected_lines(http), r.stderr
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


@pytest.mark.parametrize("compression", ["identity", "gzip"])
@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=[f"{p}-h{h}" for p, h in PROTOCOL_HTTP])
def test_stream_scenario(stream_server, protocol, http, codec, compression):
    r = run_client(stream_server.url(), "--scenario", "stream", "--protocol", protocol, "--http", http,
                   "--codec", codec, "--compression", compression)
    check_stream(r, http)


def test_stream_scenario_runs_twice_and_unary_still_works(stream_server):
    for _ in range(2):
        check_stream(run_client(stream_server.url(), "--scenario", "stream"), "2")
    r = run_client(stream_server.url(), "--scenario", "unary")
    assert (r.returncode, r.stdout.splitlines()) == (0, EXPECTED)


@pytest.mark.parametrize("mode", ["tls", "mtls"])
@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=[f"{p}-h{h}" for p, h in PROTOCOL_HTTP])
def test_stream_scenario_tls(built, certs, mode, protocol, http):
    server_flags = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    client_flags = ["--tls-ca", str(certs.ca)]
    if mode == "mtls":
        server_flags += ["--tls-client-ca", str(certs.ca)]
        client_flags += ["--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    s = TLSKVServer("127.0.0.1:0", *server_flags)
    try:
        r = run_client("https://" + s.address, "--scenario", "stream", "--protocol", protocol, "--http", http,
                       *client_flags)
        check_stream(r, http)
        if mode == "mtls":
            # Without a client certificate nothing is served.
            r = run_client("https://" + s.address, "--scenario", "stream", "--ca", str(certs.ca))
            assert r.returncode == 1
            assert r.stdout == ""
            assert r.stderr.startswith("error: put greeting: unavailable: ")
        else:
            # --tls-ca turns an http:// URL into TLS; the unary scenario works over TLS too.
            r = run_client("http://" + s.address, "--ca", str(certs.ca))
            assert (r.returncode, r.stdout.splitlines()) == (0, EXPECTED), r.stderr
    finally:
        assert s.stop() == 0


def test_tls_client_rejects_unknown_server(built, certs):
    s = TLSKVServer("127.0.0.1:0", "--tls-cert", str(certs.other_server_cert), "--tls-key",
                    str(certs.other_server_key))
    try:
        r = run_client("https://" + s.address, "--scenario", "stream", "--tls-ca", str(certs.ca))
        assert r.returncode == 1
        assert r.stderr.startswith("error: put greeting: unavailable: ") and "verify" in r.stderr
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("args", [
    ["--scenario", "stream", "--protocol", "grpc", "--http", "1.1"],
    ["--scenario", "stream", "--protocol", "soap"],
    ["--scenario", "sideways"],
    ["--compression", "br"],
    ["--cert", "c.pem"],
    ["--tls-ca", "/nonexistent/ca.pem"],
])
def test_client_usage_errors_exit_2(built, args):
    r = run_client("http://127.0.0.1:1", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""


@pytest.mark.parametrize("args", [
    ["--tls-cert", "c.pem"],
    ["--tls-client-ca", "ca.pem"],
])
def test_server_usage_errors_exit_2(built, args):
    r = subprocess.run([str(BIN / "kv-server-python"), "--listen", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=60, cwd="/", env=_env())
    assert r.returncode == 2, r.stderr
