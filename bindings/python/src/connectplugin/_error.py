"""Status and Connect codes, and the exceptions built from ``connectplugin_error`` objects."""

from __future__ import annotations

import ctypes
import enum
from ctypes import POINTER, byref, c_char_p, c_size_t, c_uint8
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from . import _ffi

Detail = Tuple[str, bytes]
MetadataList = List[Tuple[str, bytes]]


class Status(enum.IntEnum):
    """What went wrong locally (``connectplugin_status``)."""

    OK = 0
    INVALID_ARGUMENT = -1
    RESOURCE = -2
    CLOSED = -3
    IO = -4
    STATE = -5
    RPC = -6
    UNSUPPORTED = -7


class Code(enum.IntEnum):
    """Connect / gRPC codes (wire-stable numbers)."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def wire_name(self) -> str:
        """The Connect wire name: "canceled", "invalid_argument", …"""
        return self.name.lower()

    @classmethod
    def of(cls, value: int) -> "Code":
        """Like ``Code(value)``, but a number outside 0..16 gives UNKNOWN."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class MethodKind(enum.IntEnum):
    """The shape of a method (``connectplugin_method_kind``)."""

    UNARY = 0
    CLIENT_STREAM = 1
    SERVER_STREAM = 2
    BIDI_STREAM = 3

    @classmethod
    def parse(cls, value: Union["MethodKind", int, str]) -> "MethodKind":
        """A MethodKind from itself, its number, or a name: "unary", "client_stream" (or "client"),
        "server_stream" (or "server"), "bidi_stream" (or "bidi"); case-insensitive, "-" works as "_"."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            name = value.strip().lower().replace("-", "_")
            aliases = {"client": "client_stream", "server": "server_stream", "bidi": "bidi_stream"}
            name = aliases.get(name, name)
            try:
                return cls[name.upper()]
            except KeyError:
                raise ValueError(
                    f"unknown method kind {value!r}: use 'unary', 'client_stream', 'server_stream' or 'bidi_stream'"
                ) from None
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unknown method kind {value!r} (0..3)") from None
        raise TypeError(f"method kind must be a MethodKind, int or str, not {type(value).__name__}")


def version() -> str:
    """The library's version string, e.g. "0.2.0"."""
    return _ffi.decode_str(_ffi.connectplugin_version())


def version_num() -> int:
    """The library's version as 0xMMmmpp."""
    return int(_ffi.connectplugin_version_num())


def abi_version() -> int:
    """The ABI version the library implements."""
    return int(_ffi.connectplugin_abi_version())


def status_string(status: int) -> str:
    """The library's English description of a status ("ok", "invalid argument", …)."""
    return _ffi.decode_str(_ffi.connectplugin_status_string(int(status)))


def code_name(code: int) -> str:
    """The library's Connect wire name of a code ("ok", "canceled", …; "unknown" out of range)."""
    return _ffi.decode_str(_ffi.connectplugin_code_name(int(code)))


def _normalize_details(details: Optional[Iterable[Any]]) -> List[Detail]:
    out: List[Detail] = []
    for d in details or ():
        if isinstance(d, tuple) and len(d) == 2:
            type_name, value = d
            if not isinstance(type_name, str):
                raise TypeError("an error detail type must be a str (a fully qualified message name)")
            out.append((type_name, _ffi.as_bytes(value, "error detail value")))
        elif hasattr(d, "DESCRIPTOR") and hasattr(d, "SerializeToString"):
            # A google.protobuf message.
            out.append((d.DESCRIPTOR.full_name, d.SerializeToString()))
        else:
            raise TypeError("an error detail must be a (type_name, bytes) pair or a protobuf message")
    return out


def _normalize_metadata(metadata: Optional[Iterable[Tuple[str, Any]]]) -> MetadataList:
    return [(str(k), _ffi.as_bytes(v, "metadata value")) for k, v in (metadata or ())]


class ConnectPluginError(Exception):
    """A failure reported by libconnectplugin.

    ``status`` is the local status (a :class:`Status`), ``code`` the Connect code (a :class:`Code`),
    ``message`` the message, ``details`` a list of ``(type_name, value_bytes)`` and ``metadata`` a list
    of ``(key, value_bytes)`` (the headers and trailers of a failed RPC).
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str = "",
        details: Optional[Iterable[Any]] = None,
        metadata: Optional[Iterable[Tuple[str, Any]]] = None,
    ) -> None:
        try:
            st: Union[Status, int] = Status(status)
        except ValueError:
            st = int(status)
        self.status = st
        self.code = Code.of(int(code))
        self.message = str(message)
        self.details: List[Detail] = _normalize_details(details)
        self.metadata: MetadataList = _normalize_metadata(metadata)
        super().__init__(self.status, self.code, self.message, self.details, self.metadata)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code.name}, "
            f"message={self.message!r}, details={self.details!r})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.status, self.code, self.message, self.details, self.metadata))


class RPCError(ConnectPluginError):
    """An RPC that finished with a non-OK Connect code (status ``CONNECTPLUGIN_ERR_RPC``).

    Raise it from a server handler to fail the call with ``code``, ``message`` and ``details``
    (``(type_name, bytes)`` pairs or protobuf messages).
    """

    def __init__(
        self,
        code: int,
        message: str = "",
        details: Optional[Iterable[Any]] = None,
        metadata: Optional[Iterable[Tuple[str, Any]]] = None,
    ) -> None:
        super().__init__(Status.RPC, code, message, details, metadata)


def _rebuild(cls: type, status: int, code: int, message: str, details: Any, metadata: Any) -> Any:
    if issubclass(cls, RPCError):
        return cls(code, message, details, metadata)
    return cls(status, code, message, details, metadata)


# ---------------------------------------------------------------------------------------------------
# Conversion of library error objects
# ---------------------------------------------------------------------------------------------------


def _read_error(err: Any) -> ConnectPluginError:
    """Copies everything out of a ``connectplugin_error *`` (does not free it)."""
    from ._metadata import read_metadata

    status = int(_ffi.connectplugin_error_status(err))
    code = int(_ffi.connectplugin_error_code(err))
    message = _ffi.decode_str(_ffi.connectplugin_error_message(err))
    details: List[Detail] = []
    n = int(_ffi.connectplugin_error_detail_count(err))
    for i in range(n):
        t = c_char_p()
        v = POINTER(c_uint8)()
        vlen = c_size_t(0)
        st = _ffi.connectplugin_error_detail(err, i, byref(t), byref(v), byref(vlen))
        if st != Status.OK:
            raise RuntimeError(f"connectplugin_error_detail({i}) of {n} failed with status {st}")
        details.append((_ffi.decode_str(t.value), _ffi.read_bytes(v, vlen.value)))
    metadata = read_metadata(_ffi.connectplugin_error_metadata(err))
    if status == Status.RPC:
        return RPCError(code, message, details, metadata)
    return ConnectPluginError(status, code, message, details, metadata)


def take_error(err: Any) -> ConnectPluginError:
    """Converts an owned ``connectplugin_error *`` to an exception and frees it immediately."""
    try:
        return _read_error(err)
    finally:
        _ffi.connectplugin_error_free(err)


def check(status: int, err: Any, what: str = "") -> None:
    """Raises the exception for a failed call. Frees ``err`` whenever it is set, even on success."""
    exc: Optional[ConnectPluginError] = None
    if err:
        exc = take_error(err)
        # The slot no longer owns anything.
        ctypes.memset(ctypes.addressof(err), 0, ctypes.sizeof(err))
    if status == Status.OK:
        return
    if exc is None:
        exc = ConnectPluginError(status, Code.UNKNOWN, f"{what or 'call'} failed: {status_string(status)}")
    raise exc


__all__: Sequence[str] = [
    "Status",
    "Code",
    "MethodKind",
    "ConnectPluginError",
    "RPCError",
    "version",
    "version_num",
    "abi_version",
    "status_string",
    "code_name",
]
