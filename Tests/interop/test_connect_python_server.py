"""Each of our example clients against connect-python's KV server (kv_connect_python.py):
HTTP/1.1 via uvicorn, HTTP/1.1 and h2c (prior knowledge) via hypercorn, both codecs; also over a
Unix socket (hypercorn). `client-ref` rows are the self-check of the reference peer itself
(connect-python client vs connect-python server): if those fail, the harness is broken, not us.

IDs read `client-C-cpy-SERVER-TRANSPORT-CODEC-hN`, e.g. `-k "client-swift and hypercorn"`.
"""

from __future__ import annotations

import pytest

from conftest import CODECS, HTTP_ID, LANGS, check_client_run, client_argv, run_client

# (server kind, transport, http) — uvicorn has no HTTP/2.
CONFIGS = [
    ("cpy-uvicorn", "tcp", "1.1"),
    ("cpy-hypercorn", "tcp", "1.1"),
    ("cpy-hypercorn", "tcp", "2"),
    ("cpy-hypercorn", "unix", "1.1"),
    ("cpy-hypercorn", "unix", "2"),
]

CASES = [
    pytest.param(c, kind, t, codec, http,
                 id=f"client-{'ref' if c == 'cpy' else c}-{kind}-{t}-{codec}-{HTTP_ID[http]}")
    for kind, t, http in CONFIGS
    for c in LANGS + ("cpy",)
    for codec in CODECS
    if not (c == "cpy" and t == "unix")  # pyqwest cannot dial Unix sockets
]


@pytest.mark.parametrize("client,server,transport,codec,http", CASES)
def test_client_against_connect_python(servers, client, server, transport, codec, http):
    srv = servers.get(server, transport)
    check_client_run(run_client(client_argv(client, srv.url, codec, http)), srv)
