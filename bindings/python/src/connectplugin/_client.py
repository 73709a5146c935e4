"""The client: blocking unary calls (the GIL is released while a call runs)."""

from __future__ import annotations

import threading
from ctypes import POINTER, byref, c_size_t
from typing import Any, List, Optional, Tuple, Union

from . import _ffi
from ._error import check
from ._metadata import MetadataLike, add_pairs, first, read_metadata

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
    """A Connect client for ``url`` ("http://host:port[/prefix]" or "unix:///path/to.sock").

    May be used by any number of threads at once. ``close()`` waits for calls in progress.
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
    ) -> None:
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
            add_pairs(_ffi.connectplugin_client_options_add_header, opts, headers)
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
        self._cond = threading.Condition()
        self._active = 0
        self._set_handle(out)

    def _delete(self, handle: Any) -> None:
        _ffi.connectplugin_client_free(handle)

    def close(self) -> None:
        """Closes the connections and frees the client, after the calls in progress return.
        Idempotent; later calls raise ValueError."""
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
    ) -> Response:
        """Calls ``procedure`` ("/package.Service/Method") with the serialized ``request``.

        ``timeout_ms`` overrides the client's default (0 = none). Raises :class:`RPCError` when the RPC
        fails (its ``code`` is DEADLINE_EXCEEDED on timeout, UNAVAILABLE if the server is unreachable).
        """
        proc = _ffi.as_cstr(procedure, "procedure")
        data = _ffi.as_bytes(request, "request")
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError("timeout_ms must be >= 0 (0 = no timeout)")
        h = self._acquire()
        copts = None
        resp = POINTER(_ffi.connectplugin_response)()
        try:
            if headers is not None or timeout_ms is not None:
                copts = _ffi.connectplugin_call_options_new()
                if not copts:
                    raise MemoryError("connectplugin_call_options_new failed")
                if timeout_ms is not None:
                    err = _ffi.new_error_out()
                    st = _ffi.connectplugin_call_options_set_timeout_ms(copts, int(timeout_ms), byref(err))
                    check(st, err, "set_timeout_ms")
                add_pairs(_ffi.connectplugin_call_options_add_header, copts, headers)
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

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Client({self.url!r}, codec={self.codec!r}, {state})"
