/*
 * kv-client-c — the key-value example client in C on libconnectplugin (see examples/README.md and
 * examples/proto/README.md).
 *
 *   kv-client-c --url URL [--scenario unary|stream] [--protocol connect|grpc|grpcweb] [--codec proto|json]
 *               [--http 1.1|2] [--compression identity|gzip] [--tls-ca CA.pem [--cert CERT.pem --key KEY.pem]]
 *
 * URL is http://host:port, https://host:port or unix:///path/to.sock; --tls-ca (alias --ca) or an
 * https:// URL means TLS, --cert/--key add a client certificate (mTLS). Defaults: --scenario unary
 * --protocol connect --codec proto --http 2 --compression identity.
 *
 * --scenario unary runs Put, Get, Delete, Get and Get with an empty key (the five lines of
 * examples/README.md); --scenario stream runs the 18 steps of examples/proto/README.md (unary,
 * client-, server- and bidi-streaming calls, error details, a deadline). Each line is printed and
 * flushed as soon as it is known. Exit status: 0 when every line is the expected one, 1 otherwise
 * (an unexpected RPC error prints "error: CODE: MESSAGE" — "error: STEP: CODE: MESSAGE" in the
 * stream scenario — on stderr), 2 for a usage error or an unsupported flag value.
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_common.h"

typedef struct kv_client {
    connectplugin_client *client;
    kv_codec codec;
} kv_client;

/* Prints an unexpected error on stderr as "error: CODE: MESSAGE". */
static void print_error(const char *code, const char *message) { fprintf(stderr, "error: %s: %s\n", code, message); }

/*
 * Calls @p procedure with @p request (as @p request_type) and decodes the response (as @p response_type)
 * into @p response. @p options may be NULL. Returns CONNECTPLUGIN_OK, or the failure status with
 * *out_error set (possibly NULL for a local decode failure, then *why has the reason).
 */
static connectplugin_status call(kv_client *c, const char *procedure, kv_type request_type, const kv_message *request,
                                 kv_type response_type, kv_message *response, const connectplugin_call_options *options,
                                 connectplugin_error **out_error, char *why, size_t why_size) {
    *out_error = NULL;
    memset(response, 0, sizeof *response);
    kv_buffer body = {0};
    if (!kv_encode(request_type, c->codec, request, &body)) {
        kv_buffer_free(&body);
        snprintf(why, why_size, "out of memory");
        return CONNECTPLUGIN_ERR_RESOURCE;
    }
    connectplugin_response *reply = NULL;
    connectplugin_status status =
        connectplugin_client_call_unary(c->client, procedure, body.data, body.len, options, &reply, out_error);
    kv_buffer_free(&body);
    if (status != CONNECTPLUGIN_OK) return status;
    size_t len = 0;
    const uint8_t *data = connectplugin_response_message(reply, &len);
    char reason[160];
    if (!kv_decode(response_type, c->codec, data, len, response, reason, sizeof reason)) {
        snprintf(why, why_size, "cannot decode %s: %s", kv_type_name(response_type), reason);
        status = CONNECTPLUGIN_ERR_INVALID_ARGUMENT;
    }
    connectplugin_response_free(reply);
    return status;
}

/* Reports an unexpected failure of call(). */
static void report_failure(connectplugin_error *error, const char *why) {
    if (error) print_error(connectplugin_code_name(connectplugin_error_code(error)), connectplugin_error_message(error));
    else print_error("internal", why);
    connectplugin_error_free(error);
}

/* ---------------------------------------------------------------------------------------------- */
/* --scenario unary: the five lines of examples/README.md                                         */
/* ---------------------------------------------------------------------------------------------- */

static int run_unary(kv_client *c) {
    bool all_expected = true;
    char why[256] = "";
    kv_message request = {0};
    kv_message response = {0};
    connectplugin_error *error = NULL;
    connectplugin_status status;
    const char *key = "greeting";
    static const uint8_t hello[] = "hello";

    /* 1. Put{greeting, hello} */
    if (!kv_message_set_key(&request, key, strlen(key)) || !kv_message_set_value(&request, hello, 5)) {
        print_error("resource_exhausted", "out of memory");
        kv_message_clear(&request);
        return 1;
    }
    status = call(c, KV_PROCEDURE_PUT, KV_PUT_REQUEST, &request, KV_PUT_RESPONSE, &response, NULL, &error, why,
                  sizeof why);
    if (status == CONNECTPLUGIN_OK) {
        printf("put %s ok\n", key);
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);

    /* 2. Get{greeting} → found, hello */
    status = call(c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, NULL, &error, why,
                  sizeof why);
    if (status == CONNECTPLUGIN_OK) {
        printf("get %s found=%s", key, response.found ? "true" : "false");
        if (response.found) {
            printf(" value=");
            if (response.value_len) fwrite(response.value, 1, response.value_len, stdout);
        }
        printf("\n");
        all_expected &= response.found && response.value_len == 5 && memcmp(response.value, hello, 5) == 0;
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);

    /* 3. Delete{greeting} → existed */
    status = call(c, KV_PROCEDURE_DELETE, KV_DELETE_REQUEST, &request, KV_DELETE_RESPONSE, &response, NULL, &error, why,
                  sizeof why);
    if (status == CONNECTPLUGIN_OK) {
        printf("delete %s existed=%s\n", key, response.existed ? "true" : "false");
        all_expected &= response.existed;
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);

    /* 4. Get{greeting} → not found */
    status = call(c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, NULL, &error, why,
                  sizeof why);
    if (status == CONNECTPLUGIN_OK) {
        printf("get %s found=%s\n", key, response.found ? "true" : "false");
        all_expected &= !response.found;
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);
    kv_message_clear(&request);

    /* 5. Get{""} → invalid_argument "key must not be empty" */
    status = call(c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, NULL, &error, why,
                  sizeof why);
    if (status == CONNECTPLUGIN_ERR_RPC) {
        const char *code = connectplugin_code_name(connectplugin_error_code(error));
        const char *message = connectplugin_error_message(error);
        printf("get <empty> error=%s message=%s\n", code, message);
        all_expected &= connectplugin_error_code(error) == CONNECTPLUGIN_CODE_INVALID_ARGUMENT &&
                        strcmp(message, KV_EMPTY_KEY_MESSAGE) == 0;
        connectplugin_error_free(error);
    } else if (status == CONNECTPLUGIN_OK) {
        printf("get <empty> found=%s\n", response.found ? "true" : "false");
        fprintf(stderr, "error: the call with an empty key succeeded\n");
        all_expected = false;
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);
    return all_expected ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* --scenario stream: examples/proto/README.md (the lines of Tests/interop/kvscenario.py)          */
/* ---------------------------------------------------------------------------------------------- */

#define RESERVED_ERROR                                                                                           \
    "error=failed_precondition message=" KV_RESERVED_MESSAGE " detail=" KV_ERROR_INFO_TYPE " reason=" KV_ERROR_REASON \
    " domain=" KV_ERROR_DOMAIN " key=" KV_ERROR_KEY

static const char *const k_expected_head[] = {
    "put greeting ok",
    "get greeting found=true value=hello",
    "delete greeting existed=true",
    "get greeting found=false",
    "get <empty> error=invalid_argument message=key must not be empty",
    "get __error__ " RESERVED_ERROR,
    "get __slow__ error=deadline_exceeded",
    "putmany count=3",
    "putmany <none> count=0",
    "putmany <empty> error=invalid_argument message=key must not be empty",
    "list s/a count=2 s/a1=x s/a2=y",
    "list s/none count=0",
    "list __error__ " RESERVED_ERROR,
    "watch s/a,s/b events=3 s/a1=x s/a2=y s/b1=z",
    "watch s/a,__error__ events=2 s/a1=x s/a2=y " RESERVED_ERROR,
};
#define WATCH_LIVE_H2 "watch-live s/a events=4 s/a1=x s/a2=y s/a3=w s/a3=<deleted>"
#define WATCH_LIVE_H1 "watch-live skipped (full-duplex bidi needs HTTP/2)"
static const char *const k_expected_tail[] = {
    "cleanup deleted=3",
    "list s/ count=0",
};
#define N_HEAD (sizeof k_expected_head / sizeof k_expected_head[0])
#define N_TAIL (sizeof k_expected_tail / sizeof k_expected_tail[0])
#define N_LINES (N_HEAD + 1 + N_TAIL)

#define SLOW_DEADLINE_MS 200 /* the deadline of the Get of __slow__ */
#define STREAM_TIMEOUT_MS 30000 /* a bound on every streaming call, so that a stuck peer cannot hang us */

/* A growable string. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void text_add(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->len + (size_t)n + 1) * 2;
        char *s = realloc(t->s, cap);
        if (!s) return;
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void text_bytes(text *t, const void *data, size_t len) { text_add(t, "%.*s", (int)len, len ? (const char *)data : ""); }

static void text_free(text *t) {
    free(t->s);
    memset(t, 0, sizeof *t);
}

/* An RPC failure as the scenario prints it: code name, message, details. */
typedef struct failure {
    char code[40];
    text message;
    size_t detail_count;
    char **detail_types;
    kv_buffer *detail_values;
} failure;

static void failure_clear(failure *f) {
    text_free(&f->message);
    for (size_t i = 0; i < f->detail_count; i++) {
        free(f->detail_types[i]);
        kv_buffer_free(&f->detail_values[i]);
    }
    free(f->detail_types);
    free(f->detail_values);
    memset(f, 0, sizeof *f);
}

/* Copies (and frees) a library error; NULL error means a local failure described by @p why. */
static void failure_set(failure *f, connectplugin_error *error, const char *why) {
    failure_clear(f);
    if (!error) {
        snprintf(f->code, sizeof f->code, "internal");
        text_add(&f->message, "%s", why ? why : "unknown failure");
        return;
    }
    snprintf(f->code, sizeof f->code, "%s", connectplugin_code_name(connectplugin_error_code(error)));
    text_add(&f->message, "%s", connectplugin_error_message(error));
    size_t n = connectplugin_error_detail_count(error);
    f->detail_types = calloc(n ? n : 1, sizeof *f->detail_types);
    f->detail_values = calloc(n ? n : 1, sizeof *f->detail_values);
    for (size_t i = 0; f->detail_types && f->detail_values && i < n; i++) {
        const char *type = NULL;
        const uint8_t *value = NULL;
        size_t len = 0;
        if (connectplugin_error_detail(error, i, &type, &value, &len) != CONNECTPLUGIN_OK) continue;
        kv_buffer *b = &f->detail_values[f->detail_count];
        memset(b, 0, sizeof *b);
        if (len && !(b->data = malloc(len))) continue;
        if (len) memcpy(b->data, value, len);
        b->len = b->cap = len;
        f->detail_types[f->detail_count++] = strdup(type ? type : "");
    }
    connectplugin_error_free(error);
}

static void failure_local(failure *f, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    failure_set(f, NULL, buf);
}

/* "error=CODE[ message=MESSAGE]" and, per detail, " detail=TYPE[ reason=R domain=D K=V…]". */
static void format_error(text *t, const failure *f, bool with_message) {
    text_add(t, "error=%s", f->code);
    if (with_message) text_add(t, " message=%s", f->message.s ? f->message.s : "");
    for (size_t i = 0; i < f->detail_count; i++) {
        const char *type = f->detail_types[i] ? f->detail_types[i] : "";
        const char *slash = strrchr(type, '/'); /* the type URL after its last '/' */
        text_add(t, " detail=%s", slash ? slash + 1 : type);
        kv_error_info info;
        char why[128];
        if (strcmp(slash ? slash + 1 : type, KV_ERROR_INFO_TYPE) == 0 &&
            kv_error_info_decode(f->detail_values[i].data, f->detail_values[i].len, &info, why, sizeof why)) {
            text_add(t, " reason=%s domain=%s", info.reason, info.domain);
            for (size_t k = 0; k < info.metadata_count; k++)
                text_add(t, " %s=%s", info.metadata_keys[k], info.metadata_values[k]);
            kv_error_info_clear(&info);
        }
    }
}

/* A list of received messages (ListResponse or WatchEvent). */
typedef struct items {
    kv_message *v;
    size_t n, cap;
} items;

static bool items_push(items *l, kv_message *m) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        kv_message *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *m;
    memset(m, 0, sizeof *m);
    return true;
}

static void items_free(items *l) {
    for (size_t i = 0; i < l->n; i++) kv_message_clear(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* " KEY=VALUE" (or " KEY=<deleted>") for each item. */
static void format_items(text *t, const items *l) {
    for (size_t i = 0; i < l->n; i++) {
        text_add(t, " ");
        text_bytes(t, l->v[i].key, l->v[i].key_len);
        if (l->v[i].deleted) {
            text_add(t, "=<deleted>");
        } else {
            text_add(t, "=");
            text_bytes(t, l->v[i].value, l->v[i].value_len);
        }
    }
}

/* ---- The RPCs of the scenario. Each returns true on success, or false with *f set. ---- */

static bool set_kv(kv_message *m, const char *key, const char *value) {
    return kv_message_set_key(m, key, strlen(key)) && (!value || kv_message_set_value(m, (const uint8_t *)value, strlen(value)));
}

static bool rpc_put(kv_client *c, const char *key, const char *value, failure *f) {
    kv_message request = {0}, response = {0};
    connectplugin_error *error = NULL;
    char why[256] = "";
    bool ok = set_kv(&request, key, value);
    connectplugin_status status = ok ? call(c, KV_PROCEDURE_PUT, KV_PUT_REQUEST, &request, KV_PUT_RESPONSE, &response,
                                            NULL, &error, why, sizeof why)
                                     : CONNECTPLUGIN_ERR_RESOURCE;
    if (status != CONNECTPLUGIN_OK) failure_set(f, error, ok ? why : "out of memory");
    kv_message_clear(&request);
    kv_message_clear(&response);
    return status == CONNECTPLUGIN_OK;
}

/* Get; on success *out has found and value (caller clears it). timeout_ms 0 = none. */
static bool rpc_get(kv_client *c, const char *key, int64_t timeout_ms, kv_message *out, failure *f) {
    kv_message request = {0};
    connectplugin_error *error = NULL;
    char why[256] = "";
    connectplugin_call_options *options = NULL;
    if (timeout_ms > 0) {
        options = connectplugin_call_options_new();
        if (!options || connectplugin_call_options_set_timeout_ms(options, timeout_ms, NULL) != CONNECTPLUGIN_OK) {
            connectplugin_call_options_free(options);
            failure_local(f, "cannot set the timeout");
            return false;
        }
    }
    bool ok = set_kv(&request, key, NULL);
    connectplugin_status status = ok ? call(c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, out,
                                            options, &error, why, sizeof why)
                                     : CONNECTPLUGIN_ERR_RESOURCE;
    if (status != CONNECTPLUGIN_OK) failure_set(f, error, ok ? why : "out of memory");
    connectplugin_call_options_free(options);
    kv_message_clear(&request);
    return status == CONNECTPLUGIN_OK;
}

static bool rpc_delete(kv_client *c, const char *key, bool *existed, failure *f) {
    kv_message request = {0}, response = {0};
    connectplugin_error *error = NULL;
    char why[256] = "";
    bool ok = set_kv(&request, key, NULL);
    connectplugin_status status = ok ? call(c, KV_PROCEDURE_DELETE, KV_DELETE_REQUEST, &request, KV_DELETE_RESPONSE,
                                            &response, NULL, &error, why, sizeof why)
                                     : CONNECTPLUGIN_ERR_RESOURCE;
    if (status == CONNECTPLUGIN_OK) *existed = response.existed;
    else failure_set(f, error, ok ? why : "out of memory");
    kv_message_clear(&request);
    kv_message_clear(&response);
    return status == CONNECTPLUGIN_OK;
}

/* A streaming call of the scenario. */
typedef struct kv_stream {
    kv_client *c;
    connectplugin_client_stream *s;
} kv_stream;

static bool stream_open(kv_client *c, const char *procedure, connectplugin_method_kind kind, kv_stream *out, failure *f) {
    out->c = c;
    out->s = NULL;
    connectplugin_call_options *options = connectplugin_call_options_new();
    connectplugin_error *error = NULL;
    connectplugin_status status = options ? connectplugin_call_options_set_timeout_ms(options, STREAM_TIMEOUT_MS, &error)
                                          : CONNECTPLUGIN_ERR_RESOURCE;
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_client_open_stream(c->client, procedure, kind, options, &out->s, &error);
    connectplugin_call_options_free(options);
    if (status != CONNECTPLUGIN_OK) failure_set(f, error, "cannot open the stream");
    return status == CONNECTPLUGIN_OK;
}

/*
 * Sends one message of @p type: 1 = sent; 0 = the call already ended (its status and any messages
 * before it come from receive); -1 = a local failure (*f set).
 */
static int stream_send(kv_stream *st, kv_type type, const kv_message *m, failure *f) {
    kv_buffer body = {0};
    if (!kv_encode(type, st->c->codec, m, &body)) {
        kv_buffer_free(&body);
        failure_local(f, "out of memory");
        return -1;
    }
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_send(st->s, body.data, body.len, &error);
    kv_buffer_free(&body);
    if (status == CONNECTPLUGIN_OK) return 1;
    if (status == CONNECTPLUGIN_ERR_RPC) {
        connectplugin_error_free(error);
        return 0;
    }
    failure_set(f, error, "send failed");
    return -1;
}

/* Half-closes; false only for a local failure (a call that already ended reports on receive). */
static bool stream_close_send(kv_stream *st, failure *f) {
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_close_send(st->s, &error);
    if (status == CONNECTPLUGIN_OK || status == CONNECTPLUGIN_ERR_RPC) {
        connectplugin_error_free(error);
        return true;
    }
    failure_set(f, error, "close_send failed");
    return false;
}

/* Receives one message of @p type: 1 = a message in *out, 0 = the call ended OK, -1 = failure. */
static int stream_receive(kv_stream *st, kv_type type, kv_message *out, failure *f) {
    const uint8_t *data = NULL;
    size_t len = 0;
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_receive(st->s, &data, &len, &error);
    if (status == CONNECTPLUGIN_EOF) return 0;
    if (status != CONNECTPLUGIN_OK) {
        failure_set(f, error, "receive failed");
        return -1;
    }
    char why[160];
    if (!kv_decode(type, st->c->codec, data, len, out, why, sizeof why)) {
        failure_local(f, "cannot decode %s: %s", kv_type_name(type), why);
        return -1;
    }
    return 1;
}

/* Frees the stream (cancelling the call if it still runs). */
static void stream_close(kv_stream *st) {
    connectplugin_client_stream_free(st->s);
    st->s = NULL;
}

/* Receives every remaining message into @p out; true when the call ended OK. */
static bool stream_receive_all(kv_stream *st, kv_type type, items *out, failure *f) {
    for (;;) {
        kv_message m = {0};
        int rc = stream_receive(st, type, &m, f);
        if (rc == 0) return true;
        if (rc < 0) return false;
        if (!items_push(out, &m)) {
            kv_message_clear(&m);
            failure_local(f, "out of memory");
            return false;
        }
    }
}

/* List{prefix}: all messages in *out (also those received before a failure). */
static bool rpc_list(kv_client *c, const char *prefix, items *out, failure *f) {
    kv_stream st;
    if (!stream_open(c, KV_PROCEDURE_LIST, CONNECTPLUGIN_SERVER_STREAM, &st, f)) return false;
    kv_message request = {0};
    bool ok = set_kv(&request, prefix, NULL);
    if (!ok) failure_local(f, "out of memory");
    int sent = ok ? stream_send(&st, KV_LIST_REQUEST, &request, f) : -1;
    ok = sent >= 0 && (sent == 0 || stream_close_send(&st, f)) && stream_receive_all(&st, KV_LIST_RESPONSE, out, f);
    kv_message_clear(&request);
    stream_close(&st);
    return ok;
}

/* PutMany[(key, value)…]: the count the server returned. */
static bool rpc_put_many(kv_client *c, const char *const *pairs, size_t n, int64_t *count, failure *f) {
    kv_stream st;
    if (!stream_open(c, KV_PROCEDURE_PUT_MANY, CONNECTPLUGIN_CLIENT_STREAM, &st, f)) return false;
    int sent = 1;
    for (size_t i = 0; sent == 1 && i < n; i++) {
        kv_message request = {0};
        if (set_kv(&request, pairs[2 * i], pairs[2 * i + 1])) {
            sent = stream_send(&st, KV_PUT_REQUEST, &request, f);
        } else {
            failure_local(f, "out of memory");
            sent = -1;
        }
        kv_message_clear(&request);
    }
    bool ok = sent >= 0 && (sent == 0 || stream_close_send(&st, f));
    if (ok) {
        kv_message response = {0};
        int rc = stream_receive(&st, KV_PUT_MANY_RESPONSE, &response, f);
        if (rc == 0) failure_local(f, "PutMany ended without a response");
        ok = rc == 1;
        if (ok) {
            *count = response.count;
            kv_message_clear(&response);
            /* Exactly one response, then the end. */
            rc = stream_receive(&st, KV_PUT_MANY_RESPONSE, &response, f);
            if (rc == 1) {
                kv_message_clear(&response);
                failure_local(f, "PutMany sent a second response");
            }
            ok = rc == 0;
        }
    }
    stream_close(&st);
    return ok;
}

/* Sends a WatchRequest: as stream_send. */
static int watch_send(kv_stream *st, const char *prefix, failure *f) {
    kv_message request = {0};
    if (!set_kv(&request, prefix, NULL)) {
        failure_local(f, "out of memory");
        return -1;
    }
    int sent = stream_send(st, KV_WATCH_REQUEST, &request, f);
    kv_message_clear(&request);
    return sent;
}

/* Watch, half duplex: sends every prefix, half-closes, then reads to the end. */
static bool rpc_watch_half_duplex(kv_client *c, const char *const *prefixes, size_t n, items *events, failure *f) {
    kv_stream st;
    if (!stream_open(c, KV_PROCEDURE_WATCH, CONNECTPLUGIN_BIDI_STREAM, &st, f)) return false;
    int sent = 1;
    for (size_t i = 0; sent == 1 && i < n; i++) sent = watch_send(&st, prefixes[i], f);
    bool ok = sent >= 0 && (sent == 0 || stream_close_send(&st, f)) && stream_receive_all(&st, KV_WATCH_EVENT, events, f);
    stream_close(&st);
    return ok;
}

/* Reads exactly one event into @p events; an early end is a failure. */
static bool watch_receive_one(kv_stream *st, items *events, failure *f) {
    kv_message m = {0};
    int rc = stream_receive(st, KV_WATCH_EVENT, &m, f);
    if (rc == 0) failure_local(f, "watch stream ended early after %zu events", events->n);
    if (rc != 1) return false;
    if (!items_push(events, &m)) {
        kv_message_clear(&m);
        failure_local(f, "out of memory");
        return false;
    }
    return true;
}

/*
 * Watch, full duplex (HTTP/2): watch s/a; read the 2 replayed events; Put s/a3 (another call) and
 * read its event; Delete s/a3 and read its event; half-close; the stream ends OK with no more events.
 */
static bool rpc_watch_live(kv_client *c, items *events, failure *f) {
    kv_stream st;
    if (!stream_open(c, KV_PROCEDURE_WATCH, CONNECTPLUGIN_BIDI_STREAM, &st, f)) return false;
    bool existed = false;
    bool ok = watch_send(&st, "s/a", f) >= 0 && watch_receive_one(&st, events, f) && watch_receive_one(&st, events, f) &&
              rpc_put(c, "s/a3", "w", f) && watch_receive_one(&st, events, f) && rpc_delete(c, "s/a3", &existed, f) &&
              watch_receive_one(&st, events, f) && stream_close_send(&st, f);
    if (ok) {
        kv_message extra = {0};
        int rc = stream_receive(&st, KV_WATCH_EVENT, &extra, f);
        if (rc == 1) {
            failure_local(f, "unexpected event after half-close: %.*s", (int)extra.key_len, extra.key ? extra.key : "");
            kv_message_clear(&extra);
        }
        ok = rc == 0;
    }
    stream_close(&st);
    return ok;
}

/* ---- The scenario itself. ---- */

typedef struct scenario {
    const char *expected[N_LINES];
    size_t lines;
    bool ok;
} scenario;

/* Prints and flushes one line, comparing it with the expected one. */
static void emit(scenario *sc, const char *line) {
    if (sc->lines >= N_LINES || strcmp(sc->expected[sc->lines], line) != 0) sc->ok = false;
    sc->lines++;
    printf("%s\n", line);
    fflush(stdout);
}

static void emitf(scenario *sc, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    emit(sc, line);
}

/* An RPC error where none was expected: "error: STEP: CODE: MESSAGE" on stderr; the scenario stops. */
static void unexpected(scenario *sc, const char *step, const failure *f) {
    sc->ok = false;
    fprintf(stderr, "error: %s: %s: %s\n", step, f->code, f->message.s ? f->message.s : "");
    fflush(stderr);
}

/* The line of a step that is expected to fail: "STEP [events=N E1 … EN ]error=…". */
static void emit_failure(scenario *sc, const char *step, const items *received, const failure *f, bool with_message) {
    text t = {0};
    text_add(&t, "%s ", step);
    if (received && received->n) {
        text_add(&t, "events=%zu", received->n);
        format_items(&t, received);
        text_add(&t, " ");
    }
    format_error(&t, f, with_message);
    emit(sc, t.s ? t.s : step);
    text_free(&t);
}

static int run_stream(kv_client *c, const char *http) {
    scenario sc = {.ok = true};
    for (size_t i = 0; i < N_HEAD; i++) sc.expected[i] = k_expected_head[i];
    sc.expected[N_HEAD] = strcmp(http, "2") == 0 ? WATCH_LIVE_H2 : WATCH_LIVE_H1;
    for (size_t i = 0; i < N_TAIL; i++) sc.expected[N_HEAD + 1 + i] = k_expected_tail[i];

    failure f = {0};
    kv_message m = {0};
    items list = {0};
    text t = {0};
    bool existed = false;
    int64_t count = 0;

    /* 1-5: the unary scenario. */
    if (!rpc_put(c, "greeting", "hello", &f)) goto unary_failed;
    emit(&sc, "put greeting ok");
    if (!rpc_get(c, "greeting", 0, &m, &f)) goto unary_failed;
    emitf(&sc, "get greeting found=%s value=%.*s", m.found ? "true" : "false", (int)m.value_len,
          m.value ? (const char *)m.value : "");
    kv_message_clear(&m);
    if (!rpc_delete(c, "greeting", &existed, &f)) goto unary_failed;
    emitf(&sc, "delete greeting existed=%s", existed ? "true" : "false");
    if (!rpc_get(c, "greeting", 0, &m, &f)) goto unary_failed;
    emitf(&sc, "get greeting found=%s", m.found ? "true" : "false");
    kv_message_clear(&m);
    if (rpc_get(c, "", 0, &m, &f)) emit(&sc, "get <empty> unexpectedly succeeded");
    else emit_failure(&sc, "get <empty>", NULL, &f, true);
    kv_message_clear(&m);

    /* 6-7: error details and deadlines. */
    if (rpc_get(c, KV_ERROR_KEY, 0, &m, &f)) emit(&sc, "get __error__ unexpectedly succeeded");
    else emit_failure(&sc, "get __error__", NULL, &f, true);
    kv_message_clear(&m);
    if (rpc_get(c, KV_SLOW_KEY, SLOW_DEADLINE_MS, &m, &f)) emit(&sc, "get __slow__ unexpectedly succeeded");
    else emit_failure(&sc, "get __slow__", NULL, &f, false);
    kv_message_clear(&m);

    /* 8-10: client streaming. */
    {
        static const char *const three[] = {"s/a1", "x", "s/a2", "y", "s/b1", "z"};
        if (!rpc_put_many(c, three, 3, &count, &f)) {
            unexpected(&sc, "putmany", &f);
            goto done;
        }
        emitf(&sc, "putmany count=%lld", (long long)count);
        if (!rpc_put_many(c, NULL, 0, &count, &f)) {
            unexpected(&sc, "putmany", &f);
            goto done;
        }
        emitf(&sc, "putmany <none> count=%lld", (long long)count);
        static const char *const empty_key[] = {"", "x"};
        if (rpc_put_many(c, empty_key, 1, &count, &f)) emit(&sc, "putmany <empty> unexpectedly succeeded");
        else emit_failure(&sc, "putmany <empty>", NULL, &f, true);
    }

    /* 11-13: server streaming. */
    {
        static const char *const prefixes[] = {"s/a", "s/none"};
        for (size_t i = 0; i < 2; i++) {
            if (!rpc_list(c, prefixes[i], &list, &f)) {
                unexpected(&sc, "list", &f);
                goto done;
            }
            text_add(&t, "list %s count=%zu", prefixes[i], list.n);
            format_items(&t, &list);
            emit(&sc, t.s);
            text_free(&t);
            items_free(&list);
        }
        if (rpc_list(c, KV_ERROR_KEY, &list, &f)) emit(&sc, "list __error__ unexpectedly succeeded");
        else emit_failure(&sc, "list __error__", &list, &f, true);
        items_free(&list);
    }

    /* 14-15: bidi, half duplex. */
    {
        static const char *const ab[] = {"s/a", "s/b"};
        if (!rpc_watch_half_duplex(c, ab, 2, &list, &f)) {
            unexpected(&sc, "watch", &f);
            goto done;
        }
        text_add(&t, "watch s/a,s/b events=%zu", list.n);
        format_items(&t, &list);
        emit(&sc, t.s);
        text_free(&t);
        items_free(&list);
        static const char *const bad[] = {"s/a", KV_ERROR_KEY};
        if (rpc_watch_half_duplex(c, bad, 2, &list, &f)) emit(&sc, "watch s/a,__error__ unexpectedly succeeded");
        else emit_failure(&sc, "watch s/a,__error__", &list, &f, true);
        items_free(&list);
    }

    /* 16: bidi, full duplex (HTTP/2 only). */
    if (strcmp(http, "2") == 0) {
        if (!rpc_watch_live(c, &list, &f)) {
            unexpected(&sc, "watch-live", &f);
            goto done;
        }
        text_add(&t, "watch-live s/a events=%zu", list.n);
        format_items(&t, &list);
        emit(&sc, t.s);
        text_free(&t);
        items_free(&list);
    } else {
        emit(&sc, WATCH_LIVE_H1);
    }

    /* 17-18: cleanup, so that the scenario can run again on the same server. */
    {
        static const char *const keys[] = {"s/a1", "s/a2", "s/b1"};
        int deleted = 0;
        for (size_t i = 0; i < 3; i++) {
            if (!rpc_delete(c, keys[i], &existed, &f)) {
                unexpected(&sc, "cleanup", &f);
                goto done;
            }
            deleted += existed;
        }
        emitf(&sc, "cleanup deleted=%d", deleted);
        if (!rpc_list(c, "s/", &list, &f)) {
            unexpected(&sc, "cleanup", &f);
            goto done;
        }
        emitf(&sc, "list s/ count=%zu", list.n);
        items_free(&list);
    }
    goto done;

unary_failed:
    unexpected(&sc, "unary", &f);
done:
    kv_message_clear(&m);
    items_free(&list);
    text_free(&t);
    failure_clear(&f);
    if (sc.lines != N_LINES) sc.ok = false;
    return sc.ok ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* main                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static int usage(const char *why) {
    if (why) fprintf(stderr, "kv-client-c: %s\n", why);
    fprintf(stderr, "usage: kv-client-c --url URL [--scenario unary|stream] [--protocol connect|grpc|grpcweb]\n"
                    "                   [--codec proto|json] [--http 1.1|2] [--compression identity|gzip]\n"
                    "                   [--tls-ca CA.pem [--cert CERT.pem --key KEY.pem]]\n");
    return 2;
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value. */
static bool flag_value(int argc, char **argv, int *i, const char *name, const char **out) {
    size_t n = strlen(name);
    if (strcmp(argv[*i], name) == 0 && *i + 1 < argc) {
        *out = argv[++*i];
        return true;
    }
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return true;
    }
    return false;
}

static bool one_of(const char *value, const char *a, const char *b, const char *c) {
    return strcmp(value, a) == 0 || strcmp(value, b) == 0 || (c && strcmp(value, c) == 0);
}

int main(int argc, char **argv) {
    const char *url = NULL, *codec_name = "proto", *http = "2", *scenario_name = "unary", *protocol = "connect",
               *compression = "identity", *tls_ca = NULL, *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (flag_value(argc, argv, &i, "--url", &url) || flag_value(argc, argv, &i, "--codec", &codec_name) ||
            flag_value(argc, argv, &i, "--http", &http) || flag_value(argc, argv, &i, "--scenario", &scenario_name) ||
            flag_value(argc, argv, &i, "--protocol", &protocol) ||
            flag_value(argc, argv, &i, "--compression", &compression) ||
            flag_value(argc, argv, &i, "--tls-ca", &tls_ca) || flag_value(argc, argv, &i, "--ca", &tls_ca) ||
            flag_value(argc, argv, &i, "--cert", &cert) || flag_value(argc, argv, &i, "--key", &key))
            continue;
        return usage(NULL);
    }
    kv_client c = {NULL, KV_CODEC_PROTO};
    if (!url || !kv_codec_from_name(codec_name, &c.codec)) return usage(NULL);
    int32_t version;
    if (strcmp(http, "1.1") == 0) version = CONNECTPLUGIN_HTTP_1_1;
    else if (strcmp(http, "2") == 0) version = CONNECTPLUGIN_HTTP_2;
    else return usage("--http is 1.1 or 2");
    if (!one_of(scenario_name, "unary", "stream", NULL)) return usage("--scenario is unary or stream");
    if (!one_of(protocol, "connect", "grpc", "grpcweb")) return usage("--protocol is connect, grpc or grpcweb");
    if (!one_of(compression, "identity", "gzip", NULL)) return usage("--compression is identity or gzip");
    if (strcmp(protocol, "grpc") == 0 && version != CONNECTPLUGIN_HTTP_2) return usage("gRPC needs --http 2");
    if ((cert == NULL) != (key == NULL)) return usage("--cert and --key go together");
    bool tls = tls_ca || cert || strncmp(url, "https://", 8) == 0;
    if (tls && strncmp(url, "unix:", 5) == 0) return usage("TLS needs an http(s):// URL");
    /* --tls-ca (or a client certificate) means TLS, whatever the scheme says. */
    char url_buf[1024];
    if (tls && strncmp(url, "http://", 7) == 0) {
        snprintf(url_buf, sizeof url_buf, "https://%s", url + 7);
        url = url_buf;
    }

    connectplugin_error *error = NULL;
    connectplugin_client_options *options = connectplugin_client_options_new();
    connectplugin_tls_options *tls_options = tls ? connectplugin_tls_options_new() : NULL;
    if (!options || (tls && !tls_options)) {
        print_error("resource_exhausted", "out of memory");
        connectplugin_client_options_free(options);
        connectplugin_tls_options_free(tls_options);
        return 1;
    }
    connectplugin_status status = connectplugin_client_options_set_codec(options, codec_name, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_options_set_http_version(options, version, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_options_set_protocol(options, protocol, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_options_set_compression(options, compression, &error);
    if (status == CONNECTPLUGIN_OK && tls_ca) status = connectplugin_tls_options_set_ca_file(tls_options, tls_ca, &error);
    if (status == CONNECTPLUGIN_OK && cert)
        status = connectplugin_tls_options_set_cert_files(tls_options, cert, key, &error);
    if (status == CONNECTPLUGIN_OK && tls) status = connectplugin_client_options_set_tls(options, tls_options, &error);
    if (status == CONNECTPLUGIN_ERR_UNSUPPORTED) {
        fprintf(stderr, "kv-client-c: %s\n", connectplugin_error_message(error));
        connectplugin_error_free(error);
        connectplugin_client_options_free(options);
        connectplugin_tls_options_free(tls_options);
        return 2;
    }
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_new(url, options, &c.client, &error);
    connectplugin_client_options_free(options);
    connectplugin_tls_options_free(tls_options);
    if (status != CONNECTPLUGIN_OK) {
        report_failure(error, connectplugin_status_string(status));
        return 1;
    }
    int rc = strcmp(scenario_name, "stream") == 0 ? run_stream(&c, http) : run_unary(&c);
    connectplugin_client_free(c.client);
    return rc;
}
