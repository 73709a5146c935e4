/*
 * kv-server-c — the key-value example server in C on libconnectplugin (see examples/README.md and
 * examples/proto/README.md, the spec of every method).
 *
 *   kv-server-c --listen ADDR [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]]
 *
 * ADDR is host:port (port 0 picks one) or unix:PATH. With --tls-cert/--tls-key the TCP port speaks
 * TLS only (ALPN h2 and http/1.1); --tls-client-ca also requires client certificates signed by that
 * CA (mTLS). Serves Put, Get, Delete (unary), List (server streaming), PutMany (client streaming)
 * and Watch (bidi) over Connect, gRPC and gRPC-Web, HTTP/1.1 and HTTP/2, proto and JSON.
 *
 * Prints "listening on <bound address>" once ready, serves until SIGTERM or SIGINT, then stops
 * gracefully (in-flight calls get up to 5 s) and exits 0. Exit status 2 for a usage error.
 *
 * Built with -DKV_PLUGIN (examples/c/build.sh) it is kv-plugin-c: without --listen it serves the same
 * handlers as a go-plugin compatible plugin (connectplugin_plugin_serve: cookie KV_PLUGIN=
 * connectplugin-kv, app protocol version 1, plugin "kv"); run by hand it says so and exits 2. With
 * --listen ADDR it serves them in the runtime's remote mode (control services included; hosts use
 * --url).
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_common.h"

static void report(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "kv-server-c: %s: %s: %s\n", what, connectplugin_status_string(status),
            connectplugin_error_message(error));
    connectplugin_error_free(error);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool is_key(const char *key, size_t key_len, const char *want) {
    return key_len == strlen(want) && memcmp(key, want, key_len) == 0;
}

static bool has_prefix(const char *key, size_t key_len, const char *prefix, size_t prefix_len) {
    return prefix_len <= key_len && memcmp(key, prefix, prefix_len) == 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The store: a mutex-protected array of entries, and the Watch calls that listen to its changes    */
/* ---------------------------------------------------------------------------------------------- */

typedef struct kv_entry {
    char *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
} kv_entry;

/* One change as a Watch call will send it. */
typedef struct watch_event {
    struct watch_event *next;
    kv_message message; /* key, value, deleted */
} watch_event;

/* How a Watch call's request side ended (set by its receiver thread). */
typedef enum watch_end {
    WATCH_RUNNING,
    WATCH_HALF_CLOSED, /* the client finished sending: send what is queued, then end OK */
    WATCH_FAILED,      /* a bad request: send what is queued, then fail with code/message */
    WATCH_GONE,        /* the request stream broke (client gone, deadline, server stopping) */
} watch_end;

/*
 * A Watch call: its prefixes and its queue of events. Everything in it is guarded by the store's
 * mutex, so registering a prefix (with its replay) and every mutation are atomic with each other.
 */
typedef struct watcher {
    struct watcher *next; /* in kv_store.watchers while registered */
    bool registered;
    pthread_cond_t cond; /* signalled when the queue grows or the call's request side ends */
    char **prefixes;
    size_t *prefix_lens;
    size_t prefix_count;
    watch_event *head, *tail;
    watch_end end;
    connectplugin_code end_code;
    bool end_reserved; /* add the ErrorInfo detail to the failure */
    char end_message[256];
} watcher;

typedef struct kv_store {
    pthread_mutex_t mutex;
    kv_entry *entries;
    size_t count;
    size_t capacity;
    watcher *watchers;
} kv_store;

static kv_entry *store_find_locked(kv_store *store, const char *key, size_t key_len) {
    for (size_t i = 0; i < store->count; i++) {
        kv_entry *e = &store->entries[i];
        if (e->key_len == key_len && memcmp(e->key, key, key_len) == 0) return e;
    }
    return NULL;
}

static void watcher_end_locked(watcher *w, watch_end end, connectplugin_code code, const char *message, bool reserved);

/* Queues a copy of (key, value, deleted) for one watcher. */
static void watcher_push_locked(watcher *w, const char *key, size_t key_len, const uint8_t *value, size_t value_len,
                                bool deleted) {
    watch_event *ev = calloc(1, sizeof *ev);
    if (!ev || !kv_message_set_key(&ev->message, key, key_len) ||
        (value_len && !kv_message_set_value(&ev->message, value, value_len))) {
        if (ev) kv_message_clear(&ev->message);
        free(ev);
        watcher_end_locked(w, WATCH_FAILED, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory", false);
        return;
    }
    ev->message.deleted = deleted;
    if (w->tail) w->tail->next = ev;
    else w->head = ev;
    w->tail = ev;
    pthread_cond_signal(&w->cond);
}

static bool watcher_matches_locked(const watcher *w, const char *key, size_t key_len) {
    for (size_t i = 0; i < w->prefix_count; i++)
        if (has_prefix(key, key_len, w->prefixes[i], w->prefix_lens[i])) return true;
    return false;
}

/* One event per watcher with a matching prefix (one even if several match). */
static void notify_locked(kv_store *store, const char *key, size_t key_len, const uint8_t *value, size_t value_len,
                          bool deleted) {
    for (watcher *w = store->watchers; w; w = w->next)
        if (watcher_matches_locked(w, key, key_len)) watcher_push_locked(w, key, key_len, value, value_len, deleted);
}

static void watcher_unregister_locked(kv_store *store, watcher *w) {
    if (!w->registered) return;
    for (watcher **p = &store->watchers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    w->registered = false;
    w->next = NULL;
}

/* Stores a copy of (key, value) and notifies the watchers. False when out of memory. */
static bool store_put(kv_store *store, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
    uint8_t *value_copy = malloc(value_len ? value_len : 1);
    if (!value_copy) return false;
    if (value_len) memcpy(value_copy, value, value_len);
    bool ok = true;
    pthread_mutex_lock(&store->mutex);
    kv_entry *e = store_find_locked(store, key, key_len);
    if (e) {
        free(e->value);
        e->value = value_copy;
        e->value_len = value_len;
    } else {
        char *key_copy = malloc(key_len + 1);
        if (store->count == store->capacity) {
            size_t capacity = store->capacity ? store->capacity * 2 : 16;
            kv_entry *entries = realloc(store->entries, capacity * sizeof *entries);
            if (entries) {
                store->entries = entries;
                store->capacity = capacity;
            }
        }
        if (key_copy && store->count < store->capacity) {
            memcpy(key_copy, key, key_len);
            key_copy[key_len] = '\0';
            store->entries[store->count++] = (kv_entry){key_copy, key_len, value_copy, value_len};
        } else {
            free(key_copy);
            free(value_copy);
            ok = false;
        }
    }
    if (ok) notify_locked(store, key, key_len, value, value_len, false);
    pthread_mutex_unlock(&store->mutex);
    return ok;
}

/* Looks up key; on a hit copies the value into *out (owned). Returns 1 found, 0 absent, -1 out of memory. */
static int store_get(kv_store *store, const char *key, size_t key_len, kv_message *out) {
    int rc = 0;
    pthread_mutex_lock(&store->mutex);
    kv_entry *e = store_find_locked(store, key, key_len);
    if (e) rc = kv_message_set_value(out, e->value, e->value_len) ? 1 : -1;
    pthread_mutex_unlock(&store->mutex);
    return rc;
}

/* Removes key; returns whether it existed. A present key notifies the watchers. */
static bool store_delete(kv_store *store, const char *key, size_t key_len) {
    pthread_mutex_lock(&store->mutex);
    kv_entry *e = store_find_locked(store, key, key_len);
    bool existed = e != NULL;
    if (e) {
        notify_locked(store, key, key_len, NULL, 0, true);
        free(e->key);
        free(e->value);
        *e = store->entries[--store->count];
    }
    pthread_mutex_unlock(&store->mutex);
    return existed;
}

static int entry_order(const void *a, const void *b) {
    const kv_entry *x = *(const kv_entry *const *)a, *y = *(const kv_entry *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/*
 * The entries whose key starts with prefix, sorted by key bytes, as pointers into the store (valid
 * while the mutex is held). Caller frees the array. Returns false when out of memory.
 */
static bool matching_locked(kv_store *store, const char *prefix, size_t prefix_len, kv_entry ***out, size_t *count) {
    *out = NULL;
    *count = 0;
    kv_entry **list = malloc((store->count ? store->count : 1) * sizeof *list);
    if (!list) return false;
    size_t n = 0;
    for (size_t i = 0; i < store->count; i++)
        if (has_prefix(store->entries[i].key, store->entries[i].key_len, prefix, prefix_len)) list[n++] = &store->entries[i];
    qsort(list, n, sizeof *list, entry_order);
    *out = list;
    *count = n;
    return true;
}

/* A sorted copy of the entries starting with prefix (one consistent snapshot). */
static bool store_snapshot(kv_store *store, const char *prefix, size_t prefix_len, kv_message **out, size_t *count) {
    *out = NULL;
    *count = 0;
    bool ok = true;
    pthread_mutex_lock(&store->mutex);
    kv_entry **list = NULL;
    size_t n = 0;
    if (matching_locked(store, prefix, prefix_len, &list, &n)) {
        kv_message *copy = calloc(n ? n : 1, sizeof *copy);
        for (size_t i = 0; copy && i < n; i++) {
            if (!kv_message_set_key(&copy[i], list[i]->key, list[i]->key_len) ||
                !kv_message_set_value(&copy[i], list[i]->value, list[i]->value_len)) {
                for (size_t j = 0; j <= i; j++) kv_message_clear(&copy[j]);
                free(copy);
                copy = NULL;
            }
        }
        if (copy) {
            *out = copy;
            *count = n;
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    free(list);
    pthread_mutex_unlock(&store->mutex);
    return ok;
}

static void watcher_end_locked(watcher *w, watch_end end, connectplugin_code code, const char *message, bool reserved) {
    if (w->end != WATCH_RUNNING) return;
    w->end = end;
    w->end_code = code;
    w->end_reserved = reserved;
    snprintf(w->end_message, sizeof w->end_message, "%s", message ? message : "");
    pthread_cond_signal(&w->cond);
}

/* Adds a watched prefix and queues its replay, atomically (the store's mutex is held throughout). */
static void watcher_add_prefix(kv_store *store, watcher *w, const char *prefix, size_t prefix_len) {
    pthread_mutex_lock(&store->mutex);
    char *copy = malloc(prefix_len + 1);
    char **prefixes = realloc(w->prefixes, (w->prefix_count + 1) * sizeof *prefixes);
    if (prefixes) w->prefixes = prefixes;
    size_t *lens = realloc(w->prefix_lens, (w->prefix_count + 1) * sizeof *lens);
    if (lens) w->prefix_lens = lens;
    kv_entry **list = NULL;
    size_t n = 0;
    if (!copy || !prefixes || !lens || !matching_locked(store, prefix, prefix_len, &list, &n)) {
        free(copy);
        watcher_end_locked(w, WATCH_FAILED, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory", false);
        watcher_unregister_locked(store, w);
        pthread_mutex_unlock(&store->mutex);
        return;
    }
    if (prefix_len) memcpy(copy, prefix, prefix_len);
    copy[prefix_len] = '\0';
    w->prefixes[w->prefix_count] = copy;
    w->prefix_lens[w->prefix_count] = prefix_len;
    w->prefix_count++;
    for (size_t i = 0; i < n; i++)
        watcher_push_locked(w, list[i]->key, list[i]->key_len, list[i]->value, list[i]->value_len, false);
    free(list);
    pthread_mutex_unlock(&store->mutex);
}

#ifndef KV_NO_MAIN
static void store_destroy(kv_store *store) {
    for (size_t i = 0; i < store->count; i++) {
        free(store->entries[i].key);
        free(store->entries[i].value);
    }
    free(store->entries);
    pthread_mutex_destroy(&store->mutex);
}
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Errors                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* The google.rpc.ErrorInfo of a reserved key. */
static bool reserved_detail(kv_buffer *out) {
    static const char *const metadata[] = {"key", KV_ERROR_KEY};
    return kv_error_info_encode(KV_ERROR_REASON, KV_ERROR_DOMAIN, metadata, 1, out);
}

static void call_fail(connectplugin_call *call, connectplugin_code code, const char *message) {
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_call_fail(call, code, message, &error);
    /* CLOSED: the call is already over (deadline passed, client gone): nothing to answer. */
    if (status != CONNECTPLUGIN_OK && status != CONNECTPLUGIN_ERR_CLOSED) report("connectplugin_call_fail", status, error);
    else connectplugin_error_free(error);
}

static void call_fail_reserved(connectplugin_call *call) {
    kv_buffer detail = {0};
    if (reserved_detail(&detail)) {
        connectplugin_error *error = NULL;
        connectplugin_status status =
            connectplugin_call_add_error_detail(call, KV_ERROR_INFO_TYPE, detail.data, detail.len, &error);
        if (status != CONNECTPLUGIN_OK) report("connectplugin_call_add_error_detail", status, error);
    }
    kv_buffer_free(&detail);
    call_fail(call, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, KV_RESERVED_MESSAGE);
}

static void stream_fail(connectplugin_stream *stream, connectplugin_code code, const char *message) {
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_stream_fail(stream, code, message, &error);
    if (status != CONNECTPLUGIN_OK && status != CONNECTPLUGIN_ERR_CLOSED) report("connectplugin_stream_fail", status, error);
    else connectplugin_error_free(error);
}

static void stream_fail_reserved(connectplugin_stream *stream) {
    kv_buffer detail = {0};
    if (reserved_detail(&detail)) {
        connectplugin_error *error = NULL;
        connectplugin_status status =
            connectplugin_stream_add_error_detail(stream, KV_ERROR_INFO_TYPE, detail.data, detail.len, &error);
        if (status != CONNECTPLUGIN_OK && status != CONNECTPLUGIN_ERR_CLOSED)
            report("connectplugin_stream_add_error_detail", status, error);
        else connectplugin_error_free(error);
    }
    kv_buffer_free(&detail);
    stream_fail(stream, CONNECTPLUGIN_CODE_FAILED_PRECONDITION, KV_RESERVED_MESSAGE);
}

/*
 * Checks a decoded request's key: empty → invalid_argument, reserved → failed_precondition. Returns
 * the code to fail with (CONNECTPLUGIN_CODE_OK when the key is fine).
 */
static connectplugin_code check_key(const kv_message *request) {
    if (request->key_len == 0) return CONNECTPLUGIN_CODE_INVALID_ARGUMENT;
    if (is_key(request->key, request->key_len, KV_ERROR_KEY)) return CONNECTPLUGIN_CODE_FAILED_PRECONDITION;
    return CONNECTPLUGIN_CODE_OK;
}

/* Decodes @p data as @p type; on failure writes the error message into @p message. */
static bool decode_request(kv_type type, kv_codec codec, const uint8_t *data, size_t len, kv_message *request,
                           char *message, size_t message_size) {
    char why[160];
    if (kv_decode(type, codec, data, len, request, why, sizeof why)) return true;
    snprintf(message, message_size, "cannot decode %s (%s): %s", kv_type_name(type),
             codec == KV_CODEC_JSON ? "json" : "proto", why);
    return false;
}

/* ---------------------------------------------------------------------------------------------- */
/* Unary handlers                                                                                 */
/* ---------------------------------------------------------------------------------------------- */

/* Decodes the request of @p call as @p type into @p request; on failure answers the call and returns false. */
static bool read_request(connectplugin_call *call, kv_type type, kv_codec *codec, kv_message *request) {
    if (!kv_codec_from_name(connectplugin_call_codec(call), codec)) {
        call_fail(call, CONNECTPLUGIN_CODE_INTERNAL, "unsupported codec");
        return false;
    }
    size_t len = 0;
    const uint8_t *data = connectplugin_call_request(call, &len);
    char message[256];
    if (!decode_request(type, *codec, data, len, request, message, sizeof message)) {
        call_fail(call, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, message);
        return false;
    }
    connectplugin_code code = check_key(request);
    if (code != CONNECTPLUGIN_CODE_OK) {
        kv_message_clear(request);
        if (code == CONNECTPLUGIN_CODE_FAILED_PRECONDITION) call_fail_reserved(call);
        else call_fail(call, code, KV_EMPTY_KEY_MESSAGE);
        return false;
    }
    return true;
}

static void write_response(connectplugin_call *call, kv_type type, kv_codec codec, const kv_message *response) {
    kv_buffer out = {0};
    if (!kv_encode(type, codec, response, &out)) {
        kv_buffer_free(&out);
        call_fail(call, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_call_respond(call, out.data, out.len, &error);
    if (status != CONNECTPLUGIN_OK && status != CONNECTPLUGIN_ERR_CLOSED) report("connectplugin_call_respond", status, error);
    else connectplugin_error_free(error);
    kv_buffer_free(&out);
}

/* Set in plugin mode: Put then logs a debug line (an hclog JSON line the host parses). */
static bool log_puts;

static void log_put(const kv_message *request) {
    char key[128], bytes[24];
    size_t n = request->key_len < sizeof key - 1 ? request->key_len : sizeof key - 1;
    memcpy(key, request->key, n);
    key[n] = '\0';
    snprintf(bytes, sizeof bytes, "%zu", request->value_len);
    const char *keys[] = {"key", "bytes"};
    const char *values[] = {key, bytes};
    connectplugin_plugin_log(CONNECTPLUGIN_LOG_DEBUG, "put", keys, values, 2, NULL);
}

static void handle_put(connectplugin_call *call, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    kv_message request;
    if (!read_request(call, KV_PUT_REQUEST, &codec, &request)) return;
    if (log_puts) log_put(&request);
    if (store_put(store, request.key, request.key_len, request.value, request.value_len)) {
        kv_message response = {0};
        write_response(call, KV_PUT_RESPONSE, codec, &response);
    } else {
        call_fail(call, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory");
    }
    kv_message_clear(&request);
}

static void handle_get(connectplugin_call *call, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    kv_message request;
    if (!read_request(call, KV_GET_REQUEST, &codec, &request)) return;
    if (is_key(request.key, request.key_len, KV_SLOW_KEY)) {
        /* The deadline hook: hold the call for 1 s, unless it ends first (the library then answers
           deadline_exceeded or cancels by itself). Other calls run on other handler threads. */
        int64_t start = now_ms();
        while (now_ms() - start < KV_SLOW_MS) {
            if (connectplugin_call_is_done(call)) {
                kv_message_clear(&request);
                return;
            }
            sleep_ms(10);
        }
    }
    kv_message response = {0};
    int rc = store_get(store, request.key, request.key_len, &response);
    if (rc >= 0) {
        response.found = rc == 1;
        write_response(call, KV_GET_RESPONSE, codec, &response);
    } else {
        call_fail(call, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory");
    }
    kv_message_clear(&response);
    kv_message_clear(&request);
}

static void handle_delete(connectplugin_call *call, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    kv_message request;
    if (!read_request(call, KV_DELETE_REQUEST, &codec, &request)) return;
    kv_message response = {0};
    response.existed = store_delete(store, request.key, request.key_len);
    write_response(call, KV_DELETE_RESPONSE, codec, &response);
    kv_message_clear(&request);
}

/* ---------------------------------------------------------------------------------------------- */
/* Streaming handlers                                                                             */
/* ---------------------------------------------------------------------------------------------- */

static bool stream_codec(connectplugin_stream *stream, kv_codec *codec) {
    if (kv_codec_from_name(connectplugin_stream_codec(stream), codec)) return true;
    stream_fail(stream, CONNECTPLUGIN_CODE_INTERNAL, "unsupported codec");
    return false;
}

/* Encodes and sends one response message. False when the call is over (or out of memory: then failed). */
static bool stream_send_message(connectplugin_stream *stream, kv_type type, kv_codec codec, const kv_message *m) {
    kv_buffer out = {0};
    if (!kv_encode(type, codec, m, &out)) {
        kv_buffer_free(&out);
        stream_fail(stream, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory");
        return false;
    }
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_stream_send(stream, out.data, out.len, &error);
    kv_buffer_free(&out);
    connectplugin_error_free(error); /* CLOSED: the client is gone or the deadline passed */
    return status == CONNECTPLUGIN_OK;
}

/* List: every stored key starting with the prefix, in key order, from one snapshot. */
static void handle_list(connectplugin_stream *stream, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    if (!stream_codec(stream, &codec)) return;
    const uint8_t *data = NULL;
    size_t len = 0;
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_stream_receive(stream, &data, &len, &error);
    connectplugin_error_free(error);
    if (status != CONNECTPLUGIN_OK) return; /* the library answers a missing or broken request itself */
    kv_message request;
    char message[256];
    if (!decode_request(KV_LIST_REQUEST, codec, data, len, &request, message, sizeof message)) {
        stream_fail(stream, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, message);
        return;
    }
    if (is_key(request.key, request.key_len, KV_ERROR_KEY)) {
        kv_message_clear(&request);
        stream_fail_reserved(stream);
        return;
    }
    kv_message *items = NULL;
    size_t count = 0;
    bool ok = store_snapshot(store, request.key ? request.key : "", request.key_len, &items, &count);
    kv_message_clear(&request);
    if (!ok) {
        stream_fail(stream, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < count && stream_send_message(stream, KV_LIST_RESPONSE, codec, &items[i]); i++) {
    }
    for (size_t i = 0; i < count; i++) kv_message_clear(&items[i]);
    free(items);
}

/* PutMany: stores each request as Put would; answers the count after the client half-closes. */
static void handle_put_many(connectplugin_stream *stream, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    if (!stream_codec(stream, &codec)) return;
    int64_t count = 0;
    for (;;) {
        const uint8_t *data = NULL;
        size_t len = 0;
        connectplugin_error *error = NULL;
        connectplugin_status status = connectplugin_stream_receive(stream, &data, &len, &error);
        connectplugin_error_free(error);
        if (status == CONNECTPLUGIN_EOF) break;
        if (status != CONNECTPLUGIN_OK) return; /* the request stream broke; the call is over */
        kv_message request;
        char message[256];
        if (!decode_request(KV_PUT_REQUEST, codec, data, len, &request, message, sizeof message)) {
            stream_fail(stream, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, message);
            return;
        }
        connectplugin_code code = check_key(&request);
        if (code == CONNECTPLUGIN_CODE_OK &&
            !store_put(store, request.key, request.key_len, request.value, request.value_len))
            code = CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED;
        kv_message_clear(&request);
        if (code == CONNECTPLUGIN_CODE_FAILED_PRECONDITION) {
            stream_fail_reserved(stream);
            return;
        }
        if (code != CONNECTPLUGIN_CODE_OK) {
            stream_fail(stream, code, code == CONNECTPLUGIN_CODE_INVALID_ARGUMENT ? KV_EMPTY_KEY_MESSAGE : "out of memory");
            return;
        }
        count++;
    }
    kv_message response = {0};
    response.count = count;
    stream_send_message(stream, KV_PUT_MANY_RESPONSE, codec, &response);
}

/*
 * Watch (bidi). Full duplex needs two threads: a receiver thread reads the prefixes (adding each one
 * and its replay to the call's queue under the store's mutex), while the handler's thread sends the
 * queued events. The handler's thread waits on the watcher's condition variable, which the library's
 * on_done notice (connectplugin_stream_on_done) also signals when the client cancels or goes away,
 * the deadline passes or the server stops, so a Watch that nobody feeds never holds up a shutdown.
 * One thread receiving while the handler's thread sends is what connectplugin.h allows for
 * full-duplex bidi handlers; the handler must not return while the receiver still uses the stream,
 * so it ends the call first (a blocked receive then returns) and joins the receiver.
 */
typedef struct watch_call {
    kv_store *store;
    connectplugin_stream *stream;
    kv_codec codec;
    watcher w;
    bool over; /* the on_done notice came (under store->mutex) */
} watch_call;

/* on_done: runs on a library I/O thread; only flags and wakes the handler's thread. */
static void watch_over(void *arg) {
    watch_call *wc = arg;
    pthread_mutex_lock(&wc->store->mutex);
    wc->over = true;
    pthread_cond_broadcast(&wc->w.cond);
    pthread_mutex_unlock(&wc->store->mutex);
}

static void *watch_receiver(void *arg) {
    watch_call *wc = arg;
    for (;;) {
        const uint8_t *data = NULL;
        size_t len = 0;
        connectplugin_error *error = NULL;
        connectplugin_status status = connectplugin_stream_receive(wc->stream, &data, &len, &error);
        connectplugin_error_free(error);
        watch_end end = WATCH_RUNNING;
        connectplugin_code code = CONNECTPLUGIN_CODE_OK;
        char message[256] = "";
        bool reserved = false;
        if (status == CONNECTPLUGIN_EOF) {
            end = WATCH_HALF_CLOSED;
        } else if (status != CONNECTPLUGIN_OK) {
            end = WATCH_GONE;
        } else {
            kv_message request;
            if (!decode_request(KV_WATCH_REQUEST, wc->codec, data, len, &request, message, sizeof message)) {
                end = WATCH_FAILED;
                code = CONNECTPLUGIN_CODE_INVALID_ARGUMENT;
            } else if (is_key(request.key, request.key_len, KV_ERROR_KEY)) {
                end = WATCH_FAILED;
                code = CONNECTPLUGIN_CODE_FAILED_PRECONDITION;
                reserved = true;
                snprintf(message, sizeof message, "%s", KV_RESERVED_MESSAGE);
            } else {
                watcher_add_prefix(wc->store, &wc->w, request.key ? request.key : "", request.key_len);
            }
            kv_message_clear(&request);
        }
        if (end != WATCH_RUNNING) {
            /* No more events after this point: the call sends what is queued, then ends. */
            pthread_mutex_lock(&wc->store->mutex);
            watcher_end_locked(&wc->w, end, code, message, reserved);
            watcher_unregister_locked(wc->store, &wc->w);
            pthread_mutex_unlock(&wc->store->mutex);
            return NULL;
        }
        pthread_mutex_lock(&wc->store->mutex);
        bool stop = wc->w.end != WATCH_RUNNING; /* e.g. out of memory while replaying */
        pthread_mutex_unlock(&wc->store->mutex);
        if (stop) return NULL;
    }
}

static void watch_events_free(watch_event *ev) {
    while (ev) {
        watch_event *next = ev->next;
        kv_message_clear(&ev->message);
        free(ev);
        ev = next;
    }
}

static void handle_watch(connectplugin_stream *stream, void *user_data) {
    watch_call wc = {.store = user_data, .stream = stream};
    if (!stream_codec(stream, &wc.codec)) return;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&wc.w.cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        stream_fail(stream, CONNECTPLUGIN_CODE_RESOURCE_EXHAUSTED, "cannot create a condition variable");
        return;
    }
    pthread_mutex_lock(&wc.store->mutex);
    wc.w.next = wc.store->watchers;
    wc.store->watchers = &wc.w;
    wc.w.registered = true;
    pthread_mutex_unlock(&wc.store->mutex);

    /* The notice wakes the loop below when the call ends early; if it cannot be registered, the
       loop falls back to waking every 100 ms and asking connectplugin_stream_is_done. */
    connectplugin_error *error = NULL;
    bool noticed = connectplugin_stream_on_done(stream, watch_over, &wc, NULL, &error) == CONNECTPLUGIN_OK;
    connectplugin_error_free(error);

    pthread_t receiver;
    bool receiving = pthread_create(&receiver, NULL, watch_receiver, &wc) == 0;
    bool client_gone = !receiving;
    watch_end end = WATCH_RUNNING;
    while (receiving) {
        /* Take everything queued, or learn that the request side ended or the call is over. */
        pthread_mutex_lock(&wc.store->mutex);
        while (!wc.w.head && wc.w.end == WATCH_RUNNING && !wc.over) {
            if (noticed) {
                pthread_cond_wait(&wc.w.cond, &wc.store->mutex);
                continue;
            }
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&wc.w.cond, &wc.store->mutex, &until) == ETIMEDOUT) break;
        }
        watch_event *batch = wc.w.head;
        wc.w.head = wc.w.tail = NULL;
        end = wc.w.end;
        bool over = wc.over;
        pthread_mutex_unlock(&wc.store->mutex);
        for (watch_event *ev = batch; ev && !client_gone; ev = ev->next)
            client_gone = !stream_send_message(stream, KV_WATCH_EVENT, wc.codec, &ev->message);
        watch_events_free(batch);
        /* The queue is final once the request side ended (the watcher is unregistered by then). */
        if (client_gone || end != WATCH_RUNNING) break;
        if (over || connectplugin_stream_is_done(stream)) {
            client_gone = true; /* deadline, client gone, or the server is stopping */
            break;
        }
    }
    /* Every path answers the call before the cleanup below: after an answer the notice never runs,
       so &wc may go away. */
    if (end == WATCH_FAILED && !client_gone) {
        if (wc.w.end_reserved) stream_fail_reserved(stream);
        else stream_fail(stream, wc.w.end_code, wc.w.end_message);
    } else if (end != WATCH_HALF_CLOSED) {
        /* Ends the call (if it is not over yet) so that a receive blocked in the receiver returns. */
        stream_fail(stream, CONNECTPLUGIN_CODE_CANCELED, "the watch ended");
    } else {
        error = NULL;
        connectplugin_stream_finish(stream, &error); /* CLOSED if the client is gone: nothing to do */
        connectplugin_error_free(error);
    }
    if (receiving) pthread_join(receiver, NULL);
    pthread_mutex_lock(&wc.store->mutex);
    watcher_unregister_locked(wc.store, &wc.w);
    watch_events_free(wc.w.head);
    pthread_mutex_unlock(&wc.store->mutex);
    for (size_t i = 0; i < wc.w.prefix_count; i++) free(wc.w.prefixes[i]);
    free(wc.w.prefixes);
    free(wc.w.prefix_lens);
    pthread_cond_destroy(&wc.w.cond);
}

/* Registers KVService's handlers on server, over store (which must outlive the server). Also
   used by kv-host-c --in-process (this file built with -DKV_NO_MAIN), with kv_store_new. */
connectplugin_status kv_register_handlers(connectplugin_server *server, kv_store *store, connectplugin_error **error);
connectplugin_status kv_register_handlers(connectplugin_server *server, kv_store *store, connectplugin_error **error) {
    connectplugin_status status = CONNECTPLUGIN_OK;
    /* Put and Delete never block (a short mutex and an array operation; watchers only get a queued
       event and a signal): they run inline on the I/O thread, with no hand-off to a handler thread
       (connectplugin_server_register_unary_inline). Get stays on the handler threads because of its
       deadline hook, which holds the call for up to 1 s: inline, that would stall the loop. */
    static const struct {
        const char *procedure;
        connectplugin_unary_handler handler;
        bool inline_handler;
    } unary[] = {
        {KV_PROCEDURE_PUT, handle_put, true},
        {KV_PROCEDURE_GET, handle_get, false},
        {KV_PROCEDURE_DELETE, handle_delete, true},
    };
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
        /* The store outlives the server (freed below, after connectplugin_server_free): no finalizer. */
        status = unary[i].inline_handler
                     ? connectplugin_server_register_unary_inline(server, unary[i].procedure, unary[i].handler,
                                                                  store, NULL, error)
                     : connectplugin_server_register_unary(server, unary[i].procedure, unary[i].handler, store,
                                                           NULL, error);
        if (status != CONNECTPLUGIN_OK) return status;
    }
    static const struct {
        const char *procedure;
        connectplugin_method_kind kind;
        connectplugin_stream_handler handler;
    } streams[] = {
        {KV_PROCEDURE_LIST, CONNECTPLUGIN_SERVER_STREAM, handle_list},
        {KV_PROCEDURE_PUT_MANY, CONNECTPLUGIN_CLIENT_STREAM, handle_put_many},
        {KV_PROCEDURE_WATCH, CONNECTPLUGIN_BIDI_STREAM, handle_watch},
    };
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        status = connectplugin_server_register_stream(server, streams[i].procedure, streams[i].kind, streams[i].handler,
                                                      store, NULL, error);
        if (status != CONNECTPLUGIN_OK) return status;
    }
    /* Get is idempotency_level = NO_SIDE_EFFECTS in kv.proto: it also answers Connect GET requests. */
    return connectplugin_server_set_no_side_effects(server, KV_PROCEDURE_GET, error);
}

/* A heap store for kv-host-c --in-process (kept for the process's life). */
kv_store *kv_store_new(void);
kv_store *kv_store_new(void) {
    kv_store *store = calloc(1, sizeof *store);
    if (store && pthread_mutex_init(&store->mutex, NULL) != 0) {
        free(store);
        return NULL;
    }
    return store;
}

#ifndef KV_NO_MAIN
/* ---------------------------------------------------------------------------------------------- */
/* main                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static int usage(const char *why) {
    if (why) fprintf(stderr, "kv-server-c: %s\n", why);
    fprintf(stderr, "usage: kv-server-c --listen ADDR [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]]\n"
                    "       ADDR: host:port or unix:PATH\n");
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

int main(int argc, char **argv) {
    const char *listen = NULL, *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    for (int i = 1; i < argc; i++) {
        if (flag_value(argc, argv, &i, "--listen", &listen) || flag_value(argc, argv, &i, "--tls-cert", &tls_cert) ||
            flag_value(argc, argv, &i, "--tls-key", &tls_key) ||
            flag_value(argc, argv, &i, "--tls-client-ca", &tls_client_ca))
            continue;
        return usage(NULL);
    }
#ifdef KV_PLUGIN
    /* kv-plugin-c: no --listen means launched by a plugin host; --listen ADDR is the runtime's
       remote mode (connectplugin_plugin_config_set_listen_address: "listening on ADDR", hosts
       connect by URL and handshake through connectplugin.v1.HandshakeService). */
    bool plugin_mode = true;
    if (listen && (tls_cert || tls_key || tls_client_ca)) return usage("kv-plugin-c's remote mode has no TLS yet");
#else
    bool plugin_mode = false;
#endif
    if (!plugin_mode && (!listen || !*listen)) return usage(NULL);
    bool tls = tls_cert || tls_key || tls_client_ca;
    if (tls && (!tls_cert || !tls_key)) return usage("--tls-cert and --tls-key go together (--tls-client-ca needs both)");
    if (tls && strncmp(listen, "unix:", 5) == 0) return usage("TLS is for TCP listeners only");

    /* Block SIGINT/SIGTERM before the library starts any thread: every thread inherits the mask, and
       the main thread takes the signal with sigwait. No library call ever runs in a signal handler. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    /* (A plugin's serve turns SIGTERM and SIGINT into a graceful stop itself.) */
    int rc = plugin_mode ? 0 : pthread_sigmask(SIG_BLOCK, &signals, NULL);
    if (rc != 0) {
        fprintf(stderr, "kv-server-c: pthread_sigmask: %s\n", strerror(rc));
        return 1;
    }

    kv_store store = {.entries = NULL};
    rc = pthread_mutex_init(&store.mutex, NULL);
    if (rc != 0) {
        fprintf(stderr, "kv-server-c: pthread_mutex_init: %s\n", strerror(rc));
        return 1;
    }

    int exit_code = 1;
    connectplugin_server *server = NULL;
    connectplugin_server_options *options = connectplugin_server_options_new();
    connectplugin_tls_options *tls_options = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status status = options ? CONNECTPLUGIN_OK : CONNECTPLUGIN_ERR_RESOURCE;
    /* Watch calls hold a handler thread each while they run. */
    if (status == CONNECTPLUGIN_OK) status = connectplugin_server_options_set_handler_threads(options, 32, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_server_new(options, &server, &error);
    connectplugin_server_options_free(options);
    if (status != CONNECTPLUGIN_OK) {
        report("connectplugin_server_new", status, error);
        goto done;
    }
    if (plugin_mode) {
        status = CONNECTPLUGIN_OK; /* serve chooses the listener */
    } else if (strncmp(listen, "unix:", 5) == 0) {
        status = connectplugin_server_listen_unix(server, listen + 5, &error);
    } else if (tls) {
        tls_options = connectplugin_tls_options_new();
        status = tls_options ? connectplugin_tls_options_set_cert_files(tls_options, tls_cert, tls_key, &error)
                             : CONNECTPLUGIN_ERR_RESOURCE;
        if (status == CONNECTPLUGIN_OK && tls_client_ca) {
            status = connectplugin_tls_options_set_ca_file(tls_options, tls_client_ca, &error);
            if (status == CONNECTPLUGIN_OK)
                status = connectplugin_tls_options_set_require_client_cert(tls_options, 1, &error);
        }
        if (status == CONNECTPLUGIN_OK) status = connectplugin_server_listen_tls(server, listen, tls_options, &error);
    } else {
        status = connectplugin_server_listen_tcp(server, listen, &error);
    }
    if (status != CONNECTPLUGIN_OK) {
        report("listen", status, error);
        goto done;
    }
    status = kv_register_handlers(server, &store, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("register the KV handlers", status, error);
        goto done;
    }
    if (plugin_mode) {
        log_puts = true;
        connectplugin_plugin_config *config = NULL;
        status = connectplugin_plugin_config_new("KV_PLUGIN", "connectplugin-kv", &config, &error);
        if (status == CONNECTPLUGIN_OK)
            status = connectplugin_plugin_config_add_plugin(config, 1, "kv", CONNECTPLUGIN_VERSION,
                                                            "/connectplugin.examples.kv.v1.KVService/", &error);
        if (status == CONNECTPLUGIN_OK && listen)
            status = connectplugin_plugin_config_set_listen_address(config, listen, &error);
        if (status != CONNECTPLUGIN_OK) {
            report("connectplugin_plugin_config", status, error);
            connectplugin_plugin_config_free(config);
            goto done;
        }
        /* Blocks until the host calls Shutdown, SIGTERM/SIGINT, or the host is gone. */
        exit_code = connectplugin_plugin_serve(server, config);
        connectplugin_plugin_config_free(config);
        goto done;
    }
    status = connectplugin_server_start(server, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("connectplugin_server_start", status, error);
        goto done;
    }
    const char *address = connectplugin_server_address(server, 0);
    printf("listening on %s\n", address ? address : listen);
    fflush(stdout);

    int sig = 0;
    rc = sigwait(&signals, &sig);
    if (rc != 0) {
        fprintf(stderr, "kv-server-c: sigwait: %s\n", strerror(rc));
        goto done;
    }
    status = connectplugin_server_stop(server, 5000, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("connectplugin_server_stop", status, error);
        goto done;
    }
    exit_code = 0;

done:
    connectplugin_server_free(server);
    connectplugin_tls_options_free(tls_options);
    store_destroy(&store);
    return exit_code;
}
#endif /* KV_NO_MAIN */
