"""The streaming interoperability matrix: client x server x protocol x codec x HTTP version x
compression x TLS, each row running the streaming scenario of examples/proto/README.md
(kvscenario.py) and expecting exactly kvscenario.expected_lines(http).

  clients: c go python swift (examples/bin/kv-client-LANG), grpcio, cpy (connect-python), grpcgo
  servers: c go python swift (examples/bin/kv-server-LANG), grpcio, cpy-hypercorn, cpy-uvicorn
  (a grpc-go server is not there yet: add it to SERVERS and conftest.SERVER_CAPS when it is.)

Only the combinations both ends support are generated (conftest.CLIENT_CAPS / SERVER_CAPS: gRPC
needs HTTP/2; grpcio and grpc-go speak gRPC with proto only; uvicorn has no HTTP/2 and no trailers).
TLS rows ('tls', 'mtls') are generated for codec=proto, compression=identity only (TLS is
orthogonal to both); INTEROP_MATRIX_FULL=1 crosses TLS with every codec and compression too.

Rows with one of our binaries use their streaming flags (`--scenario stream --protocol ...`,
`--tls-ca/--cert/--key` on clients, `--tls-cert/--tls-key/--tls-client-ca` on servers); they run
by default and INTEROP_STREAMING=0 leaves them out (the end-of-session summary says so). The
peer-vs-peer rows always run; those already run by test_peers_selfcheck.py are not repeated here
(the summary table counts both files).

IDs read `client-C-server-S-PROTOCOL-CODEC-hN-COMPRESSION-TLS`, e.g.
`-k "client-swift and grpc- and mtls"`.
"""

from __future__ import annotations

import os

import pytest

from conftest import (CODECS, COMPRESSIONS, HTTPS, LANGS, PEER_CLIENTS, PEER_SERVERS, PROTOCOLS, TLS_MODES,
                      check_stream_run, run_client, stream_client_argv, supported, tls_config)
from test_peers_selfcheck import SELFCHECK_ROWS, row_id

CLIENTS = LANGS + PEER_CLIENTS
SERVERS = LANGS + PEER_SERVERS
FULL = os.environ.get("INTEROP_MATRIX_FULL", "") == "1"


def rows():
    for client in CLIENTS:
        for server in SERVERS:
            for protocol in PROTOCOLS:
                for http in HTTPS:
                    for codec in CODECS:
                        if not supported(client, server, protocol, codec, http):
                            continue
                        for compression in COMPRESSIONS:
                            for tls in TLS_MODES:
                                if tls != "none" and not FULL and (codec, compression) != ("proto", "identity"):
                                    continue
                                r = (client, server, protocol, codec, http, compression, tls)
                                if r in SELFCHECK_ROWS:
                                    continue
                                yield r


ROWS = list(rows())


@pytest.mark.stream_row
@pytest.mark.parametrize("client,server,protocol,codec,http,compression,tls",
                         [pytest.param(*r, id=row_id(*r)) for r in ROWS])
def test_stream_matrix(request, servers, tls_files, client, server, protocol, codec, http, compression, tls):
    cfg = tls_config(tls, tls_files)
    srv = servers.get(server, "tcp", cfg)
    grpcgo = request.getfixturevalue("grpcgo_client") if client == "grpcgo" else None
    run = run_client(stream_client_argv(client, srv.url, protocol, codec, http, compression, cfg, grpcgo))
    check_stream_run(run, http, srv)
