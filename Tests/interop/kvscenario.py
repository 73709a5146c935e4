"""The streaming KV scenario (examples/proto/README.md, "Client scenario"), written once for every
Python peer client (grpcio and connect-python) over a small adapter, plus the exact lines every
client must print.

A client CLI runs `run(adapter, http)`; the adapter wraps one real RPC stack and raises `RpcFailure`
for every RPC error. Output lines are identical across languages and protocols; only the
`watch-live` line depends on the HTTP version (full-duplex bidi needs HTTP/2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterable, Protocol

EMPTY_KEY = "key must not be empty"
# The documented hooks (examples/proto/README.md, "Reserved keys").
ERROR_KEY = "__error__"
SLOW_KEY = "__slow__"
RESERVED_MESSAGE = "key is reserved"
ERROR_INFO_TYPE = "google.rpc.ErrorInfo"
ERROR_REASON = "RESERVED_KEY"
ERROR_DOMAIN = "kv.examples.connectplugin"
SLOW_SECONDS = 1.0  # how long the server holds a Get of __slow__ (or less, if the call ends first)
CLIENT_DEADLINE_MS = 200  # the deadline the scenario gives that Get

DETAIL_LINE = f"detail={ERROR_INFO_TYPE} reason={ERROR_REASON} domain={ERROR_DOMAIN} key={ERROR_KEY}"
RESERVED_ERROR = f"error=failed_precondition message={RESERVED_MESSAGE} {DETAIL_LINE}"

# The first five lines are the unary scenario of examples/README.md (conftest.EXPECTED_LINES).
UNARY_LINES = [
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "get <empty> error=invalid_argument message=key must not be empty",
]
STREAM_LINES_HEAD = [
    f"get __error__ {RESERVED_ERROR}",
    "get __slow__ error=deadline_exceeded",
    "putmany count=3",
    "putmany <none> count=0",
    "putmany <empty> error=invalid_argument message=key must not be empty",
    "list s/a count=2 s/a1=x s/a2=y",
    "list s/none count=0",
    f"list __error__ {RESERVED_ERROR}",
    "watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z",
    f"watch s/a,__error__ events=2 s/a1=x s/a2=y {RESERVED_ERROR}",
]
WATCH_LIVE_H2 = "watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>"
WATCH_LIVE_H1 = "watch-live skipped (full-duplex bidi needs HTTP/2)"
STREAM_LINES_TAIL = [
    "cleanup deleted=3",
    "list s/ count=0",
]


def expected_lines(http: str) -> list[str]:
    live = WATCH_LIVE_H2 if http == "2" else WATCH_LIVE_H1
    return UNARY_LINES + STREAM_LINES_HEAD + [live] + STREAM_LINES_TAIL


def expected_stdout(http: str) -> str:
    return "\n".join(expected_lines(http)) + "\n"


# ------------------------------------------------------------------------------------------------
# Adapter contract
# ------------------------------------------------------------------------------------------------


@dataclass
class RpcFailure(Exception):
    """An RPC error as the scenario prints it: the Connect code name (`failed_precondition`), the
    message, the details as (fully-qualified type name, serialized bytes), and for streams the
    messages received before the error."""

    code: str
    message: str
    details: list[tuple[str, bytes]] = field(default_factory=list)
    received: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Event:
    key: str
    value: bytes
    deleted: bool


class WatchCall(Protocol):
    def send(self, prefix: str) -> None: ...
    def close_send(self) -> None: ...
    def recv(self) -> Event | None:
        """The next event; None at the end of a successful stream; RpcFailure on error."""
    def cancel(self) -> None: ...


class Adapter(Protocol):
    def put(self, key: str, value: bytes) -> None: ...
    def get(self, key: str, timeout_ms: int | None = None) -> tuple[bool, bytes]: ...
    def delete(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[tuple[str, bytes]]:
        """All messages; RpcFailure(received=[...]) on error."""
    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int: ...
    def watch(self) -> WatchCall: ...


# ------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------


def decode_error_info(data: bytes) -> dict:
    """google.rpc.ErrorInfo {reason=1, domain=2, metadata=3 map<string,string>} by hand, so that
    the scenario needs no googleapis package."""
    out: dict = {"reason": "", "domain": "", "metadata": {}}

    def varint(b: bytes, i: int) -> tuple[int, int]:
        shift = n = 0
        while True:
            c = b[i]
            i += 1
            n |= (c & 0x7F) << shift
            if c < 0x80:
                return n, i
            shift += 7

    def fields(b: bytes):
        i = 0
        while i < len(b):
            tag, i = varint(b, i)
            if tag & 7 == 2:
                ln, i = varint(b, i)
                yield tag >> 3, b[i:i + ln]
                i += ln
            elif tag & 7 == 0:
                _, i = varint(b, i)
            else:
                raise ValueError(f"unexpected wire type {tag & 7}")

    for num, val in fields(data):
        if num == 1:
            out["reason"] = val.decode()
        elif num == 2:
            out["domain"] = val.decode()
        elif num == 3:
            k = v = ""
            for n2, v2 in fields(val):
                if n2 == 1:
                    k = v2.decode()
                elif n2 == 2:
                    v = v2.decode()
            out["metadata"][k] = v
    return out


def format_error(e: RpcFailure, with_message: bool = True) -> str:
    s = f"error={e.code}"
    if with_message:
        s += f" message={e.message}"
    for type_name, data in e.details:
        if type_name == ERROR_INFO_TYPE:
            info = decode_error_info(data)
            s += (f" detail={type_name} reason={info['reason']} domain={info['domain']}"
                  + "".join(f" {k}={v}" for k, v in sorted(info["metadata"].items())))
        else:
            s += f" detail={type_name}"
    return s


def format_value(b: bytes) -> str:
    return b.decode(errors="replace")


def format_event(ev: Event) -> str:
    return f"{ev.key}=<deleted>" if ev.deleted else f"{ev.key}={format_value(ev.value)}"


# ------------------------------------------------------------------------------------------------
# The scenario
# ------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def run(a: Adapter, http: str, out=None) -> tuple[list[str], bool]:
    """Runs every step; returns the printed lines and whether each step had the expected outcome.
    Lines are printed (and flushed) as they are produced, so a hang shows how far it got."""
    out = out or sys.stdout
    lines: list[str] = []
    expected = expected_lines(http)
    ok = True

    def emit(line: str) -> None:
        nonlocal ok
        if len(lines) >= len(expected) or expected[len(lines)] != line:
            ok = False
        lines.append(line)
        print(line, file=out, flush=True)

    def unexpected(step: str, e: Exception) -> None:
        nonlocal ok
        ok = False
        print(f"error: {step}: {e}", file=sys.stderr, flush=True)
        raise _Stop

    def expect_failure(step: str, fn, with_message: bool = True) -> None:
        try:
            r = fn()
        except RpcFailure as e:
            prefix = ""
            if e.received:
                prefix = f"events={len(e.received)} " + "".join(f"{format_event(x)} " for x in e.received)
            emit(f"{step} {prefix}{format_error(e, with_message)}")
            return
        emit(f"{step} unexpectedly succeeded: {r!r}")

    try:
        # 1-5: the unary scenario.
        try:
            a.put("greeting", b"hello")
            emit("put greeting ok")
            found, value = a.get("greeting")
            emit(f"get greeting found={str(found).lower()} value={format_value(value)}")
            emit(f"delete greeting existed={str(a.delete('greeting')).lower()}")
            found, value = a.get("greeting")
            emit(f"get greeting found={str(found).lower()}")
        except RpcFailure as e:
            unexpected("unary", e)
        expect_failure("get <empty>", lambda: a.get(""))
        # Error details and deadlines.
        expect_failure("get __error__", lambda: a.get(ERROR_KEY))
        expect_failure("get __slow__", lambda: a.get(SLOW_KEY, timeout_ms=CLIENT_DEADLINE_MS), with_message=False)
        # Client streaming.
        try:
            emit(f"putmany count={a.put_many([('s/a1', b'x'), ('s/a2', b'y'), ('s/b1', b'z')])}")
            emit(f"putmany <none> count={a.put_many([])}")
        except RpcFailure as e:
            unexpected("putmany", e)
        expect_failure("putmany <empty>", lambda: a.put_many([("", b"x")]))
        # Server streaming.
        try:
            for prefix in ("s/a", "s/none"):
                items = a.list(prefix)
                emit(f"list {prefix} count={len(items)}" + "".join(f" {k}={format_value(v)}" for k, v in items))
        except RpcFailure as e:
            unexpected("list", e)
        expect_failure("list __error__", lambda: a.list(ERROR_KEY))
        # Bidi, half-duplex: send every request, half-close, then read.
        try:
            events = watch_half_duplex(a, ["s/a", "s/b"])
            emit(f"watch s/a,s/b events={len(events)}" + "".join(f" {format_event(x)}" for x in events))
        except RpcFailure as e:
            unexpected("watch", e)
        expect_failure("watch s/a,__error__", lambda: watch_half_duplex(a, ["s/a", ERROR_KEY]))
        # Bidi, full-duplex (HTTP/2 only).
        if http == "2":
            try:
                events = watch_live(a)
                emit("watch-live s/a events=" + str(len(events)) + "".join(f" {format_event(x)}" for x in events))
            except RpcFailure as e:
                unexpected("watch-live", e)
        else:
            emit(WATCH_LIVE_H1)
        # Cleanup, so that the scenario can run again on the same server.
        try:
            existed = [a.delete(k) for k in ("s/a1", "s/a2", "s/b1")]
            emit(f"cleanup deleted={sum(existed)}")
            emit(f"list s/ count={len(a.list('s/'))}")
        except RpcFailure as e:
            unexpected("cleanup", e)
    except _Stop:
        pass
    if lines != expected:
        ok = False
    return lines, ok


def watch_half_duplex(a: Adapter, prefixes: list[str]) -> list[Event]:
    call = a.watch()
    events: list[Event] = []
    try:
        for p in prefixes:
            call.send(p)
        call.close_send()
        while True:
            ev = call.recv()
            if ev is None:
                return events
            events.append(ev)
    except RpcFailure as e:
        e.received = events + e.received
        raise
    finally:
        call.cancel()


def watch_live(a: Adapter) -> list[Event]:
    """Watch s/a; read the 2 replayed events; Put s/a3 (another call) and read its event; Delete
    s/a3 and read its event; half-close; the server ends the stream OK."""
    call = a.watch()
    events: list[Event] = []

    def recv_one() -> None:
        ev = call.recv()
        if ev is None:
            raise RpcFailure("internal", f"watch stream ended early after {len(events)} events", [], [])
        events.append(ev)

    try:
        call.send("s/a")
        recv_one()
        recv_one()
        a.put("s/a3", b"w")
        recv_one()
        a.delete("s/a3")
        recv_one()
        call.close_send()
        extra = call.recv()
        if extra is not None:
            raise RpcFailure("internal", f"unexpected event after half-close: {format_event(extra)}", [], [])
        return events
    except RpcFailure as e:
        e.received = events + e.received
        raise
    finally:
        call.cancel()
