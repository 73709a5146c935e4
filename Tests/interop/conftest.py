"""Shared machinery of the interop suite: starting real servers, running real clients.

Peers:
  * our example binaries in examples/bin/ (kv-server-LANG, kv-client-LANG, LANG in c go python swift);
  * connect-python (Tests/interop/kv_connect_python.py) on uvicorn (HTTP/1.1) or hypercorn (h2c);
  * curl and raw sockets (test_curl.py, test_bad_input.py).

A missing binary FAILS the tests that need it (never skips). Select subsets with -k, e.g.
`-k "server-swift"`, `-k "client-go and server-c"`, `-k "unix"`, `-k "h2 and json"`.

Every server is started with `--listen 127.0.0.1:0` or `--listen unix:/tmp/...`, must print
`listening on ADDR` (the bound address) and must exit 0 within 10 s of SIGTERM.
"""

from __future__ import annotations

import os
import re
import shlex
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

sys.path.insert(0, str(HERE))
import kvgen  # noqa: E402

collect_ignore = ["gen", "kv_connect_python.py", "kvgen.py"]

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

READY_TIMEOUT = float(os.environ.get("INTEROP_READY_TIMEOUT", "30"))
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = float(os.environ.get("INTEROP_CLIENT_TIMEOUT", "60"))


def pytest_configure(config):
    # Generated code for kv.proto, once per session (gen/ is gitignored).
    kvgen.ensure(force=True)


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


def server_argv(kind: str, listen: str) -> list[str]:
    """kind: 'c'|'go'|'python'|'swift' (ours) or 'cpy-uvicorn'|'cpy-hypercorn' (connect-python)."""
    if kind.startswith("cpy-"):
        return [sys.executable, str(CONNECT_PYTHON), "--listen", listen, "--server", kind[4:]]
    return [str(binary(f"kv-server-{kind}")), "--listen", listen]


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


def start_server(kind: str, transport: str = "tcp", listen: str | None = None) -> Server:
    """Starts a server, waits for `listening on ADDR`, checks ADDR; fails loudly otherwise."""
    if listen is None:
        listen = "127.0.0.1:0" if transport == "tcp" else f"unix:{unix_path(kind)}"
    argv = server_argv(kind, listen)
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
        srv.url = f"http://{srv.addr}"
    return srv


class ServerPool:
    """Lazily started servers keyed by (kind, transport); a dead one is restarted on next use.
    At teardown every server gets SIGTERM and must exit 0 within 10 s."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], Server] = {}
        self.retired: list[Server] = []

    def get(self, kind: str, transport: str = "tcp") -> Server:
        key = (kind, transport)
        srv = self.servers.get(key)
        if srv is not None and not srv.alive():
            self.retired.append(srv)
            srv = None
        if srv is None:
            srv = start_server(kind, transport)
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
    """`start(kind, transport='tcp')` -> a running Server (url/addr/host/port/path); every server
    started through it gets SIGTERM at teardown and must exit 0 within 10 s."""
    started: list[Server] = []

    def start(kind: str, transport: str = "tcp", listen: str | None = None) -> Server:
        srv = start_server(kind, transport, listen)
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
