/*
 * test_interceptor.c — interceptors through the C ABI (connectplugin_interceptor_*), from C.
 *
 * Every test runs in its own forked process (the parent never calls the library), so a crash or a
 * hang fails that test only. Environment:
 *   CTESTS_FILTER=substr   run only the tests whose name contains substr
 *   CTESTS_NO_FORK=1       run everything in one process (for gdb/valgrind)
 *   CTESTS_TIMEOUT=sec     per-test time limit (default 60)
 * The last line of output is "c-tests: N passed, M failed"; the exit status is 1 if any test failed.
 */
#define _GNU_SOURCE

#include <connectplugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"

/* ---------------------------------------------------------------------------------------------- */
/* An event log the hooks write to, and the test server                                           */
/* ---------------------------------------------------------------------------------------------- */

#define SVC "/test.v1.Interceptors/"

static pthread_mutex_t g_log_mutex = PTHREAD_MUTEX_INITIALIZER;
static char g_log[4096];
static atomic_int g_handler_calls;
static atomic_int g_finalized;

__attribute__((format(printf, 1, 2))) static void log_event(const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_log_mutex);
    if (g_log[0]) strncat(g_log, " ", sizeof g_log - strlen(g_log) - 1);
    strncat(g_log, line, sizeof g_log - strlen(g_log) - 1);
    pthread_mutex_unlock(&g_log_mutex);
}
static void log_take(char *out, size_t n) {
    pthread_mutex_lock(&g_log_mutex);
    snprintf(out, n, "%s", g_log);
    g_log[0] = 0;
    pthread_mutex_unlock(&g_log_mutex);
}
#define CHECK_LOG(want)                                                                                          \
    do {                                                                                                         \
        char got_[4096];                                                                                         \
        log_take(got_, sizeof got_);                                                                             \
        CHECK_STR(got_, want);                                                                                   \
    } while (0)

static void finalize_count(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_finalized, 1);
}

static void handle_echo(connectplugin_call *call, void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_handler_calls, 1);
    size_t len = 0;
    const uint8_t *req = connectplugin_call_request(call, &len);
    connectplugin_call_respond(call, req, len, NULL);
}

static void handle_missing(connectplugin_call *call, void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_handler_calls, 1);
    connectplugin_call_fail(call, CONNECTPLUGIN_CODE_NOT_FOUND, "no such key", NULL);
}

/* Count: server streaming, sends request[0] one-byte messages. */
static void handle_count(connectplugin_stream *stream, void *user_data) {
    (void)user_data;
    atomic_fetch_add(&g_handler_calls, 1);
    const uint8_t *data = NULL;
    size_t len = 0;
    if (connectplugin_stream_receive(stream, &data, &len, NULL) != CONNECTPLUGIN_OK || len == 0) return;
    int n = data[0];
    for (int i = 0; i < n; i++) {
        uint8_t b = (uint8_t)i;
        if (connectplugin_stream_send(stream, &b, 1, NULL) != CONNECTPLUGIN_OK) return;
    }
}

/* Server with Echo, Missing, Count; `setup` adds interceptors before start. Returns the base URL. */
static connectplugin_server *start_server(void (*setup)(connectplugin_server *), char *url, size_t url_len) {
    connectplugin_server *server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) return NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Echo", handle_echo, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Missing", handle_missing, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_stream, server, SVC "Count", CONNECTPLUGIN_SERVER_STREAM,
              handle_count, NULL, NULL);
    if (setup) setup(server);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
    snprintf(url, url_len, "http://%s", connectplugin_server_address(server, 0));
    return server;
}

static connectplugin_client *make_client(const char *url, const char *protocol, connectplugin_interceptor *a,
                                         connectplugin_interceptor *b) {
    connectplugin_client_options *o = connectplugin_client_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, protocol);
    if (a) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_add_interceptor, o, a);
    if (b) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_add_interceptor, o, b);
    connectplugin_client *c = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, url, o, &c);
    connectplugin_client_options_free(o);
    return c;
}

/* A unary call; returns its status and stores the RPC code (OK on success) and the response. */
static connectplugin_status unary(connectplugin_client *c, const char *procedure, const char *token,
                                  connectplugin_code *code, connectplugin_response **out) {
    connectplugin_call_options *co = connectplugin_call_options_new();
    if (token) connectplugin_call_options_add_header(co, "authorization", (const uint8_t *)token, strlen(token), NULL);
    connectplugin_response *resp = NULL;
    connectplugin_error *err = NULL;
    uint8_t req[1] = {3};
    connectplugin_status st = connectplugin_client_call_unary(c, procedure, req, 1, co, &resp, &err);
    *code = st == CONNECTPLUGIN_OK ? CONNECTPLUGIN_CODE_OK : connectplugin_error_code(err);
    connectplugin_error_free(err);
    connectplugin_call_options_free(co);
    if (out) *out = resp;
    else connectplugin_response_free(resp);
    return st;
}

/* A server-streaming Count call reading to the end; returns messages received (-1 on error) and the code. */
static int count_stream(connectplugin_client *c, const char *token, connectplugin_code *code,
                        connectplugin_client_stream **keep) {
    connectplugin_call_options *co = connectplugin_call_options_new();
    if (token) connectplugin_call_options_add_header(co, "authorization", (const uint8_t *)token, strlen(token), NULL);
    connectplugin_client_stream *s = NULL;
    connectplugin_error *err = NULL;
    *code = CONNECTPLUGIN_CODE_OK;
    connectplugin_status st = connectplugin_client_open_stream(c, SVC "Count", CONNECTPLUGIN_SERVER_STREAM, co, &s, &err);
    connectplugin_call_options_free(co);
    if (st != CONNECTPLUGIN_OK) {
        *code = connectplugin_error_code(err);
        connectplugin_error_free(err);
        return -1;
    }
    uint8_t n = 3;
    connectplugin_client_stream_send(s, &n, 1, NULL);
    connectplugin_client_stream_close_send(s, NULL);
    int got = 0;
    for (;;) {
        const uint8_t *data = NULL;
        size_t len = 0;
        st = connectplugin_client_stream_receive(s, &data, &len, &err);
        if (st == CONNECTPLUGIN_OK) {
            got++;
            continue;
        }
        if (st != CONNECTPLUGIN_EOF) {
            *code = connectplugin_error_code(err);
            connectplugin_error_free(err);
            got = -1;
        }
        break;
    }
    if (keep) *keep = s;
    else connectplugin_client_stream_free(s);
    return got;
}

static const char *lookup(const connectplugin_metadata *md, const char *key, char *buf, size_t n) {
    size_t len = 0;
    const uint8_t *v = connectplugin_metadata_lookup(md, key, &len);
    if (!v) return NULL;
    snprintf(buf, n, "%.*s", (int)len, (const char *)v);
    return buf;
}

/* ---------------------------------------------------------------------------------------------- */
/* Hooks                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

/* Rejects calls without "authorization: Bearer secret". */
static int32_t auth_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)user_data;
    char buf[64];
    const char *tok = lookup(connectplugin_interceptor_call_request_headers(call), "authorization", buf, sizeof buf);
    if (!tok || strcmp(tok, "Bearer secret") != 0) {
        connectplugin_interceptor_call_reject(call, CONNECTPLUGIN_CODE_UNAUTHENTICATED, "missing or wrong token", NULL);
    }
    return 0;
}

/* A client interceptor adding the token. */
static int32_t token_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)user_data;
    const char *v = "Bearer secret";
    return connectplugin_interceptor_call_add_request_header(call, "authorization", (const uint8_t *)v, strlen(v), NULL) ==
                   CONNECTPLUGIN_OK
               ? 0
               : 1;
}

/* Logs "start NAME" and "end NAME CODE"; user_data is the name. */
static int32_t named_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)call;
    log_event("start %s", (const char *)user_data);
    return 0;
}
static void named_end(connectplugin_interceptor_call *call, connectplugin_code code, const char *message, void *user_data) {
    (void)call;
    (void)message;
    log_event("end %s %ld", (const char *)user_data, (long)code);
}

static int32_t headers_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)user_data;
    const char *proto = connectplugin_interceptor_call_protocol(call);
    connectplugin_interceptor_call_add_response_header(call, "x-icpt-header", (const uint8_t *)proto, strlen(proto), NULL);
    connectplugin_interceptor_call_add_response_trailer(call, "x-icpt-start", (const uint8_t *)"s", 1, NULL);
    return 0;
}
static void headers_end(connectplugin_interceptor_call *call, connectplugin_code code, const char *message, void *user_data) {
    (void)message;
    (void)user_data;
    const char *name = connectplugin_code_name(code);
    connectplugin_interceptor_call_add_response_trailer(call, "x-icpt-end", (const uint8_t *)name, strlen(name), NULL);
    /* Headers are out of reach in end; rejecting is too. */
    connectplugin_error *err = NULL;
    if (connectplugin_interceptor_call_add_response_header(call, "x-late", (const uint8_t *)"a", 1, &err) != CONNECTPLUGIN_ERR_STATE)
        log_event("late-header-accepted");
    connectplugin_error_free(err);
    err = NULL;
    if (connectplugin_interceptor_call_reject(call, CONNECTPLUGIN_CODE_ABORTED, "late", &err) != CONNECTPLUGIN_ERR_STATE)
        log_event("late-reject-accepted");
    connectplugin_error_free(err);
}

/* Records what start sees; keeps a per-call state pointer for end. */
static int g_state_marker;
static int32_t info_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)user_data;
    char line[256];
    snprintf(line, sizeof line, "%s kind=%d %s %s server=%d deadline=%d peer=%s",
             connectplugin_interceptor_call_procedure(call), connectplugin_interceptor_call_kind(call),
             connectplugin_interceptor_call_protocol(call), connectplugin_interceptor_call_codec(call),
             connectplugin_interceptor_call_is_server(call), connectplugin_interceptor_call_timeout_remaining_ms(call) > 0,
             connectplugin_interceptor_call_peer(call) ? "yes" : "no");
    log_event("%s", line);
    connectplugin_interceptor_call_set_state(call, &g_state_marker);
    return 0;
}
static void info_end(connectplugin_interceptor_call *call, connectplugin_code code, const char *message, void *user_data) {
    (void)user_data;
    char line[256];
    snprintf(line, sizeof line, "end %s [%s] state=%d headers=%d", connectplugin_code_name(code), message,
             connectplugin_interceptor_call_state(call) == &g_state_marker,
             connectplugin_interceptor_call_response_headers(call) != NULL);
    log_event("%s", line);
}

static atomic_int g_messages;
static void count_messages(connectplugin_interceptor_call *call, int32_t direction, const uint8_t *data, size_t len,
                           void *user_data) {
    (void)call;
    (void)data;
    (void)user_data;
    if (len == 1) atomic_fetch_add(&g_messages, direction == CONNECTPLUGIN_DIRECTION_REQUEST ? 1 : 100);
}

static connectplugin_interceptor *new_icpt(connectplugin_interceptor_start_func s, connectplugin_interceptor_end_func e,
                                           void *ud) {
    connectplugin_interceptor *i = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_new, s, e, ud, finalize_count, &i);
    return i;
}

/* Takes the request headers, adds one, takes them again and reads the first list once more: the
   first stays valid (and unchanged) until the hook returns. Non-zero on a mismatch. */
static atomic_int g_snapshot_checks;
static int32_t snapshot_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)user_data;
    const connectplugin_metadata *h1 = connectplugin_interceptor_call_request_headers(call);
    size_t n1 = connectplugin_metadata_count(h1);
    const char *v = "1";
    if (connectplugin_interceptor_call_add_request_header(call, "x-snapshot", (const uint8_t *)v, 1, NULL) != CONNECTPLUGIN_OK) return 1;
    const connectplugin_metadata *h2 = connectplugin_interceptor_call_request_headers(call);
    char buf[16];
    if (connectplugin_metadata_count(h2) != n1 + 1 || !lookup(h2, "x-snapshot", buf, sizeof buf)) return 2;
    /* Allocate a little so a freed first list would likely be reused. */
    for (int i = 0; i < 8; i++) (void)connectplugin_interceptor_call_request_headers(call);
    if (connectplugin_metadata_count(h1) != n1 || lookup(h1, "x-snapshot", buf, sizeof buf)) return 3;
    atomic_fetch_add(&g_snapshot_checks, 1);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

static void setup_auth(connectplugin_server *s) {
    connectplugin_interceptor *i = new_icpt(auth_start, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, NULL, i);
    connectplugin_interceptor_free(i);
}

static void test_auth_rejects_unary_and_streams(void) {
    char url[128];
    connectplugin_server *server = start_server(setup_auth, url, sizeof url);
    const char *protos[] = {"connect", "grpc", "grpcweb"};
    for (size_t p = 0; p < 3; p++) {
        connectplugin_client *c = make_client(url, protos[p], NULL, NULL);
        connectplugin_code code = -1;
        int before = atomic_load(&g_handler_calls);
        CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(code == CONNECTPLUGIN_CODE_UNAUTHENTICATED, "%s unary: code %d", protos[p], code);
        CHECK(count_stream(c, NULL, &code, NULL) == -1);
        CHECK_MSG(code == CONNECTPLUGIN_CODE_UNAUTHENTICATED, "%s stream: code %d", protos[p], code);
        CHECK(atomic_load(&g_handler_calls) == before);
        CHECK(unary(c, SVC "Echo", "Bearer secret", &code, NULL) == CONNECTPLUGIN_OK);
        CHECK(count_stream(c, "Bearer secret", &code, NULL) == 3);
        CHECK(code == CONNECTPLUGIN_CODE_OK);
        connectplugin_client_free(c);
        /* A client interceptor supplies the token. */
        connectplugin_interceptor *tok = new_icpt(token_start, NULL, NULL);
        c = make_client(url, protos[p], tok, NULL);
        connectplugin_interceptor_free(tok);
        CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_OK);
        CHECK(count_stream(c, NULL, &code, NULL) == 3);
        connectplugin_client_free(c);
    }
    CHECK(atomic_load(&g_handler_calls) == 12);
    connectplugin_server_free(server);
}

static void setup_headers(connectplugin_server *s) {
    connectplugin_interceptor *i = new_icpt(headers_start, headers_end, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, NULL, i);
    connectplugin_interceptor_free(i);
}

static void test_response_header_and_trailers(void) {
    char url[128], buf[64];
    connectplugin_server *server = start_server(setup_headers, url, sizeof url);
    const char *protos[] = {"connect", "grpc", "grpcweb"};
    for (size_t p = 0; p < 3; p++) {
        connectplugin_client *c = make_client(url, protos[p], NULL, NULL);
        connectplugin_code code;
        connectplugin_response *r = NULL;
        CHECK(unary(c, SVC "Echo", NULL, &code, &r) == CONNECTPLUGIN_OK);
        if (r) {
            CHECK_STR(lookup(connectplugin_response_headers(r), "x-icpt-header", buf, sizeof buf), protos[p]);
            CHECK_STR(lookup(connectplugin_response_trailers(r), "x-icpt-start", buf, sizeof buf), "s");
            CHECK_STR(lookup(connectplugin_response_trailers(r), "x-icpt-end", buf, sizeof buf), "ok");
        }
        connectplugin_response_free(r);
        connectplugin_client_stream *s = NULL;
        CHECK(count_stream(c, NULL, &code, &s) == 3);
        if (s) {
            CHECK_STR(lookup(connectplugin_client_stream_headers(s), "x-icpt-header", buf, sizeof buf), protos[p]);
            CHECK_STR(lookup(connectplugin_client_stream_trailers(s), "x-icpt-end", buf, sizeof buf), "ok");
        }
        connectplugin_client_stream_free(s);
        connectplugin_client_free(c);
    }
    CHECK_LOG("");
    connectplugin_server_free(server);
}

static void setup_chain(connectplugin_server *s) {
    connectplugin_interceptor *a = new_icpt(named_start, named_end, "a");
    connectplugin_interceptor *p = new_icpt(named_start, named_end, "p");
    connectplugin_interceptor *b = new_icpt(named_start, named_end, "b");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, NULL, a);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, SVC "Missing", p);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, NULL, b);
    connectplugin_interceptor_free(a);
    connectplugin_interceptor_free(p);
    connectplugin_interceptor_free(b);
}

static void test_chain_order_and_per_procedure(void) {
    char url[128];
    connectplugin_server *server = start_server(setup_chain, url, sizeof url);
    connectplugin_interceptor *c1 = new_icpt(named_start, named_end, "c1");
    connectplugin_interceptor *c2 = new_icpt(named_start, named_end, "c2");
    const char *protos[] = {"connect", "grpc"};
    for (size_t p = 0; p < 2; p++) {
        connectplugin_client *c = make_client(url, protos[p], c1, c2);
        connectplugin_code code;
        CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_OK);
        CHECK_LOG("start c1 start c2 start a start b end b 0 end a 0 end c2 0 end c1 0");
        CHECK(unary(c, SVC "Missing", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
        CHECK(code == CONNECTPLUGIN_CODE_NOT_FOUND);
        CHECK_LOG("start c1 start c2 start a start b start p end p 5 end b 5 end a 5 end c2 5 end c1 5");
        CHECK(count_stream(c, NULL, &code, NULL) == 3);
        CHECK_LOG("start c1 start c2 start a start b end b 0 end a 0 end c2 0 end c1 0");
        connectplugin_client_free(c);
    }
    connectplugin_interceptor_free(c1);
    connectplugin_interceptor_free(c2);
    connectplugin_server_free(server);
}

static void setup_info(connectplugin_server *s) {
    connectplugin_interceptor *i = new_icpt(info_start, info_end, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_set_message_func, i, count_messages);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, NULL, i);
    /* Fixed once added. */
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_interceptor_set_message_func, i, NULL);
    connectplugin_interceptor_free(i);
}

static void test_end_sees_code_and_call_info(void) {
    char url[128];
    connectplugin_server *server = start_server(setup_info, url, sizeof url);
    connectplugin_client_options *o = connectplugin_client_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, "grpc");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_timeout_ms, o, 60000);
    connectplugin_client *c = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, url, o, &c);
    connectplugin_client_options_free(o);
    connectplugin_code code;
    CHECK(unary(c, SVC "Missing", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
    CHECK_LOG(SVC "Missing kind=0 grpc proto server=1 deadline=1 peer=no end not_found [no such key] state=1 headers=1");
    CHECK(count_stream(c, NULL, &code, NULL) == 3);
    CHECK_LOG(SVC "Count kind=2 grpc proto server=1 deadline=1 peer=no end ok [] state=1 headers=1");
    /* One-byte messages observed: Missing's request, Count's request and its three responses. */
    CHECK_MSG(atomic_load(&g_messages) == 2 + 300, "messages %d", atomic_load(&g_messages));
    connectplugin_client_free(c);
    connectplugin_server_free(server);
}

static void test_client_rejects_before_sending(void) {
    char url[128];
    connectplugin_server *server = start_server(NULL, url, sizeof url);
    connectplugin_interceptor *deny = new_icpt(auth_start, named_end, "deny");
    connectplugin_interceptor *info = new_icpt(info_start, info_end, NULL);
    connectplugin_client *c = make_client(url, "connect", info, deny);
    connectplugin_code code;
    CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
    CHECK(code == CONNECTPLUGIN_CODE_UNAUTHENTICATED);
    CHECK_LOG(SVC "Echo kind=0 connect proto server=0 deadline=0 peer=no end deny 16 end unauthenticated [missing or wrong token] state=1 headers=1");
    CHECK(count_stream(c, NULL, &code, NULL) == -1);
    CHECK(code == CONNECTPLUGIN_CODE_UNAUTHENTICATED);
    CHECK(atomic_load(&g_handler_calls) == 0);
    /* A start hook returning non-zero rejects with INTERNAL. */
    connectplugin_client_free(c);
    connectplugin_interceptor_free(deny);
    connectplugin_interceptor_free(info);
    CHECK_LOG(SVC "Count kind=2 connect proto server=0 deadline=0 peer=no end deny 16 end unauthenticated [missing or wrong token] state=1 headers=1");
    connectplugin_server_free(server);
}

static void test_request_headers_stay_valid_in_hook(void) {
    char url[128];
    connectplugin_server *server = start_server(NULL, url, sizeof url);
    connectplugin_interceptor *snap = new_icpt(snapshot_start, NULL, NULL);
    connectplugin_client *c = make_client(url, "connect", snap, NULL);
    connectplugin_code code;
    CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_OK);
    CHECK(code == CONNECTPLUGIN_CODE_OK);
    CHECK(atomic_load(&g_snapshot_checks) == 1);
    connectplugin_client_free(c);
    connectplugin_interceptor_free(snap);
    connectplugin_server_free(server);
}

static int32_t failing_start(connectplugin_interceptor_call *call, void *user_data) {
    (void)call;
    (void)user_data;
    return 7;
}

static void setup_failing(connectplugin_server *s) {
    connectplugin_interceptor *i = new_icpt(failing_start, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, s, SVC "Echo", i);
    connectplugin_interceptor_free(i);
}

static void test_failing_start_is_internal(void) {
    char url[128];
    connectplugin_server *server = start_server(setup_failing, url, sizeof url);
    connectplugin_client *c = make_client(url, "grpcweb", NULL, NULL);
    connectplugin_code code;
    CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
    CHECK(code == CONNECTPLUGIN_CODE_INTERNAL);
    /* Per-procedure: Missing is not intercepted. */
    CHECK(unary(c, SVC "Missing", NULL, &code, NULL) == CONNECTPLUGIN_ERR_RPC);
    CHECK(code == CONNECTPLUGIN_CODE_NOT_FOUND);
    CHECK(atomic_load(&g_handler_calls) == 1);
    connectplugin_client_free(c);
    connectplugin_server_free(server);
}

static void test_arguments_and_finalizers(void) {
    connectplugin_interceptor *i = NULL;
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_interceptor_new, NULL, NULL, NULL, finalize_count, &i);
    CHECK(i == NULL);
    CHECK(atomic_load(&g_finalized) == 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_interceptor_new, named_start, NULL, NULL, finalize_count, NULL);
    CHECK(atomic_load(&g_finalized) == 2);
    atomic_store(&g_finalized, 0);
    connectplugin_interceptor_free(NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_interceptor_set_message_func, NULL, count_messages);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_add_interceptor, NULL, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_add_interceptor, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_interceptor_call_reject, NULL, 16, "x");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_interceptor_call_add_request_header, NULL, "k", (const uint8_t *)"v", 1);
    CHECK(connectplugin_interceptor_call_procedure(NULL) == NULL);
    CHECK(connectplugin_interceptor_call_kind(NULL) == -1);
    CHECK(connectplugin_interceptor_call_is_server(NULL) == -1);
    CHECK(connectplugin_interceptor_call_timeout_remaining_ms(NULL) == -1);
    CHECK(connectplugin_interceptor_call_state(NULL) == NULL);

    /* One interceptor on a server and in client options: the finalizer runs once, after the last. */
    char url[128];
    connectplugin_server *server = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Echo", handle_echo, NULL, NULL);
    i = new_icpt(named_start, named_end, "x");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_add_interceptor, server, "not/a/procedure", i);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, server, NULL, i);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_add_interceptor, server, NULL, i);
    snprintf(url, sizeof url, "http://%s", connectplugin_server_address(server, 0));
    connectplugin_client *c = make_client(url, "connect", i, NULL);
    connectplugin_interceptor_free(i);
    connectplugin_code code;
    CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_OK);
    CHECK_LOG("start x start x end x 0 end x 0");
    connectplugin_server_free(server);
    CHECK(atomic_load(&g_finalized) == 0);  /* the client still holds it */
    connectplugin_client_free(c);
    int64_t until = now_ms() + 10000;
    while (atomic_load(&g_finalized) == 0 && now_ms() < until) sleep_ms(10);
    CHECK_MSG(atomic_load(&g_finalized) == 1, "finalized %d times", atomic_load(&g_finalized));
}

/* An add that fails leaves the interceptor as it was: its message hook can still be set, and it is
   fixed only once an add succeeded (a later failed add does not undo that). */
static void test_failed_add_leaves_interceptor_unchanged(void) {
    char url[128];
    connectplugin_server *server = start_server(NULL, url, sizeof url);
    connectplugin_server *fresh = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &fresh);
    connectplugin_interceptor *i = new_icpt(NULL, named_end, "m");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_add_interceptor, fresh, "not/a/procedure", i);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_set_message_func, i, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_add_interceptor, server, NULL, i);  /* started */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_set_message_func, i, count_messages);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, fresh, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_CLOSED, connectplugin_server_add_interceptor, fresh, NULL, i);  /* stopped */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_set_message_func, i, count_messages);

    /* Added for real: fixed, and a failed add after that does not unfix it. */
    connectplugin_client *c = make_client(url, "connect", i, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_interceptor_set_message_func, i, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_add_interceptor, server, NULL, i);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_interceptor_set_message_func, i, NULL);

    /* The hook set after the failed adds is the one that runs: one request and one response message. */
    atomic_store(&g_messages, 0);
    connectplugin_code code;
    CHECK(unary(c, SVC "Echo", NULL, &code, NULL) == CONNECTPLUGIN_OK);
    CHECK_MSG(atomic_load(&g_messages) == 101, "messages %d", atomic_load(&g_messages));
    CHECK_LOG("end m 0");
    connectplugin_interceptor_free(i);
    connectplugin_client_free(c);
    connectplugin_server_free(fresh);
    connectplugin_server_free(server);
}

/* ---------------------------------------------------------------------------------------------- */

static const test_case k_tests[] = {
    {"auth_rejects_unary_and_streams", test_auth_rejects_unary_and_streams},
    {"response_header_and_trailers", test_response_header_and_trailers},
    {"chain_order_and_per_procedure", test_chain_order_and_per_procedure},
    {"end_sees_code_and_call_info", test_end_sees_code_and_call_info},
    {"client_rejects_before_sending", test_client_rejects_before_sending},
    {"failing_start_is_internal", test_failing_start_is_internal},
    {"arguments_and_finalizers", test_arguments_and_finalizers},
    {"request_headers_stay_valid_in_hook", test_request_headers_stay_valid_in_hook},
    {"failed_add_leaves_interceptor_unchanged", test_failed_add_leaves_interceptor_unchanged},
};

int main(void) { return run_tests(k_tests, sizeof k_tests / sizeof k_tests[0]); }
