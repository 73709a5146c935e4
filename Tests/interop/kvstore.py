"""The KV store semantics of examples/proto/README.md, shared by the Python peer servers (grpcio on
threads, connect-python on asyncio). Thread-safe; watchers are callbacks run under the store lock,
so a watcher's replay and the live events that follow it are never reordered, lost or doubled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from kvscenario import EMPTY_KEY, ERROR_KEY


class ReservedKey(Exception):
    """`__error__` was used as a key or prefix: the server fails the call with failed_precondition
    and a google.rpc.ErrorInfo detail."""


class EmptyKey(Exception):
    """An empty key: the server fails the call with invalid_argument `key must not be empty`."""

    def __str__(self) -> str:
        return EMPTY_KEY


@dataclass
class Change:
    key: str
    value: bytes
    deleted: bool


class Watcher:
    """One Watch call: its prefixes and where its events go (`sink(Change)`, called under the
    store lock, must not block)."""

    def __init__(self, sink: Callable[[Change], None]) -> None:
        self.prefixes: list[str] = []
        self.sink = sink

    def matches(self, key: str) -> bool:
        return any(key.startswith(p) for p in self.prefixes)


class Store:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()

    @staticmethod
    def check_key(key: str) -> None:
        if not key:
            raise EmptyKey()
        if key == ERROR_KEY:
            raise ReservedKey()

    @staticmethod
    def check_prefix(prefix: str) -> None:
        if prefix == ERROR_KEY:
            raise ReservedKey()

    def _notify(self, change: Change) -> None:
        for w in self._watchers:
            if w.matches(change.key):
                w.sink(change)

    def put(self, key: str, value: bytes) -> None:
        self.check_key(key)
        with self._lock:
            self._data[key] = bytes(value)
            self._notify(Change(key, bytes(value), False))

    def get(self, key: str) -> bytes | None:
        self.check_key(key)
        with self._lock:
            return self._data.get(key)

    def delete(self, key: str) -> bool:
        self.check_key(key)
        with self._lock:
            existed = self._data.pop(key, None) is not None
            if existed:
                self._notify(Change(key, b"", True))
            return existed

    def list(self, prefix: str) -> list[tuple[str, bytes]]:
        self.check_prefix(prefix)
        with self._lock:
            return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    def watch(self, sink: Callable[[Change], None]) -> Watcher:
        w = Watcher(sink)
        with self._lock:
            self._watchers.add(w)
        return w

    def add_prefix(self, w: Watcher, prefix: str) -> None:
        """Replays the keys that already match `prefix` (sorted) and watches it from now on."""
        self.check_prefix(prefix)
        with self._lock:
            for k in sorted(k for k in self._data if k.startswith(prefix)):
                w.sink(Change(k, self._data[k], False))
            w.prefixes.append(prefix)

    def unwatch(self, w: Watcher) -> None:
        with self._lock:
            self._watchers.discard(w)
