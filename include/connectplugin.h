/*
 * connectplugin.h — the C ABI of libconnectplugin.
 *
 * This header is the contract. Every exported symbol of libconnectplugin.so is declared here, and a
 * test fails when the two differ. Conventions that hold for every function below:
 *
 *  - Prefix `connectplugin_` for functions and types, `CONNECTPLUGIN_` for macros.
 *  - Handles are opaque. Each `*_new` has a matching `*_free`; `*_free(NULL)` is a no-op.
 *  - Fallible functions return a `connectplugin_status` and take `connectplugin_error **out_error`
 *    as their last parameter. `out_error` may be NULL. On failure `*out_error` receives an owned error
 *    object (free it with connectplugin_error_free); on success it is set to NULL. There is no
 *    thread-local "last error".
 *  - Inputs are borrowed for the duration of the call and copied if kept. Strings are NUL-terminated
 *    UTF-8. Outputs documented as "borrowed" stay valid as long as the object they come from.
 *  - Callbacks take `user_data` as their last parameter. Every function that stores a callback also
 *    takes a finalizer for `user_data`, called exactly once when the library no longer needs it — or
 *    straight away if the function fails. When a function that takes a callback fails, the callback
 *    is never called.
 *  - The library never aborts the process: bad input, a misbehaving peer or an exhausted resource is
 *    reported as a status and an error object.
 */
#ifndef CONNECTPLUGIN_H
#define CONNECTPLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Versions                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

#define CONNECTPLUGIN_VERSION "0.2.0"
#define CONNECTPLUGIN_VERSION_MAJOR 0
#define CONNECTPLUGIN_VERSION_MINOR 2
#define CONNECTPLUGIN_VERSION_PATCH 0
/** 0xMMmmpp, comparable with `>=`. */
#define CONNECTPLUGIN_VERSION_NUM 0x000200
/** Bumped on every incompatible change of this header. Bindings compare it with connectplugin_abi_version(). */
#define CONNECTPLUGIN_ABI_VERSION 1

/** @brief The library's version string, e.g. "0.2.0". Static; never free. Any thread. */
const char *connectplugin_version(void);
/** @brief The library's version as CONNECTPLUGIN_VERSION_NUM. Any thread. */
uint32_t connectplugin_version_num(void);
/** @brief The ABI version the library implements (CONNECTPLUGIN_ABI_VERSION at its build). Any thread. */
uint32_t connectplugin_abi_version(void);

/* ------------------------------------------------------------------------------------------------ */
/* Status codes: what went wrong locally, returned by every fallible function                        */
/* ------------------------------------------------------------------------------------------------ */

typedef int32_t connectplugin_status;
#define CONNECTPLUGIN_OK 0
/** A parameter is NULL, malformed or out of range; the error message names it. */
#define CONNECTPLUGIN_ERR_INVALID_ARGUMENT (-1)
/** Memory or another resource (threads, file descriptors) could not be obtained. */
#define CONNECTPLUGIN_ERR_RESOURCE (-2)
/** The handle was stopped or closed; only *_free is useful now. */
#define CONNECTPLUGIN_ERR_CLOSED (-3)
/** A socket operation failed (bind, listen, connect, read, write); the message has the OS reason. */
#define CONNECTPLUGIN_ERR_IO (-4)
/** The call is not allowed in the object's current state (e.g. registering after start). */
#define CONNECTPLUGIN_ERR_STATE (-5)
/** The RPC finished with a non-OK Connect code; *out_error has the code, message and details. */
#define CONNECTPLUGIN_ERR_RPC (-6)
/** The feature is not supported by this build (e.g. an unknown codec or compression name). */
#define CONNECTPLUGIN_ERR_UNSUPPORTED (-7)
/**
 * Not an error: a stream has no more messages (the peer finished sending, and for a client stream
 * the RPC succeeded). Returned only by the *_receive functions; *out_error stays NULL.
 */
#define CONNECTPLUGIN_EOF 1

/** @brief A static English description of @p status ("ok", "invalid argument", …). Never NULL; never free. Any thread. */
const char *connectplugin_status_string(connectplugin_status status);

/* ------------------------------------------------------------------------------------------------ */
/* Connect / gRPC codes (wire-stable numbers)                                                        */
/* ------------------------------------------------------------------------------------------------ */

typedef int32_t connectplugin_code;
#define CONNECTPLUGIN_CODE_OK 0
#define CONNECTPLUGIN_CODE_CANCELED 1
#define CONNECTPLUGIN_CODE_UNKNOWN 2
#define CONNECTPLUGIN_CODE_INVALID_ARGUMENT 3
#define CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED 4
#define CONNECTPLUGIN_CODE_NOT_FOUND 5
#define CONNECTPLUGIN_CODE_ALREADY_EXISTS 6
#define CONNECTPLUGIN_CODE_PERMISSION_DENIED 7
#define CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED 8
#define CONNECTPLUGIN_CODE_FAILED_PRECONDITION 9
#define CONNECTPLUGIN_CODE_ABORTED 10
#define CONNECTPLUGIN_CODE_OUT_OF_RANGE 11
#define CONNECTPLUGIN_CODE_UNIMPLEMENTED 12
#define CONNECTPLUGIN_CODE_INTERNAL 13
#define CONNECTPLUGIN_CODE_UNAVAILABLE 14
#define CONNECTPLUGIN_CODE_DATA_LOSS 15
#define CONNECTPLUGIN_CODE_UNAUTHENTICATED 16

/**
 * @brief The Connect wire name of @p code: "ok", "canceled", "unknown", "invalid_argument", …,
 *        "unauthenticated". Codes outside 0..16 give "unknown". Static; never free. Any thread.
 */
const char *connectplugin_code_name(connectplugin_code code);

/* ------------------------------------------------------------------------------------------------ */
/* Error objects                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_error connectplugin_error;
typedef struct connectplugin_metadata connectplugin_metadata;

/**
 * @brief The status of the failed operation (never CONNECTPLUGIN_OK for a real error).
 *        NULL gives CONNECTPLUGIN_ERR_INVALID_ARGUMENT. Any thread.
 */
connectplugin_status connectplugin_error_status(const connectplugin_error *error);
/**
 * @brief The Connect code. For CONNECTPLUGIN_ERR_RPC it is the code of the RPC; for local failures
 *        it is the closest code (invalid argument → INVALID_ARGUMENT, I/O → UNAVAILABLE, …).
 *        NULL gives CONNECTPLUGIN_CODE_UNKNOWN.
 */
connectplugin_code connectplugin_error_code(const connectplugin_error *error);
/** @brief The UTF-8 message; borrowed, valid until the error is freed. Never NULL (NULL error gives ""). */
const char *connectplugin_error_message(const connectplugin_error *error);
/** @brief The number of error details (google.protobuf.Any messages) attached by the peer. */
size_t connectplugin_error_detail_count(const connectplugin_error *error);
/**
 * @brief Detail @p index: its fully qualified message type name (e.g. "google.rpc.RetryInfo", without
 *        the type URL prefix) and its serialized protobuf value. Both borrowed, valid until the error is
 *        freed. Returns CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p index is out of range or an out
 *        pointer is NULL.
 */
connectplugin_status connectplugin_error_detail(const connectplugin_error *error, size_t index,
                                                const char **out_type, const uint8_t **out_value,
                                                size_t *out_value_len);
/**
 * @brief Metadata that came with an RPC error (response headers and trailers of the failed call).
 *        Borrowed, valid until the error is freed; never NULL for a non-NULL error (may be empty).
 */
const connectplugin_metadata *connectplugin_error_metadata(const connectplugin_error *error);
/** @brief Frees the error. NULL is a no-op. */
void connectplugin_error_free(connectplugin_error *error);

/* ------------------------------------------------------------------------------------------------ */
/* Metadata: an ordered list of (key, value) pairs — HTTP headers and trailers                       */
/* ------------------------------------------------------------------------------------------------ */

/*
 * Keys are ASCII and compared case-insensitively; the library stores them lowercased. After
 * lowercasing a key may only hold 0-9 a-z "_" "-" "." (the Connect and gRPC metadata rule). Keys ending
 * in "-bin" carry arbitrary bytes (the library base64-encodes them on the wire and decodes them on
 * receipt); other values must be printable ASCII (0x20–0x7E). A key may repeat; order is kept.
 * Thread safety: a metadata object may be read from several threads at once, but adding to it
 * needs exclusive access.
 */

/** @brief Creates an empty list. Returns NULL only when out of memory. Free with connectplugin_metadata_free. */
connectplugin_metadata *connectplugin_metadata_new(void);
/**
 * @brief Appends (key, value). Both are copied.
 * @return CONNECTPLUGIN_OK, or CONNECTPLUGIN_ERR_INVALID_ARGUMENT if the key is empty or has a
 *         character outside the rule above, or a non "-bin" value is not printable ASCII.
 */
connectplugin_status connectplugin_metadata_add(connectplugin_metadata *metadata, const char *key,
                                                const uint8_t *value, size_t value_len,
                                                connectplugin_error **out_error);
/** @brief The number of entries. NULL gives 0. */
size_t connectplugin_metadata_count(const connectplugin_metadata *metadata);
/**
 * @brief Entry @p index: its lowercased key (NUL-terminated) and its value (bytes; for text values
 *        also NUL-terminated at value[len]). Borrowed, valid until the metadata is freed or changed.
 * @return CONNECTPLUGIN_OK, or CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p index is out of range.
 */
connectplugin_status connectplugin_metadata_get(const connectplugin_metadata *metadata, size_t index,
                                                const char **out_key, const uint8_t **out_value,
                                                size_t *out_value_len);
/**
 * @brief The first value for @p key (case-insensitive), or NULL if absent. Borrowed like
 *        connectplugin_metadata_get. @p out_value_len may be NULL.
 */
const uint8_t *connectplugin_metadata_lookup(const connectplugin_metadata *metadata, const char *key,
                                             size_t *out_value_len);
/** @brief Frees the list. NULL is a no-op. Never free a list borrowed from another object. */
void connectplugin_metadata_free(connectplugin_metadata *metadata);

/* ------------------------------------------------------------------------------------------------ */
/* TLS (OpenSSL 3): one options object for servers and clients                                       */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_tls_options connectplugin_tls_options;

/**
 * @brief TLS options with defaults: no certificate; clients trust the system store and verify the
 *        server's name; ALPN "h2" and "http/1.1". NULL only when out of memory. Not thread-safe.
 *        Files are read when the options are used (listen or client creation), and errors name the
 *        file and the reason.
 */
connectplugin_tls_options *connectplugin_tls_options_new(void);
/**
 * @brief Our certificate chain and private key, as PEM files (server: required; client: for mTLS).
 */
connectplugin_status connectplugin_tls_options_set_cert_files(connectplugin_tls_options *options, const char *cert_path,
                                                              const char *key_path, connectplugin_error **out_error);
/** @brief As connectplugin_tls_options_set_cert_files, from PEM bytes in memory (copied). */
connectplugin_status connectplugin_tls_options_set_cert_pem(connectplugin_tls_options *options, const uint8_t *cert_pem,
                                                            size_t cert_len, const uint8_t *key_pem, size_t key_len,
                                                            connectplugin_error **out_error);
/**
 * @brief The CA bundle to trust, as a PEM file. Client: verifies the server against it instead of
 *        the system store. Server: verifies client certificates against it (see require_client_cert).
 */
connectplugin_status connectplugin_tls_options_set_ca_file(connectplugin_tls_options *options, const char *path,
                                                           connectplugin_error **out_error);
/** @brief As connectplugin_tls_options_set_ca_file, from PEM bytes (copied). */
connectplugin_status connectplugin_tls_options_set_ca_pem(connectplugin_tls_options *options, const uint8_t *pem,
                                                          size_t len, connectplugin_error **out_error);
/** @brief Server: 1 = reject clients without a certificate signed by the CA (mTLS). Default 0. */
connectplugin_status connectplugin_tls_options_set_require_client_cert(connectplugin_tls_options *options,
                                                                       int32_t require, connectplugin_error **out_error);
/** @brief Client: the name to send as SNI and to verify (default: the URL's host). */
connectplugin_status connectplugin_tls_options_set_server_name(connectplugin_tls_options *options, const char *name,
                                                               connectplugin_error **out_error);
/** @brief Client: 1 = do not verify the server certificate. For tests only. Default 0. */
connectplugin_status connectplugin_tls_options_set_insecure_skip_verify(connectplugin_tls_options *options,
                                                                        int32_t skip, connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
void connectplugin_tls_options_free(connectplugin_tls_options *options);

/* ------------------------------------------------------------------------------------------------ */
/* Server                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_server_options connectplugin_server_options;
typedef struct connectplugin_server connectplugin_server;
typedef struct connectplugin_call connectplugin_call;

/** @brief Options with defaults. NULL only when out of memory. Not thread-safe; free with _free. */
connectplugin_server_options *connectplugin_server_options_new(void);
/**
 * @brief Largest request message accepted, in bytes, after decompression (default 4 MiB). A larger
 *        message is answered with RESOURCE_EXHAUSTED without reaching the handler. 0 = no limit;
 *        below 2^62; larger values are CONNECTPLUGIN_ERR_INVALID_ARGUMENT.
 */
connectplugin_status connectplugin_server_options_set_max_message_bytes(connectplugin_server_options *options,
                                                                        uint64_t max_bytes,
                                                                        connectplugin_error **out_error);
/**
 * @brief Number of threads kept ready to run handlers (default 8, range 1–1024). A handler occupies
 *        one for as long as it runs (a streaming call for its whole life); when all are busy, more
 *        are started, up to 1024 per server, after which calls wait. I/O and other connections are
 *        never stalled by a slow handler.
 */
connectplugin_status connectplugin_server_options_set_handler_threads(connectplugin_server_options *options,
                                                                      uint32_t threads,
                                                                      connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
void connectplugin_server_options_free(connectplugin_server_options *options);

/**
 * @brief Creates a stopped server.
 * @param options  May be NULL for defaults. Copied; may be freed right after.
 * @param out_server  Receives the server; NULL on failure.
 * Thread safety: every connectplugin_server_* function may be called from any thread.
 */
connectplugin_status connectplugin_server_new(const connectplugin_server_options *options,
                                              connectplugin_server **out_server,
                                              connectplugin_error **out_error);
/**
 * @brief Binds and listens on TCP "host:port" ("127.0.0.1:0", "[::1]:8080", "localhost:0", ":8080"
 *        for all interfaces). Port 0 picks a free port. Connections are accepted once the server is
 *        started. May be called several times, before or after start.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_INVALID_ARGUMENT for a malformed address;
 *         CONNECTPLUGIN_ERR_IO if the OS refuses (the message has the reason, e.g. address in use).
 */
connectplugin_status connectplugin_server_listen_tcp(connectplugin_server *server, const char *host_port,
                                                     connectplugin_error **out_error);
/**
 * @brief As connectplugin_server_listen_tcp, speaking TLS: HTTP/2 or HTTP/1.1 chosen by ALPN, all
 *        three protocols. @p tls needs a certificate and key; with a CA and require_client_cert it
 *        asks for client certificates (mTLS; handlers see them with connectplugin_call_peer).
 *        Copied. A bad certificate or key is CONNECTPLUGIN_ERR_INVALID_ARGUMENT with the reason.
 */
connectplugin_status connectplugin_server_listen_tls(connectplugin_server *server, const char *host_port,
                                                     const connectplugin_tls_options *tls,
                                                     connectplugin_error **out_error);
/**
 * @brief Binds and listens on a Unix domain socket at @p path. An existing socket file at the path is
 *        replaced; the file is removed when the server is stopped.
 */
connectplugin_status connectplugin_server_listen_unix(connectplugin_server *server, const char *path,
                                                      connectplugin_error **out_error);
/**
 * @brief Listens under @p name inside this process: clients created with the URL "inproc://NAME"
 *        (connectplugin_client_new) reach this server over an in-memory pipe with the full HTTP/2
 *        (or HTTP/1.1) and protocol stack, and no socket. @p name is 1–255 letters, digits and -._~;
 *        one server per name at a time, freed when the server is stopped. The address is
 *        "inproc://NAME". Connections are served once the server is started.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p name is NULL, the
 *         name is malformed, or another server of this process uses it; CONNECTPLUGIN_ERR_CLOSED
 *         if the server was stopped.
 * Thread safety: as connectplugin_server_listen_tcp.
 */
connectplugin_status connectplugin_server_listen_inprocess(connectplugin_server *server, const char *name,
                                                           connectplugin_error **out_error);
/** @brief The number of listeners. */
size_t connectplugin_server_address_count(const connectplugin_server *server);
/**
 * @brief The bound address of listener @p index (in the order they were added): "127.0.0.1:43127",
 *        "[::1]:8080", "unix:/path" or "inproc://NAME".
 *        Borrowed, valid until the server is freed. NULL if @p index is out of range.
 */
const char *connectplugin_server_address(const connectplugin_server *server, size_t index);

/**
 * @brief A unary handler. Runs on one of the server's handler threads, possibly concurrently with
 *        other calls. Read the request with connectplugin_call_request* and finish the call with
 *        connectplugin_call_respond or connectplugin_call_fail before returning; returning without
 *        either fails the call with INTERNAL. @p call is borrowed and valid only until the handler
 *        returns.
 */
typedef void (*connectplugin_unary_handler)(connectplugin_call *call, void *user_data);
/** @brief A finalizer for user_data. */
typedef void (*connectplugin_free_func)(void *user_data);
/**
 * @brief Told that a call can no longer be answered (see connectplugin_call_on_done). Runs on a
 *        library I/O thread: it must return quickly and must not block or make blocking
 *        connectplugin calls (signal a condition variable, cancel a context, set a flag).
 */
typedef void (*connectplugin_done_func)(void *user_data);

/**
 * @brief Registers @p handler for @p procedure ("/package.Service/Method"). Allowed before start only.
 * @param user_data_free  May be NULL. Called exactly once with @p user_data: when the server is freed,
 *        or before this function returns if it fails.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_INVALID_ARGUMENT for a malformed procedure or a
 *         duplicate; CONNECTPLUGIN_ERR_STATE after start.
 */
connectplugin_status connectplugin_server_register_unary(connectplugin_server *server, const char *procedure,
                                                         connectplugin_unary_handler handler, void *user_data,
                                                         connectplugin_free_func user_data_free,
                                                         connectplugin_error **out_error);
/** @brief Starts accepting connections on every listener (and on those added later). */
connectplugin_status connectplugin_server_start(connectplugin_server *server, connectplugin_error **out_error);
/**
 * @brief Graceful stop: stops accepting, lets calls in flight finish for up to @p grace_ms
 *        milliseconds, then cancels the rest and closes all connections. Blocks until done.
 *        Calling it again, or on a server never started, is OK.
 */
connectplugin_status connectplugin_server_stop(connectplugin_server *server, int64_t grace_ms,
                                               connectplugin_error **out_error);
/**
 * @brief Stops the server (without grace) if it runs, waits for running handlers to return, calls
 *        every user_data finalizer, and frees it. NULL is a no-op. Must not be called from a handler.
 */
void connectplugin_server_free(connectplugin_server *server);

/** @brief The shape of a method. */
typedef int32_t connectplugin_method_kind;
#define CONNECTPLUGIN_UNARY 0
#define CONNECTPLUGIN_CLIENT_STREAM 1
#define CONNECTPLUGIN_SERVER_STREAM 2
#define CONNECTPLUGIN_BIDI_STREAM 3

typedef struct connectplugin_stream connectplugin_stream;

/**
 * @brief A streaming handler (client, server or bidi streaming). Runs on one of the server's handler
 *        threads; one callback per call, never per message. Read request messages with
 *        connectplugin_stream_receive and write responses with connectplugin_stream_send (both block
 *        the handler's thread: a slow client slows the handler and memory stays bounded). Returning
 *        finishes the call with OK unless connectplugin_stream_fail was called. @p stream is borrowed
 *        and valid only until the handler returns.
 */
typedef void (*connectplugin_stream_handler)(connectplugin_stream *stream, void *user_data);

/**
 * @brief Registers a streaming @p handler for @p procedure. @p kind is CONNECTPLUGIN_CLIENT_STREAM,
 *        CONNECTPLUGIN_SERVER_STREAM or CONNECTPLUGIN_BIDI_STREAM. Allowed before start only. Every
 *        protocol is served: Connect, gRPC and gRPC-Web, on HTTP/1.1 and HTTP/2 (bidi over
 *        HTTP/1.1 is half-duplex: the client sends everything first).
 * @param user_data_free  Same contract as in connectplugin_server_register_unary.
 */
connectplugin_status connectplugin_server_register_stream(connectplugin_server *server, const char *procedure,
                                                          connectplugin_method_kind kind,
                                                          connectplugin_stream_handler handler, void *user_data,
                                                          connectplugin_free_func user_data_free,
                                                          connectplugin_error **out_error);
/**
 * @brief Marks the registered unary @p procedure as free of side effects
 *        (idempotency_level = NO_SIDE_EFFECTS): it then also accepts Connect GET requests, which
 *        HTTP caches can serve. Allowed before start only.
 */
connectplugin_status connectplugin_server_set_no_side_effects(connectplugin_server *server, const char *procedure,
                                                              connectplugin_error **out_error);

/* ---- Inside a handler: every connectplugin_call_* function must be called on the handler's thread
        while the handler runs, with the call it was given. ---- */

/** @brief The request message bytes (decompressed, as the client serialized them). Borrowed. */
const uint8_t *connectplugin_call_request(const connectplugin_call *call, size_t *out_len);
/** @brief The procedure, "/package.Service/Method". Borrowed. */
const char *connectplugin_call_procedure(const connectplugin_call *call);
/** @brief The codec of the request and the response: "proto" or "json". Borrowed. */
const char *connectplugin_call_codec(const connectplugin_call *call);
/** @brief The request headers (custom metadata, protocol headers removed). Borrowed. */
const connectplugin_metadata *connectplugin_call_request_headers(const connectplugin_call *call);
/**
 * @brief Milliseconds left until the call's deadline (Connect-Timeout-Ms), 0 if it has passed, or -1
 *        if the client set none. When the deadline passes the server answers DEADLINE_EXCEEDED on its
 *        own; a later respond/fail returns CONNECTPLUGIN_ERR_CLOSED.
 */
int64_t connectplugin_call_timeout_remaining_ms(const connectplugin_call *call);
/** @brief 1 once the call can no longer be answered (deadline passed, client gone, server stopping). */
int32_t connectplugin_call_is_done(const connectplugin_call *call);
/**
 * @brief Asks to be told, once, when the call can no longer be answered before the handler answered
 *        it: the client canceled (HTTP/2 RST_STREAM) or closed the connection, the deadline passed,
 *        the request stream was malformed, or the server is stopping. This is the push form of
 *        connectplugin_call_is_done, for handlers that wait on something else (a context, a queue).
 *        @p on_done runs at most once, on a library I/O thread, or before this function returns if
 *        the call is already over. It never runs once the handler answered the call
 *        (connectplugin_call_respond or connectplugin_call_fail) or returned: those wait for an
 *        @p on_done running on another thread, so right after answering the handler may free what
 *        @p user_data points to. Several registrations per call are allowed.
 * @param finalizer  May be NULL. Called exactly once with @p user_data: after @p on_done ran, when
 *        the handler answers or returns without it having run, or before this function returns if
 *        it fails.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_INVALID_ARGUMENT for a NULL call or on_done.
 * @note Thread-safe; call it from the handler (while @p call is valid).
 */
connectplugin_status connectplugin_call_on_done(connectplugin_call *call, connectplugin_done_func on_done,
                                                void *user_data, connectplugin_free_func finalizer,
                                                connectplugin_error **out_error);
/** @brief Adds a response header (sent with the response or the error). Copied. */
connectplugin_status connectplugin_call_add_response_header(connectplugin_call *call, const char *key,
                                                            const uint8_t *value, size_t value_len,
                                                            connectplugin_error **out_error);
/** @brief Adds a response trailer (Connect unary sends them as "trailer-" headers). Copied. */
connectplugin_status connectplugin_call_add_response_trailer(connectplugin_call *call, const char *key,
                                                             const uint8_t *value, size_t value_len,
                                                             connectplugin_error **out_error);
/**
 * @brief Answers the call with the response message @p data (serialized in the call's codec). Copied.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_STATE if the call was already answered;
 *         CONNECTPLUGIN_ERR_CLOSED if it is done (deadline passed, client gone).
 */
connectplugin_status connectplugin_call_respond(connectplugin_call *call, const uint8_t *data, size_t len,
                                                connectplugin_error **out_error);
/**
 * @brief Adds an error detail to send with connectplugin_call_fail: @p type is the fully qualified
 *        protobuf message name (e.g. "google.rpc.ErrorInfo"), @p value its serialized bytes. Copied.
 */
connectplugin_status connectplugin_call_add_error_detail(connectplugin_call *call, const char *type,
                                                         const uint8_t *value, size_t value_len,
                                                         connectplugin_error **out_error);
/**
 * @brief Fails the call with @p code (1–16) and @p message (may be NULL). Copied. Same return values
 *        as connectplugin_call_respond; an out-of-range code is sent as UNKNOWN.
 */
connectplugin_status connectplugin_call_fail(connectplugin_call *call, connectplugin_code code,
                                             const char *message, connectplugin_error **out_error);

/**
 * @brief The protocol of the call: "connect", "grpc" or "grpcweb". Borrowed.
 */
const char *connectplugin_call_protocol(const connectplugin_call *call);
/**
 * @brief The verified TLS client certificate of the peer (mTLS), as a metadata list with the keys
 *        "subject" (one value, the distinguished name), "dns", "uri" and "ip" (one value per subject
 *        alternative name). NULL when the connection has no client certificate. Borrowed.
 */
const connectplugin_metadata *connectplugin_call_peer(const connectplugin_call *call);

/* ---- Inside a streaming handler: the connectplugin_stream_* functions below may be called while the
        handler runs, with the stream it was given: from the handler's thread, and (for full-duplex
        bidi) from one more thread that sends while the handler's thread receives, or the reverse.
        Receives must not overlap each other, nor sends each other. The handler must not return
        while another thread still uses the stream. ---- */

/** @brief The procedure, "/package.Service/Method". Borrowed. */
const char *connectplugin_stream_procedure(const connectplugin_stream *stream);
/** @brief The codec: "proto" or "json". Borrowed. */
const char *connectplugin_stream_codec(const connectplugin_stream *stream);
/** @brief The protocol: "connect", "grpc" or "grpcweb". Borrowed. */
const char *connectplugin_stream_protocol(const connectplugin_stream *stream);
/** @brief The method's kind (CONNECTPLUGIN_CLIENT_STREAM, _SERVER_STREAM or _BIDI_STREAM). */
connectplugin_method_kind connectplugin_stream_kind(const connectplugin_stream *stream);
/** @brief The request headers (custom metadata). Borrowed. */
const connectplugin_metadata *connectplugin_stream_request_headers(const connectplugin_stream *stream);
/** @brief As connectplugin_call_peer. */
const connectplugin_metadata *connectplugin_stream_peer(const connectplugin_stream *stream);
/** @brief Milliseconds left until the deadline, 0 once passed, -1 without one. */
int64_t connectplugin_stream_timeout_remaining_ms(const connectplugin_stream *stream);
/** @brief 1 once the call is over (finished, deadline passed, client gone, server stopping). */
int32_t connectplugin_stream_is_done(const connectplugin_stream *stream);
/**
 * @brief As connectplugin_call_on_done, for a streaming call: @p on_done runs once if the call ends
 *        before the handler finished it (client canceled or gone, deadline passed, malformed request
 *        stream, server stopping). A blocked receive or send returns on its own in those cases; this
 *        is for handlers that wait elsewhere. connectplugin_stream_finish and
 *        connectplugin_stream_fail are the answers after which it never runs.
 */
connectplugin_status connectplugin_stream_on_done(connectplugin_stream *stream, connectplugin_done_func on_done,
                                                  void *user_data, connectplugin_free_func finalizer,
                                                  connectplugin_error **out_error);
/**
 * @brief Blocks until the next request message. Server streaming methods receive exactly one.
 * @param out_data  Receives the message bytes, borrowed until the next receive or the handler returns.
 *        @p out_data and @p out_len must not be NULL (CONNECTPLUGIN_ERR_INVALID_ARGUMENT; no message is taken).
 * @return CONNECTPLUGIN_OK with a message; CONNECTPLUGIN_EOF when the client finished sending;
 *         CONNECTPLUGIN_ERR_RPC when the request stream failed (the code says why: CANCELED when the
 *         client went away, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED for an oversized message,
 *         INVALID_ARGUMENT or INTERNAL for a malformed one).
 */
connectplugin_status connectplugin_stream_receive(connectplugin_stream *stream, const uint8_t **out_data,
                                                  size_t *out_len, connectplugin_error **out_error);
/**
 * @brief Sends one response message (the response headers go first, with the first message). Copied.
 *        Blocks while the client is behind.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_CLOSED when the call is over (client gone, deadline);
 *         CONNECTPLUGIN_ERR_STATE after fail/finish.
 */
connectplugin_status connectplugin_stream_send(connectplugin_stream *stream, const uint8_t *data, size_t len,
                                               connectplugin_error **out_error);
/** @brief Sends the response headers now, before any message. */
connectplugin_status connectplugin_stream_send_headers(connectplugin_stream *stream, connectplugin_error **out_error);
/**
 * @brief Adds a response header. Copied. Only before the headers are sent (with the first message
 *        or connectplugin_stream_send_headers); afterwards CONNECTPLUGIN_ERR_STATE.
 */
connectplugin_status connectplugin_stream_add_response_header(connectplugin_stream *stream, const char *key,
                                                              const uint8_t *value, size_t value_len,
                                                              connectplugin_error **out_error);
/** @brief Adds a response trailer (sent when the call ends). Copied. */
connectplugin_status connectplugin_stream_add_response_trailer(connectplugin_stream *stream, const char *key,
                                                               const uint8_t *value, size_t value_len,
                                                               connectplugin_error **out_error);
/** @brief Adds an error detail for connectplugin_stream_fail. Copied. */
connectplugin_status connectplugin_stream_add_error_detail(connectplugin_stream *stream, const char *type,
                                                           const uint8_t *value, size_t value_len,
                                                           connectplugin_error **out_error);
/** @brief Ends the call with @p code (1–16; others are sent as UNKNOWN) and @p message (may be NULL). */
connectplugin_status connectplugin_stream_fail(connectplugin_stream *stream, connectplugin_code code,
                                               const char *message, connectplugin_error **out_error);
/** @brief Ends the call with OK now (returning from the handler does the same). */
connectplugin_status connectplugin_stream_finish(connectplugin_stream *stream, connectplugin_error **out_error);

/* ------------------------------------------------------------------------------------------------ */
/* Client                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_client_options connectplugin_client_options;
typedef struct connectplugin_client connectplugin_client;
typedef struct connectplugin_call_options connectplugin_call_options;
typedef struct connectplugin_response connectplugin_response;

#define CONNECTPLUGIN_HTTP_1_1 1
#define CONNECTPLUGIN_HTTP_2 2

/** @brief Client options with defaults: codec "proto", HTTP/2, no compression, no timeout. Not thread-safe. */
connectplugin_client_options *connectplugin_client_options_new(void);
/** @brief "proto" (application/proto) or "json" (application/json). Else CONNECTPLUGIN_ERR_UNSUPPORTED. */
connectplugin_status connectplugin_client_options_set_codec(connectplugin_client_options *options,
                                                            const char *codec, connectplugin_error **out_error);
/**
 * @brief CONNECTPLUGIN_HTTP_1_1 or CONNECTPLUGIN_HTTP_2 (prior-knowledge h2c for http:// and unix://).
 */
connectplugin_status connectplugin_client_options_set_http_version(connectplugin_client_options *options,
                                                                   int32_t version,
                                                                   connectplugin_error **out_error);
/**
 * @brief Request compression: "identity" (default) or "gzip". Responses in gzip are always accepted.
 */
connectplugin_status connectplugin_client_options_set_compression(connectplugin_client_options *options,
                                                                  const char *name,
                                                                  connectplugin_error **out_error);
/** @brief Default timeout of every call in milliseconds; 0 = none (default). Negative is invalid. */
connectplugin_status connectplugin_client_options_set_timeout_ms(connectplugin_client_options *options,
                                                                 int64_t timeout_ms,
                                                                 connectplugin_error **out_error);
/** @brief Largest response message accepted, after decompression (default 4 MiB; 0 = no limit; below 2^62). */
connectplugin_status connectplugin_client_options_set_max_message_bytes(connectplugin_client_options *options,
                                                                        uint64_t max_bytes,
                                                                        connectplugin_error **out_error);
/** @brief A header sent with every call. Same rules as connectplugin_metadata_add. */
connectplugin_status connectplugin_client_options_add_header(connectplugin_client_options *options,
                                                             const char *key, const uint8_t *value,
                                                             size_t value_len, connectplugin_error **out_error);
/**
 * @brief The RPC protocol: "connect" (default), "grpc" (needs HTTP/2) or "grpcweb". Any protocol
 *        works with every connectplugin server, and with any server of that protocol.
 *        Else CONNECTPLUGIN_ERR_UNSUPPORTED.
 */
connectplugin_status connectplugin_client_options_set_protocol(connectplugin_client_options *options,
                                                               const char *protocol, connectplugin_error **out_error);
/**
 * @brief TLS settings for https:// URLs (CA bundle, client certificate for mTLS, server name).
 *        Copied. Without it, https:// uses the system trust store. Verification failures are
 *        UNAVAILABLE errors whose message names the cause (expired, unknown CA, name mismatch).
 */
connectplugin_status connectplugin_client_options_set_tls(connectplugin_client_options *options,
                                                          const connectplugin_tls_options *tls,
                                                          connectplugin_error **out_error);
/**
 * @brief Connect only: with @p enable = 1, unary calls made with
 *        connectplugin_call_options_set_no_side_effects use HTTP GET (cacheable). Default 0.
 */
connectplugin_status connectplugin_client_options_set_use_get(connectplugin_client_options *options, int32_t enable,
                                                              connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
void connectplugin_client_options_free(connectplugin_client_options *options);

/**
 * @brief Creates a client for @p base_url: "http://host:port[/prefix]", "https://host:port[/prefix]",
 *        "unix:///path/to/socket" or "inproc://NAME" (a server of this process that listens with
 *        connectplugin_server_listen_inprocess; no socket).
 *        No connection is made until the first call; connections are reused across calls.
 * @param options  May be NULL for defaults. Copied.
 * Thread safety: a client may be used by any number of threads at once.
 */
connectplugin_status connectplugin_client_new(const char *base_url, const connectplugin_client_options *options,
                                              connectplugin_client **out_client, connectplugin_error **out_error);
/** @brief Closes the client's connections and frees it. NULL is a no-op. No call may be in progress. */
void connectplugin_client_free(connectplugin_client *client);

/** @brief Per-call options (timeout, headers). NULL only when out of memory. Not thread-safe. */
connectplugin_call_options *connectplugin_call_options_new(void);
/** @brief This call's timeout in ms, overriding the client default; 0 = no timeout. Negative is invalid. */
connectplugin_status connectplugin_call_options_set_timeout_ms(connectplugin_call_options *options,
                                                               int64_t timeout_ms,
                                                               connectplugin_error **out_error);
/** @brief A request header for this call. Same rules as connectplugin_metadata_add. */
connectplugin_status connectplugin_call_options_add_header(connectplugin_call_options *options, const char *key,
                                                           const uint8_t *value, size_t value_len,
                                                           connectplugin_error **out_error);
/** @brief Marks the method as free of side effects (GET-eligible with connectplugin_client_options_set_use_get). */
connectplugin_status connectplugin_call_options_set_no_side_effects(connectplugin_call_options *options, int32_t enable,
                                                                    connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
void connectplugin_call_options_free(connectplugin_call_options *options);

/**
 * @brief A blocking unary call of @p procedure ("/package.Service/Method") with the serialized
 *        request @p request (in the client's codec). Blocks only the calling thread.
 * @param options  May be NULL. Borrowed for the duration of the call.
 * @param out_response  On CONNECTPLUGIN_OK receives an owned response; free with connectplugin_response_free.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_RPC when the RPC failed (the error has the Connect code —
 *         DEADLINE_EXCEEDED on timeout, UNAVAILABLE when the server cannot be reached — the message,
 *         details and metadata); CONNECTPLUGIN_ERR_INVALID_ARGUMENT for bad parameters.
 */
connectplugin_status connectplugin_client_call_unary(connectplugin_client *client, const char *procedure,
                                                     const uint8_t *request, size_t request_len,
                                                     const connectplugin_call_options *options,
                                                     connectplugin_response **out_response,
                                                     connectplugin_error **out_error);

/** @brief The response message bytes. Borrowed, valid until the response is freed. */
const uint8_t *connectplugin_response_message(const connectplugin_response *response, size_t *out_len);
/** @brief The response headers (protocol headers removed). Borrowed; never NULL for a non-NULL response. */
const connectplugin_metadata *connectplugin_response_headers(const connectplugin_response *response);
/** @brief The response trailers. Borrowed; never NULL for a non-NULL response. */
const connectplugin_metadata *connectplugin_response_trailers(const connectplugin_response *response);
/** @brief Frees the response. NULL is a no-op. */
void connectplugin_response_free(connectplugin_response *response);

/* ------------------------------------------------------------------------------------------------ */
/* Client streams                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_client_stream connectplugin_client_stream;

/**
 * @brief Opens a streaming call of @p procedure. @p kind is CONNECTPLUGIN_CLIENT_STREAM,
 *        CONNECTPLUGIN_SERVER_STREAM or CONNECTPLUGIN_BIDI_STREAM (CONNECTPLUGIN_UNARY works too). The
 *        timeout of @p options (or the client's) covers the whole call; the client enforces it
 *        itself, whatever the server does.
 * @param options  May be NULL. Copied.
 * @param out_stream  Receives the stream; free it with connectplugin_client_stream_free.
 * Thread safety: one thread may send while another receives; cancel and free may be called from
 *        any thread (free only once nobody else uses the stream).
 */
connectplugin_status connectplugin_client_open_stream(connectplugin_client *client, const char *procedure,
                                                      connectplugin_method_kind kind,
                                                      const connectplugin_call_options *options,
                                                      connectplugin_client_stream **out_stream,
                                                      connectplugin_error **out_error);
/**
 * @brief Sends one request message (copied). Blocks while the transport is behind (back-pressure).
 *        When the server has already ended the call (an early error), the message is dropped and
 *        this returns OK: receive reports the call's status.
 * @return CONNECTPLUGIN_OK; CONNECTPLUGIN_ERR_RPC when the transport failed (connection lost,
 *         deadline, canceled); CONNECTPLUGIN_ERR_STATE after close_send, or a second message to a
 *         method that takes one.
 */
connectplugin_status connectplugin_client_stream_send(connectplugin_client_stream *stream, const uint8_t *data,
                                                      size_t len, connectplugin_error **out_error);
/** @brief Half-closes: no more request messages. Idempotent. */
connectplugin_status connectplugin_client_stream_close_send(connectplugin_client_stream *stream,
                                                            connectplugin_error **out_error);
/**
 * @brief Blocks until the next response message.
 * @param out_data  Borrowed until the next receive or free. @p out_data and @p out_len must not be
 *        NULL (CONNECTPLUGIN_ERR_INVALID_ARGUMENT; no message is taken).
 * @return CONNECTPLUGIN_OK with a message; CONNECTPLUGIN_EOF when the call ended with OK (trailers are
 *         now available); CONNECTPLUGIN_ERR_RPC with the call's error (code, message, details,
 *         metadata) — the same error on every later receive.
 */
connectplugin_status connectplugin_client_stream_receive(connectplugin_client_stream *stream, const uint8_t **out_data,
                                                         size_t *out_len, connectplugin_error **out_error);
/** @brief The response headers, once the first receive returned. Borrowed; never NULL for a non-NULL stream. */
const connectplugin_metadata *connectplugin_client_stream_headers(connectplugin_client_stream *stream);
/** @brief The response trailers, once receive returned CONNECTPLUGIN_EOF. Borrowed; never NULL for a non-NULL stream. */
const connectplugin_metadata *connectplugin_client_stream_trailers(connectplugin_client_stream *stream);
/**
 * @brief Cancels the call: HTTP/2 RST_STREAM(CANCEL), HTTP/1.1 connection close. Blocked send and
 *        receive return with CANCELED. Any thread. NULL is a no-op.
 */
void connectplugin_client_stream_cancel(connectplugin_client_stream *stream);
/** @brief Cancels the call if still running and frees the stream. NULL is a no-op. */
void connectplugin_client_stream_free(connectplugin_client_stream *stream);

#ifdef __cplusplus
}
#endif

#endif /* CONNECTPLUGIN_H */
