/*
 * kv-server-c — the key-value example server in C on libconnectplugin (see examples/README.md).
 *
 *   kv-server-c --listen ADDR      ADDR: host:port (port 0 picks one) or unix:PATH
 *
 * Prints "listening on <bound address>" once ready, serves until SIGTERM or SIGINT, then stops
 * gracefully (in-flight calls get up to 5 s) and exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_common.h"

/* ---- The store: a mutex-protected array of entries (small and simple; the example is about the ABI). */

typedef struct kv_entry {
    char *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
} kv_entry;

typedef struct kv_store {
    pthread_mutex_t mutex;
    kv_entry *entries;
    size_t count;
    size_t capacity;
} kv_store;

static kv_entry *store_find_locked(kv_store *store, const char *key, size_t key_len) {
    for (size_t i = 0; i < store->count; i++) {
        kv_entry *e = &store->entries[i];
        if (e->key_len == key_len && memcmp(e->key, key, key_len) == 0) return e;
    }
    return NULL;
}

/* Stores a copy of (key, value). False when out of memory. */
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

/* Removes key; returns whether it existed. */
static bool store_delete(kv_store *store, const char *key, size_t key_len) {
    pthread_mutex_lock(&store->mutex);
    kv_entry *e = store_find_locked(store, key, key_len);
    if (e) {
        free(e->key);
        free(e->value);
        *e = store->entries[--store->count];
    }
    pthread_mutex_unlock(&store->mutex);
    return e != NULL;
}

static void store_destroy(kv_store *store) {
    for (size_t i = 0; i < store->count; i++) {
        free(store->entries[i].key);
        free(store->entries[i].value);
    }
    free(store->entries);
    pthread_mutex_destroy(&store->mutex);
}

/* ---- Handlers. */

static void report(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "kv-server-c: %s: %s: %s\n", what, connectplugin_status_string(status),
            connectplugin_error_message(error));
    connectplugin_error_free(error);
}

static void call_fail(connectplugin_call *call, connectplugin_code code, const char *message) {
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_call_fail(call, code, message, &error);
    if (status != CONNECTPLUGIN_OK) report("connectplugin_call_fail", status, error);
}

/* Decodes the request of @p call as @p type into @p request; on failure answers the call and returns false. */
static bool read_request(connectplugin_call *call, kv_type type, kv_codec *codec, kv_message *request) {
    if (!kv_codec_from_name(connectplugin_call_codec(call), codec)) {
        call_fail(call, CONNECTPLUGIN_CODE_INTERNAL, "unsupported codec");
        return false;
    }
    size_t len = 0;
    const uint8_t *data = connectplugin_call_request(call, &len);
    char why[160];
    if (!kv_decode(type, *codec, data, len, request, why, sizeof why)) {
        char message[256];
        snprintf(message, sizeof message, "cannot decode %s (%s): %s", kv_type_name(type),
                 *codec == KV_CODEC_JSON ? "json" : "proto", why);
        call_fail(call, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, message);
        return false;
    }
    if (request->key_len == 0) {
        kv_message_clear(request);
        call_fail(call, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, "key must not be empty");
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
    if (status != CONNECTPLUGIN_OK) report("connectplugin_call_respond", status, error);
    kv_buffer_free(&out);
}

static void handle_put(connectplugin_call *call, void *user_data) {
    kv_store *store = user_data;
    kv_codec codec;
    kv_message request;
    if (!read_request(call, KV_PUT_REQUEST, &codec, &request)) return;
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

/* ---- main. */

static int usage(void) {
    fprintf(stderr, "usage: kv-server-c --listen ADDR   (ADDR: host:port or unix:PATH)\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
        else if (strncmp(argv[i], "--listen=", 9) == 0) listen = argv[i] + 9;
        else return usage();
    }
    if (!listen || !*listen) return usage();

    /* Block SIGINT/SIGTERM before the library starts any thread: every thread inherits the mask, and
       the main thread takes the signal with sigwait. No library call ever runs in a signal handler. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, &signals, NULL);
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
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_server_new(NULL, &server, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("connectplugin_server_new", status, error);
        goto done;
    }
    if (strncmp(listen, "unix:", 5) == 0) status = connectplugin_server_listen_unix(server, listen + 5, &error);
    else status = connectplugin_server_listen_tcp(server, listen, &error);
    if (status != CONNECTPLUGIN_OK) {
        report("listen", status, error);
        goto done;
    }
    static const struct {
        const char *procedure;
        connectplugin_unary_handler handler;
    } routes[] = {
        {KV_PROCEDURE_PUT, handle_put},
        {KV_PROCEDURE_GET, handle_get},
        {KV_PROCEDURE_DELETE, handle_delete},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        /* The store outlives the server (freed below, after connectplugin_server_free): no finalizer. */
        status = connectplugin_server_register_unary(server, routes[i].procedure, routes[i].handler, &store, NULL,
                                                     &error);
        if (status != CONNECTPLUGIN_OK) {
            report(routes[i].procedure, status, error);
            goto done;
        }
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
    store_destroy(&store);
    return exit_code;
}
