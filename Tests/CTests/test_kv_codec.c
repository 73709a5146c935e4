/*
 * test_kv_codec.c — the protobuf and JSON codecs of the C example (examples/c/kv_common.c).
 * Needs no library. Last line: "c-tests: N passed, M failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_common.h"

static int g_passed, g_failed;

static void check(int ok, const char *what, int line) {
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "FAIL line %d: %s\n", line, what);
    }
}
#define CHECK(cond) check((cond) ? 1 : 0, #cond, __LINE__)

static int encodes_to(kv_type type, kv_codec codec, const kv_message *m, const char *want, size_t want_len) {
    kv_buffer out = {0};
    int ok = kv_encode(type, codec, m, &out) && out.len == want_len && (want_len == 0 || memcmp(out.data, want, want_len) == 0);
    if (!ok) fprintf(stderr, "  encoded %zu bytes: %.*s\n", out.len, (int)out.len, out.data ? (const char *)out.data : "");
    kv_buffer_free(&out);
    return ok;
}

static int decodes(kv_type type, kv_codec codec, const char *data, size_t len, kv_message *out) {
    char why[160] = "";
    int ok = kv_decode(type, codec, (const uint8_t *)data, len, out, why, sizeof why);
    if (!ok) fprintf(stderr, "  decode failed: %s\n", why);
    return ok;
}

static int rejects(kv_type type, kv_codec codec, const char *data, size_t len) {
    kv_message m;
    char why[160] = "";
    int rejected = !kv_decode(type, codec, (const uint8_t *)data, len, &m, why, sizeof why);
    if (!rejected) kv_message_clear(&m);
    else if (why[0] == '\0') rejected = 0; /* a reason is required */
    return rejected;
}

#define S(lit) lit, sizeof(lit) - 1

int main(void) {
    kv_message m = {0};
    CHECK(kv_message_set_key(&m, "greeting", 8));
    CHECK(kv_message_set_value(&m, (const uint8_t *)"hello", 5));

    /* Protobuf encoding. */
    CHECK(encodes_to(KV_PUT_REQUEST, KV_CODEC_PROTO, &m, S("\x0a\x08greeting\x12\x05hello")));
    CHECK(encodes_to(KV_GET_REQUEST, KV_CODEC_PROTO, &m, S("\x0a\x08greeting")));
    CHECK(encodes_to(KV_PUT_RESPONSE, KV_CODEC_PROTO, &m, S("")));
    m.found = true;
    CHECK(encodes_to(KV_GET_RESPONSE, KV_CODEC_PROTO, &m, S("\x0a\x05hello\x10\x01")));
    m.existed = true;
    CHECK(encodes_to(KV_DELETE_RESPONSE, KV_CODEC_PROTO, &m, S("\x08\x01")));
    /* JSON encoding: defaults omitted, base64 bytes, escapes. */
    CHECK(encodes_to(KV_PUT_REQUEST, KV_CODEC_JSON, &m, S("{\"key\":\"greeting\",\"value\":\"aGVsbG8=\"}")));
    CHECK(encodes_to(KV_GET_RESPONSE, KV_CODEC_JSON, &m, S("{\"value\":\"aGVsbG8=\",\"found\":true}")));
    CHECK(encodes_to(KV_DELETE_RESPONSE, KV_CODEC_JSON, &m, S("{\"existed\":true}")));
    CHECK(encodes_to(KV_PUT_RESPONSE, KV_CODEC_JSON, &m, S("{}")));
    kv_message empty = {0};
    CHECK(encodes_to(KV_GET_RESPONSE, KV_CODEC_JSON, &empty, S("{}")));
    CHECK(encodes_to(KV_GET_RESPONSE, KV_CODEC_PROTO, &empty, S("")));
    kv_message esc = {0};
    CHECK(kv_message_set_key(&esc, "a\"b\\c\n\x01", 7));
    CHECK(encodes_to(KV_GET_REQUEST, KV_CODEC_JSON, &esc, S("{\"key\":\"a\\\"b\\\\c\\n\\u0001\"}")));
    kv_message_clear(&esc);
    kv_message_clear(&m);

    /* Protobuf decoding: round trip, unknown fields skipped, last value wins, wrong wire type = unknown. */
    kv_message d;
    if (decodes(KV_PUT_REQUEST, KV_CODEC_PROTO, S("\x0a\x08greeting\x12\x05hello"), &d)) {
        CHECK(d.key_len == 8 && strcmp(d.key, "greeting") == 0);
        CHECK(d.value_len == 5 && memcmp(d.value, "hello", 5) == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_GET_REQUEST, KV_CODEC_PROTO,
                S("\x18\x96\x01"             /* field 3 varint */
                  "\x0a\x01x"                 /* key "x" */
                  "\x21\x01\x02\x03\x04\x05\x06\x07\x08" /* field 4 fixed64 */
                  "\x2d\x01\x02\x03\x04"     /* field 5 fixed32 */
                  "\x32\x02zz"               /* field 6 bytes */
                  "\x3b\x08\x01\x3c"         /* field 7 group containing field 1 varint */
                  "\x08\x05"                 /* field 1 as varint: wrong wire type, skipped */
                  "\x0a\x03key"),            /* key "key" (last wins) */
                &d)) {
        CHECK(d.key_len == 3 && strcmp(d.key, "key") == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_GET_RESPONSE, KV_CODEC_PROTO, S("\x10\x02"), &d)) {
        CHECK(d.found && d.value_len == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_GET_REQUEST, KV_CODEC_PROTO, "", 0, &d)) {
        CHECK(d.key_len == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    /* Rejected: truncated or malformed. */
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x0a")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x0a\x05hel")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x18\x96")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x21\x01\x02")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x3b\x08\x01")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x3c")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x0e")));    /* wire type 6 */
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x02\x00"))); /* field 0 */
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x0a\x02\xc3\x28"))); /* invalid UTF-8 key */
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_PROTO, S("\x0a\xff\xff\xff\xff\x0f")));

    /* JSON decoding. */
    if (decodes(KV_PUT_REQUEST, KV_CODEC_JSON, S(" {\n \"value\" : \"aGVsbG8=\" , \"unknown\": {\"a\":[1,2.5e3,-0.1,true,null,\"s\"]},"
                                                   "\"key\":\"gr\\u00e9\\ud83d\\ude00\\/\"\t}\r\n"), &d)) {
        CHECK(d.key_len == 9 && memcmp(d.key, "gr\xc3\xa9\xf0\x9f\x98\x80/", 9) == 0);
        CHECK(d.value_len == 5 && memcmp(d.value, "hello", 5) == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_PUT_REQUEST, KV_CODEC_JSON, S("{\"key\":\"k\",\"value\":\"-_8\"}"), &d)) { /* URL-safe, unpadded */
        CHECK(d.value_len == 2 && (unsigned char)d.value[0] == 0xfb && (unsigned char)d.value[1] == 0xff);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_GET_RESPONSE, KV_CODEC_JSON, S("{\"found\":true,\"value\":\"\"}"), &d)) {
        CHECK(d.found && d.value_len == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":null}"), &d)) {
        CHECK(d.key_len == 0);
        kv_message_clear(&d);
    } else CHECK(0);
    if (decodes(KV_DELETE_RESPONSE, KV_CODEC_JSON, S("{}"), &d)) {
        CHECK(!d.existed);
        kv_message_clear(&d);
    } else CHECK(0);
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("[]")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"k\"")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"k}")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":1}")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"k\",}")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"k\"} x")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"\\ud800\"}")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"key\":\"a\nb\"}")));
    CHECK(rejects(KV_GET_REQUEST, KV_CODEC_JSON, S("{\"x\":01}")));
    CHECK(rejects(KV_PUT_REQUEST, KV_CODEC_JSON, S("{\"value\":\"a$==\"}")));
    CHECK(rejects(KV_PUT_REQUEST, KV_CODEC_JSON, S("{\"value\":\"a\"}")));
    CHECK(rejects(KV_GET_RESPONSE, KV_CODEC_JSON, S("{\"found\":\"yes\"}")));

    printf("c-tests: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
