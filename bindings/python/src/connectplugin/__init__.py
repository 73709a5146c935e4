"""connectplugin: Connect RPC servers and clients on libconnectplugin (ctypes binding).

>>> import connectplugin
>>> connectplugin.Code.INVALID_ARGUMENT.wire_name
'invalid_argument'
"""

from ._client import HTTP_1_1, HTTP_2, Client, Response
from ._error import (
    Code,
    ConnectPluginError,
    RPCError,
    Status,
    abi_version,
    code_name,
    status_string,
    version,
    version_num,
)
from ._ffi import ABI_VERSION, library_path
from ._metadata import Metadata
from ._server import CallContext, Server

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "HTTP_1_1",
    "HTTP_2",
    "CallContext",
    "Client",
    "Code",
    "ConnectPluginError",
    "Metadata",
    "RPCError",
    "Response",
    "Server",
    "Status",
    "abi_version",
    "code_name",
    "library_path",
    "status_string",
    "version",
    "version_num",
]
