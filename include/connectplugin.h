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
 *    thread-local "last error". Each function lists the statuses it returns (@retval); the error's
 *    Connect code is the RPC's for CONNECTPLUGIN_ERR_RPC, and the one noted at each status below
 *    for local failures.
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

/*
 * CONNECTPLUGIN_API marks every function of the library. Define CONNECTPLUGIN_STATIC before including
 * this header when linking a static libconnectplugin.a; leave it undefined for the shared library.
 * CONNECTPLUGIN_BUILDING is for the library's own build (Windows: export rather than import).
 */
#if defined(CONNECTPLUGIN_STATIC)
#define CONNECTPLUGIN_API
#elif defined(_WIN32) || defined(__CYGWIN__)
#if defined(CONNECTPLUGIN_BUILDING)
#define CONNECTPLUGIN_API __declspec(dllexport)
#else
#define CONNECTPLUGIN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define CONNECTPLUGIN_API __attribute__((visibility("default")))
#else
#define CONNECTPLUGIN_API
#endif

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
CONNECTPLUGIN_API const char *connectplugin_version(void);
/** @brief The library's version as CONNECTPLUGIN_VERSION_NUM. Any thread. */
CONNECTPLUGIN_API uint32_t connectplugin_version_num(void);
/** @brief The ABI version the library implements (CONNECTPLUGIN_ABI_VERSION at its build). Any thread. */
CONNECTPLUGIN_API uint32_t connectplugin_abi_version(void);

/* ------------------------------------------------------------------------------------------------ */
/* Status codes: what went wrong locally, returned by every fallible function                        */
/* ------------------------------------------------------------------------------------------------ */

typedef int32_t connectplugin_status;
#define CONNECTPLUGIN_OK 0
/** A parameter is NULL, malformed or out of range; the error message names it. Code INVALID_ARGUMENT. */
#define CONNECTPLUGIN_ERR_INVALID_ARGUMENT (-1)
/** Memory or another resource (threads, file descriptors) could not be obtained. Code RESOURCE_EXHAUSTED. */
#define CONNECTPLUGIN_ERR_RESOURCE (-2)
/** The handle was stopped or closed (or the call is over); only *_free is useful now. Code CANCELED. */
#define CONNECTPLUGIN_ERR_CLOSED (-3)
/**
 * A socket operation failed (bind, listen, connect, read, write); the message has the OS reason.
 * Code UNAVAILABLE. (A call whose connection fails returns CONNECTPLUGIN_ERR_RPC with UNAVAILABLE.)
 */
#define CONNECTPLUGIN_ERR_IO (-4)
/** The call is not allowed in the object's current state (e.g. registering after start). Code FAILED_PRECONDITION. */
#define CONNECTPLUGIN_ERR_STATE (-5)
/** The RPC finished with a non-OK Connect code; *out_error has that code, the message and details. */
#define CONNECTPLUGIN_ERR_RPC (-6)
/** The feature is not supported by this build (e.g. an unknown codec or compression name). Code UNIMPLEMENTED. */
#define CONNECTPLUGIN_ERR_UNSUPPORTED (-7)
/**
 * Not an error: a stream has no more messages (the peer finished sending, and for a client stream
 * the RPC succeeded). Returned only by the *_receive functions; *out_error stays NULL.
 */
#define CONNECTPLUGIN_EOF 1

/** @brief A static English description of @p status ("ok", "invalid argument", …). Never NULL; never free. Any thread. */
CONNECTPLUGIN_API const char *connectplugin_status_string(connectplugin_status status);

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
CONNECTPLUGIN_API const char *connectplugin_code_name(connectplugin_code code);

/* ------------------------------------------------------------------------------------------------ */
/* Error objects                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_error connectplugin_error;
typedef struct connectplugin_metadata connectplugin_metadata;

/**
 * @brief The status of the failed operation (never CONNECTPLUGIN_OK for a real error). Any thread.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p error is NULL (else the error's own status).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_error_status(const connectplugin_error *error);
/**
 * @brief The Connect code. For CONNECTPLUGIN_ERR_RPC it is the code of the RPC; for local failures
 *        it is the code noted at its status (invalid argument → INVALID_ARGUMENT, I/O → UNAVAILABLE, …).
 *        NULL gives CONNECTPLUGIN_CODE_UNKNOWN.
 */
CONNECTPLUGIN_API connectplugin_code connectplugin_error_code(const connectplugin_error *error);
/** @brief The UTF-8 message; borrowed, valid until the error is freed. Never NULL (NULL error gives ""). */
CONNECTPLUGIN_API const char *connectplugin_error_message(const connectplugin_error *error);
/** @brief The number of error details (google.protobuf.Any messages) attached by the peer. */
CONNECTPLUGIN_API size_t connectplugin_error_detail_count(const connectplugin_error *error);
/**
 * @brief Detail @p index: its fully qualified message type name (e.g. "google.rpc.RetryInfo", without
 *        the type URL prefix) and its serialized protobuf value. Both borrowed, valid until the error is
 *        freed. No error object is made (this function has no out_error).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p error is NULL, @p index is out of range or an out
 *         pointer is NULL; the out pointers are left unchanged.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_error_detail(const connectplugin_error *error, size_t index,
                                                                  const char **out_type, const uint8_t **out_value,
                                                                  size_t *out_value_len);
/**
 * @brief Metadata that came with an RPC error (response headers and trailers of the failed call).
 *        Borrowed, valid until the error is freed; never NULL for a non-NULL error (may be empty).
 */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_error_metadata(const connectplugin_error *error);
/** @brief Frees the error. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_error_free(connectplugin_error *error);

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
CONNECTPLUGIN_API connectplugin_metadata *connectplugin_metadata_new(void);
/**
 * @brief Appends (key, value). Both are copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p metadata or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, the key is empty or has a character outside the rule above, or a
 *         non "-bin" value is not printable ASCII. Nothing is added.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_metadata_add(connectplugin_metadata *metadata, const char *key,
                                                                  const uint8_t *value, size_t value_len,
                                                                  connectplugin_error **out_error);
/** @brief The number of entries. NULL gives 0. */
CONNECTPLUGIN_API size_t connectplugin_metadata_count(const connectplugin_metadata *metadata);
/**
 * @brief Entry @p index: its lowercased key (NUL-terminated) and its value (bytes; for text values
 *        also NUL-terminated at value[len]). Borrowed, valid until the metadata is freed or changed.
 *        Each out pointer may be NULL. No error object is made (this function has no out_error).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p metadata is NULL or @p index is out of range.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_metadata_get(const connectplugin_metadata *metadata, size_t index,
                                                                  const char **out_key, const uint8_t **out_value,
                                                                  size_t *out_value_len);
/**
 * @brief The first value for @p key (case-insensitive), or NULL if absent. Borrowed like
 *        connectplugin_metadata_get. @p out_value_len may be NULL.
 */
CONNECTPLUGIN_API const uint8_t *connectplugin_metadata_lookup(const connectplugin_metadata *metadata, const char *key,
                                                               size_t *out_value_len);
/** @brief Frees the list. NULL is a no-op. Never free a list borrowed from another object. */
CONNECTPLUGIN_API void connectplugin_metadata_free(connectplugin_metadata *metadata);

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
CONNECTPLUGIN_API connectplugin_tls_options *connectplugin_tls_options_new(void);
/**
 * @brief Our certificate chain and private key, as PEM files (server: required; client: for mTLS).
 *        The files are not opened here: a missing or malformed file is reported by the listen or
 *        client creation that uses the options.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL, or @p cert_path or @p key_path is
 *         NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_cert_files(connectplugin_tls_options *options, const char *cert_path,
                                                                                const char *key_path, connectplugin_error **out_error);
/**
 * @brief As connectplugin_tls_options_set_cert_files, from PEM bytes in memory (copied).
 * @retval CONNECTPLUGIN_OK on success (the PEM is parsed when the options are used).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL, or @p cert_pem or @p key_pem is
 *         NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_cert_pem(connectplugin_tls_options *options, const uint8_t *cert_pem,
                                                                              size_t cert_len, const uint8_t *key_pem, size_t key_len,
                                                                              connectplugin_error **out_error);
/**
 * @brief The CA bundle to trust, as a PEM file. Client: verifies the server against it instead of
 *        the system store. Server: verifies client certificates against it (see require_client_cert).
 * @retval CONNECTPLUGIN_OK on success (the file is read when the options are used).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL, or @p path is NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_ca_file(connectplugin_tls_options *options, const char *path,
                                                                             connectplugin_error **out_error);
/**
 * @brief As connectplugin_tls_options_set_ca_file, from PEM bytes (copied).
 * @retval CONNECTPLUGIN_OK on success (the PEM is parsed when the options are used).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL, or @p pem is NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_ca_pem(connectplugin_tls_options *options, const uint8_t *pem,
                                                                            size_t len, connectplugin_error **out_error);
/**
 * @brief Server: 1 = reject clients without a certificate signed by the CA (mTLS). Default 0.
 * @retval CONNECTPLUGIN_OK on success (any non-zero @p require counts as 1).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_require_client_cert(connectplugin_tls_options *options,
                                                                                         int32_t require, connectplugin_error **out_error);
/**
 * @brief Client: the name to send as SNI and to verify (default: the URL's host).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL, or @p name is NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_server_name(connectplugin_tls_options *options, const char *name,
                                                                                 connectplugin_error **out_error);
/**
 * @brief Client: 1 = do not verify the server certificate. For tests only. Default 0.
 * @retval CONNECTPLUGIN_OK on success (any non-zero @p skip counts as 1).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_tls_options_set_insecure_skip_verify(connectplugin_tls_options *options,
                                                                                          int32_t skip, connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_tls_options_free(connectplugin_tls_options *options);

/* ------------------------------------------------------------------------------------------------ */
/* Server                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef struct connectplugin_server_options connectplugin_server_options;
typedef struct connectplugin_server connectplugin_server;
typedef struct connectplugin_call connectplugin_call;

/** @brief Options with defaults. NULL only when out of memory. Not thread-safe; free with _free. */
CONNECTPLUGIN_API connectplugin_server_options *connectplugin_server_options_new(void);
/**
 * @brief Largest request message accepted, in bytes, after decompression (default 4 MiB). A larger
 *        message is answered with RESOURCE_EXHAUSTED without reaching the handler. 0 = no limit;
 *        below 2^62.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p max_bytes is 2^62 or more.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_options_set_max_message_bytes(connectplugin_server_options *options,
                                                                                          uint64_t max_bytes,
                                                                                          connectplugin_error **out_error);
/**
 * @brief Number of threads kept ready to run handlers (default 8, range 1–1024). A handler occupies
 *        one for as long as it runs (a streaming call for its whole life); when all are busy, more
 *        are started, up to 1024 per server, after which calls wait. I/O and other connections are
 *        never stalled by a slow handler. Threads started beyond @p threads exit after the idle thread
 *        timeout; streaming calls are bounded (connectplugin_server_options_set_stream_limits) so
 *        that unary calls always find a thread.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p threads is outside 1–1024.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_options_set_handler_threads(connectplugin_server_options *options,
                                                                                         uint32_t threads,
                                                                                         connectplugin_error **out_error);
/**
 * @brief Bounds on streaming handlers (client, server and bidi streaming; each holds a handler
 *        thread for its stream's whole life) running at once: on one connection (default 128), from
 *        one peer over all its connections (default 512; a peer is a remote address, a global IPv6
 *        one by its /64, and a Unix socket connection is its own peer), and in total (default 768,
 *        capped at 1023: the other handler threads stay for unary calls, which so never wait behind
 *        streams). A stream beyond a bound fails at once with RESOURCE_EXHAUSTED and never reaches
 *        its handler; the client may retry once others closed. Raise @p per_peer when many clients
 *        reach the server through one proxy or from one host. Each 1 to 1048576, or 0 to keep that
 *        bound's default; larger values are CONNECTPLUGIN_ERR_INVALID_ARGUMENT.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or a bound is above 1048576.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_options_set_stream_limits(connectplugin_server_options *options,
                                                                                      uint32_t per_connection, uint32_t per_peer,
                                                                                      uint32_t total, connectplugin_error **out_error);
/**
 * @brief How long a handler thread started beyond handler_threads waits for work before it exits
 *        (default 10000 ms; 1 to 86400000). After a burst the server returns to handler_threads.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p timeout_ms is outside 1–86400000.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_options_set_idle_thread_timeout_ms(connectplugin_server_options *options,
                                                                                               uint32_t timeout_ms,
                                                                                               connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_server_options_free(connectplugin_server_options *options);

/**
 * @brief Creates a stopped server.
 * @param options  May be NULL for defaults. Copied; may be freed right after.
 * @param out_server  Receives the server; NULL on failure.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p out_server is NULL.
 * @retval CONNECTPLUGIN_ERR_RESOURCE if the handler threads or the I/O threads cannot be started.
 * Thread safety: every connectplugin_server_* function may be called from any thread.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_new(const connectplugin_server_options *options,
                                                                connectplugin_server **out_server,
                                                                connectplugin_error **out_error);
/**
 * @brief Binds and listens on TCP "host:port" ("127.0.0.1:0", "[::1]:8080", "localhost:0", ":8080"
 *        for all interfaces). Port 0 picks a free port. Connections are accepted once the server is
 *        started. May be called several times, before or after start.
 * @retval CONNECTPLUGIN_OK on success; connectplugin_server_address has the bound address.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p host_port is NULL, or the address is
 *         malformed (not host:port, port above 65535).
 * @retval CONNECTPLUGIN_ERR_IO if the OS refuses (the message has the reason, e.g. address in use).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_listen_tcp(connectplugin_server *server, const char *host_port,
                                                                       connectplugin_error **out_error);
/**
 * @brief As connectplugin_server_listen_tcp, speaking TLS: HTTP/2 or HTTP/1.1 chosen by ALPN, all
 *        three protocols. @p tls needs a certificate and key; with a CA and require_client_cert it
 *        asks for client certificates (mTLS; handlers see them with connectplugin_call_peer).
 *        Copied. The certificate, key and CA files are read here.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server, @p host_port or @p tls is NULL, the address
 *         is malformed, @p tls has no certificate and key, require_client_cert is set without a CA,
 *         or a certificate, key or CA cannot be loaded (the message names the file and the reason).
 * @retval CONNECTPLUGIN_ERR_RESOURCE if OpenSSL cannot allocate the TLS context.
 * @retval CONNECTPLUGIN_ERR_IO if the OS refuses (the message has the reason, e.g. address in use).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_listen_tls(connectplugin_server *server, const char *host_port,
                                                                       const connectplugin_tls_options *tls,
                                                                       connectplugin_error **out_error);
/**
 * @brief Binds and listens on a Unix domain socket at @p path. An existing socket file at the path is
 *        replaced; the file is removed when the server is stopped.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p path is NULL, or @p path is empty or
 *         longer than 107 bytes.
 * @retval CONNECTPLUGIN_ERR_IO if the OS refuses (the message has the reason).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_listen_unix(connectplugin_server *server, const char *path,
                                                                        connectplugin_error **out_error);
/**
 * @brief Listens under @p name inside this process: clients created with the URL "inproc://NAME"
 *        (connectplugin_client_new) reach this server over an in-memory pipe with the full HTTP/2
 *        (or HTTP/1.1) and protocol stack, and no socket. @p name is 1–255 letters, digits and -._~;
 *        one server per name at a time, freed when the server is stopped. The address is
 *        "inproc://NAME". Connections are served once the server is started.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p name is NULL, the name is malformed,
 *         or another server of this process uses it.
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped.
 * Thread safety: as connectplugin_server_listen_tcp.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_listen_inprocess(connectplugin_server *server, const char *name,
                                                                             connectplugin_error **out_error);
/** @brief The number of listeners. */
CONNECTPLUGIN_API size_t connectplugin_server_address_count(const connectplugin_server *server);
/**
 * @brief The bound address of listener @p index (in the order they were added): "127.0.0.1:43127",
 *        "[::1]:8080", "unix:/path" or "inproc://NAME".
 *        Borrowed, valid until the server is freed. NULL if @p index is out of range.
 */
CONNECTPLUGIN_API const char *connectplugin_server_address(const connectplugin_server *server, size_t index);
/**
 * @brief The handler threads alive now (for monitoring and tests): handler_threads when idle, more
 *        while handlers are busy, back down once the extra ones were idle for the idle thread timeout.
 *        0 for NULL.
 */
CONNECTPLUGIN_API size_t connectplugin_server_handler_thread_count(const connectplugin_server *server);

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
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server, @p procedure or @p handler is NULL, the
 *         procedure is malformed, or a handler is already registered for it.
 * @retval CONNECTPLUGIN_ERR_STATE if the server was started (even if stopped since).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped without having been started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_register_unary(connectplugin_server *server, const char *procedure,
                                                                           connectplugin_unary_handler handler, void *user_data,
                                                                           connectplugin_free_func user_data_free,
                                                                           connectplugin_error **out_error);
/**
 * @brief Registers a non-blocking unary @p handler for @p procedure: it runs inline on the I/O thread
 *        that read the request instead of on a handler thread, and its answer is written in the same
 *        loop iteration (no thread hand-off, no wake-up: the fastest unary path). Otherwise the same
 *        as connectplugin_server_register_unary (every protocol; interceptors of the server and of
 *        the procedure wrap it and run inline with it, so their hooks must be quick too).
 *        Threads: the handler runs on an I/O thread: it must not block; a blocking handler stalls
 *        every connection on that loop. Fit for quick in-memory work (a hash-table lookup under a
 *        short lock); no file or network I/O, no sleeping, no blocking connectplugin calls (a
 *        client call, connectplugin_server_stop). connectplugin_call_respond and
 *        connectplugin_call_fail are fine. Allowed before start only.
 * @param user_data_free  Same contract as in connectplugin_server_register_unary.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server, @p procedure or @p handler is NULL, the
 *         procedure is malformed, or a handler is already registered for it.
 * @retval CONNECTPLUGIN_ERR_STATE if the server was started (even if stopped since).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped without having been started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_register_unary_inline(connectplugin_server *server,
                                                                                  const char *procedure,
                                                                                  connectplugin_unary_handler handler,
                                                                                  void *user_data,
                                                                                  connectplugin_free_func user_data_free,
                                                                                  connectplugin_error **out_error);
/**
 * @brief Starts accepting connections on every listener (and on those added later).
 * @retval CONNECTPLUGIN_OK on success, also when already started.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server is NULL.
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped (a stopped server cannot restart).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_start(connectplugin_server *server, connectplugin_error **out_error);
/**
 * @brief Graceful stop: stops accepting, lets calls in flight finish for up to @p grace_ms
 *        milliseconds, then cancels the rest and closes all connections. Blocks until done.
 *        Calling it again, or on a server never started, is OK.
 * @retval CONNECTPLUGIN_OK on success (a negative @p grace_ms counts as 0).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_stop(connectplugin_server *server, int64_t grace_ms,
                                                                 connectplugin_error **out_error);
/**
 * @brief Stops the server (without grace) if it runs, waits for running handlers to return, calls
 *        every user_data finalizer, and frees it. NULL is a no-op. Must not be called from a handler.
 */
CONNECTPLUGIN_API void connectplugin_server_free(connectplugin_server *server);

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
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server, @p procedure or @p handler is NULL, @p kind
 *         is not one of the three streaming kinds, the procedure is malformed, or a handler is
 *         already registered for it.
 * @retval CONNECTPLUGIN_ERR_STATE if the server was started (even if stopped since).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the server was stopped without having been started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_register_stream(connectplugin_server *server, const char *procedure,
                                                                            connectplugin_method_kind kind,
                                                                            connectplugin_stream_handler handler, void *user_data,
                                                                            connectplugin_free_func user_data_free,
                                                                            connectplugin_error **out_error);
/**
 * @brief Marks the registered unary @p procedure as free of side effects
 *        (idempotency_level = NO_SIDE_EFFECTS): it then also accepts Connect GET requests, which
 *        HTTP caches can serve. Allowed before start only.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p procedure is NULL, no handler is
 *         registered for @p procedure (register it first), or it is a streaming method.
 * @retval CONNECTPLUGIN_ERR_STATE if the server was started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_set_no_side_effects(connectplugin_server *server, const char *procedure,
                                                                                connectplugin_error **out_error);

/* ---- Inside a handler: every connectplugin_call_* function must be called on the handler's thread
        while the handler runs, with the call it was given. ---- */

/** @brief The request message bytes (decompressed, as the client serialized them). Borrowed. */
CONNECTPLUGIN_API const uint8_t *connectplugin_call_request(const connectplugin_call *call, size_t *out_len);
/** @brief The procedure, "/package.Service/Method". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_call_procedure(const connectplugin_call *call);
/** @brief The codec of the request and the response: "proto" or "json". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_call_codec(const connectplugin_call *call);
/** @brief The request headers (custom metadata, protocol headers removed). Borrowed. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_call_request_headers(const connectplugin_call *call);
/**
 * @brief Milliseconds left until the call's deadline (Connect-Timeout-Ms), 0 if it has passed, or -1
 *        if the client set none. When the deadline passes the server answers DEADLINE_EXCEEDED on its
 *        own; a later respond/fail returns CONNECTPLUGIN_ERR_CLOSED.
 */
CONNECTPLUGIN_API int64_t connectplugin_call_timeout_remaining_ms(const connectplugin_call *call);
/** @brief 1 once the call can no longer be answered (deadline passed, client gone, server stopping). */
CONNECTPLUGIN_API int32_t connectplugin_call_is_done(const connectplugin_call *call);
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
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call or @p on_done is NULL.
 * @retval CONNECTPLUGIN_ERR_CLOSED if the handler already answered the call (respond or fail).
 * @note Thread-safe; call it from the handler (while @p call is valid).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_on_done(connectplugin_call *call, connectplugin_done_func on_done,
                                                                  void *user_data, connectplugin_free_func finalizer,
                                                                  connectplugin_error **out_error);
/**
 * @brief Adds a response header (sent with the response or the error). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_ERR_STATE if the call was already answered (respond or fail).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the call is over without an answer from the handler (deadline
 *         passed, client gone, server stopping); the client got an error already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_add_response_header(connectplugin_call *call, const char *key,
                                                                              const uint8_t *value, size_t value_len,
                                                                              connectplugin_error **out_error);
/**
 * @brief Adds a response trailer (Connect unary sends them as "trailer-" headers). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_ERR_STATE if the call was already answered (respond or fail).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the call is over without an answer from the handler (deadline
 *         passed, client gone, server stopping); the client got an error already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_add_response_trailer(connectplugin_call *call, const char *key,
                                                                               const uint8_t *value, size_t value_len,
                                                                               connectplugin_error **out_error);
/**
 * @brief Answers the call with the response message @p data (serialized in the call's codec). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call is NULL, or @p data is NULL with a non-zero
 *         @p len.
 * @retval CONNECTPLUGIN_ERR_STATE if the call was already answered (respond or fail).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the call is over without an answer from the handler (deadline
 *         passed, client gone, server stopping); the client got an error already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_respond(connectplugin_call *call, const uint8_t *data, size_t len,
                                                                  connectplugin_error **out_error);
/**
 * @brief Adds an error detail to send with connectplugin_call_fail: @p type is the fully qualified
 *        protobuf message name (e.g. "google.rpc.ErrorInfo"), @p value its serialized bytes. Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call or @p type is NULL, @p type is empty, or
 *         @p value is NULL with a non-zero @p value_len.
 * @retval CONNECTPLUGIN_ERR_STATE if the call was already answered (respond or fail).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the call is over without an answer from the handler (deadline
 *         passed, client gone, server stopping); the client got an error already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_add_error_detail(connectplugin_call *call, const char *type,
                                                                           const uint8_t *value, size_t value_len,
                                                                           connectplugin_error **out_error);
/**
 * @brief Fails the call with @p code (1–16) and @p message (may be NULL). Copied. An out-of-range
 *        code (or CONNECTPLUGIN_CODE_OK) is sent as UNKNOWN.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE if the call was already answered (respond or fail).
 * @retval CONNECTPLUGIN_ERR_CLOSED if the call is over without an answer from the handler (deadline
 *         passed, client gone, server stopping); the client got an error already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_fail(connectplugin_call *call, connectplugin_code code,
                                                               const char *message, connectplugin_error **out_error);

/**
 * @brief The protocol of the call: "connect", "grpc" or "grpcweb". Borrowed.
 */
CONNECTPLUGIN_API const char *connectplugin_call_protocol(const connectplugin_call *call);
/**
 * @brief The verified TLS client certificate of the peer (mTLS), as a metadata list with the keys
 *        "subject" (one value, the distinguished name), "dns", "uri" and "ip" (one value per subject
 *        alternative name). NULL when the connection has no client certificate. Borrowed.
 */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_call_peer(const connectplugin_call *call);

/* ---- Inside a streaming handler: the connectplugin_stream_* functions below may be called while the
        handler runs, with the stream it was given: from the handler's thread, and (for full-duplex
        bidi) from one more thread that sends while the handler's thread receives, or the reverse.
        Receives must not overlap each other, nor sends each other. The handler must not return
        while another thread still uses the stream. ---- */

/** @brief The procedure, "/package.Service/Method". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_stream_procedure(const connectplugin_stream *stream);
/** @brief The codec: "proto" or "json". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_stream_codec(const connectplugin_stream *stream);
/** @brief The protocol: "connect", "grpc" or "grpcweb". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_stream_protocol(const connectplugin_stream *stream);
/** @brief The method's kind (CONNECTPLUGIN_CLIENT_STREAM, _SERVER_STREAM or _BIDI_STREAM). */
CONNECTPLUGIN_API connectplugin_method_kind connectplugin_stream_kind(const connectplugin_stream *stream);
/** @brief The request headers (custom metadata). Borrowed. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_stream_request_headers(const connectplugin_stream *stream);
/** @brief As connectplugin_call_peer. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_stream_peer(const connectplugin_stream *stream);
/** @brief Milliseconds left until the deadline, 0 once passed, -1 without one. */
CONNECTPLUGIN_API int64_t connectplugin_stream_timeout_remaining_ms(const connectplugin_stream *stream);
/** @brief 1 once the call is over (finished, deadline passed, client gone, server stopping). */
CONNECTPLUGIN_API int32_t connectplugin_stream_is_done(const connectplugin_stream *stream);
/**
 * @brief As connectplugin_call_on_done, for a streaming call: @p on_done runs once if the call ends
 *        before the handler finished it (client canceled or gone, deadline passed, malformed request
 *        stream, server stopping). A blocked receive or send returns on its own in those cases; this
 *        is for handlers that wait elsewhere. connectplugin_stream_finish and
 *        connectplugin_stream_fail are the answers after which it never runs.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream or @p on_done is NULL.
 * @retval CONNECTPLUGIN_ERR_CLOSED if the handler already finished the call (finish or fail).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_on_done(connectplugin_stream *stream, connectplugin_done_func on_done,
                                                                    void *user_data, connectplugin_free_func finalizer,
                                                                    connectplugin_error **out_error);
/**
 * @brief Blocks until the next request message. Server streaming methods receive exactly one.
 * @param out_data  Receives the message bytes, borrowed until the next receive or the handler returns.
 *        @p out_data and @p out_len must not be NULL (CONNECTPLUGIN_ERR_INVALID_ARGUMENT; no message is taken).
 * @retval CONNECTPLUGIN_OK with a message.
 * @retval CONNECTPLUGIN_EOF when the client finished sending (*out_data NULL, *out_len 0).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream, @p out_data or @p out_len is NULL.
 * @retval CONNECTPLUGIN_ERR_RPC when the request stream failed; the error's code says why: CANCELED
 *         when the client went away, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED for an oversized message,
 *         INVALID_ARGUMENT or INTERNAL for a malformed one (the call is then already answered with
 *         that error).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_receive(connectplugin_stream *stream, const uint8_t **out_data,
                                                                    size_t *out_len, connectplugin_error **out_error);
/**
 * @brief Sends one response message (the response headers go first, with the first message). Copied.
 *        Blocks while the client is behind.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL, or @p data is NULL with a non-zero
 *         @p len.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 * @retval CONNECTPLUGIN_ERR_RPC if the message cannot be framed: code RESOURCE_EXHAUSTED for one of
 *         4 GiB or more, INTERNAL if compressing it failed. The call goes on.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_send(connectplugin_stream *stream, const uint8_t *data, size_t len,
                                                                 connectplugin_error **out_error);
/**
 * @brief Sends the response headers now, before any message.
 * @retval CONNECTPLUGIN_OK on success, also when the headers were sent already.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_send_headers(connectplugin_stream *stream, connectplugin_error **out_error);
/**
 * @brief Adds a response header. Copied. Only before the headers are sent (with the first message
 *        or connectplugin_stream_send_headers).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_ERR_STATE once the headers were sent (use a trailer), or after
 *         connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_add_response_header(connectplugin_stream *stream, const char *key,
                                                                                const uint8_t *value, size_t value_len,
                                                                                connectplugin_error **out_error);
/**
 * @brief Adds a response trailer (sent when the call ends). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_add_response_trailer(connectplugin_stream *stream, const char *key,
                                                                                 const uint8_t *value, size_t value_len,
                                                                                 connectplugin_error **out_error);
/**
 * @brief Adds an error detail for connectplugin_stream_fail. Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream or @p type is NULL, @p type is empty, or
 *         @p value is NULL with a non-zero @p value_len.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_add_error_detail(connectplugin_stream *stream, const char *type,
                                                                             const uint8_t *value, size_t value_len,
                                                                             connectplugin_error **out_error);
/**
 * @brief Ends the call with @p code (1–16; others are sent as UNKNOWN) and @p message (may be NULL).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_fail(connectplugin_stream *stream, connectplugin_code code,
                                                                 const char *message, connectplugin_error **out_error);
/**
 * @brief Ends the call with OK now (returning from the handler does the same).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_stream_fail or connectplugin_stream_finish.
 * @retval CONNECTPLUGIN_ERR_CLOSED when the call is over without an answer from the handler (client
 *         gone, deadline passed, malformed request stream, server stopping).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_stream_finish(connectplugin_stream *stream, connectplugin_error **out_error);

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
CONNECTPLUGIN_API connectplugin_client_options *connectplugin_client_options_new(void);
/**
 * @brief "proto" (application/proto) or "json" (application/json).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p codec is NULL.
 * @retval CONNECTPLUGIN_ERR_UNSUPPORTED for any other codec name.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_codec(connectplugin_client_options *options,
                                                                              const char *codec, connectplugin_error **out_error);
/**
 * @brief CONNECTPLUGIN_HTTP_1_1 or CONNECTPLUGIN_HTTP_2 (prior-knowledge h2c for http:// and unix://).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL.
 * @retval CONNECTPLUGIN_ERR_UNSUPPORTED for any other @p version.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_http_version(connectplugin_client_options *options,
                                                                                     int32_t version,
                                                                                     connectplugin_error **out_error);
/**
 * @brief Request compression: "identity" (default) or "gzip". Responses in gzip are always accepted.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p name is NULL.
 * @retval CONNECTPLUGIN_ERR_UNSUPPORTED for any other compression name.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_compression(connectplugin_client_options *options,
                                                                                    const char *name,
                                                                                    connectplugin_error **out_error);
/**
 * @brief Default timeout of every call in milliseconds; 0 = none (default).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p timeout_ms is negative.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_timeout_ms(connectplugin_client_options *options,
                                                                                   int64_t timeout_ms,
                                                                                   connectplugin_error **out_error);
/**
 * @brief Largest response message accepted, after decompression (default 4 MiB; 0 = no limit; below 2^62).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p max_bytes is 2^62 or more.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_max_message_bytes(connectplugin_client_options *options,
                                                                                          uint64_t max_bytes,
                                                                                          connectplugin_error **out_error);
/**
 * @brief A header sent with every call. Same rules as connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_add_header(connectplugin_client_options *options,
                                                                               const char *key, const uint8_t *value,
                                                                               size_t value_len, connectplugin_error **out_error);
/**
 * @brief The RPC protocol: "connect" (default), "grpc" (needs HTTP/2) or "grpcweb". Any protocol
 *        works with every connectplugin server, and with any server of that protocol.
 * @retval CONNECTPLUGIN_OK on success ("grpc" with HTTP/1.1 is refused by connectplugin_client_new).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p protocol is NULL.
 * @retval CONNECTPLUGIN_ERR_UNSUPPORTED for any other protocol name.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_protocol(connectplugin_client_options *options,
                                                                                 const char *protocol, connectplugin_error **out_error);
/**
 * @brief TLS settings for https:// URLs (CA bundle, client certificate for mTLS, server name).
 *        Copied. Without it, https:// uses the system trust store. Verification failures are
 *        UNAVAILABLE errors whose message names the cause (expired, unknown CA, name mismatch).
 * @retval CONNECTPLUGIN_OK on success (files are read by connectplugin_client_new).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p tls is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_tls(connectplugin_client_options *options,
                                                                            const connectplugin_tls_options *tls,
                                                                            connectplugin_error **out_error);
/**
 * @brief Connect only: with @p enable = 1, unary calls made with
 *        connectplugin_call_options_set_no_side_effects use HTTP GET (cacheable). Default 0.
 * @retval CONNECTPLUGIN_OK on success (any non-zero @p enable counts as 1).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_set_use_get(connectplugin_client_options *options, int32_t enable,
                                                                                connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_client_options_free(connectplugin_client_options *options);

/**
 * @brief Creates a client for @p base_url: "http://host:port[/prefix]", "https://host:port[/prefix]",
 *        "unix:///path/to/socket" or "inproc://NAME" (a server of this process that listens with
 *        connectplugin_server_listen_inprocess; no socket).
 *        No connection is made until the first call; connections are reused across calls.
 * @param options  May be NULL for defaults. Copied.
 * @param out_client  Receives the client; NULL on failure.
 * @retval CONNECTPLUGIN_OK on success. An unreachable server is not an error here: calls report it.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p base_url or @p out_client is NULL, the URL is
 *         malformed (scheme, host, port), or for https:// a certificate, key or CA of the TLS options
 *         cannot be loaded.
 * @retval CONNECTPLUGIN_ERR_UNSUPPORTED for the "grpc" protocol over HTTP/1.1.
 * @retval CONNECTPLUGIN_ERR_RESOURCE if the I/O threads or the TLS context cannot be created.
 * Thread safety: a client may be used by any number of threads at once.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_new(const char *base_url, const connectplugin_client_options *options,
                                                                connectplugin_client **out_client, connectplugin_error **out_error);
/** @brief Closes the client's connections and frees it. NULL is a no-op. No call may be in progress. */
CONNECTPLUGIN_API void connectplugin_client_free(connectplugin_client *client);

/** @brief Per-call options (timeout, headers). NULL only when out of memory. Not thread-safe. */
CONNECTPLUGIN_API connectplugin_call_options *connectplugin_call_options_new(void);
/**
 * @brief This call's timeout in ms, overriding the client default; 0 = no timeout.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL or @p timeout_ms is negative.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_options_set_timeout_ms(connectplugin_call_options *options,
                                                                                 int64_t timeout_ms,
                                                                                 connectplugin_error **out_error);
/**
 * @brief A request header for this call. Same rules as connectplugin_metadata_add.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p key is NULL, @p value is NULL with a
 *         non-zero @p value_len, or the pair breaks the rules of connectplugin_metadata_add.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_options_add_header(connectplugin_call_options *options, const char *key,
                                                                             const uint8_t *value, size_t value_len,
                                                                             connectplugin_error **out_error);
/**
 * @brief Marks the method as free of side effects (GET-eligible with connectplugin_client_options_set_use_get).
 * @retval CONNECTPLUGIN_OK on success (any non-zero @p enable counts as 1).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_call_options_set_no_side_effects(connectplugin_call_options *options, int32_t enable,
                                                                                      connectplugin_error **out_error);
/** @brief Frees the options. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_call_options_free(connectplugin_call_options *options);

/**
 * @brief A blocking unary call of @p procedure ("/package.Service/Method") with the serialized
 *        request @p request (in the client's codec). Blocks only the calling thread.
 * @param options  May be NULL. Borrowed for the duration of the call.
 * @param out_response  On CONNECTPLUGIN_OK receives an owned response; free with connectplugin_response_free.
 *        NULL on failure.
 * @retval CONNECTPLUGIN_OK when the RPC succeeded.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p client, @p procedure or @p out_response is NULL,
 *         @p request is NULL with a non-zero @p request_len, or the procedure is malformed; nothing
 *         is sent.
 * @retval CONNECTPLUGIN_ERR_RPC when the RPC failed. The error has the Connect code — the server's,
 *         or one the client sets itself: DEADLINE_EXCEEDED on timeout, UNAVAILABLE when the server
 *         cannot be reached (connect, TLS or connection failure), CANCELED when the connection was
 *         closed, RESOURCE_EXHAUSTED for a response over the size limit, INTERNAL, UNIMPLEMENTED or
 *         UNKNOWN for a response that breaks the protocol — and the message, details and metadata.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_call_unary(connectplugin_client *client, const char *procedure,
                                                                       const uint8_t *request, size_t request_len,
                                                                       const connectplugin_call_options *options,
                                                                       connectplugin_response **out_response,
                                                                       connectplugin_error **out_error);

/** @brief The response message bytes. Borrowed, valid until the response is freed. */
CONNECTPLUGIN_API const uint8_t *connectplugin_response_message(const connectplugin_response *response, size_t *out_len);
/** @brief The response headers (protocol headers removed). Borrowed; never NULL for a non-NULL response. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_response_headers(const connectplugin_response *response);
/** @brief The response trailers. Borrowed; never NULL for a non-NULL response. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_response_trailers(const connectplugin_response *response);
/** @brief Frees the response. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_response_free(connectplugin_response *response);

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
 * @param out_stream  Receives the stream; free it with connectplugin_client_stream_free. NULL on failure.
 * @retval CONNECTPLUGIN_OK on success. Connection failures are not reported here but by the first
 *         send or receive (CONNECTPLUGIN_ERR_RPC).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p client, @p procedure or @p out_stream is NULL,
 *         @p kind is unknown, or the procedure is malformed.
 * Thread safety: one thread may send while another receives; cancel and free may be called from
 *        any thread (free only once nobody else uses the stream).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_open_stream(connectplugin_client *client, const char *procedure,
                                                                        connectplugin_method_kind kind,
                                                                        const connectplugin_call_options *options,
                                                                        connectplugin_client_stream **out_stream,
                                                                        connectplugin_error **out_error);
/**
 * @brief Sends one request message (copied). Blocks while the transport is behind (back-pressure).
 *        When the server has already ended the call (an early error), the message is dropped and
 *        this returns OK: receive reports the call's status.
 * @retval CONNECTPLUGIN_OK on success (or the message was dropped, see above).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL, or @p data is NULL with a non-zero
 *         @p len.
 * @retval CONNECTPLUGIN_ERR_STATE after close_send, or for a second message to a method that takes one.
 * @retval CONNECTPLUGIN_ERR_RPC when the transport failed; the error's code is CANCELED after
 *         connectplugin_client_stream_cancel or a closed connection, DEADLINE_EXCEEDED after the
 *         timeout, UNAVAILABLE when the connection failed or was lost, RESOURCE_EXHAUSTED for a
 *         message of 4 GiB or more.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_stream_send(connectplugin_client_stream *stream, const uint8_t *data,
                                                                        size_t len, connectplugin_error **out_error);
/**
 * @brief Half-closes: no more request messages. Idempotent.
 * @retval CONNECTPLUGIN_OK on success, also when already half-closed.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_stream_close_send(connectplugin_client_stream *stream,
                                                                              connectplugin_error **out_error);
/**
 * @brief Blocks until the next response message.
 * @param out_data  Borrowed until the next receive or free. @p out_data and @p out_len must not be
 *        NULL (CONNECTPLUGIN_ERR_INVALID_ARGUMENT; no message is taken).
 * @retval CONNECTPLUGIN_OK with a message.
 * @retval CONNECTPLUGIN_EOF when the call ended with OK (trailers are now available).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p stream, @p out_data or @p out_len is NULL.
 * @retval CONNECTPLUGIN_ERR_RPC with the call's error (code, message, details, metadata) — the same
 *         error on every later receive. The code is the server's, or CANCELED after
 *         connectplugin_client_stream_cancel, DEADLINE_EXCEEDED after the timeout, UNAVAILABLE when
 *         the server cannot be reached, RESOURCE_EXHAUSTED for a message over the size limit,
 *         INTERNAL or UNIMPLEMENTED for a response that breaks the protocol.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_stream_receive(connectplugin_client_stream *stream, const uint8_t **out_data,
                                                                           size_t *out_len, connectplugin_error **out_error);
/** @brief The response headers, once the first receive returned. Borrowed; never NULL for a non-NULL stream. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_client_stream_headers(const connectplugin_client_stream *stream);
/** @brief The response trailers, once receive returned CONNECTPLUGIN_EOF. Borrowed; never NULL for a non-NULL stream. */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_client_stream_trailers(const connectplugin_client_stream *stream);
/**
 * @brief Cancels the call: HTTP/2 RST_STREAM(CANCEL), HTTP/1.1 connection close. Blocked send and
 *        receive return with CANCELED, and so does every later receive: response messages that had
 *        arrived but were not received yet are dropped (once receive reported the end of the call,
 *        CONNECTPLUGIN_EOF or the call's error, it keeps reporting that). Any thread. NULL is a no-op.
 */
CONNECTPLUGIN_API void connectplugin_client_stream_cancel(connectplugin_client_stream *stream);
/** @brief Cancels the call if still running and frees the stream. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_client_stream_free(connectplugin_client_stream *stream);

/* ------------------------------------------------------------------------------------------------ */
/* Interceptors                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

/*
 * An interceptor is a set of per-call hooks around every call of every shape (unary, client, server
 * and bidi streaming), for every protocol (Connect POST and GET, gRPC, gRPC-Web), on servers
 * (server-wide or for one procedure) and on clients:
 *  - start runs before the handler (server) or before the request is sent (client). It sees the
 *    procedure, method kind, protocol, codec, peer (servers: the mTLS identity), request headers and
 *    deadline; it may reject the call (connectplugin_interceptor_call_reject), add response headers
 *    and trailers (servers) or request headers (clients).
 *  - end runs once the call's result is known, with its code and message; it can read the response
 *    headers and trailers, and servers may still add trailers.
 *  - message (opt-in, connectplugin_interceptor_set_message_func) sees every request and response
 *    message. Hosts whose callbacks are costly (Go, Python) should leave it unset: then an
 *    interceptor costs one start and one end callback per call, nothing per message.
 * Calls the server refuses before routing them (unknown procedure, wrong HTTP method or content
 * type, unsupported compression, malformed timeout) never reach interceptors.
 * Order: start hooks run in the order the interceptors were added (server-wide first, then the
 * procedure's); end hooks in reverse, for every interceptor whose start ran (the one that rejected
 * included). The hooks of one call never run concurrently with each other; hooks of different calls
 * do, on any thread: servers run start on the handler thread, end on the thread that ends the call
 * (the handler's, or a library I/O thread for deadlines and vanished clients: keep end quick and
 * non-blocking); clients run start on the calling thread and end on the thread that sees the end
 * (the caller's, a stream's receive, cancel or free).
 */
typedef struct connectplugin_interceptor connectplugin_interceptor;
/** @brief One call as one interceptor's hook sees it. Borrowed; valid only while the hook runs. */
typedef struct connectplugin_interceptor_call connectplugin_interceptor_call;

/** @brief Which way a message travels. */
#define CONNECTPLUGIN_DIRECTION_REQUEST 0
#define CONNECTPLUGIN_DIRECTION_RESPONSE 1

/**
 * @brief Start hook. Return 0 to let the call go on (unless connectplugin_interceptor_call_reject
 *        was called); any other value rejects it with INTERNAL. A rejected call never reaches its
 *        handler (server) or the network (client); the client sees the rejection's code and message.
 */
typedef int32_t (*connectplugin_interceptor_start_func)(connectplugin_interceptor_call *call, void *user_data);
/**
 * @brief End hook: the call's result, @p code (CONNECTPLUGIN_CODE_OK on success) and @p message
 *        (borrowed, "" on success). Runs exactly once per call whose start hook ran.
 */
typedef void (*connectplugin_interceptor_end_func)(connectplugin_interceptor_call *call, connectplugin_code code,
                                                   const char *message, void *user_data);
/**
 * @brief Message hook: one serialized, uncompressed message (@p direction is
 *        CONNECTPLUGIN_DIRECTION_REQUEST or _RESPONSE). @p data is borrowed for the callback only.
 */
typedef void (*connectplugin_interceptor_message_func)(connectplugin_interceptor_call *call, int32_t direction,
                                                       const uint8_t *data, size_t len, void *user_data);

/**
 * @brief Creates an interceptor from hooks; either hook may be NULL (not both).
 * @param user_data_free  May be NULL. Called exactly once with @p user_data when no server, client,
 *        client options or handle holds the interceptor any more (after connectplugin_interceptor_free
 *        and the free of every server, client and options it was added to), or before this function
 *        returns if it fails.
 * @param out_interceptor  Receives the interceptor (owned; free with connectplugin_interceptor_free).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if both hooks or @p out_interceptor are NULL.
 * Thread safety: the interceptor may be added to any number of servers and clients, from any thread.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_new(connectplugin_interceptor_start_func start,
                                                   connectplugin_interceptor_end_func end, void *user_data,
                                                   connectplugin_free_func user_data_free,
                                                   connectplugin_interceptor **out_interceptor,
                                                   connectplugin_error **out_error);
/**
 * @brief Opts in to message observation: @p on_message (NULL turns it off) sees every message of
 *        every call. Only before the interceptor is added to a server or client options.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p interceptor is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE once the interceptor was added to a server or client options (an
 *         add that failed does not count: it leaves the interceptor unchanged).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_set_message_func(connectplugin_interceptor *interceptor,
                                                                connectplugin_interceptor_message_func on_message,
                                                                connectplugin_error **out_error);
/**
 * @brief Drops the caller's reference. Servers, clients and options it was added to keep theirs;
 *        the finalizer runs when the last one goes. NULL is a no-op. Any thread.
 */
CONNECTPLUGIN_API void connectplugin_interceptor_free(connectplugin_interceptor *interceptor);

/**
 * @brief Adds @p interceptor to every call of @p server (@p procedure NULL) or to the calls of one
 *        procedure ("/package.Service/Method"; it need not be registered yet). The server holds a
 *        reference until it is freed. Before connectplugin_server_start only.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server or @p interceptor is NULL or @p procedure is
 *         malformed.
 * @retval CONNECTPLUGIN_ERR_STATE after connectplugin_server_start.
 * @retval CONNECTPLUGIN_ERR_CLOSED after connectplugin_server_stop.
 * Thread safety: not concurrently with other configuration of the same server.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_server_add_interceptor(connectplugin_server *server, const char *procedure,
                                                          connectplugin_interceptor *interceptor,
                                                          connectplugin_error **out_error);
/**
 * @brief Adds @p interceptor around every call (unary and streaming) of clients made with
 *        @p options (after those added before). Options and clients hold a reference each.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p options or @p interceptor is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_client_options_add_interceptor(connectplugin_client_options *options,
                                                                  connectplugin_interceptor *interceptor,
                                                                  connectplugin_error **out_error);

/* ---- Inside a hook: the connectplugin_interceptor_call_* functions take the call the hook was given,
        on the hook's thread, while it runs. Borrowed results live until the hook returns. ---- */

/** @brief The procedure, "/package.Service/Method". Borrowed. NULL for a NULL call. */
CONNECTPLUGIN_API const char *connectplugin_interceptor_call_procedure(const connectplugin_interceptor_call *call);
/** @brief The method kind (CONNECTPLUGIN_UNARY, ..._CLIENT_STREAM, ..._SERVER_STREAM, ..._BIDI_STREAM); -1 for NULL. */
CONNECTPLUGIN_API connectplugin_method_kind connectplugin_interceptor_call_kind(const connectplugin_interceptor_call *call);
/** @brief "connect", "grpc" or "grpcweb". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_interceptor_call_protocol(const connectplugin_interceptor_call *call);
/** @brief "proto" or "json". Borrowed. */
CONNECTPLUGIN_API const char *connectplugin_interceptor_call_codec(const connectplugin_interceptor_call *call);
/** @brief 1 in a server's interceptor, 0 in a client's (-1 for NULL). */
CONNECTPLUGIN_API int32_t connectplugin_interceptor_call_is_server(const connectplugin_interceptor_call *call);
/**
 * @brief Servers: the peer's verified TLS client certificate (mTLS), with the keys of
 *        connectplugin_call_peer. NULL without one, and always on clients. Borrowed.
 */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_interceptor_call_peer(const connectplugin_interceptor_call *call);
/**
 * @brief The request headers: servers, as received (protocol headers removed); clients, the
 *        client's and the call's headers plus those start hooks added so far. Borrowed.
 */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_interceptor_call_request_headers(const connectplugin_interceptor_call *call);
/** @brief Milliseconds until the call's deadline, 0 once passed, -1 without a deadline. */
CONNECTPLUGIN_API int64_t connectplugin_interceptor_call_timeout_remaining_ms(const connectplugin_interceptor_call *call);
/**
 * @brief In an end hook: the response headers (server: sent; client: received) and trailers.
 *        Borrowed. NULL outside an end hook. On a client, a failed call's headers and trailers
 *        are both in the trailers list (as in the error's metadata).
 */
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_interceptor_call_response_headers(const connectplugin_interceptor_call *call);
CONNECTPLUGIN_API const connectplugin_metadata *connectplugin_interceptor_call_response_trailers(const connectplugin_interceptor_call *call);
/**
 * @brief This interceptor's per-call slot: set it in start, read it in end (e.g. a start time or a
 *        host object). Each interceptor has its own slot; the library never frees it. Default NULL.
 */
CONNECTPLUGIN_API void connectplugin_interceptor_call_set_state(connectplugin_interceptor_call *call, void *state);
CONNECTPLUGIN_API void *connectplugin_interceptor_call_state(const connectplugin_interceptor_call *call);
/**
 * @brief In a start hook: rejects the call with @p code (1–16; 0 or out of range is UNKNOWN) and
 *        @p message (may be NULL; copied). Later start hooks do not run.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p call is NULL.
 * @retval CONNECTPLUGIN_ERR_STATE outside a start hook.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_call_reject(connectplugin_interceptor_call *call, connectplugin_code code,
                                                           const char *message, connectplugin_error **out_error);
/**
 * @brief Clients, in a start hook: adds a request header. Same rules as connectplugin_metadata_add. Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL or the key or value is malformed.
 * @retval CONNECTPLUGIN_ERR_STATE on a server, or outside a start hook.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_call_add_request_header(connectplugin_interceptor_call *call,
                                                                       const char *key, const uint8_t *value,
                                                                       size_t value_len, connectplugin_error **out_error);
/**
 * @brief Servers, in a start hook: adds a response header, sent whatever the outcome (a rejection
 *        included). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL or the key or value is malformed.
 * @retval CONNECTPLUGIN_ERR_STATE on a client, or outside a start hook.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_call_add_response_header(connectplugin_interceptor_call *call,
                                                                        const char *key, const uint8_t *value,
                                                                        size_t value_len, connectplugin_error **out_error);
/**
 * @brief Servers, in a start or end hook: adds a response trailer. Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL or the key or value is malformed.
 * @retval CONNECTPLUGIN_ERR_STATE on a client, or in a message hook.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_interceptor_call_add_response_trailer(connectplugin_interceptor_call *call,
                                                                         const char *key, const uint8_t *value,
                                                                         size_t value_len, connectplugin_error **out_error);

/* ------------------------------------------------------------------------------------------------ */
/* Plugins: serving as a go-plugin compatible plugin                                                */
/* ------------------------------------------------------------------------------------------------ */

/*
 * A plugin registers its services on a connectplugin_server as usual (not started, no listener),
 * declares its plugin names per app protocol version in a connectplugin_plugin_config, and calls
 * connectplugin_plugin_serve once, from main. Serve checks the magic cookie (run by a person, it
 * prints go-plugin's "This binary is a plugin" message on stderr and returns 2), negotiates the app
 * version from PLUGIN_PROTOCOL_VERSIONS (the highest common one; the lowest of its own when none is),
 * listens on an owner-only Unix socket (PLUGIN_UNIX_SOCKET_DIR, PLUGIN_UNIX_SOCKET_GROUP) or on
 * 127.0.0.1 TCP within PLUGIN_MIN_PORT..PLUGIN_MAX_PORT, adds the control services
 * (grpc.health.v1.Health, plugin.GRPCController, plugin.GRPCStdio, plugin.GRPCBroker and
 * connect-plugin-go's connectplugin.v1 handshake, health, control and identity services), moves
 * fd 1 and 2 onto pipes forwarded to the host through plugin.GRPCStdio, prints the handshake line
 * `1|APP|NETWORK|ADDR|grpc|` on the real stdout, logs hclog JSON lines on the real stderr, and
 * serves until the host calls Shutdown, SIGTERM or SIGINT arrives, or the host that launched it is
 * gone; then it stops gracefully. Wire details: docs/plugins.md; plugin authors: docs/plugin-authors.md.
 */

typedef struct connectplugin_plugin_config connectplugin_plugin_config;

/** connect-plugin-go's three health states (connectplugin_plugin_set_health). */
#define CONNECTPLUGIN_HEALTH_HEALTHY 1
#define CONNECTPLUGIN_HEALTH_DEGRADED 2
#define CONNECTPLUGIN_HEALTH_UNHEALTHY 3

/**
 * @brief A plugin configuration with the handshake's magic cookie (e.g. "KV_PLUGIN",
 *        "connectplugin-kv"). Both strings are copied. Not thread-safe; free with _free.
 * @param out_config  Receives the configuration; NULL on failure.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p out_config is NULL or the key or value is NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_new(const char *cookie_key, const char *cookie_value,
                                                                       connectplugin_plugin_config **out_config,
                                                                       connectplugin_error **out_error);
/**
 * @brief Declares plugin @p name (e.g. "kv") in the plugin set of app protocol version
 *        @p app_version (go-plugin's VersionedPlugins). Its service must be registered on the server
 *        given to serve. @p version (the plugin's own version) and @p service_path (e.g.
 *        "/pkg.v1.KVService/") may be NULL; they are reported by PluginIdentity and the handshake.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config or @p name is NULL or empty, @p app_version
 *         is below 1, or the name is already declared for that version.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_add_plugin(connectplugin_plugin_config *config,
                                                                              int32_t app_version, const char *name,
                                                                              const char *version,
                                                                              const char *service_path,
                                                                              connectplugin_error **out_error);
/**
 * @brief How long calls in flight may take to finish once the plugin stops (default 5000 ms; a
 *        negative value counts as 0).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_set_grace_ms(connectplugin_plugin_config *config,
                                                                                int64_t grace_ms,
                                                                                connectplugin_error **out_error);
/**
 * @brief "unix" (default: a Unix socket) or "tcp" (127.0.0.1 in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL or @p network is neither.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_set_network(connectplugin_plugin_config *config,
                                                                               const char *network,
                                                                               connectplugin_error **out_error);
/**
 * @brief The plugin's own server TLS (manual TLS, go-plugin's TLSProvider): certificate and key
 *        (required), CA and require-client-cert for mTLS. Copied; NULL clears it. When set it is used
 *        instead of AutoMTLS and the handshake line carries no certificate, so the host needs a
 *        matching TLS config. Without it, a host that sends PLUGIN_CLIENT_CERT gets AutoMTLS: a fresh
 *        certificate in the handshake line, client certificates that chain to the host's required.
 * @retval CONNECTPLUGIN_OK on success (files are read by connectplugin_plugin_serve).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL, or @p tls has no certificate and key.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_set_tls(connectplugin_plugin_config *config,
                                                                           const connectplugin_tls_options *tls,
                                                                           connectplugin_error **out_error);
/** @brief Frees the configuration. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_plugin_config_free(connectplugin_plugin_config *config);
/**
 * @brief Serves @p server as a plugin (see above) and blocks until it stopped. Call once, from the
 *        plugin's main thread; @p server must have its handlers registered and be neither started
 *        nor listening. @p config is copied (free it any time after).
 * @return The exit status for the plugin process: 0 after a clean stop; 2 when the binary was run
 *         by a person (no magic cookie); 1 when serving could not start (wrong cookie, a socket path
 *         too long, no free port, ...). Whatever went wrong is written to stderr, saying what to
 *         change. The server is stopped on return; free it with connectplugin_server_free.
 */
CONNECTPLUGIN_API int32_t connectplugin_plugin_serve(connectplugin_server *server,
                                                     const connectplugin_plugin_config *config);
/**
 * @brief Sets the health the plugin reports while connectplugin_plugin_serve runs on @p server:
 *        CONNECTPLUGIN_HEALTH_HEALTHY, _DEGRADED (both SERVING on grpc.health.v1) or _UNHEALTHY
 *        (NOT_SERVING), with an optional @p reason (copied). Watchers see it at once. Any thread.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p server is NULL or @p state is not one of the three.
 * @retval CONNECTPLUGIN_ERR_STATE if the server is not serving as a plugin.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_set_health(connectplugin_server *server, int32_t state,
                                                                       const char *reason,
                                                                       connectplugin_error **out_error);
/**
 * @brief Remote mode: connectplugin_plugin_serve then serves the plugin as a standalone network
 *        service on @p address ("host:port", port 0 picks one, or "unix:PATH") instead of as a
 *        launched plugin. No cookie is needed in the environment (hosts send it in
 *        connectplugin.v1.HandshakeService/Handshake, which checks it); the version set is the one
 *        PLUGIN_PROTOCOL_VERSIONS picks if set, else the highest; "listening on ADDR" (the bound
 *        address, "unix:PATH" for a socket) is printed on stdout instead of the handshake line; the
 *        same control services are served until Shutdown, SIGTERM or SIGINT. NULL or "" turns it
 *        off; without this call the CONNECTPLUGIN_LISTEN environment variable, if set, gives the
 *        address. Copied. TLS: connectplugin_plugin_config_set_tls, or else the PEM files named by
 *        CONNECTPLUGIN_TLS_CERT and CONNECTPLUGIN_TLS_KEY (with CONNECTPLUGIN_TLS_CLIENT_CA: mutual
 *        TLS, clients need a certificate signed by those CAs); hosts then use an https:// URL.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_set_listen_address(connectplugin_plugin_config *config,
                                                                                      const char *address,
                                                                                      connectplugin_error **out_error);
/**
 * @brief In-process plugin: serves @p server (handlers registered, neither started nor listening)
 *        as the plugin @p config describes, in this process under the in-process name @p name
 *        (1-255 letters, digits and -._~), with the control services, and returns at once. A host
 *        in the same process reaches it with connectplugin_plugin_client_config_new_url and
 *        "inproc://NAME": the same calls as for a launched plugin, no socket. The version set is the
 *        highest. No signals are handled and nothing is printed. Stop it with
 *        connectplugin_server_stop or connectplugin_server_free. @p config is copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL or @p name is empty or invalid,
 *         or the config declares no plugins.
 * @retval CONNECTPLUGIN_ERR_STATE if @p server listens already.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_serve_in_process(connectplugin_server *server,
                                                                             const connectplugin_plugin_config *config,
                                                                             const char *name,
                                                                             connectplugin_error **out_error);

/* Plugin logs (hclog's levels; both sides). */
#define CONNECTPLUGIN_LOG_TRACE 0
#define CONNECTPLUGIN_LOG_DEBUG 1
#define CONNECTPLUGIN_LOG_INFO 2
#define CONNECTPLUGIN_LOG_WARN 3
#define CONNECTPLUGIN_LOG_ERROR 4

/**
 * @brief Receives one log record: on the plugin side the runtime's own records
 *        (connectplugin_plugin_config_set_logger; @p plugin is ""), on the host side each line of a
 *        plugin's stderr (connectplugin_plugin_client_config_set_logger; @p plugin is the binary's
 *        base name). @p level is a CONNECTPLUGIN_LOG_* value; @p timestamp is hclog's `@timestamp`
 *        as written ("" when the line had none); keys[i] = values[i] for i < @p field_count (other
 *        JSON values as JSON text). Every string is valid only during the call (copy what you keep).
 *        Runs on library threads (stderr lines one at a time and in order, on one thread; the
 *        host's own records, e.g. from kill, on others: it may run concurrently, so lock what you
 *        share); keep it short and make no blocking call on the same plugin from it.
 */
typedef void (*connectplugin_log_func)(const char *plugin, int32_t level, const char *message, const char *timestamp,
                                       const char *const *keys, const char *const *values, size_t field_count,
                                       void *user_data);
/**
 * @brief The plugin's own log call: writes one hclog JSON line
 *        `{"@level":"info","@message":"...","@timestamp":"...","key":"value",...}` on the process's
 *        real stderr, the one the host parses (while connectplugin_plugin_serve runs, fd 2 is a pipe
 *        forwarded through plugin.GRPCStdio; before and after, fd 2). keys[i] = values[i] for
 *        i < @p field_count (strings; @p keys and @p values may be NULL when @p field_count is 0).
 *        Lines from several threads never interleave. Any thread, at any time.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p level is not a CONNECTPLUGIN_LOG_* value,
 *         @p message is NULL, or a key or value is NULL (or the arrays are while @p field_count > 0).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_log(int32_t level, const char *message, const char *const *keys,
                                                                const char *const *values, size_t field_count,
                                                                connectplugin_error **out_error);
/**
 * @brief Routes the runtime's own log records (plugin started, stopping, socket fallbacks, ...) to
 *        @p logger instead of hclog JSON lines on the real stderr (NULL restores that). The
 *        configuration keeps @p user_data; @p user_data_free (may be NULL) runs once when the last
 *        configuration or serve holding it is done with it, or at once if this call fails.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_config_set_logger(connectplugin_plugin_config *config,
                                                                              connectplugin_log_func logger, void *user_data,
                                                                              connectplugin_free_func user_data_free,
                                                                              connectplugin_error **out_error);

/* ------------------------------------------------------------------------------------------------ */
/* Plugins: hosting (launching plugin binaries)                                                     */
/* ------------------------------------------------------------------------------------------------ */

/*
 * A host launches a plugin binary (one of connectplugin's, or any go-plugin gRPC plugin) with
 * go-plugin's environment (the magic cookie, PLUGIN_PROTOCOL_VERSIONS, PLUGIN_MIN_PORT/MAX_PORT;
 * the host's own environment unless turned off; explicit variables win), reads its handshake line,
 * connects over gRPC (h2c on its Unix socket or TCP address), drains plugin.GRPCStdio, logs its
 * stderr (hclog JSON lines and plain lines) on this process's stderr with the plugin's name, and
 * dispenses connectplugin_client handles for its services. Errors say what to change: binary not
 * found or not executable, wrong architecture, exited before the handshake (with its exit status
 * and the last lines of its stderr), no handshake within the start timeout, junk on stdout before
 * the line (up to 16 lines are skipped and logged), no common version (both sides listed).
 * Also: a plugin by endpoint URL (remote mode), by reattach information, or in process
 * (connectplugin_plugin_client_config_new_url, _new_reattach, connectplugin_plugin_serve_in_process);
 * exit notification, SecureConfig checksums, managed mode and a restart policy (below).
 */

typedef struct connectplugin_plugin_client_config connectplugin_plugin_client_config;
typedef struct connectplugin_plugin_client connectplugin_plugin_client;
/** What a plugin says about itself (connectplugin_plugin_client_info). Immutable: any thread may read it. */
typedef struct connectplugin_plugin_info connectplugin_plugin_info;

/**
 * @brief A host configuration for the plugin binary at @p path, with the handshake's magic cookie.
 *        All strings are copied. Not thread-safe; free with _free.
 * @param out_config  Receives the configuration; NULL on failure.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p out_config is NULL or a string is NULL or empty.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_new(const char *cookie_key,
                                                                              const char *cookie_value,
                                                                              const char *path,
                                                                              connectplugin_plugin_client_config **out_config,
                                                                              connectplugin_error **out_error);
/**
 * @brief Appends a command-line argument for the plugin (argv[0] is the path). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config or @p arg is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_add_arg(connectplugin_plugin_client_config *config,
                                                                                  const char *arg,
                                                                                  connectplugin_error **out_error);
/**
 * @brief Declares that the host can dispense plugin @p name at app protocol version
 *        @p app_version (the versions are sent in PLUGIN_PROTOCOL_VERSIONS). At least one is needed.
 * @retval CONNECTPLUGIN_OK on success (declaring a name twice is OK).
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config or @p name is NULL or empty, or
 *         @p app_version is below 1.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_add_plugin(connectplugin_plugin_client_config *config,
                                                                                     int32_t app_version, const char *name,
                                                                                     connectplugin_error **out_error);
/**
 * @brief Sets @p key to @p value in the plugin's environment, over the host's and go-plugin's
 *        variables (go-plugin #162). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL, or @p key is empty or holds '='.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_env(connectplugin_plugin_client_config *config,
                                                                                  const char *key, const char *value,
                                                                                  connectplugin_error **out_error);
/**
 * @brief Whether the plugin gets this process's environment (default 1, as go-plugin).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_inherit_env(connectplugin_plugin_client_config *config,
                                                                                          int32_t inherit,
                                                                                          connectplugin_error **out_error);
/**
 * @brief The plugin's working directory (NULL: the host's). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_working_dir(connectplugin_plugin_client_config *config,
                                                                                          const char *dir,
                                                                                          connectplugin_error **out_error);
/**
 * @brief How long the plugin has to print its handshake line (default 60000 ms, as go-plugin).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL or @p timeout_ms is not positive.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_start_timeout_ms(connectplugin_plugin_client_config *config,
                                                                                               int64_t timeout_ms,
                                                                                               connectplugin_error **out_error);
/**
 * @brief How long kill waits after Shutdown, and again after SIGTERM, before the next step
 *        (default 2000 ms, go-plugin's wait; a negative value counts as 0).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_kill_grace_ms(connectplugin_plugin_client_config *config,
                                                                                            int64_t grace_ms,
                                                                                            connectplugin_error **out_error);
/**
 * @brief Delivers the plugin's stderr, line by line parsed as hclog (JSON lines with their level,
 *        message, timestamp and fields; other lines by a `[LEVEL]` prefix, else at debug, error after
 *        a `panic: ` line), and the host's own records about the plugin (exit, junk on stdout), to
 *        @p logger with the plugin's name (the binary's base name). NULL restores the default: one
 *        `[LEVEL] NAME: message key=value ...` line each on this process's stderr. The
 *        configuration and every plugin started from it keep @p user_data; @p user_data_free (may
 *        be NULL) runs once when the last of them is freed, or at once if this call fails.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_logger(connectplugin_plugin_client_config *config,
                                                                                     connectplugin_log_func logger,
                                                                                     void *user_data,
                                                                                     connectplugin_free_func user_data_free,
                                                                                     connectplugin_error **out_error);
/**
 * @brief go-plugin's AutoMTLS (default 0, as go-plugin): the host makes an ephemeral certificate
 *        (ECDSA P-521, as go-plugin's), passes it to the plugin in PLUGIN_CLIENT_CERT and talks TLS to
 *        it, trusting only the certificate the plugin prints in its handshake line (server name
 *        "localhost"). A plugin that prints no certificate then fails connectplugin_plugin_client_start
 *        (INVALID_ARGUMENT: turn AutoMTLS off for it). Ignored when a TLS config is set
 *        (connectplugin_plugin_client_config_set_tls). Whatever this setting, a certificate the
 *        plugin prints is trusted and TLS used, as go-plugin does.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_auto_mtls(connectplugin_plugin_client_config *config,
                                                                                        int32_t enable,
                                                                                        connectplugin_error **out_error);
/**
 * @brief Manual TLS (go-plugin's ClientConfig.TLSConfig) for a plugin that serves TLS of its own:
 *        CA, client certificate, server name (set one: a Unix socket has no host name; default
 *        "localhost" when the plugin prints a certificate, which then replaces the CA). Copied;
 *        NULL clears it. Files are read by connectplugin_plugin_client_start.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_tls(connectplugin_plugin_client_config *config,
                                                                                  const connectplugin_tls_options *tls,
                                                                                  connectplugin_error **out_error);
/** @brief Frees the configuration. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_plugin_client_config_free(connectplugin_plugin_client_config *config);
/**
 * @brief Launches the plugin and blocks until its handshake (or the start timeout). @p config is
 *        copied (free it any time after). Thread safety: every connectplugin_plugin_client_*
 *        function may be called from any thread.
 * @param out_plugin  Receives the running plugin; NULL on failure (the process is gone then).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL, no plugin was declared, the
 *         binary is missing, not executable or a directory, the handshake line is malformed, or no
 *         version is common (the message lists both sides).
 * @retval CONNECTPLUGIN_ERR_RESOURCE if the process cannot be started (e.g. wrong architecture).
 * @retval CONNECTPLUGIN_ERR_RPC with code unavailable if the plugin exited before its handshake,
 *         or deadline_exceeded if it printed none in time.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_start(const connectplugin_plugin_client_config *config,
                                                                         connectplugin_plugin_client **out_plugin,
                                                                         connectplugin_error **out_error);
/** @brief The app protocol version the plugin chose (0 if @p plugin is NULL). */
CONNECTPLUGIN_API int32_t connectplugin_plugin_client_negotiated_version(const connectplugin_plugin_client *plugin);
/** @brief The plugin's process id (0 if @p plugin is NULL). */
CONNECTPLUGIN_API int32_t connectplugin_plugin_client_pid(const connectplugin_plugin_client *plugin);
/**
 * @brief A client for plugin @p name's services, over the plugin's one connection (gRPC). Use it
 *        with every connectplugin_client_* call function; free it with connectplugin_client_free
 *        (that does not close the plugin's connection; connectplugin_plugin_client_free does).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if an argument is NULL or @p name is not in the
 *         host's plugin set for the negotiated version.
 * @retval CONNECTPLUGIN_ERR_RPC with code unavailable if the plugin process has exited.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_dispense(connectplugin_plugin_client *plugin,
                                                                            const char *name,
                                                                            connectplugin_client **out_client,
                                                                            connectplugin_error **out_error);
/**
 * @brief go-plugin's Ping: grpc.health.v1.Health/Check for "plugin" (@p timeout_ms <= 0: 10 s).
 * @retval CONNECTPLUGIN_OK when the plugin answers SERVING.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p plugin is NULL.
 * @retval CONNECTPLUGIN_ERR_RPC with the call's code: unavailable when the plugin is unreachable or
 *         not serving, deadline_exceeded after @p timeout_ms.
 * @retval CONNECTPLUGIN_ERR_STATE if the plugin was never started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_ping(connectplugin_plugin_client *plugin,
                                                                        int64_t timeout_ms,
                                                                        connectplugin_error **out_error);
/**
 * @brief The plugin's own description: connect-plugin-go's connectplugin.v1.PluginIdentity/GetPluginInfo
 *        (@p timeout_ms <= 0: 10 s). A connectplugin plugin reports its first plugin's name and version,
 *        and the metadata "app_protocol_version" and "runtime". Any thread.
 * @param out_info  Receives the info (free with connectplugin_plugin_info_free); NULL on failure.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p plugin or @p out_info is NULL.
 * @retval CONNECTPLUGIN_ERR_RPC with the call's code: unimplemented for a plugin that does not serve
 *         PluginIdentity (go-plugin plugins do not; the error says so), unavailable when the plugin is
 *         unreachable, deadline_exceeded after @p timeout_ms, internal if the answer does not decode.
 * @retval CONNECTPLUGIN_ERR_STATE if the plugin was never started.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_info(connectplugin_plugin_client *plugin,
                                                                        int64_t timeout_ms,
                                                                        connectplugin_plugin_info **out_info,
                                                                        connectplugin_error **out_error);
/** @brief The plugin's id (self_id). Borrowed, valid until the info is freed; "" for NULL. */
CONNECTPLUGIN_API const char *connectplugin_plugin_info_id(const connectplugin_plugin_info *info);
/** @brief The plugin's version (self_version). Borrowed like _id; "" for NULL. */
CONNECTPLUGIN_API const char *connectplugin_plugin_info_version(const connectplugin_plugin_info *info);
/** @brief The number of metadata entries, in the order the plugin sent them. NULL gives 0. */
CONNECTPLUGIN_API size_t connectplugin_plugin_info_metadata_count(const connectplugin_plugin_info *info);
/**
 * @brief Metadata entry @p index: key and value, NUL-terminated, borrowed like _id. Each out pointer
 *        may be NULL. No error object is made (this function has no out_error).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p info is NULL or @p index is out of range.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_info_metadata_get(const connectplugin_plugin_info *info,
                                                                              size_t index, const char **out_key,
                                                                              const char **out_value);
/** @brief Frees the info. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_plugin_info_free(connectplugin_plugin_info *info);
/**
 * @brief Stops the plugin: plugin.GRPCController/Shutdown, the kill grace, SIGTERM, the grace
 *        again, SIGKILL; blocks until the process ended. Calling it again is OK.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p plugin is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_kill(connectplugin_plugin_client *plugin,
                                                                        connectplugin_error **out_error);
/**
 * @brief How the plugin process ended: 0 while it runs (or @p plugin is NULL); 1 when it exited
 *        (*out_value = its exit status); 2 when a signal ended it (*out_value = the signal); 3 when
 *        its status could not be collected. @p out_value may be NULL.
 */
CONNECTPLUGIN_API int32_t connectplugin_plugin_client_exit_status(const connectplugin_plugin_client *plugin,
                                                                  int32_t *out_value);
/** @brief Kills the plugin if it runs (as connectplugin_plugin_client_kill) and frees it. NULL is a no-op. */
CONNECTPLUGIN_API void connectplugin_plugin_client_free(connectplugin_plugin_client *plugin);
/**
 * @brief A host configuration for a plugin already serving at @p url (remote mode): "http://host:port",
 *        "https://host:port" (TLS with the system's roots), "unix:///path" or "inproc://NAME" (an
 *        in-process plugin, connectplugin_plugin_serve_in_process). connectplugin_plugin_client_start
 *        connects and handshakes through connectplugin.v1.HandshakeService/Handshake: the host's
 *        versions (connectplugin_plugin_client_config_add_plugin) are tried from the highest down;
 *        a wrong cookie, a missing plugin name or no common version (both sides' versions listed)
 *        fail with ERR_INVALID_ARGUMENT, an unreachable URL with ERR_RPC (unavailable). The other
 *        calls work as for a launched plugin, except: there is no process (pid 0, no exit status),
 *        the command setters have no effect, and kill only disconnects (as connect-plugin-go's
 *        client: the service keeps serving its other hosts). All strings are copied. Not thread-safe;
 *        free with connectplugin_plugin_client_config_free.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p out_config is NULL, a string is NULL or empty, or
 *         @p url has none of the schemes above.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_new_url(const char *cookie_key,
                                                                                  const char *cookie_value,
                                                                                  const char *url,
                                                                                  connectplugin_plugin_client_config **out_config,
                                                                                  connectplugin_error **out_error);
/**
 * @brief A host configuration that reattaches to a plugin another host started (go-plugin's
 *        ReattachConfig): @p reattach is the text connectplugin_plugin_client_reattach_info gave
 *        that host, go-plugin's ReattachConfig as JSON, e.g.
 *        {"Protocol":"grpc","ProtocolVersion":1,"Addr":{"Network":"unix","String":"/tmp/plugin1"},"Pid":42}.
 *        connectplugin_plugin_client_start checks that the pid is alive and the version is one the
 *        host declared, connects and pings. Then dispense, ping and the rest work as for a launched
 *        plugin; kill calls Shutdown, then sends SIGTERM and SIGKILL to the pid after the grace
 *        periods, until the process is gone (its exit status goes to the host that started it:
 *        connectplugin_plugin_client_exit_status answers 3, unknown). Strings are copied. Not
 *        thread-safe; free with connectplugin_plugin_client_config_free.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p out_config is NULL, a string is NULL or empty, or
 *         @p reattach is not valid reattach information (the message says why).
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_new_reattach(const char *cookie_key,
                                                                                       const char *cookie_value,
                                                                                       const char *reattach,
                                                                                       connectplugin_plugin_client_config **out_config,
                                                                                       connectplugin_error **out_error);
/**
 * @brief The reattach information of a started plugin (see
 *        connectplugin_plugin_client_config_new_reattach): a JSON string owned by @p plugin, valid
 *        until connectplugin_plugin_client_free. NULL for a NULL @p plugin and for a plugin reached by
 *        URL. Any thread.
 */
CONNECTPLUGIN_API const char *connectplugin_plugin_client_reattach_info(const connectplugin_plugin_client *plugin);

/*
 * Plugin lifecycle: exit notification, SecureConfig, managed mode.
 * A call in flight (or made later) when the plugin process dies fails with
 * CONNECTPLUGIN_ERR_RPC, code unavailable, and a message naming the plugin, its pid and its exit
 * status. Every plugin is spawned from one long-lived thread of the library with the parent-death
 * signal SIGKILL (Linux PR_SET_PDEATHSIG), so no plugin outlives a host process that is killed;
 * connectplugin_plugin_cleanup_all stops them gracefully.
 */

/**
 * @brief Called once when a plugin process ended: @p kind and @p value as
 *        connectplugin_plugin_client_exit_status returns them (1 exited / status, 2 signal /
 *        number, 3 unknown / 0). Runs on a library I/O thread: keep it short, do not call
 *        connectplugin_plugin_client_kill or _free from it.
 */
typedef void (*connectplugin_plugin_exit_func)(int32_t kind, int32_t value, void *user_data);
/**
 * @brief Registers @p on_exit for @p plugin's exit. Called exactly once: on an I/O thread when the
 *        process ends (expected or not), or at once on the calling thread if it already ended.
 *        Several registrations are allowed. Thread-safe.
 * @param finalizer  May be NULL. Called exactly once with @p user_data: right after @p on_exit ran,
 *        or before this returns an error.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p plugin or @p on_exit is NULL.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_on_exit(connectplugin_plugin_client *plugin,
                                                                           connectplugin_plugin_exit_func on_exit,
                                                                           void *user_data, connectplugin_free_func finalizer,
                                                                           connectplugin_error **out_error);
/**
 * @brief Blocks until the plugin process ended or @p timeout_ms passed (negative: no limit; 0:
 *        just look). Returns as connectplugin_plugin_client_exit_status: 0 while it runs (or if
 *        @p plugin is NULL), else 1, 2 or 3 with *out_value set. @p out_value may be NULL.
 *        Thread-safe.
 */
CONNECTPLUGIN_API int32_t connectplugin_plugin_client_wait_exit(connectplugin_plugin_client *plugin, int64_t timeout_ms,
                                                                int32_t *out_value);
/**
 * @brief SecureConfig: connectplugin_plugin_client_start computes the binary's SHA-256 and refuses
 *        to launch it (CONNECTPLUGIN_ERR_RPC, code permission_denied, the message naming the
 *        expected and the actual digest) unless it equals @p sha256_hex (64 hex digits, either
 *        case; NULL: no check, the default). Copied.
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL or @p sha256_hex is not 64 hex digits.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_checksum_sha256(connectplugin_plugin_client_config *config,
                                                                                              const char *sha256_hex,
                                                                                              connectplugin_error **out_error);
/**
 * @brief Managed mode: stops every plugin this process started and has not stopped yet (each as
 *        connectplugin_plugin_client_kill, all in parallel) and returns when all ended. Call it
 *        before the host exits (the Python binding does at exit; Go: connectplugin.CleanupPlugins).
 *        The plugin handles stay valid (free them as usual). Thread-safe; calling it again is OK.
 */
CONNECTPLUGIN_API void connectplugin_plugin_cleanup_all(void);
/**
 * @brief Restart policy (off by default, as go-plugin): when the plugin exits unexpectedly (not
 *        by connectplugin_plugin_client_kill), it is relaunched after @p initial_backoff_ms
 *        (0: 100), doubling up to @p max_backoff_ms (0: 5000), at most @p max_restarts times in
 *        the plugin client's life (0: no restarts), and handshaked again. Clients from
 *        connectplugin_plugin_client_dispense keep working: they send to the current process.
 *        A call in flight when the plugin died still fails (unavailable, naming its exit status);
 *        calls during the relaunch fail unavailable too. The exit callback runs once, when the
 *        plugin ended for good (killed, the limit reached, or a relaunch kept failing).
 * @retval CONNECTPLUGIN_OK on success.
 * @retval CONNECTPLUGIN_ERR_INVALID_ARGUMENT if @p config is NULL or a value is negative.
 */
CONNECTPLUGIN_API connectplugin_status connectplugin_plugin_client_config_set_restart(connectplugin_plugin_client_config *config,
                                                                                      int32_t max_restarts,
                                                                                      int64_t initial_backoff_ms,
                                                                                      int64_t max_backoff_ms,
                                                                                      connectplugin_error **out_error);
/** @brief How many times the restart policy relaunched @p plugin (0 if NULL). Thread-safe. */
CONNECTPLUGIN_API int32_t connectplugin_plugin_client_restart_count(const connectplugin_plugin_client *plugin);

#ifdef __cplusplus
}
#endif

#endif /* CONNECTPLUGIN_H */
