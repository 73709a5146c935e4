"""connectplugin: Connect RPC servers and clients on libconnectplugin (ctypes binding).

>>> import connectplugin
>>> connectplugin.Code.INVALID_ARGUMENT.wire_name
'invalid_argument'
"""

from ._client import HTTP_1_1, HTTP_2, PROTOCOLS, Client, ClientStream, Response
from ._error import (
    Code,
    ConnectPluginError,
    MethodKind,
    RPCError,
    Status,
    abi_version,
    code_name,
    status_string,
    version,
    version_num,
)
from ._ffi import ABI_VERSION, library_path
from ._metadata import Metadata, Peer
from ._server import CallContext, Server, ServerStream
from ._tls import TLSOptions

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "HTTP_1_1",
    "HTTP_2",
    "PROTOCOLS",
    "CallContext",
    "Client",
    "ClientStream",
    "Code",
    "ConnectPluginError",
    "Metadata",
    "MethodKind",
    "Peer",
    "RPCError",
    "Response",
    "Server",
    "ServerStream",
    "TLSOptions",
    "Status",
    "abi_version",
    "code_name",
    "library_path",
    "status_string",
    "version",
    "version_num",
]
