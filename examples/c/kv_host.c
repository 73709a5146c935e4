/*
 * kv-host-c — a plugin host in C on libconnectplugin: it launches a KV plugin (a connectplugin plugin
 * in any language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv", runs the
 * scripted Put/Get/Delete sequence and then the streaming methods (PutMany = client streaming, List =
 * server streaming, Watch = bidi, full duplex), prints the results and stops the plugin.
 *
 *   kv-host-c [--repeat N] [--logs] [--automtls] --plugin PATH [ARGS...]
 *   kv-host-c [--repeat N] --url URL      a plugin in remote mode (kv-plugin --listen); kill only
 *                                         disconnects, and it prints "stopped: disconnected"
 *   kv-host-c [--repeat N] --in-process   kv_server.c's KV handlers (linked in, -DKV_NO_MAIN) served
 *                                         as a plugin in this process (inproc://), no sockets
 *
 * --logs prints each log record of the plugin (its stderr, parsed as hclog) on stdout:
 * "log NAME LEVEL MESSAGE key=value ..." (without it they go to stderr, the library's default).
 *
 * --automtls: go-plugin's AutoMTLS (the plugin must serve TLS with the certificates exchanged).
 *
 * KV handshake: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin name "kv".
 * Exit 0 when every step gave the expected answer and the plugin exited with status 0; 2 for a
 * usage error. The typed client is the struct kv_plugin below: functions taking the dispensed client
 * (kv_put, kv_get, kv_delete, kv_put_many, kv_list, and kv_watch_* on an open Watch call). Every call,
 * streaming ones as a whole, has a deadline of KV_CALL_TIMEOUT_MS: a plugin that never answers (or
 * never sends an awaited Watch event) fails the host with deadline_exceeded instead of hanging it.
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_common.h"

static void report(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "kv-host-c: %s: %s (%s): %s\n", what, connectplugin_status_string(status),
            error ? connectplugin_code_name(connectplugin_error_code(error)) : "-",
            error ? connectplugin_error_message(error) : "");
    connectplugin_error_free(error);
}

/* The typed client of the "kv" plugin: go-plugin's client-side factory, in C. */
typedef struct kv_plugin {
    connectplugin_client *client; /* dispensed; freed by kv_plugin_close */
} kv_plugin;

#define KV_CALL_TIMEOUT_MS 20000 /* the deadline of each call (of a streaming call: the whole call) */

/* Call options with the deadline; NULL (and a message on stderr) when they cannot be made. */
static connectplugin_call_options *call_options(const char *procedure) {
    connectplugin_call_options *options = connectplugin_call_options_new();
    connectplugin_error *error = NULL;
    connectplugin_status status = options ? connectplugin_call_options_set_timeout_ms(options, KV_CALL_TIMEOUT_MS, &error)
                                          : CONNECTPLUGIN_ERR_RESOURCE;
    if (status == CONNECTPLUGIN_OK) return options;
    report(procedure, status, error);
    connectplugin_call_options_free(options);
    return NULL;
}

/* One unary call: encode @p req as @p req_type, decode the answer as @p resp_type into @p resp. */
static bool kv_call(kv_plugin *kv, const char *procedure, kv_type req_type, const kv_message *req, kv_type resp_type,
                    kv_message *resp) {
    kv_buffer body = {0};
    if (!kv_encode(req_type, KV_CODEC_PROTO, req, &body)) {
        fprintf(stderr, "kv-host-c: out of memory\n");
        return false;
    }
    connectplugin_call_options *options = call_options(procedure);
    if (!options) {
        kv_buffer_free(&body);
        return false;
    }
    connectplugin_error *error = NULL;
    connectplugin_response *response = NULL;
    connectplugin_status status =
        connectplugin_client_call_unary(kv->client, procedure, body.data, body.len, options, &response, &error);
    connectplugin_call_options_free(options);
    kv_buffer_free(&body);
    if (status != CONNECTPLUGIN_OK) {
        report(procedure, status, error);
        return false;
    }
    size_t len = 0;
    const uint8_t *data = connectplugin_response_message(response, &len);
    char why[128];
    bool ok = kv_decode(resp_type, KV_CODEC_PROTO, data, len, resp, why, sizeof why);
    if (!ok) fprintf(stderr, "kv-host-c: %s: bad response: %s\n", procedure, why);
    connectplugin_response_free(response);
    return ok;
}

static bool kv_put(kv_plugin *kv, const char *key, const char *value) {
    kv_message req = {0}, resp = {0};
    bool ok = kv_message_set_key(&req, key, strlen(key)) &&
              kv_message_set_value(&req, (const uint8_t *)value, strlen(value)) &&
              kv_call(kv, KV_PROCEDURE_PUT, KV_PUT_REQUEST, &req, KV_PUT_RESPONSE, &resp);
    kv_message_clear(&req);
    kv_message_clear(&resp);
    return ok;
}

/* *found and the value (copied into @p value, NUL-terminated, at most @p cap - 1 bytes). */
static bool kv_get(kv_plugin *kv, const char *key, bool *found, char *value, size_t cap) {
    kv_message req = {0}, resp = {0};
    bool ok = kv_message_set_key(&req, key, strlen(key)) &&
              kv_call(kv, KV_PROCEDURE_GET, KV_GET_REQUEST, &req, KV_GET_RESPONSE, &resp);
    if (ok) {
        *found = resp.found;
        size_t n = resp.value_len < cap - 1 ? resp.value_len : cap - 1;
        if (n > 0) memcpy(value, resp.value, n);
        value[n] = '\0';
    }
    kv_message_clear(&req);
    kv_message_clear(&resp);
    return ok;
}

static bool kv_delete(kv_plugin *kv, const char *key, bool *existed) {
    kv_message req = {0}, resp = {0};
    bool ok = kv_message_set_key(&req, key, strlen(key)) &&
              kv_call(kv, KV_PROCEDURE_DELETE, KV_DELETE_REQUEST, &req, KV_DELETE_RESPONSE, &resp);
    if (ok) *existed = resp.existed;
    kv_message_clear(&req);
    kv_message_clear(&resp);
    return ok;
}

/* ---- Streaming calls: an open call of one procedure, with its messages encoded as kv_common.c's. ---- */

typedef struct kv_stream {
    const char *procedure;
    connectplugin_client_stream *stream;
} kv_stream;

static bool stream_open(kv_plugin *kv, const char *procedure, connectplugin_method_kind kind, kv_stream *out) {
    out->procedure = procedure;
    out->stream = NULL;
    connectplugin_call_options *options = call_options(procedure);
    if (!options) return false;
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_open_stream(kv->client, procedure, kind, options, &out->stream, &error);
    connectplugin_call_options_free(options);
    if (status != CONNECTPLUGIN_OK) report(procedure, status, error);
    return status == CONNECTPLUGIN_OK;
}

/* Sends @p m as @p type. (A call the plugin already ended takes the message and reports on receive.) */
static bool stream_send(kv_stream *st, kv_type type, const kv_message *m) {
    kv_buffer body = {0};
    if (!kv_encode(type, KV_CODEC_PROTO, m, &body)) {
        kv_buffer_free(&body);
        fprintf(stderr, "kv-host-c: out of memory\n");
        return false;
    }
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_send(st->stream, body.data, body.len, &error);
    kv_buffer_free(&body);
    if (status != CONNECTPLUGIN_OK) report(st->procedure, status, error);
    return status == CONNECTPLUGIN_OK;
}

static bool stream_close_send(kv_stream *st) {
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_close_send(st->stream, &error);
    if (status != CONNECTPLUGIN_OK) report(st->procedure, status, error);
    return status == CONNECTPLUGIN_OK;
}

/* The next message, decoded as @p type into @p out: 1 = a message, 0 = the call ended OK, -1 = failed (reported). */
static int stream_receive(kv_stream *st, kv_type type, kv_message *out) {
    const uint8_t *data = NULL;
    size_t len = 0;
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_client_stream_receive(st->stream, &data, &len, &error);
    if (status == CONNECTPLUGIN_EOF) return 0;
    if (status != CONNECTPLUGIN_OK) {
        report(st->procedure, status, error);
        return -1;
    }
    char why[128];
    if (!kv_decode(type, KV_CODEC_PROTO, data, len, out, why, sizeof why)) {
        fprintf(stderr, "kv-host-c: %s: bad response: %s\n", st->procedure, why);
        return -1;
    }
    return 1;
}

/* Frees the call (cancelling it if it still runs). */
static void stream_free(kv_stream *st) {
    connectplugin_client_stream_free(st->stream);
    st->stream = NULL;
}

/* A key and a value, as PutMany takes them. */
typedef struct kv_pair {
    const char *key;
    const char *value;
} kv_pair;

/* Received messages (ListResponse or WatchEvent), owned. */
typedef struct kv_items {
    kv_message *v;
    size_t n, cap;
} kv_items;

/* Moves *m to the end of @p items (and zeroes *m); false when out of memory (*m untouched). */
static bool kv_items_push(kv_items *items, kv_message *m) {
    if (items->n == items->cap) {
        size_t cap = items->cap ? items->cap * 2 : 8;
        kv_message *v = realloc(items->v, cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "kv-host-c: out of memory\n");
            return false;
        }
        items->v = v;
        items->cap = cap;
    }
    items->v[items->n++] = *m;
    memset(m, 0, sizeof *m);
    return true;
}

static void kv_items_free(kv_items *items) {
    for (size_t i = 0; i < items->n; i++) kv_message_clear(&items->v[i]);
    free(items->v);
    memset(items, 0, sizeof *items);
}

/* PutMany: stores the @p n pairs in order; *count is the number the plugin stored. */
static bool kv_put_many(kv_plugin *kv, const kv_pair *pairs, size_t n, int64_t *count) {
    kv_stream st;
    if (!stream_open(kv, KV_PROCEDURE_PUT_MANY, CONNECTPLUGIN_CLIENT_STREAM, &st)) return false;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        kv_message req = {0};
        ok = kv_message_set_key(&req, pairs[i].key, strlen(pairs[i].key)) &&
             kv_message_set_value(&req, (const uint8_t *)pairs[i].value, strlen(pairs[i].value));
        if (!ok) fprintf(stderr, "kv-host-c: out of memory\n");
        ok = ok && stream_send(&st, KV_PUT_REQUEST, &req);
        kv_message_clear(&req);
    }
    kv_message resp = {0};
    int rc = ok && stream_close_send(&st) ? stream_receive(&st, KV_PUT_MANY_RESPONSE, &resp) : -1;
    if (rc == 0) fprintf(stderr, "kv-host-c: %s: the call ended without a response\n", st.procedure);
    if (rc == 1) {
        *count = resp.count;
        kv_message_clear(&resp);
        rc = stream_receive(&st, KV_PUT_MANY_RESPONSE, &resp); /* exactly one response, then the end */
        if (rc == 1) {
            fprintf(stderr, "kv-host-c: %s: a second response\n", st.procedure);
            kv_message_clear(&resp);
            rc = -1;
        } else if (rc == 0) {
            rc = 1;
        }
    }
    stream_free(&st);
    return rc == 1;
}

/* List: every stored key that starts with @p prefix, with its value, in order, appended to @p out. */
static bool kv_list(kv_plugin *kv, const char *prefix, kv_items *out) {
    kv_stream st;
    if (!stream_open(kv, KV_PROCEDURE_LIST, CONNECTPLUGIN_SERVER_STREAM, &st)) return false;
    kv_message req = {0};
    bool ok = kv_message_set_key(&req, prefix, strlen(prefix));
    if (!ok) fprintf(stderr, "kv-host-c: out of memory\n");
    ok = ok && stream_send(&st, KV_LIST_REQUEST, &req) && stream_close_send(&st);
    kv_message_clear(&req);
    int rc = ok ? 1 : -1;
    while (rc == 1) {
        kv_message item = {0};
        rc = stream_receive(&st, KV_LIST_RESPONSE, &item);
        if (rc == 1 && !kv_items_push(out, &item)) rc = -1;
        kv_message_clear(&item);
    }
    stream_free(&st);
    return rc == 0;
}

/* Watch: an open bidi call. kv_watch_open, then kv_watch_send / kv_watch_receive / kv_watch_close_send
   in any order (full duplex), then kv_watch_free (also after a failure). */
typedef struct kv_watch {
    kv_stream st;
} kv_watch;

static bool kv_watch_open(kv_plugin *kv, kv_watch *out) {
    return stream_open(kv, KV_PROCEDURE_WATCH, CONNECTPLUGIN_BIDI_STREAM, &out->st);
}

/* Adds a watched prefix: the plugin replays the keys it matches, then sends their changes. */
static bool kv_watch_send(kv_watch *w, const char *prefix) {
    kv_message req = {0};
    bool ok = kv_message_set_key(&req, prefix, strlen(prefix));
    if (!ok) fprintf(stderr, "kv-host-c: out of memory\n");
    ok = ok && stream_send(&w->st, KV_WATCH_REQUEST, &req);
    kv_message_clear(&req);
    return ok;
}

/* The next event into *event: 1 = an event, 0 = the call ended OK, -1 = failed (reported). */
static int kv_watch_receive(kv_watch *w, kv_message *event) { return stream_receive(&w->st, KV_WATCH_EVENT, event); }

/* No more prefixes: the plugin sends the events already queued and ends the call. */
static bool kv_watch_close_send(kv_watch *w) { return stream_close_send(&w->st); }

static void kv_watch_free(kv_watch *w) { stream_free(&w->st); }

static void kv_plugin_close(kv_plugin *kv) {
    connectplugin_client_free(kv->client);
    kv->client = NULL;
}

/* Appends the printf-formatted text to the line (cut short when it does not fit). */
static void line_add(char *line, size_t cap, const char *fmt, ...) {
    size_t len = strlen(line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + len, cap - len, fmt, ap);
    va_end(ap);
}

/* " KEY=VALUE" for an item or a stored-key event, " deleted:KEY" for a deleted-key event. */
static void line_add_item(char *line, size_t cap, const kv_message *m) {
    if (m->deleted) {
        line_add(line, cap, " deleted:%.*s", (int)m->key_len, m->key ? m->key : "");
    } else {
        line_add(line, cap, " %.*s=%.*s", (int)m->key_len, m->key ? m->key : "", (int)m->value_len,
                 m->value ? (const char *)m->value : "");
    }
}

/* Prints "@p head KEY=VALUE ..." (deleted events as "deleted:KEY") on one line. */
static void print_items(const char *head, const kv_items *items) {
    char line[512];
    snprintf(line, sizeof line, "%s", head);
    for (size_t i = 0; i < items->n; i++) line_add_item(line, sizeof line, &items->v[i]);
    printf("%s\n", line);
}

/* Whether @p m is the item (or event) KEY=VALUE, or the deleted event of KEY when @p value is NULL. */
static bool item_is(const kv_message *m, const char *key, const char *value) {
    size_t value_len = value ? strlen(value) : 0;
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0 && m->deleted == (value == NULL) &&
           m->value_len == value_len && (value_len == 0 || memcmp(m->value, value, value_len) == 0);
}

/* Receives exactly one Watch event into @p events; the end of the call is a failure here. */
static bool watch_receive_one(kv_watch *w, kv_items *events) {
    kv_message event = {0};
    int rc = kv_watch_receive(w, &event);
    if (rc == 0) fprintf(stderr, "kv-host-c: %s: the call ended after %zu events\n", KV_PROCEDURE_WATCH, events->n);
    bool ok = rc == 1 && kv_items_push(events, &event);
    kv_message_clear(&event);
    return ok;
}

/*
 * Watch s/ (full duplex): the 2 replayed events, then Put s/c (another call) and its event, then Delete
 * s/a and its event; then half-close, and the call must end OK with no further event.
 */
static bool watch_script(kv_plugin *kv, kv_items *events) {
    kv_watch w;
    if (!kv_watch_open(kv, &w)) return false;
    bool existed = false;
    bool ok = kv_watch_send(&w, "s/") && watch_receive_one(&w, events) && watch_receive_one(&w, events) &&
              kv_put(kv, "s/c", "3") && watch_receive_one(&w, events) && kv_delete(kv, "s/a", &existed) &&
              watch_receive_one(&w, events) && kv_watch_close_send(&w);
    if (ok && !existed) {
        fprintf(stderr, "kv-host-c: delete s/a: the key did not exist\n");
        ok = false;
    }
    if (ok) {
        kv_message extra = {0};
        int rc = kv_watch_receive(&w, &extra);
        if (rc == 1) {
            fprintf(stderr, "kv-host-c: %s: an event after half-close:", KV_PROCEDURE_WATCH);
            char line[256] = "";
            line_add_item(line, sizeof line, &extra);
            fprintf(stderr, "%s\n", line);
            kv_message_clear(&extra);
        }
        ok = rc == 0;
    }
    kv_watch_free(&w);
    return ok;
}

/* @p answered_as_expected, saying on stderr which step's answer was wrong when it is false. */
static bool expect(bool answered_as_expected, const char *step) {
    if (!answered_as_expected) fprintf(stderr, "kv-host-c: %s: not the expected answer\n", step);
    return answered_as_expected;
}

/* The streaming part of the script: PutMany, List, Watch, cleanup. */
static bool stream_script(kv_plugin *kv, bool print) {
    static const kv_pair pairs[] = {{"s/a", "1"}, {"s/b", "2"}};
    int64_t count = 0;
    if (!kv_put_many(kv, pairs, 2, &count)) return false;
    if (print) printf("putmany count=%lld\n", (long long)count);
    bool ok = expect(count == 2, "putmany");

    kv_items items = {0};
    if (!kv_list(kv, "s/", &items)) {
        kv_items_free(&items);
        return false;
    }
    if (print) print_items("list s/", &items);
    ok = expect(items.n == 2 && item_is(&items.v[0], "s/a", "1") && item_is(&items.v[1], "s/b", "2"), "list s/") && ok;
    kv_items_free(&items);

    if (!watch_script(kv, &items)) {
        kv_items_free(&items);
        return false;
    }
    if (print) print_items("watch s/", &items);
    ok = expect(items.n == 4 && item_is(&items.v[0], "s/a", "1") && item_is(&items.v[1], "s/b", "2") &&
                    item_is(&items.v[2], "s/c", "3") && item_is(&items.v[3], "s/a", NULL),
                "watch s/") &&
         ok;
    kv_items_free(&items);

    /* Cleanup, so that the next repetition starts empty. */
    static const char *const leftovers[] = {"s/b", "s/c"};
    for (size_t i = 0; i < 2; i++) {
        bool existed = false;
        if (!kv_delete(kv, leftovers[i], &existed)) return false;
        if (!existed) {
            fprintf(stderr, "kv-host-c: delete %s: the key did not exist\n", leftovers[i]);
            return false;
        }
    }
    return ok;
}

/* The scripted sequence; prints its lines when @p print. Returns true when every answer matched. */
static bool script(kv_plugin *kv, bool print) {
    bool found = false, existed = false;
    char value[64];
    if (!kv_put(kv, "greeting", "hello")) return false;
    if (print) printf("put greeting ok\n");
    if (!kv_get(kv, "greeting", &found, value, sizeof value)) return false;
    if (print) printf("get greeting found=%s value=%s\n", found ? "true" : "false", value);
    bool ok = found && strcmp(value, "hello") == 0;
    if (!kv_delete(kv, "greeting", &existed)) return false;
    if (print) printf("delete greeting existed=%s\n", existed ? "true" : "false");
    ok = ok && existed;
    if (!kv_get(kv, "greeting", &found, value, sizeof value)) return false;
    if (print) printf("get greeting found=%s\n", found ? "true" : "false");
    ok = ok && !found;
    return stream_script(kv, print) && ok;
}

/* --logs: the plugin's log records, one line each on stdout (one fputs: lines never interleave). */
static void print_log(const char *plugin, int32_t level, const char *message, const char *timestamp,
                      const char *const *keys, const char *const *values, size_t field_count, void *user_data) {
    (void)timestamp;
    (void)user_data;
    static const char *const names[] = {"trace", "debug", "info", "warn", "error"};
    char line[1024];
    int n = snprintf(line, sizeof line, "log %s %s %s", plugin, level >= 0 && level <= 4 ? names[level] : "?", message);
    for (size_t i = 0; i < field_count && n >= 0 && (size_t)n < sizeof line; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %s=%s", keys[i], values[i]);
    if (n < 0) return;
    if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, stdout);
    fflush(stdout);
}

/* This host's own KV service (kv_server.c, linked into kv-host-c with -DKV_NO_MAIN). */
typedef struct kv_store kv_store;
connectplugin_status kv_register_handlers(connectplugin_server *server, kv_store *store, connectplugin_error **error);
kv_store *kv_store_new(void);

/* --in-process: serves the KV handlers as a plugin under inproc://NAME in this process. */
static connectplugin_server *serve_in_process(char *url, size_t url_size) {
    connectplugin_error *error = NULL;
    connectplugin_server *server = NULL;
    connectplugin_plugin_config *config = NULL;
    char name[64];
    snprintf(name, sizeof name, "kv-host-c-%ld", (long)getpid());
    snprintf(url, url_size, "inproc://%s", name);
    kv_store *store = kv_store_new();
    connectplugin_server_options *options = connectplugin_server_options_new();
    connectplugin_status status = store && options ? CONNECTPLUGIN_OK : CONNECTPLUGIN_ERR_RESOURCE;
    if (status == CONNECTPLUGIN_OK) status = connectplugin_server_options_set_handler_threads(options, 32, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_server_new(options, &server, &error);
    connectplugin_server_options_free(options);
    if (status == CONNECTPLUGIN_OK) status = kv_register_handlers(server, store, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_config_new("KV_PLUGIN", "connectplugin-kv", &config, &error);
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_plugin_config_add_plugin(config, 1, "kv", CONNECTPLUGIN_VERSION,
                                                        "/connectplugin.examples.kv.v1.KVService/", &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_serve_in_process(server, config, name, &error);
    connectplugin_plugin_config_free(config);
    if (status != CONNECTPLUGIN_OK) {
        report("serve the KV plugin in process", status, error);
        connectplugin_server_free(server);
        return NULL;
    }
    return server; /* the store lives as long as the process */
}

static int usage(const char *msg) {
    if (msg) fprintf(stderr, "kv-host-c: %s\n", msg);
    fprintf(stderr, "usage: kv-host-c [--repeat N] [--logs] [--automtls] (--plugin PATH [ARGS...] | --url URL | --in-process)\n");
    return 2;
}

int main(int argc, char **argv) {
    int repeat = 1, plugin_at = -1, automtls = 0;
    bool logs = false;
    const char *url = NULL;
    bool in_process = false;
    char in_process_url[128];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end = NULL;
            long n = strtol(argv[++i], &end, 10);
            if (!end || *end || n < 1 || n > 1000000) return usage("--repeat needs a positive number");
            repeat = (int)n;
        } else if (strcmp(argv[i], "--logs") == 0) {
            logs = true;
        } else if (strcmp(argv[i], "--automtls") == 0) {
            automtls = 1;
        } else if (strcmp(argv[i], "--in-process") == 0) {
            in_process = true;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) {
            plugin_at = i + 1;
            break;
        } else {
            return usage(NULL);
        }
    }
    connectplugin_server *in_process_server = NULL;
    if (in_process) {
        in_process_server = serve_in_process(in_process_url, sizeof in_process_url);
        if (!in_process_server) return 1;
        url = in_process_url;
    }
    if (plugin_at < 0 && !url) return usage("--plugin PATH, --url URL or --in-process is required");
    const char *target = url ? url : argv[plugin_at];

    connectplugin_plugin_client_config *config = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status status =
        url ? connectplugin_plugin_client_config_new_url("KV_PLUGIN", "connectplugin-kv", url, &config, &error)
            : connectplugin_plugin_client_config_new("KV_PLUGIN", "connectplugin-kv", argv[plugin_at], &config, &error);
    for (int i = plugin_at + 1; !url && status == CONNECTPLUGIN_OK && i < argc; i++)
        status = connectplugin_plugin_client_config_add_arg(config, argv[i], &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_client_config_add_plugin(config, 1, "kv", &error);
    if (status == CONNECTPLUGIN_OK && logs)
        status = connectplugin_plugin_client_config_set_logger(config, print_log, NULL, NULL, &error);
    if (status == CONNECTPLUGIN_OK && automtls) status = connectplugin_plugin_client_config_set_auto_mtls(config, 1, &error);
    connectplugin_plugin_client *plugin = NULL;
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_client_start(config, &plugin, &error);
    connectplugin_plugin_client_config_free(config);
    if (status != CONNECTPLUGIN_OK) {
        report("start the plugin", status, error);
        return 1;
    }
    printf("started %s pid=%d version=%d\n", target, (int)connectplugin_plugin_client_pid(plugin),
           (int)connectplugin_plugin_client_negotiated_version(plugin));

    int exit_code = 1;
    kv_plugin kv = {NULL};
    status = connectplugin_plugin_client_dispense(plugin, "kv", &kv.client, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("dispense kv", status, error);
        goto done;
    }
    bool ok = true;
    for (int i = 0; i < repeat && ok; i++) ok = script(&kv, i == repeat - 1);
    kv_plugin_close(&kv);
    status = connectplugin_plugin_client_ping(plugin, 10000, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("ping", status, error);
        ok = false;
    } else {
        printf("ping ok\n");
    }
    status = connectplugin_plugin_client_kill(plugin, &error);
    if (status != CONNECTPLUGIN_OK) report("kill", status, error);
    if (url) {
        printf("stopped: disconnected\n");
        exit_code = ok ? 0 : 1;
        goto done;
    }
    int32_t value = 0;
    int32_t how = connectplugin_plugin_client_exit_status(plugin, &value);
    printf("stopped: %s %d\n", how == 1 ? "exited" : how == 2 ? "signaled" : "unknown", (int)value);
    exit_code = ok && how == 1 && value == 0 ? 0 : 1;

done:
    kv_plugin_close(&kv);
    connectplugin_plugin_client_free(plugin);
    connectplugin_server_free(in_process_server);
    return exit_code;
}
