"""connectplugin: Connect, gRPC and gRPC-Web servers and clients on libconnectplugin (ctypes binding).

The library is found through $CONNECTPLUGIN_LIBRARY, a bundled ``_lib/libconnectplugin.so``, the
source tree's ``.build/{debug,release}`` or the system. Every blocking call (unary calls, stream
send/receive) releases the GIL, so other Python threads run, and can ``cancel()``, meanwhile.

Server
------
::

    srv = connectplugin.Server(handler_threads=8)
    srv.register_unary("/pkg.Svc/Get", lambda request, ctx: request)   # bytes -> bytes
    srv.set_no_side_effects("/pkg.Svc/Get")                            # also serve Connect GET
    srv.register_stream("/pkg.Svc/Watch", MethodKind.BIDI_STREAM, watch)
    srv.listen_tcp("127.0.0.1:0")                                      # h2c and HTTP/1.1
    srv.listen_tls("127.0.0.1:8443", cert_file="server.crt", key_file="server.key",
                   client_ca_file="ca.crt")                            # TLS only; mTLS with a CA
    srv.start()

* Unary handlers get the request bytes and a :class:`CallContext` (``procedure``, ``codec``,
  ``protocol`` — "connect", "grpc" or "grpcweb" —, ``headers``, ``peer``, ``timeout_remaining_ms``,
  ``is_done``, ``add_response_header/trailer``) and return the response bytes.
* Streaming handlers get a :class:`ServerStream`, once per call, on a library handler thread; they
  pull request messages (``for msg in stream`` / ``stream.receive()`` → bytes or None at the end) and
  push responses (``stream.send(b)``) with blocking calls (no callback per message), or return one
  ``bytes`` response or an iterable of them (a generator handler works). Also ``send_headers``, ``add_response_header/trailer``,
  ``add_error_detail``, ``fail(code, message, details)``, ``finish`` and the properties
  ``procedure``, ``codec``, ``protocol``, ``kind``, ``request_headers``, ``peer``,
  ``timeout_remaining_ms``, ``is_done``. Received bytes are copied at once. A full-duplex bidi
  handler may let one helper thread receive while the handler's thread sends (see ServerStream).
* Raising :class:`RPCError` in any handler fails the call with its code, message and details
  (``(type_name, bytes)`` pairs or protobuf messages); any other exception fails it with INTERNAL and
  is logged on the "connectplugin" logger.
* ``listen_tls`` takes ``cert_file``/``key_file`` or ``cert_pem``/``key_pem``, ``client_ca_file`` or
  ``client_ca_pem`` and ``require_client_cert`` (default: True when a client CA is given), or one
  ``TLSOptions``. ALPN picks HTTP/2 or HTTP/1.1; every protocol is served.
* ``ctx.peer`` / ``stream.peer`` is a :class:`Peer` (``subject``, ``dns``, ``uri``, ``ip``) for a
  verified client certificate (mTLS), None otherwise.

Client
------
::

    with connectplugin.Client("https://127.0.0.1:8443", protocol="grpc", codec="proto",
                              http_version="2", compression="gzip", tls_ca_file="ca.crt",
                              tls_cert_file="client.crt", tls_key_file="client.key") as c:
        resp = c.call_unary("/pkg.Svc/Get", request_bytes, timeout_ms=500)   # Response
        for msg in c.server_stream("/pkg.Svc/List", request_bytes): ...
        reply = c.client_stream("/pkg.Svc/PutMany", iter(requests))          # bytes
        with c.bidi_stream("/pkg.Svc/Watch") as s:                            # ClientStream
            s.send(b"..."); first = s.receive(); s.close_send()
            rest = list(s); s.headers, s.trailers

* ``Client(url, codec="proto"|"json", http_version="2"|"1.1", compression="identity"|"gzip",
  timeout_ms=None, headers=None, max_message_bytes=None, protocol="connect"|"grpc"|"grpcweb",
  use_get=False, tls=None, *, tls_ca_file, tls_ca_pem, tls_cert_file, tls_key_file, tls_cert_pem,
  tls_key_pem, tls_server_name, tls_insecure_skip_verify)``. gRPC needs HTTP/2.
* ``client.stream(procedure, kind, timeout_ms=None, headers=None)`` opens a :class:`ClientStream`:
  ``send``, ``close_send``, ``receive`` (bytes, None at the end, or raises the call's
  :class:`RPCError`), iteration, ``headers``/``trailers``, ``cancel()`` (any thread) and ``close()``
  (also on leaving ``with``: cancels the call if it still runs). One thread may send while another
  receives. The timeout covers the whole call (DEADLINE_EXCEEDED).
* ``call_unary(..., no_side_effects=True)`` with ``Client(use_get=True)`` sends a Connect GET.
* TLS failures (unknown CA, name mismatch, missing client certificate) are :class:`RPCError`
  UNAVAILABLE whose message names the cause. :class:`TLSOptions` bundles the same settings.

Interceptors
------------
Per-call hooks around every call (unary and streaming, every protocol)::

    class Auth(connectplugin.Interceptor):
        def start(self, call):                       # before the handler / before sending
            if call.header("authorization") != b"Bearer secret":
                raise connectplugin.RPCError(connectplugin.Code.UNAUTHENTICATED, "missing token")
        def end(self, call, error):                  # once, with the result (error None = OK)
            ...

    srv.add_interceptor(Auth())                      # or add_interceptor(obj, procedure="/pkg.Svc/Get")
    connectplugin.Client(url, interceptors=[obj])    # start may call.add_request_header(k, v)

``call`` is an :class:`InterceptorCall` (``procedure``, ``kind``, ``protocol``, ``codec``,
``is_server``, ``headers``, ``peer``, ``deadline``, ``state``; in end ``response_headers`` and
``response_trailers``; ``add_response_header``/``add_response_trailer`` on servers). One start and
one end callback per call; ``message(call, direction, data)`` only with ``observe_messages = True``.

Plugin logs
-----------
A plugin's ``logging`` records become hclog JSON lines on its real stderr while ``serve_plugin``
runs (:class:`PluginLogHandler` on the root logger; ``extra`` attributes are fields;
:func:`plugin_log` writes one directly). A host's :class:`PluginClient` logs each parsed line of a
plugin's stderr on ``logging.getLogger("connectplugin.plugin." + NAME)`` at its level (``TRACE`` = 5),
or hands it to ``logger(plugin, PluginLogRecord)``.

>>> import connectplugin
>>> connectplugin.Code.INVALID_ARGUMENT.wire_name
'invalid_argument'
>>> connectplugin.MethodKind.parse("bidi")
<MethodKind.BIDI_STREAM: 3>
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
from ._interceptor import DIRECTION_REQUEST, DIRECTION_RESPONSE, Interceptor, InterceptorCall
from ._metadata import Metadata, Peer
from ._log import TRACE, PluginLogHandler, plugin_log
from ._log import LogRecord as PluginLogRecord
from ._plugin import PluginClient, PluginIdentity, cleanup_plugins
from ._server import CallContext, Server, ServerStream
from ._tls import TLSOptions

__version__ = "0.2.0"

__all__ = [
    "ABI_VERSION",
    "DIRECTION_REQUEST",
    "DIRECTION_RESPONSE",
    "HTTP_1_1",
    "HTTP_2",
    "PROTOCOLS",
    "CallContext",
    "Client",
    "ClientStream",
    "Code",
    "ConnectPluginError",
    "Interceptor",
    "InterceptorCall",
    "Metadata",
    "MethodKind",
    "Peer",
    "PluginClient",
    "PluginIdentity",
    "PluginLogHandler",
    "PluginLogRecord",
    "RPCError",
    "Response",
    "Server",
    "ServerStream",
    "TLSOptions",
    "TRACE",
    "Status",
    "abi_version",
    "cleanup_plugins",
    "code_name",
    "library_path",
    "plugin_log",
    "status_string",
    "version",
    "version_num",
]
