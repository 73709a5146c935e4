"""Hosting plugins: :class:`PluginClient` launches a plugin binary (a connectplugin plugin in any
language, or a HashiCorp go-plugin gRPC plugin), handshakes, and dispenses clients for its services.

    with connectplugin.PluginClient(["./kv-plugin"], cookie=("KV_PLUGIN", "connectplugin-kv"),
                                    plugins={1: ["kv"]}) as plugin:
        kv = plugin.dispense("kv")          # a connectplugin.Client speaking gRPC to the plugin
        kv.call_unary("/pkg.KV/Get", request_bytes)
"""
from __future__ import annotations

import atexit
import itertools
import threading
from ctypes import POINTER, byref, c_char_p, c_int32, c_void_p
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple

from . import _ffi, _log
from ._client import Client
from ._error import check
from ._tls import TLSOptions


class PluginIdentity(NamedTuple):
    """What a plugin says about itself (:meth:`PluginClient.info`): connect-plugin-go's
    ``connectplugin.v1.PluginIdentity/GetPluginInfo``. A connectplugin plugin reports its first
    plugin's name and version, and the metadata ``app_protocol_version`` and ``runtime``."""

    id: str
    version: str
    metadata: Dict[str, str]


class PluginClient(_ffi.Managed):
    """A plugin process this host launched (go-plugin's ``plugin.Client``).

    ``command`` is the binary and its arguments. The plugin gets go-plugin's environment (the magic
    ``cookie``, ``PLUGIN_PROTOCOL_VERSIONS`` from the keys of ``plugins``, ports), this process's
    environment unless ``inherit_env`` is false, and ``env``, which wins over both. Starting blocks
    until the handshake (``start_timeout_ms``); the errors say what to change. :meth:`kill` (or
    ``close``, or leaving the ``with`` block) stops it: Shutdown, ``kill_grace_ms``, SIGTERM, the
    grace again, SIGKILL.

    The plugin's stderr, parsed as hclog, goes to ``logging.getLogger("connectplugin.plugin." + NAME)``
    (NAME: the binary's base name) at the matching level, or to ``logger(plugin, LogRecord)``
    (called on library threads: stderr lines in order on one, the host's own records, e.g. from
    :meth:`kill`, on others).

    ``auto_mtls`` is go-plugin's AutoMTLS (off by default, as there): an ephemeral host certificate in
    ``PLUGIN_CLIENT_CERT``, TLS to the plugin trusting only the certificate it prints. ``tls`` (a
    :class:`TLSOptions` with ``server_name``) is manual TLS for a plugin serving TLS of its own.

    With ``url`` instead of ``command`` (pass ``command=None``) the plugin already serves there, in
    remote mode ("http://host:port", "https://host:port", "unix:///path", or "inproc://NAME" for
    :meth:`Server.serve_plugin_in_process`): it is handshaken through
    connectplugin.v1.HandshakeService, :attr:`pid` is 0 and :meth:`kill` only disconnects (the
    service keeps serving its other hosts).

    With ``reattach`` (the :attr:`reattach_info` text of a host that started the plugin; go-plugin's
    ReattachConfig as JSON) instead of ``command``, this host connects to that running plugin;
    :meth:`kill` calls Shutdown, then SIGTERM and SIGKILL to its pid until it is gone, and
    :attr:`exit_status` is then ``("unknown", -1)`` (the status goes to the host that started it).

    ``sha256`` (SecureConfig): the binary's expected SHA-256 in hex; a different binary is not started
    (``ConnectError`` permission_denied naming both digests). :meth:`on_exit` registers a callback for
    the process's end; a call in flight when the plugin dies fails with unavailable, naming the plugin
    and its exit status. Every plugin still running when the interpreter exits is stopped
    (:func:`cleanup_plugins`, registered with ``atexit``), and none outlives a host that is killed
    (the library spawns it with the parent-death signal SIGKILL).

    ``max_restarts`` (default 0: never): a plugin that exits unexpectedly is relaunched after a backoff
    (``restart_backoff_ms``: initial, maximum; doubling) at most that many times; dispensed clients
    keep working. :attr:`restarts` counts the relaunches."""

    _kind = "plugin client"

    def __init__(
        self,
        command: Optional[Sequence[str]],
        cookie: Tuple[str, str],
        plugins: Mapping[int, Iterable[str]],
        env: Optional[Mapping[str, str]] = None,
        inherit_env: bool = True,
        cwd: Optional[str] = None,
        start_timeout_ms: Optional[int] = None,
        kill_grace_ms: Optional[int] = None,
        logger: Optional[Callable[[str, "_log.LogRecord"], None]] = None,
        auto_mtls: bool = False,
        tls: Optional[TLSOptions] = None,
        url: Optional[str] = None,
        reattach: Optional[str] = None,
        sha256: Optional[str] = None,
        max_restarts: int = 0,
        restart_backoff_ms: Tuple[int, int] = (100, 5000),
    ) -> None:
        if sum(1 for x in (command, url, reattach) if x) != 1:
            raise ValueError("give exactly one of command (the plugin binary), url (its endpoint) or reattach")
        key, value = cookie
        config = POINTER(_ffi.connectplugin_plugin_client_config)()
        err = _ffi.new_error_out()
        if reattach:
            st = _ffi.connectplugin_plugin_client_config_new_reattach(
                _ffi.as_cstr(key, "cookie key"), _ffi.as_cstr(value, "cookie value"), _ffi.as_cstr(reattach, "reattach"),
                byref(config), byref(err))
            command = ["reattached"]
        elif url:
            st = _ffi.connectplugin_plugin_client_config_new_url(_ffi.as_cstr(key, "cookie key"), _ffi.as_cstr(value, "cookie value"),
                                                                 _ffi.as_cstr(url, "url"), byref(config), byref(err))
            command = [url]
        else:
            assert command
            st = _ffi.connectplugin_plugin_client_config_new(_ffi.as_cstr(key, "cookie key"), _ffi.as_cstr(value, "cookie value"),
                                                             _ffi.as_cstr(command[0], "command"), byref(config), byref(err))
        check(st, err, "PluginClient")
        try:
            def call(fn: Any, *args: Any) -> None:
                e = _ffi.new_error_out()
                check(fn(config, *args, byref(e)), e, "PluginClient")

            for a in command[1:]:
                call(_ffi.connectplugin_plugin_client_config_add_arg, _ffi.as_cstr(a, "argument"))
            for version in sorted(plugins):
                for name in plugins[version]:
                    call(_ffi.connectplugin_plugin_client_config_add_plugin, int(version), _ffi.as_cstr(name, "plugin name"))
            for k in sorted(env or {}):
                call(_ffi.connectplugin_plugin_client_config_set_env, _ffi.as_cstr(k, "env key"),
                     _ffi.as_cstr((env or {})[k], "env value"))
            if not inherit_env:
                call(_ffi.connectplugin_plugin_client_config_set_inherit_env, 0)
            if cwd is not None:
                call(_ffi.connectplugin_plugin_client_config_set_working_dir, _ffi.as_cstr(cwd, "cwd"))
            if start_timeout_ms is not None:
                call(_ffi.connectplugin_plugin_client_config_set_start_timeout_ms, int(start_timeout_ms))
            if kill_grace_ms is not None:
                call(_ffi.connectplugin_plugin_client_config_set_kill_grace_ms, int(kill_grace_ms))
            key = _log.register(logger or _log.default_host_logger)  # dropped by the library's finalizer
            call(_ffi.connectplugin_plugin_client_config_set_logger, _log.LOG_TRAMPOLINE, c_void_p(key), _log.FINALIZER)
            if auto_mtls:
                call(_ffi.connectplugin_plugin_client_config_set_auto_mtls, 1)
            if tls is not None:
                with tls._native() as h:
                    call(_ffi.connectplugin_plugin_client_config_set_tls, h)
            if max_restarts:
                call(_ffi.connectplugin_plugin_client_config_set_restart, int(max_restarts), int(restart_backoff_ms[0]),
                     int(restart_backoff_ms[1]))
            if sha256 is not None:
                call(_ffi.connectplugin_plugin_client_config_set_checksum_sha256, _ffi.as_cstr(sha256, "sha256"))
            out = POINTER(_ffi.connectplugin_plugin_client)()
            err = _ffi.new_error_out()
            st = _ffi.connectplugin_plugin_client_start(config, byref(out), byref(err))
            check(st, err, "PluginClient")
        finally:
            _ffi.connectplugin_plugin_client_config_free(config)
        self.command = list(command)
        self._exit: Optional[Tuple[str, int]] = None
        self._set_handle(out)

    def _delete(self, handle: Any) -> None:
        err = _ffi.new_error_out()
        _ffi.connectplugin_plugin_client_kill(handle, byref(err))
        self._exit = self._read_exit(handle)
        _ffi.connectplugin_plugin_client_free(handle)

    @staticmethod
    def _read_exit(handle: Any) -> Optional[Tuple[str, int]]:
        v = c_int32(0)
        kind = int(_ffi.connectplugin_plugin_client_exit_status(handle, byref(v)))
        return {0: None, 1: ("exited", v.value), 2: ("signaled", v.value), 3: ("unknown", -1)}.get(kind)

    @property
    def negotiated_version(self) -> int:
        return int(_ffi.connectplugin_plugin_client_negotiated_version(self._ptr()))

    @property
    def reattach_info(self) -> Optional[str]:
        """What another host passes as ``reattach`` to connect to this running plugin (go-plugin's
        ReattachConfig as JSON); None for a plugin reached by URL."""
        r = _ffi.connectplugin_plugin_client_reattach_info(self._ptr())
        return None if r is None else r.decode()

    @property
    def pid(self) -> int:
        return int(_ffi.connectplugin_plugin_client_pid(self._ptr()))

    @property
    def exit_status(self) -> Optional[Tuple[str, int]]:
        """None while the plugin runs; ("exited", status), ("signaled", signal) or ("unknown", -1)."""
        h = self._handle
        return self._exit if h is None else self._read_exit(h)

    def dispense(self, name: str) -> Client:
        """A :class:`Client` for plugin ``name``'s services, over the plugin's one gRPC connection.
        Closing it leaves the plugin's connection open (:meth:`kill` closes it)."""
        out = POINTER(_ffi.connectplugin_client)()
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_plugin_client_dispense(self._ptr(), _ffi.as_cstr(name, "name"), byref(out), byref(err))
        check(st, err, "dispense")
        return Client._adopt(out, f"plugin:{self.command[0]}#{name}")

    def ping(self, timeout_ms: int = 10_000) -> None:
        """go-plugin's Ping: grpc.health.v1.Health/Check for "plugin"; raises when not serving."""
        err = _ffi.new_error_out()
        check(_ffi.connectplugin_plugin_client_ping(self._ptr(), int(timeout_ms), byref(err)), err, "ping")

    def info(self, timeout_ms: int = 10_000) -> PluginIdentity:
        """The plugin's id, version and metadata (``connectplugin.v1.PluginIdentity/GetPluginInfo``).
        Raises :class:`RPCError` ``unimplemented`` for a plugin that does not serve it (go-plugin
        plugins do not; :attr:`negotiated_version` and :attr:`pid` are known without it)."""
        out = POINTER(_ffi.connectplugin_plugin_info)()
        err = _ffi.new_error_out()
        check(_ffi.connectplugin_plugin_client_info(self._ptr(), int(timeout_ms), byref(out), byref(err)), err, "info")
        try:
            metadata = {}
            for i in range(_ffi.connectplugin_plugin_info_metadata_count(out)):
                k, v = c_char_p(), c_char_p()
                if _ffi.connectplugin_plugin_info_metadata_get(out, i, byref(k), byref(v)) == 0:
                    metadata[(k.value or b"").decode("utf-8", "replace")] = (v.value or b"").decode("utf-8", "replace")
            return PluginIdentity((_ffi.connectplugin_plugin_info_id(out) or b"").decode("utf-8", "replace"),
                              (_ffi.connectplugin_plugin_info_version(out) or b"").decode("utf-8", "replace"), metadata)
        finally:
            _ffi.connectplugin_plugin_info_free(out)

    @property
    def restarts(self) -> int:
        """How many times the restart policy relaunched the plugin."""
        h = self._handle
        return 0 if h is None else int(_ffi.connectplugin_plugin_client_restart_count(h))

    def on_exit(self, callback: Callable[[str, int], None]) -> None:
        """Calls ``callback(kind, value)`` once when the plugin process ended — ("exited", status),
        ("signaled", signal) or ("unknown", -1) — on a library I/O thread (at once, on this thread,
        if it already ended). Keep it short; exceptions in it are printed and ignored."""
        key = next(_exit_keys)
        with _exit_lock:
            _exit_callbacks[key] = callback
        err = _ffi.new_error_out()
        st = _ffi.connectplugin_plugin_client_on_exit(self._ptr(), _exit_trampoline, key, _exit_free, byref(err))
        check(st, err, "on_exit")

    def wait_exit(self, timeout_ms: int = -1) -> Optional[Tuple[str, int]]:
        """Blocks until the plugin process ended (``timeout_ms`` < 0: no limit) and returns
        :attr:`exit_status` (None on timeout)."""
        h = self._handle
        if h is None:
            return self._exit
        v = c_int32(0)
        kind = int(_ffi.connectplugin_plugin_client_wait_exit(h, int(timeout_ms), byref(v)))
        return {0: None, 1: ("exited", v.value), 2: ("signaled", v.value), 3: ("unknown", -1)}.get(kind)

    def kill(self) -> None:
        """Stops the plugin and waits until it ended (then frees the handle). Idempotent."""
        self.close()


_exit_lock = threading.Lock()
_exit_callbacks: Dict[int, Callable[[str, int], None]] = {}
_exit_keys = itertools.count(1)


def _on_exit(kind: int, value: int, user_data: Any) -> None:
    with _exit_lock:
        cb = _exit_callbacks.get(int(user_data or 0))
    if cb is None:
        return
    try:
        cb({1: "exited", 2: "signaled"}.get(kind, "unknown"), value if kind in (1, 2) else -1)
    except BaseException:  # noqa: BLE001 - nothing may unwind into C
        import traceback

        traceback.print_exc()


def _on_exit_free(user_data: Any) -> None:
    with _exit_lock:
        _exit_callbacks.pop(int(user_data or 0), None)


_exit_trampoline = _ffi.connectplugin_plugin_exit_func(_on_exit)
_exit_free = _ffi.connectplugin_free_func(_on_exit_free)


def cleanup_plugins() -> None:
    """Managed mode: stops every plugin this process started and has not stopped (go-plugin's
    CleanupClients), in parallel, and returns when all ended. Registered with ``atexit``."""
    _ffi.connectplugin_plugin_cleanup_all()


atexit.register(cleanup_plugins)
