"""Plugin logs, both sides, through Python's ``logging``.

Plugin side: :class:`PluginLogHandler` turns every ``logging`` record into an hclog JSON line on
the process's real stderr (the one the host parses; while ``serve_plugin`` runs, fd 2 is forwarded
through plugin.GRPCStdio instead). ``Server.serve_plugin`` installs one on the root logger, so
``logging.getLogger("mine").info("put", extra={"key": k})`` in a plugin becomes
``{"@level":"info","@message":"put","@timestamp":"...","key":"k"}`` (fields: the record's ``extra``
attributes). :func:`plugin_log` writes one line directly.

Host side: each line of a plugin's stderr, parsed as hclog, goes to
``logging.getLogger("connectplugin.plugin." + NAME)`` at the matching level (trace is
:data:`TRACE`, 5), with the attributes ``plugin``, ``plugin_message``, ``plugin_fields`` (a dict)
and ``plugin_timestamp``; or to a callback ``logger(plugin, LogRecord)`` given to PluginClient.
"""
from __future__ import annotations

import itertools
import logging
import threading
from ctypes import byref, c_char_p
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import _ffi
from ._error import check

#: hclog's trace level in ``logging`` terms (below DEBUG).
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVEL_NAMES = ("trace", "debug", "info", "warn", "error")
_TO_LOGGING = (TRACE, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def level_from_logging(levelno: int) -> int:
    """A ``logging`` level as a CONNECTPLUGIN_LOG_* value (0 trace .. 4 error)."""
    if levelno < logging.DEBUG:
        return 0
    if levelno < logging.INFO:
        return 1
    if levelno < logging.WARNING:
        return 2
    if levelno < logging.ERROR:
        return 3
    return 4


class LogRecord(NamedTuple):
    """One log line of a plugin, as a host receives it."""

    level: str  # "trace", "debug", "info", "warn" or "error"
    message: str
    timestamp: str  # hclog's @timestamp as written; "" when the line had none
    fields: List[Tuple[str, str]]

    @property
    def levelno(self) -> int:
        """The level in ``logging`` terms."""
        return _TO_LOGGING[LEVEL_NAMES.index(self.level)]


def _cstr(s: Any) -> bytes:
    return str(s).replace("\x00", "").encode("utf-8", "replace")


def plugin_log(level: int, message: str, fields: Optional[List[Tuple[str, Any]]] = None) -> None:
    """Writes one hclog JSON line on the plugin's real stderr. ``level``: 0 trace .. 4 error;
    ``fields``: (key, value) pairs, values as ``str``. Any thread, any time."""
    pairs = [(_cstr(k), _cstr(v)) for k, v in (fields or [])]
    n = len(pairs)
    keys = (c_char_p * max(n, 1))(*[k for k, _ in pairs])
    values = (c_char_p * max(n, 1))(*[v for _, v in pairs])
    err = _ffi.new_error_out()
    check(_ffi.connectplugin_plugin_log(int(level), _cstr(message), keys, values, n, byref(err)), err, "plugin_log")


# The attributes every logging.LogRecord has; the others came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class PluginLogHandler(logging.Handler):
    """A ``logging.Handler`` writing hclog JSON lines on the plugin's real stderr: the record's
    message (``getMessage()``), its level, the logger's name as ``@module`` unless it is the root,
    the ``extra`` attributes as fields, and a formatted exception as ``error``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: List[Tuple[str, Any]] = []
            if record.name and record.name != "root":
                fields.append(("@module", record.name))
            for k, v in vars(record).items():
                if k not in _STANDARD and not k.startswith("_"):
                    fields.append((k, v))
            if record.exc_info:
                fields.append(("error", logging.Formatter().formatException(record.exc_info)))
            plugin_log(level_from_logging(record.levelno), record.getMessage(), fields)
        except Exception:
            self.handleError(record)


# Host side: the callbacks, by user_data key, alive until the library's finalizer runs.
_LOGGERS: Dict[int, Callable[[str, LogRecord], None]] = {}
_LOCK = threading.Lock()
_NEXT = itertools.count(1)


def default_host_logger(plugin: str, r: LogRecord) -> None:
    """Logs ``r`` on ``logging.getLogger("connectplugin.plugin." + plugin)`` at its level."""
    log = logging.getLogger("connectplugin.plugin." + plugin)
    if not log.isEnabledFor(r.levelno):
        return
    text = r.message + "".join(f" {k}={v}" for k, v in r.fields)
    log.log(r.levelno, "%s", text, extra={"plugin": plugin, "plugin_message": r.message,
                                          "plugin_fields": dict(r.fields), "plugin_timestamp": r.timestamp})


def _deliver(plugin: Optional[bytes], level: int, message: Optional[bytes], timestamp: Optional[bytes],
             keys: Any, values: Any, count: int, user_data: Optional[int]) -> None:
    try:
        with _LOCK:
            fn = _LOGGERS.get(user_data or 0)
        if fn is None:
            return
        d = lambda b: (b or b"").decode("utf-8", "replace")  # noqa: E731
        fields = [(d(keys[i]), d(values[i])) for i in range(int(count))]
        lv = LEVEL_NAMES[level] if 0 <= level < len(LEVEL_NAMES) else "info"
        fn(d(plugin), LogRecord(lv, d(message), d(timestamp), fields))
    except BaseException:  # nothing may unwind into C
        pass


def _finalize(user_data: Optional[int]) -> None:
    with _LOCK:
        _LOGGERS.pop(user_data or 0, None)


LOG_TRAMPOLINE = _ffi.connectplugin_log_func(_deliver)
FINALIZER = _ffi.connectplugin_free_func(_finalize)


def register(fn: Callable[[str, LogRecord], None]) -> int:
    with _LOCK:
        key = next(_NEXT)
        _LOGGERS[key] = fn
    return key
