"""TLS and mutual TLS through our server and our client, with certificates made by the openssl CLI
(tests/_certs.py; a missing openssl fails the tests)."""

import json

import pytest

from _certs import CLIENT_CN, make_certs
from connectplugin import Client, Code, ConnectPluginError, MethodKind, Peer, RPCError, Server, Status, TLSOptions

SVC = "/connectplugin.test.v1.TLSService"
ECHO = SVC + "/Echo"  # unary: echoes and reports protocol and peer in headers
PEER = SVC + "/Peer"  # unary: the peer as JSON
STREAM_PEER = SVC + "/StreamPeer"  # bidi: echoes, then the peer as JSON

PROTOCOL_HTTP = [("connect", "1.1"), ("connect", "2"), ("grpc", "2"), ("grpcweb", "1.1"), ("grpcweb", "2")]
PH_IDS = [f"{p}-h{h}" for p, h in PROTOCOL_HTTP]


def _peer_json(peer):
    if peer is None:
        return None
    return {"subject": peer.subject, "dns": list(peer.dns), "uri": list(peer.uri), "ip": list(peer.ip)}


def echo(request, ctx):
    ctx.add_response_header("x-protocol", ctx.protocol)
    return request


def peer(request, ctx):
    assert ctx.peer is None or isinstance(ctx.peer, Peer)
    return json.dumps({"protocol": ctx.protocol, "peer": _peer_json(ctx.peer)}).encode()


def stream_peer(stream):
    for msg in stream:
        stream.send(b"echo:" + msg)
    stream.send(json.dumps({"protocol": stream.protocol, "peer": _peer_json(stream.peer)}).encode())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


class TLSServers:
    """One server, several listeners: TLS, mTLS (client certificate required), TLS from PEM bytes,
    TLS with a certificate of another CA, and plaintext."""

    def __init__(self, c):
        self.server = Server()
        self.server.register_unary(ECHO, echo)
        self.server.register_unary(PEER, peer)
        self.server.register_stream(STREAM_PEER, MethodKind.BIDI_STREAM, stream_peer)
        self.tls = self.server.listen_tls("127.0.0.1:0", cert_file=c.server_cert, key_file=c.server_key)
        self.mtls = self.server.listen_tls("127.0.0.1:0", cert_file=c.server_cert, key_file=c.server_key,
                                           client_ca_file=c.ca)
        self.pem = self.server.listen_tls("127.0.0.1:0", TLSOptions(cert_pem=c.server_cert.read_bytes(),
                                                                    key_pem=c.server_key.read_bytes()))
        self.other = self.server.listen_tls("127.0.0.1:0", cert_file=c.other_server_cert,
                                            key_file=c.other_server_key)
        self.plain = self.server.listen_tcp("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def servers(certs):
    s = TLSServers(certs)
    yield s
    s.close()


def mtls_client(certs, address, protocol="connect", http="2", **kw):
    return Client("https://" + address, protocol=protocol, http_version=http, tls_ca_file=certs.ca,
                  tls_cert_file=certs.client_cert, tls_key_file=certs.client_key, **kw)


# ---------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_https_roundtrip(servers, certs, protocol, http):
    with Client("https://" + servers.tls, protocol=protocol, http_version=http, tls_ca_file=certs.ca) as c:
        resp = c.call_unary(ECHO, b"hello over tls")
        assert resp.message == b"hello over tls"
        assert resp.header("x-protocol") == protocol.encode()
        info = json.loads(c.call_unary(PEER, b"").message)
        assert info == {"protocol": protocol, "peer": None}  # TLS without a client certificate
        with c.bidi_stream(STREAM_PEER, [b"a", b"b"]) as s:
            out = list(s)
        assert out[:2] == [b"echo:a", b"echo:b"]
        assert json.loads(out[2]) == {"protocol": protocol, "peer": None}


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_https_by_name_and_server_name(servers, certs, http):
    port = servers.tls.rsplit(":", 1)[1]
    # The certificate is for 127.0.0.1 and localhost.
    with Client(f"https://localhost:{port}", http_version=http, tls_ca_file=certs.ca) as c:
        assert c.call_unary(ECHO, b"by name").message == b"by name"
    with Client("https://" + servers.tls, http_version=http, tls_ca_file=certs.ca,
                tls_server_name="localhost") as c:
        assert c.call_unary(ECHO, b"sni").message == b"sni"


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_pem_variants(servers, certs, http):
    """A listener from PEM bytes, and a client trusting a CA given as PEM bytes."""
    with Client("https://" + servers.pem, http_version=http, tls_ca_pem=certs.ca.read_bytes()) as c:
        assert c.call_unary(ECHO, b"pem").message == b"pem"
    opts = TLSOptions(ca_pem=certs.ca.read_text(), cert_pem=certs.client_cert.read_bytes(),
                      key_pem=certs.client_key.read_bytes())
    with Client("https://" + servers.mtls, http_version=http, tls=opts) as c:
        info = json.loads(c.call_unary(PEER, b"").message)
    assert info["peer"]["subject"] == f"CN={CLIENT_CN}"


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_insecure_skip_verify(servers, http):
    with Client("https://" + servers.other, http_version=http, tls_insecure_skip_verify=True) as c:
        assert c.call_unary(ECHO, b"unverified").message == b"unverified"


# ---------------------------------------------------------------------------------------------------
# Mutual TLS
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_mtls_peer_visible_in_handlers(servers, certs, protocol, http):
    with mtls_client(certs, servers.mtls, protocol, http) as c:
        info = json.loads(c.call_unary(PEER, b"").message)
        assert info["protocol"] == protocol
        assert info["peer"] == {"subject": f"CN={CLIENT_CN}", "dns": ["client.test"],
                                "uri": ["spiffe://test/client"], "ip": []}
        with c.bidi_stream(STREAM_PEER, [b"x"]) as s:
            out = list(s)
        assert out[0] == b"echo:x"
        assert json.loads(out[1])["peer"]["subject"] == f"CN={CLIENT_CN}"


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_mtls_client_certificate_on_a_plain_tls_listener_is_ignored(servers, certs, http):
    # The listener does not ask for client certificates: no peer.
    with mtls_client(certs, servers.tls, http=http) as c:
        assert json.loads(c.call_unary(PEER, b"").message)["peer"] is None


@pytest.mark.parametrize("protocol,http", PROTOCOL_HTTP, ids=PH_IDS)
def test_mtls_rejects_client_without_certificate(servers, certs, protocol, http):
    with Client("https://" + servers.mtls, protocol=protocol, http_version=http, tls_ca_file=certs.ca) as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(ECHO, b"no cert")
        assert info.value.code is Code.UNAVAILABLE
        assert "certificate" in info.value.message
        with pytest.raises(RPCError) as info:
            list(c.server_stream(STREAM_PEER, b"no cert"))
        assert info.value.code is Code.UNAVAILABLE
        assert info.value.message


# ---------------------------------------------------------------------------------------------------
# Verification failures
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_unknown_ca(servers, certs, http):
    # The server's certificate is signed by another CA than the one the client trusts.
    with Client("https://" + servers.other, http_version=http, tls_ca_file=certs.ca) as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(ECHO, b"x")
    assert info.value.code is Code.UNAVAILABLE
    assert "unknown CA" in info.value.message or "issuer" in info.value.message
    # The system trust store does not know our test CA either.
    with Client("https://" + servers.tls, http_version=http) as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(ECHO, b"x")
    assert info.value.code is Code.UNAVAILABLE
    assert "verify" in info.value.message


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_name_mismatch(servers, certs, http):
    with Client("https://" + servers.tls, http_version=http, tls_ca_file=certs.ca,
                tls_server_name="wrong.example") as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(ECHO, b"x")
    assert info.value.code is Code.UNAVAILABLE
    assert "mismatch" in info.value.message and "wrong.example" in info.value.message


# ---------------------------------------------------------------------------------------------------
# Configuration errors
# ---------------------------------------------------------------------------------------------------


def test_listen_tls_bad_files(certs, tmp_path):
    with Server() as srv:
        with pytest.raises(ConnectPluginError) as info:
            srv.listen_tls("127.0.0.1:0", cert_file=tmp_path / "missing.crt", key_file=certs.server_key)
        assert info.value.status is Status.INVALID_ARGUMENT
        assert "missing.crt" in info.value.message
        with pytest.raises(ConnectPluginError) as info:
            srv.listen_tls("127.0.0.1:0", cert_file=certs.server_cert, key_file=certs.client_key)
        assert info.value.status is Status.INVALID_ARGUMENT
        assert "does not match" in info.value.message
        with pytest.raises(ValueError):
            srv.listen_tls("127.0.0.1:0")  # no certificate
        with pytest.raises(ValueError):
            srv.listen_tls("127.0.0.1:0", cert_file=certs.server_cert)  # no key
        with pytest.raises(ValueError):
            srv.listen_tls("127.0.0.1:0", TLSOptions(cert_file=certs.server_cert, key_file=certs.server_key),
                           client_ca_file=certs.ca)  # both styles
        assert srv.addresses == []


def test_client_tls_configuration_errors(certs, tmp_path):
    with pytest.raises(ConnectPluginError) as info:
        Client("https://127.0.0.1:1", tls_ca_file=tmp_path / "missing-ca.crt")
    assert "missing-ca.crt" in info.value.message
    with pytest.raises(ValueError):
        Client("https://127.0.0.1:1", tls_cert_file=certs.client_cert)  # no key
    with pytest.raises(ValueError):
        Client("https://127.0.0.1:1", tls=TLSOptions(ca_file=certs.ca), tls_ca_file=certs.ca)
    with pytest.raises(ValueError):
        TLSOptions(ca_file=certs.ca, ca_pem=b"x")


def test_tls_options_repr_hides_pem(certs):
    r = repr(TLSOptions(cert_pem=b"secret-cert", key_pem=b"secret-key", server_name="localhost"))
    assert "secret" not in r
    assert "server_name='localhost'" in r


def test_plaintext_client_on_tls_listener_fails(servers):
    with Client("http://" + servers.tls) as c:
        with pytest.raises(RPCError) as info:
            c.call_unary(ECHO, b"x")
    assert info.value.code is not Code.OK
