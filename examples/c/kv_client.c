/*
 * kv-client-c — the key-value example client in C on libconnectplugin (see examples/README.md).
 *
 *   kv-client-c --url URL [--codec proto|json] [--http 1.1|2]
 *
 * Runs Put, Get, Delete, Get and Get with an empty key, printing one line per step. Exits 0 when every
 * step had the expected outcome (the last one is expected to fail with invalid_argument), else 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <connectplugin.h>

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
 * into @p response. Returns CONNECTPLUGIN_OK, or the failure status with *out_error set (possibly NULL
 * for a local decode failure, then *why has the reason).
 */
static connectplugin_status call(kv_client *c, const char *procedure, kv_type request_type, const kv_message *request,
                                 kv_type response_type, kv_message *response, connectplugin_error **out_error,
                                 char *why, size_t why_size) {
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
        connectplugin_client_call_unary(c->client, procedure, body.data, body.len, NULL, &reply, out_error);
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

static int usage(void) {
    fprintf(stderr, "usage: kv-client-c --url URL [--codec proto|json] [--http 1.1|2]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *url = NULL;
    const char *codec_name = "proto";
    const char *http = "2";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--url") == 0) url = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--codec") == 0) codec_name = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--http") == 0) http = argv[++i];
        else return usage();
    }
    kv_client c = {NULL, KV_CODEC_PROTO};
    if (!url || !kv_codec_from_name(codec_name, &c.codec)) return usage();
    int32_t version;
    if (strcmp(http, "1.1") == 0) version = CONNECTPLUGIN_HTTP_1_1;
    else if (strcmp(http, "2") == 0) version = CONNECTPLUGIN_HTTP_2;
    else return usage();

    connectplugin_error *error = NULL;
    connectplugin_client_options *options = connectplugin_client_options_new();
    if (!options) {
        print_error("resource_exhausted", "out of memory");
        return 1;
    }
    connectplugin_status status = connectplugin_client_options_set_codec(options, codec_name, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_options_set_http_version(options, version, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_client_new(url, options, &c.client, &error);
    connectplugin_client_options_free(options);
    if (status != CONNECTPLUGIN_OK) {
        report_failure(error, connectplugin_status_string(status));
        return 1;
    }

    bool all_expected = true;
    char why[256] = "";
    kv_message request = {0};
    kv_message response = {0};
    const char *key = "greeting";
    static const uint8_t hello[] = "hello";

    /* 1. Put{greeting, hello} */
    if (!kv_message_set_key(&request, key, strlen(key)) || !kv_message_set_value(&request, hello, 5)) {
        print_error("resource_exhausted", "out of memory");
        kv_message_clear(&request);
        connectplugin_client_free(c.client);
        return 1;
    }
    status = call(&c, KV_PROCEDURE_PUT, KV_PUT_REQUEST, &request, KV_PUT_RESPONSE, &response, &error, why, sizeof why);
    if (status == CONNECTPLUGIN_OK) {
        printf("put %s ok\n", key);
    } else {
        report_failure(error, why);
        all_expected = false;
    }
    kv_message_clear(&response);

    /* 2. Get{greeting} → found, hello */
    status = call(&c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, &error, why, sizeof why);
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
    status = call(&c, KV_PROCEDURE_DELETE, KV_DELETE_REQUEST, &request, KV_DELETE_RESPONSE, &response, &error, why,
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
    status = call(&c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, &error, why, sizeof why);
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
    status = call(&c, KV_PROCEDURE_GET, KV_GET_REQUEST, &request, KV_GET_RESPONSE, &response, &error, why, sizeof why);
    if (status == CONNECTPLUGIN_ERR_RPC) {
        const char *code = connectplugin_code_name(connectplugin_error_code(error));
        const char *message = connectplugin_error_message(error);
        printf("get <empty> error=%s message=%s\n", code, message);
        all_expected &= connectplugin_error_code(error) == CONNECTPLUGIN_CODE_INVALID_ARGUMENT &&
                        strcmp(message, "key must not be empty") == 0;
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

    connectplugin_client_free(c.client);
    return all_expected ? 0 : 1;
}
