/*
 * test_statuses.c — the statuses that include/connectplugin.h documents with @retval, and the Connect
 * code each error object carries, for the states a caller can reach: a server after stop, after
 * start; a call after its answer; a streaming call after finish; a client stream after close_send;
 * options the library does not support. One process; alarm() bounds it.
 * Last line: "c-tests: N passed, M failed".
 */
#define _GNU_SOURCE

#include <connectplugin.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_passed, g_failed;

static void report(bool ok, int line, const char *what) {
    if (ok) {
        g_passed++;
        printf("ok   - %s\n", what);
    } else {
        g_failed++;
        printf("FAIL - %s (line %d)\n", what, line);
    }
}

/*
 * Checks one fallible call: the status, and for a failure the error object (its status and Connect
 * code); on success *out_error must be NULL. Frees the error.
 */
static bool expect_impl(connectplugin_status got, connectplugin_error *err, connectplugin_status want,
                        connectplugin_code want_code, const char *what, int line) {
    if (err == (connectplugin_error *)1) {
        printf("    %s: status %d, and *out_error was not set\n", what, got);
        report(false, line, what);
        return false;
    }
    bool ok = got == want;
    if (want == CONNECTPLUGIN_OK || want == CONNECTPLUGIN_EOF) {
        ok = ok && err == NULL;
    } else {
        ok = ok && err != NULL && connectplugin_error_status(err) == want && connectplugin_error_code(err) == want_code;
    }
    if (!ok) {
        printf("    %s: status %d (%s), code %s, message \"%s\"; want status %d (%s), code %s\n", what, got,
               connectplugin_status_string(got), err ? connectplugin_code_name(connectplugin_error_code(err)) : "-",
               connectplugin_error_message(err), want, connectplugin_status_string(want),
               connectplugin_code_name(want_code));
    }
    connectplugin_error_free(err);
    report(ok, line, what);
    return ok;
}
/* EXPECT(STATUS, CODE, "what", connectplugin_fn(args..., &err)) with a local `err`. */
#define EXPECT(want, code, what, expr)                                                                            \
    do {                                                                                                         \
        connectplugin_error *err = (connectplugin_error *)1;                                                     \
        connectplugin_status st_ = (expr);                                                                       \
        expect_impl(st_, err, (want), (code), (what), __LINE__);                                                 \
    } while (0)
#define EXPECT_OK(what, expr) EXPECT(CONNECTPLUGIN_OK, CONNECTPLUGIN_CODE_OK, (what), (expr))
#define EXPECT_INVALID(what, expr) EXPECT(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, (what), (expr))
#define CHECK(cond, what) report((cond), __LINE__, (what))


/* ---- Handlers: they record what the calls after their answer returned; main checks it. ---- */

typedef struct {
    atomic_int ran;
    connectplugin_status respond_again, header_after, fail_after, on_done_after, detail_after;
    atomic_int finalized;
} unary_record;
static unary_record g_unary;

static void count_free(void *user_data) { atomic_fetch_add((atomic_int *)user_data, 1); }
static void never_done(void *user_data) { (void)user_data; }

static connectplugin_status take(connectplugin_status st, connectplugin_error *err, connectplugin_code want_code) {
    /* A failure must carry the code of its status, a success no error; record a mismatch as status 99. */
    bool failed = st != CONNECTPLUGIN_OK && st != CONNECTPLUGIN_EOF;
    if (failed ? err == NULL || connectplugin_error_code(err) != want_code : err != NULL) st = 99;
    connectplugin_error_free(err);
    return st;
}
#define PRECONDITION CONNECTPLUGIN_CODE_FAILED_PRECONDITION
/* TAKE(CODE, connectplugin_fn(args..., &err)): the status, 99 if the error object does not match. */
#define TAKE(code, expr) (err = (connectplugin_error *)1, take_after((expr), &err, (code)))
static connectplugin_status take_after(connectplugin_status st, connectplugin_error **errp, connectplugin_code code) {
    if (*errp == (connectplugin_error *)1) return 98; /* *out_error was not set */
    return take(st, *errp, code);
}

static void handle_answer(connectplugin_call *call, void *user_data) {
    (void)user_data;
    connectplugin_error *err = NULL;
    const uint8_t v[] = {'v'};
    connectplugin_call_respond(call, v, 1, NULL);
    g_unary.respond_again = TAKE(PRECONDITION, connectplugin_call_respond(call, v, 1, &err));
    g_unary.header_after = TAKE(PRECONDITION, connectplugin_call_add_response_header(call, "k", v, 1, &err));
    g_unary.detail_after = TAKE(PRECONDITION, connectplugin_call_add_error_detail(call, "t.D", v, 1, &err));
    g_unary.fail_after = TAKE(PRECONDITION, connectplugin_call_fail(call, CONNECTPLUGIN_CODE_INTERNAL, "late", &err));
    g_unary.on_done_after =
        TAKE(CONNECTPLUGIN_CODE_CANCELED, connectplugin_call_on_done(call, never_done, &g_unary.finalized, count_free, &err));
    atomic_store(&g_unary.ran, 1);
}

typedef struct {
    atomic_int ran;
    connectplugin_status recv1, recv2, headers1, headers2, header_after_headers, send1, finish, send_after, headers_after,
        trailer_after, on_done_after, finish_again;
    size_t recv1_len;
    atomic_int finalized;
} stream_record;
static stream_record g_stream;

static void handle_stream(connectplugin_stream *stream, void *user_data) {
    (void)user_data;
    connectplugin_error *err = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    const uint8_t v[] = {'v'};
    g_stream.recv1 = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_receive(stream, &data, &len, &err));
    g_stream.recv1_len = len;
    g_stream.recv2 = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_receive(stream, &data, &len, &err));
    g_stream.headers1 = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_send_headers(stream, &err));
    g_stream.headers2 = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_send_headers(stream, &err));
    g_stream.header_after_headers = TAKE(PRECONDITION, connectplugin_stream_add_response_header(stream, "k", v, 1, &err));
    g_stream.send1 = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_send(stream, v, 1, &err));
    g_stream.finish = TAKE(CONNECTPLUGIN_CODE_OK, connectplugin_stream_finish(stream, &err));
    g_stream.send_after = TAKE(PRECONDITION, connectplugin_stream_send(stream, v, 1, &err));
    g_stream.headers_after = TAKE(PRECONDITION, connectplugin_stream_send_headers(stream, &err));
    g_stream.trailer_after = TAKE(PRECONDITION, connectplugin_stream_add_response_trailer(stream, "k", v, 1, &err));
    g_stream.on_done_after = TAKE(CONNECTPLUGIN_CODE_CANCELED,
                                  connectplugin_stream_on_done(stream, never_done, &g_stream.finalized, count_free, &err));
    g_stream.finish_again = TAKE(PRECONDITION, connectplugin_stream_finish(stream, &err));
    atomic_store(&g_stream.ran, 1);
}

/* Waits up to 60 s for a handler's flag: the client may see the answer before the handler returned. */
static bool wait_ran(atomic_int *flag) {
    for (int i = 0; i < 6000 && atomic_load(flag) == 0; i++) usleep(10000);
    return atomic_load(flag) == 1;
}

static void handle_ok(connectplugin_call *call, void *user_data) {
    (void)user_data;
    connectplugin_call_respond(call, NULL, 0, NULL);
}

/* ---- Tests ---- */

static void test_null_and_lookups(void) {
    const char *type = NULL;
    const uint8_t *value = NULL;
    size_t len = 0;
    CHECK(connectplugin_error_status(NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "error_status(NULL) is INVALID_ARGUMENT");
    CHECK(connectplugin_error_detail(NULL, 0, &type, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT,
          "error_detail(NULL) is INVALID_ARGUMENT");
    CHECK(connectplugin_metadata_get(NULL, 0, &type, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT,
          "metadata_get(NULL) is INVALID_ARGUMENT");
    connectplugin_metadata *m = connectplugin_metadata_new();
    EXPECT_OK("metadata_add", connectplugin_metadata_add(m, "Key", (const uint8_t *)"v", 1, &err));
    CHECK(connectplugin_metadata_get(m, 0, NULL, NULL, NULL) == CONNECTPLUGIN_OK, "metadata_get takes NULL out pointers");
    CHECK(connectplugin_metadata_get(m, 1, &type, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT,
          "metadata_get out of range is INVALID_ARGUMENT");
    EXPECT_INVALID("metadata_add value NULL, len 1",
           connectplugin_metadata_add(m, "k", NULL, 1, &err));
    EXPECT_INVALID("metadata_add key with a space",
           connectplugin_metadata_add(m, "a b", (const uint8_t *)"v", 1, &err));
    connectplugin_metadata_free(m);
}

static void test_tls_options(void) {
    connectplugin_tls_options *t = connectplugin_tls_options_new();
    EXPECT_INVALID("tls set_cert_files empty paths",
           connectplugin_tls_options_set_cert_files(t, "", "", &err));
    EXPECT_INVALID("tls set_server_name NULL",
           connectplugin_tls_options_set_server_name(t, NULL, &err));
    EXPECT_INVALID("tls set_require_client_cert NULL",
           connectplugin_tls_options_set_require_client_cert(NULL, 1, &err));
    connectplugin_server *s = NULL;
    EXPECT_OK("server_new", connectplugin_server_new(NULL, &s, &err));
    EXPECT_INVALID("listen_tls without a certificate",
           connectplugin_server_listen_tls(s, "127.0.0.1:0", t, &err));
    EXPECT_OK("tls set_cert_files (not read yet)",
           connectplugin_tls_options_set_cert_files(t, "/nonexistent/cert.pem", "/nonexistent/key.pem", &err));
    EXPECT_INVALID("listen_tls with missing files",
           connectplugin_server_listen_tls(s, "127.0.0.1:0", t, &err));
    connectplugin_client_options *o = connectplugin_client_options_new();
    EXPECT_OK("client set_tls", connectplugin_client_options_set_tls(o, t, &err));
    connectplugin_client *c = (connectplugin_client *)1;
    EXPECT_INVALID("client_new https with missing files",
           connectplugin_client_new("https://127.0.0.1:1", o, &c, &err));
    CHECK(c == NULL, "client_new failure sets *out_client to NULL");
    connectplugin_client_options_free(o);
    connectplugin_server_free(s);
    connectplugin_tls_options_free(t);
}

static void test_server_states(void) {
    connectplugin_server *s = NULL;
    EXPECT_INVALID("server_new out_server NULL",
           connectplugin_server_new(NULL, NULL, &err));
    EXPECT_INVALID("server_stop NULL",
           connectplugin_server_stop(NULL, 0, &err));

    /* Stopped without start: CLOSED. */
    EXPECT_OK("server_new", connectplugin_server_new(NULL, &s, &err));
    EXPECT_OK("server_stop never started", connectplugin_server_stop(s, 0, &err));
    EXPECT_OK("server_stop again", connectplugin_server_stop(s, -5, &err));
    EXPECT(CONNECTPLUGIN_ERR_CLOSED, CONNECTPLUGIN_CODE_CANCELED, "register_unary after stop",
           connectplugin_server_register_unary(s, "/t.S/M", handle_ok, NULL, NULL, &err));
    EXPECT(CONNECTPLUGIN_ERR_CLOSED, CONNECTPLUGIN_CODE_CANCELED, "listen_tcp after stop",
           connectplugin_server_listen_tcp(s, "127.0.0.1:0", &err));
    EXPECT(CONNECTPLUGIN_ERR_CLOSED, CONNECTPLUGIN_CODE_CANCELED, "start after stop",
           connectplugin_server_start(s, &err));
    connectplugin_server_free(s);

    /* Started: STATE for configuration. */
    EXPECT_OK("server_new", connectplugin_server_new(NULL, &s, &err));
    EXPECT_INVALID("listen_tcp malformed",
           connectplugin_server_listen_tcp(s, "127.0.0.1", &err));
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    EXPECT_INVALID("listen_unix path too long",
           connectplugin_server_listen_unix(s, longpath, &err));
    EXPECT_OK("listen_tcp", connectplugin_server_listen_tcp(s, "127.0.0.1:0", &err));
    const char *addr = connectplugin_server_address(s, 0);
    CHECK(addr != NULL, "server_address after listen");
    char used[128];
    snprintf(used, sizeof used, "%s", addr ? addr : "127.0.0.1:1");
    EXPECT(CONNECTPLUGIN_ERR_IO, CONNECTPLUGIN_CODE_UNAVAILABLE, "listen_tcp on an address in use",
           connectplugin_server_listen_tcp(s, used, &err));
    EXPECT_OK("register_unary", connectplugin_server_register_unary(s, "/t.S/M", handle_ok, NULL, NULL, &err));
    EXPECT_INVALID("register_unary duplicate",
           connectplugin_server_register_unary(s, "/t.S/M", handle_ok, NULL, NULL, &err));
    EXPECT_INVALID("register_stream with kind UNARY",
           connectplugin_server_register_stream(s, "/t.S/X", CONNECTPLUGIN_UNARY, handle_stream, NULL, NULL, &err));
    EXPECT_INVALID("set_no_side_effects unregistered",
           connectplugin_server_set_no_side_effects(s, "/t.S/Nope", &err));
    EXPECT_OK("start", connectplugin_server_start(s, &err));
    EXPECT_OK("start again", connectplugin_server_start(s, &err));
    EXPECT(CONNECTPLUGIN_ERR_STATE, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "register_unary after start",
           connectplugin_server_register_unary(s, "/t.S/N", handle_ok, NULL, NULL, &err));
    EXPECT(CONNECTPLUGIN_ERR_STATE, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "set_no_side_effects after start",
           connectplugin_server_set_no_side_effects(s, "/t.S/M", &err));
    EXPECT_OK("stop", connectplugin_server_stop(s, 0, &err));
    EXPECT(CONNECTPLUGIN_ERR_STATE, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "register_stream after start and stop",
           connectplugin_server_register_stream(s, "/t.S/Y", CONNECTPLUGIN_BIDI_STREAM, handle_stream, NULL, NULL, &err));
    connectplugin_server_free(s);
}

static void test_client_options(void) {
    connectplugin_client_options *o = connectplugin_client_options_new();
    EXPECT(CONNECTPLUGIN_ERR_UNSUPPORTED, CONNECTPLUGIN_CODE_UNIMPLEMENTED, "set_http_version 3",
           connectplugin_client_options_set_http_version(o, 3, &err));
    EXPECT(CONNECTPLUGIN_ERR_UNSUPPORTED, CONNECTPLUGIN_CODE_UNIMPLEMENTED, "set_codec xml",
           connectplugin_client_options_set_codec(o, "xml", &err));
    EXPECT_INVALID("set_compression NULL",
           connectplugin_client_options_set_compression(o, NULL, &err));
    EXPECT_INVALID("set_max_message_bytes 2^62",
           connectplugin_client_options_set_max_message_bytes(o, (uint64_t)1 << 62, &err));
    EXPECT_OK("set_max_message_bytes 2^62-1",
           connectplugin_client_options_set_max_message_bytes(o, ((uint64_t)1 << 62) - 1, &err));
    EXPECT_OK("set_protocol grpc", connectplugin_client_options_set_protocol(o, "grpc", &err));
    EXPECT_OK("set_http_version 1.1", connectplugin_client_options_set_http_version(o, CONNECTPLUGIN_HTTP_1_1, &err));
    connectplugin_client *c = NULL;
    EXPECT(CONNECTPLUGIN_ERR_UNSUPPORTED, CONNECTPLUGIN_CODE_UNIMPLEMENTED, "client_new grpc over HTTP/1.1",
           connectplugin_client_new("http://127.0.0.1:1", o, &c, &err));
    EXPECT_INVALID("client_new ftp URL",
           connectplugin_client_new("ftp://127.0.0.1:1", NULL, &c, &err));
    connectplugin_client_options_free(o);
    connectplugin_call_options *co = connectplugin_call_options_new();
    EXPECT_INVALID("call_options timeout -1",
           connectplugin_call_options_set_timeout_ms(co, -1, &err));
    connectplugin_call_options_free(co);
}

static void test_calls(void) {
    connectplugin_server *s = NULL;
    EXPECT_OK("server_new", connectplugin_server_new(NULL, &s, &err));
    EXPECT_OK("listen_tcp", connectplugin_server_listen_tcp(s, "127.0.0.1:0", &err));
    EXPECT_OK("register_unary", connectplugin_server_register_unary(s, "/t.S/Answer", handle_answer, NULL, NULL, &err));
    EXPECT_OK("register_stream",
           connectplugin_server_register_stream(s, "/t.S/Finish", CONNECTPLUGIN_SERVER_STREAM, handle_stream, NULL, NULL,
                                                &err));
    EXPECT_OK("start", connectplugin_server_start(s, &err));
    char url[160];
    snprintf(url, sizeof url, "http://%s", connectplugin_server_address(s, 0));
    connectplugin_client *c = NULL;
    EXPECT_OK("client_new", connectplugin_client_new(url, NULL, &c, &err));

    connectplugin_response *r = (connectplugin_response *)1;
    EXPECT_INVALID("call_unary malformed procedure",
           connectplugin_client_call_unary(c, "t.S/Answer", NULL, 0, NULL, &r, &err));
    CHECK(r == NULL, "call_unary failure sets *out_response to NULL");
    EXPECT(CONNECTPLUGIN_ERR_RPC, CONNECTPLUGIN_CODE_UNIMPLEMENTED, "call_unary unknown method is RPC/UNIMPLEMENTED",
           connectplugin_client_call_unary(c, "/t.S/Nope", NULL, 0, NULL, &r, &err));
    EXPECT_OK("call_unary", connectplugin_client_call_unary(c, "/t.S/Answer", NULL, 0, NULL, &r, &err));
    connectplugin_response_free(r);
    CHECK(wait_ran(&g_unary.ran), "unary handler ran");
    CHECK(g_unary.respond_again == CONNECTPLUGIN_ERR_STATE, "call_respond after respond is STATE (FAILED_PRECONDITION)");
    CHECK(g_unary.header_after == CONNECTPLUGIN_ERR_STATE, "call_add_response_header after respond is STATE");
    CHECK(g_unary.detail_after == CONNECTPLUGIN_ERR_STATE, "call_add_error_detail after respond is STATE");
    CHECK(g_unary.fail_after == CONNECTPLUGIN_ERR_STATE, "call_fail after respond is STATE");
    CHECK(g_unary.on_done_after == CONNECTPLUGIN_ERR_CLOSED, "call_on_done after respond is CLOSED (CANCELED)");
    CHECK(atomic_load(&g_unary.finalized) == 1, "call_on_done failure called the finalizer once");

    connectplugin_client_stream *cs = (connectplugin_client_stream *)1;
    EXPECT_INVALID("open_stream unknown kind",
           connectplugin_client_open_stream(c, "/t.S/Finish", 9, NULL, &cs, &err));
    CHECK(cs == NULL, "open_stream failure sets *out_stream to NULL");
    EXPECT_OK("open_stream",
              connectplugin_client_open_stream(c, "/t.S/Finish", CONNECTPLUGIN_SERVER_STREAM, NULL, &cs, &err));
    const uint8_t msg[] = {1, 2, 3};
    EXPECT_OK("client_stream_send", connectplugin_client_stream_send(cs, msg, sizeof msg, &err));
    EXPECT(CONNECTPLUGIN_ERR_STATE, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "client_stream_send a second message",
           connectplugin_client_stream_send(cs, msg, sizeof msg, &err));
    EXPECT_OK("close_send", connectplugin_client_stream_close_send(cs, &err));
    EXPECT_OK("close_send again", connectplugin_client_stream_close_send(cs, &err));
    EXPECT(CONNECTPLUGIN_ERR_STATE, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "client_stream_send after close_send",
           connectplugin_client_stream_send(cs, msg, sizeof msg, &err));
    const uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_INVALID("client_stream_receive out_len NULL",
           connectplugin_client_stream_receive(cs, &data, NULL, &err));
    EXPECT_OK("client_stream_receive", connectplugin_client_stream_receive(cs, &data, &len, &err));
    CHECK(len == 1, "one response message of one byte");
    EXPECT(CONNECTPLUGIN_EOF, CONNECTPLUGIN_CODE_OK, "client_stream_receive EOF",
           connectplugin_client_stream_receive(cs, &data, &len, &err));
    const connectplugin_client_stream *ccs = cs;
    CHECK(connectplugin_client_stream_trailers(ccs) != NULL, "client_stream_trailers takes a const stream");
    connectplugin_client_stream_free(cs);

    CHECK(wait_ran(&g_stream.ran), "stream handler ran");
    CHECK(g_stream.recv1 == CONNECTPLUGIN_OK && g_stream.recv1_len == sizeof msg, "stream_receive: the message");
    CHECK(g_stream.recv2 == CONNECTPLUGIN_EOF, "stream_receive: then EOF");
    CHECK(g_stream.headers1 == CONNECTPLUGIN_OK && g_stream.headers2 == CONNECTPLUGIN_OK, "send_headers twice is OK");
    CHECK(g_stream.header_after_headers == CONNECTPLUGIN_ERR_STATE, "add_response_header after the headers is STATE");
    CHECK(g_stream.send1 == CONNECTPLUGIN_OK && g_stream.finish == CONNECTPLUGIN_OK, "send and finish");
    CHECK(g_stream.send_after == CONNECTPLUGIN_ERR_STATE, "stream_send after finish is STATE");
    CHECK(g_stream.headers_after == CONNECTPLUGIN_ERR_STATE, "stream_send_headers after finish is STATE");
    CHECK(g_stream.trailer_after == CONNECTPLUGIN_ERR_STATE, "stream_add_response_trailer after finish is STATE");
    CHECK(g_stream.on_done_after == CONNECTPLUGIN_ERR_CLOSED, "stream_on_done after finish is CLOSED (CANCELED)");
    CHECK(atomic_load(&g_stream.finalized) == 1, "stream_on_done failure called the finalizer once");
    CHECK(g_stream.finish_again == CONNECTPLUGIN_ERR_STATE, "stream_finish after finish is STATE");

    connectplugin_client_free(c);
    connectplugin_server_free(s);
}

/* The plugin lifecycle functions: NULL arguments, bad values, finalizers on errors, the
   checksum refusing a binary (this test program's own, whose digest is not all zeros). */
static void never_exit(int32_t kind, int32_t value, void *user_data) {
    (void)kind;
    (void)value;
    (void)user_data;
}
static void test_plugin_lifecycle(void) {
    atomic_int finalized = 0;
    int32_t v = 7;
    connectplugin_plugin_client_config *c = NULL;
    connectplugin_plugin_client *p = NULL;
    EXPECT_INVALID("plugin_client_on_exit NULL plugin",
                   connectplugin_plugin_client_on_exit(NULL, never_exit, &finalized, count_free, &err));
    CHECK(atomic_load(&finalized) == 1, "on_exit's finalizer runs on an error");
    CHECK(connectplugin_plugin_client_wait_exit(NULL, 0, &v) == 0 && v == 0, "wait_exit(NULL) is 0");
    CHECK(connectplugin_plugin_client_restart_count(NULL) == 0, "restart_count(NULL) is 0");
    connectplugin_plugin_cleanup_all(); /* nothing started: a no-op */
    EXPECT_INVALID("config_set_checksum_sha256 NULL config", connectplugin_plugin_client_config_set_checksum_sha256(NULL, NULL, &err));
    EXPECT_INVALID("config_set_restart NULL config", connectplugin_plugin_client_config_set_restart(NULL, 1, 0, 0, &err));
    EXPECT_OK("plugin_client_config_new", connectplugin_plugin_client_config_new("K", "V", "/proc/self/exe", &c, &err));
    EXPECT_OK("config_add_plugin", connectplugin_plugin_client_config_add_plugin(c, 1, "p", &err));
    EXPECT_INVALID("config_set_checksum_sha256 not hex", connectplugin_plugin_client_config_set_checksum_sha256(c, "xyz", &err));
    EXPECT_INVALID("config_set_restart negative", connectplugin_plugin_client_config_set_restart(c, -1, 0, 0, &err));
    EXPECT_OK("config_set_restart", connectplugin_plugin_client_config_set_restart(c, 3, 10, 100, &err));
    EXPECT_OK("config_set_checksum_sha256",
              connectplugin_plugin_client_config_set_checksum_sha256(
                  c, "0000000000000000000000000000000000000000000000000000000000000000", &err));
    EXPECT(CONNECTPLUGIN_ERR_RPC, CONNECTPLUGIN_CODE_PERMISSION_DENIED, "start refuses a binary with another SHA-256",
           connectplugin_plugin_client_start(c, &p, &err));
    CHECK(p == NULL, "no plugin after a refused start");
    connectplugin_plugin_client_config_free(c);
}

/* connectplugin_plugin_client_info against an in-process plugin (PluginIdentity/GetPluginInfo), and its
   NULL arguments. */
static void test_plugin_info(void) {
    const char *key = "x", *value = "x";
    EXPECT_INVALID("plugin_client_info NULL plugin", connectplugin_plugin_client_info(NULL, 0, NULL, &err));
    CHECK(strcmp(connectplugin_plugin_info_id(NULL), "") == 0 && strcmp(connectplugin_plugin_info_version(NULL), "") == 0,
          "plugin_info_id/_version(NULL) are \"\"");
    CHECK(connectplugin_plugin_info_metadata_count(NULL) == 0, "plugin_info_metadata_count(NULL) is 0");
    CHECK(connectplugin_plugin_info_metadata_get(NULL, 0, &key, &value) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT && key == NULL &&
              value == NULL,
          "plugin_info_metadata_get(NULL) is invalid_argument and clears the out pointers");
    connectplugin_plugin_info_free(NULL);

    connectplugin_server *s = NULL;
    connectplugin_plugin_config *pc = NULL;
    connectplugin_plugin_client_config *cc = NULL;
    connectplugin_plugin_client *p = NULL;
    connectplugin_plugin_info *info = NULL;
    EXPECT_OK("server_new", connectplugin_server_new(NULL, &s, &err));
    EXPECT_OK("plugin_config_new", connectplugin_plugin_config_new("K", "V", &pc, &err));
    EXPECT_OK("plugin_config_add_plugin", connectplugin_plugin_config_add_plugin(pc, 3, "greeter", "1.2.3", "/t.Greeter/", &err));
    EXPECT_OK("plugin_serve_in_process", connectplugin_plugin_serve_in_process(s, pc, "test-statuses-info", &err));
    EXPECT_OK("plugin_client_config_new_url",
              connectplugin_plugin_client_config_new_url("K", "V", "inproc://test-statuses-info", &cc, &err));
    EXPECT_OK("client config_add_plugin", connectplugin_plugin_client_config_add_plugin(cc, 3, "greeter", &err));
    EXPECT_OK("plugin_client_start", connectplugin_plugin_client_start(cc, &p, &err));
    EXPECT_INVALID("plugin_client_info NULL out_info", connectplugin_plugin_client_info(p, 0, NULL, &err));
    EXPECT_OK("plugin_client_info", connectplugin_plugin_client_info(p, 0, &info, &err));
    CHECK(info != NULL && strcmp(connectplugin_plugin_info_id(info), "greeter") == 0 &&
              strcmp(connectplugin_plugin_info_version(info), "1.2.3") == 0,
          "plugin_info has the plugin's name and version");
    bool app_version = false, runtime = false;
    for (size_t i = 0; i < connectplugin_plugin_info_metadata_count(info); i++) {
        if (connectplugin_plugin_info_metadata_get(info, i, &key, &value) != CONNECTPLUGIN_OK) break;
        app_version = app_version || (strcmp(key, "app_protocol_version") == 0 && strcmp(value, "3") == 0);
        runtime = runtime || (strcmp(key, "runtime") == 0 && strncmp(value, "connectplugin ", 14) == 0);
    }
    CHECK(app_version && runtime, "plugin_info metadata has app_protocol_version=3 and runtime=connectplugin VERSION");
    CHECK(connectplugin_plugin_info_metadata_get(info, connectplugin_plugin_info_metadata_count(info), &key, NULL) ==
              CONNECTPLUGIN_ERR_INVALID_ARGUMENT,
          "plugin_info_metadata_get past the end is invalid_argument");
    connectplugin_plugin_info_free(info);
    connectplugin_plugin_client_free(p);
    connectplugin_plugin_client_config_free(cc);
    connectplugin_plugin_config_free(pc);
    connectplugin_server_free(s);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(300); /* A hang fails the run (SIGALRM) instead of blocking it. */
    test_null_and_lookups();
    test_tls_options();
    test_server_states();
    test_client_options();
    test_calls();
    test_plugin_lifecycle();
    test_plugin_info();
    printf("c-tests: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 && g_passed > 0 ? 0 : 1;
}
