/*
 * test_abi.c — behaviour of the C ABI (include/connectplugin.h), from C, against libconnectplugin.so.
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
/* A test server: handlers written against the ABI, with counters the tests look at               */
/* ---------------------------------------------------------------------------------------------- */

#define SVC "/test.v1.TestService/"
#define HANDLER_MAGIC 0x5eed5eedu

typedef struct handler_state {
    unsigned magic;
    atomic_int calls;             /* handler invocations, all procedures */
    atomic_int handler_failures;  /* checks that failed inside handlers */
    /* Slow / Sleep / Linger handlers. */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool started;
    bool finished;
    int64_t first_remaining_ms;   /* connectplugin_call_timeout_remaining_ms at the start */
    int64_t last_remaining_ms;    /* … once the call is done */
    int32_t done_seen;            /* connectplugin_call_is_done when the handler stopped waiting */
    connectplugin_status late_status; /* connectplugin_call_respond after the call was done */
    int sleep_ms;                 /* how long Sleep sleeps */
} handler_state;

static handler_state *state_of(void *user_data) {
    handler_state *st = user_data;
    if (!st || st->magic != HANDLER_MAGIC) {
        fprintf(stderr, "    FAIL [%s] handler got a wrong user_data %p\n", g_test_name, user_data);
        abort();
    }
    atomic_fetch_add(&st->calls, 1);
    return st;
}

static void add_text_header(handler_state *st, connectplugin_call *call, const char *key, const char *value) {
    HOK(st, connectplugin_call_add_response_header, call, key, (const uint8_t *)value, strlen(value));
}

static const uint8_t k_bin_value[] = {0x00, 0xff, 0x10, 'a', '\n', 0x80};

/* Echo: answers with the request; reports what it saw in response headers; adds trailers. */
static void handle_echo(connectplugin_call *call, void *user_data) {
    handler_state *st = state_of(user_data);
    size_t len = 12345;
    const uint8_t *req = connectplugin_call_request(call, &len);
    HCHECK(st, len == 0 || req != NULL);
    HCHECK(st, streq(connectplugin_call_procedure(call), SVC "Echo"));
    const char *codec = connectplugin_call_codec(call);
    HCHECK(st, streq(codec, "proto") || streq(codec, "json"));
    HCHECK(st, connectplugin_call_is_done(call) == 0);
    add_text_header(st, call, "x-codec", codec ? codec : "(null)");
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)connectplugin_call_timeout_remaining_ms(call));
    add_text_header(st, call, "x-timeout", buf);

    const connectplugin_metadata *headers = connectplugin_call_request_headers(call);
    HCHECK(st, headers != NULL);
    size_t vlen = 0;
    const uint8_t *v = connectplugin_metadata_lookup(headers, "x-req", &vlen);
    if (v) HOK(st, connectplugin_call_add_response_header, call, "x-req-echo", v, vlen);
    v = connectplugin_metadata_lookup(headers, "x-req-bin", &vlen);
    if (v) HOK(st, connectplugin_call_add_response_header, call, "x-echo-bin", v, vlen);
    v = connectplugin_metadata_lookup(headers, "x-default", &vlen);
    if (v) HOK(st, connectplugin_call_add_response_header, call, "x-default-echo", v, vlen);
    bool protocol = connectplugin_metadata_lookup(headers, "content-type", NULL) ||
                    connectplugin_metadata_lookup(headers, "connect-protocol-version", NULL) ||
                    connectplugin_metadata_lookup(headers, "connect-timeout-ms", NULL) ||
                    connectplugin_metadata_lookup(headers, "content-encoding", NULL);
    add_text_header(st, call, "x-saw-protocol-headers", protocol ? "1" : "0");

    HOK(st, connectplugin_call_add_response_trailer, call, "x-trailer", (const uint8_t *)"t-value", 7);
    HOK(st, connectplugin_call_add_response_trailer, call, "x-trailer-bin", k_bin_value, sizeof k_bin_value);
    HOK(st, connectplugin_call_respond, call, req, len);
    /* A second answer is refused. */
    connectplugin_error *err = NULL;
    HCHECK(st, connectplugin_call_respond(call, req, len, &err) == CONNECTPLUGIN_ERR_STATE);
    HCHECK(st, err != NULL && connectplugin_error_status(err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
    err = NULL;
    HCHECK(st, connectplugin_call_fail(call, CONNECTPLUGIN_CODE_INTERNAL, "late", &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
}

static const uint8_t k_detail0[] = {0x0a, 0x03, 'a', 'b', 'c', 0x12, 0x02, 'x', 'y'};
static const uint8_t k_detail1[] = {0x00, 0x01, 0xfe, 0xff};
#define FAIL_MESSAGE "precondition failed: \xc3\xbcnic\xc3\xb8" "de \"quoted\" \\ and\nnewline"

/* Fail: fails with FAILED_PRECONDITION, two details, a header and a trailer. */
static void handle_fail(connectplugin_call *call, void *user_data) {
    handler_state *st = state_of(user_data);
    add_text_header(st, call, "x-fail-header", "h");
    HOK(st, connectplugin_call_add_response_trailer, call, "x-fail-trailer", (const uint8_t *)"t", 1);
    HOK(st, connectplugin_call_add_error_detail, call, "google.rpc.ErrorInfo", k_detail0, sizeof k_detail0);
    HOK(st, connectplugin_call_add_error_detail, call, "test.v1.Blob", k_detail1, sizeof k_detail1);
    HOK(st, connectplugin_call_fail, call, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, FAIL_MESSAGE);
    connectplugin_error *err = NULL;
    HCHECK(st, connectplugin_call_respond(call, (const uint8_t *)"x", 1, &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
}

/* Code: fails with the code given as decimal text in the request, message "code N". */
static void handle_code(connectplugin_call *call, void *user_data) {
    handler_state *st = state_of(user_data);
    size_t len = 0;
    const uint8_t *req = connectplugin_call_request(call, &len);
    char text[16] = "";
    if (len < sizeof text) memcpy(text, req, len);
    int code = atoi(text);
    char message[32];
    snprintf(message, sizeof message, "code %d", code);
    HOK(st, connectplugin_call_fail, call, code, code == 7 ? NULL : message);
}

/* Slow: waits (up to 5 s) until the call is done, then tries to answer it. */
static void handle_slow(connectplugin_call *call, void *user_data) {
    handler_state *st = state_of(user_data);
    int64_t first = connectplugin_call_timeout_remaining_ms(call);
    pthread_mutex_lock(&st->mutex);
    st->first_remaining_ms = first;
    st->started = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->mutex);
    int64_t until = now_ms() + 5000;
    int32_t done = 0;
    while (!(done = connectplugin_call_is_done(call)) && now_ms() < until) sleep_ms(5);
    int64_t last = connectplugin_call_timeout_remaining_ms(call);
    connectplugin_error *err = NULL;
    connectplugin_status late = connectplugin_call_respond(call, (const uint8_t *)"late", 4, &err);
    if (late != CONNECTPLUGIN_OK) HCHECK(st, err != NULL && connectplugin_error_status(err) == late);
    connectplugin_error_free(err);
    pthread_mutex_lock(&st->mutex);
    st->last_remaining_ms = last;
    st->done_seen = done;
    st->late_status = late;
    st->finished = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->mutex);
}

/* Sleep: sleeps st->sleep_ms, then answers "slept". */
static void handle_sleep(connectplugin_call *call, void *user_data) {
    handler_state *st = state_of(user_data);
    pthread_mutex_lock(&st->mutex);
    st->started = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->mutex);
    sleep_ms(st->sleep_ms);
    connectplugin_error *err = NULL;
    connectplugin_status status = connectplugin_call_respond(call, (const uint8_t *)"slept", 5, &err);
    connectplugin_error_free(err);
    pthread_mutex_lock(&st->mutex);
    st->late_status = status;
    st->finished = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->mutex);
}

/* NoAnswer: returns without answering. */
static void handle_no_answer(connectplugin_call *call, void *user_data) {
    (void)call;
    state_of(user_data);
}

/* Waits until st->field is true (at most timeout_ms). */
static bool wait_flag(handler_state *st, const bool *field, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&st->mutex);
    while (!*field) {
        if (pthread_cond_timedwait(&st->cond, &st->mutex, &deadline) == ETIMEDOUT) break;
    }
    bool ok = *field;
    pthread_mutex_unlock(&st->mutex);
    return ok;
}

static void state_init(handler_state *st) {
    memset(st, 0, sizeof *st);
    st->magic = HANDLER_MAGIC;
    pthread_mutex_init(&st->mutex, NULL);
    pthread_cond_init(&st->cond, NULL);
    st->late_status = 12345;
    st->sleep_ms = 500;
}

static void state_reset_flags(handler_state *st) {
    pthread_mutex_lock(&st->mutex);
    st->started = st->finished = false;
    st->done_seen = -1;
    st->late_status = 12345;
    pthread_mutex_unlock(&st->mutex);
}

static void state_destroy(handler_state *st) {
    pthread_mutex_destroy(&st->mutex);
    pthread_cond_destroy(&st->cond);
}

typedef struct fixture {
    connectplugin_server *server;
    handler_state state;
    char sock_path[96];
    char tcp_url[64];
    char unix_url[128];
    char inproc_url[96];
} fixture;

static int g_socket_counter;

static void make_socket_path(char *buf, size_t size) {
    snprintf(buf, size, "/tmp/cp-ctest-%d-%d.sock", (int)getpid(), ++g_socket_counter);
}

/* A started server on 127.0.0.1:0 and a Unix socket, with every test procedure registered. */
static bool fixture_start(fixture *f, const connectplugin_server_options *options) {
    memset(f, 0, sizeof *f);
    state_init(&f->state);
    make_socket_path(f->sock_path, sizeof f->sock_path);
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, options, &f->server)) return false;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, f->server, "127.0.0.1:0")) return false;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_unix, f->server, f->sock_path)) return false;
    /* In-process: the same server reached over an in-memory pipe (no socket). */
    char inproc_name[64];
    snprintf(inproc_name, sizeof inproc_name, "cp-ctest-%d-%d", (int)getpid(), ++g_socket_counter);
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_inprocess, f->server, inproc_name)) return false;
    snprintf(f->inproc_url, sizeof f->inproc_url, "inproc://%s", inproc_name);
    static const struct {
        const char *name;
        connectplugin_unary_handler handler;
    } routes[] = {
        {SVC "Echo", handle_echo},   {SVC "Fail", handle_fail},   {SVC "Code", handle_code},
        {SVC "Slow", handle_slow},   {SVC "Sleep", handle_sleep}, {SVC "NoAnswer", handle_no_answer},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, f->server, routes[i].name,
                       routes[i].handler, &f->state, NULL))
            return false;
    }
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, f->server)) return false;
    const char *tcp = connectplugin_server_address(f->server, 0);
    if (!CHECK(tcp != NULL)) return false;
    snprintf(f->tcp_url, sizeof f->tcp_url, "http://%s", tcp);
    snprintf(f->unix_url, sizeof f->unix_url, "unix://%s", f->sock_path);
    return true;
}

static void fixture_stop(fixture *f) {
    if (f->server) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, f->server, 1000);
    connectplugin_server_free(f->server);
    f->server = NULL;
    CHECK_MSG(atomic_load(&f->state.handler_failures) == 0, "%d check(s) failed inside handlers",
              atomic_load(&f->state.handler_failures));
    state_destroy(&f->state);
    unlink(f->sock_path);
}

/* A client for url with the given codec and HTTP version (NULL on failure, already reported). */
static connectplugin_client *make_client(const char *url, const char *codec, int32_t http,
                                         connectplugin_client_options *options) {
    bool own = options == NULL;
    if (own) options = connectplugin_client_options_new();
    if (!CHECK(options != NULL)) return NULL;
    connectplugin_client *client = NULL;
    bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_codec, options, codec) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, options, http) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, url, options, &client);
    if (own) connectplugin_client_options_free(options);
    return ok ? client : NULL;
}

/* Calls procedure; returns the status, the response (OK) or the error (failure). */
static connectplugin_status call_unary(connectplugin_client *client, const char *procedure, const void *req, size_t len,
                                       const connectplugin_call_options *options, connectplugin_response **out_response,
                                       connectplugin_error **out_error) {
    *out_response = NULL;
    *out_error = ERR_SENTINEL;
    connectplugin_status status =
        connectplugin_client_call_unary(client, procedure, req, len, options, out_response, out_error);
    if (status == CONNECTPLUGIN_OK) {
        CHECK_MSG(*out_error == NULL, "call_unary succeeded without setting *out_error to NULL");
        CHECK(*out_response != NULL);
        *out_error = NULL;
    } else {
        CHECK_MSG(*out_error != NULL && *out_error != ERR_SENTINEL, "call_unary failed (%d) without an error object",
                  status);
        if (*out_error == ERR_SENTINEL) *out_error = NULL;
        if (*out_error) CHECK(connectplugin_error_status(*out_error) == status);
    }
    return status;
}

/* Checks that metadata @p md has @p key with the text value @p want (NUL-terminated at value[len]). */
static bool md_has_text(const connectplugin_metadata *md, const char *key, const char *want) {
    size_t len = 0;
    const uint8_t *v = connectplugin_metadata_lookup(md, key, &len);
    if (!v) {
        fprintf(stderr, "      metadata has no \"%s\"\n", key);
        return false;
    }
    if (len != strlen(want) || memcmp(v, want, len) != 0 || v[len] != '\0') {
        fprintf(stderr, "      metadata \"%s\" = \"%.*s\" (len %zu), want \"%s\"\n", key, (int)len, (const char *)v, len,
                want);
        return false;
    }
    return true;
}

static bool md_has_bytes(const connectplugin_metadata *md, const char *key, const uint8_t *want, size_t want_len) {
    size_t len = 0;
    const uint8_t *v = connectplugin_metadata_lookup(md, key, &len);
    if (!v) {
        fprintf(stderr, "      metadata has no \"%s\"\n", key);
        return false;
    }
    if (len != want_len || memcmp(v, want, len) != 0) {
        fprintf(stderr, "      metadata \"%s\" has %zu bytes, want %zu (or different bytes)\n", key, len, want_len);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: library basics                                                                          */
/* ---------------------------------------------------------------------------------------------- */

static void test_version(void) {
    CHECK_STR(connectplugin_version(), CONNECTPLUGIN_VERSION);
    CHECK(connectplugin_version_num() == CONNECTPLUGIN_VERSION_NUM);
    CHECK(connectplugin_version_num() ==
          (uint32_t)(CONNECTPLUGIN_VERSION_MAJOR << 16 | CONNECTPLUGIN_VERSION_MINOR << 8 | CONNECTPLUGIN_VERSION_PATCH));
    CHECK(connectplugin_abi_version() == CONNECTPLUGIN_ABI_VERSION);
    CHECK(connectplugin_version() == connectplugin_version()); /* static */
}

static void test_status_strings(void) {
    CHECK_STR(connectplugin_status_string(CONNECTPLUGIN_OK), "ok");
    CHECK_STR(connectplugin_status_string(CONNECTPLUGIN_ERR_INVALID_ARGUMENT), "invalid argument");
    const connectplugin_status all[] = {CONNECTPLUGIN_OK,        CONNECTPLUGIN_ERR_INVALID_ARGUMENT,
                                        CONNECTPLUGIN_ERR_RESOURCE, CONNECTPLUGIN_ERR_CLOSED,
                                        CONNECTPLUGIN_ERR_IO,    CONNECTPLUGIN_ERR_STATE,
                                        CONNECTPLUGIN_ERR_RPC,   CONNECTPLUGIN_ERR_UNSUPPORTED};
    const size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = connectplugin_status_string(all[i]);
        CHECK_MSG(s != NULL && s[0] != '\0', "status %d has no description", all[i]);
        for (size_t j = 0; j < i; j++) {
            CHECK_MSG(!streq(s, connectplugin_status_string(all[j])), "statuses %d and %d share \"%s\"", all[i], all[j],
                      s);
        }
    }
    const char *unknown = connectplugin_status_string(-12345);
    CHECK(unknown != NULL && unknown[0] != '\0');
    CHECK(connectplugin_status_string(77) != NULL);
}

static void test_code_names(void) {
    static const char *names[] = {"ok",
                                  "canceled",
                                  "unknown",
                                  "invalid_argument",
                                  "deadline_exceeded",
                                  "not_found",
                                  "already_exists",
                                  "permission_denied",
                                  "resource_exhausted",
                                  "failed_precondition",
                                  "aborted",
                                  "out_of_range",
                                  "unimplemented",
                                  "internal",
                                  "unavailable",
                                  "data_loss",
                                  "unauthenticated"};
    for (int code = 0; code <= 16; code++) CHECK_STR(connectplugin_code_name(code), names[code]);
    CHECK_STR(connectplugin_code_name(CONNECTPLUGIN_CODE_UNAUTHENTICATED), "unauthenticated");
    CHECK_STR(connectplugin_code_name(17), "unknown");
    CHECK_STR(connectplugin_code_name(-1), "unknown");
    CHECK_STR(connectplugin_code_name(INT32_MAX), "unknown");
}

static void test_null_handling(void) {
    /* *_free(NULL) is a no-op. */
    connectplugin_error_free(NULL);
    connectplugin_metadata_free(NULL);
    connectplugin_server_options_free(NULL);
    connectplugin_server_free(NULL);
    connectplugin_client_options_free(NULL);
    connectplugin_client_free(NULL);
    connectplugin_call_options_free(NULL);
    connectplugin_response_free(NULL);
    /* Accessors of a NULL error. */
    CHECK(connectplugin_error_status(NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_error_code(NULL) == CONNECTPLUGIN_CODE_UNKNOWN);
    CHECK_STR(connectplugin_error_message(NULL), "");
    CHECK(connectplugin_metadata_count(NULL) == 0);
    /* NULL handles are invalid arguments, with and without out_error. */
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tcp, NULL, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_start, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_handler_threads, NULL, 4);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_codec, NULL, "proto");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_options_set_timeout_ms, NULL, 5);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, NULL, "k", (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_new, NULL, NULL);
    CHECK(connectplugin_server_start(NULL, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_metadata_add(NULL, "k", (const uint8_t *)"v", 1, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_server_address_count(NULL) == 0);
    CHECK(connectplugin_server_address(NULL, 0) == NULL);
}

static void test_metadata(void) {
    connectplugin_metadata *md = connectplugin_metadata_new();
    if (!CHECK(md != NULL)) return;
    CHECK(connectplugin_metadata_count(md) == 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "X-Key", (const uint8_t *)"v1", 2);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "x-key", (const uint8_t *)"v2", 2);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "Data-Bin", k_bin_value, sizeof k_bin_value);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "x-empty", (const uint8_t *)"", 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "x-all-printable",
              (const uint8_t *)" !\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~", 47);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "X_tok.en-09", (const uint8_t *)"t", 1);
    CHECK(connectplugin_metadata_count(md) == 6);

    const char *key = NULL;
    const uint8_t *value = NULL;
    size_t len = 0;
    CHECK(connectplugin_metadata_get(md, 0, &key, &value, &len) == CONNECTPLUGIN_OK);
    CHECK_STR(key, "x-key"); /* stored lowercased */
    CHECK(len == 2 && value && memcmp(value, "v1", 2) == 0 && value[2] == '\0');
    CHECK(connectplugin_metadata_get(md, 1, &key, &value, &len) == CONNECTPLUGIN_OK);
    CHECK_STR(key, "x-key");
    CHECK(len == 2 && value && memcmp(value, "v2", 2) == 0);
    CHECK(connectplugin_metadata_get(md, 2, &key, &value, &len) == CONNECTPLUGIN_OK);
    CHECK_STR(key, "data-bin");
    CHECK(len == sizeof k_bin_value && value && memcmp(value, k_bin_value, len) == 0);
    CHECK(connectplugin_metadata_get(md, 3, &key, &value, &len) == CONNECTPLUGIN_OK);
    CHECK_STR(key, "x-empty");
    CHECK(len == 0 && value && value[0] == '\0');
    CHECK(connectplugin_metadata_get(md, 6, &key, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_metadata_get(md, SIZE_MAX, &key, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);

    /* lookup: case-insensitive, first value; NULL when absent; out_value_len may be NULL. */
    CHECK(md_has_text(md, "X-KEY", "v1"));
    CHECK(md_has_text(md, "x_tok.en-09", "t"));
    CHECK(md_has_text(md, "x-key", "v1"));
    CHECK(md_has_bytes(md, "data-bin", k_bin_value, sizeof k_bin_value));
    CHECK(connectplugin_metadata_lookup(md, "x-key", NULL) != NULL);
    CHECK(connectplugin_metadata_lookup(md, "missing", &len) == NULL);
    CHECK(connectplugin_metadata_lookup(md, "x-ke", NULL) == NULL);

    /* Invalid input changes nothing. */
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "", (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, NULL, (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "bad key", (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x:y", (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "k\xc3\xa9", (const uint8_t *)"v", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-ctl", (const uint8_t *)"a\nb", 3);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-ctl", (const uint8_t *)"a\rb", 3);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-nul", (const uint8_t *)"a\0b", 3);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-del", (const uint8_t *)"\x7f", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-utf8", (const uint8_t *)"\xc3\xbc", 2);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_metadata_add, md, "x-null", NULL, 3);
    CHECK(connectplugin_metadata_add(md, "", (const uint8_t *)"v", 1, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_metadata_count(md) == 6);

    /* Many entries, order kept. */
    for (int i = 0; i < 500; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "%d", i);
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, "x-many", (const uint8_t *)v, (size_t)n)) break;
    }
    CHECK(connectplugin_metadata_count(md) == 506);
    CHECK(connectplugin_metadata_get(md, 505, &key, &value, &len) == CONNECTPLUGIN_OK);
    CHECK(len == 3 && memcmp(value, "499", 3) == 0);
    CHECK(md_has_text(md, "X-MANY", "0"));
    connectplugin_metadata_free(md);
}

/*
 * The header lets several threads read one metadata object at once. The C strings behind
 * connectplugin_metadata_get are built on the first read after a change: two readers racing to build
 * them must all get valid pointers to the right bytes (issue 7 item 8.3: a use-after-free).
 */
#define MD_READERS 4
#define MD_ROUNDS 800
#define MD_PREFILL 300

typedef struct md_reader {
    connectplugin_metadata *md;
    pthread_barrier_t *start;
    pthread_barrier_t *done;
    atomic_int *mismatches;
    atomic_bool *stop;
} md_reader;

static void md_expected(size_t i, char *key, size_t key_size, char *value, size_t value_size) {
    snprintf(key, key_size, "x-entry-%zu", i);
    snprintf(value, value_size, "value-%zu-abcdefghijklmnopqrstuvwxyz", i);
}

static void *md_reader_thread(void *arg) {
    md_reader *r = arg;
    for (;;) {
        pthread_barrier_wait(r->start);
        if (atomic_load(r->stop)) return NULL;
        size_t n = connectplugin_metadata_count(r->md);
        for (size_t i = 0; i < n; i++) {
            const char *key = NULL;
            const uint8_t *value = NULL;
            size_t len = 0;
            char want_key[32], want_value[64];
            md_expected(i, want_key, sizeof want_key, want_value, sizeof want_value);
            if (connectplugin_metadata_get(r->md, i, &key, &value, &len) != CONNECTPLUGIN_OK || !key || !value ||
                strcmp(key, want_key) != 0 || len != strlen(want_value) || memcmp(value, want_value, len) != 0) {
                atomic_fetch_add(r->mismatches, 1);
            }
        }
        if (n > 0) {
            char want_key[32], want_value[64];
            md_expected(n - 1, want_key, sizeof want_key, want_value, sizeof want_value);
            size_t lookup_len = 0;
            const uint8_t *v = connectplugin_metadata_lookup(r->md, want_key, &lookup_len);
            if (!v || lookup_len != strlen(want_value) || memcmp(v, want_value, lookup_len) != 0) {
                atomic_fetch_add(r->mismatches, 1);
            }
        }
        pthread_barrier_wait(r->done);
    }
}

static void test_metadata_concurrent_reads(void) {
    connectplugin_metadata *md = connectplugin_metadata_new();
    if (!CHECK(md != NULL)) return;
    pthread_barrier_t start, done;
    pthread_barrier_init(&start, NULL, MD_READERS + 1);
    pthread_barrier_init(&done, NULL, MD_READERS + 1);
    atomic_int mismatches = 0;
    atomic_bool stop = false;
    md_reader r = {md, &start, &done, &mismatches, &stop};
    pthread_t threads[MD_READERS];
    int started = 0;
    for (int i = 0; i < MD_READERS; i++) {
        if (CHECK(pthread_create(&threads[i], NULL, md_reader_thread, &r) == 0)) started++;
    }
    if (started == MD_READERS) {
        /* Each round changes the metadata (exclusive access, as the header asks), then the readers
         * read it all at once: each round's first reads race to build the borrowed strings. */
        size_t added = 0;
        for (size_t round = 0; round < MD_ROUNDS; round++) {
            /* Enough entries that building the strings takes a while, so the readers overlap. */
            bool ok = true;
            while (ok && added < MD_PREFILL + round + 1) {
                char key[32], value[64];
                md_expected(added, key, sizeof key, value, sizeof value);
                ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_metadata_add, md, key, (const uint8_t *)value,
                               strlen(value));
                added++;
            }
            if (!ok) break;
            pthread_barrier_wait(&start);
            pthread_barrier_wait(&done);
        }
        CHECK_MSG(atomic_load(&mismatches) == 0, "%d reads returned wrong or missing entries",
                  atomic_load(&mismatches));
        CHECK(connectplugin_metadata_count(md) == MD_PREFILL + MD_ROUNDS);
        atomic_store(&stop, true);
        pthread_barrier_wait(&start);
        for (int i = 0; i < MD_READERS; i++) pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&done);
    connectplugin_metadata_free(md);
}

static void test_error_objects(void) {
    /* A local failure: an error object with status, closest code, message, no details, empty metadata. */
    connectplugin_metadata *md = connectplugin_metadata_new();
    if (!CHECK(md != NULL)) return;
    connectplugin_error *err = ERR_SENTINEL;
    connectplugin_status status = connectplugin_metadata_add(md, "bad key", (const uint8_t *)"v", 1, &err);
    CHECK(status == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    if (CHECK(err != NULL && err != ERR_SENTINEL)) {
        CHECK(connectplugin_error_status(err) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
        CHECK(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_INVALID_ARGUMENT);
        const char *message = connectplugin_error_message(err);
        CHECK(message != NULL && message[0] != '\0');
        CHECK(connectplugin_error_detail_count(err) == 0);
        const char *type = NULL;
        const uint8_t *value = NULL;
        size_t len = 0;
        CHECK(connectplugin_error_detail(err, 0, &type, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
        const connectplugin_metadata *emd = connectplugin_error_metadata(err);
        CHECK(emd != NULL);
        CHECK(connectplugin_metadata_count(emd) == 0);
        connectplugin_error_free(err);
    }
    /* Local failures map to the closest code: unsupported codec. */
    connectplugin_client_options *co = connectplugin_client_options_new();
    if (CHECK(co != NULL)) {
        err = NULL;
        CHECK(connectplugin_client_options_set_codec(co, "xml", &err) == CONNECTPLUGIN_ERR_UNSUPPORTED);
        CHECK(err != NULL && connectplugin_error_status(err) == CONNECTPLUGIN_ERR_UNSUPPORTED);
        CHECK(err != NULL && connectplugin_error_code(err) != CONNECTPLUGIN_CODE_OK);
        connectplugin_error_free(err);
    }
    connectplugin_client_options_free(co);
    /* Success sets *out_error to NULL. */
    err = ERR_SENTINEL;
    CHECK(connectplugin_metadata_add(md, "ok", (const uint8_t *)"v", 1, &err) == CONNECTPLUGIN_OK);
    CHECK(err == NULL);
    connectplugin_metadata_free(md);
}

static void test_server_options(void) {
    connectplugin_server_options *o = connectplugin_server_options_new();
    if (!CHECK(o != NULL)) return;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_max_message_bytes, o, 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_max_message_bytes, o, 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_max_message_bytes, o, (uint64_t)1 << 40);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_handler_threads, o, 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_handler_threads, o, 1024);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_handler_threads, o, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_handler_threads, o, 1025);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_handler_threads, o, UINT32_MAX);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_max_message_bytes, NULL, 5);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_stream_limits, o, 1, 1, 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_stream_limits, o, 0, 0, 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_stream_limits, o, 1u << 20, 1u << 20, 1u << 20);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_stream_limits, o, (1u << 20) + 1, 1, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_stream_limits, o, 1, UINT32_MAX, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_stream_limits, o, 1, 1, UINT32_MAX);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_stream_limits, NULL, 1, 1, 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_stream_limits, o, 16, 64, 128);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_idle_thread_timeout_ms, o, 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_idle_thread_timeout_ms, o, 86400000);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_idle_thread_timeout_ms, o, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_idle_thread_timeout_ms, o, 86400001);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_options_set_idle_thread_timeout_ms, NULL, 5);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_idle_thread_timeout_ms, o, 10000);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_handler_threads, o, 2);
    CHECK(connectplugin_server_handler_thread_count(NULL) == 0);
    /* Options are copied: the server works after they are freed. */
    connectplugin_server *server = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, o, &server);
    connectplugin_server_options_free(o);
    CHECK(server != NULL);
    if (server) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    if (server) CHECK(connectplugin_server_handler_thread_count(server) == 2);  /* handler_threads, idle */
    connectplugin_server_free(server);
}

static void test_client_options(void) {
    connectplugin_client_options *o = connectplugin_client_options_new();
    if (!CHECK(o != NULL)) return;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_codec, o, "json");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_codec, o, "proto");
    EXPECT_ST(CONNECTPLUGIN_ERR_UNSUPPORTED, connectplugin_client_options_set_codec, o, "xml");
    EXPECT_ST(CONNECTPLUGIN_ERR_UNSUPPORTED, connectplugin_client_options_set_codec, o, "");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_codec, o, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, o, CONNECTPLUGIN_HTTP_1_1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, o, CONNECTPLUGIN_HTTP_2);
    {
        connectplugin_error *err = NULL;
        connectplugin_status st = connectplugin_client_options_set_http_version(o, 3, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT || st == CONNECTPLUGIN_ERR_UNSUPPORTED,
                  "set_http_version(3) returned %d", st);
        CHECK(err != NULL && connectplugin_error_status(err) == st);
        connectplugin_error_free(err);
        err = NULL;
        st = connectplugin_client_options_set_http_version(o, 0, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT || st == CONNECTPLUGIN_ERR_UNSUPPORTED,
                  "set_http_version(0) returned %d", st);
        connectplugin_error_free(err);
    }
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_compression, o, "gzip");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_compression, o, "identity");
    EXPECT_ST(CONNECTPLUGIN_ERR_UNSUPPORTED, connectplugin_client_options_set_compression, o, "br");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_compression, o, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_timeout_ms, o, 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_timeout_ms, o, 1500);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_timeout_ms, o, -1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_timeout_ms, o, INT64_MIN);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_max_message_bytes, o, 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_max_message_bytes, o, 1 << 20);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_add_header, o, "x-default", (const uint8_t *)"d", 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_add_header, o, "x-def-bin", k_bin_value, sizeof k_bin_value);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_add_header, o, "bad key",
              (const uint8_t *)"d", 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_add_header, o, "x-ctl",
              (const uint8_t *)"\x01", 1);

    connectplugin_call_options *co = connectplugin_call_options_new();
    if (CHECK(co != NULL)) {
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 0);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 250);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_options_set_timeout_ms, co, -5);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_add_header, co, "x-req", (const uint8_t *)"r", 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_options_add_header, co, "",
                  (const uint8_t *)"r", 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_options_add_header, co, "x-req",
                  (const uint8_t *)"\n", 1);
        connectplugin_call_options_free(co);
    }

    /* Clients: no connection is made by _new. */
    connectplugin_client *client = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, "http://127.0.0.1:1", o, &client);
    connectplugin_client_free(client);
    client = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, "http://localhost:1/some/prefix", NULL, &client);
    connectplugin_client_free(client);
    client = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, "unix:///tmp/does-not-exist.sock", NULL, &client);
    connectplugin_client_free(client);
    client = NULL;
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_new, NULL, NULL, &client);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_new, "http://127.0.0.1:1", NULL, NULL);
    const char *bad_urls[] = {"", "not a url", "ftp://127.0.0.1:21", "http://", "http://127.0.0.1:99999", "unix://"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        connectplugin_error *err = NULL;
        client = NULL;
        connectplugin_status st = connectplugin_client_new(bad_urls[i], NULL, &client, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT || st == CONNECTPLUGIN_ERR_UNSUPPORTED,
                  "client_new(\"%s\") returned %d (%s)", bad_urls[i], st, connectplugin_status_string(st));
        CHECK(err != NULL);
        if (st == CONNECTPLUGIN_OK) connectplugin_client_free(client);
        connectplugin_error_free(err);
    }
    connectplugin_client_options_free(o);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: server lifecycle                                                                        */
/* ---------------------------------------------------------------------------------------------- */

typedef struct finalizer_counter {
    atomic_int count;
} finalizer_counter;

static void count_finalizer(void *user_data) { atomic_fetch_add(&((finalizer_counter *)user_data)->count, 1); }

/* The registration handler for lifecycle tests: answers with "ok". */
static void handle_ok(connectplugin_call *call, void *user_data) {
    (void)user_data;
    connectplugin_error *err = NULL;
    if (connectplugin_call_respond(call, (const uint8_t *)"ok", 2, &err) != CONNECTPLUGIN_OK) connectplugin_error_free(err);
}

/* Binds a TCP socket on 127.0.0.1:0 and returns it (listening) with its port. */
static int bound_tcp_socket(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static bool is_socket_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode);
}

static void test_server_lifecycle(void) {
    finalizer_counter ok1 = {0}, ok2 = {0}, dup = {0}, bad = {0}, null_handler = {0}, late = {0};
    connectplugin_server *server = (connectplugin_server *)&g_sentinel_storage;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server) || !CHECK(server != NULL)) return;
    CHECK(connectplugin_server_address_count(server) == 0);
    CHECK(connectplugin_server_address(server, 0) == NULL);

    /* Listeners: TCP port 0 and Unix; the bound addresses read back. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    char path[96];
    make_socket_path(path, sizeof path);
    /* A stale socket file at the path is replaced. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
    CHECK(stale >= 0 && bind(stale, (struct sockaddr *)&su, sizeof su) == 0);
    if (stale >= 0) close(stale);
    CHECK(is_socket_file(path));
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_unix, server, path);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "localhost:0");
    CHECK(connectplugin_server_address_count(server) == 3);
    const char *a0 = connectplugin_server_address(server, 0);
    const char *a1 = connectplugin_server_address(server, 1);
    const char *a2 = connectplugin_server_address(server, 2);
    CHECK_MSG(a0 && strncmp(a0, "127.0.0.1:", 10) == 0 && atoi(a0 + 10) > 0 && atoi(a0 + 10) < 65536,
              "address 0 = %s", a0 ? a0 : "(null)");
    char want_unix[128];
    snprintf(want_unix, sizeof want_unix, "unix:%s", path);
    CHECK_STR(a1, want_unix);
    CHECK_MSG(a2 && (strncmp(a2, "127.0.0.1:", 10) == 0 || strncmp(a2, "[::1]:", 6) == 0), "address 2 = %s",
              a2 ? a2 : "(null)");
    CHECK(connectplugin_server_address(server, 3) == NULL);
    CHECK(connectplugin_server_address(server, SIZE_MAX) == NULL);
    CHECK(is_socket_file(path));

    /* Listener errors. */
    const char *malformed[] = {"", "nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:port",
                               "[::1:80"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        connectplugin_error *err = NULL;
        connectplugin_status st = connectplugin_server_listen_tcp(server, malformed[i], &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "listen_tcp(\"%s\") returned %d (%s): %s", malformed[i], st,
                  connectplugin_status_string(st), connectplugin_error_message(err));
        connectplugin_error_free(err);
    }
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tcp, server, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_unix, server, NULL);
    int port = 0;
    int busy = bound_tcp_socket(&port);
    if (CHECK(busy >= 0)) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        connectplugin_error *err = NULL;
        CHECK(connectplugin_server_listen_tcp(server, addr, &err) == CONNECTPLUGIN_ERR_IO);
        CHECK(err != NULL && connectplugin_error_status(err) == CONNECTPLUGIN_ERR_IO &&
              connectplugin_error_message(err)[0] != '\0');
        connectplugin_error_free(err);
        close(busy);
    }
    EXPECT_ST(CONNECTPLUGIN_ERR_IO, connectplugin_server_listen_unix, server, "/nonexistent-dir-cp/x.sock");
    CHECK(connectplugin_server_address_count(server) == 3);

    /* Registration: finalizers of failed registrations run before the call returns. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Ok", handle_ok, &ok1, count_finalizer);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, "/other.Svc/Ok", handle_ok, &ok2,
              count_finalizer);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary, server, SVC "Ok", handle_ok, &dup,
              count_finalizer);
    CHECK(atomic_load(&dup.count) == 1);
    const char *bad_procs[] = {"", "Ok", "/noslash", "test.v1.TestService/Ok", "/test.v1.TestService/"};
    for (size_t i = 0; i < sizeof bad_procs / sizeof bad_procs[0]; i++) {
        int before = atomic_load(&bad.count);
        connectplugin_error *err = NULL;
        connectplugin_status st =
            connectplugin_server_register_unary(server, bad_procs[i], handle_ok, &bad, count_finalizer, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "register(\"%s\") returned %d", bad_procs[i], st);
        CHECK_MSG(atomic_load(&bad.count) == before + 1, "finalizer not called once for register(\"%s\")", bad_procs[i]);
        connectplugin_error_free(err);
    }
    int before = atomic_load(&bad.count);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary, server, NULL, handle_ok, &bad,
              count_finalizer);
    CHECK(atomic_load(&bad.count) == before + 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary, server, SVC "Null", NULL,
              &null_handler, count_finalizer);
    CHECK(atomic_load(&null_handler.count) == 1);
    /* A NULL finalizer is allowed, also on failure. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "NoFinalizer", handle_ok, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary, server, SVC "NoFinalizer",
              handle_ok, NULL, NULL);

    /* Start; registering afterwards is a state error (finalizer still called once); listening is fine. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_register_unary, server, SVC "Late", handle_ok, &late,
              count_finalizer);
    CHECK(atomic_load(&late.count) == 1);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    CHECK(connectplugin_server_address_count(server) == 4);

    /* Every listener serves, including the one added after start. */
    for (size_t i = 0; i < connectplugin_server_address_count(server); i++) {
        const char *addr = connectplugin_server_address(server, i);
        if (!CHECK(addr != NULL)) continue;
        char url[160];
        if (strncmp(addr, "unix:", 5) == 0) snprintf(url, sizeof url, "unix://%s", addr + 5);
        else snprintf(url, sizeof url, "http://%s", addr);
        connectplugin_client *client = make_client(url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
        if (!client) continue;
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Ok", "x", 1, NULL, &resp, &err);
        CHECK_MSG(st == CONNECTPLUGIN_OK, "call via %s: %d %s", url, st, connectplugin_error_message(err));
        connectplugin_response_free(resp);
        connectplugin_error_free(err);
        connectplugin_client_free(client);
    }
    CHECK(atomic_load(&ok1.count) == 0 && atomic_load(&ok2.count) == 0);

    /* Stop: twice is fine; the Unix socket file is removed; then nothing answers. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 1000);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 1000);
    CHECK_MSG(access(path, F_OK) != 0, "socket file %s still exists after stop", path);
    CHECK(connectplugin_server_address(server, 0) != NULL); /* valid until freed */
    {
        char url[96];
        snprintf(url, sizeof url, "http://%s", connectplugin_server_address(server, 0));
        connectplugin_client *client = make_client(url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
        if (client) {
            connectplugin_response *resp = NULL;
            connectplugin_error *err = NULL;
            connectplugin_status st = call_unary(client, SVC "Ok", "x", 1, NULL, &resp, &err);
            CHECK(st == CONNECTPLUGIN_ERR_RPC);
            CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNAVAILABLE, "code %s",
                      connectplugin_code_name(connectplugin_error_code(err)));
            connectplugin_response_free(resp);
            connectplugin_error_free(err);
            connectplugin_client_free(client);
        }
    }
    /* A stopped server is closed. */
    EXPECT_ST(CONNECTPLUGIN_ERR_CLOSED, connectplugin_server_start, server);
    EXPECT_ST(CONNECTPLUGIN_ERR_CLOSED, connectplugin_server_listen_tcp, server, "127.0.0.1:0");

    connectplugin_server_free(server);
    CHECK(atomic_load(&ok1.count) == 1 && atomic_load(&ok2.count) == 1);
    CHECK(atomic_load(&dup.count) == 1 && atomic_load(&null_handler.count) == 1 && atomic_load(&late.count) == 1);
    CHECK(atomic_load(&bad.count) == (int)(sizeof bad_procs / sizeof bad_procs[0]) + 1);
    unlink(path);
}

/*
 * connectplugin_server_address is borrowed "until the server is freed": every pointer handed out
 * stays valid with the same text while more listeners are added (issue 7 item 8.2: the next listen
 * used to free them).
 */
static void test_server_address_lifetime(void) {
    connectplugin_server *server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server) || !CHECK(server != NULL)) return;
    enum { LISTENERS = 6 };
    const char *got[LISTENERS] = {0};
    char copy[LISTENERS][64];
    for (size_t i = 0; i < LISTENERS; i++) {
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0")) break;
        if (!CHECK(connectplugin_server_address_count(server) == i + 1)) break;
        /* Every address read so far is still there, unchanged, through the pointer handed out. */
        for (size_t j = 0; j < i; j++) {
            CHECK_MSG(strcmp(got[j], copy[j]) == 0, "address %zu read before listen %zu: \"%.63s\", want \"%s\"", j,
                      i + 1, got[j], copy[j]);
            CHECK_STR(connectplugin_server_address(server, j), copy[j]);
        }
        got[i] = connectplugin_server_address(server, i);
        if (!CHECK(got[i] != NULL)) break;
        CHECK_MSG(strncmp(got[i], "127.0.0.1:", 10) == 0 && atoi(got[i] + 10) > 0, "address %zu = %s", i, got[i]);
        snprintf(copy[i], sizeof copy[i], "%s", got[i]);
    }
    /* Start and stop do not free them either. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 1000);
    for (size_t j = 0; j < LISTENERS; j++) {
        if (got[j]) CHECK_MSG(strcmp(got[j], copy[j]) == 0, "address %zu after stop: \"%.63s\", want \"%s\"", j, got[j], copy[j]);
    }
    connectplugin_server_free(server);
}

static void test_server_free_without_start(void) {
    /* Free of a server never started (with listeners and registrations) calls finalizers once. */
    finalizer_counter c = {0};
    connectplugin_server *server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) return;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Ok", handle_ok, &c, count_finalizer);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 0); /* never started: OK */
    connectplugin_server_free(server);
    CHECK(atomic_load(&c.count) == 1);

    /* Free of a running server, without stop. */
    finalizer_counter d = {0};
    server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) return;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Ok", handle_ok, &d, count_finalizer);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
    connectplugin_server_free(server);
    CHECK(atomic_load(&d.count) == 1);

    /* Many servers in sequence (no leak of threads or descriptors that would make this fail). */
    for (int i = 0; i < 20; i++) {
        server = NULL;
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) break;
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 100);
        connectplugin_server_free(server);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: calls                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

typedef struct combo {
    const char *transport;
    const char *codec;
    int32_t http;
} combo;

static const combo k_combos[] = {
    {"tcp", "proto", CONNECTPLUGIN_HTTP_2},   {"tcp", "json", CONNECTPLUGIN_HTTP_2},
    {"tcp", "proto", CONNECTPLUGIN_HTTP_1_1}, {"tcp", "json", CONNECTPLUGIN_HTTP_1_1},
    {"unix", "proto", CONNECTPLUGIN_HTTP_2},  {"unix", "json", CONNECTPLUGIN_HTTP_2},
    {"unix", "proto", CONNECTPLUGIN_HTTP_1_1}, {"unix", "json", CONNECTPLUGIN_HTTP_1_1},
    {"inproc", "proto", CONNECTPLUGIN_HTTP_2}, {"inproc", "json", CONNECTPLUGIN_HTTP_1_1},
};
#define N_COMBOS (sizeof k_combos / sizeof k_combos[0])

static const char *combo_url(const fixture *f, const combo *c) {
    if (strcmp(c->transport, "inproc") == 0) return f->inproc_url;
    return strcmp(c->transport, "unix") == 0 ? f->unix_url : f->tcp_url;
}

/* listen_inprocess: the address, the name checks, one server per name, and freeing it on stop. */
static void test_inprocess_listener(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    CHECK(connectplugin_server_address_count(f.server) == 3);
    const char *a2 = connectplugin_server_address(f.server, 2);
    CHECK_MSG(a2 != NULL && strcmp(a2, f.inproc_url) == 0, "address 2 is %s, expected %s", a2 ? a2 : "(null)",
              f.inproc_url);
    const char *name = f.inproc_url + strlen("inproc://");
    connectplugin_server *other = NULL;
    if (EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &other)) {
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_inprocess, other, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_inprocess, other, "");
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_inprocess, other, "a/b");
        connectplugin_error *err = NULL;
        connectplugin_status st = connectplugin_server_listen_inprocess(other, name, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_INVALID_ARGUMENT && err && strstr(connectplugin_error_message(err), "already used"),
                  "a second server took the name: status %d: %s", st, err ? connectplugin_error_message(err) : "");
        connectplugin_error_free(err);
    }
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_inprocess, NULL, "x");
    /* A call over the pipe. */
    connectplugin_client *client = make_client(f.inproc_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Echo", "\x0a\x02hi", 4, NULL, &resp, &err);
        CHECK_MSG(st == CONNECTPLUGIN_OK, "inproc echo: status %d: %s", st, err ? connectplugin_error_message(err) : "");
        connectplugin_response_free(resp);
        connectplugin_error_free(err);
        connectplugin_client_free(client);
    }
    /* After stop, the name is free for another server, and clients of the old one are unavailable. */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, f.server, 1000);
    client = make_client(f.inproc_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Echo", "", 0, NULL, &resp, &err);
        CHECK_MSG(st == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNAVAILABLE,
                  "call to a stopped in-process server: status %d", st);
        connectplugin_response_free(resp);
        connectplugin_error_free(err);
        connectplugin_client_free(client);
    }
    if (other) {
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_inprocess, other, name);
        connectplugin_server_free(other);
    }
    fixture_stop(&f);
}

static void test_unary_echo(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    for (size_t i = 0; i < N_COMBOS; i++) {
        const combo *c = &k_combos[i];
        fprintf(stderr, "    echo over %s, %s, HTTP/%s\n", c->transport, c->codec, c->http == 2 ? "2" : "1.1");
        connectplugin_client *client = make_client(combo_url(&f, c), c->codec, c->http, NULL);
        if (!client) continue;
        connectplugin_call_options *co = connectplugin_call_options_new();
        CHECK(co != NULL);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_add_header, co, "X-Req", (const uint8_t *)"hello", 5);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_add_header, co, "x-req-bin", k_bin_value,
                  sizeof k_bin_value);
        /* Messages: small, empty, and 200 KiB (several HTTP/2 frames and flow-control windows). */
        const char *small = strcmp(c->codec, "json") == 0 ? "{\"msg\":\"hello\"}" : "\x0a\x05hello";
        size_t big_len = 200 * 1024;
        uint8_t *big = malloc(big_len);
        if (!CHECK(big != NULL)) break;
        for (size_t k = 0; k < big_len; k++) big[k] = strcmp(c->codec, "json") == 0 ? (uint8_t)('a' + k % 26) : (uint8_t)(k * 7);
        struct {
            const uint8_t *data;
            size_t len;
        } msgs[] = {{(const uint8_t *)small, strlen(small)}, {(const uint8_t *)"", 0}, {big, big_len}};
        for (size_t m = 0; m < 3; m++) {
            connectplugin_response *resp = NULL;
            connectplugin_error *err = NULL;
            connectplugin_status st = call_unary(client, SVC "Echo", msgs[m].data, msgs[m].len, co, &resp, &err);
            CHECK_MSG(st == CONNECTPLUGIN_OK, "message %zu: status %d, code %s: %s", m, st,
                      connectplugin_code_name(connectplugin_error_code(err)), connectplugin_error_message(err));
            if (st == CONNECTPLUGIN_OK && resp) {
                size_t len = 999;
                const uint8_t *data = connectplugin_response_message(resp, &len);
                CHECK_MSG(len == msgs[m].len && (len == 0 || memcmp(data, msgs[m].data, len) == 0),
                          "message %zu: echo of %zu bytes came back as %zu bytes", m, msgs[m].len, len);
                const connectplugin_metadata *h = connectplugin_response_headers(resp);
                const connectplugin_metadata *t = connectplugin_response_trailers(resp);
                CHECK(h != NULL && t != NULL);
                CHECK(md_has_text(h, "x-codec", c->codec));
                CHECK(md_has_text(h, "x-timeout", "-1"));
                CHECK(md_has_text(h, "x-req-echo", "hello"));
                CHECK(md_has_bytes(h, "x-echo-bin", k_bin_value, sizeof k_bin_value));
                CHECK(md_has_text(h, "x-saw-protocol-headers", "0"));
                CHECK(md_has_text(t, "x-trailer", "t-value"));
                CHECK(md_has_bytes(t, "x-trailer-bin", k_bin_value, sizeof k_bin_value));
                /* Protocol headers are removed, and trailers are not headers. */
                CHECK(connectplugin_metadata_lookup(h, "content-type", NULL) == NULL);
                CHECK(connectplugin_metadata_lookup(h, "x-trailer", NULL) == NULL);
                CHECK(connectplugin_metadata_lookup(h, "trailer-x-trailer", NULL) == NULL);
                CHECK(connectplugin_metadata_lookup(t, "x-codec", NULL) == NULL);
            }
            connectplugin_response_free(resp);
            connectplugin_error_free(err);
        }
        free(big);
        /* A timeout makes the remaining time visible to the handler. */
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 5000);
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        if (call_unary(client, SVC "Echo", small, strlen(small), co, &resp, &err) == CONNECTPLUGIN_OK) {
            size_t len = 0;
            const uint8_t *v = connectplugin_metadata_lookup(connectplugin_response_headers(resp), "x-timeout", &len);
            long long remaining = v ? atoll((const char *)v) : -2;
            CHECK_MSG(remaining > 0 && remaining <= 5000, "timeout remaining in the handler: %lld", remaining);
        }
        connectplugin_response_free(resp);
        connectplugin_error_free(err);
        connectplugin_call_options_free(co);
        connectplugin_client_free(client);
    }
    CHECK(atomic_load(&f.state.calls) == (int)(N_COMBOS * 4));
    fixture_stop(&f);
}

static void check_fail_error(connectplugin_status st, connectplugin_error *err) {
    CHECK(st == CONNECTPLUGIN_ERR_RPC);
    if (!CHECK(err != NULL)) return;
    CHECK(connectplugin_error_status(err) == CONNECTPLUGIN_ERR_RPC);
    CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "code %s",
              connectplugin_code_name(connectplugin_error_code(err)));
    CHECK_STR(connectplugin_error_message(err), FAIL_MESSAGE);
    CHECK_MSG(connectplugin_error_detail_count(err) == 2, "detail count %zu", connectplugin_error_detail_count(err));
    const char *type = NULL;
    const uint8_t *value = NULL;
    size_t len = 0;
    if (CHECK(connectplugin_error_detail(err, 0, &type, &value, &len) == CONNECTPLUGIN_OK)) {
        CHECK_STR(type, "google.rpc.ErrorInfo");
        CHECK(len == sizeof k_detail0 && memcmp(value, k_detail0, len) == 0);
    }
    if (CHECK(connectplugin_error_detail(err, 1, &type, &value, &len) == CONNECTPLUGIN_OK)) {
        CHECK_STR(type, "test.v1.Blob");
        CHECK(len == sizeof k_detail1 && memcmp(value, k_detail1, len) == 0);
    }
    CHECK(connectplugin_error_detail(err, 2, &type, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_error_detail(err, 0, NULL, &value, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_error_detail(err, 0, &type, NULL, &len) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_error_detail(err, 0, &type, &value, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    const connectplugin_metadata *md = connectplugin_error_metadata(err);
    if (CHECK(md != NULL)) {
        CHECK(md_has_text(md, "x-fail-header", "h"));
        CHECK(md_has_text(md, "x-fail-trailer", "t"));
    }
}

static void test_unary_fail(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    for (size_t i = 0; i < N_COMBOS; i++) {
        const combo *c = &k_combos[i];
        fprintf(stderr, "    fail over %s, %s, HTTP/%s\n", c->transport, c->codec, c->http == 2 ? "2" : "1.1");
        connectplugin_client *client = make_client(combo_url(&f, c), c->codec, c->http, NULL);
        if (!client) continue;
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Fail", "{}", 2, NULL, &resp, &err);
        CHECK(resp == NULL);
        check_fail_error(st, err);
        connectplugin_error_free(err);
        connectplugin_response_free(resp);

        /* Unknown procedure → UNIMPLEMENTED. */
        err = NULL;
        st = call_unary(client, "/test.v1.TestService/Missing", "{}", 2, NULL, &resp, &err);
        CHECK(st == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNIMPLEMENTED, "unknown procedure: code %s",
                  connectplugin_code_name(connectplugin_error_code(err)));
        connectplugin_error_free(err);
        connectplugin_response_free(resp);

        /* A handler that returns without answering → INTERNAL. */
        err = NULL;
        st = call_unary(client, SVC "NoAnswer", "{}", 2, NULL, &resp, &err);
        CHECK(st == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_INTERNAL, "no answer: code %s",
                  connectplugin_code_name(connectplugin_error_code(err)));
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_all_codes(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    for (int http = 1; http <= 2; http++) {
        connectplugin_client *client = make_client(f.tcp_url, "proto", http, NULL);
        if (!client) continue;
        int codes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 99, -3};
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            char req[16];
            int n = snprintf(req, sizeof req, "%d", codes[i]);
            connectplugin_response *resp = NULL;
            connectplugin_error *err = NULL;
            connectplugin_status st = call_unary(client, SVC "Code", req, (size_t)n, NULL, &resp, &err);
            int want = codes[i] >= 1 && codes[i] <= 16 ? codes[i] : CONNECTPLUGIN_CODE_UNKNOWN;
            CHECK(st == CONNECTPLUGIN_ERR_RPC);
            CHECK_MSG(connectplugin_error_code(err) == want, "HTTP/%d: fail(%d) arrived as %s", http, codes[i],
                      connectplugin_code_name(connectplugin_error_code(err)));
            if (codes[i] != 7) {
                char message[32];
                snprintf(message, sizeof message, "code %d", codes[i]);
                CHECK_STR(connectplugin_error_message(err), message);
            }
            connectplugin_error_free(err);
            connectplugin_response_free(resp);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_deadline(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    for (int variant = 0; variant < 4; variant++) {
        /* 0/1: per-call timeout over HTTP/2 and HTTP/1.1; 2/3: client default timeout. */
        int32_t http = variant % 2 == 0 ? CONNECTPLUGIN_HTTP_2 : CONNECTPLUGIN_HTTP_1_1;
        state_reset_flags(&f.state);
        connectplugin_client_options *o = connectplugin_client_options_new();
        connectplugin_call_options *co = NULL;
        if (variant >= 2) {
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_timeout_ms, o, 300);
        } else {
            co = connectplugin_call_options_new();
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 300);
        }
        connectplugin_client *client = make_client(variant % 2 ? f.unix_url : f.tcp_url, "proto", http, o);
        connectplugin_client_options_free(o);
        if (!client) {
            connectplugin_call_options_free(co);
            continue;
        }
        int64_t t0 = now_ms();
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Slow", "x", 1, co, &resp, &err);
        int64_t elapsed = now_ms() - t0;
        CHECK(st == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED, "variant %d: code %s: %s",
                  variant, connectplugin_code_name(connectplugin_error_code(err)), connectplugin_error_message(err));
        CHECK_MSG(elapsed >= 250 && elapsed < 3000, "variant %d: the call took %lld ms (timeout 300 ms)", variant,
                  (long long)elapsed);
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        /* The handler saw the deadline, then saw the call done, and a late answer is refused. */
        CHECK(wait_flag(&f.state, &f.state.finished, 6000));
        pthread_mutex_lock(&f.state.mutex);
        CHECK_MSG(f.state.first_remaining_ms > 0 && f.state.first_remaining_ms <= 300,
                  "variant %d: remaining at start %lld", variant, (long long)f.state.first_remaining_ms);
        CHECK_MSG(f.state.done_seen == 1, "variant %d: is_done never became 1", variant);
        /* 0 when the server's copy of the deadline ended the call; the client's own timer (same 300 ms,
           started a little earlier) can end it a few ms before that, on a slow (sanitized) run. */
        CHECK_MSG(f.state.last_remaining_ms >= 0 && f.state.last_remaining_ms <= 50,
                  "variant %d: remaining after the deadline %lld", variant, (long long)f.state.last_remaining_ms);
        CHECK_MSG(f.state.late_status == CONNECTPLUGIN_ERR_CLOSED, "variant %d: late respond returned %d", variant,
                  f.state.late_status);
        pthread_mutex_unlock(&f.state.mutex);
        connectplugin_call_options_free(co);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_unavailable(void) {
    int port = 0;
    int fd = bound_tcp_socket(&port);
    if (!CHECK(fd >= 0)) return;
    close(fd); /* nothing listens on port now */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    char path[96];
    make_socket_path(path, sizeof path);
    char unix_url[128];
    snprintf(unix_url, sizeof unix_url, "unix://%s", path);
    const char *urls[] = {url, unix_url};
    for (int i = 0; i < 2; i++) {
        for (int http = 1; http <= 2; http++) {
            connectplugin_client *client = make_client(urls[i], "proto", http, NULL);
            if (!client) continue;
            connectplugin_response *resp = NULL;
            connectplugin_error *err = NULL;
            connectplugin_status st = call_unary(client, SVC "Echo", "x", 1, NULL, &resp, &err);
            CHECK(st == CONNECTPLUGIN_ERR_RPC);
            CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNAVAILABLE, "%s: code %s", urls[i],
                      connectplugin_code_name(connectplugin_error_code(err)));
            connectplugin_error_free(err);
            connectplugin_response_free(resp);
            connectplugin_client_free(client);
        }
    }
}

static void test_call_arguments(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    connectplugin_client *client = make_client(f.tcp_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        connectplugin_response *resp = NULL;
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_call_unary, NULL, SVC "Echo",
                  (const uint8_t *)"x", 1, NULL, &resp);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_call_unary, client, NULL,
                  (const uint8_t *)"x", 1, NULL, &resp);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_call_unary, client, SVC "Echo", NULL, 5, NULL,
                  &resp);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_call_unary, client, SVC "Echo",
                  (const uint8_t *)"x", 1, NULL, NULL);
        CHECK(connectplugin_client_call_unary(client, NULL, (const uint8_t *)"x", 1, NULL, &resp, NULL) ==
              CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
        CHECK(resp == NULL);
        /* out_error NULL on an RPC failure is fine too. */
        CHECK(connectplugin_client_call_unary(client, SVC "Fail", (const uint8_t *)"x", 1, NULL, &resp, NULL) ==
              CONNECTPLUGIN_ERR_RPC);
        /* Client default headers reach the handler. */
        connectplugin_client_free(client);
    }
    connectplugin_client_options *o = connectplugin_client_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_add_header, o, "x-default", (const uint8_t *)"dflt", 4);
    client = make_client(f.unix_url, "proto", CONNECTPLUGIN_HTTP_2, o);
    connectplugin_client_options_free(o); /* copied */
    if (client) {
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        if (call_unary(client, SVC "Echo", "x", 1, NULL, &resp, &err) == CONNECTPLUGIN_OK)
            CHECK(md_has_text(connectplugin_response_headers(resp), "x-default-echo", "dflt"));
        connectplugin_response_free(resp);
        connectplugin_error_free(err);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_message_limits(void) {
    connectplugin_server_options *so = connectplugin_server_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_max_message_bytes, so, 64);
    fixture f;
    bool started = fixture_start(&f, so);
    connectplugin_server_options_free(so);
    if (!started) {
        fixture_stop(&f);
        return;
    }
    uint8_t big[100];
    memset(big, 'b', sizeof big);
    for (int http = 1; http <= 2; http++) {
        connectplugin_client *client = make_client(f.tcp_url, "proto", http, NULL);
        if (!client) continue;
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        int calls_before = atomic_load(&f.state.calls);
        connectplugin_status st = call_unary(client, SVC "Echo", big, sizeof big, NULL, &resp, &err);
        CHECK(st == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "HTTP/%d: code %s", http,
                  connectplugin_code_name(connectplugin_error_code(err)));
        CHECK_MSG(atomic_load(&f.state.calls) == calls_before, "the handler ran for a too large message");
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        /* A message at the limit passes. */
        err = NULL;
        st = call_unary(client, SVC "Echo", big, 64, NULL, &resp, &err);
        CHECK_MSG(st == CONNECTPLUGIN_OK, "64-byte message: %s", connectplugin_error_message(err));
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        connectplugin_client_free(client);
    }
    /* The client's limit on responses. */
    connectplugin_client_options *co = connectplugin_client_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_max_message_bytes, co, 16);
    connectplugin_client *client = make_client(f.tcp_url, "proto", CONNECTPLUGIN_HTTP_2, co);
    connectplugin_client_options_free(co);
    if (client) {
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Echo", big, 40, NULL, &resp, &err);
        CHECK(st == CONNECTPLUGIN_ERR_RPC);
        CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "client limit: code %s",
                  connectplugin_code_name(connectplugin_error_code(err)));
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_gzip(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    size_t len = 64 * 1024;
    uint8_t *msg = malloc(len);
    if (!CHECK(msg != NULL)) {
        fixture_stop(&f);
        return;
    }
    for (size_t i = 0; i < len; i++) msg[i] = (uint8_t)("compressible "[i % 13]);
    for (int http = 1; http <= 2; http++) {
        connectplugin_client_options *o = connectplugin_client_options_new();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_compression, o, "gzip");
        connectplugin_client *client = make_client(f.tcp_url, "proto", http, o);
        connectplugin_client_options_free(o);
        if (!client) continue;
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        connectplugin_status st = call_unary(client, SVC "Echo", msg, len, NULL, &resp, &err);
        CHECK_MSG(st == CONNECTPLUGIN_OK, "HTTP/%d gzip: %s", http, connectplugin_error_message(err));
        if (st == CONNECTPLUGIN_OK) {
            size_t rlen = 0;
            const uint8_t *data = connectplugin_response_message(resp, &rlen);
            CHECK(rlen == len && memcmp(data, msg, len) == 0);
            CHECK(md_has_text(connectplugin_response_headers(resp), "x-saw-protocol-headers", "0"));
        }
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        connectplugin_client_free(client);
    }
    free(msg);
    fixture_stop(&f);
}

typedef struct caller_args {
    connectplugin_client *client;
    const char *procedure;
    int index;
    int calls;
    connectplugin_status status;
    int mismatches;
    char body[16];
} caller_args;

static void *caller_thread(void *arg) {
    caller_args *a = arg;
    for (int i = 0; i < a->calls; i++) {
        char req[48];
        int n = snprintf(req, sizeof req, "thread %d call %d", a->index, i);
        connectplugin_response *resp = NULL;
        connectplugin_error *err = NULL;
        a->status = connectplugin_client_call_unary(a->client, a->procedure, (const uint8_t *)req, (size_t)n, NULL, &resp,
                                                    &err);
        if (a->status == CONNECTPLUGIN_OK) {
            size_t len = 0;
            const uint8_t *data = connectplugin_response_message(resp, &len);
            if (strcmp(a->procedure, SVC "Echo") == 0 && (len != (size_t)n || memcmp(data, req, len) != 0))
                a->mismatches++;
            if (len < sizeof a->body) {
                memcpy(a->body, data, len);
                a->body[len] = '\0';
            }
        } else {
            fprintf(stderr, "    thread %d call %d: %s\n", a->index, i, connectplugin_error_message(err));
        }
        connectplugin_error_free(err);
        connectplugin_response_free(resp);
        if (a->status != CONNECTPLUGIN_OK) break;
    }
    return NULL;
}

static void test_concurrency(void) {
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    for (int http = 1; http <= 2; http++) {
        connectplugin_client *client = make_client(http == 2 ? f.tcp_url : f.unix_url, "proto", http, NULL);
        if (!client) continue;
        enum { THREADS = 6, CALLS = 50 };
        pthread_t threads[THREADS];
        caller_args args[THREADS];
        for (int i = 0; i < THREADS; i++) {
            args[i] = (caller_args){.client = client, .procedure = SVC "Echo", .index = i, .calls = CALLS};
            CHECK(pthread_create(&threads[i], NULL, caller_thread, &args[i]) == 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(threads[i], NULL);
            CHECK_MSG(args[i].status == CONNECTPLUGIN_OK && args[i].mismatches == 0,
                      "HTTP/%d thread %d: status %d, %d mismatches", http, i, args[i].status, args[i].mismatches);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_slow_handler_does_not_stall(void) {
    connectplugin_server_options *so = connectplugin_server_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_handler_threads, so, 2);
    fixture f;
    bool ok = fixture_start(&f, so);
    connectplugin_server_options_free(so);
    if (!ok) {
        fixture_stop(&f);
        return;
    }
    f.state.sleep_ms = 2000;
    connectplugin_client *client = make_client(f.tcp_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        pthread_t t;
        caller_args a = {.client = client, .procedure = SVC "Sleep", .index = 0, .calls = 1};
        CHECK(pthread_create(&t, NULL, caller_thread, &a) == 0);
        CHECK(wait_flag(&f.state, &f.state.started, 5000));
        /* Same client (same HTTP/2 connection) and another client: both answered while Sleep sleeps. */
        connectplugin_client *other = make_client(f.unix_url, "proto", CONNECTPLUGIN_HTTP_1_1, NULL);
        connectplugin_client *clients[] = {client, other};
        for (int i = 0; i < 2; i++) {
            if (!clients[i]) continue;
            connectplugin_response *resp = NULL;
            connectplugin_error *err = NULL;
            int64_t t0 = now_ms();
            CHECK(call_unary(clients[i], SVC "Echo", "x", 1, NULL, &resp, &err) == CONNECTPLUGIN_OK);
            int64_t took = now_ms() - t0;
            pthread_mutex_lock(&f.state.mutex);
            bool sleeping = !f.state.finished;
            pthread_mutex_unlock(&f.state.mutex);
            CHECK_MSG(sleeping && took < 1500, "client %d: echo took %lld ms while a handler slept", i, (long long)took);
            connectplugin_error_free(err);
            connectplugin_response_free(resp);
        }
        pthread_join(t, NULL);
        CHECK(a.status == CONNECTPLUGIN_OK && strcmp(a.body, "slept") == 0);
        connectplugin_client_free(other);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

static void test_graceful_stop(void) {
    /* A call in flight finishes within the grace period. */
    fixture f;
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    f.state.sleep_ms = 500;
    connectplugin_client *client = make_client(f.tcp_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        pthread_t t;
        caller_args a = {.client = client, .procedure = SVC "Sleep", .index = 0, .calls = 1};
        CHECK(pthread_create(&t, NULL, caller_thread, &a) == 0);
        CHECK(wait_flag(&f.state, &f.state.started, 5000));
        int64_t t0 = now_ms();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, f.server, 5000);
        int64_t took = now_ms() - t0;
        pthread_join(t, NULL);
        CHECK_MSG(a.status == CONNECTPLUGIN_OK && strcmp(a.body, "slept") == 0, "in-flight call: status %d body %s",
                  a.status, a.body);
        CHECK_MSG(took < 4000, "stop took %lld ms", (long long)took);
        CHECK(f.state.late_status == CONNECTPLUGIN_OK);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);

    /* A call still running when the grace period ends is cancelled: is_done becomes 1, a late answer is refused. */
    if (!fixture_start(&f, NULL)) {
        fixture_stop(&f);
        return;
    }
    client = make_client(f.unix_url, "proto", CONNECTPLUGIN_HTTP_2, NULL);
    if (client) {
        pthread_t t;
        caller_args a = {.client = client, .procedure = SVC "Slow", .index = 0, .calls = 1};
        CHECK(pthread_create(&t, NULL, caller_thread, &a) == 0);
        CHECK(wait_flag(&f.state, &f.state.started, 5000));
        int64_t t0 = now_ms();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, f.server, 200);
        int64_t took = now_ms() - t0;
        CHECK_MSG(took < 4000, "stop with a 200 ms grace took %lld ms", (long long)took);
        pthread_join(t, NULL);
        CHECK(a.status == CONNECTPLUGIN_ERR_RPC);
        CHECK(wait_flag(&f.state, &f.state.finished, 6000));
        CHECK_MSG(f.state.done_seen == 1, "is_done did not become 1 when the grace period ended");
        CHECK_MSG(f.state.late_status == CONNECTPLUGIN_ERR_CLOSED, "late respond returned %d", f.state.late_status);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* connectplugin_plugin_log outside serve writes one hclog JSON line on fd 2; argument checks; the
   log setters keep user_data until the configuration is freed and finalize it at once on failure. */
static int g_log_frees;
static void count_log_free(void *p) {
    (void)p;
    g_log_frees++;
}
static void ignore_log(const char *plugin, int32_t level, const char *message, const char *timestamp,
                       const char *const *keys, const char *const *values, size_t n, void *user_data) {
    (void)plugin, (void)level, (void)message, (void)timestamp, (void)keys, (void)values, (void)n, (void)user_data;
}

static void test_plugin_log(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fds[1], 2) == 2);
    const char *keys[] = {"key", "quote"};
    const char *values[] = {"greeting", "say \"hi\""};
    connectplugin_status st = connectplugin_plugin_log(CONNECTPLUGIN_LOG_WARN, "disk low", keys, values, 2, NULL);
    connectplugin_status st2 = connectplugin_plugin_log(CONNECTPLUGIN_LOG_TRACE, "no fields", NULL, NULL, 0, NULL);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    CHECK(st == CONNECTPLUGIN_OK && st2 == CONNECTPLUGIN_OK);
    char buf[1024] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
    close(fds[0]);
    CHECK(strncmp(buf, "{\"@level\":\"warn\",\"@message\":\"disk low\",\"@timestamp\":\"", 52) == 0);
    CHECK(strstr(buf, "\"key\":\"greeting\",\"quote\":\"say \\\"hi\\\"\"}\n{\"@level\":\"trace\",\"@message\":\"no fields\"") != NULL);
    CHECK(got > 0 && buf[got - 1] == '\n');

    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_log, 5, "x", NULL, NULL, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_log, -1, "x", NULL, NULL, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_log, CONNECTPLUGIN_LOG_INFO, NULL, NULL, NULL, 0);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_log, CONNECTPLUGIN_LOG_INFO, "x", NULL, NULL, 1);
    const char *bad[] = {NULL};
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_log, CONNECTPLUGIN_LOG_INFO, "x", keys, bad, 1);

    g_log_frees = 0;
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_config_set_logger, NULL, ignore_log, &g_log_frees,
              count_log_free);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_plugin_client_config_set_logger, NULL, ignore_log,
              &g_log_frees, count_log_free);
    CHECK(g_log_frees == 2);
    connectplugin_plugin_config *pc = NULL;
    connectplugin_plugin_client_config *hc = NULL;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_plugin_config_new, "K", "v", &pc);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_plugin_client_config_new, "K", "v", "/bin/true", &hc);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_plugin_config_set_logger, pc, ignore_log, &g_log_frees, count_log_free);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_plugin_client_config_set_logger, hc, ignore_log, &g_log_frees, count_log_free);
    CHECK(g_log_frees == 2);
    /* Replacing a logger releases the old one; NULL restores the default (its user_data is freed at once). */
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_plugin_config_set_logger, pc, NULL, &g_log_frees, count_log_free);
    CHECK(g_log_frees == 4);
    connectplugin_plugin_config_free(pc);
    connectplugin_plugin_client_config_free(hc);
    CHECK(g_log_frees == 5);
}

/* ---------------------------------------------------------------------------------------------- */
/* Runner                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

static const test_case k_tests[] = {
    {"version", test_version},
    {"status_strings", test_status_strings},
    {"code_names", test_code_names},
    {"null_handling", test_null_handling},
    {"metadata", test_metadata},
    {"metadata_concurrent_reads", test_metadata_concurrent_reads},
    {"error_objects", test_error_objects},
    {"server_options", test_server_options},
    {"client_options", test_client_options},
    {"server_lifecycle", test_server_lifecycle},
    {"server_address_lifetime", test_server_address_lifetime},
    {"server_free_without_start", test_server_free_without_start},
    {"unary_echo_matrix", test_unary_echo},
    {"unary_fail_matrix", test_unary_fail},
    {"inprocess_listener", test_inprocess_listener},
    {"all_codes", test_all_codes},
    {"deadline_exceeded", test_deadline},
    {"unavailable", test_unavailable},
    {"call_arguments", test_call_arguments},
    {"message_limits", test_message_limits},
    {"gzip", test_gzip},
    {"concurrency", test_concurrency},
    {"slow_handler_does_not_stall", test_slow_handler_does_not_stall},
    {"graceful_stop", test_graceful_stop},
    {"plugin_log", test_plugin_log},
};

int main(void) { return run_tests(k_tests, sizeof k_tests / sizeof k_tests[0]); }
