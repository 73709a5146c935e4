"""go-plugin's AutoMTLS (plugin-wire.md §1.5) against real peers, both directions:

* the unmodified go-plugin 1.0.1 host with ClientConfig.AutoMTLS (GOPLUGIN_HOST_AUTOMTLS=1) loads the
  connectplugin KV plugins in every language and calls them over the TLS it negotiated;
* connectplugin hosts with AutoMTLS on (the Python binding's PluginClient(auto_mtls=True) and every
  kv-host-LANG --automtls) load the go-plugin 1.0.1 KV plugin and the connectplugin plugins;
* the connection really is TLS: a plugin given PLUGIN_CLIENT_CERT prints a certificate that OpenSSL
  parses (go-plugin's fields), refuses plaintext h2c and TLS without the host's client certificate,
  and serves grpcio presenting it.
"""
from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import KV_HOST_LINES, binary
from test_goplugin import EXPECTED_HOST_LINES, PLUGIN_LANGS, alive, goplugin_host, start_plugin  # noqa: F401
from test_plugin_hosts import HOST_LANGS, connectplugin, goplugin_kv_plugin, kv_round_trip  # noqa: F401


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_goplugin_host_with_automtls_loads_the_plugin(lang, goplugin_host):
    env = dict(os.environ, GOPLUGIN_HOST_AUTOMTLS="1")
    r = subprocess.run([str(goplugin_host), str(binary(f"kv-plugin-{lang}"))], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, f"go-plugin host failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert lines[:len(EXPECTED_HOST_LINES)] == EXPECTED_HOST_LINES, r.stdout
    assert lines[-1].startswith("ok kill"), r.stdout
    assert "configuring client automatic mTLS" in r.stderr, r.stderr


@pytest.mark.parametrize("lang", PLUGIN_LANGS + ("goplugin",))
def test_python_host_with_automtls(lang, goplugin_kv_plugin):
    path = goplugin_kv_plugin if lang == "goplugin" else binary(f"kv-plugin-{lang}")
    with connectplugin.PluginClient([str(path)], cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                    start_timeout_ms=30_000, auto_mtls=True) as plugin:
        kv_round_trip(plugin)
        pid = plugin.pid
    assert not alive(pid)


@pytest.mark.parametrize("host", HOST_LANGS)
@pytest.mark.parametrize("lang", PLUGIN_LANGS + ("goplugin",))
def test_kv_host_example_with_automtls(host, lang, goplugin_kv_plugin):
    plugin = goplugin_kv_plugin if lang == "goplugin" else binary(f"kv-plugin-{lang}")
    r = subprocess.run([str(binary(f"kv-host-{host}")), "--automtls", "--plugin", str(plugin)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[1:] == KV_HOST_LINES + ["stopped: exited 0"], r.stdout


def make_cert(tmp: Path, name: str) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and key, as a host's AutoMTLS certificate (openssl)."""
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/O=HashiCorp/CN=localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "subjectAltName=DNS:localhost",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                    "-addext", "extendedKeyUsage=clientAuth,serverAuth"], check=True, capture_output=True)
    return crt.read_bytes(), key.read_bytes()


def s_client(sock: str, *args: str) -> subprocess.CompletedProcess:
    """OpenSSL's s_client over the plugin's Unix socket; it sends nothing and closes after a second
    (long enough for a TLS 1.3 server's verdict on the client certificate to arrive)."""
    return subprocess.run(f"(sleep 1; echo) | openssl s_client -unix {sock} -alpn h2 -servername localhost "
                          + " ".join(args), shell=True, capture_output=True, text=True, errors="replace", timeout=30)


@pytest.mark.parametrize("lang", PLUGIN_LANGS)
def test_plugin_with_client_cert_serves_only_tls_to_that_cert(lang, tmp_path):
    """grpcio (BoringSSL) cannot be the TLS peer here: it offers no P-521 signature scheme, so the
    handshake with go-plugin's P-521 certificate fails (with go-plugin's own plugin too). OpenSSL's
    s_client checks the TLS; grpcio checks that plaintext h2c is refused."""
    host_crt, host_key = make_cert(tmp_path, "host")
    other_crt, other_key = make_cert(tmp_path, "other")
    (tmp_path / "plugin-host.crt").write_bytes(host_crt)
    p, fields = start_plugin(lang, tmp_path, PLUGIN_CLIENT_CERT=host_crt.decode())
    try:
        assert len(fields) == 6 and fields[:3] == ["1", "1", "unix"] and fields[4] == "grpc", fields
        cert = fields[5]
        assert cert and "=" not in cert, fields  # base64 raw std (no padding)
        der = base64.b64decode(cert + "=" * (-len(cert) % 4))
        text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der,
                              capture_output=True, check=True).stdout.decode()
        for want in ("Subject: O = HashiCorp, CN = localhost", "Issuer: O = HashiCorp, CN = localhost",
                     "NIST CURVE: P-521", "CA:TRUE", "DNS:localhost", "ecdsa-with-SHA512",
                     "TLS Web Client Authentication, TLS Web Server Authentication",
                     "Digital Signature, Key Encipherment, Key Agreement, Certificate Sign"):
            assert want in text, text
        pem = tmp_path / "plugin.pem"
        subprocess.run(["openssl", "x509", "-inform", "DER", "-out", str(pem)], input=der, check=True)
        sock = fields[3]
        ca = f"-CAfile {pem} -verify_return_error -verify_hostname localhost"
        good = s_client(sock, ca, f"-cert {tmp_path}/host.crt -key {tmp_path}/host.key")
        assert good.returncode == 0 and "Verify return code: 0 (ok)" in good.stdout, good.stdout + good.stderr
        assert "ALPN protocol: h2" in good.stdout, good.stdout
        # No client certificate, another one, or TLS 1.1: refused by the plugin.
        none = s_client(sock, ca)
        assert none.returncode != 0 and "alert certificate required" in none.stderr, none.stdout + none.stderr
        other = s_client(sock, ca, f"-cert {tmp_path}/other.crt -key {tmp_path}/other.key")
        assert other.returncode != 0 and "alert" in other.stderr, other.stdout + other.stderr
        old = s_client(sock, ca, "-tls1_1", f"-cert {tmp_path}/host.crt -key {tmp_path}/host.key")
        assert old.returncode != 0 and "alert protocol version" in old.stderr, old.stdout + old.stderr
        # Plaintext h2c (grpcio): refused.
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            with pytest.raises(grpc.RpcError) as e:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
            assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e.value
        assert p.poll() is None, "the plugin died after refusing connections"
    finally:
        p.kill()
        p.wait()


MANUAL_TLS_PLUGIN = """
import sys
sys.path.insert(0, {src!r})
import connectplugin
tls = connectplugin.TLSOptions(cert_file={crt!r}, key_file={key!r}, ca_file={ca!r}, require_client_cert=True)
sys.exit(connectplugin.Server().serve_plugin("KV_PLUGIN", "connectplugin-kv", {{1: ["kv"]}}, tls=tls))
"""


def test_manual_tls_plugin_and_host(tmp_path):
    """Manual TLS (go-plugin's TLSProvider and ClientConfig.TLSConfig) through the Python binding: the
    plugin serves its own mTLS and prints no certificate; a host with a matching TLS config pings it;
    a host without one, or with AutoMTLS only, cannot."""
    from test_plugin_hosts import REPO

    srv_crt, srv_key = make_cert(tmp_path, "server")
    cli_crt, cli_key = make_cert(tmp_path, "client")
    script = tmp_path / "manual_tls_plugin.py"
    script.write_text(MANUAL_TLS_PLUGIN.format(src=str(REPO / "bindings" / "python" / "src"),
                                               crt=str(tmp_path / "server.crt"), key=str(tmp_path / "server.key"),
                                               ca=str(tmp_path / "client.crt")))
    cmd = [sys.executable, str(script)]
    p, fields = start_plugin_cmd(cmd, tmp_path)
    try:
        assert fields[5] == "", fields  # manual TLS: no certificate in the handshake line
        none = s_client(fields[3], f"-CAfile {tmp_path}/server.crt -verify_return_error")
        assert none.returncode != 0 and "alert certificate required" in none.stderr, none.stderr
    finally:
        p.kill()
        p.wait()
    tls = connectplugin.TLSOptions(ca_file=str(tmp_path / "server.crt"), cert_file=str(tmp_path / "client.crt"),
                                   key_file=str(tmp_path / "client.key"), server_name="localhost")
    with connectplugin.PluginClient(cmd, cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                    start_timeout_ms=30_000, tls=tls) as plugin:
        plugin.ping()
    with connectplugin.PluginClient(cmd, cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                    start_timeout_ms=30_000) as plugin:
        with pytest.raises(connectplugin.RPCError):
            plugin.ping()
    with pytest.raises(connectplugin.ConnectPluginError) as e:
        connectplugin.PluginClient(cmd, cookie=("KV_PLUGIN", "connectplugin-kv"), plugins={1: ["kv"]},
                                   start_timeout_ms=30_000, auto_mtls=True)
    assert "turn autoMTLS off" in str(e.value), e.value


def start_plugin_cmd(cmd: list, tmp: Path):
    from test_goplugin import plugin_env

    p = subprocess.Popen(cmd, env=plugin_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line:
        p.kill()
        pytest.fail(f"no handshake line from {cmd}; stderr: {p.stderr.read()}", pytrace=False)
    return p, line.rstrip("\n").split("|")
