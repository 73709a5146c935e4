/*
 * test_stream.c — streaming, protocols, Connect GET and TLS through the C ABI (include/connectplugin.h),
 * from C, against libconnectplugin.so: a server with streaming handlers (server-, client- and bidi
 * streaming) and unary ones, and the library's own client, over Connect, gRPC and gRPC-Web, HTTP/1.1
 * and HTTP/2, proto and JSON, identity and gzip, plaintext and TLS.
 *
 * Every test runs in its own forked process (the parent never calls the library), so a crash or a
 * hang fails that test only; the framework and its environment variables (CTESTS_FILTER,
 * CTESTS_NO_FORK, CTESTS_TIMEOUT, CTESTS_SKIP) are test_support.h's; the big-stream tests get at least
 * 300 s. The TLS tests need the `openssl` command. The last line of output is "c-tests: N passed, M failed";
 * the exit status is 1 if any test failed.
 *
 * Tests that reproduce a library bug (and fail until it is fixed) say so in their comment:
 *   receive_null_out_pointers  a receive with a NULL out pointer is accepted and swallows a message
 *   cancel_unblocks_receive    connectplugin_client_stream_cancel waits for a blocked receive to return
 */
#define _GNU_SOURCE

#include <connectplugin.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"

/* Case-insensitive substring search. */
static bool contains_ci(const char *hay, const char *needle) {
    if (!hay || !needle) return false;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0) return true;
    }
    return false;
}

/* A value of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1. */
static long proc_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long value = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            value = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

/* ---------------------------------------------------------------------------------------------- */
/* Messages                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/*
 * Small messages are JSON strings ("tag-17"), valid in both codecs: the library does not look inside
 * messages, but a JSON peer would. Big ones (proto only) are BIG_SIZE bytes: the message index as 8
 * little-endian bytes, then a fixed pattern.
 */
#define BIG_SIZE (64 * 1024)
static uint8_t g_pattern[BIG_SIZE];

static void pattern_init(void) {
    for (size_t i = 0; i < BIG_SIZE; i++) g_pattern[i] = (uint8_t)((i * 7 + 13) & 0xff);
}

static void big_fill(uint8_t *buf, uint64_t index) {
    memcpy(buf, g_pattern, BIG_SIZE);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(index >> (8 * b));
}

/* The index of a big message, or -1 if it is not a well-formed big message. */
static int64_t big_index(const uint8_t *data, size_t len) {
    if (len != BIG_SIZE || !data) return -1;
    if (memcmp(data + 8, g_pattern + 8, BIG_SIZE - 8) != 0) return -1;
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)data[b] << (8 * b);
    return (int64_t)v;
}

static size_t fmt_msg(char *buf, size_t size, const char *tag, long i) {
    int n = snprintf(buf, size, "\"%s-%ld\"", tag, i);
    return n < 0 ? 0 : (size_t)n;
}

static bool msg_is(const uint8_t *data, size_t len, const char *tag, long i) {
    char want[64];
    size_t n = fmt_msg(want, sizeof want, tag, i);
    return data && len == n && memcmp(data, want, n) == 0;
}

/* A request that carries a number: "\"N\"". */
static size_t fmt_num(char *buf, size_t size, long n) {
    int k = snprintf(buf, size, "\"%ld\"", n);
    return k < 0 ? 0 : (size_t)k;
}

static long parse_num(const uint8_t *data, size_t len) {
    char tmp[32];
    if (!data || len < 3 || len >= sizeof tmp || data[0] != '"' || data[len - 1] != '"') return -1;
    memcpy(tmp, data + 1, len - 2);
    tmp[len - 2] = '\0';
    char *end = NULL;
    long v = strtol(tmp, &end, 10);
    return end && *end == '\0' ? v : -1;
}

static const uint8_t k_detail0[] = {0x0a, 0x03, 'a', 'b', 'c', 0x12, 0x02, 'x', 'y'};
static const uint8_t k_detail1[] = {0x00, 0x01, 0xfe, 0xff};
#define FAIL_MESSAGE "stream failed: \xc3\xbcnic\xc3\xb8" "de \"quoted\" \\ and\nnewline"

/* ---------------------------------------------------------------------------------------------- */
/* The test server: streaming and unary handlers written against the ABI                          */
/* ---------------------------------------------------------------------------------------------- */

#define SVC "/test.v1.StreamService/"
#define STATE_MAGIC 0x57ea3a11u

typedef struct state {
    unsigned magic;
    atomic_int calls;
    atomic_int handler_failures;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    /* Wait: blocks in receive until the call ends. */
    bool wait_started;
    bool wait_finished;
    connectplugin_status wait_recv_status;
    connectplugin_code wait_recv_code;
    int64_t wait_remaining_ms;
    int32_t wait_done_seen;
    connectplugin_status wait_send_status;
    /* Flood: sends big messages as fast as the client takes them. */
    atomic_long flood_sent;
    bool flood_finished;
    connectplugin_status flood_last_status;
    /* Stall: does not read until released. */
    bool stall_started;
    bool stall_release;
    atomic_long stall_received;
    /* Sleepy: ignores the call for a while. */
    bool sleepy_finished;
} state;

static state *state_of(void *user_data) {
    state *st = user_data;
    if (!st || st->magic != STATE_MAGIC) {
        fprintf(stderr, "    FAIL [%s] handler got a wrong user_data %p\n", g_test_name, user_data);
        abort();
    }
    atomic_fetch_add(&st->calls, 1);
    return st;
}

static void state_init(state *st) {
    memset(st, 0, sizeof *st);
    st->magic = STATE_MAGIC;
    pthread_mutex_init(&st->mutex, NULL);
    pthread_cond_init(&st->cond, NULL);
}

static void state_reset(state *st) {
    pthread_mutex_lock(&st->mutex);
    st->wait_started = st->wait_finished = false;
    st->wait_recv_status = 12345;
    st->wait_recv_code = -1;
    st->wait_remaining_ms = -2;
    st->wait_done_seen = -1;
    st->wait_send_status = 12345;
    atomic_store(&st->flood_sent, 0);
    st->flood_finished = false;
    st->flood_last_status = 12345;
    st->stall_started = st->stall_release = false;
    atomic_store(&st->stall_received, 0);
    st->sleepy_finished = false;
    pthread_mutex_unlock(&st->mutex);
}

static void state_set(state *st, bool *flag) {
    pthread_mutex_lock(&st->mutex);
    *flag = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->mutex);
}

/* Waits until *flag is true (at most timeout_ms). */
static bool wait_flag(state *st, const bool *flag, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&st->mutex);
    while (!*flag) {
        if (pthread_cond_timedwait(&st->cond, &st->mutex, &deadline) == ETIMEDOUT) break;
    }
    bool ok = *flag;
    pthread_mutex_unlock(&st->mutex);
    return ok;
}

static void stream_header(state *st, connectplugin_stream *s, const char *key, const char *value) {
    HOK(st, connectplugin_stream_add_response_header, s, key, (const uint8_t *)value, strlen(value));
}

static void stream_trailer(state *st, connectplugin_stream *s, const char *key, const char *value) {
    HOK(st, connectplugin_stream_add_response_trailer, s, key, (const uint8_t *)value, strlen(value));
}

/* Reports what the handler sees as response headers: x-protocol, x-codec, x-kind, x-procedure, x-echo. */
static void describe_stream(state *st, connectplugin_stream *s, connectplugin_method_kind want_kind) {
    const char *protocol = connectplugin_stream_protocol(s);
    const char *codec = connectplugin_stream_codec(s);
    HCHECK(st, streq(protocol, "connect") || streq(protocol, "grpc") || streq(protocol, "grpcweb"));
    HCHECK(st, streq(codec, "proto") || streq(codec, "json"));
    HCHECK(st, connectplugin_stream_kind(s) == want_kind);
    HCHECK(st, connectplugin_stream_is_done(s) == 0);
    const char *procedure = connectplugin_stream_procedure(s);
    HCHECK(st, procedure && strncmp(procedure, SVC, strlen(SVC)) == 0);
    stream_header(st, s, "x-protocol", protocol ? protocol : "(null)");
    stream_header(st, s, "x-codec", codec ? codec : "(null)");
    char kind[16];
    snprintf(kind, sizeof kind, "%d", (int)connectplugin_stream_kind(s));
    stream_header(st, s, "x-kind", kind);
    stream_header(st, s, "x-procedure", procedure ? procedure : "(null)");
    const connectplugin_metadata *md = connectplugin_stream_request_headers(s);
    HCHECK(st, md != NULL);
    size_t len = 0;
    const uint8_t *echo = connectplugin_metadata_lookup(md, "x-echo", &len);
    if (echo) {
        char buf[128];
        snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)echo);
        stream_header(st, s, "x-echo", buf);
    }
}

/* Receives in a handler, checking the error contract. */
static connectplugin_status h_recv(state *st, connectplugin_stream *s, const uint8_t **data, size_t *len,
                                   connectplugin_code *code) {
    connectplugin_error *err = ERR_SENTINEL;
    *data = NULL;
    *len = 0;
    connectplugin_status rc = connectplugin_stream_receive(s, data, len, &err);
    if (code) *code = CONNECTPLUGIN_CODE_OK;
    if (rc == CONNECTPLUGIN_OK || rc == CONNECTPLUGIN_EOF) {
        HCHECK(st, err == NULL);
        HCHECK(st, rc == CONNECTPLUGIN_EOF || *len == 0 || *data != NULL);
    } else {
        HCHECK(st, err != NULL && err != ERR_SENTINEL);
        if (err != ERR_SENTINEL && err) {
            HCHECK(st, connectplugin_error_status(err) == rc);
            if (code) *code = connectplugin_error_code(err);
            connectplugin_error_free(err);
        }
    }
    return rc;
}

static connectplugin_status h_send(connectplugin_stream *s, const void *data, size_t len) {
    connectplugin_error *err = NULL;
    connectplugin_status rc = connectplugin_stream_send(s, data, len, &err);
    connectplugin_error_free(err);
    return rc;
}

static const char *status_word(connectplugin_status rc) {
    return rc == CONNECTPLUGIN_OK ? "ok" : rc == CONNECTPLUGIN_EOF ? "eof" : "error";
}

/* ServerStream: one request "N"; N messages "s-i"; trailer x-second says what a second receive gave. */
static void handle_server_stream(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    describe_stream(st, s, CONNECTPLUGIN_SERVER_STREAM);
    const uint8_t *data;
    size_t len;
    connectplugin_status rc = h_recv(st, s, &data, &len, NULL);
    if (rc != CONNECTPLUGIN_OK) {
        HOK(st, connectplugin_stream_fail, s, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, "no request");
        return;
    }
    long n = parse_num(data, len);
    connectplugin_status second = h_recv(st, s, &data, &len, NULL);
    connectplugin_status third = h_recv(st, s, &data, &len, NULL);
    HCHECK(st, second != CONNECTPLUGIN_OK && third != CONNECTPLUGIN_OK);
    stream_trailer(st, s, "x-second", status_word(second));
    for (long i = 0; i < n; i++) {
        char msg[64];
        size_t mlen = fmt_msg(msg, sizeof msg, "s", i);
        if (h_send(s, msg, mlen) != CONNECTPLUGIN_OK) break;
        if (i == 0) {
            /* The headers went out with the first message: too late for another one. */
            connectplugin_error *err = NULL;
            HCHECK(st, connectplugin_stream_add_response_header(s, "x-late", (const uint8_t *)"1", 1, &err) ==
                           CONNECTPLUGIN_ERR_STATE);
            connectplugin_error_free(err);
        }
    }
    char buf[32];
    snprintf(buf, sizeof buf, "sent-%ld", n);
    stream_trailer(st, s, "x-trailer", buf);
}

/* ClientStream: reads "c-i" until EOF; answers with "count". */
static void handle_client_stream(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    describe_stream(st, s, CONNECTPLUGIN_CLIENT_STREAM);
    long count = 0, bad = 0;
    connectplugin_status rc;
    const uint8_t *data;
    size_t len;
    while ((rc = h_recv(st, s, &data, &len, NULL)) == CONNECTPLUGIN_OK) {
        if (!msg_is(data, len, "c", count) && !msg_is(data, len, "m", count)) bad++;
        count++;
    }
    if (rc != CONNECTPLUGIN_EOF) return; /* the call failed; nothing to answer */
    HCHECK(st, bad == 0);
    HCHECK(st, h_recv(st, s, &data, &len, NULL) == CONNECTPLUGIN_EOF); /* EOF again */
    char buf[32];
    size_t n = fmt_num(buf, sizeof buf, bad ? -1 : count);
    connectplugin_status sent = h_send(s, buf, n);
    HCHECK(st, sent == CONNECTPLUGIN_OK);
    snprintf(buf, sizeof buf, "received-%ld", count);
    stream_trailer(st, s, "x-trailer", buf);
}

/* Bidi: echoes every message as it arrives; ends at EOF. */
static void handle_bidi(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    describe_stream(st, s, CONNECTPLUGIN_BIDI_STREAM);
    long count = 0;
    const uint8_t *data;
    size_t len;
    connectplugin_status rc;
    while ((rc = h_recv(st, s, &data, &len, NULL)) == CONNECTPLUGIN_OK) {
        if (h_send(s, data, len) != CONNECTPLUGIN_OK) return;
        count++;
    }
    if (rc != CONNECTPLUGIN_EOF) return;
    char buf[32];
    snprintf(buf, sizeof buf, "echoed-%ld", count);
    stream_trailer(st, s, "x-trailer", buf);
}

/* LenientBidi: echoes like Bidi, without checks (for calls the client abandons at any moment). */
static void handle_lenient_bidi(connectplugin_stream *s, void *user_data) {
    state_of(user_data);
    const uint8_t *data;
    size_t len;
    connectplugin_error *err = NULL;
    while (connectplugin_stream_receive(s, &data, &len, &err) == CONNECTPLUGIN_OK) {
        if (h_send(s, data, len) != CONNECTPLUGIN_OK) break;
    }
    connectplugin_error_free(err);
}

/* Fail (server stream): request "K"; sends K messages "f-i", then fails with details and metadata. */
static void handle_fail(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    const uint8_t *data;
    size_t len;
    long k = h_recv(st, s, &data, &len, NULL) == CONNECTPLUGIN_OK ? parse_num(data, len) : 0;
    stream_header(st, s, "x-fail-header", "h");
    for (long i = 0; i < k; i++) {
        char msg[64];
        size_t mlen = fmt_msg(msg, sizeof msg, "f", i);
        HCHECK(st, h_send(s, msg, mlen) == CONNECTPLUGIN_OK);
    }
    stream_trailer(st, s, "x-fail-trailer", "t");
    HOK(st, connectplugin_stream_add_error_detail, s, "google.rpc.ErrorInfo", k_detail0, sizeof k_detail0);
    HOK(st, connectplugin_stream_add_error_detail, s, "test.v1.Blob", k_detail1, sizeof k_detail1);
    HOK(st, connectplugin_stream_fail, s, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, FAIL_MESSAGE);
    /* After fail: no more sends or a second end. */
    connectplugin_error *err = NULL;
    HCHECK(st, connectplugin_stream_send(s, (const uint8_t *)"\"x\"", 3, &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
    err = NULL;
    HCHECK(st, connectplugin_stream_fail(s, CONNECTPLUGIN_CODE_INTERNAL, "again", &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
    err = NULL;
    HCHECK(st, connectplugin_stream_finish(s, &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
}

/* FailBidi: echoes the first message, then fails with ABORTED (no details). */
static void handle_fail_bidi(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    const uint8_t *data;
    size_t len;
    if (h_recv(st, s, &data, &len, NULL) == CONNECTPLUGIN_OK) HCHECK(st, h_send(s, data, len) == CONNECTPLUGIN_OK);
    stream_trailer(st, s, "x-bidi-trailer", "bt");
    HOK(st, connectplugin_stream_fail, s, CONNECTPLUGIN_CODE_ABORTED, "bidi aborted");
}

/* Empty (server stream): returns at once, without reading or sending. */
static void handle_empty(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    stream_trailer(st, s, "x-trailer", "empty");
}

/* Finish (bidi): sends one message, finishes explicitly, then checks that sends are refused. */
static void handle_finish(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    HCHECK(st, h_send(s, "\"one\"", 5) == CONNECTPLUGIN_OK);
    HOK(st, connectplugin_stream_finish, s);
    connectplugin_error *err = NULL;
    HCHECK(st, connectplugin_stream_send(s, (const uint8_t *)"\"two\"", 5, &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
    err = NULL;
    HCHECK(st, connectplugin_stream_fail(s, CONNECTPLUGIN_CODE_INTERNAL, "late", &err) == CONNECTPLUGIN_ERR_STATE);
    connectplugin_error_free(err);
}

/* Wait (bidi): reads until the call ends with an error; records how it ended. */
static void handle_wait(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    pthread_mutex_lock(&st->mutex);
    st->wait_remaining_ms = connectplugin_stream_timeout_remaining_ms(s);
    pthread_mutex_unlock(&st->mutex);
    if (connectplugin_metadata_lookup(connectplugin_stream_request_headers(s), "x-send-headers", NULL))
        HOK(st, connectplugin_stream_send_headers, s);
    state_set(st, &st->wait_started);
    const uint8_t *data;
    size_t len;
    connectplugin_code code = CONNECTPLUGIN_CODE_OK;
    connectplugin_status rc;
    int64_t t0 = now_ms();
    while ((rc = h_recv(st, s, &data, &len, &code)) == CONNECTPLUGIN_OK || rc == CONNECTPLUGIN_EOF) {
        if (rc == CONNECTPLUGIN_EOF) {
            /* The client half-closed: keep the call open until it ends (bounded). */
            while (!connectplugin_stream_is_done(s) && now_ms() - t0 < 10000) sleep_ms(10);
            break;
        }
    }
    int32_t done = connectplugin_stream_is_done(s);
    connectplugin_status send_rc = h_send(s, "\"late\"", 6);
    pthread_mutex_lock(&st->mutex);
    st->wait_recv_status = rc;
    st->wait_recv_code = code;
    st->wait_done_seen = done;
    st->wait_send_status = send_rc;
    pthread_mutex_unlock(&st->mutex);
    state_set(st, &st->wait_finished);
}

/* Sleepy (server stream): ignores the call for 3 s, then returns. */
static void handle_sleepy(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    (void)s;
    sleep_ms(3000);
    state_set(st, &st->sleepy_finished);
}

/* Flood (server stream, proto): request "N"; sends N big messages, counting those sent. */
static void handle_flood(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    const uint8_t *data;
    size_t len;
    long n = h_recv(st, s, &data, &len, NULL) == CONNECTPLUGIN_OK ? parse_num(data, len) : 0;
    uint8_t *buf = malloc(BIG_SIZE);
    connectplugin_status rc = CONNECTPLUGIN_OK;
    for (long i = 0; buf && i < n; i++) {
        big_fill(buf, (uint64_t)i);
        rc = h_send(s, buf, BIG_SIZE);
        if (rc != CONNECTPLUGIN_OK) break;
        atomic_fetch_add(&st->flood_sent, 1);
    }
    free(buf);
    pthread_mutex_lock(&st->mutex);
    st->flood_last_status = rc;
    pthread_mutex_unlock(&st->mutex);
    state_set(st, &st->flood_finished);
}

/* Stall (client stream): reads nothing until released, then counts big messages and answers "count". */
static void handle_stall(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    state_set(st, &st->stall_started);
    wait_flag(st, &st->stall_release, 30000);
    const uint8_t *data;
    size_t len;
    long count = 0, bad = 0;
    connectplugin_status rc;
    while ((rc = h_recv(st, s, &data, &len, NULL)) == CONNECTPLUGIN_OK) {
        if (big_index(data, len) != count) bad++;
        count++;
        atomic_store(&st->stall_received, count);
    }
    if (rc != CONNECTPLUGIN_EOF) return;
    HCHECK(st, bad == 0);
    char buf[32];
    size_t n = fmt_num(buf, sizeof buf, count);
    HCHECK(st, h_send(s, buf, n) == CONNECTPLUGIN_OK);
}

/* NullOut (bidi): receives with NULL out pointers (refused, must not consume), then echoes normally. */
static void handle_null_out(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    const uint8_t *data = NULL;
    size_t len = 0;
    connectplugin_error *err = NULL;
    connectplugin_status a = connectplugin_stream_receive(s, NULL, &len, &err);
    connectplugin_error_free(err);
    err = NULL;
    connectplugin_status b = connectplugin_stream_receive(s, &data, NULL, &err);
    connectplugin_error_free(err);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "\"%d,%d\"", (int)a, (int)b);
    HCHECK(st, h_send(s, buf, (size_t)n) == CONNECTPLUGIN_OK);
    connectplugin_status rc;
    while ((rc = h_recv(st, s, &data, &len, NULL)) == CONNECTPLUGIN_OK) {
        if (h_send(s, data, len) != CONNECTPLUGIN_OK) return;
    }
}

/* Peer (server stream): one message with the TLS peer's subject ("none" without a client certificate). */
static void handle_peer_stream(connectplugin_stream *s, void *user_data) {
    state *st = state_of(user_data);
    const connectplugin_metadata *peer = connectplugin_stream_peer(s);
    char buf[512] = "\"none\"";
    if (peer) {
        const uint8_t *subject = connectplugin_metadata_lookup(peer, "subject", NULL);
        snprintf(buf, sizeof buf, "\"%s\"", subject ? (const char *)subject : "(no subject)");
    }
    HCHECK(st, h_send(s, buf, strlen(buf)) == CONNECTPLUGIN_OK);
}

/* Unary echo (Unary, Get, Post): echoes the request; x-protocol and the TLS peer in response headers. */
static void handle_unary(connectplugin_call *call, void *user_data) {
    state *st = state_of(user_data);
    size_t len = 0;
    const uint8_t *req = connectplugin_call_request(call, &len);
    const char *protocol = connectplugin_call_protocol(call);
    HCHECK(st, streq(protocol, "connect") || streq(protocol, "grpc") || streq(protocol, "grpcweb"));
    HOK(st, connectplugin_call_add_response_header, call, "x-protocol", (const uint8_t *)(protocol ? protocol : "?"),
        protocol ? strlen(protocol) : 1);
    const connectplugin_metadata *peer = connectplugin_call_peer(call);
    if (peer) {
        static const char *keys[] = {"subject", "dns", "uri", "ip"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            for (size_t i = 0; i < connectplugin_metadata_count(peer); i++) {
                const char *key = NULL;
                const uint8_t *value = NULL;
                size_t vlen = 0;
                if (connectplugin_metadata_get(peer, i, &key, &value, &vlen) != CONNECTPLUGIN_OK) continue;
                if (!streq(key, keys[k])) continue;
                char hk[32];
                snprintf(hk, sizeof hk, "x-peer-%s", keys[k]);
                HOK(st, connectplugin_call_add_response_header, call, hk, value, vlen);
            }
        }
    } else {
        HOK(st, connectplugin_call_add_response_header, call, "x-peer", (const uint8_t *)"none", 4);
    }
    HOK(st, connectplugin_call_respond, call, req, len);
}

typedef struct fixture {
    connectplugin_server *server;
    state st;
    char url[64];
    char host_port[64];
    int port;
} fixture;

typedef struct stream_route {
    const char *name;
    connectplugin_method_kind kind;
    connectplugin_stream_handler handler;
} stream_route;

static const stream_route k_stream_routes[] = {
    {SVC "ServerStream", CONNECTPLUGIN_SERVER_STREAM, handle_server_stream},
    {SVC "ClientStream", CONNECTPLUGIN_CLIENT_STREAM, handle_client_stream},
    {SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, handle_bidi},
    {SVC "LenientBidi", CONNECTPLUGIN_BIDI_STREAM, handle_lenient_bidi},
    {SVC "Fail", CONNECTPLUGIN_SERVER_STREAM, handle_fail},
    {SVC "FailBidi", CONNECTPLUGIN_BIDI_STREAM, handle_fail_bidi},
    {SVC "Empty", CONNECTPLUGIN_SERVER_STREAM, handle_empty},
    {SVC "Finish", CONNECTPLUGIN_BIDI_STREAM, handle_finish},
    {SVC "Wait", CONNECTPLUGIN_BIDI_STREAM, handle_wait},
    {SVC "Sleepy", CONNECTPLUGIN_SERVER_STREAM, handle_sleepy},
    {SVC "Flood", CONNECTPLUGIN_SERVER_STREAM, handle_flood},
    {SVC "Stall", CONNECTPLUGIN_CLIENT_STREAM, handle_stall},
    {SVC "Peer", CONNECTPLUGIN_SERVER_STREAM, handle_peer_stream},
    {SVC "NullOut", CONNECTPLUGIN_BIDI_STREAM, handle_null_out},
};

/* Registers every handler on @p server (Get is marked free of side effects, Post is not). */
static bool register_all(connectplugin_server *server, state *st) {
    for (size_t i = 0; i < sizeof k_stream_routes / sizeof k_stream_routes[0]; i++) {
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_stream, server, k_stream_routes[i].name,
                       k_stream_routes[i].kind, k_stream_routes[i].handler, st, NULL))
            return false;
    }
    static const char *unary[] = {SVC "Unary", SVC "Get", SVC "Post"};
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
        if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, unary[i], handle_unary, st, NULL))
            return false;
    }
    return EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_set_no_side_effects, server, SVC "Get");
}

static bool set_url(fixture *f, const char *scheme) {
    const char *addr = connectplugin_server_address(f->server, 0);
    if (!CHECK(addr != NULL)) return false;
    snprintf(f->host_port, sizeof f->host_port, "%s", addr);
    snprintf(f->url, sizeof f->url, "%s://%s", scheme, addr);
    const char *colon = strrchr(addr, ':');
    f->port = colon ? atoi(colon + 1) : 0;
    return true;
}

/* A started plaintext server on 127.0.0.1:0 with every handler. */
static bool fixture_start(fixture *f) {
    memset(f, 0, sizeof *f);
    state_init(&f->st);
    state_reset(&f->st);
    connectplugin_server_options *so = connectplugin_server_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_options_set_handler_threads, so, 32);
    bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, so, &f->server);
    connectplugin_server_options_free(so);
    if (!ok) return false;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, f->server, "127.0.0.1:0")) return false;
    if (!register_all(f->server, &f->st)) return false;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, f->server)) return false;
    return set_url(f, "http");
}

static void fixture_stop(fixture *f) {
    if (f->server) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, f->server, 1000);
    connectplugin_server_free(f->server);
    f->server = NULL;
    CHECK_MSG(atomic_load(&f->st.handler_failures) == 0, "%d check(s) failed inside handlers",
              atomic_load(&f->st.handler_failures));
    pthread_mutex_destroy(&f->st.mutex);
    pthread_cond_destroy(&f->st.cond);
}

/* ---------------------------------------------------------------------------------------------- */
/* Client helpers                                                                                 */
/* ---------------------------------------------------------------------------------------------- */

typedef struct combo {
    const char *protocol;
    int32_t http;
    const char *codec;
    const char *compression;
} combo;

#define MAX_COMBOS 24
/* Every protocol x HTTP version (gRPC: HTTP/2 only) x codec x compression. */
static size_t all_combos(combo *out) {
    static const char *protocols[] = {"connect", "grpc", "grpcweb"};
    static const char *codecs[] = {"proto", "json"};
    static const char *compressions[] = {"identity", "gzip"};
    size_t n = 0;
    for (size_t p = 0; p < 3; p++)
        for (int32_t http = 1; http <= 2; http++) {
            if (streq(protocols[p], "grpc") && http != CONNECTPLUGIN_HTTP_2) continue;
            for (size_t c = 0; c < 2; c++)
                for (size_t z = 0; z < 2; z++) out[n++] = (combo){protocols[p], http, codecs[c], compressions[z]};
        }
    return n;
}

/* Protocol x HTTP version only (proto, identity). */
static size_t transport_combos(combo *out) {
    static const combo k[] = {
        {"connect", CONNECTPLUGIN_HTTP_2, "proto", "identity"}, {"connect", CONNECTPLUGIN_HTTP_1_1, "proto", "identity"},
        {"grpc", CONNECTPLUGIN_HTTP_2, "proto", "identity"},    {"grpcweb", CONNECTPLUGIN_HTTP_2, "proto", "identity"},
        {"grpcweb", CONNECTPLUGIN_HTTP_1_1, "proto", "identity"},
    };
    memcpy(out, k, sizeof k);
    return sizeof k / sizeof k[0];
}

static const char *http_name(int32_t http) { return http == CONNECTPLUGIN_HTTP_2 ? "2" : "1.1"; }

/* A client for @p url speaking @p c (NULL on failure, already reported). */
static connectplugin_client *make_client(const char *url, const combo *c, const connectplugin_tls_options *tls,
                                         int64_t timeout_ms) {
    connectplugin_client_options *o = connectplugin_client_options_new();
    if (!CHECK(o != NULL)) return NULL;
    connectplugin_client *client = NULL;
    bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, c->protocol) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_codec, o, c->codec) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, o, c->http) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_compression, o, c->compression) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_timeout_ms, o, timeout_ms) &&
              (!tls || EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_tls, o, tls)) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, url, o, &client);
    connectplugin_client_options_free(o);
    return ok ? client : NULL;
}

static connectplugin_client_stream *open_stream(connectplugin_client *client, const char *procedure,
                                                connectplugin_method_kind kind,
                                                const connectplugin_call_options *options) {
    connectplugin_client_stream *s = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_open_stream, client, procedure, kind, options, &s))
        return NULL;
    CHECK(s != NULL);
    return s;
}

/*
 * Receives with the contract checks: OK → a message and *out_error NULL; EOF → *out_error NULL; an
 * error → an error object with the same status (handed back in *err; the caller frees it).
 */
static connectplugin_status recv_msg(connectplugin_client_stream *s, const uint8_t **data, size_t *len,
                                     connectplugin_error **err) {
    *data = NULL;
    *len = 0;
    *err = ERR_SENTINEL;
    connectplugin_status rc = connectplugin_client_stream_receive(s, data, len, err);
    if (rc == CONNECTPLUGIN_OK || rc == CONNECTPLUGIN_EOF) {
        CHECK_MSG(*err == NULL, "receive returned %d (%s) without setting *out_error to NULL", rc,
                  connectplugin_status_string(rc));
        if (rc == CONNECTPLUGIN_OK) CHECK(*len == 0 || *data != NULL);
        *err = NULL;
    } else {
        CHECK_MSG(*err != NULL && *err != ERR_SENTINEL, "receive failed (%d) without an error object", rc);
        if (*err == ERR_SENTINEL) *err = NULL;
        if (*err) CHECK(connectplugin_error_status(*err) == rc);
    }
    return rc;
}

static const char *err_text(const connectplugin_error *err) { return err ? connectplugin_error_message(err) : "(none)"; }
static const char *code_text(const connectplugin_error *err) {
    return err ? connectplugin_code_name(connectplugin_error_code(err)) : "(none)";
}

/* Receives and expects EOF (and EOF again twice more). */
static void expect_eof(connectplugin_client_stream *s, const char *what) {
    for (int k = 0; k < 3; k++) {
        const uint8_t *data;
        size_t len;
        connectplugin_error *err;
        connectplugin_status rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_EOF, "%s: receive #%d after the last message returned %d (%s: %s)", what, k + 1,
                  rc, code_text(err), err_text(err));
        connectplugin_error_free(err);
    }
}

static bool md_has_text(const connectplugin_metadata *md, const char *key, const char *want) {
    size_t len = 0;
    const uint8_t *v = connectplugin_metadata_lookup(md, key, &len);
    if (!v) {
        fprintf(stderr, "      metadata has no \"%s\"\n", key);
        return false;
    }
    if (len != strlen(want) || memcmp(v, want, len) != 0) {
        fprintf(stderr, "      metadata \"%s\" = \"%.*s\", want \"%s\"\n", key, (int)len, (const char *)v, want);
        return false;
    }
    return true;
}

static void send_msg(connectplugin_client_stream *s, const char *tag, long i) {
    char buf[64];
    size_t n = fmt_msg(buf, sizeof buf, tag, i);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_send, s, (const uint8_t *)buf, n);
}

static void send_num(connectplugin_client_stream *s, long v) {
    char buf[32];
    size_t n = fmt_num(buf, sizeof buf, v);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_send, s, (const uint8_t *)buf, n);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: arguments                                                                               */
/* ---------------------------------------------------------------------------------------------- */

static void count_free(void *user_data) { atomic_fetch_add((atomic_int *)user_data, 1); }

static void test_null_arguments(void) {
    /* *_free(NULL) and cancel(NULL) are no-ops. */
    connectplugin_tls_options_free(NULL);
    connectplugin_client_stream_free(NULL);
    connectplugin_client_stream_cancel(NULL);
    connectplugin_call_options_free(NULL);
    connectplugin_client_options_free(NULL);
    connectplugin_server_free(NULL);
    connectplugin_response_free(NULL);

    /* TLS options. */
    const uint8_t pem[] = "x";
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_files, NULL, "c", "k");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_pem, NULL, pem, 1, pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_ca_file, NULL, "ca");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_ca_pem, NULL, pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_require_client_cert, NULL, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_server_name, NULL, "x");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_insecure_skip_verify, NULL, 1);
    CHECK(connectplugin_tls_options_set_ca_file(NULL, "ca", NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    connectplugin_tls_options *tls = connectplugin_tls_options_new();
    if (CHECK(tls != NULL)) {
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_files, tls, NULL, "k");
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_files, tls, "c", NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_pem, tls, NULL, 1, pem, 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_cert_pem, tls, pem, 1, NULL, 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_ca_file, tls, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_ca_pem, tls, NULL, 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_tls_options_set_server_name, tls, NULL);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_require_client_cert, tls, 1);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_insecure_skip_verify, tls, 0);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_server_name, tls, "localhost");
    }

    /* Server. */
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tls, NULL, "127.0.0.1:0", tls);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, NULL, SVC "X",
              CONNECTPLUGIN_BIDI_STREAM, handle_bidi, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_set_no_side_effects, NULL, SVC "X");
    connectplugin_server *server = NULL;
    if (EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) {
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tls, server, NULL, tls);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tls, server, "127.0.0.1:0", NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, NULL,
                  CONNECTPLUGIN_BIDI_STREAM, handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, SVC "X",
                  CONNECTPLUGIN_BIDI_STREAM, NULL, NULL, NULL);
        /* A bad kind; the finalizer runs straight away when registration fails. */
        atomic_int freed = 0;
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, SVC "X", 99,
                  handle_bidi, &freed, count_free);
        CHECK(atomic_load(&freed) == 1);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, SVC "X",
                  CONNECTPLUGIN_UNARY, handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, "no-slash",
                  CONNECTPLUGIN_BIDI_STREAM, handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_set_no_side_effects, server, NULL);
        /* Marking an unregistered procedure is refused. */
        {
            connectplugin_error *err;
            connectplugin_status rc = CALL_ST(&err, connectplugin_server_set_no_side_effects, server, SVC "Nope");
            CHECK_MSG(rc != CONNECTPLUGIN_OK, "set_no_side_effects on an unregistered procedure returned OK");
            if (err != ERR_SENTINEL) connectplugin_error_free(err);
        }
        /* Duplicates: a stream procedure registered twice, or as unary and stream. */
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_stream, server, SVC "Dup", CONNECTPLUGIN_BIDI_STREAM,
                  handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_stream, server, SVC "Dup",
                  CONNECTPLUGIN_SERVER_STREAM, handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary, server, SVC "Dup",
                  handle_unary, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_register_stream, server, SVC "Late",
                  CONNECTPLUGIN_BIDI_STREAM, handle_bidi, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_set_no_side_effects, server, SVC "Dup");
        connectplugin_server_free(server);
    }

    /* Inside-handler accessors with NULL: no crash, NULL/0 results, INVALID_ARGUMENT statuses. */
    CHECK(connectplugin_call_protocol(NULL) == NULL);
    CHECK(connectplugin_call_peer(NULL) == NULL);
    CHECK(connectplugin_stream_procedure(NULL) == NULL);
    CHECK(connectplugin_stream_codec(NULL) == NULL);
    CHECK(connectplugin_stream_protocol(NULL) == NULL);
    (void)connectplugin_stream_kind(NULL);
    CHECK(connectplugin_stream_request_headers(NULL) == NULL);
    CHECK(connectplugin_stream_peer(NULL) == NULL);
    (void)connectplugin_stream_timeout_remaining_ms(NULL);
    (void)connectplugin_stream_is_done(NULL);
    const uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_receive, NULL, &data, &len);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_send, NULL, pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_send_headers, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_add_response_header, NULL, "k", pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_add_response_trailer, NULL, "k", pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_add_error_detail, NULL, "t", pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_fail, NULL, 3, "m");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_finish, NULL);
    CHECK(connectplugin_stream_finish(NULL, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);

    /* Client options and call options. */
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_protocol, NULL, "grpc");
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_tls, NULL, tls);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_use_get, NULL, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_options_set_no_side_effects, NULL, 1);
    connectplugin_client_options *o = connectplugin_client_options_new();
    if (CHECK(o != NULL)) {
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_protocol, o, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_options_set_tls, o, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_UNSUPPORTED, connectplugin_client_options_set_protocol, o, "grpc-web-text");
        EXPECT_ST(CONNECTPLUGIN_ERR_UNSUPPORTED, connectplugin_client_options_set_protocol, o, "");
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, "grpcweb");
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, "grpc");
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, "connect");
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_use_get, o, 1);
        if (tls) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_tls, o, tls);
        connectplugin_client_options_free(o);
    }
    connectplugin_call_options *co = connectplugin_call_options_new();
    if (CHECK(co != NULL)) {
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_no_side_effects, co, 1);
        connectplugin_call_options_free(co);
    }

    /* Client streams. */
    connectplugin_client_stream *s = NULL;
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_open_stream, NULL, SVC "Bidi",
              CONNECTPLUGIN_BIDI_STREAM, NULL, &s);
    CHECK(s == NULL);
    connectplugin_client *client = NULL;
    if (EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, "http://127.0.0.1:9", NULL, &client)) {
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_open_stream, client, NULL,
                  CONNECTPLUGIN_BIDI_STREAM, NULL, &s);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_open_stream, client, SVC "Bidi",
                  CONNECTPLUGIN_BIDI_STREAM, NULL, NULL);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_open_stream, client, SVC "Bidi", 42, NULL,
                  &s);
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_open_stream, client, "", CONNECTPLUGIN_BIDI_STREAM,
                  NULL, &s);
        CHECK(s == NULL);
        connectplugin_client_free(client);
    }
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_send, NULL, pem, 1);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_close_send, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_receive, NULL, &data, &len);
    CHECK(connectplugin_client_stream_receive(NULL, &data, &len, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
    CHECK(connectplugin_client_stream_headers(NULL) == NULL || connectplugin_metadata_count(connectplugin_client_stream_headers(NULL)) == 0);
    CHECK(connectplugin_client_stream_trailers(NULL) == NULL || connectplugin_metadata_count(connectplugin_client_stream_trailers(NULL)) == 0);
    connectplugin_tls_options_free(tls);
}

/*
 * NULL out-pointers and NULL data on a live stream. A receive with a NULL out pointer must be refused
 * with INVALID_ARGUMENT and must not consume the pending message (the call has a 5 s timeout so that a
 * swallowed message fails the test instead of hanging it).
 * LIBRARY BUG (fails until fixed): connectplugin_client_stream_receive and connectplugin_stream_receive
 * accept NULL out_data/out_len, return OK and drop the message (CABI+Stream.swift only writes through
 * the pointers when they are non-NULL).
 */
static bool expect_msg(connectplugin_client_stream *s, const char *tag, long i, const char *what);

static void test_receive_null_out_pointers(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    static const combo k[] = {{"connect", CONNECTPLUGIN_HTTP_2, "proto", "identity"},
                              {"grpc", CONNECTPLUGIN_HTTP_2, "proto", "identity"}};
    for (size_t ci = 0; ci < sizeof k / sizeof k[0]; ci++) {
        connectplugin_client *client = make_client(f.url, &k[ci], NULL, 5000);
        if (!client) continue;
        connectplugin_client_stream *s = open_stream(client, SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
        if (s) {
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_send, s, NULL, 3);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_send, s, NULL, 0); /* an empty message */
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_OK && len == 0, "empty message echo: %d len %zu (%s)", rc, len, err_text(err));
            connectplugin_error_free(err);
            send_msg(s, "n", 0);
            sleep_ms(200); /* the echo is pending now */
            EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_receive, s, NULL, &len);
            EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_receive, s, &data, NULL);
            CHECK(connectplugin_client_stream_receive(s, NULL, NULL, NULL) == CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
            /* The pending message is still there. */
            expect_msg(s, "n", 0, "after receives with NULL out pointers");
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            expect_eof(s, "bidi after NULL out pointers");
            /* After EOF too. */
            EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_client_stream_receive, s, NULL, &len);
            CHECK(connectplugin_client_stream_headers(s) != NULL);
            CHECK(connectplugin_client_stream_trailers(s) != NULL);
            connectplugin_client_stream_free(s);
        }
        /* The same inside a handler: NullOut reports what its two receives with a NULL out pointer gave,
           then echoes what is left (the message sent first must still be there). */
        s = open_stream(client, SVC "NullOut", CONNECTPLUGIN_BIDI_STREAM, NULL);
        if (s) {
            send_msg(s, "h", 0);
            send_msg(s, "h", 1);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            char want[32];
            snprintf(want, sizeof want, "\"%d,%d\"", CONNECTPLUGIN_ERR_INVALID_ARGUMENT, CONNECTPLUGIN_ERR_INVALID_ARGUMENT);
            CHECK_MSG(rc == CONNECTPLUGIN_OK && len == strlen(want) && memcmp(data, want, len) == 0,
                      "handler receives with NULL out pointers returned %.*s, want %s", rc == CONNECTPLUGIN_OK ? (int)len : 0,
                      data ? (const char *)data : "", want);
            connectplugin_error_free(err);
            expect_msg(s, "h", 0, "handler: the first message after receives with NULL out pointers");
            expect_msg(s, "h", 1, "handler: the second message");
            expect_eof(s, "NullOut");
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: the protocol matrix                                                                     */
/* ---------------------------------------------------------------------------------------------- */

static void combo_name(const combo *c, char *buf, size_t size) {
    snprintf(buf, size, "%s HTTP/%s %s %s", c->protocol, http_name(c->http), c->codec, c->compression);
}

/* The headers every streaming handler reports (see describe_stream). */
static void check_describe_headers(connectplugin_client_stream *s, const combo *c, int kind, const char *procedure,
                                   const char *what) {
    const connectplugin_metadata *h = connectplugin_client_stream_headers(s);
    if (!CHECK_MSG_BOOL(h != NULL, what)) return;
    char k[8];
    snprintf(k, sizeof k, "%d", kind);
    CHECK_MSG(md_has_text(h, "x-protocol", c->protocol), "%s: x-protocol", what);
    CHECK_MSG(md_has_text(h, "x-codec", c->codec), "%s: x-codec", what);
    CHECK_MSG(md_has_text(h, "x-kind", k), "%s: x-kind", what);
    CHECK_MSG(md_has_text(h, "x-procedure", procedure), "%s: x-procedure", what);
    CHECK_MSG(md_has_text(h, "x-echo", "e-1"), "%s: x-echo (request header seen by the handler)", what);
}

static void check_trailer(connectplugin_client_stream *s, const char *key, const char *want, const char *what) {
    const connectplugin_metadata *t = connectplugin_client_stream_trailers(s);
    if (!CHECK_MSG_BOOL(t != NULL, what)) return;
    CHECK_MSG(md_has_text(t, key, want), "%s: trailer %s", what, key);
}

/* Receives message i of @p tag; reports a mismatch. */
static bool expect_msg(connectplugin_client_stream *s, const char *tag, long i, const char *what) {
    const uint8_t *data;
    size_t len;
    connectplugin_error *err;
    connectplugin_status rc = recv_msg(s, &data, &len, &err);
    bool ok = rc == CONNECTPLUGIN_OK && msg_is(data, len, tag, i);
    CHECK_MSG(ok, "%s: message %ld: status %d, got \"%.*s\" (%s: %s)", what, i, rc, rc == CONNECTPLUGIN_OK ? (int)len : 0,
              data ? (const char *)data : "", code_text(err), err_text(err));
    connectplugin_error_free(err);
    return ok;
}

static void matrix_calls(fixture *f, const combo *c) {
    char name[96], what[160];
    combo_name(c, name, sizeof name);
    fprintf(stderr, "    calls over %s\n", name);
    connectplugin_client *client = make_client(f->url, c, NULL, 0);
    if (!client) return;
    connectplugin_call_options *co = connectplugin_call_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_add_header, co, "x-echo", (const uint8_t *)"e-1", 3);
    const uint8_t *data;
    size_t len;
    connectplugin_error *err;
    connectplugin_status rc;

    /* Unary. */
    {
        connectplugin_response *resp = NULL;
        err = ERR_SENTINEL;
        rc = connectplugin_client_call_unary(client, SVC "Unary", (const uint8_t *)"\"u\"", 3, co, &resp, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_OK, "%s: unary: %d %s", name, rc, err != ERR_SENTINEL ? err_text(err) : "");
        if (rc == CONNECTPLUGIN_OK) {
            data = connectplugin_response_message(resp, &len);
            CHECK(len == 3 && memcmp(data, "\"u\"", 3) == 0);
            CHECK_MSG(md_has_text(connectplugin_response_headers(resp), "x-protocol", c->protocol), "%s: unary", name);
        } else if (err != ERR_SENTINEL) {
            connectplugin_error_free(err);
        }
        connectplugin_response_free(resp);
    }

    /* Unary through a stream: one message each way, then EOF. */
    snprintf(what, sizeof what, "%s: unary stream", name);
    connectplugin_client_stream *s = open_stream(client, SVC "Unary", CONNECTPLUGIN_UNARY, co);
    if (s) {
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_send, s, (const uint8_t *)"\"u2\"", 4);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_client_stream_send, s, (const uint8_t *)"\"u3\"", 4);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_OK && len == 4 && memcmp(data, "\"u2\"", 4) == 0, "%s: %d %s", what, rc,
                  err_text(err));
        connectplugin_error_free(err);
        CHECK_MSG(md_has_text(connectplugin_client_stream_headers(s), "x-protocol", c->protocol), "%s", what);
        expect_eof(s, what);
        connectplugin_client_stream_free(s);
    }

    /* Server streaming: 5 messages, then 0. One request only (a second send is refused locally). */
    for (long n = 5; n >= 0; n -= 5) {
        snprintf(what, sizeof what, "%s: server stream of %ld", name, n);
        s = open_stream(client, SVC "ServerStream", CONNECTPLUGIN_SERVER_STREAM, co);
        if (!s) continue;
        send_num(s, n);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_client_stream_send, s, (const uint8_t *)"\"1\"", 3);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s); /* idempotent */
        for (long i = 0; i < n; i++) {
            if (!expect_msg(s, "s", i, what)) break;
            if (i == 0) check_describe_headers(s, c, CONNECTPLUGIN_SERVER_STREAM, SVC "ServerStream", what);
        }
        expect_eof(s, what);
        if (n == 0) check_describe_headers(s, c, CONNECTPLUGIN_SERVER_STREAM, SVC "ServerStream", what);
        char want[32];
        snprintf(want, sizeof want, "sent-%ld", n);
        check_trailer(s, "x-trailer", want, what);
        check_trailer(s, "x-second", "eof", what);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_client_stream_send, s, (const uint8_t *)"\"1\"", 3);
        connectplugin_client_stream_free(s);
    }

    /* Client streaming: 5 messages, then 0. */
    for (long n = 5; n >= 0; n -= 5) {
        snprintf(what, sizeof what, "%s: client stream of %ld", name, n);
        s = open_stream(client, SVC "ClientStream", CONNECTPLUGIN_CLIENT_STREAM, co);
        if (!s) continue;
        for (long i = 0; i < n; i++) send_msg(s, "c", i);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_client_stream_send, s, (const uint8_t *)"\"c\"", 3);
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_OK && parse_num(data, len) == n, "%s: %d \"%.*s\" %s", what, rc,
                  rc == CONNECTPLUGIN_OK ? (int)len : 0, data ? (const char *)data : "", err_text(err));
        connectplugin_error_free(err);
        check_describe_headers(s, c, CONNECTPLUGIN_CLIENT_STREAM, SVC "ClientStream", what);
        expect_eof(s, what);
        char want[32];
        snprintf(want, sizeof want, "received-%ld", n);
        check_trailer(s, "x-trailer", want, what);
        connectplugin_client_stream_free(s);
    }

    /* Bidi: ping-pong over HTTP/2 (full duplex), send-all-then-read over HTTP/1.1 (half duplex). */
    for (long n = 5; n >= 0; n -= 5) {
        snprintf(what, sizeof what, "%s: bidi of %ld", name, n);
        s = open_stream(client, SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, co);
        if (!s) continue;
        if (c->http == CONNECTPLUGIN_HTTP_2) {
            for (long i = 0; i < n; i++) {
                send_msg(s, "b", i);
                if (!expect_msg(s, "b", i, what)) break;
            }
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        } else {
            for (long i = 0; i < n; i++) send_msg(s, "b", i);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            for (long i = 0; i < n; i++)
                if (!expect_msg(s, "b", i, what)) break;
        }
        expect_eof(s, what);
        check_describe_headers(s, c, CONNECTPLUGIN_BIDI_STREAM, SVC "Bidi", what);
        char want[32];
        snprintf(want, sizeof want, "echoed-%ld", n);
        check_trailer(s, "x-trailer", want, what);
        connectplugin_client_stream_free(s);
    }

    /* A handler that returns at once: OK with no messages. */
    snprintf(what, sizeof what, "%s: empty handler", name);
    s = open_stream(client, SVC "Empty", CONNECTPLUGIN_SERVER_STREAM, co);
    if (s) {
        send_num(s, 1);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        expect_eof(s, what);
        check_trailer(s, "x-trailer", "empty", what);
        connectplugin_client_stream_free(s);
    }

    /* A handler that finishes explicitly after one message. */
    snprintf(what, sizeof what, "%s: finish", name);
    s = open_stream(client, SVC "Finish", CONNECTPLUGIN_BIDI_STREAM, co);
    if (s) {
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_OK && len == 5 && memcmp(data, "\"one\"", 5) == 0, "%s: %d %s", what, rc,
                  err_text(err));
        connectplugin_error_free(err);
        expect_eof(s, what);
        connectplugin_client_stream_free(s);
    }
    connectplugin_call_options_free(co);
    connectplugin_client_free(client);
}

static void test_stream_matrix(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = all_combos(combos);
    CHECK(n == 20);
    for (size_t i = 0; i < n; i++) matrix_calls(&f, &combos[i]);
    fixture_stop(&f);
}

/* The error of Fail: FAILED_PRECONDITION, FAIL_MESSAGE, two details, header and trailer in the metadata. */
static void check_fail_error(connectplugin_status rc, const connectplugin_error *err, const char *what) {
    CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC, "%s: status %d", what, rc);
    if (!CHECK_MSG_BOOL(err != NULL, what)) return;
    CHECK(connectplugin_error_status(err) == CONNECTPLUGIN_ERR_RPC);
    CHECK_MSG(connectplugin_error_code(err) == CONNECTPLUGIN_CODE_FAILED_PRECONDITION, "%s: code %s: %s", what,
              code_text(err), err_text(err));
    CHECK_MSG(streq(connectplugin_error_message(err), FAIL_MESSAGE), "%s: message \"%s\"", what, err_text(err));
    CHECK_MSG(connectplugin_error_detail_count(err) == 2, "%s: %zu details", what, connectplugin_error_detail_count(err));
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
    const connectplugin_metadata *md = connectplugin_error_metadata(err);
    if (CHECK(md != NULL)) {
        CHECK_MSG(md_has_text(md, "x-fail-header", "h"), "%s: header in the error metadata", what);
        CHECK_MSG(md_has_text(md, "x-fail-trailer", "t"), "%s: trailer in the error metadata", what);
    }
}

static void matrix_errors(fixture *f, const combo *c) {
    char name[96], what[160];
    combo_name(c, name, sizeof name);
    fprintf(stderr, "    errors over %s\n", name);
    connectplugin_client *client = make_client(f->url, c, NULL, 0);
    if (!client) return;
    const uint8_t *data;
    size_t len;
    connectplugin_error *err;
    connectplugin_status rc;

    /* Fail after 0 messages (trailers-only) and after 2 messages. */
    for (long k = 0; k <= 2; k += 2) {
        snprintf(what, sizeof what, "%s: fail after %ld messages", name, k);
        connectplugin_client_stream *s = open_stream(client, SVC "Fail", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (!s) continue;
        send_num(s, k);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        for (long i = 0; i < k; i++) expect_msg(s, "f", i, what);
        rc = recv_msg(s, &data, &len, &err);
        check_fail_error(rc, err, what);
        connectplugin_error_free(err);
        /* The same error on every later receive. */
        rc = recv_msg(s, &data, &len, &err);
        snprintf(what, sizeof what, "%s: fail after %ld messages, receive again", name, k);
        check_fail_error(rc, err, what);
        connectplugin_error_free(err);
        connectplugin_client_stream_free(s);
    }

    /* Bidi failing after an echo. */
    snprintf(what, sizeof what, "%s: bidi fail", name);
    connectplugin_client_stream *s = open_stream(client, SVC "FailBidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
    if (s) {
        send_msg(s, "x", 0);
        if (c->http == CONNECTPLUGIN_HTTP_1_1) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        expect_msg(s, "x", 0, what);
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_ABORTED,
                  "%s: %d %s %s", what, rc, code_text(err), err_text(err));
        CHECK_MSG(streq(connectplugin_error_message(err), "bidi aborted"), "%s: message %s", what, err_text(err));
        CHECK(connectplugin_error_detail_count(err) == 0);
        CHECK_MSG(md_has_text(connectplugin_error_metadata(err), "x-bidi-trailer", "bt"), "%s", what);
        connectplugin_error_free(err);
        if (c->http == CONNECTPLUGIN_HTTP_2) {
            /* The call is over: a send is refused with ERR_RPC. */
            EXPECT_ST(CONNECTPLUGIN_ERR_RPC, connectplugin_client_stream_send, s, (const uint8_t *)"\"y\"", 3);
        }
        connectplugin_client_stream_free(s);
    }

    /* An unknown procedure: UNIMPLEMENTED, on receive. */
    snprintf(what, sizeof what, "%s: unknown procedure", name);
    s = open_stream(client, SVC "Missing", CONNECTPLUGIN_BIDI_STREAM, NULL);
    if (s) {
        connectplugin_client_stream_send(s, (const uint8_t *)"\"m\"", 3, NULL);
        connectplugin_client_stream_close_send(s, NULL);
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNIMPLEMENTED,
                  "%s: %d %s %s", what, rc, code_text(err), err_text(err));
        connectplugin_error_free(err);
        connectplugin_client_stream_free(s);
    }
    connectplugin_client_free(client);
}

static void test_stream_errors(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = all_combos(combos);
    for (size_t i = 0; i < n; i++) matrix_errors(&f, &combos[i]);
    fixture_stop(&f);
}

/* Server streaming takes exactly one request: a client that sends two (as bidi) never gets both through. */
static void test_server_stream_cardinality(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        /* The client knows the shape: a second request is refused locally. */
        connectplugin_client_stream *s = open_stream(client, SVC "ServerStream", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (s) {
            send_num(s, 1);
            EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_client_stream_send, s, (const uint8_t *)"\"1\"", 3);
            connectplugin_client_stream_free(s);
        }
        s = open_stream(client, SVC "ClientStream", CONNECTPLUGIN_CLIENT_STREAM, NULL);
        if (s) {
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            CHECK(recv_msg(s, &data, &len, &err) == CONNECTPLUGIN_OK && parse_num(data, len) == 0);
            connectplugin_error_free(err);
            /* Client streaming: exactly one response, then EOF. */
            expect_eof(s, name);
            connectplugin_client_stream_free(s);
        }
        /* Lying about the shape: two requests to a server-streaming method. The handler must never see
           a second request; the call either fails or the handler's second receive was not a message. */
        s = open_stream(client, SVC "ServerStream", CONNECTPLUGIN_BIDI_STREAM, NULL);
        if (s) {
            send_num(s, 1);
            connectplugin_client_stream_send(s, (const uint8_t *)"\"1\"", 3, NULL);
            connectplugin_client_stream_close_send(s, NULL);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc;
            int msgs = 0;
            while ((rc = recv_msg(s, &data, &len, &err)) == CONNECTPLUGIN_OK) msgs++;
            if (rc == CONNECTPLUGIN_EOF) {
                const connectplugin_metadata *t = connectplugin_client_stream_trailers(s);
                size_t vlen = 0;
                const uint8_t *v = connectplugin_metadata_lookup(t, "x-second", &vlen);
                CHECK_MSG(!v || vlen != 2 || memcmp(v, "ok", 2) != 0, "%s: the handler received a second request",
                          name);
            }
            fprintf(stderr, "    %s: two requests to a server stream: %d message(s), then %s (%s)\n", name, msgs,
                    rc == CONNECTPLUGIN_EOF ? "EOF" : code_text(err), err_text(err));
            connectplugin_error_free(err);
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: deadlines, cancellation, free                                                           */
/* ---------------------------------------------------------------------------------------------- */

static void test_stream_timeout(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        /* (a) A per-call timeout on a bidi call whose handler waits in receive. */
        state_reset(&f.st);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        connectplugin_call_options *co = connectplugin_call_options_new();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 300);
        int64_t t0 = now_ms();
        connectplugin_client_stream *s = open_stream(client, SVC "Wait", CONNECTPLUGIN_BIDI_STREAM, co);
        connectplugin_call_options_free(co);
        if (s) {
            send_msg(s, "w", 0);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            int64_t elapsed = now_ms() - t0;
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED,
                      "%s: wait: %d %s %s", name, rc, code_text(err), err_text(err));
            CHECK_MSG(elapsed >= 250 && elapsed < 3000, "%s: the call took %lld ms (timeout 300 ms)", name,
                      (long long)elapsed);
            connectplugin_error_free(err);
            rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED,
                      "%s: wait, receive again: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            /* The handler saw the deadline and its receive ended with an error. */
            if (CHECK_MSG_BOOL(wait_flag(&f.st, &f.st.wait_finished, 5000), name)) {
                pthread_mutex_lock(&f.st.mutex);
                CHECK_MSG(f.st.wait_remaining_ms > 0 && f.st.wait_remaining_ms <= 300, "%s: remaining at start %lld",
                          name, (long long)f.st.wait_remaining_ms);
                CHECK_MSG(f.st.wait_recv_status == CONNECTPLUGIN_ERR_RPC &&
                              (f.st.wait_recv_code == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED ||
                               f.st.wait_recv_code == CONNECTPLUGIN_CODE_CANCELED),
                          "%s: handler receive ended with %d, code %d", name, f.st.wait_recv_status,
                          f.st.wait_recv_code);
                CHECK_MSG(f.st.wait_done_seen == 1, "%s: is_done %d after the deadline", name, f.st.wait_done_seen);
                CHECK_MSG(f.st.wait_send_status == CONNECTPLUGIN_ERR_CLOSED, "%s: a late send returned %d", name,
                          f.st.wait_send_status);
                pthread_mutex_unlock(&f.st.mutex);
            }
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);

        /* (b) The client's default timeout on a server stream whose handler ignores the call for 3 s. */
        state_reset(&f.st);
        client = make_client(f.url, c, NULL, 300);
        if (!client) continue;
        t0 = now_ms();
        s = open_stream(client, SVC "Sleepy", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (s) {
            send_num(s, 1);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            int64_t elapsed = now_ms() - t0;
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED,
                      "%s: sleepy: %d %s %s", name, rc, code_text(err), err_text(err));
            CHECK_MSG(elapsed >= 250 && elapsed < 2500, "%s: sleepy: the call took %lld ms (timeout 300 ms)", name,
                      (long long)elapsed);
            connectplugin_error_free(err);
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

typedef struct canceller {
    connectplugin_client_stream *s;
    int delay_ms;
} canceller;

static void *cancel_main(void *arg) {
    canceller *c = arg;
    sleep_ms(c->delay_ms);
    connectplugin_client_stream_cancel(c->s);
    return NULL;
}

/*
 * connectplugin_client_stream_cancel from another thread while this thread is blocked in receive:
 * receive returns CANCELED promptly and the server handler's receive ends with CANCELED. Two cases:
 * the server has not sent response headers yet, and it has (x-send-headers). The calls have a 5 s
 * timeout so that a cancel that does not unblock the receive fails the test instead of hanging it.
 * LIBRARY BUG (fails until fixed): ClientStream.cancel() takes recvLock, which receive() holds while it
 * waits for the transport (ClientStream.swift), so cancel blocks until the receive returns on its own
 * (here: the 5 s deadline) instead of unblocking it.
 */
static void test_cancel_unblocks_receive(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        for (int headers_first = 0; headers_first <= 1; headers_first++) {
            char name[128];
            combo_name(c, name, sizeof name);
            strcat(name, headers_first ? ", headers sent" : ", no headers yet");
            state_reset(&f.st);
            connectplugin_client *client = make_client(f.url, c, NULL, 0);
            if (!client) continue;
            connectplugin_call_options *co = connectplugin_call_options_new();
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 5000);
            if (headers_first)
                EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_add_header, co, "x-send-headers",
                          (const uint8_t *)"1", 1);
            connectplugin_client_stream *s = open_stream(client, SVC "Wait", CONNECTPLUGIN_BIDI_STREAM, co);
            connectplugin_call_options_free(co);
            if (!s) {
                connectplugin_client_free(client);
                continue;
            }
            send_msg(s, "w", 0);
            CHECK_MSG(wait_flag(&f.st, &f.st.wait_started, 5000), "%s: the handler did not start", name);
            sleep_ms(100);
            canceller cn = {s, 300};
            pthread_t t;
            CHECK(pthread_create(&t, NULL, cancel_main, &cn) == 0);
            int64_t t0 = now_ms();
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            int64_t elapsed = now_ms() - t0;
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_CANCELED,
                      "%s: blocked receive after cancel: %d %s: %s", name, rc, code_text(err), err_text(err));
            CHECK_MSG(elapsed >= 250 && elapsed < 3000, "%s: receive returned after %lld ms (cancel at 300 ms)", name,
                      (long long)elapsed);
            connectplugin_error_free(err);
            pthread_join(t, NULL);
            rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_CANCELED,
                      "%s: receive after cancel: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            {
                connectplugin_error *e2;
                rc = CALL_ST(&e2, connectplugin_client_stream_send, s, (const uint8_t *)"\"x\"", 3);
                CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && e2 != ERR_SENTINEL &&
                              connectplugin_error_code(e2) == CONNECTPLUGIN_CODE_CANCELED,
                          "%s: send after cancel: %d %s", name, rc, e2 != ERR_SENTINEL ? code_text(e2) : "?");
                if (e2 != ERR_SENTINEL) connectplugin_error_free(e2);
            }
            connectplugin_client_stream_cancel(s); /* again: harmless */
            /* The server handler's receive ended with CANCELED. */
            if (CHECK_MSG_BOOL(wait_flag(&f.st, &f.st.wait_finished, 5000), name)) {
                pthread_mutex_lock(&f.st.mutex);
                CHECK_MSG(f.st.wait_recv_status == CONNECTPLUGIN_ERR_RPC &&
                              f.st.wait_recv_code == CONNECTPLUGIN_CODE_CANCELED,
                          "%s: handler receive ended with status %d code %d (want ERR_RPC, CANCELED)", name,
                          f.st.wait_recv_status, f.st.wait_recv_code);
                CHECK_MSG(f.st.wait_done_seen == 1, "%s: is_done %d after cancel", name, f.st.wait_done_seen);
                CHECK_MSG(f.st.wait_send_status == CONNECTPLUGIN_ERR_CLOSED, "%s: send after cancel returned %d", name,
                          f.st.wait_send_status);
                pthread_mutex_unlock(&f.st.mutex);
            }
            connectplugin_client_stream_free(s);
            connectplugin_client_free(client);
        }
    }
    fixture_stop(&f);
}

/* The same for a send blocked by back-pressure (Stall does not read): it returns CANCELED promptly. */
static void test_cancel_unblocks_send(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        state_reset(&f.st);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        connectplugin_call_options *co = connectplugin_call_options_new();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, 6000);
        connectplugin_client_stream *s = open_stream(client, SVC "Stall", CONNECTPLUGIN_CLIENT_STREAM, co);
        connectplugin_call_options_free(co);
        if (s) {
            uint8_t *buf = malloc(BIG_SIZE);
            canceller cn = {s, 1000};
            pthread_t t;
            CHECK(pthread_create(&t, NULL, cancel_main, &cn) == 0);
            int64_t t0 = now_ms();
            long sent = 0;
            connectplugin_error *err = NULL;
            connectplugin_status rc = CONNECTPLUGIN_OK;
            for (; buf && sent < 100000; sent++) {
                big_fill(buf, (uint64_t)sent);
                err = NULL;
                rc = connectplugin_client_stream_send(s, buf, BIG_SIZE, &err);
                if (rc != CONNECTPLUGIN_OK) break;
                connectplugin_error_free(err);
            }
            int64_t elapsed = now_ms() - t0;
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_CANCELED,
                      "%s: blocked send after cancel: %d %s: %s (after %ld sends)", name, rc, code_text(err),
                      err_text(err), sent);
            CHECK_MSG(elapsed >= 900 && elapsed < 3000, "%s: the send loop ended after %lld ms (cancel at 1000 ms)",
                      name, (long long)elapsed);
            connectplugin_error_free(err);
            pthread_join(t, NULL);
            free(buf);
            const uint8_t *data;
            size_t len;
            rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_CANCELED,
                      "%s: receive after cancel: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            state_set(&f.st, &f.st.stall_release);
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* connectplugin_client_stream_free on a running stream: no crash, the handler sees the end, the client
   keeps working. */
static void test_stream_free_running(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        /* A handler blocked in receive. */
        state_reset(&f.st);
        connectplugin_client_stream *s = open_stream(client, SVC "Wait", CONNECTPLUGIN_BIDI_STREAM, NULL);
        if (s) {
            send_msg(s, "w", 0);
            CHECK_MSG(wait_flag(&f.st, &f.st.wait_started, 5000), "%s: the handler did not start", name);
            connectplugin_client_stream_free(s);
            CHECK_MSG(wait_flag(&f.st, &f.st.wait_finished, 5000), "%s: the handler did not see the end", name);
            pthread_mutex_lock(&f.st.mutex);
            CHECK_MSG(f.st.wait_recv_status == CONNECTPLUGIN_ERR_RPC, "%s: handler receive returned %d", name,
                      f.st.wait_recv_status);
            pthread_mutex_unlock(&f.st.mutex);
        }
        /* A handler blocked in send (the client stops reading after one message). */
        state_reset(&f.st);
        s = open_stream(client, SVC "Flood", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (s) {
            send_num(s, 100000);
            connectplugin_client_stream_close_send(s, NULL);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            CHECK(recv_msg(s, &data, &len, &err) == CONNECTPLUGIN_OK && big_index(data, len) == 0);
            connectplugin_error_free(err);
            connectplugin_client_stream_free(s);
            CHECK_MSG(wait_flag(&f.st, &f.st.flood_finished, 5000), "%s: the flood handler did not stop", name);
            pthread_mutex_lock(&f.st.mutex);
            CHECK_MSG(f.st.flood_last_status == CONNECTPLUGIN_ERR_CLOSED, "%s: flood send ended with %d", name,
                      f.st.flood_last_status);
            pthread_mutex_unlock(&f.st.mutex);
        }
        /* Freed right after open, and after a send without a receive. */
        s = open_stream(client, SVC "LenientBidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
        connectplugin_client_stream_free(s);
        s = open_stream(client, SVC "LenientBidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
        if (s) send_msg(s, "b", 0);
        connectplugin_client_stream_free(s);
        /* The client still works. */
        s = open_stream(client, SVC "ServerStream", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (s) {
            send_num(s, 2);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
            expect_msg(s, "s", 0, name);
            expect_msg(s, "s", 1, name);
            expect_eof(s, name);
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: volume, memory and back-pressure                                                        */
/* ---------------------------------------------------------------------------------------------- */

typedef struct writer {
    connectplugin_client_stream *s;
    long count;
    bool big;
    atomic_long sent;
    connectplugin_status status;
    int64_t finished_ms;
} writer;

static void *writer_main(void *arg) {
    writer *w = arg;
    uint8_t *buf = w->big ? malloc(BIG_SIZE) : malloc(64);
    w->status = buf ? CONNECTPLUGIN_OK : CONNECTPLUGIN_ERR_RESOURCE;
    for (long i = 0; buf && i < w->count; i++) {
        size_t len;
        if (w->big) {
            big_fill(buf, (uint64_t)i);
            len = BIG_SIZE;
        } else {
            len = fmt_msg((char *)buf, 64, "m", i);
        }
        connectplugin_error *err = NULL;
        w->status = connectplugin_client_stream_send(w->s, buf, len, &err);
        if (w->status != CONNECTPLUGIN_OK) {
            fprintf(stderr, "    writer: send %ld: %s\n", i, err_text(err));
            connectplugin_error_free(err);
            break;
        }
        atomic_store(&w->sent, i + 1);
    }
    free(buf);
    if (w->status == CONNECTPLUGIN_OK) {
        connectplugin_error *err = NULL;
        w->status = connectplugin_client_stream_close_send(w->s, &err);
        connectplugin_error_free(err);
    }
    w->finished_ms = now_ms();
    return NULL;
}

/* Streams @p count messages through the bidi echo with a writer thread while this thread reads. */
static void echo_volume(const char *url, const combo *c, long count, bool big, long *out_hwm_kb) {
    char name[96];
    combo_name(c, name, sizeof name);
    connectplugin_client *client = make_client(url, c, NULL, 0);
    if (!client) return;
    connectplugin_client_stream *s = open_stream(client, SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
    if (!s) {
        connectplugin_client_free(client);
        return;
    }
    writer w = {.s = s, .count = count, .big = big};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer_main, &w) == 0);
    int64_t t0 = now_ms();
    long received = 0, bad = 0, max_rss = 0;
    const uint8_t *data;
    size_t len;
    connectplugin_error *err = NULL;
    connectplugin_status rc;
    while ((rc = recv_msg(s, &data, &len, &err)) == CONNECTPLUGIN_OK) {
        bool ok = big ? big_index(data, len) == received : msg_is(data, len, "m", received);
        if (!ok && bad++ < 3) fprintf(stderr, "    %s: message %ld is wrong (%zu bytes)\n", name, received, len);
        received++;
        if (big && received % 1024 == 0) {
            long rss = proc_status_kb("VmRSS");
            if (rss > max_rss) max_rss = rss;
        }
    }
    int64_t elapsed = now_ms() - t0;
    CHECK_MSG(rc == CONNECTPLUGIN_EOF, "%s: the stream ended with %d %s %s after %ld messages", name, rc,
              code_text(err), err_text(err), received);
    connectplugin_error_free(err);
    pthread_join(t, NULL);
    CHECK_MSG(w.status == CONNECTPLUGIN_OK, "%s: the writer ended with %d", name, w.status);
    CHECK_MSG(received == count && bad == 0, "%s: received %ld of %ld messages, %ld wrong", name, received, count, bad);
    char want[32];
    snprintf(want, sizeof want, "echoed-%ld", count);
    check_trailer(s, "x-trailer", want, name);
    long hwm = proc_status_kb("VmHWM");
    fprintf(stderr, "    %s: %ld x %s echoed in %lld ms; VmRSS max %ld MiB, VmHWM %ld MiB\n", name, count,
            big ? "64 KiB" : "small", (long long)elapsed, max_rss / 1024, hwm / 1024);
    if (out_hwm_kb) *out_hwm_kb = hwm;
    connectplugin_client_stream_free(s);
    connectplugin_client_free(client);
}

static void test_many_messages(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    static const combo k[] = {
        {"connect", CONNECTPLUGIN_HTTP_2, "proto", "identity"},
        {"grpc", CONNECTPLUGIN_HTTP_2, "json", "gzip"},
        {"grpcweb", CONNECTPLUGIN_HTTP_2, "proto", "identity"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) echo_volume(f.url, &k[i], 100000, false, NULL);
    /* 100,000 messages one way over HTTP/1.1 (client streaming: a single response). */
    static const combo h1[] = {
        {"connect", CONNECTPLUGIN_HTTP_1_1, "proto", "identity"},
        {"grpcweb", CONNECTPLUGIN_HTTP_1_1, "json", "gzip"},
    };
    for (size_t i = 0; i < sizeof h1 / sizeof h1[0]; i++) {
        char name[96];
        combo_name(&h1[i], name, sizeof name);
        connectplugin_client *client = make_client(f.url, &h1[i], NULL, 0);
        if (!client) continue;
        connectplugin_client_stream *s = open_stream(client, SVC "ClientStream", CONNECTPLUGIN_CLIENT_STREAM, NULL);
        if (s) {
            int64_t t0 = now_ms();
            writer w = {.s = s, .count = 100000};
            writer_main(&w);
            CHECK_MSG(w.status == CONNECTPLUGIN_OK, "%s: writer %d", name, w.status);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_OK && parse_num(data, len) == 100000, "%s: %d \"%.*s\" %s", name, rc,
                      rc == CONNECTPLUGIN_OK ? (int)len : 0, data ? (const char *)data : "", err_text(err));
            connectplugin_error_free(err);
            expect_eof(s, name);
            fprintf(stderr, "    %s: 100000 messages client-streamed in %lld ms\n", name, (long long)(now_ms() - t0));
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

#define RSS_LIMIT_MIB 300

static void test_big_stream_memory(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    long before = proc_status_kb("VmHWM");
    combo c = {"connect", CONNECTPLUGIN_HTTP_2, "proto", "identity"};
    long hwm = 0;
    echo_volume(f.url, &c, 16384, true, &hwm); /* 1 GiB each way */
    CHECK_MSG(hwm > 0 && hwm < RSS_LIMIT_MIB * 1024L, "VmHWM %ld MiB after 1 GiB through a bidi echo (limit %d MiB; "
              "%ld MiB before)", hwm / 1024, RSS_LIMIT_MIB, before / 1024);
    fixture_stop(&f);
}

/* A slow client reader: the server's sends block; the number sent while the client sleeps is bounded. */
/* Waits until *counter has not moved for 1 s (at most 15 s): the writer is blocked. Returns its value. */
static long wait_stalled(atomic_long *counter) {
    long last = atomic_load(counter);
    int64_t since = now_ms(), start = since;
    while (now_ms() - since < 1000 && now_ms() - start < 15000) {
        sleep_ms(100);
        long v = atomic_load(counter);
        if (v != last) {
            last = v;
            since = now_ms();
        }
    }
    return last;
}

#define FLOOD_TOTAL 1000 /* x 64 KiB = 62.5 MiB */
#define SENDS_BOUND 256  /* 16 MiB of buffering, at most, between a blocked writer and a sleeping reader */

static void test_backpressure_slow_reader(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        state_reset(&f.st);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        connectplugin_client_stream *s = open_stream(client, SVC "Flood", CONNECTPLUGIN_SERVER_STREAM, NULL);
        if (!s) {
            connectplugin_client_free(client);
            continue;
        }
        send_num(s, FLOOD_TOTAL);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        const uint8_t *data;
        size_t len;
        connectplugin_error *err;
        CHECK(recv_msg(s, &data, &len, &err) == CONNECTPLUGIN_OK && big_index(data, len) == 0);
        connectplugin_error_free(err);
        long s1 = wait_stalled(&f.st.flood_sent);
        sleep_ms(1000);
        long s2 = atomic_load(&f.st.flood_sent);
        fprintf(stderr, "    %s: the server's sends stalled at %ld messages; %ld one second later\n", name, s1, s2);
        CHECK_MSG(s2 < SENDS_BOUND, "%s: %ld sends completed while the reader slept (bound %d)", name, s2, SENDS_BOUND);
        CHECK_MSG(s2 - s1 <= 2, "%s: the writer kept going while the reader slept (%ld -> %ld)", name, s1, s2);
        /* Slow reading: a few sends per receive. */
        long received = 1;
        for (; received < 20; received++) {
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK(rc == CONNECTPLUGIN_OK && big_index(data, len) == received);
            connectplugin_error_free(err);
            sleep_ms(20);
        }
        CHECK_MSG(atomic_load(&f.st.flood_sent) < received + SENDS_BOUND, "%s: %ld sent, %ld received", name,
                  atomic_load(&f.st.flood_sent), received);
        /* Then drain at full speed. */
        connectplugin_status rc;
        long bad = 0;
        while ((rc = recv_msg(s, &data, &len, &err)) == CONNECTPLUGIN_OK) {
            if (big_index(data, len) != received) bad++;
            received++;
        }
        CHECK_MSG(rc == CONNECTPLUGIN_EOF && received == FLOOD_TOTAL && bad == 0, "%s: %d %s, %ld received, %ld bad",
                  name, rc, err_text(err), received, bad);
        connectplugin_error_free(err);
        connectplugin_client_stream_free(s);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* A slow server reader: the client's sends block; the number sent while the handler sleeps is bounded. */
static void test_backpressure_slow_handler(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[96];
        combo_name(c, name, sizeof name);
        state_reset(&f.st);
        connectplugin_client *client = make_client(f.url, c, NULL, 0);
        if (!client) continue;
        connectplugin_client_stream *s = open_stream(client, SVC "Stall", CONNECTPLUGIN_CLIENT_STREAM, NULL);
        if (!s) {
            connectplugin_client_free(client);
            continue;
        }
        writer w = {.s = s, .count = FLOOD_TOTAL, .big = true};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, writer_main, &w) == 0);
        CHECK_MSG(wait_flag(&f.st, &f.st.stall_started, 5000), "%s: the handler did not start", name);
        long s1 = wait_stalled(&w.sent);
        sleep_ms(1000);
        long s2 = atomic_load(&w.sent);
        fprintf(stderr, "    %s: the client's sends stalled at %ld messages; %ld one second later\n", name, s1, s2);
        CHECK_MSG(s2 < SENDS_BOUND, "%s: %ld sends completed while the handler slept (bound %d)", name, s2, SENDS_BOUND);
        CHECK_MSG(s2 - s1 <= 2, "%s: the writer kept going while the handler slept (%ld -> %ld)", name, s1, s2);
        state_set(&f.st, &f.st.stall_release);
        pthread_join(t, NULL);
        CHECK_MSG(w.status == CONNECTPLUGIN_OK, "%s: the writer ended with %d", name, w.status);
        const uint8_t *data;
        size_t len;
        connectplugin_error *err;
        connectplugin_status rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_OK && parse_num(data, len) == FLOOD_TOTAL, "%s: %d %s", name, rc, err_text(err));
        connectplugin_error_free(err);
        expect_eof(s, name);
        connectplugin_client_stream_free(s);
        connectplugin_client_free(client);
    }
    fixture_stop(&f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: Connect GET                                                                             */
/* ---------------------------------------------------------------------------------------------- */

/* A TCP proxy that records every byte the client sends (to see GET vs POST on HTTP/1.1). */
typedef struct proxy {
    int listen_fd;
    int port;
    int target_port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mutex;
    char *log;
    size_t len;
    size_t cap;
} proxy;

typedef struct relay {
    proxy *p;
    int client_fd;
    int server_fd;
} relay;

static void proxy_record(proxy *p, const char *data, size_t len) {
    pthread_mutex_lock(&p->mutex);
    if (p->len + len + 1 > p->cap) {
        size_t cap = (p->len + len + 1) * 2;
        char *n = realloc(p->log, cap);
        if (n) {
            p->log = n;
            p->cap = cap;
        }
    }
    if (p->len + len + 1 <= p->cap) {
        memcpy(p->log + p->len, data, len);
        p->len += len;
        p->log[p->len] = '\0';
    }
    pthread_mutex_unlock(&p->mutex);
}

static void *relay_main(void *arg) {
    relay *r = arg;
    char buf[65536];
    struct pollfd fds[2] = {{r->client_fd, POLLIN, 0}, {r->server_fd, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, 200) < 0 && errno != EINTR) break;
        if (atomic_load(&r->p->stop) == 2) break;
        bool done = false;
        for (int k = 0; k < 2; k++) {
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[k].fd, buf, sizeof buf);
            if (n <= 0) {
                done = true;
                break;
            }
            if (k == 0) proxy_record(r->p, buf, (size_t)n);
            int out = k == 0 ? r->server_fd : r->client_fd;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(out, buf + off, (size_t)(n - off));
                if (w <= 0) {
                    done = true;
                    break;
                }
                off += w;
            }
        }
        if (done) break;
    }
    close(r->client_fd);
    close(r->server_fd);
    free(r);
    return NULL;
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *proxy_main(void *arg) {
    proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {p->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) continue;
        int cfd = accept(p->listen_fd, NULL, NULL);
        if (cfd < 0) continue;
        int sfd = connect_port(p->target_port);
        if (sfd < 0) {
            close(cfd);
            continue;
        }
        relay *r = malloc(sizeof *r);
        if (!r) {
            close(cfd);
            close(sfd);
            continue;
        }
        *r = (relay){p, cfd, sfd};
        pthread_t t;
        if (pthread_create(&t, NULL, relay_main, r) == 0) pthread_detach(t);
        else {
            close(cfd);
            close(sfd);
            free(r);
        }
    }
    return NULL;
}

static bool proxy_start(proxy *p, int target_port) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mutex, NULL);
    p->target_port = target_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 16) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return false;
    p->port = ntohs(a.sin_port);
    return pthread_create(&p->thread, NULL, proxy_main, p) == 0;
}

static void proxy_stop(proxy *p) {
    atomic_store(&p->stop, 2);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    sleep_ms(300); /* relays notice the stop flag */
    free(p->log);
    pthread_mutex_destroy(&p->mutex);
}

static void proxy_clear(proxy *p) {
    pthread_mutex_lock(&p->mutex);
    p->len = 0;
    if (p->log) p->log[0] = '\0';
    pthread_mutex_unlock(&p->mutex);
}

static bool proxy_saw(proxy *p, const char *text) {
    pthread_mutex_lock(&p->mutex);
    bool found = false;
    for (size_t i = 0; p->log && i + strlen(text) <= p->len; i++) {
        if (memcmp(p->log + i, text, strlen(text)) == 0) {
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&p->mutex);
    return found;
}

/* A raw HTTP/1.1 request; returns the whole response (malloc) or NULL. */
static char *raw_http(int port, const char *request) {
    int fd = connect_port(port);
    if (fd < 0) return NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t rl = strlen(request);
    if (write(fd, request, rl) != (ssize_t)rl) {
        close(fd);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (len + 1024 > cap) {
            char *n = realloc(buf, cap * 2);
            if (!n) break;
            buf = n;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    if (buf) buf[len] = '\0';
    return buf;
}

/* A unary call; returns the status and checks the echoed body. */
static connectplugin_status unary_echo(connectplugin_client *client, const char *procedure,
                                       const connectplugin_call_options *co, const char *body, const char *what) {
    connectplugin_response *resp = NULL;
    connectplugin_error *err = NULL;
    connectplugin_status rc =
        connectplugin_client_call_unary(client, procedure, (const uint8_t *)body, strlen(body), co, &resp, &err);
    CHECK_MSG(rc == CONNECTPLUGIN_OK, "%s: %d %s %s", what, rc, code_text(err), err_text(err));
    if (rc == CONNECTPLUGIN_OK) {
        size_t len = 0;
        const uint8_t *data = connectplugin_response_message(resp, &len);
        CHECK_MSG(len == strlen(body) && memcmp(data, body, len) == 0, "%s: wrong echo", what);
    }
    connectplugin_error_free(err);
    connectplugin_response_free(resp);
    return rc;
}

static void test_connect_get(void) {
    fixture f;
    if (!fixture_start(&f)) {
        fixture_stop(&f);
        return;
    }
    proxy p;
    if (!CHECK(proxy_start(&p, f.port))) {
        fixture_stop(&f);
        return;
    }
    char purl[64];
    snprintf(purl, sizeof purl, "http://127.0.0.1:%d", p.port);
    connectplugin_call_options *nse = connectplugin_call_options_new();
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_no_side_effects, nse, 1);
    static const char *codecs[] = {"proto", "json"};
    static const char *compressions[] = {"identity", "gzip"};
    for (size_t ci = 0; ci < 2; ci++) {
        for (size_t zi = 0; zi < 2; zi++) {
            combo c = {"connect", CONNECTPLUGIN_HTTP_1_1, codecs[ci], compressions[zi]};
            char name[96], what[160];
            combo_name(&c, name, sizeof name);
            for (int use_get = 0; use_get <= 1; use_get++) {
                connectplugin_client_options *o = connectplugin_client_options_new();
                EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_use_get, o, use_get);
                connectplugin_client *client = NULL;
                bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_codec, o, c.codec) &&
                          EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, o, c.http) &&
                          EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_compression, o, c.compression) &&
                          EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, purl, o, &client);
                connectplugin_client_options_free(o);
                if (!ok) continue;
                /* GET only with use_get and a no-side-effects call, on a method marked as such. */
                proxy_clear(&p);
                snprintf(what, sizeof what, "%s use_get=%d: Get with no_side_effects", name, use_get);
                unary_echo(client, SVC "Get", nse, "\"g\"", what);
                CHECK_MSG(proxy_saw(&p, use_get ? "GET " SVC "Get?" : "POST " SVC "Get"), "%s: wrong HTTP method", what);
                CHECK_MSG(!proxy_saw(&p, use_get ? "POST " : "GET "), "%s: wrong HTTP method", what);
                proxy_clear(&p);
                snprintf(what, sizeof what, "%s use_get=%d: Get without no_side_effects", name, use_get);
                unary_echo(client, SVC "Get", NULL, "\"g2\"", what);
                CHECK_MSG(proxy_saw(&p, "POST " SVC "Get") && !proxy_saw(&p, "GET "), "%s: not a POST", what);
                /* The method that is not marked: the client posts, and it works. */
                proxy_clear(&p);
                snprintf(what, sizeof what, "%s use_get=%d: Post", name, use_get);
                unary_echo(client, SVC "Post", NULL, "\"p\"", what);
                CHECK_MSG(proxy_saw(&p, "POST " SVC "Post") && !proxy_saw(&p, "GET "), "%s: not a POST", what);
                connectplugin_client_free(client);
            }
        }
    }
    /* HTTP/2: GET works too (no sniffing), and other protocols ignore use_get. */
    static const char *protocols[] = {"connect", "grpc", "grpcweb"};
    for (size_t pi = 0; pi < 3; pi++) {
        for (int32_t http = 1; http <= 2; http++) {
            if (pi == 1 && http == 1) continue;
            connectplugin_client_options *o = connectplugin_client_options_new();
            connectplugin_client *client = NULL;
            bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_use_get, o, 1) &&
                      EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_protocol, o, protocols[pi]) &&
                      EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_http_version, o, http) &&
                      EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, f.url, o, &client);
            connectplugin_client_options_free(o);
            if (!ok) continue;
            char what[96];
            snprintf(what, sizeof what, "%s HTTP/%s use_get", protocols[pi], http_name(http));
            unary_echo(client, SVC "Get", nse, "\"g\"", what);
            unary_echo(client, SVC "Post", NULL, "\"p\"", what);
            connectplugin_client_free(client);
        }
    }
    connectplugin_call_options_free(nse);
    proxy_stop(&p);

    /* Raw GETs: the marked method answers, the others are 405. */
    char req[512];
    snprintf(req, sizeof req,
             "GET " SVC "Get?encoding=json&message=%%22raw%%22&connect=v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Connection: close\r\n\r\n");
    char *resp = raw_http(f.port, req);
    CHECK_MSG(resp && strncmp(resp, "HTTP/1.1 200", 12) == 0 && strstr(resp, "\r\n\r\n\"raw\""),
              "raw GET of a no-side-effects method: %.200s", resp ? resp : "(no response)");
    free(resp);
    static const char *not_get[] = {"Post", "Unary", "ServerStream", "Bidi"};
    for (size_t i = 0; i < sizeof not_get / sizeof not_get[0]; i++) {
        snprintf(req, sizeof req,
                 "GET " SVC "%s?encoding=json&message=%%22raw%%22&connect=v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Connection: close\r\n\r\n",
                 not_get[i]);
        resp = raw_http(f.port, req);
        CHECK_MSG(resp && strncmp(resp, "HTTP/1.1 405", 12) == 0, "raw GET of %s: %.200s", not_get[i],
                  resp ? resp : "(no response)");
        free(resp);
    }
    fixture_stop(&f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: TLS                                                                                     */
/* ---------------------------------------------------------------------------------------------- */

typedef struct certs {
    char dir[128];
    char ca[192], ca2[192];
    char server_cert[192], server_key[192];
    char expired_cert[192];
    bool have_expired;
    char expired_why[256];
    char client_cert[192], client_key[192];
    char client2_cert[192], client2_key[192];
} certs;

static bool run_cmd(const char *dir, const char *cmd) {
    char full[2048];
    snprintf(full, sizeof full, "cd '%s' && %s >>openssl.log 2>&1", dir, cmd);
    int rc = system(full);
    if (rc != 0) {
        fprintf(stderr, "    command failed (%d): %s\n", rc, cmd);
        snprintf(full, sizeof full, "tail -n 5 '%s/openssl.log' >&2", dir);
        if (system(full) != 0) {
        }
    }
    return rc == 0;
}

#define CLIENT_SUBJECT "/CN=stream-test-client/O=connectplugin tests"

/* Generates a CA, a second CA, a server certificate (and an expired one), and client certificates. */
static bool make_certs(certs *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/cp-stream-tls-XXXXXX");
    if (!mkdtemp(c->dir)) return false;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        fprintf(stderr, "    the openssl command is missing (scripts/setup.sh installs it)\n");
        return false;
    }
    FILE *fp;
    char path[256];
    snprintf(path, sizeof path, "%s/server.ext", c->dir);
    if (!(fp = fopen(path, "w"))) return false;
    fputs("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid\n",
          fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/client.ext", c->dir);
    if (!(fp = fopen(path, "w"))) return false;
    fputs("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
          "subjectAltName=DNS:client.example,URI:spiffe://connectplugin/test-client,IP:10.1.2.3\n"
          "authorityKeyIdentifier=keyid\n",
          fp);
    fclose(fp);
    const char *gen = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ";
    char cmd[1024];
    static const char *keys[] = {"ca", "ca2", "server", "client", "client2"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s%s.key", gen, keys[i]);
        if (!run_cmd(c->dir, cmd)) return false;
    }
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? "ca" : "ca2";
        snprintf(cmd, sizeof cmd,
                 "openssl req -new -x509 -key %s.key -subj '/CN=connectplugin stream test %s' -days 2 -sha256 "
                 "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out %s.crt",
                 name, name, name);
        if (!run_cmd(c->dir, cmd)) return false;
    }
    struct {
        const char *key, *subject, *ca, *ext, *days, *out;
    } leaves[] = {
        {"server", "/CN=127.0.0.1", "ca", "server", "2", "server"},
        {"server", "/CN=127.0.0.1", "ca", "server", "-1", "expired"},
        {"client", CLIENT_SUBJECT, "ca", "client", "2", "client"},
        {"client2", "/CN=stream-test-client-2", "ca2", "client", "2", "client2"},
    };
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        snprintf(cmd, sizeof cmd, "openssl req -new -key %s.key -subj '%s' -out %s.csr", leaves[i].key,
                 leaves[i].subject, leaves[i].out);
        if (!run_cmd(c->dir, cmd)) return false;
        snprintf(cmd, sizeof cmd,
                 "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days %s -sha256 "
                 "-extfile %s.ext -out %s.crt",
                 leaves[i].out, leaves[i].ca, leaves[i].ca, leaves[i].days, leaves[i].ext, leaves[i].out);
        if (!run_cmd(c->dir, cmd)) {
            if (strcmp(leaves[i].out, "expired") == 0) {
                snprintf(c->expired_why, sizeof c->expired_why, "openssl x509 -days -1 failed");
                continue;
            }
            return false;
        }
        if (strcmp(leaves[i].out, "expired") == 0) {
            /* -checkend 0 exits 1 when the certificate has expired. */
            char check[512];
            snprintf(check, sizeof check, "cd '%s' && openssl x509 -in expired.crt -noout -checkend 0 >/dev/null 2>&1",
                     c->dir);
            if (system(check) == 0)
                snprintf(c->expired_why, sizeof c->expired_why, "openssl x509 -days -1 made a certificate that has "
                                                                 "not expired");
            else
                c->have_expired = true;
        }
    }
    snprintf(c->ca, sizeof c->ca, "%s/ca.crt", c->dir);
    snprintf(c->ca2, sizeof c->ca2, "%s/ca2.crt", c->dir);
    snprintf(c->server_cert, sizeof c->server_cert, "%s/server.crt", c->dir);
    snprintf(c->server_key, sizeof c->server_key, "%s/server.key", c->dir);
    snprintf(c->expired_cert, sizeof c->expired_cert, "%s/expired.crt", c->dir);
    snprintf(c->client_cert, sizeof c->client_cert, "%s/client.crt", c->dir);
    snprintf(c->client_key, sizeof c->client_key, "%s/client.key", c->dir);
    snprintf(c->client2_cert, sizeof c->client2_cert, "%s/client2.crt", c->dir);
    snprintf(c->client2_key, sizeof c->client2_key, "%s/client2.key", c->dir);
    return true;
}

static void remove_certs(certs *c) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (c->dir[0] && system(cmd) != 0) {
    }
}

/* A started TLS server (cert/key; with @p client_ca: mTLS) with every handler. */
static bool tls_fixture_start(fixture *f, const char *cert, const char *key, const char *client_ca) {
    memset(f, 0, sizeof *f);
    state_init(&f->st);
    state_reset(&f->st);
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &f->server)) return false;
    connectplugin_tls_options *tls = connectplugin_tls_options_new();
    bool ok = CHECK(tls != NULL) && EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_cert_files, tls, cert, key);
    if (ok && client_ca)
        ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_ca_file, tls, client_ca) &&
             EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_require_client_cert, tls, 1);
    if (ok) ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tls, f->server, "127.0.0.1:0", tls);
    connectplugin_tls_options_free(tls);
    if (!ok || !register_all(f->server, &f->st)) return false;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, f->server)) return false;
    return set_url(f, "https");
}

static connectplugin_tls_options *client_tls(const char *ca, const char *cert, const char *key, const char *server_name) {
    connectplugin_tls_options *tls = connectplugin_tls_options_new();
    if (!CHECK(tls != NULL)) return NULL;
    if (ca) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_ca_file, tls, ca);
    if (cert) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_cert_files, tls, cert, key);
    if (server_name) EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_server_name, tls, server_name);
    return tls;
}

/* A round trip over TLS: unary, server stream, bidi; checks the peer seen by the handlers. */
static void tls_round_trip(const char *url, const combo *c, const connectplugin_tls_options *tls, bool want_peer) {
    char name[96], what[192];
    combo_name(c, name, sizeof name);
    snprintf(what, sizeof what, "TLS %s %s", url, name);
    connectplugin_client *client = make_client(url, c, tls, 10000);
    if (!client) return;
    connectplugin_response *resp = NULL;
    connectplugin_error *err = NULL;
    connectplugin_status rc =
        connectplugin_client_call_unary(client, SVC "Unary", (const uint8_t *)"\"tls\"", 5, NULL, &resp, &err);
    CHECK_MSG(rc == CONNECTPLUGIN_OK, "%s: unary: %d %s %s", what, rc, code_text(err), err_text(err));
    if (rc == CONNECTPLUGIN_OK) {
        const connectplugin_metadata *h = connectplugin_response_headers(resp);
        CHECK_MSG(md_has_text(h, "x-protocol", c->protocol), "%s", what);
        if (want_peer) {
            size_t len = 0;
            const uint8_t *subject = connectplugin_metadata_lookup(h, "x-peer-subject", &len);
            char buf[256];
            snprintf(buf, sizeof buf, "%.*s", subject ? (int)len : 0, subject ? (const char *)subject : "");
            CHECK_MSG(contains_ci(buf, "CN=stream-test-client") && contains_ci(buf, "O=connectplugin tests"),
                      "%s: peer subject \"%s\"", what, buf);
            CHECK_MSG(md_has_text(h, "x-peer-dns", "client.example"), "%s: peer dns", what);
            CHECK_MSG(md_has_text(h, "x-peer-uri", "spiffe://connectplugin/test-client"), "%s: peer uri", what);
            CHECK_MSG(md_has_text(h, "x-peer-ip", "10.1.2.3"), "%s: peer ip", what);
        } else {
            CHECK_MSG(md_has_text(h, "x-peer", "none"), "%s: a peer without a client certificate", what);
        }
    }
    connectplugin_error_free(err);
    connectplugin_response_free(resp);
    /* The peer from a streaming handler. */
    connectplugin_client_stream *s = open_stream(client, SVC "Peer", CONNECTPLUGIN_SERVER_STREAM, NULL);
    if (s) {
        send_num(s, 1);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        const uint8_t *data;
        size_t len;
        rc = recv_msg(s, &data, &len, &err);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", rc == CONNECTPLUGIN_OK ? (int)len : 0, data ? (const char *)data : "");
        CHECK_MSG(rc == CONNECTPLUGIN_OK && (want_peer ? contains_ci(buf, "CN=stream-test-client") : streq(buf, "\"none\"")),
                  "%s: stream peer: %d \"%s\" %s", what, rc, buf, err_text(err));
        connectplugin_error_free(err);
        expect_eof(s, what);
        connectplugin_client_stream_free(s);
    }
    /* Bidi. */
    s = open_stream(client, SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, NULL);
    if (s) {
        for (long i = 0; i < 3; i++) send_msg(s, "t", i);
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
        for (long i = 0; i < 3; i++) expect_msg(s, "t", i, what);
        expect_eof(s, what);
        connectplugin_client_stream_free(s);
    }
    connectplugin_client_free(client);
}

static void test_tls_round_trip(void) {
    certs c;
    if (!CHECK(make_certs(&c))) {
        remove_certs(&c);
        return;
    }
    fixture f;
    if (tls_fixture_start(&f, c.server_cert, c.server_key, NULL)) {
        connectplugin_tls_options *tls = client_tls(c.ca, NULL, NULL, NULL);
        combo combos[MAX_COMBOS];
        size_t n = transport_combos(combos);
        for (size_t i = 0; i < n; i++) tls_round_trip(f.url, &combos[i], tls, false);
        /* By name (DNS SAN), with JSON and gzip. */
        char url[96];
        snprintf(url, sizeof url, "https://localhost:%d", f.port);
        combo cj = {"connect", CONNECTPLUGIN_HTTP_2, "json", "gzip"};
        tls_round_trip(url, &cj, tls, false);
        /* The CA from memory instead of a file. */
        connectplugin_tls_options *mem = connectplugin_tls_options_new();
        FILE *fp = fopen(c.ca, "rb");
        if (CHECK(fp != NULL)) {
            uint8_t pem[8192];
            size_t len = fread(pem, 1, sizeof pem, fp);
            fclose(fp);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_ca_pem, mem, pem, len);
            combo cg = {"grpc", CONNECTPLUGIN_HTTP_2, "proto", "identity"};
            tls_round_trip(f.url, &cg, mem, false);
        }
        connectplugin_tls_options_free(mem);
        connectplugin_tls_options_free(tls);
    }
    fixture_stop(&f);
    remove_certs(&c);
}

/* Expects @p client's unary call to fail with UNAVAILABLE whose message contains one of @p words. */
static void expect_tls_failure(const char *url, const combo *c, const connectplugin_tls_options *tls, const char *what,
                               const char *const *words) {
    connectplugin_client *client = make_client(url, c, tls, 5000);
    if (!client) return;
    int64_t t0 = now_ms();
    connectplugin_response *resp = NULL;
    connectplugin_error *err = NULL;
    connectplugin_status rc =
        connectplugin_client_call_unary(client, SVC "Unary", (const uint8_t *)"\"x\"", 3, NULL, &resp, &err);
    int64_t elapsed = now_ms() - t0;
    const char *msg = err_text(err);
    bool named = false;
    for (size_t i = 0; words && words[i]; i++) named |= contains_ci(msg, words[i]);
    CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNAVAILABLE,
              "%s (HTTP/%s): %d %s: %s", what, http_name(c->http), rc, code_text(err), msg);
    CHECK_MSG(named, "%s (HTTP/%s): the message does not name the cause: \"%s\"", what, http_name(c->http), msg);
    CHECK_MSG(elapsed < 4000, "%s: took %lld ms", what, (long long)elapsed);
    fprintf(stderr, "    %s (HTTP/%s): %s: %s\n", what, http_name(c->http), code_text(err), msg);
    connectplugin_error_free(err);
    connectplugin_response_free(resp);
    /* A stream fails the same way. */
    connectplugin_client_stream *s = NULL;
    connectplugin_error *oerr = NULL;
    rc = connectplugin_client_open_stream(client, SVC "Bidi", CONNECTPLUGIN_BIDI_STREAM, NULL, &s, &oerr);
    if (rc == CONNECTPLUGIN_OK) {
        connectplugin_client_stream_send(s, (const uint8_t *)"\"x\"", 3, NULL);
        connectplugin_client_stream_close_send(s, NULL);
        const uint8_t *data;
        size_t len;
        rc = recv_msg(s, &data, &len, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_UNAVAILABLE,
                  "%s (stream): %d %s: %s", what, rc, code_text(err), err_text(err));
        connectplugin_error_free(err);
        connectplugin_client_stream_free(s);
    } else {
        CHECK_MSG(connectplugin_error_code(oerr) == CONNECTPLUGIN_CODE_UNAVAILABLE, "%s (open): %s", what,
                  err_text(oerr));
    }
    connectplugin_error_free(oerr);
    connectplugin_client_free(client);
}

static void test_mtls(void) {
    certs c;
    if (!CHECK(make_certs(&c))) {
        remove_certs(&c);
        return;
    }
    fixture f;
    if (tls_fixture_start(&f, c.server_cert, c.server_key, c.ca)) {
        connectplugin_tls_options *tls = client_tls(c.ca, c.client_cert, c.client_key, NULL);
        combo combos[MAX_COMBOS];
        size_t n = transport_combos(combos);
        for (size_t i = 0; i < n; i++) tls_round_trip(f.url, &combos[i], tls, true);
        connectplugin_tls_options_free(tls);
        /* No client certificate, or one from another CA: refused, no handler runs. */
        int calls = atomic_load(&f.st.calls);
        connectplugin_tls_options *none = client_tls(c.ca, NULL, NULL, NULL);
        connectplugin_tls_options *other = client_tls(c.ca, c.client2_cert, c.client2_key, NULL);
        for (int32_t http = 1; http <= 2; http++) {
            combo cc = {"connect", http, "proto", "identity"};
            for (int k = 0; k < 2; k++) {
                connectplugin_client *client = make_client(f.url, &cc, k == 0 ? none : other, 5000);
                if (!client) continue;
                connectplugin_response *resp = NULL;
                connectplugin_error *err = NULL;
                connectplugin_status rc = connectplugin_client_call_unary(client, SVC "Unary", (const uint8_t *)"\"x\"",
                                                                          3, NULL, &resp, &err);
                CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC, "mTLS %s client certificate (HTTP/%s) was not refused: %d",
                          k == 0 ? "without a" : "with another CA's", http_name(http), rc);
                fprintf(stderr, "    mTLS, %s client certificate (HTTP/%s): %s: %s\n",
                        k == 0 ? "without a" : "another CA's", http_name(http), code_text(err), err_text(err));
                connectplugin_error_free(err);
                connectplugin_response_free(resp);
                connectplugin_client_free(client);
            }
        }
        CHECK_MSG(atomic_load(&f.st.calls) == calls, "a handler ran for a client without a valid certificate");
        connectplugin_tls_options_free(none);
        connectplugin_tls_options_free(other);
    }
    fixture_stop(&f);
    remove_certs(&c);
}

static void test_tls_errors(void) {
    certs c;
    if (!CHECK(make_certs(&c))) {
        remove_certs(&c);
        return;
    }
    static const char *const unknown_ca[] = {"unknown ca", "unable to get local issuer", "self-signed", "self signed",
                                             "unknown authority", "untrusted", "issuer", NULL};
    static const char *const expired[] = {"expired", NULL};
    static const char *const mismatch[] = {"mismatch", "does not match", "hostname", "host name", NULL};
    fixture f;
    if (tls_fixture_start(&f, c.server_cert, c.server_key, NULL)) {
        for (int32_t http = 1; http <= 2; http++) {
            combo cc = {"connect", http, "proto", "identity"};
            /* A CA that did not sign the server's certificate. */
            connectplugin_tls_options *tls = client_tls(c.ca2, NULL, NULL, NULL);
            expect_tls_failure(f.url, &cc, tls, "unknown CA", unknown_ca);
            connectplugin_tls_options_free(tls);
            /* The system trust store does not know our CA either. */
            expect_tls_failure(f.url, &cc, NULL, "system trust store", unknown_ca);
            /* A name the certificate does not have. */
            tls = client_tls(c.ca, NULL, NULL, "example.com");
            expect_tls_failure(f.url, &cc, tls, "name mismatch", mismatch);
            connectplugin_tls_options_free(tls);
            /* insecure_skip_verify connects anyway. */
            tls = client_tls(c.ca2, NULL, NULL, NULL);
            EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_tls_options_set_insecure_skip_verify, tls, 1);
            connectplugin_client *client = make_client(f.url, &cc, tls, 5000);
            if (client) {
                unary_echo(client, SVC "Unary", NULL, "\"insecure\"", "insecure_skip_verify");
                connectplugin_client_free(client);
            }
            connectplugin_tls_options_free(tls);
            /* Plaintext to a TLS port: an error, not a hang. */
            char url[96];
            snprintf(url, sizeof url, "http://%s", f.host_port);
            client = make_client(url, &cc, NULL, 3000);
            if (client) {
                connectplugin_response *resp = NULL;
                connectplugin_error *err = NULL;
                int64_t t0 = now_ms();
                connectplugin_status rc = connectplugin_client_call_unary(client, SVC "Unary", (const uint8_t *)"\"x\"",
                                                                          3, NULL, &resp, &err);
                CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && now_ms() - t0 < 3500, "plaintext to TLS (HTTP/%s): %d %s",
                          http_name(http), rc, err_text(err));
                connectplugin_error_free(err);
                connectplugin_response_free(resp);
                connectplugin_client_free(client);
            }
        }
    }
    fixture_stop(&f);
    /* An expired server certificate. */
    if (c.have_expired) {
        if (tls_fixture_start(&f, c.expired_cert, c.server_key, NULL)) {
            connectplugin_tls_options *tls = client_tls(c.ca, NULL, NULL, NULL);
            for (int32_t http = 1; http <= 2; http++) {
                combo cc = {"connect", http, "proto", "identity"};
                expect_tls_failure(f.url, &cc, tls, "expired certificate", expired);
            }
            connectplugin_tls_options_free(tls);
        }
        fixture_stop(&f);
    } else {
        /* A check that cannot run is a failure, never a silent pass. */
        CHECK_MSG(0, "cannot make an expired certificate for the expired-certificate check: %s", c.expired_why);
    }
    remove_certs(&c);
}

/* Bad TLS configuration: errors that name the file. */
static void test_tls_config_errors(void) {
    certs c;
    if (!CHECK(make_certs(&c))) {
        remove_certs(&c);
        return;
    }
    connectplugin_server *server = NULL;
    if (EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) {
        char missing[256];
        snprintf(missing, sizeof missing, "%s/missing-key.pem", c.dir);
        /* A missing key file. */
        connectplugin_tls_options *tls = connectplugin_tls_options_new();
        connectplugin_error *err = NULL;
        connectplugin_status rc = connectplugin_tls_options_set_cert_files(tls, c.server_cert, missing, &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_server_listen_tls(server, "127.0.0.1:0", tls, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "missing key file: %d %s", rc, err_text(err));
        CHECK_MSG(strstr(err_text(err), "missing-key.pem") != NULL, "the error does not name the key file: \"%s\"",
                  err_text(err));
        connectplugin_error_free(err);
        connectplugin_tls_options_free(tls);
        /* A missing certificate file. */
        snprintf(missing, sizeof missing, "%s/missing-cert.pem", c.dir);
        tls = connectplugin_tls_options_new();
        err = NULL;
        rc = connectplugin_tls_options_set_cert_files(tls, missing, c.server_key, &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_server_listen_tls(server, "127.0.0.1:0", tls, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "missing cert file: %d %s", rc, err_text(err));
        CHECK_MSG(strstr(err_text(err), "missing-cert.pem") != NULL, "the error does not name the cert file: \"%s\"",
                  err_text(err));
        connectplugin_error_free(err);
        connectplugin_tls_options_free(tls);
        /* No certificate at all. */
        tls = connectplugin_tls_options_new();
        EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_listen_tls, server, "127.0.0.1:0", tls);
        connectplugin_tls_options_free(tls);
        /* A key that does not match the certificate. */
        tls = connectplugin_tls_options_new();
        err = NULL;
        rc = connectplugin_tls_options_set_cert_files(tls, c.server_cert, c.client_key, &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_server_listen_tls(server, "127.0.0.1:0", tls, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "mismatched key: %d %s", rc, err_text(err));
        connectplugin_error_free(err);
        connectplugin_tls_options_free(tls);
        /* Garbage PEM. */
        tls = connectplugin_tls_options_new();
        err = NULL;
        rc = connectplugin_tls_options_set_cert_pem(tls, (const uint8_t *)"not a pem", 9, (const uint8_t *)"nope", 4,
                                                    &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_server_listen_tls(server, "127.0.0.1:0", tls, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT, "garbage PEM: %d %s", rc, err_text(err));
        connectplugin_error_free(err);
        connectplugin_tls_options_free(tls);
        /* A missing client CA file on the server. */
        snprintf(missing, sizeof missing, "%s/missing-ca.pem", c.dir);
        tls = connectplugin_tls_options_new();
        err = NULL;
        rc = connectplugin_tls_options_set_cert_files(tls, c.server_cert, c.server_key, &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_tls_options_set_ca_file(tls, missing, &err);
        if (rc == CONNECTPLUGIN_OK) rc = connectplugin_server_listen_tls(server, "127.0.0.1:0", tls, &err);
        CHECK_MSG(rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT && strstr(err_text(err), "missing-ca.pem") != NULL,
                  "missing CA file: %d \"%s\"", rc, err_text(err));
        connectplugin_error_free(err);
        connectplugin_tls_options_free(tls);
        CHECK(connectplugin_server_address_count(server) == 0);
        connectplugin_server_free(server);
    }
    /* A client with a missing CA file: client_new fails and names it. */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/missing-client-ca.pem", c.dir);
    connectplugin_tls_options *tls = connectplugin_tls_options_new();
    connectplugin_client_options *o = connectplugin_client_options_new();
    connectplugin_client *client = NULL;
    connectplugin_error *err = NULL;
    connectplugin_status rc = connectplugin_tls_options_set_ca_file(tls, missing, &err);
    if (rc == CONNECTPLUGIN_OK) rc = connectplugin_client_options_set_tls(o, tls, &err);
    if (rc == CONNECTPLUGIN_OK) rc = connectplugin_client_new("https://127.0.0.1:9", o, &client, &err);
    /* The header leaves the status open for clients (the server says INVALID_ARGUMENT; this library
       gives ERR_RESOURCE here): any failure that names the file. */
    CHECK_MSG(rc != CONNECTPLUGIN_OK && strstr(err_text(err), "missing-client-ca.pem") != NULL,
              "client with a missing CA file: %d \"%s\"", rc, err_text(err));
    fprintf(stderr, "    client with a missing CA file: %s: %s\n", connectplugin_status_string(rc), err_text(err));
    connectplugin_error_free(err);
    connectplugin_client_free(client);
    connectplugin_client_options_free(o);
    connectplugin_tls_options_free(tls);
    remove_certs(&c);
}

/* ---------------------------------------------------------------------------------------------- */
/* on_done: the push notice that a call can no longer be answered                                */
/* ---------------------------------------------------------------------------------------------- */

typedef struct done_state {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int fired;      /* on_done calls */
    int finalized;  /* finalizer calls */
    int woken;      /* the WaitDone handler was woken by on_done (not by its 10 s timeout) */
    int respond_rc; /* what respond/finish returned after the notice */
    int handled;    /* handlers that returned */
} done_state;

static void done_fire(void *ud) {
    done_state *d = ud;
    pthread_mutex_lock(&d->mutex);
    d->fired++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mutex);
}

static void done_finalize(void *ud) {
    done_state *d = ud;
    pthread_mutex_lock(&d->mutex);
    d->finalized++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mutex);
}

/* Waits (not polling is_done) until on_done fired or 10 s passed. */
static void done_wait(done_state *d) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&d->mutex);
    while (d->fired == 0) {
        if (pthread_cond_timedwait(&d->cond, &d->mutex, &until) != 0) break;
    }
    d->woken = d->fired > 0;
    pthread_mutex_unlock(&d->mutex);
}

static void done_handled(done_state *d, connectplugin_status rc) {
    pthread_mutex_lock(&d->mutex);
    d->respond_rc = rc;
    d->handled++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mutex);
}

static void handle_wait_done(connectplugin_call *call, void *user_data) {
    done_state *d = user_data;
    connectplugin_error *err = NULL;
    if (connectplugin_call_on_done(call, done_fire, d, done_finalize, &err) != CONNECTPLUGIN_OK) {
        connectplugin_error_free(err);
        done_handled(d, -100);
        return;
    }
    done_wait(d);
    connectplugin_status rc = connectplugin_call_respond(call, (const uint8_t *)"late", 4, &err);
    connectplugin_error_free(err);
    done_handled(d, rc);
}

static void handle_quick_done(connectplugin_call *call, void *user_data) {
    done_state *d = user_data;
    connectplugin_error *err = NULL;
    connectplugin_status rc = connectplugin_call_on_done(call, done_fire, d, done_finalize, &err);
    connectplugin_error_free(err);
    err = NULL;
    /* A NULL on_done is refused and its finalizer still runs exactly once. */
    connectplugin_status null_rc = connectplugin_call_on_done(call, NULL, d, done_finalize, &err);
    connectplugin_error_free(err);
    err = NULL;
    connectplugin_status resp = connectplugin_call_respond(call, (const uint8_t *)"quick", 5, &err);
    connectplugin_error_free(err);
    sleep_ms(400); /* past the client's 150 ms deadline: answered calls get no notice */
    done_handled(d, rc == CONNECTPLUGIN_OK && null_rc == CONNECTPLUGIN_ERR_INVALID_ARGUMENT ? resp : -200);
}

static void handle_stream_wait_done(connectplugin_stream *stream, void *user_data) {
    done_state *d = user_data;
    connectplugin_error *err = NULL;
    const uint8_t *data;
    size_t len;
    connectplugin_status rc = connectplugin_stream_receive(stream, &data, &len, &err);
    connectplugin_error_free(err);
    err = NULL;
    if (rc == CONNECTPLUGIN_OK) rc = connectplugin_stream_send(stream, (const uint8_t *)"ready", 5, &err);
    connectplugin_error_free(err);
    err = NULL;
    if (rc != CONNECTPLUGIN_OK ||
        connectplugin_stream_on_done(stream, done_fire, d, done_finalize, &err) != CONNECTPLUGIN_OK) {
        connectplugin_error_free(err);
        done_handled(d, -100);
        return;
    }
    done_wait(d);
    rc = connectplugin_stream_finish(stream, &err);
    connectplugin_error_free(err);
    done_handled(d, rc);
}

/* Waits until @p d has seen @p handled handler returns and @p finalized finalizer calls. */
static bool done_settle(done_state *d, int handled, int finalized) {
    int64_t until = now_ms() + 10000;
    pthread_mutex_lock(&d->mutex);
    while ((d->handled < handled || d->finalized < finalized) && now_ms() < until) {
        pthread_mutex_unlock(&d->mutex);
        sleep_ms(10);
        pthread_mutex_lock(&d->mutex);
    }
    bool ok = d->handled >= handled && d->finalized >= finalized;
    pthread_mutex_unlock(&d->mutex);
    return ok;
}

static void done_reset(done_state *d) {
    pthread_mutex_lock(&d->mutex);
    d->fired = d->finalized = d->woken = d->handled = 0;
    d->respond_rc = 0;
    pthread_mutex_unlock(&d->mutex);
}

/* Opens a stream of @p kind on @p procedure (with a timeout if @p timeout_ms > 0), sends one message
   tagged @p tag and half-closes. NULL (a failed check) if it cannot be opened. */
static connectplugin_client_stream *open_one(connectplugin_client *client, const char *procedure,
                                             connectplugin_method_kind kind, const char *tag, int64_t timeout_ms) {
    connectplugin_call_options *co = NULL;
    if (timeout_ms > 0) {
        co = connectplugin_call_options_new();
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_timeout_ms, co, timeout_ms);
    }
    connectplugin_client_stream *s = open_stream(client, procedure, kind, co);
    connectplugin_call_options_free(co);
    if (!s) return NULL;
    send_msg(s, tag, 0);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_stream_close_send, s);
    return s;
}

static void test_on_done(void) {
    static done_state d = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    connectplugin_server *server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) return;
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0");
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "WaitDone", handle_wait_done, &d, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "QuickDone", handle_quick_done, &d, NULL);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_stream, server, SVC "StreamWaitDone",
              CONNECTPLUGIN_SERVER_STREAM, handle_stream_wait_done, &d, NULL);
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server)) {
        connectplugin_server_free(server);
        return;
    }
    char url[80];
    snprintf(url, sizeof url, "http://%s", connectplugin_server_address(server, 0));
    combo combos[MAX_COMBOS];
    size_t n = transport_combos(combos);
    for (size_t i = 0; i < n; i++) {
        const combo *c = &combos[i];
        char name[128];
        combo_name(c, name, sizeof name);
        connectplugin_client *client = make_client(url, c, NULL, 0);
        if (!client) continue;

        /* 1. The client cancels a unary call (a stream handle of kind UNARY) mid-call. */
        done_reset(&d);
        connectplugin_client_stream *s = open_one(client, SVC "WaitDone", CONNECTPLUGIN_UNARY, "u", 0);
        if (s) {
            canceller cn = {s, 300};
            pthread_t t;
            CHECK(pthread_create(&t, NULL, cancel_main, &cn) == 0);
            const uint8_t *data;
            size_t len;
            connectplugin_error *err = NULL;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC && connectplugin_error_code(err) == CONNECTPLUGIN_CODE_CANCELED,
                      "%s: canceled unary call: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            pthread_join(t, NULL);
            if (CHECK_MSG_BOOL(done_settle(&d, 1, 1), name)) {
                pthread_mutex_lock(&d.mutex);
                CHECK_MSG(d.woken == 1 && d.fired == 1 && d.finalized == 1,
                          "%s: unary cancel: woken %d fired %d finalized %d (want 1 1 1)", name, d.woken, d.fired,
                          d.finalized);
                CHECK_MSG(d.respond_rc == CONNECTPLUGIN_ERR_CLOSED, "%s: respond after the notice returned %d", name,
                          d.respond_rc);
                pthread_mutex_unlock(&d.mutex);
            }
            connectplugin_client_stream_free(s);
        }

        /* 2. The deadline passes: on_done fires too. */
        done_reset(&d);
        s = open_one(client, SVC "WaitDone", CONNECTPLUGIN_UNARY, "u", 300);
        if (s) {
            const uint8_t *data;
            size_t len;
            connectplugin_error *err = NULL;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_ERR_RPC &&
                          connectplugin_error_code(err) == CONNECTPLUGIN_CODE_DEADLINE_EXCEEDED,
                      "%s: unary call past its deadline: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            if (CHECK_MSG_BOOL(done_settle(&d, 1, 1), name)) {
                pthread_mutex_lock(&d.mutex);
                CHECK_MSG(d.woken == 1 && d.fired == 1 && d.finalized == 1,
                          "%s: deadline: woken %d fired %d finalized %d (want 1 1 1)", name, d.woken, d.fired,
                          d.finalized);
                pthread_mutex_unlock(&d.mutex);
            }
            connectplugin_client_stream_free(s);
        }

        /* 3. A call answered before its deadline: on_done never runs, even when the deadline passes
              while the handler is still running; both finalizers run once. */
        done_reset(&d);
        s = open_one(client, SVC "QuickDone", CONNECTPLUGIN_UNARY, "q", 150);
        if (s) {
            const uint8_t *data;
            size_t len;
            connectplugin_error *err = NULL;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_OK && len == 5 && memcmp(data, "quick", 5) == 0, "%s: quick call: %d %s",
                      name, rc, code_text(err));
            connectplugin_error_free(err);
            if (CHECK_MSG_BOOL(done_settle(&d, 1, 2), name)) {
                sleep_ms(50);
                pthread_mutex_lock(&d.mutex);
                CHECK_MSG(d.fired == 0 && d.finalized == 2 && d.respond_rc == CONNECTPLUGIN_OK,
                          "%s: answered call: fired %d finalized %d respond %d (want 0 2 OK)", name, d.fired,
                          d.finalized, d.respond_rc);
                pthread_mutex_unlock(&d.mutex);
            }
            connectplugin_client_stream_free(s);
        }

        /* 4. A server stream whose handler waits on the notice, canceled by the client. */
        done_reset(&d);
        s = open_one(client, SVC "StreamWaitDone", CONNECTPLUGIN_SERVER_STREAM, "s", 0);
        if (s) {
            const uint8_t *data;
            size_t len;
            connectplugin_error *err = NULL;
            connectplugin_status rc = recv_msg(s, &data, &len, &err);
            CHECK_MSG(rc == CONNECTPLUGIN_OK, "%s: stream first message: %d %s", name, rc, code_text(err));
            connectplugin_error_free(err);
            connectplugin_client_stream_cancel(s);
            if (CHECK_MSG_BOOL(done_settle(&d, 1, 1), name)) {
                pthread_mutex_lock(&d.mutex);
                CHECK_MSG(d.woken == 1 && d.fired == 1 && d.finalized == 1 && d.respond_rc == CONNECTPLUGIN_ERR_CLOSED,
                          "%s: stream cancel: woken %d fired %d finalized %d finish %d", name, d.woken, d.fired,
                          d.finalized, d.respond_rc);
                pthread_mutex_unlock(&d.mutex);
            }
            connectplugin_client_stream_free(s);
        }
        connectplugin_client_free(client);
    }
    /* NULL call or stream: refused, the finalizer runs. */
    done_reset(&d);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_call_on_done, NULL, done_fire, &d, done_finalize);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_stream_on_done, NULL, done_fire, &d, done_finalize);
    CHECK_MSG(d.finalized == 2 && d.fired == 0, "NULL handles: finalized %d fired %d", d.finalized, d.fired);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 1000);
    connectplugin_server_free(server);
}

/* ---------------------------------------------------------------------------------------------- */
/* Tests: inline unary handlers (connectplugin_server_register_unary_inline)                       */
/* ---------------------------------------------------------------------------------------------- */

typedef struct inline_probe {
    pthread_mutex_t mutex;
    int calls;
    int on_handler_thread; /* calls that ran on a "cp-handler-N" pool thread */
    int intercepted;       /* start hooks that ran on the handler's own thread, just before it */
    int hook_off_thread;   /* start hooks on a pool thread */
    pthread_t last_hook_thread;
    bool hook_seen;
    char name[32];
} inline_probe;

static bool on_pool_thread(char *name, size_t size) {
    name[0] = '\0';
    pthread_getname_np(pthread_self(), name, size);
    return strncmp(name, "cp-handler", 10) == 0;
}

static void handle_inline_echo(connectplugin_call *call, void *user_data) {
    inline_probe *p = user_data;
    char name[32];
    bool pool = on_pool_thread(name, sizeof name);
    pthread_mutex_lock(&p->mutex);
    p->calls++;
    if (pool) p->on_handler_thread++;
    if (p->hook_seen && pthread_equal(p->last_hook_thread, pthread_self())) p->intercepted++;
    p->hook_seen = false;
    snprintf(p->name, sizeof p->name, "%s", name);
    pthread_mutex_unlock(&p->mutex);
    size_t len = 0;
    const uint8_t *req = connectplugin_call_request(call, &len);
    connectplugin_error *err = NULL;
    if (connectplugin_call_respond(call, req, len, &err) != CONNECTPLUGIN_OK) connectplugin_error_free(err);
}

static int32_t inline_hook_start(connectplugin_interceptor_call *call, void *user_data) {
    inline_probe *p = user_data;
    if (!streq(connectplugin_interceptor_call_procedure(call), SVC "Inline")) return 0;
    char name[32];
    bool pool = on_pool_thread(name, sizeof name);
    pthread_mutex_lock(&p->mutex);
    if (pool) p->hook_off_thread++;
    p->last_hook_thread = pthread_self();
    p->hook_seen = true;
    pthread_mutex_unlock(&p->mutex);
    return 0;
}

static void test_inline_unary(void) {
    inline_probe inl = {.mutex = PTHREAD_MUTEX_INITIALIZER}, pool = {.mutex = PTHREAD_MUTEX_INITIALIZER};
    connectplugin_server *server = NULL;
    if (!EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_new, NULL, &server)) return;
    char sock[64];
    snprintf(sock, sizeof sock, "/tmp/cp-inline-%d.sock", (int)getpid());
    unlink(sock);
    connectplugin_interceptor *icpt = NULL;
    bool ok = EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_tcp, server, "127.0.0.1:0") &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_listen_unix, server, sock) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary_inline, server, SVC "Inline",
                        handle_inline_echo, &inl, NULL) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_register_unary, server, SVC "Pooled", handle_inline_echo,
                        &pool, NULL) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_set_no_side_effects, server, SVC "Inline") &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_interceptor_new, inline_hook_start, NULL, &inl, NULL, &icpt) &&
              EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_add_interceptor, server, NULL, icpt);
    connectplugin_interceptor_free(icpt);
    /* Same argument checks as connectplugin_server_register_unary. */
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary_inline, NULL, SVC "X",
              handle_inline_echo, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary_inline, server, SVC "X", NULL,
              NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary_inline, server, SVC "Inline",
              handle_inline_echo, NULL, NULL);
    EXPECT_ST(CONNECTPLUGIN_ERR_INVALID_ARGUMENT, connectplugin_server_register_unary_inline, server, "bad",
              handle_inline_echo, NULL, NULL);
    if (!ok || !EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server)) {
        connectplugin_server_free(server);
        return;
    }
    EXPECT_ST(CONNECTPLUGIN_ERR_STATE, connectplugin_server_register_unary_inline, server, SVC "Late",
              handle_inline_echo, NULL, NULL);
    char tcp_url[96], unix_url[96];
    snprintf(tcp_url, sizeof tcp_url, "http://%s", connectplugin_server_address(server, 0));
    snprintf(unix_url, sizeof unix_url, "unix://%s", sock);
    combo combos[MAX_COMBOS];
    size_t n = all_combos(combos);
    int want = 0;
    for (int u = 0; u < 2; u++) {
        for (size_t i = 0; i < n; i++) {
            char name[96], what[160];
            combo_name(&combos[i], name, sizeof name);
            connectplugin_client *client = make_client(u ? unix_url : tcp_url, &combos[i], NULL, 30000);
            if (!client) continue;
            for (int k = 0; k < 3; k++) {
                snprintf(what, sizeof what, "%s %s: inline call %d", u ? "unix" : "tcp", name, k);
                unary_echo(client, SVC "Inline", NULL, "\"inline\"", what);
                want++;
            }
            snprintf(what, sizeof what, "%s %s: pooled call", u ? "unix" : "tcp", name);
            unary_echo(client, SVC "Pooled", NULL, "\"pooled\"", what);
            connectplugin_client_free(client);
        }
    }
    /* Connect GET to an inline method. */
    connectplugin_client_options *o = connectplugin_client_options_new();
    connectplugin_client *get_client = NULL;
    connectplugin_call_options *nse = connectplugin_call_options_new();
    if (EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_options_set_use_get, o, 1) &&
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_call_options_set_no_side_effects, nse, 1) &&
        EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_client_new, tcp_url, o, &get_client)) {
        unary_echo(get_client, SVC "Inline", nse, "\"get\"", "inline GET");
        want++;
    }
    connectplugin_call_options_free(nse);
    connectplugin_client_options_free(o);
    connectplugin_client_free(get_client);
    EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_stop, server, 1000);
    connectplugin_server_free(server);
    unlink(sock);
    /* Every inline call ran off the handler pool (on an I/O thread), behind its interceptor on that
       same thread; every pooled call on a pool thread (the control: the names are what we think). */
    CHECK_MSG(inl.calls == want, "inline handler ran %d times, want %d", inl.calls, want);
    CHECK_MSG(inl.on_handler_thread == 0, "%d inline calls ran on a handler thread (last: \"%s\")", inl.on_handler_thread,
              inl.name);
    CHECK_MSG(inl.intercepted == want, "%d of %d inline calls ran right after their start hook on the same thread",
              inl.intercepted, want);
    CHECK_MSG(inl.hook_off_thread == 0, "%d start hooks of inline calls ran on a handler thread", inl.hook_off_thread);
    CHECK_MSG(pool.calls > 0 && pool.on_handler_thread == pool.calls, "pooled: %d of %d calls on a cp-handler thread",
              pool.on_handler_thread, pool.calls);
}

static const timed_test_case k_tests[] = {
    {"null_arguments", test_null_arguments, 0},
    {"receive_null_out_pointers", test_receive_null_out_pointers, 0},
    {"stream_matrix", test_stream_matrix, 120},
    {"stream_errors_matrix", test_stream_errors, 120},
    {"server_stream_cardinality", test_server_stream_cardinality, 0},
    {"stream_timeout", test_stream_timeout, 120},
    {"cancel_unblocks_receive", test_cancel_unblocks_receive, 180},
    {"cancel_unblocks_send", test_cancel_unblocks_send, 120},
    {"stream_free_running", test_stream_free_running, 120},
    {"many_messages", test_many_messages, 300},
    {"big_stream_memory", test_big_stream_memory, 300},
    {"backpressure_slow_reader", test_backpressure_slow_reader, 120},
    {"backpressure_slow_handler", test_backpressure_slow_handler, 120},
    {"connect_get", test_connect_get, 120},
    {"tls_round_trip", test_tls_round_trip, 120},
    {"mtls", test_mtls, 120},
    {"tls_errors", test_tls_errors, 120},
    {"tls_config_errors", test_tls_config_errors, 0},
    {"on_done", test_on_done, 120},
    {"inline_unary", test_inline_unary, 180},
};

int main(void) {
    pattern_init();
    return run_timed_tests(k_tests, sizeof k_tests / sizeof k_tests[0]);
}
