/*
 * kv_common.h — the messages of examples/proto/kv/v1/kv.proto for the C examples, with a tiny
 * protobuf wire codec and a tiny proto3 JSON codec. No dependencies beyond libc.
 *
 * One struct holds every KV message; which fields are meaningful depends on the message type:
 *
 *   message      field 1           field 2
 *   PutRequest   key   (string)    value (bytes)
 *   PutResponse  -                 -
 *   GetRequest   key   (string)    -
 *   GetResponse  value (bytes)     found (bool)
 *   DeleteRequest key  (string)    -
 *   DeleteResponse existed (bool)  -
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

typedef enum kv_type {
    KV_PUT_REQUEST,
    KV_PUT_RESPONSE,
    KV_GET_REQUEST,
    KV_GET_RESPONSE,
    KV_DELETE_REQUEST,
    KV_DELETE_RESPONSE,
} kv_type;

/** The message name, e.g. "PutRequest". */
const char *kv_type_name(kv_type type);

typedef enum kv_codec { KV_CODEC_PROTO, KV_CODEC_JSON } kv_codec;

/** A KV message. `key` and `value` are owned (malloc), `key` is NUL-terminated; both may be NULL when empty. */
typedef struct kv_message {
    char *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    bool found;
    bool existed;
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

#endif /* KV_COMMON_H */
