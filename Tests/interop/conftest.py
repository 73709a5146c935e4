"""Shared machinery of the interop suite: starting real servers, running real clients.

Peers:
  * our example binaries in examples/bin/ (kv-server-LANG, kv-client-LANG, LANG in c go python swift);
  * connect-python (Tests/interop/kv_connect_python.py) on uvicorn (HTTP/1.1) or hypercorn (h2c);
  * grpcio (Tests/interop/kv_grpcio.py): gRPC server and client, h2c/TLS/mTLS;
  * grpc-go (Tests/interop/grpcgo/kvclient, built by grpcgo/build.sh): gRPC client, h2c/TLS/mTLS;
    and grpcgo/slowserver, a gRPC server that holds every call (test_conformance_regressions.py);
  * curl and raw sockets (test_curl.py, test_bad_input.py);
  * for test_conformance_regressions.py: conformance_server.py (our server through the Python
    binding, handlers no KV server has) and h2_deadline_reset_server.py (an `h2` peer that resets
    with CANCEL at its copy of the deadline, as newer grpc-go servers do).

The streaming scenario (examples/proto/README.md, kvscenario.py) is run by test_peers_selfcheck.py
(peer vs peer, always) and test_stream_matrix.py (every client x server x protocol x codec x http x
compression x tls; INTEROP_STREAMING=0 leaves out the rows with our binaries). A summary table of the
streaming rows is printed at the end of the session.

A missing binary FAILS the tests that need it (never skips). Select subsets with -k, e.g.
`-k "server-swift"`, `-k "client-go and server-c"`, `-k "unix"`, `-k "h2 and json"`.

Every server is started with `--listen 127.0.0.1:0` or `--listen unix:/tmp/...`, must print
`listening on ADDR` (the bound address) and must exit 0 within 10 s of SIGTERM.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# INTEROP_BIN overrides where the example binaries are looked up (default: examples/bin).
BIN = Path(os.environ.get("INTEROP_BIN") or (REPO / "examples" / "bin"))
CONNECT_PYTHON = HERE / "kv_connect_python.py"
GRPCIO = HERE / "kv_grpcio.py"
GRPCGO_BUILD = HERE / "grpcgo" / "build.sh"

sys.path.insert(0, str(HERE))
import kvgen  # noqa: E402
import kvscenario  # noqa: E402

collect_ignore = ["gen", "grpcgo", "kv_connect_python.py", "kv_grpcio.py", "kvgen.py", "kvscenario.py", "kvstore.py",
                  "conformance_server.py", "h2_deadline_reset_server.py"]

LANGS = ("c", "go", "python", "swift")
CODECS = ("proto", "json")
HTTPS = ("1.1", "2")
HTTP_ID = {"1.1": "h1", "2": "h2"}

PROCEDURE = "/connectplugin.examples.kv.v1.KVService/"
EXPECTED_LINES = [
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "get <empty> error=invalid_argument message=key must not be empty",
]
EXPECTED_STDOUT = "\n".join(EXPECTED_LINES) + "\n"

# What examples/bin/kv-host-LANG prints after its "started ..." line: the scripted Put/Get/Delete
# sequence, the streaming methods (PutMany, List, Watch with live events), the ping; then
# "stopped: exited 0" (a launched plugin) or "stopped: disconnected" (--url, --in-process).
KV_HOST_LINES = [
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "putmany count=2",
    "list s/ s/a=1 s/b=2",
    "watch s/ s/a=1 s/b=2 s/c=3 deleted:s/a",
    "ping ok",
]

READY_TIMEOUT = float(os.environ.get("INTEROP_READY_TIMEOUT", "30"))
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = float(os.environ.get("INTEROP_CLIENT_TIMEOUT", "60"))


# Every temporary directory of the run (server work dirs, curl bodies) lives under one directory,
# removed when the run passes and kept (its path printed) when it fails.
RUN_TMP = Path(tempfile.mkdtemp(prefix="interop-run-"))


def pytest_configure(config):
    tempfile.tempdir = str(RUN_TMP)
    # Generated code for kv.proto, once per session (gen/ is gitignored).
    kvgen.ensure(force=True)
    config.addinivalue_line("markers", "stream_row: a row of the streaming interop matrix (params: "
                            "client, server, protocol, codec, http, compression, tls)")


# ------------------------------------------------------------------------------------------------
# Binaries
# ------------------------------------------------------------------------------------------------


def binary(name: str) -> Path:
    """examples/bin/NAME, or a loud failure when it is missing (the suite never skips)."""
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"MISSING BINARY: {path} does not exist (build it with `make examples`)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"BINARY NOT EXECUTABLE: {path}", pytrace=False)
    return path


def server_argv(kind: str, listen: str, tls: "TLSConfig | None" = None) -> list[str]:
    """kind: 'c'|'go'|'python'|'swift' (ours), 'cpy-uvicorn'|'cpy-hypercorn' (connect-python) or
    'grpcio'. With `tls`: --tls-cert/--tls-key (and --tls-client-ca for mTLS)."""
    if kind.startswith("cpy-"):
        argv = [sys.executable, str(CONNECT_PYTHON), "--listen", listen, "--server", kind[4:]]
    elif kind == "grpcio":
        argv = [sys.executable, str(GRPCIO), "--listen", listen]
    else:
        argv = [str(binary(f"kv-server-{kind}")), "--listen", listen]
    return argv + (tls.server_args() if tls is not None else [])


def client_argv(kind: str, url: str, codec: str, http: str) -> list[str]:
    """kind: 'c'|'go'|'python'|'swift' (ours) or 'cpy' (connect-python)."""
    if kind == "cpy":
        exe = [sys.executable, str(CONNECT_PYTHON)]
    else:
        exe = [str(binary(f"kv-client-{kind}"))]
    return exe + ["--url", url, "--codec", codec, "--http", http]


def unix_path(tag: str) -> str:
    # Short: sun_path is limited to 108 bytes.
    return f"/tmp/cpi-{tag}-{uuid.uuid4().hex[:8]}.sock"


def tail(path: Path, n: int = 3000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode(errors="replace")


# ------------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    argv: list[str]
    listen: str
    proc: subprocess.Popen
    workdir: Path
    addr: str = ""
    url: str = ""
    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path
    stopped_rc: int | None = None
    stop_error: str | None = None

    @property
    def cmd(self) -> str:
        return shlex.join(self.argv)

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        state = "running" if self.alive() else f"EXITED rc={self.proc.returncode}"
        return (f"server {self.kind} [{state}]: {self.cmd}\n"
                f"  stdout: {tail(self.stdout_path, 500)!r}\n  stderr (tail): {tail(self.stderr_path)!r}")

    def assert_alive(self, context: str = "") -> None:
        if not self.alive():
            rc = self.proc.returncode
            sig = f" (signal {signal.Signals(-rc).name})" if rc < 0 and -rc in signal.Signals._value2member_map_ else ""
            pytest.fail(f"SERVER DIED{(' ' + context) if context else ''}: rc={rc}{sig}\n{self.describe()}",
                        pytrace=False)

    def connect_args(self) -> dict:
        """For raw sockets: {'family', 'address'}."""
        import socket

        if self.path:
            return {"family": socket.AF_UNIX, "address": self.path}
        return {"family": socket.AF_INET, "address": (self.host, self.port)}

    def stop(self, timeout: float = STOP_TIMEOUT) -> str | None:
        """SIGTERM, wait up to `timeout`; returns an error string (or None if it exited 0)."""
        if self.stopped_rc is not None or self.stop_error is not None:
            return self.stop_error
        if not self.alive():
            self.stop_error = f"server had already exited rc={self.proc.returncode} before SIGTERM\n{self.describe()}"
            return self.stop_error
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.stop_error = f"server did not exit within {timeout:.0f} s of SIGTERM (killed)\n{self.describe()}"
            return self.stop_error
        self.stopped_rc = rc
        if rc != 0:
            self.stop_error = (f"server exited rc={rc} (expected 0) {time.monotonic() - t0:.2f} s after SIGTERM\n"
                               f"{self.describe()}")
        return self.stop_error


def start_server(kind: str, transport: str = "tcp", listen: str | None = None,
                 tls: "TLSConfig | None" = None, command: list[str] | None = None) -> Server:
    """Starts a server, waits for `listening on ADDR`, checks ADDR; fails loudly otherwise.
    With `tls` (TCP only) the server gets the TLS flags and `url` is https://ADDR. `command`: the
    program of a server that is not one of `server_argv`'s kinds (it gets `--listen ADDR` appended)."""
    if listen is None:
        listen = "127.0.0.1:0" if transport == "tcp" else f"unix:{unix_path(kind)}"
    argv = server_argv(kind, listen, tls) if command is None else [*command, "--listen", listen]
    workdir = Path(tempfile.mkdtemp(prefix=f"interop-{kind}-"))
    out = open(workdir / "stdout", "wb")
    err = open(workdir / "stderr", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(REPO),
                            start_new_session=True)
    out.close()
    err.close()
    srv = Server(kind=kind, argv=argv, listen=listen, proc=proc, workdir=workdir)
    deadline = time.monotonic() + READY_TIMEOUT
    line = None
    while time.monotonic() < deadline:
        text = srv.stdout_path.read_bytes().decode(errors="replace")
        if "\n" in text:
            line = text.split("\n", 1)[0]
            break
        if not srv.alive():
            break
        time.sleep(0.02)
    if line is None:
        alive = srv.alive()
        if alive:
            proc.kill()
            proc.wait()
        pytest.fail(f"SERVER DID NOT START: no 'listening on ADDR' line within {READY_TIMEOUT:.0f} s"
                    f"{'' if alive else f' (exited rc={proc.returncode})'}\n{srv.describe()}", pytrace=False)
    m = re.fullmatch(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        proc.wait()
        pytest.fail(f"SERVER PRINTED A BAD READY LINE: {line!r}, expected 'listening on ADDR'\n{srv.describe()}",
                    pytrace=False)
    srv.addr = m.group(1)
    if listen.startswith("unix:"):
        if srv.addr != listen:
            proc.kill()
            proc.wait()
            pytest.fail(f"server printed 'listening on {srv.addr}', expected 'listening on {listen}'\n{srv.describe()}",
                        pytrace=False)
        srv.path = listen[len("unix:"):]
        srv.url = f"unix://{srv.path}"
    else:
        m2 = re.fullmatch(r"(\[[^\]]+\]|[^:]+):(\d+)", srv.addr)
        if not m2 or int(m2.group(2)) == 0 or m2.group(1) != "127.0.0.1":
            proc.kill()
            proc.wait()
            pytest.fail(f"server printed 'listening on {srv.addr}', expected the bound address "
                        f"'127.0.0.1:<port != 0>'\n{srv.describe()}", pytrace=False)
        srv.host, srv.port = m2.group(1), int(m2.group(2))
        srv.url = f"{'https' if tls is not None else 'http'}://{srv.addr}"
    return srv


class ServerPool:
    """Lazily started servers keyed by (kind, transport); a dead one is restarted on next use.
    At teardown every server gets SIGTERM and must exit 0 within 10 s."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], Server] = {}
        self.retired: list[Server] = []

    def get(self, kind: str, transport: str = "tcp", tls: "TLSConfig | None" = None) -> Server:
        key = (kind, transport) if tls is None else (kind, transport, tls.mode)
        srv = self.servers.get(key)
        if srv is not None and not srv.alive():
            self.retired.append(srv)
            srv = None
        if srv is None:
            srv = start_server(kind, transport, tls=tls)
            self.servers[key] = srv
        return srv

    def restart(self, kind: str, transport: str = "tcp") -> Server:
        key = (kind, transport)
        if key in self.servers:
            old = self.servers.pop(key)
            if old.alive():
                old.stop()
            self.retired.append(old)
        return self.get(kind, transport)

    def close(self) -> list[str]:
        errors = []
        for srv in self.servers.values():
            e = srv.stop()
            if e:
                errors.append(e)
        self.servers.clear()
        return errors


@pytest.fixture
def server_factory():
    """`start(kind, transport='tcp', command=None)` -> a running Server (url/addr/host/port/path); every server
    started through it gets SIGTERM at teardown and must exit 0 within 10 s."""
    started: list[Server] = []

    def start(kind: str, transport: str = "tcp", listen: str | None = None, tls: "TLSConfig | None" = None,
              command: list[str] | None = None) -> Server:
        srv = start_server(kind, transport, listen, tls, command)
        started.append(srv)
        return srv

    yield start
    errors = [e for e in (s.stop() for s in started) if e]
    if errors:
        pytest.fail("GRACEFUL STOP FAILED (SIGTERM must exit 0 within 10 s):\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def servers():
    pool = ServerPool()
    yield pool
    errors = pool.close()
    if errors:
        pytest.fail("GRACEFUL STOP FAILED (SIGTERM must exit 0 within 10 s):\n" + "\n".join(errors), pytrace=False)


# ------------------------------------------------------------------------------------------------
# Clients
# ------------------------------------------------------------------------------------------------


@dataclass
class ClientRun:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    duration: float = 0.0

    def report(self, expected: str = EXPECTED_STDOUT) -> str:
        return (f"command: {shlex.join(self.argv)}\n"
                f"exit code: {'TIMEOUT' if self.timed_out else self.rc} (expected 0), {self.duration:.2f} s\n"
                f"stdout:\n{self.stdout}"
                f"{'' if self.stdout.endswith(chr(10)) or not self.stdout else chr(10)}"
                f"expected stdout:\n{expected}"
                f"stderr:\n{self.stderr}")


def run_client(argv: list[str], timeout: float = CLIENT_TIMEOUT) -> ClientRun:
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired as e:
        return ClientRun(argv, None, (e.stdout or b"").decode(errors="replace"),
                         (e.stderr or b"").decode(errors="replace"), True, time.monotonic() - t0)
    return ClientRun(argv, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"),
                     False, time.monotonic() - t0)


def check_client_run(run: ClientRun, server: Server | None = None) -> None:
    """Exit 0 and exactly the five README lines on stdout."""
    ok = (not run.timed_out) and run.rc == 0 and run.stdout == EXPECTED_STDOUT
    if not ok:
        msg = run.report()
        if server is not None:
            msg += "\n" + server.describe()
        pytest.fail("CLIENT OUTPUT MISMATCH\n" + msg, pytrace=False)
    if server is not None:
        server.assert_alive("after the client run")


# ------------------------------------------------------------------------------------------------
# The streaming scenario: TLS material, peers, capabilities, client runs
# ------------------------------------------------------------------------------------------------

PROTOCOLS = ("connect", "grpc", "grpcweb")
COMPRESSIONS = ("identity", "gzip")
TLS_MODES = ("none", "tls", "mtls")
# Real peers (besides our LANGS): servers and clients of the streaming scenario.
PEER_SERVERS = ("grpcio", "cpy-hypercorn", "cpy-uvicorn")
PEER_CLIENTS = ("grpcio", "cpy", "grpcgo")


@dataclass
class TLSFiles:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass
class TLSConfig:
    """mode 'tls': the server has a certificate (SAN IP:127.0.0.1, DNS:localhost) signed by `ca`,
    clients verify it with --tls-ca. mode 'mtls': also --tls-client-ca on the server and
    --cert/--key on the client."""

    mode: str
    files: TLSFiles

    def server_args(self) -> list[str]:
        args = ["--tls-cert", str(self.files.server_cert), "--tls-key", str(self.files.server_key)]
        if self.mode == "mtls":
            args += ["--tls-client-ca", str(self.files.ca)]
        return args

    def client_args(self) -> list[str]:
        args = ["--tls-ca", str(self.files.ca)]
        if self.mode == "mtls":
            args += ["--cert", str(self.files.client_cert), "--key", str(self.files.client_key)]
        return args


def _openssl(*args: str, cwd: Path) -> None:
    import shutil

    if shutil.which("openssl") is None:
        pytest.fail("MISSING TOOL: openssl (run scripts/setup.sh)", pytrace=False)
    r = subprocess.run(["openssl", *args], cwd=str(cwd), capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}", pytrace=False)


def make_tls_files(d: Path) -> TLSFiles:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate, all
    P-256, X.509 v3 (rustls in pyqwest insists on v3 extensions and a non-CA leaf)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                              "subjectKeyIdentifier=hash\n")
    (d / "server.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "authorityKeyIdentifier=keyid\n")
    (d / "client.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n")
    for name in ("ca", "server", "client"):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=d)
    _openssl("req", "-new", "-x509", "-key", "ca.key", "-subj", "/CN=connectplugin interop test CA", "-days", "2",
             "-sha256", "-extensions", "v3_ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt", cwd=d)
    for name, cn in (("server", "127.0.0.1"), ("client", "connectplugin interop client")):
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return TLSFiles(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_config(mode: str, files: TLSFiles) -> TLSConfig | None:
    return None if mode == "none" else TLSConfig(mode, files)


@pytest.fixture(scope="session")
def grpcgo_client(tmp_path_factory) -> Path:
    """Builds Tests/interop/grpcgo/kvclient once per session (GOPATH mode, Debian's grpc-go);
    a failed build fails every test that needs it."""
    out = tmp_path_factory.mktemp("grpcgo-bin")
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    r = subprocess.run(["bash", str(GRPCGO_BUILD), str(out)], capture_output=True, text=True, env=env, timeout=300)
    exe = out / "kvclient-grpcgo"
    if r.returncode != 0 or not exe.is_file():
        pytest.fail(f"GRPC-GO CLIENT BUILD FAILED ({r.returncode}): bash {GRPCGO_BUILD} {out}\n{r.stdout}{r.stderr}",
                    pytrace=False)
    return exe


def stream_client_argv(kind: str, url: str, protocol: str, codec: str, http: str, compression: str,
                       tls: TLSConfig | None, grpcgo: Path | None = None) -> list[str]:
    """The streaming-scenario command line of client `kind` (LANGS, 'grpcio', 'cpy', 'grpcgo'). Every
    client gets the same flags: --url --scenario stream --protocol --codec --http --compression
    [--tls-ca CA [--cert CERT --key KEY]]."""
    if kind == "cpy":
        exe = [sys.executable, str(CONNECT_PYTHON)]
    elif kind == "grpcio":
        exe = [sys.executable, str(GRPCIO)]
    elif kind == "grpcgo":
        if grpcgo is None:
            raise ValueError("grpcgo client needs the grpcgo_client fixture")
        exe = [str(grpcgo)]
    else:
        exe = [str(binary(f"kv-client-{kind}"))]
    return exe + ["--url", url, "--scenario", "stream", "--protocol", protocol, "--codec", codec, "--http", http,
                  "--compression", compression] + (tls.client_args() if tls is not None else [])


def check_stream_run(run: ClientRun, http: str, server: Server | None = None) -> None:
    """Exit 0 and exactly the streaming scenario's lines (kvscenario.expected_lines(http))."""
    expected = kvscenario.expected_stdout(http)
    ok = (not run.timed_out) and run.rc == 0 and run.stdout == expected
    if not ok:
        msg = run.report(expected)
        if server is not None:
            msg += "\n" + server.describe()
        pytest.fail("STREAM SCENARIO MISMATCH\n" + msg, pytrace=False)
    if server is not None:
        server.assert_alive("after the client run")


# What each peer can do (evidence: test_peers_selfcheck.py; README "Peer capabilities").
# (protocol, http) pairs and codecs per server kind / client kind.
_ALL_PH = {("connect", "1.1"), ("connect", "2"), ("grpcweb", "1.1"), ("grpcweb", "2"), ("grpc", "2")}
SERVER_CAPS = {
    "grpcio": ({("grpc", "2")}, {"proto"}),
    "cpy-hypercorn": (_ALL_PH, {"proto", "json"}),
    "cpy-uvicorn": ({("connect", "1.1"), ("grpcweb", "1.1")}, {"proto", "json"}),  # no HTTP/2, no trailers
}
CLIENT_CAPS = {
    "grpcio": ({("grpc", "2")}, {"proto"}),
    "grpcgo": ({("grpc", "2")}, {"proto"}),
    "cpy": (_ALL_PH, {"proto", "json"}),
}
for _lang in LANGS:  # the target for our binaries: everything (gRPC needs HTTP/2)
    SERVER_CAPS[_lang] = (_ALL_PH, {"proto", "json"})
    CLIENT_CAPS[_lang] = (_ALL_PH, {"proto", "json"})


def supported(client: str, server: str, protocol: str, codec: str, http: str) -> bool:
    cph, ccodecs = CLIENT_CAPS[client]
    sph, scodecs = SERVER_CAPS[server]
    return (protocol, http) in cph and (protocol, http) in sph and codec in ccodecs and codec in scodecs


# ------------------------------------------------------------------------------------------------
# Streaming rows: gating of our binaries (INTEROP_STREAMING=1) and the end-of-session summary
# ------------------------------------------------------------------------------------------------

STREAM_ENV = "INTEROP_STREAMING"
STREAM_DIMS = ("client", "server", "protocol", "codec", "http", "compression", "tls")
_stream_params: dict[str, dict] = {}  # nodeid -> params, for every collected streaming row
_stream_rows: dict[str, dict] = {}  # nodeid -> params + "outcome", for the rows that ran
_stream_deselected: list[str] = []


def streaming_enabled() -> bool:
    # On by default; INTEROP_STREAMING=0 leaves out the rows with our binaries (peer rows still run).
    return os.environ.get(STREAM_ENV, "1") != "0"


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("stream_row") and all(d in params for d in STREAM_DIMS):
            row = {d: params[d] for d in STREAM_DIMS}
            if (row["client"] in LANGS or row["server"] in LANGS) and not streaming_enabled():
                drop.append(item)
                _stream_deselected.append(item.nodeid)
                continue
            _stream_params[item.nodeid] = row
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_logreport(report):
    if report.nodeid not in _stream_params:
        return
    row = _stream_rows.setdefault(report.nodeid, dict(_stream_params[report.nodeid]))
    if report.failed:
        row["outcome"] = "failed"
    elif report.when == "call" and report.passed and row.get("outcome") != "failed":
        row["outcome"] = "passed"
    elif report.skipped and "outcome" not in row:
        row["outcome"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    # Session fixtures (the servers) are torn down by now.
    if exitstatus == 0:
        shutil.rmtree(RUN_TMP, ignore_errors=True)
    else:
        print(f"\ninterop: temporary files kept in {RUN_TMP}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _stream_rows and not _stream_deselected:
        return
    tr = terminalreporter
    tr.section("streaming interop matrix")
    if _stream_rows:
        by_pair: dict[tuple[str, str], list[int]] = {}
        by_shape: dict[tuple[str, str, str, str, str], list[int]] = {}
        failures = []
        for nodeid, row in _stream_rows.items():
            outcome = row.get("outcome", "not run")
            idx = {"passed": 0, "failed": 1}.get(outcome, 2)
            for table, key in ((by_pair, (row["client"], row["server"])),
                               (by_shape, (row["protocol"], row["http"], row["codec"], row["compression"], row["tls"]))):
                table.setdefault(key, [0, 0, 0])[idx] += 1
            if outcome == "failed":
                failures.append(nodeid)
        tr.write_line(f"{'client':<8} {'server':<14} {'passed':>6} {'failed':>6} {'other':>6}")
        for (c, sv), (ok, bad, other) in sorted(by_pair.items()):
            tr.write_line(f"{c:<8} {sv:<14} {ok:>6} {bad:>6} {other:>6}" + ("   <-- FAILED" if bad else ""))
        tr.write_line("")
        tr.write_line(f"{'protocol':<8} {'http':<4} {'codec':<5} {'compr':<8} {'tls':<4} {'passed':>6} {'failed':>6} {'other':>6}")
        for (pr, h, co, cm, t), (ok, bad, other) in sorted(by_shape.items()):
            tr.write_line(f"{pr:<8} {h:<4} {co:<5} {cm:<8} {t:<4} {ok:>6} {bad:>6} {other:>6}"
                          + ("   <-- FAILED" if bad else ""))
        total = [sum(v[i] for v in by_pair.values()) for i in range(3)]
        tr.write_line(f"streaming rows: {total[0]} passed, {total[1]} failed, {total[2]} other (skipped/not run)")
        for nodeid in failures:
            tr.write_line(f"FAILED {nodeid}")
    if _stream_deselected:
        tr.write_line(f"streaming matrix: {len(_stream_deselected)} rows with our clients/servers left out "
                      f"({STREAM_ENV}=0)")
