/*
 * kv-host-c — a plugin host in C on libconnectplugin: it launches a KV plugin (a connectplugin plugin
 * in any language, or an unmodified HashiCorp go-plugin gRPC plugin), dispenses "kv", runs the
 * scripted Put/Get/Delete sequence, prints the results and stops the plugin.
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
 * usage error. The typed client is the struct kv_plugin below: functions taking the dispensed client.
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

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

/* One unary call: encode @p req as @p req_type, decode the answer as @p resp_type into @p resp. */
static bool kv_call(kv_plugin *kv, const char *procedure, kv_type req_type, const kv_message *req, kv_type resp_type,
                    kv_message *resp) {
    kv_buffer body = {0};
    if (!kv_encode(req_type, KV_CODEC_PROTO, req, &body)) {
        fprintf(stderr, "kv-host-c: out of memory\n");
        return false;
    }
    connectplugin_call_options *options = connectplugin_call_options_new();
    connectplugin_error *error = NULL;
    connectplugin_status status = options ? connectplugin_call_options_set_timeout_ms(options, 20000, &error)
                                          : CONNECTPLUGIN_ERR_RESOURCE;
    connectplugin_response *response = NULL;
    if (status == CONNECTPLUGIN_OK)
        status = connectplugin_client_call_unary(kv->client, procedure, body.data, body.len, options, &response, &error);
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

static void kv_plugin_close(kv_plugin *kv) {
    connectplugin_client_free(kv->client);
    kv->client = NULL;
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
    return ok && !found;
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
