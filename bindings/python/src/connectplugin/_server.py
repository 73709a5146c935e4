"""The server: unary and streaming handlers written in Python, run on the library's handler threads.

Callbacks follow wasmtime-py's slab pattern: the Python callable lives in the module-level registry
``_HANDLERS`` under an integer key, and that integer is the ``user_data`` given to the library. One
module-level CFUNCTYPE trampoline serves every handler and one module-level finalizer removes the
registry entry when the library lets go of ``user_data``. Both objects live as long as the module, so
ctypes never collects a callback the library may still call.

Streaming handlers get one callback per call (never one per message): the handler's thread pulls
request messages with :meth:`ServerStream.receive` and pushes responses with :meth:`ServerStream.send`,
both blocking calls that release the GIL.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from ctypes import POINTER, byref, c_size_t, c_uint8, c_void_p
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from . import _ffi, _log
from ._error import Code, ConnectPluginError, MethodKind, RPCError, Status, _normalize_details, check
from ._metadata import Peer, add_pairs, first, read_metadata
from ._tls import PEM, PathLike, TLSOptions

logger = logging.getLogger("connectplugin")

Handler = Callable[[bytes, "CallContext"], Union[bytes, bytearray, memoryview]]
StreamHandler = Callable[["ServerStream"], Any]

# ---------------------------------------------------------------------------------------------------
# Registry (slab): integer user_data -> Python handler
# ---------------------------------------------------------------------------------------------------

_HANDLERS: Dict[int, Tuple[Any, str]] = {}
_HANDLERS_LOCK = threading.Lock()
_NEXT_KEY = itertools.count(1)  # 0 would arrive as None (a NULL void *)

_local = threading.local()


def _registry_put(fn: Any, procedure: str) -> int:
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

    __slots__ = ("_call", "procedure", "codec", "protocol", "headers", "peer")

    def __init__(self, call: Any) -> None:
        self._call = call
        self.procedure: str = _ffi.decode_str(_ffi.connectplugin_call_procedure(call))
        self.codec: str = _ffi.decode_str(_ffi.connectplugin_call_codec(call))
        #: "connect", "grpc" or "grpcweb".
        self.protocol: str = _ffi.decode_str(_ffi.connectplugin_call_protocol(call))
        self.headers: List[Tuple[str, bytes]] = read_metadata(_ffi.connectplugin_call_request_headers(call))
        #: The verified client certificate (mTLS) as a :class:`Peer`, or None without one.
        self.peer: Optional[Peer] = Peer.from_ptr(_ffi.connectplugin_call_peer(call))

    @property
    def request_headers(self) -> List[Tuple[str, bytes]]:
        """The request headers (same as ``headers``)."""
        return self.headers

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


# ---------------------------------------------------------------------------------------------------
# Streaming handlers
# ---------------------------------------------------------------------------------------------------


class ServerStream:
    """One streaming call as its handler sees it (client, server or bidi streaming).

    Valid only while the handler runs; afterwards every method raises ``ValueError``. Copied
    attributes: ``procedure``, ``codec`` ("proto"/"json"), ``protocol`` ("connect"/"grpc"/"grpcweb"),
    ``kind`` (:class:`MethodKind`), ``headers``/``request_headers`` (list of (key, bytes)) and
    ``peer`` (:class:`Peer` or None).

    Reading: ``for message in stream:`` yields each request message (``bytes``) until the client
    finishes sending; ``receive()`` returns one message or ``None`` at the end. A failed request
    stream (client gone: CANCELED, deadline: DEADLINE_EXCEEDED, oversized message:
    RESOURCE_EXHAUSTED, …) raises :class:`RPCError`. Server-streaming methods receive exactly one
    message (``stream.receive()``).

    Writing: ``send(bytes)`` sends one response message (blocks while the client is behind; raises
    :class:`ConnectPluginError` with status CLOSED once the call is over), ``send_headers()`` sends
    the response headers early, ``add_response_header``/``add_response_trailer`` add metadata,
    ``fail(code, message, details)`` ends the call with an error and ``finish()`` with OK (returning
    from the handler does the same).

    Threads: use it from the handler's thread and, for full-duplex bidi, from **one** more thread
    that receives while the handler's thread sends (or the reverse), as the C header allows.
    Receives never overlap each other, nor sends each other (the binding serializes them). The C
    contract says the handler must not return while another thread still uses the stream: after
    the handler returns the binding refuses new calls (``ValueError``) and waits until calls still
    running on other threads have returned before it gives the stream back to the library.
    """

    __slots__ = (
        "_stream",
        "_cond",
        "_inflight",
        "_recv_lock",
        "_send_lock",
        "_eof",
        "procedure",
        "codec",
        "protocol",
        "kind",
        "headers",
        "peer",
    )

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._cond = threading.Condition()
        self._inflight = 0
        self._recv_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._eof = False
        self.procedure: str = _ffi.decode_str(_ffi.connectplugin_stream_procedure(stream))
        self.codec: str = _ffi.decode_str(_ffi.connectplugin_stream_codec(stream))
        self.protocol: str = _ffi.decode_str(_ffi.connectplugin_stream_protocol(stream))
        self.kind: MethodKind = MethodKind(int(_ffi.connectplugin_stream_kind(stream)))
        self.headers: List[Tuple[str, bytes]] = read_metadata(_ffi.connectplugin_stream_request_headers(stream))
        self.peer: Optional[Peer] = Peer.from_ptr(_ffi.connectplugin_stream_peer(stream))

    # -- handle bookkeeping: no library call may run on the stream after the handler returned ------

    def _enter(self) -> Any:
        with self._cond:
            s = self._stream
            if s is None:
                raise ValueError("ServerStream already closed (the handler has returned)")
            self._inflight += 1
            return s

    def _leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def _close(self, procedure: str) -> None:
        """Handler thread, after the handler returned: no new calls; wait for calls still running
        on other threads (they end when the client half-closes, cancels or the deadline passes)."""
        with self._cond:
            self._stream = None
            waited = 0.0
            while self._inflight:
                if not self._cond.wait(5.0):
                    waited += 5.0
                    logger.warning(
                        "%s: the handler returned while another thread is still inside a ServerStream call; "
                        "waiting for it (%.0f s so far)",
                        procedure,
                        waited,
                    )

    @property
    def closed(self) -> bool:
        return self._stream is None

    # -- metadata about the call -------------------------------------------------------------------

    @property
    def request_headers(self) -> List[Tuple[str, bytes]]:
        """The request headers (same as ``headers``)."""
        return self.headers

    def header(self, key: str) -> Optional[bytes]:
        """The first request header ``key`` (case-insensitive), or None."""
        return first(self.headers, key)

    @property
    def timeout_remaining_ms(self) -> Optional[int]:
        """Milliseconds left until the deadline (0 once passed), or None if the client set none."""
        s = self._enter()
        try:
            v = int(_ffi.connectplugin_stream_timeout_remaining_ms(s))
        finally:
            self._leave()
        return None if v < 0 else v

    @property
    def is_done(self) -> bool:
        """True once the call is over (finished, deadline passed, client gone, server stopping)."""
        s = self._enter()
        try:
            return bool(_ffi.connectplugin_stream_is_done(s))
        finally:
            self._leave()

    # -- reading -----------------------------------------------------------------------------------

    def receive(self) -> Optional[bytes]:
        """The next request message (bytes, copied), or None once the client finished sending.
        Blocks (without the GIL). Raises :class:`RPCError` if the request stream failed."""
        with self._recv_lock:
            s = self._enter()
            try:
                data = POINTER(c_uint8)()
                n = c_size_t(0)
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_stream_receive(s, byref(data), byref(n), byref(err))
                if st == _ffi.EOF:
                    check(Status.OK, err)  # frees a (never expected) error object
                    self._eof = True
                    return None
                check(st, err, "receive")
                # Borrowed until the next receive: copy now.
                return _ffi.read_bytes(data, n.value)
            finally:
                self._leave()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            msg = self.receive()
            if msg is None:
                return
            yield msg

    # -- writing -----------------------------------------------------------------------------------

    def _send_side(self, fn: Any, *args: Any, what: str) -> None:
        with self._send_lock:
            s = self._enter()
            try:
                err = _ffi.new_error_out()
                st = fn(s, *args, byref(err))
                check(st, err, what)
            finally:
                self._leave()

    def send(self, message: Union[bytes, bytearray, memoryview]) -> None:
        """Sends one response message (the response headers go first, with the first message).
        Blocks while the client is behind. Raises :class:`ConnectPluginError` with status CLOSED
        when the call is over (client gone, deadline) and STATE after ``fail``/``finish``."""
        data = _ffi.as_bytes(message, "message")
        self._send_side(_ffi.connectplugin_stream_send, _ffi.u8_ptr(data), len(data), what="send")

    def send_headers(self) -> None:
        """Sends the response headers now, before any message."""
        self._send_side(_ffi.connectplugin_stream_send_headers, what="send_headers")

    def add_response_header(self, key: str, value: Union[bytes, str]) -> None:
        """Adds a response header; only before the headers are sent (with the first message or
        ``send_headers()``), afterwards :class:`ConnectPluginError` with status STATE."""
        k = _ffi.as_cstr(key, "header key")
        v = _ffi.as_bytes(value, "header value")
        self._send_side(_ffi.connectplugin_stream_add_response_header, k, _ffi.u8_ptr(v), len(v),
                        what="add_response_header")

    def add_response_trailer(self, key: str, value: Union[bytes, str]) -> None:
        """Adds a response trailer (sent when the call ends, with OK or an error)."""
        k = _ffi.as_cstr(key, "trailer key")
        v = _ffi.as_bytes(value, "trailer value")
        self._send_side(_ffi.connectplugin_stream_add_response_trailer, k, _ffi.u8_ptr(v), len(v),
                        what="add_response_trailer")

    def add_error_detail(self, type_name: Any, value: Any = None) -> None:
        """Adds an error detail for ``fail``: ``(type_name, serialized bytes)``, e.g.
        ``("google.rpc.ErrorInfo", info.SerializeToString())``, or one protobuf message."""
        detail = (type_name, value) if value is not None else type_name
        for t, v in _normalize_details([detail]):
            self._send_side(_ffi.connectplugin_stream_add_error_detail, _ffi.as_cstr(t, "detail type"),
                            _ffi.u8_ptr(v), len(v), what="add_error_detail")

    def fail(self, code: int, message: str = "", details: Optional[Iterable[Any]] = None) -> None:
        """Ends the call with ``code`` (1–16), ``message`` and ``details`` (``(type, bytes)`` pairs
        or protobuf messages), after the messages already sent."""
        for t, v in _normalize_details(details):
            self.add_error_detail(t, v)
        msg = str(message).replace("\0", "\\0").encode("utf-8", errors="replace")
        self._send_side(_ffi.connectplugin_stream_fail, int(code), msg, what="fail")

    def finish(self) -> None:
        """Ends the call with OK now (returning from the handler does the same)."""
        self._send_side(_ffi.connectplugin_stream_finish, what="finish")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"ServerStream({self.procedure!r}, {self.kind.name}, {self.protocol}, {self.codec}, {state})"


def _stream_fail(stream: ServerStream, procedure: str, code: int, message: str, details: Any = ()) -> None:
    try:
        stream.fail(code, message, details)
    except ConnectPluginError as e:
        if e.status in (Status.CLOSED, Status.STATE):
            logger.debug("%s: fail not delivered, the call is over: %s", procedure, e)
        else:
            logger.warning("%s: fail failed: %s", procedure, e)


def _send_result(stream: ServerStream, result: Any) -> None:
    """Sends what the handler returned: None (nothing), one bytes-like message, or an iterable
    (e.g. a generator) of bytes-like messages."""
    if result is None:
        return
    if isinstance(result, (bytes, bytearray, memoryview)):
        stream.send(result)
        return
    if isinstance(result, str) or not hasattr(result, "__iter__"):
        raise TypeError(f"stream handler returned {type(result).__name__}, expected None, bytes or an iterable of bytes")
    for item in result:
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream handler produced {type(item).__name__}, expected bytes")
        stream.send(item)


def _dispatch_stream(handle: Any, user_data: Optional[int]) -> None:
    with _HANDLERS_LOCK:
        entry = _HANDLERS.get(int(user_data or 0))
    if entry is None:
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_stream_fail(handle, int(Code.INTERNAL), b"connectplugin: no Python handler registered",
                                            byref(err))
        _finish_status(st, err, "connectplugin_stream_fail", "?")
        return
    fn, procedure = entry
    stream = ServerStream(handle)
    try:
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            _send_result(stream, fn(stream))
        finally:
            _local.depth -= 1
    except RPCError as e:
        _stream_fail(stream, procedure, e.code, e.message, e.details)
    except ConnectPluginError as e:
        if e.status in (Status.CLOSED,):
            # The call ended under the handler (client gone, deadline, server stopping).
            logger.debug("%s: the call ended while the handler ran: %s", procedure, e)
        else:
            logger.error("connectplugin: stream handler for %s raised", procedure, exc_info=True)
            _stream_fail(stream, procedure, Code.INTERNAL, str(e) or type(e).__name__)
    except BaseException as e:  # any other exception (even SystemExit) fails the call with INTERNAL
        logger.error("connectplugin: stream handler for %s raised", procedure, exc_info=True)
        _stream_fail(stream, procedure, Code.INTERNAL, str(e) or type(e).__name__)
    finally:
        stream._close(procedure)


def _stream_trampoline(handle: Any, user_data: Optional[int]) -> None:
    try:
        _dispatch_stream(handle, user_data)
    except BaseException:  # ctypes would print and swallow it; log instead
        try:
            logger.critical("connectplugin: unexpected error in the stream handler trampoline", exc_info=True)
        except BaseException:
            pass


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
STREAM_TRAMPOLINE = _ffi.connectplugin_stream_handler(_stream_trampoline)
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

    def __init__(
        self,
        max_message_bytes: Optional[int] = None,
        handler_threads: Optional[int] = None,
        *,
        max_streams_per_connection: Optional[int] = None,
        max_streams_per_peer: Optional[int] = None,
        max_streams: Optional[int] = None,
        idle_thread_timeout_ms: Optional[int] = None,
    ) -> None:
        """``max_streams_per_connection`` (default 128), ``max_streams_per_peer`` (default 512, over all
        of a remote host's connections) and ``max_streams`` (default 768) bound the streaming handlers
        running at once; a stream beyond a bound fails at once with RESOURCE_EXHAUSTED, and unary calls
        never wait behind streams. Handler threads started beyond ``handler_threads`` exit after
        ``idle_thread_timeout_ms`` (default 10000) without work."""
        opts = None
        limits = (max_streams_per_connection, max_streams_per_peer, max_streams)
        try:
            if (
                max_message_bytes is not None
                or handler_threads is not None
                or any(v is not None for v in limits)
                or idle_thread_timeout_ms is not None
            ):
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
                if any(v is not None for v in limits):
                    if not all(v is None or 1 <= v <= 1 << 20 for v in limits):
                        raise ValueError("stream limits must be 1 to 1048576")
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_server_options_set_stream_limits(
                        opts, *[int(v or 0) for v in limits], byref(err)
                    )
                    check(st, err, "set_stream_limits")
                if idle_thread_timeout_ms is not None:
                    if not 0 <= idle_thread_timeout_ms <= 0xFFFFFFFF:
                        raise ValueError("idle_thread_timeout_ms out of range")
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_server_options_set_idle_thread_timeout_ms(
                        opts, int(idle_thread_timeout_ms), byref(err)
                    )
                    check(st, err, "set_idle_thread_timeout_ms")
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

    def listen_tls(
        self,
        host_port: str,
        tls: Optional[TLSOptions] = None,
        *,
        cert_file: Optional[PathLike] = None,
        key_file: Optional[PathLike] = None,
        cert_pem: Optional[PEM] = None,
        key_pem: Optional[PEM] = None,
        client_ca_file: Optional[PathLike] = None,
        client_ca_pem: Optional[PEM] = None,
        require_client_cert: Optional[bool] = None,
    ) -> str:
        """Binds and listens on TCP "host:port", speaking TLS only: HTTP/2 or HTTP/1.1 by ALPN, every
        protocol. Returns the bound address.

        Give either ``tls`` (a :class:`TLSOptions` with a certificate) or the keyword arguments: the
        certificate chain and key as files (``cert_file``, ``key_file``) or PEM bytes (``cert_pem``,
        ``key_pem``), and for mutual TLS the CA that signs client certificates (``client_ca_file`` or
        ``client_ca_pem``). ``require_client_cert`` defaults to True when a client CA is given
        (clients without a certificate signed by it get no RPC served). Handlers see the client
        certificate as ``ctx.peer``/``stream.peer``. A bad certificate or key raises
        :class:`ConnectPluginError` (INVALID_ARGUMENT) with the reason.
        """
        if tls is not None:
            if any(v is not None for v in (cert_file, key_file, cert_pem, key_pem, client_ca_file, client_ca_pem,
                                           require_client_cert)):
                raise ValueError("give either tls=TLSOptions(...) or the keyword arguments, not both")
            opts = tls
        else:
            has_ca = client_ca_file is not None or client_ca_pem is not None
            opts = TLSOptions(
                cert_file=cert_file,
                key_file=key_file,
                cert_pem=cert_pem,
                key_pem=key_pem,
                ca_file=client_ca_file,
                ca_pem=client_ca_pem,
                require_client_cert=has_ca if require_client_cert is None else require_client_cert,
            )
        if not opts.has_certificate:
            raise ValueError("a TLS listener needs a certificate and a key (cert_file/key_file or cert_pem/key_pem)")
        addr = _ffi.as_cstr(host_port, "host_port")
        h = self._ptr()
        with opts._native() as native:
            with self._lock:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_server_listen_tls(h, addr, native, byref(err))
                check(st, err, "listen_tls")
                n = int(_ffi.connectplugin_server_address_count(h))
                a = _ffi.connectplugin_server_address(h, n - 1) if n > 0 else None
        if a is None:
            raise RuntimeError("listen_tls succeeded but the server reports no address")
        return _ffi.decode_str(a)

    def listen_unix(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Binds and listens on a Unix domain socket. Returns the address, "unix:/path"."""
        return self._listen(_ffi.connectplugin_server_listen_unix, _ffi.as_cstr(path, "path"), "listen_unix")

    def listen_inprocess(self, name: str) -> str:
        """Listens under ``name`` inside this process: a ``Client("inproc://NAME")`` of this process
        reaches the server over an in-memory pipe, with no socket. ``name`` is 1-255 letters,
        digits and ``-._~``; one server per name at a time. Returns "inproc://NAME"."""
        return self._listen(_ffi.connectplugin_server_listen_inprocess, _ffi.as_cstr(name, "name"), "listen_inprocess")

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

    @property
    def handler_thread_count(self) -> int:
        """The handler threads alive now: ``handler_threads`` when idle, more while handlers are busy,
        back down after the idle thread timeout."""
        return int(_ffi.connectplugin_server_handler_thread_count(self._ptr()))

    def register_unary(self, procedure: str, fn: Handler) -> None:
        """Registers ``fn(request: bytes, ctx: CallContext) -> bytes`` for ``procedure``
        ("/package.Service/Method"). Allowed before start only.

        Raise :class:`RPCError` in ``fn`` to fail the call with a code, message and details; any other
        exception fails it with INTERNAL (and is logged)."""
        self._register_unary(procedure, fn, _ffi.connectplugin_server_register_unary, "register_unary")

    def register_unary_inline(self, procedure: str, fn: Handler) -> None:
        """Registers a quick, non-blocking unary ``fn(request: bytes, ctx: CallContext) -> bytes``
        that runs inline on the library's I/O thread that read the request, not on a handler
        thread: no thread hand-off, the lowest latency. Otherwise as :meth:`register_unary` (every
        protocol; the server's interceptors wrap it and run inline with it). Allowed before start.

        The I/O thread serves many connections, so ``fn`` must return quickly and never block: fit
        for in-memory work (a dict lookup, a short lock); no file or network I/O, no ``time.sleep``,
        no client calls, no ``server.stop``. It takes the GIL like every
        Python handler, and while it waits for it (another Python thread runs) or runs, every
        connection on that loop waits too: when the process runs long CPU-bound Python work in other
        threads, or the handler does more than a few microseconds of work, use
        :meth:`register_unary`."""
        self._register_unary(procedure, fn, _ffi.connectplugin_server_register_unary_inline,
                             "register_unary_inline")

    def _register_unary(self, procedure: str, fn: Handler, register: Any, what: str) -> None:
        if not callable(fn):
            raise TypeError("handler must be callable")
        h = self._ptr()
        proc = _ffi.as_cstr(procedure, "procedure")
        key = _registry_put(fn, str(procedure))
        err = _ffi.new_error_out()
        # On failure the library calls FINALIZER (removing the entry) before returning.
        st = register(h, proc, TRAMPOLINE, c_void_p(key), FINALIZER, byref(err))
        check(st, err, what)

    def register_stream(self, procedure: str, kind: Union[MethodKind, int, str], fn: StreamHandler) -> None:
        """Registers a streaming handler ``fn(stream: ServerStream)`` for ``procedure``
        ("/package.Service/Method"). ``kind`` is ``MethodKind.CLIENT_STREAM``, ``SERVER_STREAM`` or
        ``BIDI_STREAM`` (or "client_stream", "server_stream", "bidi_stream"). Allowed before start only.

        ``fn`` runs once per call on a library handler thread; it reads request messages from the
        stream (``for msg in stream`` or ``stream.receive()``) and sends responses with
        ``stream.send(msg)``. It may also return the responses: one ``bytes`` message (handy for
        client streaming) or an iterable of ``bytes`` (e.g. be a generator). Returning ends the call
        with OK. Raise :class:`RPCError` to fail the call with its code, message and details (after
        the messages already sent); any other exception fails it with INTERNAL (and is logged).
        Every protocol is served (Connect, gRPC, gRPC-Web; HTTP/1.1 and HTTP/2; bidi over HTTP/1.1 is
        half-duplex)."""
        if not callable(fn):
            raise TypeError("handler must be callable")
        k = MethodKind.parse(kind)
        h = self._ptr()
        proc = _ffi.as_cstr(procedure, "procedure")
        key = _registry_put(fn, str(procedure))
        err = _ffi.new_error_out()
        # On failure the library calls FINALIZER (removing the entry) before returning.
        st = _ffi.connectplugin_server_register_stream(
            h, proc, int(k), STREAM_TRAMPOLINE, c_void_p(key), FINALIZER, byref(err)
        )
        check(st, err, "register_stream")

    def add_interceptor(self, interceptor: Any, procedure: Optional[str] = None) -> None:
        """Adds ``interceptor`` (an :class:`Interceptor`, or any object with ``start(call)`` and/or
        ``end(call, error)``) around every call of the server, or of one ``procedure`` only (after
        the server-wide ones). Start hooks run in the order added, end hooks in reverse. Allowed
        before start only. Hooks are per call; ``message`` hooks only with ``observe_messages``."""
        from ._interceptor import new_native

        h = self._ptr()
        proc = None if procedure is None else _ffi.as_cstr(procedure, "procedure")
        native = new_native(interceptor)
        try:
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_server_add_interceptor(h, proc, native, byref(err))
            check(st, err, "add_interceptor")
        finally:
            _ffi.connectplugin_interceptor_free(native)

    def set_no_side_effects(self, procedure: str) -> None:
        """Marks the registered unary ``procedure`` as free of side effects: it then also accepts
        Connect GET requests (cacheable). Allowed before start only."""
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_server_set_no_side_effects(self._ptr(), _ffi.as_cstr(procedure, "procedure"),
                                                           byref(err))
        check(st, err, "set_no_side_effects")

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

    def serve_plugin(
        self,
        cookie_key: str,
        cookie_value: str,
        plugins: Dict[int, Iterable[Union[str, Tuple[str, str, str]]]],
        network: str = "unix",
        grace_ms: Optional[int] = None,
        log_level: Optional[int] = 5,
        logger: Optional[Callable[..., None]] = None,
        tls: Optional[Any] = None,
        listen: Optional[str] = None,
    ) -> int:
        """Serves this server as a plugin that an unmodified HashiCorp go-plugin host (or a
        connectplugin host) launches, and blocks until it stopped: it checks the magic cookie,
        negotiates the app version, listens (``network``: "unix", an owner-only socket, or "tcp" on
        127.0.0.1), prints the handshake line and serves until the host calls Shutdown, SIGTERM or
        SIGINT arrives, or the host is gone.

        ``plugins`` maps each app protocol version to its plugins: names, or
        ``(name, version, service_path)`` tuples. Register the handlers first; do not listen or
        start. Call it once, from the main thread, and pass the result to ``sys.exit``: 0 after a
        clean stop, 2 when a person ran the script (the message is on stderr), 1 when serving could
        not start (the reason is on stderr). SIGTERM and SIGINT are handled by the library while it
        serves (no KeyboardInterrupt).

        Logging: while it serves, a :class:`PluginLogHandler` on the root logger turns every
        ``logging`` record into an hclog JSON line on the real stderr, which the host parses (its
        ``extra`` attributes become fields), and the root level is ``log_level`` (default 5, trace,
        go-plugin's; None: leave the root logger alone, no handler). ``logger(LogRecord)`` receives
        the runtime's own records instead of hclog lines. ``tls`` (a :class:`TLSOptions`
        with a certificate and key) is the plugin's own TLS, used instead of AutoMTLS (go-plugin's
        TLSProvider).

        ``listen`` ("host:port", port 0 picks one, or "unix:PATH") is remote mode: a standalone
        network service that hosts reach by URL (``PluginClient(url=...)``); it prints "listening on
        ADDR" instead of the handshake line and needs no cookie in its environment (the Handshake RPC
        checks it). Without it, the CONNECTPLUGIN_LISTEN environment variable, if set, gives the
        address. TLS: ``tls``, or else the PEM files named by CONNECTPLUGIN_TLS_CERT and
        CONNECTPLUGIN_TLS_KEY (with CONNECTPLUGIN_TLS_CLIENT_CA: mutual TLS); hosts then use an
        https:// URL."""
        return self._serve_plugin(cookie_key, cookie_value, plugins, network, grace_ms, listen, None,
                                  tls=tls, logger=logger, log_level=log_level)  # type: ignore[return-value]

    def serve_plugin_in_process(self, cookie_key: str, cookie_value: str,
                                plugins: Dict[int, Iterable[Union[str, Tuple[str, str, str]]]], name: str) -> str:
        """Serves this server as an in-process plugin under ``name`` (letters, digits and -._~) and
        returns at once with its URL, ``"inproc://NAME"``: a host in this process reaches it with
        ``PluginClient(url=..., ...)`` and calls it like a launched plugin, with no socket. Register
        the handlers first; do not listen or start. Stop it with :meth:`stop` or :meth:`close`."""
        self._serve_plugin(cookie_key, cookie_value, plugins, "unix", None, None, name)
        return "inproc://" + name

    def _serve_plugin(self, cookie_key: str, cookie_value: str, plugins: Dict[int, Iterable[Union[str, Tuple[str, str, str]]]],
                      network: str, grace_ms: Optional[int], listen: Optional[str], in_process: Optional[str],
                      tls: Optional[Any] = None, logger: Optional[Callable[..., None]] = None,
                      log_level: Optional[int] = None) -> Optional[int]:
        err = _ffi.new_error_out()
        config = POINTER(_ffi.connectplugin_plugin_config)()
        st = _ffi.connectplugin_plugin_config_new(_ffi.as_cstr(cookie_key, "cookie_key"),
                                                  _ffi.as_cstr(cookie_value, "cookie_value"), byref(config), byref(err))
        check(st, err, "serve_plugin")
        try:
            for version in sorted(plugins):
                for p in plugins[version]:
                    name, ver, path = (p, "", "") if isinstance(p, str) else p
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_plugin_config_add_plugin(
                        config, int(version), _ffi.as_cstr(name, "plugin name"), _ffi.as_cstr(ver, "version"),
                        _ffi.as_cstr(path, "service_path"), byref(err))
                    check(st, err, "serve_plugin")
            err = _ffi.new_error_out()
            check(_ffi.connectplugin_plugin_config_set_network(config, _ffi.as_cstr(network, "network"), byref(err)),
                  err, "serve_plugin")
            if grace_ms is not None:
                err = _ffi.new_error_out()
                check(_ffi.connectplugin_plugin_config_set_grace_ms(config, int(grace_ms), byref(err)), err,
                      "serve_plugin")
            if tls is not None:
                with tls._native() as h:
                    err = _ffi.new_error_out()
                    check(_ffi.connectplugin_plugin_config_set_tls(config, h, byref(err)), err, "serve_plugin")
            if logger is not None:
                fn = logger
                key = _log.register(lambda _plugin, r: fn(r))  # dropped by the library's finalizer
                err = _ffi.new_error_out()
                check(_ffi.connectplugin_plugin_config_set_logger(config, _log.LOG_TRAMPOLINE, c_void_p(key), _log.FINALIZER,
                                                                  byref(err)), err, "serve_plugin")
            if listen:
                err = _ffi.new_error_out()
                check(_ffi.connectplugin_plugin_config_set_listen_address(config, _ffi.as_cstr(listen, "listen"), byref(err)),
                      err, "serve_plugin")
            if in_process is not None:
                err = _ffi.new_error_out()
                check(_ffi.connectplugin_plugin_serve_in_process(self._ptr(), config, _ffi.as_cstr(in_process, "name"),
                                                                 byref(err)), err, "serve_plugin_in_process")
                return None
            root = logging.getLogger()
            handler = None
            saved_level = root.level
            if log_level is not None:
                handler = _log.PluginLogHandler()
                root.addHandler(handler)
                root.setLevel(log_level)
            try:
                return int(_ffi.connectplugin_plugin_serve(self._ptr(), config))
            finally:
                if handler is not None:
                    root.removeHandler(handler)
                    root.setLevel(saved_level)
        finally:
            _ffi.connectplugin_plugin_config_free(config)

    HEALTHY = 1
    DEGRADED = 2
    UNHEALTHY = 3

    def set_plugin_health(self, state: int, reason: str = "") -> None:
        """Sets the health the plugin reports while :meth:`serve_plugin` runs (from any thread):
        ``Server.HEALTHY`` or ``DEGRADED`` answer SERVING on grpc.health.v1, ``UNHEALTHY``
        NOT_SERVING; watchers see the change at once."""
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_plugin_set_health(self._ptr(), int(state), _ffi.as_cstr(reason, "reason"), byref(err))
        check(st, err, "set_plugin_health")
