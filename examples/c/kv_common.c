/*
 * kv_common.c — protobuf wire and proto3 JSON codecs for the KV example messages (see kv_common.h).
 */
#include "kv_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Schema                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

typedef enum field_kind {
    FIELD_NONE,
    FIELD_KEY,
    FIELD_VALUE,
    FIELD_FOUND,
    FIELD_EXISTED,
    FIELD_PREFIX,
    FIELD_COUNT,
    FIELD_DELETED,
} field_kind;

const char *kv_type_name(kv_type type) {
    switch (type) {
    case KV_PUT_REQUEST: return "PutRequest";
    case KV_PUT_RESPONSE: return "PutResponse";
    case KV_GET_REQUEST: return "GetRequest";
    case KV_GET_RESPONSE: return "GetResponse";
    case KV_DELETE_REQUEST: return "DeleteRequest";
    case KV_DELETE_RESPONSE: return "DeleteResponse";
    case KV_LIST_REQUEST: return "ListRequest";
    case KV_LIST_RESPONSE: return "ListResponse";
    case KV_PUT_MANY_RESPONSE: return "PutManyResponse";
    case KV_WATCH_REQUEST: return "WatchRequest";
    case KV_WATCH_EVENT: return "WatchEvent";
    }
    return "?";
}

#define MAX_FIELDS 3

/* The fields of @p type, by protobuf number (index 0 = field 1); FIELD_NONE past the last one. */
static const field_kind *fields_of(kv_type type) {
    static const field_kind none[MAX_FIELDS] = {FIELD_NONE};
    static const field_kind key_value[MAX_FIELDS] = {FIELD_KEY, FIELD_VALUE};
    static const field_kind key[MAX_FIELDS] = {FIELD_KEY};
    static const field_kind value_found[MAX_FIELDS] = {FIELD_VALUE, FIELD_FOUND};
    static const field_kind existed[MAX_FIELDS] = {FIELD_EXISTED};
    static const field_kind prefix[MAX_FIELDS] = {FIELD_PREFIX};
    static const field_kind count[MAX_FIELDS] = {FIELD_COUNT};
    static const field_kind event[MAX_FIELDS] = {FIELD_KEY, FIELD_VALUE, FIELD_DELETED};
    switch (type) {
    case KV_PUT_REQUEST:
    case KV_LIST_RESPONSE: return key_value;
    case KV_GET_REQUEST:
    case KV_DELETE_REQUEST: return key;
    case KV_GET_RESPONSE: return value_found;
    case KV_DELETE_RESPONSE: return existed;
    case KV_LIST_REQUEST:
    case KV_WATCH_REQUEST: return prefix;
    case KV_PUT_MANY_RESPONSE: return count;
    case KV_WATCH_EVENT: return event;
    case KV_PUT_RESPONSE: return none;
    }
    return none;
}

/* The field with protobuf number @p number of @p type. */
static field_kind field_by_number(kv_type type, uint64_t number) {
    return number >= 1 && number <= MAX_FIELDS ? fields_of(type)[number - 1] : FIELD_NONE;
}

static const char *field_name(field_kind kind) {
    switch (kind) {
    case FIELD_KEY: return "key";
    case FIELD_VALUE: return "value";
    case FIELD_FOUND: return "found";
    case FIELD_EXISTED: return "existed";
    case FIELD_PREFIX: return "prefix";
    case FIELD_COUNT: return "count";
    case FIELD_DELETED: return "deleted";
    case FIELD_NONE: break;
    }
    return "?";
}

/* The field with JSON name @p name (JSON and proto names coincide for these messages). */
static field_kind field_by_name(kv_type type, const char *name, size_t len) {
    const field_kind *fields = fields_of(type);
    for (size_t i = 0; i < MAX_FIELDS && fields[i] != FIELD_NONE; i++) {
        const char *n = field_name(fields[i]);
        if (strlen(n) == len && memcmp(n, name, len) == 0) return fields[i];
    }
    return FIELD_NONE;
}

static bool is_string_field(field_kind kind) { return kind == FIELD_KEY || kind == FIELD_PREFIX; }
static bool is_bool_field(field_kind kind) { return kind == FIELD_FOUND || kind == FIELD_EXISTED || kind == FIELD_DELETED; }

static bool *bool_slot(kv_message *m, field_kind kind) {
    return kind == FIELD_FOUND ? &m->found : kind == FIELD_EXISTED ? &m->existed : &m->deleted;
}

static bool bool_value(const kv_message *m, field_kind kind) {
    return kind == FIELD_FOUND ? m->found : kind == FIELD_EXISTED ? m->existed : m->deleted;
}

/* ---------------------------------------------------------------------------------------------- */
/* Buffers and messages                                                                           */
/* ---------------------------------------------------------------------------------------------- */

void kv_buffer_free(kv_buffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->len = buffer->cap = 0;
}

static bool buf_reserve(kv_buffer *b, size_t extra) {
    if (extra <= b->cap - b->len) return true;
    if (extra > SIZE_MAX / 2 - b->len) return false;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra) cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data) return false;
    b->data = data;
    b->cap = cap;
    return true;
}

static bool buf_append(kv_buffer *b, const void *data, size_t len) {
    if (len == 0) return true;
    if (!buf_reserve(b, len)) return false;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return true;
}

static bool buf_byte(kv_buffer *b, uint8_t byte) { return buf_append(b, &byte, 1); }

static bool buf_str(kv_buffer *b, const char *s) { return buf_append(b, s, strlen(s)); }

void kv_message_clear(kv_message *message) {
    free(message->key);
    free(message->value);
    memset(message, 0, sizeof *message);
}

bool kv_message_set_key(kv_message *message, const char *key, size_t key_len) {
    char *copy = malloc(key_len + 1);
    if (!copy) return false;
    if (key_len) memcpy(copy, key, key_len);
    copy[key_len] = '\0';
    free(message->key);
    message->key = copy;
    message->key_len = key_len;
    return true;
}

bool kv_message_set_value(kv_message *message, const uint8_t *value, size_t value_len) {
    uint8_t *copy = malloc(value_len ? value_len : 1);
    if (!copy) return false;
    if (value_len) memcpy(copy, value, value_len);
    free(message->value);
    message->value = copy;
    message->value_len = value_len;
    return true;
}

bool kv_codec_from_name(const char *name, kv_codec *out) {
    if (name && strcmp(name, "proto") == 0) {
        *out = KV_CODEC_PROTO;
        return true;
    }
    if (name && strcmp(name, "json") == 0) {
        *out = KV_CODEC_JSON;
        return true;
    }
    return false;
}

static void set_why(char *why, size_t why_size, const char *fmt, ...) {
    if (!why || why_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
}

/* True if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n) return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Protobuf wire format                                                                           */
/* ---------------------------------------------------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_SGROUP = 3, WIRE_EGROUP = 4, WIRE_I32 = 5 };

static bool pb_put_varint(kv_buffer *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7F;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return buf_append(b, tmp, n);
}

static bool pb_put_bytes(kv_buffer *b, uint32_t field, const void *data, size_t len) {
    if (len == 0) return true; /* proto3: default values are not serialized */
    return pb_put_varint(b, ((uint64_t)field << 3) | WIRE_LEN) && pb_put_varint(b, len) && buf_append(b, data, len);
}

static bool pb_put_bool(kv_buffer *b, uint32_t field, bool v) {
    if (!v) return true;
    return pb_put_varint(b, ((uint64_t)field << 3) | WIRE_VARINT) && pb_put_varint(b, 1);
}

typedef struct pb_reader {
    const uint8_t *p;
    const uint8_t *end;
} pb_reader;

/* 1 = ok, 0 = truncated, -1 = malformed (more than 10 bytes or overflow). */
static int pb_get_varint(pb_reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (r->p == r->end) return 0;
        uint8_t byte = *r->p++;
        if (i == 9 && byte > 1) return -1;
        v |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (!(byte & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return -1;
}

/* Reads one tag. Returns 1 on a tag, 0 at the end of input, -1 on error (why is set). */
static int pb_get_tag(pb_reader *r, uint64_t *field, unsigned *wire, char *why, size_t why_size) {
    if (r->p == r->end) return 0;
    uint64_t tag;
    int rc = pb_get_varint(r, &tag);
    if (rc != 1) {
        set_why(why, why_size, rc == 0 ? "truncated tag" : "malformed tag varint");
        return -1;
    }
    *field = tag >> 3;
    *wire = (unsigned)(tag & 7);
    if (*field == 0 || *field > 536870911u) {
        set_why(why, why_size, "invalid field number %llu", (unsigned long long)*field);
        return -1;
    }
    return 1;
}

static bool pb_skip(pb_reader *r, uint64_t field, unsigned wire, unsigned depth, char *why, size_t why_size) {
    uint64_t v;
    int rc;
    switch (wire) {
    case WIRE_VARINT:
        rc = pb_get_varint(r, &v);
        if (rc != 1) {
            set_why(why, why_size, "%s varint in field %llu", rc == 0 ? "truncated" : "malformed",
                    (unsigned long long)field);
            return false;
        }
        return true;
    case WIRE_I64:
    case WIRE_I32: {
        size_t n = wire == WIRE_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) {
            set_why(why, why_size, "truncated fixed%zu in field %llu", n * 8, (unsigned long long)field);
            return false;
        }
        r->p += n;
        return true;
    }
    case WIRE_LEN:
        rc = pb_get_varint(r, &v);
        if (rc != 1 || v > (uint64_t)(r->end - r->p)) {
            set_why(why, why_size, "truncated length-delimited field %llu", (unsigned long long)field);
            return false;
        }
        r->p += v;
        return true;
    case WIRE_SGROUP:
        if (depth >= 32) {
            set_why(why, why_size, "groups nested too deeply");
            return false;
        }
        for (;;) {
            uint64_t f;
            unsigned w;
            int t = pb_get_tag(r, &f, &w, why, why_size);
            if (t == 0) {
                set_why(why, why_size, "truncated group %llu", (unsigned long long)field);
                return false;
            }
            if (t < 0) return false;
            if (w == WIRE_EGROUP) {
                if (f != field) {
                    set_why(why, why_size, "mismatched end of group %llu", (unsigned long long)field);
                    return false;
                }
                return true;
            }
            if (!pb_skip(r, f, w, depth + 1, why, why_size)) return false;
        }
    case WIRE_EGROUP:
        set_why(why, why_size, "unexpected end of group %llu", (unsigned long long)field);
        return false;
    default:
        set_why(why, why_size, "invalid wire type %u in field %llu", wire, (unsigned long long)field);
        return false;
    }
}

static bool pb_decode(kv_type type, const uint8_t *data, size_t len, kv_message *out, char *why, size_t why_size) {
    pb_reader r = {data, data + len};
    if (len == 0) r.p = r.end = NULL; /* data may be NULL for an empty message */
    for (;;) {
        uint64_t field;
        unsigned wire;
        int t = pb_get_tag(&r, &field, &wire, why, why_size);
        if (t == 0) return true;
        if (t < 0) return false;
        field_kind kind = field_by_number(type, field);
        bool is_len = is_string_field(kind) || kind == FIELD_VALUE;
        bool is_varint = is_bool_field(kind) || kind == FIELD_COUNT;
        if ((is_len && wire == WIRE_LEN) || (is_varint && wire == WIRE_VARINT)) {
            uint64_t v;
            int rc = pb_get_varint(&r, &v);
            if (rc != 1) {
                set_why(why, why_size, "%s %s in field %llu (%s)", rc == 0 ? "truncated" : "malformed",
                        is_len ? "length" : "varint", (unsigned long long)field, field_name(kind));
                return false;
            }
            if (is_bool_field(kind)) {
                *bool_slot(out, kind) = v != 0;
                continue;
            }
            if (kind == FIELD_COUNT) {
                out->count = (int64_t)v; /* int64: two's complement */
                continue;
            }
            if (v > (uint64_t)(r.end - r.p)) {
                set_why(why, why_size, "truncated length-delimited field %llu (%s)", (unsigned long long)field,
                        field_name(kind));
                return false;
            }
            const uint8_t *bytes = r.p;
            r.p += v;
            bool ok;
            if (is_string_field(kind)) {
                if (!utf8_valid(bytes, (size_t)v)) {
                    set_why(why, why_size, "field %llu (%s) is not valid UTF-8", (unsigned long long)field,
                            field_name(kind));
                    return false;
                }
                ok = kv_message_set_key(out, (const char *)bytes, (size_t)v);
            } else {
                ok = kv_message_set_value(out, bytes, (size_t)v);
            }
            if (!ok) {
                set_why(why, why_size, "out of memory");
                return false;
            }
            continue;
        }
        /* Unknown field, or a known number with another wire type (which protobuf treats as unknown). */
        if (!pb_skip(&r, field, wire, 0, why, why_size)) return false;
    }
}

static bool pb_encode(kv_type type, const kv_message *m, kv_buffer *out) {
    const field_kind *fields = fields_of(type);
    for (uint32_t i = 0; i < MAX_FIELDS && fields[i] != FIELD_NONE; i++) {
        uint32_t number = i + 1;
        field_kind kind = fields[i];
        bool ok;
        if (is_string_field(kind)) ok = pb_put_bytes(out, number, m->key, m->key_len);
        else if (kind == FIELD_VALUE) ok = pb_put_bytes(out, number, m->value, m->value_len);
        else if (is_bool_field(kind)) ok = pb_put_bool(out, number, bool_value(m, kind));
        else if (m->count == 0) ok = true; /* FIELD_COUNT; proto3: 0 is not serialized */
        else ok = pb_put_varint(out, ((uint64_t)number << 3) | WIRE_VARINT) && pb_put_varint(out, (uint64_t)m->count);
        if (!ok) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Base64 (standard alphabet with padding on output; standard or URL-safe, padded or not, on input) */
/* ---------------------------------------------------------------------------------------------- */

static bool b64_encode(kv_buffer *out, const uint8_t *data, size_t len) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!buf_reserve(out, (len + 2) / 3 * 4)) return false;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};
        buf_append(out, q, 4);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)data[i] << 16;
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], '=', '='};
        buf_append(out, q, 4);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], '='};
        buf_append(out, q, 4);
    }
    return true;
}

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes into out (appended). False on invalid input. */
static bool b64_decode(const uint8_t *s, size_t len, kv_buffer *out) {
    size_t pad = 0;
    while (len > 0 && s[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (pad && (len + pad) % 4 != 0) return false;
    if (len % 4 == 1) return false;
    if (!buf_reserve(out, len / 4 * 3 + 2)) return false;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_byte(out, (uint8_t)(acc >> bits));
            acc &= (1u << bits) - 1;
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* JSON                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static bool json_put_string(kv_buffer *b, const char *s, size_t len) {
    if (!buf_byte(b, '"')) return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        char esc[8];
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                e = esc;
            }
        }
        if (e ? !buf_str(b, e) : !buf_byte(b, c)) return false;
    }
    return buf_byte(b, '"');
}

static bool json_encode(kv_type type, const kv_message *m, kv_buffer *out) {
    bool first = true;
    if (!buf_byte(out, '{')) return false;
    const field_kind *fields = fields_of(type);
    for (size_t i = 0; i < MAX_FIELDS && fields[i] != FIELD_NONE; i++) {
        field_kind kind = fields[i];
        bool present = (is_string_field(kind) && m->key_len) || (kind == FIELD_VALUE && m->value_len) ||
                       (is_bool_field(kind) && bool_value(m, kind)) || (kind == FIELD_COUNT && m->count != 0);
        if (!present) continue; /* proto3 JSON omits default values */
        if (!first && !buf_byte(out, ',')) return false;
        first = false;
        if (!json_put_string(out, field_name(kind), strlen(field_name(kind))) || !buf_byte(out, ':')) return false;
        bool ok;
        if (is_string_field(kind)) {
            ok = json_put_string(out, m->key, m->key_len);
        } else if (kind == FIELD_VALUE) {
            ok = buf_byte(out, '"') && b64_encode(out, m->value, m->value_len) && buf_byte(out, '"');
        } else if (kind == FIELD_COUNT) {
            char num[32]; /* proto3 JSON writes 64-bit integers as strings */
            snprintf(num, sizeof num, "\"%lld\"", (long long)m->count);
            ok = buf_str(out, num);
        } else {
            ok = buf_str(out, "true");
        }
        if (!ok) return false;
    }
    return buf_byte(out, '}');
}

typedef struct json_reader {
    const uint8_t *p;
    const uint8_t *end;
    char *why;
    size_t why_size;
} json_reader;

static void json_ws(json_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static bool json_fail(json_reader *r, const char *what) {
    set_why(r->why, r->why_size, "%s", what);
    return false;
}

static bool json_literal(json_reader *r, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0) return false;
    r->p += n;
    return true;
}

static bool json_hex4(json_reader *r, uint32_t *out) {
    if (r->end - r->p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = *r->p++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return false;
    }
    *out = v;
    return true;
}

static bool utf8_put(kv_buffer *b, uint32_t cp) {
    uint8_t tmp[4];
    size_t n;
    if (cp < 0x80) {
        tmp[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        tmp[0] = (uint8_t)(0xC0 | (cp >> 6));
        tmp[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (uint8_t)(0xE0 | (cp >> 12));
        tmp[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        tmp[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        tmp[0] = (uint8_t)(0xF0 | (cp >> 18));
        tmp[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        tmp[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        tmp[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(b, tmp, n);
}

/* Parses a JSON string (r->p at the opening quote); appends its unescaped bytes to out if non-NULL. */
static bool json_string(json_reader *r, kv_buffer *out) {
    r->p++; /* the quote */
    for (;;) {
        const uint8_t *start = r->p;
        while (r->p < r->end && *r->p != '"' && *r->p != '\\' && *r->p >= 0x20) r->p++;
        if (!utf8_valid(start, (size_t)(r->p - start))) return json_fail(r, "invalid UTF-8 in a JSON string");
        if (out && !buf_append(out, start, (size_t)(r->p - start))) return json_fail(r, "out of memory");
        if (r->p == r->end) return json_fail(r, "unterminated JSON string");
        uint8_t c = *r->p++;
        if (c == '"') return true;
        if (c < 0x20) return json_fail(r, "control character in a JSON string");
        /* c is a backslash */
        if (r->p == r->end) return json_fail(r, "unterminated JSON string");
        uint8_t e = *r->p++;
        uint32_t cp = 0;
        bool ok = true;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            ok = json_hex4(r, &cp);
            if (ok && cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = 0;
                ok = json_literal(r, "\\u") && json_hex4(r, &lo) && lo >= 0xDC00 && lo <= 0xDFFF;
                if (ok) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (ok && cp >= 0xDC00 && cp <= 0xDFFF) {
                ok = false; /* a lone low surrogate */
            }
            break;
        default: ok = false;
        }
        if (!ok) return json_fail(r, "invalid escape in a JSON string");
        if (out && !utf8_put(out, cp)) return json_fail(r, "out of memory");
    }
}

static bool json_number(json_reader *r) {
    const uint8_t *p = r->p;
    if (p < r->end && *p == '-') p++;
    if (p < r->end && *p == '0') {
        p++;
    } else if (p < r->end && *p >= '1' && *p <= '9') {
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    } else {
        return json_fail(r, "invalid JSON number");
    }
    if (p < r->end && *p == '.') {
        p++;
        if (p == r->end || *p < '0' || *p > '9') return json_fail(r, "invalid JSON number");
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-')) p++;
        if (p == r->end || *p < '0' || *p > '9') return json_fail(r, "invalid JSON number");
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    r->p = p;
    return true;
}

/* Skips any JSON value (for unknown fields). */
static bool json_skip_value(json_reader *r, unsigned depth) {
    if (depth > 64) return json_fail(r, "JSON nested too deeply");
    json_ws(r);
    if (r->p == r->end) return json_fail(r, "truncated JSON");
    uint8_t c = *r->p;
    if (c == '"') return json_string(r, NULL);
    if (c == '{' || c == '[') {
        uint8_t close = c == '{' ? '}' : ']';
        r->p++;
        json_ws(r);
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                json_ws(r);
                if (r->p == r->end || *r->p != '"') return json_fail(r, "expected a JSON object key");
                if (!json_string(r, NULL)) return false;
                json_ws(r);
                if (r->p == r->end || *r->p != ':') return json_fail(r, "expected ':' in a JSON object");
                r->p++;
            }
            if (!json_skip_value(r, depth + 1)) return false;
            json_ws(r);
            if (r->p == r->end) return json_fail(r, "truncated JSON");
            if (*r->p == ',') {
                r->p++;
                continue;
            }
            if (*r->p == close) {
                r->p++;
                return true;
            }
            return json_fail(r, c == '{' ? "expected ',' or '}' in a JSON object" : "expected ',' or ']' in a JSON array");
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) return json_number(r);
    if (json_literal(r, "true") || json_literal(r, "false") || json_literal(r, "null")) return true;
    return json_fail(r, "invalid JSON value");
}

/* A proto3 JSON int64: an integer number (no fraction or exponent) or a string holding one. */
static bool json_int64(json_reader *r, int64_t *out) {
    bool quoted = r->p < r->end && *r->p == '"';
    const uint8_t *p = r->p + (quoted ? 1 : 0);
    bool negative = p < r->end && *p == '-';
    if (negative) p++;
    if (p == r->end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < r->end && p[1] >= '0' && p[1] <= '9'))
        return false;
    uint64_t v = 0;
    for (; p < r->end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_C(9223372036854775808) - d) / 10) return false;
        v = v * 10 + d;
    }
    if (v > (negative ? UINT64_C(9223372036854775808) : (uint64_t)INT64_MAX)) return false;
    if (quoted) {
        if (p == r->end || *p != '"') return false;
        p++;
    } else if (p < r->end && (*p == '.' || *p == 'e' || *p == 'E')) {
        return false;
    }
    r->p = p;
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool json_decode(kv_type type, const uint8_t *data, size_t len, kv_message *out, char *why, size_t why_size) {
    json_reader r = {data, data + len, why, why_size};
    if (len == 0) r.p = r.end = NULL;
    json_ws(&r);
    if (r.p == r.end || *r.p != '{') return json_fail(&r, "expected a JSON object");
    r.p++;
    json_ws(&r);
    bool empty = r.p < r.end && *r.p == '}';
    if (empty) r.p++;
    while (!empty) {
        json_ws(&r);
        if (r.p == r.end || *r.p != '"') return json_fail(&r, "expected a JSON object key");
        kv_buffer name = {0};
        if (!json_string(&r, &name)) {
            kv_buffer_free(&name);
            return false;
        }
        field_kind kind = field_by_name(type, (const char *)name.data, name.len);
        kv_buffer_free(&name);
        json_ws(&r);
        if (r.p == r.end || *r.p != ':') return json_fail(&r, "expected ':' in a JSON object");
        r.p++;
        json_ws(&r);
        if (kind == FIELD_NONE) {
            if (!json_skip_value(&r, 1)) return false;
        } else if (json_literal(&r, "null")) {
            /* null reads as the default value */
            if (is_string_field(kind)) {
                free(out->key);
                out->key = NULL;
                out->key_len = 0;
            } else if (kind == FIELD_VALUE) {
                free(out->value);
                out->value = NULL;
                out->value_len = 0;
            } else if (kind == FIELD_COUNT) {
                out->count = 0;
            } else {
                *bool_slot(out, kind) = false;
            }
        } else if (is_bool_field(kind)) {
            bool v;
            if (json_literal(&r, "true")) v = true;
            else if (json_literal(&r, "false")) v = false;
            else {
                set_why(why, why_size, "field %s: expected true or false", field_name(kind));
                return false;
            }
            *bool_slot(out, kind) = v;
        } else if (kind == FIELD_COUNT) {
            if (!json_int64(&r, &out->count)) {
                set_why(why, why_size, "field %s: expected a 64-bit integer (number or string)", field_name(kind));
                return false;
            }
        } else {
            if (r.p == r.end || *r.p != '"') {
                set_why(why, why_size, "field %s: expected a string", field_name(kind));
                return false;
            }
            kv_buffer s = {0};
            if (!json_string(&r, &s)) {
                kv_buffer_free(&s);
                return false;
            }
            bool ok;
            if (is_string_field(kind)) {
                ok = kv_message_set_key(out, (const char *)s.data, s.len);
            } else {
                kv_buffer bytes = {0};
                if (!b64_decode(s.data, s.len, &bytes)) {
                    kv_buffer_free(&s);
                    kv_buffer_free(&bytes);
                    set_why(why, why_size, "field value: invalid base64");
                    return false;
                }
                ok = kv_message_set_value(out, bytes.data, bytes.len);
                kv_buffer_free(&bytes);
            }
            kv_buffer_free(&s);
            if (!ok) return json_fail(&r, "out of memory");
        }
        json_ws(&r);
        if (r.p == r.end) return json_fail(&r, "truncated JSON object");
        if (*r.p == ',') {
            r.p++;
            continue;
        }
        if (*r.p == '}') {
            r.p++;
            break;
        }
        return json_fail(&r, "expected ',' or '}' in a JSON object");
    }
    json_ws(&r);
    if (r.p != r.end) return json_fail(&r, "trailing data after the JSON object");
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* Public entry points                                                                            */
/* ---------------------------------------------------------------------------------------------- */

bool kv_encode(kv_type type, kv_codec codec, const kv_message *message, kv_buffer *out) {
    return codec == KV_CODEC_JSON ? json_encode(type, message, out) : pb_encode(type, message, out);
}

bool kv_decode(kv_type type, kv_codec codec, const uint8_t *data, size_t len, kv_message *out, char *why,
               size_t why_size) {
    memset(out, 0, sizeof *out);
    bool ok = codec == KV_CODEC_JSON ? json_decode(type, data, len, out, why, why_size)
                                     : pb_decode(type, data, len, out, why, why_size);
    if (!ok) kv_message_clear(out);
    return ok;
}

/* ---------------------------------------------------------------------------------------------- */
/* google.rpc.ErrorInfo                                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* Appends a length-delimited field even when empty (map entries and ErrorInfo strings are plain fields). */
static bool pb_put_string(kv_buffer *b, uint32_t field, const char *s) {
    return s == NULL || pb_put_bytes(b, field, s, strlen(s));
}

bool kv_error_info_encode(const char *reason, const char *domain, const char *const *metadata, size_t pairs,
                          kv_buffer *out) {
    if (!pb_put_string(out, 1, reason) || !pb_put_string(out, 2, domain)) return false;
    for (size_t i = 0; i < pairs; i++) {
        kv_buffer entry = {0}; /* map<string, string> entry: key = 1, value = 2 */
        bool ok = pb_put_string(&entry, 1, metadata[2 * i]) && pb_put_string(&entry, 2, metadata[2 * i + 1]) &&
                  pb_put_varint(out, (3u << 3) | WIRE_LEN) && pb_put_varint(out, entry.len) &&
                  buf_append(out, entry.data, entry.len);
        kv_buffer_free(&entry);
        if (!ok) return false;
    }
    return true;
}

void kv_error_info_clear(kv_error_info *info) {
    free(info->reason);
    free(info->domain);
    for (size_t i = 0; i < info->metadata_count; i++) {
        free(info->metadata_keys[i]);
        free(info->metadata_values[i]);
    }
    free(info->metadata_keys);
    free(info->metadata_values);
    memset(info, 0, sizeof *info);
}

static char *dup_bytes(const uint8_t *data, size_t len) {
    char *s = malloc(len + 1);
    if (!s) return NULL;
    if (len) memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* Reads the length-delimited payload of a field whose tag was just read. */
static bool pb_get_len(pb_reader *r, const uint8_t **data, size_t *len) {
    uint64_t v;
    if (pb_get_varint(r, &v) != 1 || v > (uint64_t)(r->end - r->p)) return false;
    *data = r->p;
    *len = (size_t)v;
    r->p += v;
    return true;
}

/* Sets metadata[key] = value (replacing an earlier value), keeping the keys sorted. Takes ownership. */
static bool error_info_put(kv_error_info *info, char *key, char *value) {
    size_t i = 0;
    while (i < info->metadata_count && strcmp(info->metadata_keys[i], key) < 0) i++;
    if (i < info->metadata_count && strcmp(info->metadata_keys[i], key) == 0) {
        free(info->metadata_keys[i]);
        free(info->metadata_values[i]);
        info->metadata_keys[i] = key;
        info->metadata_values[i] = value;
        return true;
    }
    char **keys = realloc(info->metadata_keys, (info->metadata_count + 1) * sizeof *keys);
    if (!keys) return false;
    info->metadata_keys = keys;
    char **values = realloc(info->metadata_values, (info->metadata_count + 1) * sizeof *values);
    if (!values) return false;
    info->metadata_values = values;
    memmove(keys + i + 1, keys + i, (info->metadata_count - i) * sizeof *keys);
    memmove(values + i + 1, values + i, (info->metadata_count - i) * sizeof *values);
    keys[i] = key;
    values[i] = value;
    info->metadata_count++;
    return true;
}

bool kv_error_info_decode(const uint8_t *data, size_t len, kv_error_info *out, char *why, size_t why_size) {
    memset(out, 0, sizeof *out);
    pb_reader r = {data, data + len};
    if (len == 0) r.p = r.end = NULL;
    for (;;) {
        uint64_t field;
        unsigned wire;
        int t = pb_get_tag(&r, &field, &wire, why, why_size);
        if (t == 0) break;
        if (t < 0) goto fail;
        if (wire != WIRE_LEN || field < 1 || field > 3) {
            if (!pb_skip(&r, field, wire, 0, why, why_size)) goto fail;
            continue;
        }
        const uint8_t *bytes;
        size_t n;
        if (!pb_get_len(&r, &bytes, &n)) {
            set_why(why, why_size, "truncated field %llu of ErrorInfo", (unsigned long long)field);
            goto fail;
        }
        if (field == 1 || field == 2) {
            char *s = dup_bytes(bytes, n);
            if (!s) goto oom;
            char **slot = field == 1 ? &out->reason : &out->domain;
            free(*slot);
            *slot = s;
            continue;
        }
        /* A metadata map entry. */
        pb_reader e = {bytes, bytes + n};
        if (n == 0) e.p = e.end = NULL;
        const uint8_t *k = NULL, *v = NULL;
        size_t klen = 0, vlen = 0;
        for (;;) {
            uint64_t f;
            unsigned w;
            int te = pb_get_tag(&e, &f, &w, why, why_size);
            if (te == 0) break;
            if (te < 0) goto fail;
            if (w == WIRE_LEN && (f == 1 || f == 2)) {
                const uint8_t *b;
                size_t bl;
                if (!pb_get_len(&e, &b, &bl)) {
                    set_why(why, why_size, "truncated metadata entry of ErrorInfo");
                    goto fail;
                }
                if (f == 1) k = b, klen = bl;
                else v = b, vlen = bl;
            } else if (!pb_skip(&e, f, w, 0, why, why_size)) {
                goto fail;
            }
        }
        char *ks = dup_bytes(k, klen), *vs = dup_bytes(v, vlen);
        if (!ks || !vs || !error_info_put(out, ks, vs)) {
            free(ks);
            free(vs);
            goto oom;
        }
    }
    if (!out->reason && !(out->reason = dup_bytes(NULL, 0))) goto oom;
    if (!out->domain && !(out->domain = dup_bytes(NULL, 0))) goto oom;
    return true;
oom:
    set_why(why, why_size, "out of memory");
fail:
    kv_error_info_clear(out);
    return false;
}
