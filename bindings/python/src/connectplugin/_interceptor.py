"""Interceptors (connectplugin_interceptor_*): per-call hooks around every call of every shape and
protocol, on servers (``Server.add_interceptor``) and clients (``Client(interceptors=[...])``).

An interceptor is any object with ``start(call)`` and/or ``end(call, error)`` methods (subclass
:class:`Interceptor` for defaults). Each call costs one ``start`` and one ``end`` callback from a
library thread (about 8 µs each for ctypes); ``message(call, direction, data)`` runs per message
and only for objects whose ``observe_messages`` is true.

The Python objects live in a registry under an integer key (the ``user_data``); one module-level
CFUNCTYPE per hook serves them all, and the module-level finalizer drops the registry entry when
the library lets go. A call's :class:`InterceptorCall` lives in a second registry from ``start``
until ``end`` (its key is the call's state slot).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from ctypes import POINTER, byref, c_void_p
from typing import Any, Dict, List, Optional, Tuple

from . import _ffi
from ._error import Code, MethodKind, RPCError, check
from ._metadata import Peer, first, read_metadata

logger = logging.getLogger("connectplugin")

DIRECTION_REQUEST = _ffi.DIRECTION_REQUEST
DIRECTION_RESPONSE = _ffi.DIRECTION_RESPONSE


class Interceptor:
    """Base class with no-op hooks. Override what you need:

    * ``start(call)`` runs before the handler (servers) or before the request is sent (clients).
      Raise :class:`RPCError` to reject the call with its code and message (any other exception
      rejects with INTERNAL and is logged). It may add headers and trailers through ``call``.
    * ``end(call, error)`` runs once the result is known: ``error`` is None on success, else an
      :class:`RPCError` with the code and message. Servers may still add trailers here.
    * ``message(call, direction, data)`` sees every message (``DIRECTION_REQUEST`` or
      ``DIRECTION_RESPONSE``; bytes) when ``observe_messages`` is True. Off by default: one callback
      per message is costly.

    Start hooks run in the order added (a server's server-wide interceptors first, then the
    procedure's); end hooks in reverse, for every interceptor whose start ran. Hooks run on library
    threads, concurrently for different calls; those of one call never overlap.
    """

    observe_messages = False

    def start(self, call: "InterceptorCall") -> None:
        pass

    def end(self, call: "InterceptorCall", error: Optional[RPCError]) -> None:
        pass

    def message(self, call: "InterceptorCall", direction: int, data: bytes) -> None:
        pass


class InterceptorCall:
    """One call as one interceptor sees it (the same object in its start, message and end hooks).

    ``procedure``, ``kind`` (MethodKind), ``protocol`` ("connect", "grpc", "grpcweb"), ``codec``,
    ``is_server``, ``headers`` (request headers as (key, bytes) pairs), ``peer`` (servers: a
    :class:`Peer` for a verified client certificate, else None), ``deadline`` (``time.monotonic()``
    value, or None), and for ``end`` ``response_headers`` and ``response_trailers``. ``state`` is
    free for the interceptor's own per-call data. The ``add_*`` methods work only inside the hooks
    they name (else :class:`ConnectPluginError` with status STATE).
    """

    __slots__ = ("procedure", "kind", "protocol", "codec", "is_server", "headers", "peer", "deadline",
                 "response_headers", "response_trailers", "state", "_call", "_key")

    def __init__(self, call: Any) -> None:
        self._call = call
        self.procedure = _ffi.decode_str(_ffi.connectplugin_interceptor_call_procedure(call))
        self.kind = MethodKind(int(_ffi.connectplugin_interceptor_call_kind(call)))
        self.protocol = _ffi.decode_str(_ffi.connectplugin_interceptor_call_protocol(call))
        self.codec = _ffi.decode_str(_ffi.connectplugin_interceptor_call_codec(call))
        self.is_server = int(_ffi.connectplugin_interceptor_call_is_server(call)) == 1
        self.headers: List[Tuple[str, bytes]] = read_metadata(_ffi.connectplugin_interceptor_call_request_headers(call))
        self.peer: Optional[Peer] = Peer.from_ptr(_ffi.connectplugin_interceptor_call_peer(call))
        ms = int(_ffi.connectplugin_interceptor_call_timeout_remaining_ms(call))
        self.deadline: Optional[float] = None if ms < 0 else time.monotonic() + ms / 1000.0
        self.response_headers: List[Tuple[str, bytes]] = []
        self.response_trailers: List[Tuple[str, bytes]] = []
        self.state: Any = None
        self._key = 0

    def header(self, key: str) -> Optional[bytes]:
        """The first request header ``key`` (case-insensitive), or None."""
        return first(self.headers, key)

    @property
    def timeout_remaining_ms(self) -> int:
        """Milliseconds until the deadline (0 once passed), or -1 without one."""
        if self.deadline is None:
            return -1
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def _add(self, fn: Any, key: str, value: Any, what: str) -> None:
        if self._call is None:
            from ._error import ConnectPluginError, Status

            raise ConnectPluginError(Status.STATE, Code.FAILED_PRECONDITION, "the interceptor hook has returned")
        k = _ffi.as_cstr(key, "key")
        v = _ffi.as_bytes(value, "value")
        err = _ffi.new_error_out()
        st = fn(self._call, k, _ffi.u8_ptr(v), len(v), byref(err))
        check(st, err, what)

    def add_request_header(self, key: str, value: Any) -> None:
        """Clients, in start: adds a request header."""
        self._add(_ffi.connectplugin_interceptor_call_add_request_header, key, value, "add_request_header")
        self.headers.append((key.lower(), _ffi.as_bytes(value)))

    def add_response_header(self, key: str, value: Any) -> None:
        """Servers, in start: adds a response header (sent whatever the outcome)."""
        self._add(_ffi.connectplugin_interceptor_call_add_response_header, key, value, "add_response_header")

    def add_response_trailer(self, key: str, value: Any) -> None:
        """Servers, in start or end: adds a response trailer."""
        self._add(_ffi.connectplugin_interceptor_call_add_response_trailer, key, value, "add_response_trailer")


# ---------------------------------------------------------------------------------------------------
# Registries and trampolines
# ---------------------------------------------------------------------------------------------------

_LOCK = threading.Lock()
_INTERCEPTORS: Dict[int, Any] = {}
_CALLS: Dict[int, InterceptorCall] = {}
_NEXT = itertools.count(1)  # 0 would arrive as None (a NULL void *)


def _registry_size() -> Tuple[int, int]:
    with _LOCK:
        return len(_INTERCEPTORS), len(_CALLS)


def _finalize(user_data: Optional[int]) -> None:
    try:
        with _LOCK:
            _INTERCEPTORS.pop(int(user_data or 0), None)
    except BaseException:  # never let anything escape into the library
        pass


def _reject(call: Any, code: int, message: str) -> None:
    err = _ffi.new_error_out()
    st = _ffi.connectplugin_interceptor_call_reject(call, int(code), _ffi.as_cstr(message.replace("\0", ""), "message"),
                                                    byref(err))
    check(st, err, "reject")


def _start(call: Any, user_data: Optional[int]) -> int:
    try:
        with _LOCK:
            obj = _INTERCEPTORS.get(int(user_data or 0))
            key = next(_NEXT)
        if obj is None:
            return 1
        ic = InterceptorCall(call)
        ic._key = key
        with _LOCK:
            _CALLS[key] = ic  # taken out by _end, which runs for every call whose start ran
        _ffi.connectplugin_interceptor_call_set_state(call, c_void_p(key))
        fn = getattr(obj, "start", None)
        try:
            if fn is not None:
                fn(ic)
        except RPCError as e:
            _reject(call, e.code if int(e.code) != 0 else Code.UNKNOWN, e.message)
        except Exception as e:
            logger.exception("connectplugin: interceptor start failed")
            _reject(call, Code.INTERNAL, f"interceptor: {e}")
        finally:
            ic._call = None
        return 0
    except BaseException:
        try:
            logger.critical("connectplugin: unexpected error in the interceptor start trampoline", exc_info=True)
        except BaseException:
            pass
        return 1


def _call_of(call: Any, pop: bool) -> Optional[InterceptorCall]:
    key = _ffi.connectplugin_interceptor_call_state(call)
    if not key:
        return None
    with _LOCK:
        return _CALLS.pop(int(key), None) if pop else _CALLS.get(int(key))


def _end(call: Any, code: int, message: Optional[bytes], user_data: Optional[int]) -> None:
    try:
        ic = _call_of(call, pop=True)
        with _LOCK:
            obj = _INTERCEPTORS.get(int(user_data or 0))
        fn = getattr(obj, "end", None)
        if ic is None or fn is None:
            return
        ic.response_headers = read_metadata(_ffi.connectplugin_interceptor_call_response_headers(call))
        ic.response_trailers = read_metadata(_ffi.connectplugin_interceptor_call_response_trailers(call))
        error = None if int(code) == 0 else RPCError(int(code), _ffi.decode_str(message))
        ic._call = call
        try:
            fn(ic, error)
        except Exception:
            logger.exception("connectplugin: interceptor end failed")
        finally:
            ic._call = None
    except BaseException:
        try:
            logger.critical("connectplugin: unexpected error in the interceptor end trampoline", exc_info=True)
        except BaseException:
            pass


def _message(call: Any, direction: int, data: Any, length: int, user_data: Optional[int]) -> None:
    try:
        ic = _call_of(call, pop=False)
        with _LOCK:
            obj = _INTERCEPTORS.get(int(user_data or 0))
        if ic is None or obj is None:
            return
        try:
            obj.message(ic, int(direction), _ffi.read_bytes(data, int(length)))
        except Exception:
            logger.exception("connectplugin: interceptor message hook failed")
    except BaseException:
        pass


START_TRAMPOLINE = _ffi.connectplugin_interceptor_start_func(_start)
END_TRAMPOLINE = _ffi.connectplugin_interceptor_end_func(_end)
MESSAGE_TRAMPOLINE = _ffi.connectplugin_interceptor_message_func(_message)
FINALIZER = _ffi.connectplugin_free_func(_finalize)


def new_native(obj: Any) -> Any:
    """The library's interceptor for @p obj (owned: free it with connectplugin_interceptor_free)."""
    if not any(callable(getattr(obj, n, None)) for n in ("start", "end")):
        raise TypeError("an interceptor needs a start(call) or end(call, error) method")
    with _LOCK:
        key = next(_NEXT)
        _INTERCEPTORS[key] = obj
    out = POINTER(_ffi.connectplugin_interceptor)()
    err = _ffi.new_error_out()
    # Both hooks are always registered: start makes the per-call object that end takes back.
    # On failure the library calls FINALIZER (dropping the entry) before returning.
    st = _ffi.connectplugin_interceptor_new(START_TRAMPOLINE, END_TRAMPOLINE, c_void_p(key), FINALIZER, byref(out),
                                            byref(err))
    check(st, err, "interceptor_new")
    if getattr(obj, "observe_messages", False):
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_interceptor_set_message_func(out, MESSAGE_TRAMPOLINE, byref(err))
        try:
            check(st, err, "interceptor_set_message_func")
        except BaseException:
            _ffi.connectplugin_interceptor_free(out)
            raise
    return out
