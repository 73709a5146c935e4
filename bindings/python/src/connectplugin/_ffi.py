"""Loads libconnectplugin and declares every function of include/connectplugin.h.

Every function gets ``argtypes`` and ``restype`` (a pointer ``restype`` left at the default ``c_int``
would be truncated to 32 bits). Opaque handles are distinct empty ``ctypes.Structure`` subclasses so
that passing the wrong handle is a ``ctypes.ArgumentError`` instead of memory corruption.

The library is loaded with ``ctypes.CDLL``, which releases the GIL for the duration of every call
(blocking calls such as ``connectplugin_client_call_unary`` do not stall other Python threads).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

#: The ABI version this binding was written against (CONNECTPLUGIN_ABI_VERSION of the header).
ABI_VERSION = 1

LIBRARY_ENV = "CONNECTPLUGIN_LIBRARY"
_LIBNAME = "libconnectplugin.so"

# ---------------------------------------------------------------------------------------------------
# Locating and loading the library
# ---------------------------------------------------------------------------------------------------


def _source_tree_root() -> Optional[Path]:
    """The repository root when running from the source tree (bindings/python/src/connectplugin)."""
    here = Path(__file__).resolve().parent
    try:
        root = here.parents[3]
    except IndexError:
        return None
    if (root / "include" / "connectplugin.h").is_file() and (root / "bindings" / "python").is_dir():
        return root
    return None


def library_candidates() -> List[str]:
    """The paths tried, in order: $CONNECTPLUGIN_LIBRARY, the bundled copy, the source-tree builds,
    then the system (``ctypes.util.find_library``)."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        # An explicit choice is never silently replaced by another library.
        return [env]
    out: List[str] = []
    out.append(str(Path(__file__).resolve().parent / "_lib" / _LIBNAME))
    root = _source_tree_root()
    if root is not None:
        out.append(str(root / ".build" / "debug" / _LIBNAME))
        out.append(str(root / ".build" / "release" / _LIBNAME))
    found = ctypes.util.find_library("connectplugin")
    if found:
        out.append(found)
    return out


def _load() -> Tuple[ctypes.CDLL, str]:
    tried: List[str] = []
    candidates = library_candidates()
    explicit = bool(os.environ.get(LIBRARY_ENV))
    for i, path in enumerate(candidates):
        is_system_name = not explicit and i == len(candidates) - 1 and os.sep not in path
        if not is_system_name and not os.path.exists(path):
            tried.append(f"{path} (not found)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path} ({e})")
            if explicit:
                break
    raise ImportError(
        "connectplugin: cannot load libconnectplugin.so. Set the environment variable "
        f"{LIBRARY_ENV} to the full path of libconnectplugin.so (build it with `swift build` in the "
        "repository), or install it where the dynamic linker finds it. Tried: " + "; ".join(tried)
    )


lib, library_path = _load()

# ---------------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------------


class connectplugin_error(ctypes.Structure):
    pass


class connectplugin_metadata(ctypes.Structure):
    pass


class connectplugin_server_options(ctypes.Structure):
    pass


class connectplugin_plugin_config(ctypes.Structure):
    pass


class connectplugin_plugin_client_config(ctypes.Structure):
    pass


class connectplugin_plugin_client(ctypes.Structure):
    pass


class connectplugin_plugin_info(ctypes.Structure):
    pass


class connectplugin_server(ctypes.Structure):
    pass


class connectplugin_call(ctypes.Structure):
    pass


class connectplugin_client_options(ctypes.Structure):
    pass


class connectplugin_client(ctypes.Structure):
    pass


class connectplugin_call_options(ctypes.Structure):
    pass


class connectplugin_response(ctypes.Structure):
    pass


class connectplugin_tls_options(ctypes.Structure):
    pass


class connectplugin_stream(ctypes.Structure):
    pass


class connectplugin_client_stream(ctypes.Structure):
    pass


class connectplugin_interceptor(ctypes.Structure):
    pass


class connectplugin_interceptor_call(ctypes.Structure):
    pass


connectplugin_status = c_int32
connectplugin_code = c_int32
connectplugin_method_kind = c_int32

#: Not an error: *_receive has no more messages (CONNECTPLUGIN_EOF).
EOF = 1
#: Method kinds (CONNECTPLUGIN_UNARY, …).
UNARY = 0
CLIENT_STREAM = 1
SERVER_STREAM = 2
BIDI_STREAM = 3

#: typedef void (*connectplugin_unary_handler)(connectplugin_call *call, void *user_data);
connectplugin_unary_handler = CFUNCTYPE(None, POINTER(connectplugin_call), c_void_p)
#: typedef void (*connectplugin_free_func)(void *user_data);
connectplugin_free_func = CFUNCTYPE(None, c_void_p)
#: typedef void (*connectplugin_done_func)(void *user_data);
#: Declared for completeness; the binding does not register one: it would run Python (take the GIL)
#: on a library I/O thread. Python handlers poll is_done / get errors from receive and send instead.
connectplugin_done_func = CFUNCTYPE(None, c_void_p)
#: typedef void (*connectplugin_log_func)(const char *plugin, int32_t level, const char *message,
#:     const char *timestamp, const char *const *keys, const char *const *values, size_t field_count, void *user_data);
connectplugin_log_func = CFUNCTYPE(None, c_char_p, c_int32, c_char_p, c_char_p, POINTER(c_char_p), POINTER(c_char_p),
                                   c_size_t, c_void_p)
#: ``void (*)(int32_t kind, int32_t value, void *user_data)``: a plugin process ended.
connectplugin_plugin_exit_func = CFUNCTYPE(None, c_int32, c_int32, c_void_p)
#: typedef void (*connectplugin_stream_handler)(connectplugin_stream *stream, void *user_data);
connectplugin_stream_handler = CFUNCTYPE(None, POINTER(connectplugin_stream), c_void_p)

#: typedef int32_t (*connectplugin_interceptor_start_func)(connectplugin_interceptor_call *call, void *user_data);
connectplugin_interceptor_start_func = CFUNCTYPE(c_int32, POINTER(connectplugin_interceptor_call), c_void_p)
#: typedef void (*connectplugin_interceptor_end_func)(connectplugin_interceptor_call *call, connectplugin_code code,
#:                                                     const char *message, void *user_data);
connectplugin_interceptor_end_func = CFUNCTYPE(None, POINTER(connectplugin_interceptor_call), c_int32, c_char_p,
                                               c_void_p)
#: typedef void (*connectplugin_interceptor_message_func)(connectplugin_interceptor_call *call, int32_t direction,
#:                                                         const uint8_t *data, size_t len, void *user_data);
connectplugin_interceptor_message_func = CFUNCTYPE(None, POINTER(connectplugin_interceptor_call), c_int32,
                                                   POINTER(c_uint8), c_size_t, c_void_p)
#: Message directions (CONNECTPLUGIN_DIRECTION_REQUEST / _RESPONSE).
DIRECTION_REQUEST = 0
DIRECTION_RESPONSE = 1

_u8p = POINTER(c_uint8)
_u8pp = POINTER(POINTER(c_uint8))
_charpp = POINTER(c_char_p)
_sizep = POINTER(c_size_t)
_errpp = POINTER(POINTER(connectplugin_error))

# ---------------------------------------------------------------------------------------------------
# Functions: name -> (restype, argtypes). Exactly the functions of include/connectplugin.h.
# ---------------------------------------------------------------------------------------------------

_DECLARATIONS: Dict[str, Tuple[Any, List[Any]]] = {
    # Versions
    "connectplugin_version": (c_char_p, []),
    "connectplugin_version_num": (c_uint32, []),
    "connectplugin_abi_version": (c_uint32, []),
    # Status and codes
    "connectplugin_status_string": (c_char_p, [connectplugin_status]),
    "connectplugin_code_name": (c_char_p, [connectplugin_code]),
    # Error objects
    "connectplugin_error_status": (connectplugin_status, [POINTER(connectplugin_error)]),
    "connectplugin_error_code": (connectplugin_code, [POINTER(connectplugin_error)]),
    "connectplugin_error_message": (c_char_p, [POINTER(connectplugin_error)]),
    "connectplugin_error_detail_count": (c_size_t, [POINTER(connectplugin_error)]),
    "connectplugin_error_detail": (
        connectplugin_status,
        [POINTER(connectplugin_error), c_size_t, _charpp, _u8pp, _sizep],
    ),
    "connectplugin_error_metadata": (POINTER(connectplugin_metadata), [POINTER(connectplugin_error)]),
    "connectplugin_error_free": (None, [POINTER(connectplugin_error)]),
    # Metadata
    "connectplugin_metadata_new": (POINTER(connectplugin_metadata), []),
    "connectplugin_metadata_add": (
        connectplugin_status,
        [POINTER(connectplugin_metadata), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_metadata_count": (c_size_t, [POINTER(connectplugin_metadata)]),
    "connectplugin_metadata_get": (
        connectplugin_status,
        [POINTER(connectplugin_metadata), c_size_t, _charpp, _u8pp, _sizep],
    ),
    "connectplugin_metadata_lookup": (_u8p, [POINTER(connectplugin_metadata), c_char_p, _sizep]),
    "connectplugin_metadata_free": (None, [POINTER(connectplugin_metadata)]),
    # TLS options
    "connectplugin_tls_options_new": (POINTER(connectplugin_tls_options), []),
    "connectplugin_tls_options_set_cert_files": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), c_char_p, c_char_p, _errpp],
    ),
    "connectplugin_tls_options_set_cert_pem": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), _u8p, c_size_t, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_tls_options_set_ca_file": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), c_char_p, _errpp],
    ),
    "connectplugin_tls_options_set_ca_pem": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), _u8p, c_size_t, _errpp],
    ),
    "connectplugin_tls_options_set_require_client_cert": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), c_int32, _errpp],
    ),
    "connectplugin_tls_options_set_server_name": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), c_char_p, _errpp],
    ),
    "connectplugin_tls_options_set_insecure_skip_verify": (
        connectplugin_status,
        [POINTER(connectplugin_tls_options), c_int32, _errpp],
    ),
    "connectplugin_tls_options_free": (None, [POINTER(connectplugin_tls_options)]),
    # Server options
    "connectplugin_server_options_new": (POINTER(connectplugin_server_options), []),
    "connectplugin_server_options_set_max_message_bytes": (
        connectplugin_status,
        [POINTER(connectplugin_server_options), c_uint64, _errpp],
    ),
    "connectplugin_server_options_set_handler_threads": (
        connectplugin_status,
        [POINTER(connectplugin_server_options), c_uint32, _errpp],
    ),
    "connectplugin_server_options_set_stream_limits": (
        connectplugin_status,
        [POINTER(connectplugin_server_options), c_uint32, c_uint32, c_uint32, _errpp],
    ),
    "connectplugin_server_options_set_idle_thread_timeout_ms": (
        connectplugin_status,
        [POINTER(connectplugin_server_options), c_uint32, _errpp],
    ),
    "connectplugin_server_options_free": (None, [POINTER(connectplugin_server_options)]),
    # Server
    "connectplugin_server_new": (
        connectplugin_status,
        [POINTER(connectplugin_server_options), POINTER(POINTER(connectplugin_server)), _errpp],
    ),
    "connectplugin_server_listen_tcp": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, _errpp],
    ),
    "connectplugin_server_listen_tls": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, POINTER(connectplugin_tls_options), _errpp],
    ),
    "connectplugin_server_listen_unix": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, _errpp],
    ),
    "connectplugin_server_listen_inprocess": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, _errpp],
    ),
    "connectplugin_server_address_count": (c_size_t, [POINTER(connectplugin_server)]),
    "connectplugin_server_address": (c_char_p, [POINTER(connectplugin_server), c_size_t]),
    "connectplugin_server_handler_thread_count": (c_size_t, [POINTER(connectplugin_server)]),
    "connectplugin_server_register_unary": (
        connectplugin_status,
        [
            POINTER(connectplugin_server),
            c_char_p,
            connectplugin_unary_handler,
            c_void_p,
            connectplugin_free_func,
            _errpp,
        ],
    ),
    "connectplugin_server_register_unary_inline": (
        connectplugin_status,
        [
            POINTER(connectplugin_server),
            c_char_p,
            connectplugin_unary_handler,
            c_void_p,
            connectplugin_free_func,
            _errpp,
        ],
    ),
    "connectplugin_server_register_stream": (
        connectplugin_status,
        [
            POINTER(connectplugin_server),
            c_char_p,
            connectplugin_method_kind,
            connectplugin_stream_handler,
            c_void_p,
            connectplugin_free_func,
            _errpp,
        ],
    ),
    "connectplugin_server_set_no_side_effects": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, _errpp],
    ),
    "connectplugin_server_start": (connectplugin_status, [POINTER(connectplugin_server), _errpp]),
    "connectplugin_server_stop": (connectplugin_status, [POINTER(connectplugin_server), c_int64, _errpp]),
    "connectplugin_server_free": (None, [POINTER(connectplugin_server)]),
    # Inside a handler
    "connectplugin_call_request": (_u8p, [POINTER(connectplugin_call), _sizep]),
    "connectplugin_call_procedure": (c_char_p, [POINTER(connectplugin_call)]),
    "connectplugin_call_codec": (c_char_p, [POINTER(connectplugin_call)]),
    "connectplugin_call_request_headers": (POINTER(connectplugin_metadata), [POINTER(connectplugin_call)]),
    "connectplugin_call_timeout_remaining_ms": (c_int64, [POINTER(connectplugin_call)]),
    "connectplugin_call_is_done": (c_int32, [POINTER(connectplugin_call)]),
    "connectplugin_call_on_done": (
        connectplugin_status,
        [POINTER(connectplugin_call), connectplugin_done_func, c_void_p, connectplugin_free_func, _errpp],
    ),
    "connectplugin_call_add_response_header": (
        connectplugin_status,
        [POINTER(connectplugin_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_call_add_response_trailer": (
        connectplugin_status,
        [POINTER(connectplugin_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_call_respond": (
        connectplugin_status,
        [POINTER(connectplugin_call), _u8p, c_size_t, _errpp],
    ),
    "connectplugin_call_add_error_detail": (
        connectplugin_status,
        [POINTER(connectplugin_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_call_fail": (
        connectplugin_status,
        [POINTER(connectplugin_call), connectplugin_code, c_char_p, _errpp],
    ),
    "connectplugin_call_protocol": (c_char_p, [POINTER(connectplugin_call)]),
    "connectplugin_call_peer": (POINTER(connectplugin_metadata), [POINTER(connectplugin_call)]),
    # Inside a streaming handler
    "connectplugin_stream_procedure": (c_char_p, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_codec": (c_char_p, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_protocol": (c_char_p, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_kind": (connectplugin_method_kind, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_request_headers": (POINTER(connectplugin_metadata), [POINTER(connectplugin_stream)]),
    "connectplugin_stream_peer": (POINTER(connectplugin_metadata), [POINTER(connectplugin_stream)]),
    "connectplugin_stream_timeout_remaining_ms": (c_int64, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_is_done": (c_int32, [POINTER(connectplugin_stream)]),
    "connectplugin_stream_on_done": (
        connectplugin_status,
        [POINTER(connectplugin_stream), connectplugin_done_func, c_void_p, connectplugin_free_func, _errpp],
    ),
    "connectplugin_stream_receive": (
        connectplugin_status,
        [POINTER(connectplugin_stream), _u8pp, _sizep, _errpp],
    ),
    "connectplugin_stream_send": (
        connectplugin_status,
        [POINTER(connectplugin_stream), _u8p, c_size_t, _errpp],
    ),
    "connectplugin_stream_send_headers": (connectplugin_status, [POINTER(connectplugin_stream), _errpp]),
    "connectplugin_stream_add_response_header": (
        connectplugin_status,
        [POINTER(connectplugin_stream), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_stream_add_response_trailer": (
        connectplugin_status,
        [POINTER(connectplugin_stream), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_stream_add_error_detail": (
        connectplugin_status,
        [POINTER(connectplugin_stream), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_stream_fail": (
        connectplugin_status,
        [POINTER(connectplugin_stream), connectplugin_code, c_char_p, _errpp],
    ),
    "connectplugin_stream_finish": (connectplugin_status, [POINTER(connectplugin_stream), _errpp]),
    # Client options
    "connectplugin_client_options_new": (POINTER(connectplugin_client_options), []),
    "connectplugin_client_options_set_codec": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_char_p, _errpp],
    ),
    "connectplugin_client_options_set_http_version": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_int32, _errpp],
    ),
    "connectplugin_client_options_set_compression": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_char_p, _errpp],
    ),
    "connectplugin_client_options_set_timeout_ms": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_int64, _errpp],
    ),
    "connectplugin_client_options_set_max_message_bytes": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_uint64, _errpp],
    ),
    "connectplugin_client_options_add_header": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_client_options_set_protocol": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_char_p, _errpp],
    ),
    "connectplugin_client_options_set_tls": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), POINTER(connectplugin_tls_options), _errpp],
    ),
    "connectplugin_client_options_set_use_get": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), c_int32, _errpp],
    ),
    "connectplugin_client_options_free": (None, [POINTER(connectplugin_client_options)]),
    # Client
    "connectplugin_client_new": (
        connectplugin_status,
        [c_char_p, POINTER(connectplugin_client_options), POINTER(POINTER(connectplugin_client)), _errpp],
    ),
    "connectplugin_client_free": (None, [POINTER(connectplugin_client)]),
    "connectplugin_call_options_new": (POINTER(connectplugin_call_options), []),
    "connectplugin_call_options_set_timeout_ms": (
        connectplugin_status,
        [POINTER(connectplugin_call_options), c_int64, _errpp],
    ),
    "connectplugin_call_options_add_header": (
        connectplugin_status,
        [POINTER(connectplugin_call_options), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_call_options_set_no_side_effects": (
        connectplugin_status,
        [POINTER(connectplugin_call_options), c_int32, _errpp],
    ),
    "connectplugin_call_options_free": (None, [POINTER(connectplugin_call_options)]),
    "connectplugin_client_call_unary": (
        connectplugin_status,
        [
            POINTER(connectplugin_client),
            c_char_p,
            _u8p,
            c_size_t,
            POINTER(connectplugin_call_options),
            POINTER(POINTER(connectplugin_response)),
            _errpp,
        ],
    ),
    "connectplugin_response_message": (_u8p, [POINTER(connectplugin_response), _sizep]),
    "connectplugin_response_headers": (POINTER(connectplugin_metadata), [POINTER(connectplugin_response)]),
    "connectplugin_response_trailers": (POINTER(connectplugin_metadata), [POINTER(connectplugin_response)]),
    "connectplugin_response_free": (None, [POINTER(connectplugin_response)]),
    # Client streams
    "connectplugin_client_open_stream": (
        connectplugin_status,
        [
            POINTER(connectplugin_client),
            c_char_p,
            connectplugin_method_kind,
            POINTER(connectplugin_call_options),
            POINTER(POINTER(connectplugin_client_stream)),
            _errpp,
        ],
    ),
    "connectplugin_client_stream_send": (
        connectplugin_status,
        [POINTER(connectplugin_client_stream), _u8p, c_size_t, _errpp],
    ),
    "connectplugin_client_stream_close_send": (
        connectplugin_status,
        [POINTER(connectplugin_client_stream), _errpp],
    ),
    "connectplugin_client_stream_receive": (
        connectplugin_status,
        [POINTER(connectplugin_client_stream), _u8pp, _sizep, _errpp],
    ),
    "connectplugin_client_stream_headers": (
        POINTER(connectplugin_metadata),
        [POINTER(connectplugin_client_stream)],
    ),
    "connectplugin_client_stream_trailers": (
        POINTER(connectplugin_metadata),
        [POINTER(connectplugin_client_stream)],
    ),
    "connectplugin_client_stream_cancel": (None, [POINTER(connectplugin_client_stream)]),
    "connectplugin_client_stream_free": (None, [POINTER(connectplugin_client_stream)]),
    # Interceptors
    "connectplugin_interceptor_new": (
        connectplugin_status,
        [connectplugin_interceptor_start_func, connectplugin_interceptor_end_func, c_void_p, connectplugin_free_func,
         POINTER(POINTER(connectplugin_interceptor)), _errpp],
    ),
    "connectplugin_interceptor_set_message_func": (
        connectplugin_status,
        [POINTER(connectplugin_interceptor), connectplugin_interceptor_message_func, _errpp],
    ),
    "connectplugin_interceptor_free": (None, [POINTER(connectplugin_interceptor)]),
    "connectplugin_server_add_interceptor": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_char_p, POINTER(connectplugin_interceptor), _errpp],
    ),
    "connectplugin_client_options_add_interceptor": (
        connectplugin_status,
        [POINTER(connectplugin_client_options), POINTER(connectplugin_interceptor), _errpp],
    ),
    "connectplugin_interceptor_call_procedure": (c_char_p, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_kind": (connectplugin_method_kind, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_protocol": (c_char_p, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_codec": (c_char_p, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_is_server": (c_int32, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_peer": (POINTER(connectplugin_metadata), [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_request_headers": (
        POINTER(connectplugin_metadata),
        [POINTER(connectplugin_interceptor_call)],
    ),
    "connectplugin_interceptor_call_timeout_remaining_ms": (c_int64, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_response_headers": (
        POINTER(connectplugin_metadata),
        [POINTER(connectplugin_interceptor_call)],
    ),
    "connectplugin_interceptor_call_response_trailers": (
        POINTER(connectplugin_metadata),
        [POINTER(connectplugin_interceptor_call)],
    ),
    "connectplugin_interceptor_call_set_state": (None, [POINTER(connectplugin_interceptor_call), c_void_p]),
    "connectplugin_interceptor_call_state": (c_void_p, [POINTER(connectplugin_interceptor_call)]),
    "connectplugin_interceptor_call_reject": (
        connectplugin_status,
        [POINTER(connectplugin_interceptor_call), connectplugin_code, c_char_p, _errpp],
    ),
    "connectplugin_interceptor_call_add_request_header": (
        connectplugin_status,
        [POINTER(connectplugin_interceptor_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_interceptor_call_add_response_header": (
        connectplugin_status,
        [POINTER(connectplugin_interceptor_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    "connectplugin_interceptor_call_add_response_trailer": (
        connectplugin_status,
        [POINTER(connectplugin_interceptor_call), c_char_p, _u8p, c_size_t, _errpp],
    ),
    # Plugins
    "connectplugin_plugin_config_new": (
        connectplugin_status,
        [c_char_p, c_char_p, POINTER(POINTER(connectplugin_plugin_config)), _errpp],
    ),
    "connectplugin_plugin_config_add_plugin": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), c_int32, c_char_p, c_char_p, c_char_p, _errpp],
    ),
    "connectplugin_plugin_config_set_grace_ms": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), c_int64, _errpp],
    ),
    "connectplugin_plugin_config_set_network": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), c_char_p, _errpp],
    ),
    "connectplugin_plugin_config_set_tls": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), POINTER(connectplugin_tls_options), _errpp],
    ),
    "connectplugin_plugin_config_free": (None, [POINTER(connectplugin_plugin_config)]),
    "connectplugin_plugin_serve": (c_int32, [POINTER(connectplugin_server), POINTER(connectplugin_plugin_config)]),
    "connectplugin_plugin_set_health": (
        connectplugin_status,
        [POINTER(connectplugin_server), c_int32, c_char_p, _errpp],
    ),
    "connectplugin_plugin_log": (
        connectplugin_status,
        [c_int32, c_char_p, POINTER(c_char_p), POINTER(c_char_p), c_size_t, _errpp],
    ),
    "connectplugin_plugin_config_set_logger": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), connectplugin_log_func, c_void_p, connectplugin_free_func, _errpp],
    ),
    "connectplugin_plugin_client_config_set_logger": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), connectplugin_log_func, c_void_p, connectplugin_free_func, _errpp],
    ),
    "connectplugin_plugin_config_set_listen_address": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_config), c_char_p, _errpp],
    ),
    "connectplugin_plugin_serve_in_process": (
        connectplugin_status,
        [POINTER(connectplugin_server), POINTER(connectplugin_plugin_config), c_char_p, _errpp],
    ),
    # Hosting plugins
    "connectplugin_plugin_client_config_new": (
        connectplugin_status,
        [c_char_p, c_char_p, c_char_p, POINTER(POINTER(connectplugin_plugin_client_config)), _errpp],
    ),
    "connectplugin_plugin_client_config_add_arg": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_char_p, _errpp],
    ),
    "connectplugin_plugin_client_config_add_plugin": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int32, c_char_p, _errpp],
    ),
    "connectplugin_plugin_client_config_set_env": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_char_p, c_char_p, _errpp],
    ),
    "connectplugin_plugin_client_config_set_inherit_env": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int32, _errpp],
    ),
    "connectplugin_plugin_client_config_set_working_dir": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_char_p, _errpp],
    ),
    "connectplugin_plugin_client_config_set_start_timeout_ms": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int64, _errpp],
    ),
    "connectplugin_plugin_client_config_set_kill_grace_ms": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int64, _errpp],
    ),
    "connectplugin_plugin_client_config_set_auto_mtls": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int32, _errpp],
    ),
    "connectplugin_plugin_client_config_set_tls": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), POINTER(connectplugin_tls_options), _errpp],
    ),
    "connectplugin_plugin_client_config_free": (None, [POINTER(connectplugin_plugin_client_config)]),
    "connectplugin_plugin_client_start": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), POINTER(POINTER(connectplugin_plugin_client)), _errpp],
    ),
    "connectplugin_plugin_client_negotiated_version": (c_int32, [POINTER(connectplugin_plugin_client)]),
    "connectplugin_plugin_client_pid": (c_int32, [POINTER(connectplugin_plugin_client)]),
    "connectplugin_plugin_client_dispense": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client), c_char_p, POINTER(POINTER(connectplugin_client)), _errpp],
    ),
    "connectplugin_plugin_client_ping": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client), c_int64, _errpp],
    ),
    "connectplugin_plugin_client_info": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client), c_int64, POINTER(POINTER(connectplugin_plugin_info)), _errpp],
    ),
    "connectplugin_plugin_info_id": (c_char_p, [POINTER(connectplugin_plugin_info)]),
    "connectplugin_plugin_info_version": (c_char_p, [POINTER(connectplugin_plugin_info)]),
    "connectplugin_plugin_info_metadata_count": (c_size_t, [POINTER(connectplugin_plugin_info)]),
    "connectplugin_plugin_info_metadata_get": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_info), c_size_t, _charpp, _charpp],
    ),
    "connectplugin_plugin_info_free": (None, [POINTER(connectplugin_plugin_info)]),
    "connectplugin_plugin_client_kill": (connectplugin_status, [POINTER(connectplugin_plugin_client), _errpp]),
    "connectplugin_plugin_client_exit_status": (
        c_int32,
        [POINTER(connectplugin_plugin_client), POINTER(c_int32)],
    ),
    "connectplugin_plugin_client_free": (None, [POINTER(connectplugin_plugin_client)]),
    "connectplugin_plugin_client_config_new_url": (
        connectplugin_status,
        [c_char_p, c_char_p, c_char_p, POINTER(POINTER(connectplugin_plugin_client_config)), _errpp],
    ),
    "connectplugin_plugin_client_config_new_reattach": (
        connectplugin_status,
        [c_char_p, c_char_p, c_char_p, POINTER(POINTER(connectplugin_plugin_client_config)), _errpp],
    ),
    "connectplugin_plugin_client_reattach_info": (c_char_p, [POINTER(connectplugin_plugin_client)]),
    "connectplugin_plugin_client_on_exit": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client), connectplugin_plugin_exit_func, c_void_p, connectplugin_free_func, _errpp],
    ),
    "connectplugin_plugin_client_wait_exit": (
        c_int32,
        [POINTER(connectplugin_plugin_client), c_int64, POINTER(c_int32)],
    ),
    "connectplugin_plugin_client_config_set_checksum_sha256": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_char_p, _errpp],
    ),
    "connectplugin_plugin_cleanup_all": (None, []),
    "connectplugin_plugin_client_config_set_restart": (
        connectplugin_status,
        [POINTER(connectplugin_plugin_client_config), c_int32, c_int64, c_int64, _errpp],
    ),
    "connectplugin_plugin_client_restart_count": (c_int32, [POINTER(connectplugin_plugin_client)]),
}

#: name -> the declared ctypes function object of ``lib``.
FUNCTIONS: Dict[str, Any] = {}


def _declare() -> None:
    missing = [name for name in _DECLARATIONS if not hasattr(lib, name)]
    if missing:
        raise ImportError(
            f"connectplugin: {library_path} does not export {', '.join(missing)}; it does not match "
            "the header this binding was written for"
        )
    for name, (restype, argtypes) in _DECLARATIONS.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
        FUNCTIONS[name] = fn
        globals()[name] = fn


_declare()

_abi = lib.connectplugin_abi_version()
if _abi != ABI_VERSION:
    raise ImportError(
        f"connectplugin: {library_path} implements ABI version {_abi}, but this binding needs "
        f"ABI version {ABI_VERSION}; use a matching library (set {LIBRARY_ENV})"
    )

# ---------------------------------------------------------------------------------------------------
# Helpers shared by the wrapper modules
# ---------------------------------------------------------------------------------------------------


def as_bytes(value: Any, what: str = "value") -> bytes:
    """Accepts bytes-like objects (and str, encoded as UTF-8) and returns bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, bytearray, memoryview or str, not {type(value).__name__}")


def as_cstr(value: Any, what: str) -> bytes:
    """A str or bytes argument as NUL-free bytes for a ``c_char_p`` parameter."""
    if isinstance(value, os.PathLike):
        value = os.fsencode(value)
    if isinstance(value, str):
        b = value.encode("utf-8")
    elif isinstance(value, bytes):
        b = value
    else:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in b:
        raise ValueError(f"{what} must not contain NUL characters")
    return b


def u8_ptr(data: bytes) -> Any:
    """A ``uint8_t *`` pointing into @p data (no copy). Keep @p data alive during the call."""
    return ctypes.cast(c_char_p(data), _u8p)


def read_bytes(ptr: Any, length: int) -> bytes:
    """Copies @p length bytes from a borrowed ``uint8_t *``."""
    if length == 0:
        return b""
    if not ptr:
        raise RuntimeError("connectplugin: library returned NULL data with a non-zero length")
    return ctypes.string_at(ptr, length)


def decode_str(b: Optional[bytes]) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def new_error_out() -> Any:
    """A fresh ``connectplugin_error *`` slot for an ``out_error`` parameter."""
    return POINTER(connectplugin_error)()


class Managed:
    """Owns one library object: ``_ptr()`` raises ``ValueError`` once closed, ``close()`` frees it
    exactly once (idempotent, thread-safe), context manager and ``__del__`` call ``close()``."""

    _kind = "object"
    _handle: Any = None

    def _set_handle(self, handle: Any) -> None:
        self._close_lock = threading.Lock()
        self._handle = handle

    def _ptr(self) -> Any:
        h = self._handle
        if h is None:
            raise ValueError(f"{self._kind} already closed")
        return h

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _delete(self, handle: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        lock = getattr(self, "_close_lock", None)
        if lock is None:
            return
        with lock:
            h = self._handle
            if h is None:
                return
            self._handle = None
        self._delete(h)

    def __enter__(self) -> Any:
        self._ptr()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
