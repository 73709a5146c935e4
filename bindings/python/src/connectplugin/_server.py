"""The server: unary handlers written in Python, run on the library's handler threads.

Callbacks follow wasmtime-py's slab pattern: the Python callable lives in the module-level registry
``_HANDLERS`` under an integer key, and that integer is the ``user_data`` given to the library. One
module-level CFUNCTYPE trampoline serves every handler and one module-level finalizer removes the
registry entry when the library lets go of ``user_data``. Both objects live as long as the module, so
ctypes never collects a callback the library may still call.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from ctypes import POINTER, byref, c_size_t, c_void_p
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _ffi
from ._error import Code, ConnectPluginError, RPCError, Status, check
from ._metadata import add_pairs, first, read_metadata

logger = logging.getLogger("connectplugin")

Handler = Callable[[bytes, "CallContext"], Union[bytes, bytearray, memoryview]]

# ---------------------------------------------------------------------------------------------------
# Registry (slab): integer user_data -> Python handler
# ---------------------------------------------------------------------------------------------------

_HANDLERS: Dict[int, Tuple[Handler, str]] = {}
_HANDLERS_LOCK = threading.Lock()
_NEXT_KEY = itertools.count(1)  # 0 would arrive as None (a NULL void *)

_local = threading.local()


def _registry_put(fn: Handler, procedure: str) -> int:
    with _HANDLERS_LOCK:
        key = next(_NEXT_KEY)
        _HANDLERS[key] = (fn, procedure)
    return key


def _registry_size() -> int:
    with _HANDLERS_LOCK:
        return len(_HANDLERS)


def _finalize(user_data: Optional[int]) -> None:
    try:
        with _HANDLERS_LOCK:
            _HANDLERS.pop(int(user_data or 0), None)
    except BaseException:  # never let anything escape into the library
        pass


def _in_handler() -> bool:
    return getattr(_local, "depth", 0) > 0


class CallContext:
    """What a handler knows about its call. Valid only while the handler runs."""

    __slots__ = ("_call", "procedure", "codec", "headers")

    def __init__(self, call: Any) -> None:
        self._call = call
        self.procedure: str = _ffi.decode_str(_ffi.connectplugin_call_procedure(call))
        self.codec: str = _ffi.decode_str(_ffi.connectplugin_call_codec(call))
        self.headers: List[Tuple[str, bytes]] = read_metadata(_ffi.connectplugin_call_request_headers(call))

    def _ptr(self) -> Any:
        c = self._call
        if c is None:
            raise ValueError("CallContext already closed (the handler has returned)")
        return c

    def header(self, key: str) -> Optional[bytes]:
        """The first request header ``key`` (case-insensitive), or None."""
        return first(self.headers, key)

    @property
    def timeout_remaining_ms(self) -> Optional[int]:
        """Milliseconds left until the deadline (0 once passed), or None if the client set none."""
        v = int(_ffi.connectplugin_call_timeout_remaining_ms(self._ptr()))
        return None if v < 0 else v

    @property
    def is_done(self) -> bool:
        """True once the call can no longer be answered (deadline passed, client gone, stopping)."""
        return bool(_ffi.connectplugin_call_is_done(self._ptr()))

    def add_response_header(self, key: str, value: Union[bytes, str]) -> None:
        add_pairs(_ffi.connectplugin_call_add_response_header, self._ptr(), [(key, value)])

    def add_response_trailer(self, key: str, value: Union[bytes, str]) -> None:
        add_pairs(_ffi.connectplugin_call_add_response_trailer, self._ptr(), [(key, value)])


def _finish_status(st: int, err: Any, what: str, procedure: str) -> None:
    try:
        check(st, err, what)
    except ConnectPluginError as e:
        if e.status == Status.CLOSED:
            logger.debug("%s: %s not delivered, the call is done: %s", procedure, what, e)
        else:
            logger.warning("%s: %s failed: %s", procedure, what, e)


def _fail(call: Any, procedure: str, code: int, message: str, details: Any = ()) -> None:
    for type_name, value in details:
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_call_add_error_detail(
            call, _ffi.as_cstr(type_name, "detail type"), _ffi.u8_ptr(value), len(value), byref(err)
        )
        _finish_status(st, err, f"adding error detail {type_name!r}", procedure)
    err = _ffi.new_error_out()
    msg = message.replace("\0", "\\0").encode("utf-8", errors="replace")
    st = _ffi.connectplugin_call_fail(call, int(code), msg, byref(err))
    _finish_status(st, err, "connectplugin_call_fail", procedure)


def _dispatch(call: Any, user_data: Optional[int]) -> None:
    with _HANDLERS_LOCK:
        entry = _HANDLERS.get(int(user_data or 0))
    if entry is None:
        _fail(call, "?", Code.INTERNAL, "connectplugin: no Python handler registered")
        return
    fn, procedure = entry
    ctx = CallContext(call)
    try:
        n = c_size_t(0)
        p = _ffi.connectplugin_call_request(call, byref(n))
        request = _ffi.read_bytes(p, n.value)
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            result = fn(request, ctx)
        finally:
            _local.depth -= 1
        if not isinstance(result, (bytes, bytearray, memoryview)):
            raise TypeError(f"handler returned {type(result).__name__}, expected bytes")
        data = bytes(result)
    except RPCError as e:
        _fail(call, procedure, e.code, e.message, e.details)
        return
    except BaseException as e:  # any other exception (even SystemExit) fails the call with INTERNAL
        logger.error("connectplugin: handler for %s raised", procedure, exc_info=True)
        text = str(e) or type(e).__name__
        _fail(call, procedure, Code.INTERNAL, text)
        return
    finally:
        ctx._call = None
    err = _ffi.new_error_out()
    st = _ffi.connectplugin_call_respond(call, _ffi.u8_ptr(data), len(data), byref(err))
    _finish_status(st, err, "connectplugin_call_respond", procedure)


def _trampoline(call: Any, user_data: Optional[int]) -> None:
    try:
        _dispatch(call, user_data)
    except BaseException:  # ctypes would print and swallow it; log instead
        try:
            logger.critical("connectplugin: unexpected error in the handler trampoline", exc_info=True)
        except BaseException:
            pass


# The two C callbacks, alive for the module's lifetime.
TRAMPOLINE = _ffi.connectplugin_unary_handler(_trampoline)
FINALIZER = _ffi.connectplugin_free_func(_finalize)

# Servers still open at exit are freed before the interpreter shuts down, so that no library thread
# calls into Python while it is being torn down.
_LIVE_SERVERS: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _close_live_servers() -> None:
    for srv in list(_LIVE_SERVERS):
        try:
            srv.close()
        except Exception:
            pass


class Server(_ffi.Managed):
    """A Connect server.

    >>> with Server() as srv:
    ...     srv.register_unary("/pkg.Svc/Echo", lambda req, ctx: req)
    ...     srv.listen_tcp("127.0.0.1:0").startswith("127.0.0.1:")
    ...     srv.start()
    ...     srv.stop(grace_ms=0)
    True
    """

    _kind = "Server"

    def __init__(self, max_message_bytes: Optional[int] = None, handler_threads: Optional[int] = None) -> None:
        opts = None
        try:
            if max_message_bytes is not None or handler_threads is not None:
                opts = _ffi.connectplugin_server_options_new()
                if not opts:
                    raise MemoryError("connectplugin_server_options_new failed")
                if max_message_bytes is not None:
                    if max_message_bytes < 0:
                        raise ValueError("max_message_bytes must be >= 0 (0 = no limit)")
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_server_options_set_max_message_bytes(
                        opts, int(max_message_bytes), byref(err)
                    )
                    check(st, err, "set_max_message_bytes")
                if handler_threads is not None:
                    if not 0 <= handler_threads <= 0xFFFFFFFF:
                        raise ValueError("handler_threads out of range")
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_server_options_set_handler_threads(
                        opts, int(handler_threads), byref(err)
                    )
                    check(st, err, "set_handler_threads")
            out = POINTER(_ffi.connectplugin_server)()
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_server_new(opts, byref(out), byref(err))
            check(st, err, "connectplugin_server_new")
            if not out:
                raise RuntimeError("connectplugin_server_new returned no server")
        finally:
            _ffi.connectplugin_server_options_free(opts)
        self._lock = threading.Lock()
        self._set_handle(out)
        _LIVE_SERVERS.add(self)

    def _delete(self, handle: Any) -> None:
        _ffi.connectplugin_server_free(handle)

    def close(self) -> None:
        """Stops the server without grace if it runs, waits for running handlers, releases every
        registered handler and frees the server. Idempotent. Not allowed inside a handler."""
        if _in_handler() and not self.closed:
            raise RuntimeError("Server.close() must not be called from a handler")
        super().close()

    def __del__(self) -> None:
        if _in_handler() and not self.closed:
            # connectplugin_server_free must not run on a handler thread; free it from another one.
            threading.Thread(target=self.close, name="connectplugin-server-free", daemon=True).start()
            return
        super().__del__()

    def _listen(self, fn: Any, address: bytes, what: str) -> str:
        h = self._ptr()
        with self._lock:
            err = _ffi.new_error_out()
            st = fn(h, address, byref(err))
            check(st, err, what)
            n = int(_ffi.connectplugin_server_address_count(h))
            addr = _ffi.connectplugin_server_address(h, n - 1) if n > 0 else None
        if addr is None:
            raise RuntimeError(f"{what} succeeded but the server reports no address")
        return _ffi.decode_str(addr)

    def listen_tcp(self, host_port: str) -> str:
        """Binds and listens on TCP "host:port" (port 0 picks one). Returns the bound address."""
        return self._listen(_ffi.connectplugin_server_listen_tcp, _ffi.as_cstr(host_port, "host_port"), "listen_tcp")

    def listen_unix(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Binds and listens on a Unix domain socket. Returns the address, "unix:/path"."""
        return self._listen(_ffi.connectplugin_server_listen_unix, _ffi.as_cstr(path, "path"), "listen_unix")

    @property
    def addresses(self) -> List[str]:
        """The bound address of every listener."""
        h = self._ptr()
        out = []
        for i in range(int(_ffi.connectplugin_server_address_count(h))):
            a = _ffi.connectplugin_server_address(h, i)
            if a is not None:
                out.append(_ffi.decode_str(a))
        return out

    def register_unary(self, procedure: str, fn: Handler) -> None:
        """Registers ``fn(request: bytes, ctx: CallContext) -> bytes`` for ``procedure``
        ("/package.Service/Method"). Allowed before start only.

        Raise :class:`RPCError` in ``fn`` to fail the call with a code, message and details; any other
        exception fails it with INTERNAL (and is logged)."""
        if not callable(fn):
            raise TypeError("handler must be callable")
        h = self._ptr()
        proc = _ffi.as_cstr(procedure, "procedure")
        key = _registry_put(fn, str(procedure))
        err = _ffi.new_error_out()
        # On failure the library calls FINALIZER (removing the entry) before returning.
        st = _ffi.connectplugin_server_register_unary(h, proc, TRAMPOLINE, c_void_p(key), FINALIZER, byref(err))
        check(st, err, "register_unary")

    def start(self) -> None:
        """Starts accepting connections on every listener."""
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_server_start(self._ptr(), byref(err))
        check(st, err, "start")

    def stop(self, grace_ms: int = 5000) -> None:
        """Graceful stop: calls in flight may finish for up to ``grace_ms``; blocks until done."""
        if _in_handler():
            raise RuntimeError("Server.stop() must not be called from a handler")
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_server_stop(self._ptr(), int(grace_ms), byref(err))
        check(st, err, "stop")
