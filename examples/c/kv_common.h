/*
 * kv_common.h — the messages of examples/proto/kv/v1/kv.proto for the C examples, with a tiny
 * protobuf wire codec and a tiny proto3 JSON codec. No dependencies beyond libc.
 *
 * One struct holds every KV message; which fields are meaningful depends on the message type:
 *
 *   message          field 1            field 2          field 3
 *   PutRequest       key    (string)    value (bytes)    -
 *   PutResponse      -                  -                -
 *   GetRequest       key    (string)    -                -
 *   GetResponse      value  (bytes)     found (bool)     -
 *   DeleteRequest    key    (string)    -                -
 *   DeleteResponse   existed (bool)     -                -
 *   ListRequest      prefix (string)    -                -        (prefix is kept in `key`)
 *   ListResponse     key    (string)    value (bytes)    -
 *   PutManyResponse  count  (int64)     -                -
 *   WatchRequest     prefix (string)    -                -        (prefix is kept in `key`)
 *   WatchEvent       key    (string)    value (bytes)    deleted (bool)
 *
 * It also encodes and decodes google.rpc.ErrorInfo by hand (the detail of the reserved-key errors).
 */
#ifndef KV_COMMON_H
#define KV_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_SERVICE "/connectplugin.examples.kv.v1.KVService/"
#define KV_PROCEDURE_PUT KV_SERVICE "Put"
#define KV_PROCEDURE_GET KV_SERVICE "Get"
#define KV_PROCEDURE_DELETE KV_SERVICE "Delete"
#define KV_PROCEDURE_LIST KV_SERVICE "List"
#define KV_PROCEDURE_PUT_MANY KV_SERVICE "PutMany"
#define KV_PROCEDURE_WATCH KV_SERVICE "Watch"

/* The test hooks and errors of examples/proto/README.md. */
#define KV_ERROR_KEY "__error__"
#define KV_SLOW_KEY "__slow__"
#define KV_SLOW_MS 1000
#define KV_EMPTY_KEY_MESSAGE "key must not be empty"
#define KV_RESERVED_MESSAGE "key is reserved"
#define KV_ERROR_INFO_TYPE "google.rpc.ErrorInfo"
#define KV_ERROR_REASON "RESERVED_KEY"
#define KV_ERROR_DOMAIN "kv.examples.connectplugin"

typedef enum kv_type {
    KV_PUT_REQUEST,
    KV_PUT_RESPONSE,
    KV_GET_REQUEST,
    KV_GET_RESPONSE,
    KV_DELETE_REQUEST,
    KV_DELETE_RESPONSE,
    KV_LIST_REQUEST,
    KV_LIST_RESPONSE,
    KV_PUT_MANY_RESPONSE,
    KV_WATCH_REQUEST,
    KV_WATCH_EVENT,
} kv_type;

/** The message name, e.g. "PutRequest". */
const char *kv_type_name(kv_type type);

typedef enum kv_codec { KV_CODEC_PROTO, KV_CODEC_JSON } kv_codec;

/**
 * A KV message. `key` (also the `prefix` of ListRequest and WatchRequest) and `value` are owned
 * (malloc), `key` is NUL-terminated; both may be NULL when empty.
 */
typedef struct kv_message {
    char *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    bool found;
    bool existed;
    bool deleted;
    int64_t count;
} kv_message;

/** A growable byte buffer. */
typedef struct kv_buffer {
    uint8_t *data;
    size_t len;
    size_t cap;
} kv_buffer;

void kv_buffer_free(kv_buffer *buffer);

/** Frees the fields of @p message and zeroes it. */
void kv_message_clear(kv_message *message);

/**
 * Sets the key (copied) / value (copied) of @p message. Return false when out of memory.
 */
bool kv_message_set_key(kv_message *message, const char *key, size_t key_len);
bool kv_message_set_value(kv_message *message, const uint8_t *value, size_t value_len);

/**
 * Encodes @p message as @p type in @p codec into @p out (which must be zeroed or empty; it is
 * appended to). Returns false when out of memory.
 */
bool kv_encode(kv_type type, kv_codec codec, const kv_message *message, kv_buffer *out);

/**
 * Decodes @p data as @p type in @p codec into @p out (zeroed first). On failure returns false,
 * leaves @p out cleared and writes a short reason ("truncated varint in field 1", …) into @p why.
 * Unknown fields are skipped; truncated or malformed input is rejected.
 */
bool kv_decode(kv_type type, kv_codec codec, const uint8_t *data, size_t len, kv_message *out, char *why,
               size_t why_size);

/** "proto" → KV_CODEC_PROTO, "json" → KV_CODEC_JSON; false for anything else. */
bool kv_codec_from_name(const char *name, kv_codec *out);

/** A google.rpc.ErrorInfo: reason = 1, domain = 2, map<string, string> metadata = 3. Strings owned. */
typedef struct kv_error_info {
    char *reason;
    char *domain;
    size_t metadata_count;
    char **metadata_keys;   /* sorted by key (byte order); one entry per key (the last one wins) */
    char **metadata_values;
} kv_error_info;

/**
 * Appends the ErrorInfo {reason, domain, metadata} to @p out in protobuf wire format. @p metadata holds
 * @p pairs (key, value) pairs as 2 * pairs strings. Returns false when out of memory.
 */
bool kv_error_info_encode(const char *reason, const char *domain, const char *const *metadata, size_t pairs,
                          kv_buffer *out);
/** Decodes an ErrorInfo into @p out (zeroed first). On failure returns false and sets @p why. */
bool kv_error_info_decode(const uint8_t *data, size_t len, kv_error_info *out, char *why, size_t why_size);
/** Frees the fields of @p info and zeroes it. */
void kv_error_info_clear(kv_error_info *info);

#endif /* KV_COMMON_H */
