// TLS over memory BIOs for the Swift transport: context loading with plain-words errors, one SSL
// object per connection with a memory BIO on each side, ALPN selection, peer certificate details.
// Nothing here aborts or prompts; every failure is a return value.
#define _GNU_SOURCE 1 /* memmem */
#include "CConnectPluginOpenSSL.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Largest PEM file we read (system CA bundles are a few hundred KiB). */
#define CP_TLS_MAX_FILE (16u << 20)

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err == NULL || errlen == 0) return;
    snprintf(err, errlen, "%s", msg ? msg : "unknown error");
}

/* OpenSSL's reason strings of the whole error queue, joined with "; " (and the queue cleared). */
static void drain_errors(char *buf, size_t buflen) {
    size_t used = 0;
    if (buf && buflen) buf[0] = 0;
    char prev[256] = {0};
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        if (buf == NULL || buflen == 0 || used + 1 >= buflen) continue;
        char tmp[256];
        const char *r = ERR_reason_error_string(e);
        if (r == NULL) {
            ERR_error_string_n(e, tmp, sizeof tmp);
            r = tmp;
        }
        if (strcmp(prev, r) == 0) continue;
        snprintf(prev, sizeof prev, "%s", r);
        int n = snprintf(buf + used, buflen - used, "%s%s", used ? "; " : "", r);
        if (n < 0) break;
        used = (size_t)n >= buflen - used ? buflen - 1 : used + (size_t)n;
    }
}

/* Describes the error queue for a loading step (and clears it), mapping the common cases to plain
   words; `fallback` when the queue says nothing more specific. */
static void load_error(char *err, size_t errlen, const char *fallback) {
    unsigned long codes[16];
    int n = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        if (n < 16) codes[n++] = e;
    }
    if (n == 0) {
        set_err(err, errlen, fallback);
        return;
    }
    for (int i = 0; i < n; i++) {
        int lib = ERR_GET_LIB(codes[i]), reason = ERR_GET_REASON(codes[i]);
        if ((lib == ERR_LIB_X509 && (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH)) ||
            (lib == ERR_LIB_SSL && reason == SSL_R_PRIVATE_KEY_MISMATCH)) {
            set_err(err, errlen, "private key does not match certificate");
            return;
        }
        if (lib == ERR_LIB_PEM && (reason == PEM_R_BAD_PASSWORD_READ || reason == PEM_R_PROBLEMS_GETTING_PASSWORD ||
                                   reason == PEM_R_BAD_DECRYPT)) {
            set_err(err, errlen, "the private key is encrypted (password-protected keys are not supported)");
            return;
        }
    }
    int lib0 = ERR_GET_LIB(codes[0]), reason0 = ERR_GET_REASON(codes[0]);
    if (n == 1 && lib0 == ERR_LIB_PEM && reason0 == PEM_R_NO_START_LINE) {
        set_err(err, errlen, fallback);
        return;
    }
    size_t used = 0;
    if (err && errlen) err[0] = 0;
    for (int i = 0; i < n && err && errlen && used + 1 < errlen; i++) {
        char tmp[256];
        const char *r = ERR_reason_error_string(codes[i]);
        if (r == NULL) {
            ERR_error_string_n(codes[i], tmp, sizeof tmp);
            r = tmp;
        }
        if (used > 0 && strstr(err, r) != NULL) continue;
        int w = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", r);
        if (w < 0) break;
        used = (size_t)w >= errlen - used ? errlen - 1 : used + (size_t)w;
    }
    if (err && errlen && err[0] == 0) set_err(err, errlen, fallback);
}

/* True when `data` contains `needle` (PEM markers; data need not be NUL-terminated). */
static int contains(const void *data, size_t len, const char *needle) {
    return data != NULL && memmem(data, len, needle, strlen(needle)) != NULL;
}

/* Never prompt on the terminal for a PEM password. */
static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

/* Reads a whole file into a malloc'd buffer. Returns NULL with a reason in err. */
static unsigned char *read_file(const char *path, size_t *out_len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, errlen, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        set_err(err, errlen, strerror(errno));
        fclose(f);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "is a directory");
        fclose(f);
        return NULL;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > CP_TLS_MAX_FILE) {
        set_err(err, errlen, "file too large");
        fclose(f);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        set_err(err, errlen, "out of memory");
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    if (ferror(f)) {
        set_err(err, errlen, strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    *out_len = n;
    return buf;
}

/* Opens a memory BIO over `path`'s contents or over data/len. *owned is the buffer to free. */
static BIO *open_source(const char *path, const void **data_io, size_t *len_io, unsigned char **owned,
                        size_t *owned_len, char *err, size_t errlen) {
    const void *data = *data_io;
    size_t len = *len_io;
    *owned = NULL;
    *owned_len = 0;
    if (path != NULL) {
        size_t n = 0;
        unsigned char *b = read_file(path, &n, err, errlen);
        if (b == NULL) return NULL;
        *owned = b;
        *owned_len = n;
        data = b;
        len = n;
    }
    if (len > INT_MAX) {
        set_err(err, errlen, "PEM data too large");
        return NULL;
    }
    if (len == 0) {
        set_err(err, errlen, path ? "the file is empty" : "the PEM data is empty");
        return NULL;
    }
    *data_io = data;
    *len_io = len;
    BIO *bio = BIO_new_mem_buf(data ? data : "", (int)len);
    if (bio == NULL) set_err(err, errlen, "out of memory");
    return bio;
}

static void close_source(BIO *bio, unsigned char *owned, size_t owned_len) {
    if (bio) BIO_free(bio);
    if (owned) {
        OPENSSL_cleanse(owned, owned_len);
        free(owned);
    }
}

/* True when the error queue only says "no more PEM blocks" (the normal end of a PEM stream). */
static int only_end_of_pem(void) {
    unsigned long e = ERR_peek_last_error();
    if (e == 0) return 1;
    return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/* ---- ALPN (server side): the server's preference list hangs off the SSL_CTX as ex_data. ---- */

typedef struct {
    unsigned int len;
    unsigned char wire[];
} cp_alpn_list;

/* The context's list (SSL_CTX ex_data) and an optional per-connection override (SSL ex_data). */
static int alpn_index = -1;
static int alpn_ssl_index = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    free(ptr);
}

static void alpn_index_init(void) {
    alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
    alpn_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

static cp_alpn_list *alpn_list_new(const unsigned char *wire, unsigned int len) {
    cp_alpn_list *list = malloc(sizeof *list + len);
    if (list == NULL) return NULL;
    list->len = len;
    if (len) memcpy(list->wire, wire, len);
    return list;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)arg;
    cp_alpn_list *list = NULL;
    if (alpn_ssl_index >= 0) list = SSL_get_ex_data(ssl, alpn_ssl_index);
    if (list == NULL && alpn_index >= 0) list = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
    if (list == NULL || list->len == 0) return SSL_TLSEXT_ERR_NOACK;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    // Server preference: the first of our protocols that the client offered.
    if (SSL_select_next_proto(&sel, &sel_len, list->wire, list->len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- Contexts. ---------------------------------------------------------------------------- */

SSL_CTX *cp_tls_ctx_new(int is_server) {
    SSL_CTX *ctx = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (is_server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (is_server) {
        static const unsigned char sid[] = "connectplugin";
        SSL_CTX_set_session_id_context(ctx, sid, (unsigned int)(sizeof sid - 1));
        /* Always: a connection may bring its own ALPN list even when the context has none. */
        pthread_once(&alpn_once, alpn_index_init);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ERR_clear_error();
    return ctx;
}

void cp_tls_ctx_free(SSL_CTX *ctx) {
    if (ctx) SSL_CTX_free(ctx);
}

int cp_tls_ctx_use_chain(SSL_CTX *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen) {
    if (ctx == NULL) return 0;
    ERR_clear_error();
    unsigned char *owned;
    size_t owned_len;
    BIO *bio = open_source(path, &data, &len, &owned, &owned_len, err, errlen);
    if (bio == NULL) {
        close_source(NULL, owned, owned_len);
        return 0;
    }
    int ok = 0;
    if (!contains(data, len, "CERTIFICATE-----")) {
        set_err(err, errlen, "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")");
        goto done;
    }
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, no_password, NULL);
    if (leaf == NULL) {
        load_error(err, errlen, "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")");
        goto done;
    }
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        X509_free(leaf);
        load_error(err, errlen, "the certificate was rejected");
        goto done;
    }
    X509_free(leaf);
    SSL_CTX_clear_chain_certs(ctx);
    for (;;) {
        X509 *ca = PEM_read_bio_X509(bio, NULL, no_password, NULL);
        if (ca == NULL) break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            load_error(err, errlen, "cannot add an intermediate certificate");
            goto done;
        }
    }
    if (!only_end_of_pem()) {
        load_error(err, errlen, "malformed certificate in the chain");
        goto done;
    }
    ERR_clear_error();
    ok = 1;
done:
    close_source(bio, owned, owned_len);
    return ok;
}

int cp_tls_ctx_use_key(SSL_CTX *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen) {
    if (ctx == NULL) return 0;
    ERR_clear_error();
    unsigned char *owned;
    size_t owned_len;
    BIO *bio = open_source(path, &data, &len, &owned, &owned_len, err, errlen);
    if (bio == NULL) {
        close_source(NULL, owned, owned_len);
        return 0;
    }
    int ok = 0;
    if (!contains(data, len, "PRIVATE KEY-----")) {
        set_err(err, errlen, "no private key found (expected PEM \"-----BEGIN PRIVATE KEY-----\")");
        goto done;
    }
    if (contains(data, len, "ENCRYPTED PRIVATE KEY-----") || contains(data, len, "Proc-Type: 4,ENCRYPTED")) {
        set_err(err, errlen, "the private key is encrypted (password-protected keys are not supported)");
        goto done;
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    if (key == NULL) {
        load_error(err, errlen, "no private key found (expected PEM \"-----BEGIN PRIVATE KEY-----\")");
        goto done;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        load_error(err, errlen, "the private key was rejected");
        EVP_PKEY_free(key);
        goto done;
    }
    EVP_PKEY_free(key);
    ERR_clear_error();
    ok = 1;
done:
    close_source(bio, owned, owned_len);
    return ok;
}

int cp_tls_ctx_check_key(SSL_CTX *ctx, char *err, size_t errlen) {
    if (ctx == NULL) return 0;
    ERR_clear_error();
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        set_err(err, errlen, "private key does not match certificate");
        return 0;
    }
    return 1;
}

int cp_tls_ctx_add_cas(SSL_CTX *ctx, const char *path, const void *data, size_t len, int client_ca_list,
                       char *err, size_t errlen) {
    if (ctx == NULL) return 0;
    ERR_clear_error();
    unsigned char *owned;
    size_t owned_len;
    BIO *bio = open_source(path, &data, &len, &owned, &owned_len, err, errlen);
    if (bio == NULL) {
        close_source(NULL, owned, owned_len);
        return 0;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0, ok = 0;
    if (!contains(data, len, "CERTIFICATE-----")) {
        set_err(err, errlen, "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")");
        goto done;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509_AUX(bio, NULL, no_password, NULL);
        if (x == NULL) break;
        if (store == NULL || X509_STORE_add_cert(store, x) != 1) {
            X509_free(x);
            load_error(err, errlen, "cannot add a CA certificate");
            goto done;
        }
        if (client_ca_list && SSL_CTX_add_client_CA(ctx, x) != 1) {
            X509_free(x);
            load_error(err, errlen, "cannot add a client CA name");
            goto done;
        }
        X509_free(x);
        count++;
    }
    if (!only_end_of_pem()) {
        load_error(err, errlen, "malformed CA certificate");
        goto done;
    }
    ERR_clear_error();
    if (count == 0) {
        set_err(err, errlen, "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\")");
        goto done;
    }
    ok = 1;
done:
    close_source(bio, owned, owned_len);
    return ok;
}

int cp_tls_ctx_use_system_roots(SSL_CTX *ctx, char *err, size_t errlen) {
    if (ctx == NULL) return 0;
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        load_error(err, errlen, "cannot load the system trust store");
        return 0;
    }
    ERR_clear_error();
    return 1;
}

void cp_tls_ctx_set_verify(SSL_CTX *ctx, int mode) {
    if (ctx == NULL) return;
    int m = SSL_VERIFY_NONE;
    if (mode == CP_TLS_VERIFY_PEER) m = SSL_VERIFY_PEER;
    if (mode == CP_TLS_VERIFY_REQUIRE_PEER_CERT) m = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, m, NULL);
}

int cp_tls_ctx_set_alpn(SSL_CTX *ctx, int is_server, const unsigned char *wire, unsigned int len) {
    if (ctx == NULL || wire == NULL || len == 0) return 0;
    if (!is_server) {
        ERR_clear_error();
        int rc = SSL_CTX_set_alpn_protos(ctx, wire, len);  // 0 on success
        ERR_clear_error();
        return rc == 0;
    }
    pthread_once(&alpn_once, alpn_index_init);
    if (alpn_index < 0) return 0;
    cp_alpn_list *list = alpn_list_new(wire, len);
    if (list == NULL) return 0;
    cp_alpn_list *old = SSL_CTX_get_ex_data(ctx, alpn_index);
    if (SSL_CTX_set_ex_data(ctx, alpn_index, list) != 1) {
        free(list);
        ERR_clear_error();
        return 0;
    }
    free(old);
    return 1;
}

/* ---- Connections. ------------------------------------------------------------------------- */

struct cp_tls {
    SSL *ssl;
    BIO *rbio; /* network → TLS (we write ciphertext in) */
    BIO *wbio; /* TLS → network (we read ciphertext out) */
    int is_server;
    int err_code;
    int err_lib;
    int err_reason;
    char err_text[512];
};

cp_tls *cp_tls_new(SSL_CTX *ctx, int is_server) {
    if (ctx == NULL) return NULL;
    cp_tls *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        if (t->ssl) SSL_free(t->ssl);
        if (t->rbio) BIO_free(t->rbio);
        if (t->wbio) BIO_free(t->wbio);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty = "retry", not EOF: the socket reports EOF */
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    t->is_server = is_server;
    if (is_server) SSL_set_accept_state(t->ssl);
    else SSL_set_connect_state(t->ssl);
    return t;
}

void cp_tls_free(cp_tls *t) {
    if (t == NULL) return;
    SSL_free(t->ssl);
    free(t);
}

int cp_tls_set_peer_name(cp_tls *t, const char *name, int is_ip, int send_sni, int verify) {
    if (t == NULL || name == NULL || name[0] == 0) return 0;
    ERR_clear_error();
    if (send_sni && !is_ip) {
        if (SSL_set_tlsext_host_name(t->ssl, name) != 1) {
            ERR_clear_error();
            return 0;
        }
    }
    if (verify) {
        if (is_ip) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) != 1) {
                ERR_clear_error();
                return 0;
            }
        } else {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(t->ssl, name) != 1) {
                ERR_clear_error();
                return 0;
            }
        }
    }
    return 1;
}

int cp_tls_set_alpn(cp_tls *t, const unsigned char *wire, unsigned int len) {
    if (t == NULL || (len > 0 && wire == NULL)) return 0;
    ERR_clear_error();
    if (!t->is_server) {
        int rc = SSL_set_alpn_protos(t->ssl, len ? wire : NULL, len); /* 0 on success */
        ERR_clear_error();
        return rc == 0;
    }
    pthread_once(&alpn_once, alpn_index_init);
    if (alpn_ssl_index < 0) return 0;
    cp_alpn_list *list = alpn_list_new(wire, len);
    if (list == NULL) return 0;
    cp_alpn_list *old = SSL_get_ex_data(t->ssl, alpn_ssl_index);
    if (SSL_set_ex_data(t->ssl, alpn_ssl_index, list) != 1) {
        free(list);
        ERR_clear_error();
        return 0;
    }
    free(old);
    return 1;
}

int cp_tls_feed(cp_tls *t, const void *data, size_t len) {
    if (t == NULL) return 0;
    const unsigned char *p = data;
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(t->rbio, p, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return 0;
        }
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

size_t cp_tls_input_pending(cp_tls *t) { return t ? BIO_ctrl_pending(t->rbio) : 0; }
size_t cp_tls_output_pending(cp_tls *t) { return t ? BIO_ctrl_pending(t->wbio) : 0; }

size_t cp_tls_take_output(cp_tls *t, void *buf, size_t cap) {
    if (t == NULL || buf == NULL || cap == 0) return 0;
    int chunk = cap > (size_t)INT_MAX ? INT_MAX : (int)cap;
    int n = BIO_read(t->wbio, buf, chunk);
    if (n <= 0) {
        ERR_clear_error();
        return 0;
    }
    return (size_t)n;
}

static void record_error(cp_tls *t, int code) {
    t->err_code = code;
    unsigned long first = ERR_peek_error();
    t->err_lib = first ? ERR_GET_LIB(first) : 0;
    t->err_reason = first ? ERR_GET_REASON(first) : 0;
    drain_errors(t->err_text, sizeof t->err_text);
}

int cp_tls_handshake(cp_tls *t) {
    if (t == NULL) return CP_TLS_ERROR;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) return CP_TLS_OK;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return CP_TLS_WANT_IO;
    }
    record_error(t, e);
    return CP_TLS_ERROR;
}

int cp_tls_handshake_done(cp_tls *t) { return t ? SSL_is_init_finished(t->ssl) : 0; }

int cp_tls_read(cp_tls *t, void *buf, int cap) {
    if (t == NULL || buf == NULL || cap <= 0) return CP_TLS_ERROR;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, cap);
    if (r > 0) return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return CP_TLS_WANT_IO;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return CP_TLS_CLOSED;
    }
    record_error(t, e);
    return CP_TLS_ERROR;
}

int cp_tls_write(cp_tls *t, const void *data, int len) {
    if (t == NULL || len < 0) return CP_TLS_ERROR;
    if (len == 0) return 0;
    const unsigned char *p = data;
    int done = 0;
    while (done < len) {
        ERR_clear_error();
        int r = SSL_write(t->ssl, p + done, len - done);
        if (r > 0) {
            done += r;
            continue;
        }
        record_error(t, SSL_get_error(t->ssl, r));
        return CP_TLS_ERROR;
    }
    return done;
}

void cp_tls_shutdown(cp_tls *t) {
    if (t == NULL) return;
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl)) (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int cp_tls_error_ssl_code(cp_tls *t) { return t ? t->err_code : 0; }
int cp_tls_error_lib(cp_tls *t) { return t ? t->err_lib : 0; }
int cp_tls_error_reason(cp_tls *t) { return t ? t->err_reason : 0; }

void cp_tls_error_text(cp_tls *t, char *buf, size_t buflen) {
    if (buf == NULL || buflen == 0) return;
    snprintf(buf, buflen, "%s", t ? t->err_text : "");
}

const unsigned char *cp_tls_alpn(cp_tls *t, unsigned int *len) {
    if (t == NULL || len == NULL) return NULL;
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return n ? p : NULL;
}

long cp_tls_verify_result(cp_tls *t) { return t ? SSL_get_verify_result(t->ssl) : X509_V_ERR_UNSPECIFIED; }
const char *cp_tls_version(cp_tls *t) { return t ? SSL_get_version(t->ssl) : ""; }
const char *cp_tls_sni(cp_tls *t) { return t ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL; }

int cp_tls_has_peer_cert(cp_tls *t) {
    if (t == NULL) return 0;
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    return x != NULL;
}

/* ---- Peer certificate details. ------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int failed;
} cp_buf;

static void buf_entry(cp_buf *b, char type, const unsigned char *data, size_t n, int sanitize) {
    if (b->failed || n > 0xffff) return;
    size_t need = b->len + 3 + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < need) cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    b->p[b->len] = (unsigned char)type;
    b->p[b->len + 1] = (unsigned char)(n >> 8);
    b->p[b->len + 2] = (unsigned char)(n & 0xff);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = data[i];
        if (sanitize && (c < 0x20 || c == 0x7f)) c = '?';
        b->p[b->len + 3 + i] = c;
    }
    b->len = need;
}

static void add_asn1_string(cp_buf *b, char type, const ASN1_STRING *s) {
    if (s == NULL) return;
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int n = ASN1_STRING_length(s);
    if (d == NULL || n < 0) return;
    buf_entry(b, type, d, (size_t)n, 1);
}

static void add_cert_info(cp_buf *b, X509 *x) {
    X509_NAME *subject = X509_get_subject_name(x);
    if (subject != NULL) {
        BIO *mem = BIO_new(BIO_s_mem());
        if (mem != NULL) {
            if (X509_NAME_print_ex(mem, subject, 0, XN_FLAG_RFC2253) >= 0) {
                char *p = NULL;
                long n = BIO_get_mem_data(mem, &p);
                if (p != NULL && n >= 0) buf_entry(b, 'S', (const unsigned char *)p, (size_t)n, 1);
            }
            BIO_free(mem);
        }
        int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (idx >= 0) {
            X509_NAME_ENTRY *entry = X509_NAME_get_entry(subject, idx);
            unsigned char *utf8 = NULL;
            int n = entry ? ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry)) : -1;
            if (n >= 0 && utf8 != NULL) buf_entry(b, 'C', utf8, (size_t)n, 1);
            OPENSSL_free(utf8);
        }
    }
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (names != NULL) {
        int count = sk_GENERAL_NAME_num(names);
        for (int i = 0; i < count; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
            if (g == NULL) continue;
            switch (g->type) {
            case GEN_DNS: add_asn1_string(b, 'D', g->d.dNSName); break;
            case GEN_URI: add_asn1_string(b, 'U', g->d.uniformResourceIdentifier); break;
            case GEN_EMAIL: add_asn1_string(b, 'E', g->d.rfc822Name); break;
            case GEN_IPADD: {
                const ASN1_OCTET_STRING *ip = g->d.iPAddress;
                const unsigned char *d = ip ? ASN1_STRING_get0_data(ip) : NULL;
                int n = ip ? ASN1_STRING_length(ip) : 0;
                char text[INET6_ADDRSTRLEN];
                if (d != NULL && (n == 4 || n == 16) &&
                    inet_ntop(n == 4 ? AF_INET : AF_INET6, d, text, sizeof text) != NULL)
                    buf_entry(b, 'I', (const unsigned char *)text, strlen(text), 0);
                break;
            }
            default: break;
            }
        }
        GENERAL_NAMES_free(names);
    }
}

unsigned char *cp_tls_peer_cert_info(cp_tls *t, size_t *len) {
    if (t == NULL || len == NULL) return NULL;
    *len = 0;
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    if (x == NULL && !t->is_server) {
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(t->ssl);
        if (chain != NULL && sk_X509_num(chain) > 0) {
            x = sk_X509_value(chain, 0);
            if (x != NULL && X509_up_ref(x) != 1) x = NULL;
        }
    }
    if (x == NULL) {
        ERR_clear_error();
        return NULL;
    }
    cp_buf b = {0};
    add_cert_info(&b, x);
    X509_free(x);
    ERR_clear_error();
    if (b.failed || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

void cp_tls_free_buffer(void *p) { free(p); }

const char *cp_tls_verify_error_string(long code) { return X509_verify_cert_error_string(code); }
const char *cp_tls_alert_string(int alert) { return SSL_alert_desc_string_long(alert); }

/* ---- AutoMTLS certificates (go-plugin's mtls.go). ------------------------------------------ */

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* A memory BIO's contents as a malloc'd buffer. */
static int bio_take(BIO *b, unsigned char **out, size_t *out_len) {
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n < 0 || (n > 0 && p == NULL)) return 0;
    unsigned char *m = malloc((size_t)n + 1);
    if (m == NULL) return 0;
    if (n > 0) memcpy(m, p, (size_t)n);
    m[n] = 0;
    *out = m;
    *out_len = (size_t)n;
    return 1;
}

static int add_ext(X509 *x, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

int cp_mtls_generate(unsigned char **cert_pem, size_t *cert_pem_len, unsigned char **key_pem, size_t *key_pem_len,
                     unsigned char **cert_der, size_t *cert_der_len, char *err, size_t errlen) {
    if (cert_pem == NULL || cert_pem_len == NULL || key_pem == NULL || key_pem_len == NULL || cert_der == NULL ||
        cert_der_len == NULL) {
        set_err(err, errlen, "missing output argument");
        return 0;
    }
    *cert_pem = *key_pem = *cert_der = NULL;
    *cert_pem_len = *key_pem_len = *cert_der_len = 0;
    ERR_clear_error();
    int ok = 0;
    const char *step = "cannot generate the P-521 key";
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIGNUM *bn = NULL;
    BIO *cb = NULL, *kb = NULL;
    unsigned char *der = NULL;

    pkey = EVP_EC_gen("P-521");
    if (pkey == NULL) goto done;
    step = "cannot build the certificate";
    x = X509_new();
    if (x == NULL || X509_set_version(x, 2) != 1) goto done;
    /* Random 128-bit serial, as rand.Int(rand.Reader, 1<<128). */
    bn = BN_new();
    if (bn == NULL || BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) goto done;
    if (BN_is_zero(bn) && BN_set_word(bn, 1) != 1) goto done;
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) goto done;
    /* NotBefore now-30s; NotAfter now+262980h (10957 days and 12 hours). */
    if (X509_gmtime_adj(X509_getm_notBefore(x), -30) == NULL) goto done;
    if (X509_time_adj_ex(X509_getm_notAfter(x), 10957, 12 * 3600, NULL) == NULL) goto done;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"HashiCorp", -1, -1, 0) != 1) goto done;
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) != 1) goto done;
    if (X509_set_issuer_name(x, name) != 1) goto done;
    if (X509_set_pubkey(x, pkey) != 1) goto done;
    if (!add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment,keyAgreement,keyCertSign")) goto done;
    if (!add_ext(x, NID_ext_key_usage, "clientAuth,serverAuth")) goto done;
    if (!add_ext(x, NID_basic_constraints, "critical,CA:TRUE")) goto done;
    if (!add_ext(x, NID_subject_key_identifier, "hash")) goto done;
    if (!add_ext(x, NID_subject_alt_name, "DNS:localhost")) goto done;
    step = "cannot sign the certificate";
    if (X509_sign(x, pkey, EVP_sha512()) <= 0) goto done;

    step = "cannot encode the certificate";
    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_mem());
    if (cb == NULL || kb == NULL || PEM_write_bio_X509(cb, x) != 1) goto done;
    /* "EC PRIVATE KEY" (SEC 1), as x509.MarshalECPrivateKey. */
    if (PEM_write_bio_PrivateKey_traditional(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1) goto done;
    int dlen = i2d_X509(x, &der);
    if (dlen <= 0 || der == NULL) goto done;
    if (!bio_take(cb, cert_pem, cert_pem_len) || !bio_take(kb, key_pem, key_pem_len)) goto done;
    *cert_der = malloc((size_t)dlen);
    if (*cert_der == NULL) goto done;
    memcpy(*cert_der, der, (size_t)dlen);
    *cert_der_len = (size_t)dlen;
    ok = 1;
done:
    if (!ok) {
        char q[256];
        drain_errors(q, sizeof q);
        if (err && errlen) snprintf(err, errlen, "%s%s%s", step, q[0] ? ": " : "", q);
        free(*cert_pem);
        free(*key_pem);
        free(*cert_der);
        *cert_pem = *key_pem = *cert_der = NULL;
        *cert_pem_len = *key_pem_len = *cert_der_len = 0;
    }
    OPENSSL_free(der);
    BIO_free(cb);
    BIO_free(kb);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ok;
}

int cp_x509_text(const void *der, size_t len, unsigned char **out, size_t *out_len, char *err, size_t errlen) {
    if (out == NULL || out_len == NULL || der == NULL || len == 0 || len > LONG_MAX) {
        set_err(err, errlen, "no certificate");
        return 0;
    }
    *out = NULL;
    *out_len = 0;
    ERR_clear_error();
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) {
        char q[256];
        drain_errors(q, sizeof q);
        if (err && errlen) snprintf(err, errlen, "not a DER certificate: %s", q);
        return 0;
    }
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b != NULL && X509_print_ex(b, x, XN_FLAG_ONELINE, 0) == 1;
    /* Whether the certificate's signature verifies with its own key (self-signed). */
    EVP_PKEY *k = X509_get0_pubkey(x);
    if (ok) BIO_printf(b, "SelfSignatureValid: %s\n", k != NULL && X509_verify(x, k) == 1 ? "yes" : "no");
    if (ok) ok = bio_take(b, out, out_len);
    if (!ok) set_err(err, errlen, "cannot print the certificate");
    BIO_free(b);
    X509_free(x);
    ERR_clear_error();
    return ok;
}
