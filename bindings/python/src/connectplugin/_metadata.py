"""Metadata: ordered (key, value) lists — HTTP headers and trailers.

Keys are ASCII; the library lowercases them. Keys ending in "-bin" carry arbitrary bytes; other values
must be printable ASCII. Values are returned as ``bytes``; ``str`` values are accepted on input.
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_char_p, c_size_t, c_uint8
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from . import _ffi
from ._error import check

MetadataLike = Union[Mapping[str, Any], Iterable[Tuple[str, Any]], None]


def normalize_pairs(metadata: MetadataLike) -> List[Tuple[bytes, bytes]]:
    """A dict or an iterable of (key, value) pairs as encoded (key, value) pairs."""
    if metadata is None:
        return []
    items: Iterable[Tuple[str, Any]]
    if isinstance(metadata, Mapping):
        items = metadata.items()
    else:
        items = metadata
    out: List[Tuple[bytes, bytes]] = []
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise TypeError("metadata must be a mapping or an iterable of (key, value) pairs") from None
        out.append((_ffi.as_cstr(k, "metadata key"), _ffi.as_bytes(v, "metadata value")))
    return out


def add_pairs(adder: Callable[..., int], handle: Any, metadata: MetadataLike) -> None:
    """Calls ``adder(handle, key, value, len, &err)`` (one of the *_add / *_add_header functions) for
    every pair, raising on the first failure."""
    for k, v in normalize_pairs(metadata):
        err = _ffi.new_error_out()
        st = adder(handle, k, _ffi.u8_ptr(v), len(v), byref(err))
        check(st, err, "adding metadata")


def read_metadata(md: Any) -> List[Tuple[str, bytes]]:
    """Copies a borrowed ``connectplugin_metadata *`` into a list of (key, bytes). NULL gives []."""
    if not md:
        return []
    n = int(_ffi.connectplugin_metadata_count(md))
    out: List[Tuple[str, bytes]] = []
    for i in range(n):
        k = c_char_p()
        v = POINTER(c_uint8)()
        vlen = c_size_t(0)
        st = _ffi.connectplugin_metadata_get(md, i, byref(k), byref(v), byref(vlen))
        if st != 0:
            raise RuntimeError(f"connectplugin_metadata_get({i}) of {n} failed with status {st}")
        out.append((_ffi.decode_str(k.value), _ffi.read_bytes(v, vlen.value)))
    return out


def lookup(md: Any, key: str) -> Optional[bytes]:
    """The first value for ``key`` in a ``connectplugin_metadata *`` (case-insensitive), or None."""
    n = c_size_t(0)
    p = _ffi.connectplugin_metadata_lookup(md, _ffi.as_cstr(key, "metadata key"), byref(n))
    if not p:
        return None
    return _ffi.read_bytes(p, n.value)


class Metadata(_ffi.Managed):
    """An owned ``connectplugin_metadata`` list.

    >>> md = Metadata([("X-Trace", "abc")])
    >>> md.add("x-trace", b"def")
    >>> list(md), md.get("X-TRACE")
    ([('x-trace', b'abc'), ('x-trace', b'def')], b'abc')
    >>> md.close()
    """

    _kind = "Metadata"

    def __init__(self, pairs: MetadataLike = None) -> None:
        h = _ffi.connectplugin_metadata_new()
        if not h:
            raise MemoryError("connectplugin_metadata_new failed")
        self._set_handle(h)
        try:
            self.extend(pairs)
        except BaseException:
            self.close()
            raise

    def _delete(self, handle: Any) -> None:
        _ffi.connectplugin_metadata_free(handle)

    def add(self, key: str, value: Union[bytes, str]) -> None:
        """Appends (key, value). Raises ConnectPluginError (INVALID_ARGUMENT) for a bad key or value."""
        add_pairs(_ffi.connectplugin_metadata_add, self._ptr(), [(key, value)])

    def extend(self, pairs: MetadataLike) -> None:
        add_pairs(_ffi.connectplugin_metadata_add, self._ptr(), pairs)

    def get(self, key: str) -> Optional[bytes]:
        """The first value for ``key`` (case-insensitive), or None."""
        return lookup(self._ptr(), key)

    def to_list(self) -> List[Tuple[str, bytes]]:
        return read_metadata(self._ptr())

    def __len__(self) -> int:
        return int(_ffi.connectplugin_metadata_count(self._ptr()))

    def __getitem__(self, index: int) -> Tuple[str, bytes]:
        items = self.to_list()
        return items[index]

    def __iter__(self) -> Iterator[Tuple[str, bytes]]:
        return iter(self.to_list())

    def __repr__(self) -> str:
        if self.closed:
            return "Metadata(<closed>)"
        return f"Metadata({self.to_list()!r})"


def first(pairs: Iterable[Tuple[str, bytes]], key: str) -> Optional[bytes]:
    """The first value for ``key`` (case-insensitive) in a list of (key, bytes) pairs, or None."""
    key = key.lower()
    for k, v in pairs:
        if k.lower() == key:
            return v
    return None


class Peer:
    """The verified TLS client certificate of a call's peer (mTLS).

    ``subject`` is the distinguished name (e.g. ``"CN=client"``); ``dns``, ``uri`` and ``ip`` are the
    subject alternative names, as tuples of str; ``pairs`` is the library's list as (key, bytes).
    Handlers get ``None`` instead of a Peer when the connection has no client certificate.
    """

    __slots__ = ("subject", "dns", "uri", "ip", "pairs")

    def __init__(self, pairs: List[Tuple[str, bytes]]) -> None:
        self.pairs: List[Tuple[str, bytes]] = list(pairs)
        text = [(k, _ffi.decode_str(v)) for k, v in self.pairs]
        self.subject: str = next((v for k, v in text if k == "subject"), "")
        self.dns: Tuple[str, ...] = tuple(v for k, v in text if k == "dns")
        self.uri: Tuple[str, ...] = tuple(v for k, v in text if k == "uri")
        self.ip: Tuple[str, ...] = tuple(v for k, v in text if k == "ip")

    @classmethod
    def from_ptr(cls, md: Any) -> Optional["Peer"]:
        """A Peer copied from a borrowed ``connectplugin_metadata *``, or None for NULL."""
        if not md:
            return None
        return cls(read_metadata(md))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Peer) and self.pairs == other.pairs

    def __hash__(self) -> int:
        return hash(tuple(self.pairs))

    def __repr__(self) -> str:
        return f"Peer(subject={self.subject!r}, dns={self.dns!r}, uri={self.uri!r}, ip={self.ip!r})"
