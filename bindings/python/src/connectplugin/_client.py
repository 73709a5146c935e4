"""The client: blocking unary calls and streams (the GIL is released while a call blocks)."""

from __future__ import annotations

import logging
import threading
import weakref
from ctypes import POINTER, byref, c_size_t, c_uint8
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

from . import _ffi
from ._error import Code, ConnectPluginError, MethodKind, RPCError, Status, check
from ._metadata import MetadataLike, add_pairs, first, read_metadata
from ._tls import PEM, PathLike, TLSOptions

logger = logging.getLogger("connectplugin")

PROTOCOLS = ("connect", "grpc", "grpcweb")

_HTTP_VERSIONS = {"1.1": 1, "2": 2, "2.0": 2, 1: 1, 2: 2}
HTTP_1_1 = 1
HTTP_2 = 2


class Response:
    """A successful unary response: ``message`` (bytes in the client's codec), ``headers`` and
    ``trailers`` (lists of (key, bytes))."""

    __slots__ = ("message", "headers", "trailers")

    def __init__(self, message: bytes, headers: List[Tuple[str, bytes]], trailers: List[Tuple[str, bytes]]) -> None:
        self.message = message
        self.headers = headers
        self.trailers = trailers

    def header(self, key: str) -> Optional[bytes]:
        return first(self.headers, key)

    def trailer(self, key: str) -> Optional[bytes]:
        return first(self.trailers, key)

    def __repr__(self) -> str:
        return f"Response(message={self.message!r}, headers={self.headers!r}, trailers={self.trailers!r})"


class Client(_ffi.Managed):
    """A client for ``url``: "http://host:port[/prefix]", "https://host:port[/prefix]" or
    "unix:///path/to.sock".

    * ``protocol``: "connect" (default), "grpc" (needs HTTP/2) or "grpcweb".
    * ``codec``: "proto" or "json"; ``http_version``: "2" (default; h2c prior knowledge for
      http:// and unix://, ALPN for https://) or "1.1"; ``compression``: request compression,
      "identity" or "gzip" (gzip responses are always accepted).
    * ``timeout_ms``: default timeout of every call (for streams: of the whole call).
    * ``headers``: sent with every call. ``max_message_bytes``: largest response message.
    * ``use_get``: Connect only; unary calls made with ``no_side_effects=True`` use HTTP GET.
    * TLS (https:// URLs): ``tls=TLSOptions(...)``, or the keyword arguments ``tls_ca_file`` /
      ``tls_ca_pem`` (the CA that verifies the server, instead of the system store),
      ``tls_cert_file``/``tls_key_file`` or ``tls_cert_pem``/``tls_key_pem`` (a client certificate,
      for mTLS), ``tls_server_name`` (SNI and verified name) and ``tls_insecure_skip_verify``.
      Verification failures are :class:`RPCError` UNAVAILABLE whose message names the cause.
    * ``interceptors``: objects with ``start(call)``/``end(call, error)`` (see :class:`Interceptor`)
      around every call, in this order (ends in reverse).

    May be used by any number of threads at once. ``close()`` cancels and frees the streams still
    open, waits for unary calls in progress, then frees the client.
    """

    _kind = "Client"

    def __init__(
        self,
        url: str,
        codec: str = "proto",
        http_version: Union[str, int] = "2",
        compression: str = "identity",
        timeout_ms: Optional[int] = None,
        headers: MetadataLike = None,
        max_message_bytes: Optional[int] = None,
        protocol: str = "connect",
        use_get: bool = False,
        tls: Optional[TLSOptions] = None,
        *,
        tls_ca_file: Optional[PathLike] = None,
        tls_ca_pem: Optional[PEM] = None,
        tls_cert_file: Optional[PathLike] = None,
        tls_key_file: Optional[PathLike] = None,
        tls_cert_pem: Optional[PEM] = None,
        tls_key_pem: Optional[PEM] = None,
        tls_server_name: Optional[str] = None,
        tls_insecure_skip_verify: bool = False,
        interceptors: Optional[Iterable[Any]] = None,
    ) -> None:
        tls_kwargs = dict(
            ca_file=tls_ca_file,
            ca_pem=tls_ca_pem,
            cert_file=tls_cert_file,
            key_file=tls_key_file,
            cert_pem=tls_cert_pem,
            key_pem=tls_key_pem,
            server_name=tls_server_name,
        )
        if tls is not None:
            if any(v is not None for v in tls_kwargs.values()) or tls_insecure_skip_verify:
                raise ValueError("give either tls=TLSOptions(...) or the tls_* keyword arguments, not both")
        elif any(v is not None for v in tls_kwargs.values()) or tls_insecure_skip_verify:
            tls = TLSOptions(insecure_skip_verify=tls_insecure_skip_verify, **tls_kwargs)  # type: ignore[arg-type]
        if http_version not in _HTTP_VERSIONS:
            raise ValueError(f"http_version must be '1.1' or '2', not {http_version!r}")
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError("timeout_ms must be >= 0 (0 = no timeout)")
        opts = _ffi.connectplugin_client_options_new()
        if not opts:
            raise MemoryError("connectplugin_client_options_new failed")
        try:
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_options_set_codec(opts, _ffi.as_cstr(codec, "codec"), byref(err))
            check(st, err, "set_codec")
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_options_set_http_version(opts, _HTTP_VERSIONS[http_version], byref(err))
            check(st, err, "set_http_version")
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_options_set_compression(
                opts, _ffi.as_cstr(compression, "compression"), byref(err)
            )
            check(st, err, "set_compression")
            if timeout_ms is not None:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_options_set_timeout_ms(opts, int(timeout_ms), byref(err))
                check(st, err, "set_timeout_ms")
            if max_message_bytes is not None:
                if max_message_bytes < 0:
                    raise ValueError("max_message_bytes must be >= 0 (0 = no limit)")
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_options_set_max_message_bytes(opts, int(max_message_bytes), byref(err))
                check(st, err, "set_max_message_bytes")
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_options_set_protocol(opts, _ffi.as_cstr(protocol, "protocol"), byref(err))
            check(st, err, "set_protocol")
            if use_get:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_options_set_use_get(opts, 1, byref(err))
                check(st, err, "set_use_get")
            if tls is not None:
                with tls._native() as native:
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_client_options_set_tls(opts, native, byref(err))
                    check(st, err, "set_tls")
            add_pairs(_ffi.connectplugin_client_options_add_header, opts, headers)
            for ic in interceptors or ():
                from ._interceptor import new_native

                native = new_native(ic)
                try:
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_client_options_add_interceptor(opts, native, byref(err))
                    check(st, err, "add_interceptor")
                finally:
                    _ffi.connectplugin_interceptor_free(native)
            out = POINTER(_ffi.connectplugin_client)()
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_new(_ffi.as_cstr(url, "url"), opts, byref(out), byref(err))
            check(st, err, "connectplugin_client_new")
            if not out:
                raise RuntimeError("connectplugin_client_new returned no client")
        finally:
            _ffi.connectplugin_client_options_free(opts)
        self.url = url
        self.codec = codec
        self.protocol = protocol
        self.http_version = "1.1" if _HTTP_VERSIONS[http_version] == HTTP_1_1 else "2"
        self._cond = threading.Condition()
        self._active = 0
        self._streams: "weakref.WeakSet[ClientStream]" = weakref.WeakSet()
        self._set_handle(out)

    @classmethod
    def _adopt(cls, handle: Any, url: str, protocol: str = "grpc") -> "Client":
        """A Client over a handle the library made (a plugin's dispensed client)."""
        c = cls.__new__(cls)
        c.url = url
        c.codec = "proto"
        c.protocol = protocol
        c.http_version = "2"
        c._cond = threading.Condition()
        c._active = 0
        c._streams = weakref.WeakSet()
        c._set_handle(handle)
        return c

    def _delete(self, handle: Any) -> None:
        _ffi.connectplugin_client_free(handle)

    def close(self) -> None:
        """Cancels and frees the streams still open, waits for the unary calls in progress, then
        closes the connections and frees the client. Idempotent; later calls raise ValueError."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            if self._handle is None:
                return
            handle = self._handle
            self._handle = None  # new calls now raise ValueError
            while self._active:
                cond.wait()
            streams = list(self._streams)
        for st in streams:
            st.close()
        self._delete(handle)

    def _acquire(self) -> Any:
        with self._cond:
            h = self._ptr()
            self._active += 1
            return h

    def _release(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._cond.notify_all()

    def call_unary(
        self,
        procedure: str,
        request: Union[bytes, bytearray, memoryview],
        headers: MetadataLike = None,
        timeout_ms: Optional[int] = None,
        no_side_effects: bool = False,
    ) -> Response:
        """Calls ``procedure`` ("/package.Service/Method") with the serialized ``request``.

        ``timeout_ms`` overrides the client's default (0 = none). ``no_side_effects=True`` marks the
        method as free of side effects: with ``Client(use_get=True)`` and the Connect protocol the
        call is an HTTP GET. Raises :class:`RPCError` when the RPC fails (its ``code`` is
        DEADLINE_EXCEEDED on timeout, UNAVAILABLE if the server is unreachable).
        """
        proc = _ffi.as_cstr(procedure, "procedure")
        data = _ffi.as_bytes(request, "request")
        h = self._acquire()
        copts = None
        resp = POINTER(_ffi.connectplugin_response)()
        try:
            copts = _call_options(headers, timeout_ms, no_side_effects)
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_call_unary(
                h, proc, _ffi.u8_ptr(data), len(data), copts, byref(resp), byref(err)
            )
            check(st, err, procedure)
            if not resp:
                raise RuntimeError("connectplugin_client_call_unary succeeded without a response")
            n = c_size_t(0)
            p = _ffi.connectplugin_response_message(resp, byref(n))
            message = _ffi.read_bytes(p, n.value)
            return Response(
                message,
                read_metadata(_ffi.connectplugin_response_headers(resp)),
                read_metadata(_ffi.connectplugin_response_trailers(resp)),
            )
        finally:
            _ffi.connectplugin_response_free(resp)
            _ffi.connectplugin_call_options_free(copts)
            self._release()

    # -- streams ---------------------------------------------------------------------------------

    def stream(
        self,
        procedure: str,
        kind: Union[MethodKind, int, str],
        timeout_ms: Optional[int] = None,
        headers: MetadataLike = None,
    ) -> "ClientStream":
        """Opens a streaming call of ``procedure``; ``kind`` is ``MethodKind.CLIENT_STREAM``,
        ``SERVER_STREAM`` or ``BIDI_STREAM`` (``UNARY`` works too; or "client_stream", …).
        ``timeout_ms`` (default: the client's) covers the whole call. Returns a
        :class:`ClientStream`; use it as a context manager (or call ``close()``)."""
        k = MethodKind.parse(kind)
        proc = _ffi.as_cstr(procedure, "procedure")
        h = self._acquire()
        copts = None
        try:
            copts = _call_options(headers, timeout_ms, False)
            out = POINTER(_ffi.connectplugin_client_stream)()
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_client_open_stream(h, proc, int(k), copts, byref(out), byref(err))
            check(st, err, procedure)
            if not out:
                raise RuntimeError("connectplugin_client_open_stream succeeded without a stream")
            stream = ClientStream(self, str(procedure), k, out)
            with self._cond:
                self._streams.add(stream)
            return stream
        finally:
            _ffi.connectplugin_call_options_free(copts)
            self._release()

    def server_stream(
        self,
        procedure: str,
        request: Union[bytes, bytearray, memoryview],
        timeout_ms: Optional[int] = None,
        headers: MetadataLike = None,
    ) -> "ClientStream":
        """A server-streaming call: sends ``request``, half-closes and returns the stream, which
        iterates over the response messages (``for msg in client.server_stream(...)``). Iteration
        raises :class:`RPCError` if the call fails."""
        s = self.stream(procedure, MethodKind.SERVER_STREAM, timeout_ms=timeout_ms, headers=headers)
        try:
            s._send_or_learn(request)
            s._close_send_quietly()
        except BaseException:
            s.close()
            raise
        return s

    def client_stream(
        self,
        procedure: str,
        requests: Iterable[Union[bytes, bytearray, memoryview]],
        timeout_ms: Optional[int] = None,
        headers: MetadataLike = None,
    ) -> bytes:
        """A client-streaming call: sends every message of ``requests``, half-closes and returns
        the one response message. Raises :class:`RPCError` if the call fails (even if the server
        failed it before every request was sent)."""
        with self.stream(procedure, MethodKind.CLIENT_STREAM, timeout_ms=timeout_ms, headers=headers) as s:
            for r in requests:
                if not s._send_or_learn(r):
                    break  # the call is over; receive() below raises its error
            s._close_send_quietly()
            msg = s.receive()
            if msg is None:
                raise RPCError(Code.INTERNAL, f"{procedure}: the server sent no response message")
            if s.receive() is not None:
                raise RPCError(Code.INTERNAL, f"{procedure}: the server sent more than one response message")
            return msg

    def bidi_stream(
        self,
        procedure: str,
        requests: Optional[Iterable[Union[bytes, bytearray, memoryview]]] = None,
        timeout_ms: Optional[int] = None,
        headers: MetadataLike = None,
    ) -> "ClientStream":
        """A bidi-streaming call. Without ``requests`` it returns the open stream (``send``,
        ``close_send``, ``receive`` yourself; full-duplex needs HTTP/2). With ``requests`` (an
        iterable of messages) a background thread sends them and half-closes while you iterate over
        the responses; an exception raised by ``requests`` cancels the call and is re-raised by
        ``receive``."""
        s = self.stream(procedure, MethodKind.BIDI_STREAM, timeout_ms=timeout_ms, headers=headers)
        if requests is not None:
            s._start_sender(requests)
        return s

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Client({self.url!r}, protocol={self.protocol!r}, codec={self.codec!r}, {state})"


def _call_options(headers: MetadataLike, timeout_ms: Optional[int], no_side_effects: bool) -> Any:
    """A ``connectplugin_call_options *`` (the caller frees it), or None when nothing is set."""
    if timeout_ms is not None and timeout_ms < 0:
        raise ValueError("timeout_ms must be >= 0 (0 = no timeout)")
    if headers is None and timeout_ms is None and not no_side_effects:
        return None
    copts = _ffi.connectplugin_call_options_new()
    if not copts:
        raise MemoryError("connectplugin_call_options_new failed")
    try:
        if timeout_ms is not None:
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_call_options_set_timeout_ms(copts, int(timeout_ms), byref(err))
            check(st, err, "set_timeout_ms")
        if no_side_effects:
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_call_options_set_no_side_effects(copts, 1, byref(err))
            check(st, err, "set_no_side_effects")
        add_pairs(_ffi.connectplugin_call_options_add_header, copts, headers)
    except BaseException:
        _ffi.connectplugin_call_options_free(copts)
        raise
    return copts


class ClientStream:
    """A streaming call on the client (from :meth:`Client.stream` and friends).

    * ``send(message)`` sends one request message (blocks while the transport is behind);
      ``close_send()`` half-closes (idempotent).
    * ``receive()`` returns the next response message (bytes), or None when the call ended OK;
      it raises :class:`RPCError` with the call's error (code, message, details, metadata) —
      DEADLINE_EXCEEDED after the timeout, CANCELED after ``cancel()``. Iterating the stream yields
      the response messages.
    * ``headers`` (after the first ``receive``) and ``trailers`` (after the end) are lists of
      (key, bytes); ``header(key)``/``trailer(key)`` look one up.
    * ``cancel()`` cancels the call from any thread: blocked ``send``/``receive`` return with CANCELED.
    * ``close()`` (also on leaving a ``with`` block, and on garbage collection) cancels the call if
      it still runs, waits until no other thread is inside a call on the stream, and frees it.

    One thread may send while another receives.
    """

    def __init__(self, client: Client, procedure: str, kind: MethodKind, handle: Any) -> None:
        self._client = client
        self.procedure = procedure
        self.kind = kind
        self._handle = handle
        self._cond = threading.Condition()
        self._inflight = 0
        self._recv_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._headers: List[Tuple[str, bytes]] = []
        self._headers_read = False
        self._trailers: List[Tuple[str, bytes]] = []
        self._eof = False
        self._error: Optional[BaseException] = None
        self._sender: Optional[threading.Thread] = None
        self._sender_exc: Optional[BaseException] = None

    # -- handle bookkeeping ----------------------------------------------------------------------

    def _enter(self) -> Any:
        with self._cond:
            h = self._handle
            if h is None:
                raise ValueError("ClientStream already closed")
            self._inflight += 1
            return h

    def _leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Cancels the call if it still runs and frees the stream, once no other thread is inside
        ``send``/``receive`` (cancelling makes them return). Idempotent."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            h = self._handle
            if h is None:
                return
            self._handle = None  # new calls raise ValueError
            busy = self._inflight > 0
        if busy:
            _ffi.connectplugin_client_stream_cancel(h)
        with cond:
            while self._inflight:
                cond.wait()
        _ffi.connectplugin_client_stream_free(h)
        client = self._client
        with client._cond:
            client._streams.discard(self)

    def __enter__(self) -> "ClientStream":
        if self._handle is None:
            raise ValueError("ClientStream already closed")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- sending ---------------------------------------------------------------------------------

    def send(self, message: Union[bytes, bytearray, memoryview]) -> None:
        """Sends one request message (blocks while the transport is behind). When the server has
        already ended the call (an early error) the message is dropped and ``receive()`` reports
        the call's status. Raises :class:`RPCError` when the transport failed (connection lost,
        deadline, canceled) and :class:`ConnectPluginError` (STATE) after ``close_send()`` or for a
        second message to a method that takes one."""
        data = _ffi.as_bytes(message, "message")
        with self._send_lock:
            h = self._enter()
            try:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_stream_send(h, _ffi.u8_ptr(data), len(data), byref(err))
                check(st, err, "send")
            finally:
                self._leave()

    def close_send(self) -> None:
        """Half-closes: no more request messages. Idempotent."""
        with self._send_lock:
            h = self._enter()
            try:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_stream_close_send(h, byref(err))
                check(st, err, "close_send")
            finally:
                self._leave()

    def _send_or_learn(self, message: Any) -> bool:
        """send(); False (instead of an exception) when the call can take no more messages;
        ``receive()`` then reports how it ended."""
        try:
            self.send(message)
            return True
        except RPCError:
            return False

    def _close_send_quietly(self) -> None:
        try:
            self.close_send()
        except RPCError:
            pass  # the call already ended; receive() tells how

    def _start_sender(self, requests: Iterable[Any]) -> None:
        def run() -> None:
            try:
                for r in requests:
                    if not self._send_or_learn(r):
                        return
                self._close_send_quietly()
            except ValueError:
                if self.closed:
                    return  # closed under us
                self._sender_failed()
            except BaseException:
                self._sender_failed()

        self._sender = threading.Thread(target=run, name=f"connectplugin-send {self.procedure}", daemon=True)
        self._sender.start()

    def _sender_failed(self) -> None:
        import sys

        self._sender_exc = sys.exc_info()[1]
        logger.debug("%s: the request iterator raised; cancelling the call", self.procedure, exc_info=True)
        self.cancel()

    # -- receiving -------------------------------------------------------------------------------

    def receive(self) -> Optional[bytes]:
        """The next response message (bytes, copied), or None once the call ended OK (the trailers
        are then available). Raises :class:`RPCError` with the call's error, on this and every
        later call. Blocks without the GIL; ``cancel()`` from another thread unblocks it."""
        with self._recv_lock:
            if self._error is not None:
                raise self._error
            if self._eof:
                return None
            h = self._enter()
            try:
                data = POINTER(c_uint8)()
                n = c_size_t(0)
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_client_stream_receive(h, byref(data), byref(n), byref(err))
                if not self._headers_read:
                    # Final once the first receive returned (they arrive before any message).
                    self._headers = read_metadata(_ffi.connectplugin_client_stream_headers(h))
                    self._headers_read = True
                if st == _ffi.EOF:
                    check(Status.OK, err)
                    self._trailers = read_metadata(_ffi.connectplugin_client_stream_trailers(h))
                    self._eof = True
                    return None
                if st == Status.OK:
                    check(st, err)
                    return _ffi.read_bytes(data, n.value)
                try:
                    check(st, err, "receive")
                except ConnectPluginError as e:
                    if self._sender_exc is not None:
                        e2 = self._sender_exc
                        e2.__cause__ = e
                        self._error = e2
                        raise e2 from e
                    if e.status == Status.RPC:
                        self._error = e
                    raise
                raise RuntimeError("unreachable")
            finally:
                self._leave()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            msg = self.receive()
            if msg is None:
                return
            yield msg

    @property
    def headers(self) -> List[Tuple[str, bytes]]:
        """The response headers (protocol headers removed), once the first ``receive`` returned."""
        return list(self._headers)

    @property
    def trailers(self) -> List[Tuple[str, bytes]]:
        """The response trailers, once ``receive`` returned None (for a failed call they are in the
        error's ``metadata``)."""
        return list(self._trailers)

    def header(self, key: str) -> Optional[bytes]:
        return first(self._headers, key)

    def trailer(self, key: str) -> Optional[bytes]:
        return first(self._trailers, key)

    @property
    def done(self) -> bool:
        """True once ``receive`` saw the end of the call (OK or an error)."""
        return self._eof or self._error is not None

    # -- cancelling ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancels the call (HTTP/2 RST_STREAM, HTTP/1.1 connection close): blocked ``send`` and
        ``receive`` return with CANCELED, and so does every later ``receive`` (messages that had
        arrived but were not received are dropped), unless the end of the call was already
        received. Any thread; a no-op once closed."""
        with self._cond:
            h = self._handle
            if h is None:
                return
            self._inflight += 1
        try:
            _ffi.connectplugin_client_stream_cancel(h)
        finally:
            self._leave()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("done" if self.done else "open")
        return f"ClientStream({self.procedure!r}, {self.kind.name}, {state})"
