// The system's OpenSSL 3, for TLS. Macros and error-queue handling that Swift cannot import (or
// that are clearer in C) get small functions here. Nothing here aborts: every function returns a
// status and, where useful, writes a message into a caller buffer.
#ifndef CCONNECTPLUGIN_OPENSSL_H
#define CCONNECTPLUGIN_OPENSSL_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline unsigned long cp_openssl_version_num(void) { return OpenSSL_version_num(); }

/* ---- Contexts (SSL_CTX). ------------------------------------------------------------------ */

/* A new context: TLS 1.2 minimum, no renegotiation, never prompts for a key password, partial
   buffers released when idle. NULL when OpenSSL cannot allocate. */
SSL_CTX *cp_tls_ctx_new(int is_server);
void cp_tls_ctx_free(SSL_CTX *ctx);

/* Loaders. Each reads from `path` when it is non-NULL, else from `data`/`len` (PEM text). They
   return 1 on success; 0 on failure with a plain-words reason (no file name) in `err`. */
int cp_tls_ctx_use_chain(SSL_CTX *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen);
int cp_tls_ctx_use_key(SSL_CTX *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen);
/* 1 when the private key matches the leaf certificate. */
int cp_tls_ctx_check_key(SSL_CTX *ctx, char *err, size_t errlen);
/* Adds trusted CA certificates; with `client_ca_list` (servers asking for client certificates)
   their subjects are also advertised as acceptable client-certificate issuers. */
int cp_tls_ctx_add_cas(SSL_CTX *ctx, const char *path, const void *data, size_t len, int client_ca_list,
                       char *err, size_t errlen);
int cp_tls_ctx_use_system_roots(SSL_CTX *ctx, char *err, size_t errlen);

#define CP_TLS_VERIFY_NONE 0
#define CP_TLS_VERIFY_PEER 1
#define CP_TLS_VERIFY_REQUIRE_PEER_CERT 2
void cp_tls_ctx_set_verify(SSL_CTX *ctx, int mode);

/* ALPN: `wire` is the protocol list in wire format (length-prefixed names). A client offers it; a
   server picks the first of its own list that the client offered, and acknowledges no protocol when
   there is no overlap (the handshake continues). Returns 1 on success. */
int cp_tls_ctx_set_alpn(SSL_CTX *ctx, int is_server, const unsigned char *wire, unsigned int len);

/* ---- Connections: one SSL object with a memory BIO on each side. --------------------------- */

typedef struct cp_tls cp_tls;

cp_tls *cp_tls_new(SSL_CTX *ctx, int is_server);
void cp_tls_free(cp_tls *t);

/* Client: the name to send as SNI (not for IP literals) and, with `verify`, to check the server
   certificate against (DNS name, or IP address for an IP literal). Returns 1 on success. */
int cp_tls_set_peer_name(cp_tls *t, const char *name, int is_ip, int send_sni, int verify);

/* This connection's ALPN list (wire format), instead of the context's: a client offers it, a server
   picks from it by its order. `len` 0: a client offers none, a server agrees to none. 1 on success. */
int cp_tls_set_alpn(cp_tls *t, const unsigned char *wire, unsigned int len);

/* Ciphertext from the network. Returns 1 on success, 0 if memory ran out. */
int cp_tls_feed(cp_tls *t, const void *data, size_t len);
/* Ciphertext received but not yet consumed by the TLS state machine. */
size_t cp_tls_input_pending(cp_tls *t);
/* Ciphertext waiting to be sent. */
size_t cp_tls_output_pending(cp_tls *t);
/* Moves up to `cap` bytes of pending ciphertext into `buf`; returns the count. */
size_t cp_tls_take_output(cp_tls *t, void *buf, size_t cap);

#define CP_TLS_OK 1
#define CP_TLS_WANT_IO 0
#define CP_TLS_CLOSED (-1)
#define CP_TLS_ERROR (-2)

/* Advances the handshake: CP_TLS_OK when complete, CP_TLS_WANT_IO when more input is needed (send
   the pending output first), CP_TLS_ERROR on failure (see cp_tls_error_*). */
int cp_tls_handshake(cp_tls *t);
int cp_tls_handshake_done(cp_tls *t);
/* Decrypts into `buf`: > 0 bytes read, CP_TLS_WANT_IO when more input is needed, CP_TLS_CLOSED when
   the peer sent close_notify, CP_TLS_ERROR on failure. */
int cp_tls_read(cp_tls *t, void *buf, int cap);
/* Encrypts all of `data` into the pending output: returns `len`, or CP_TLS_ERROR. */
int cp_tls_write(cp_tls *t, const void *data, int len);
/* Queues close_notify. */
void cp_tls_shutdown(cp_tls *t);

/* After CP_TLS_ERROR: SSL_get_error's code, the first OpenSSL error's library and reason (0 when the
   queue was empty), and OpenSSL's reason strings, joined with "; ", in `buf`. */
int cp_tls_error_ssl_code(cp_tls *t);
int cp_tls_error_lib(cp_tls *t);
int cp_tls_error_reason(cp_tls *t);
void cp_tls_error_text(cp_tls *t, char *buf, size_t buflen);

/* Negotiated ALPN protocol (not NUL-terminated) or NULL. */
const unsigned char *cp_tls_alpn(cp_tls *t, unsigned int *len);
/* X509_V_OK (0) or the verification error of the peer certificate. */
long cp_tls_verify_result(cp_tls *t);
/* "TLSv1.3" etc. */
const char *cp_tls_version(cp_tls *t);
/* SNI the client sent (server side) or NULL. */
const char *cp_tls_sni(cp_tls *t);
/* 1 when the peer presented a certificate. */
int cp_tls_has_peer_cert(cp_tls *t);

/* The peer's leaf certificate as a packed list of entries, each [type byte][2-byte big-endian
   length][bytes]: 'S' subject (RFC 2253), 'C' common name, 'D' SAN DNS name, 'U' SAN URI, 'I' SAN IP
   address (text), 'E' SAN e-mail. Falls back to the first certificate of the peer's chain when the
   verified peer certificate is not set (a client whose verification failed). Returns a malloc'd
   buffer (free with cp_tls_free_buffer) and its length in *len, or NULL when there is no certificate. */
unsigned char *cp_tls_peer_cert_info(cp_tls *t, size_t *len);
void cp_tls_free_buffer(void *p);

/* X509_verify_cert_error_string and SSL_alert_desc_string_long, for Swift. */
const char *cp_tls_verify_error_string(long code);
const char *cp_tls_alert_string(int alert);

/* ---- AutoMTLS certificates. ------------------------------------------------------------------ */

/* A certificate as go-plugin's mtls.go makes one: ECDSA P-521 key, self-signed (SHA-512), CA,
   CN=localhost, O=HashiCorp, DNS localhost, EKU client and server auth, key usage digital signature,
   key encipherment, key agreement and cert sign, random 128-bit serial, valid from 30 s ago for
   262980 hours. Outputs (malloc'd, free each with cp_tls_free_buffer; the PEMs NUL-terminated, the
   length without the NUL): the certificate as PEM, the key as PEM "EC PRIVATE KEY", the certificate
   as DER. Returns 1; 0 with a reason in `err` (and every output NULL). */
int cp_mtls_generate(unsigned char **cert_pem, size_t *cert_pem_len, unsigned char **key_pem, size_t *key_pem_len,
                     unsigned char **cert_der, size_t *cert_der_len, char *err, size_t errlen);
/* OpenSSL's text form of a DER certificate (X509_print_ex) plus a line "SelfSignatureValid: yes|no".
   Returns 1 with a malloc'd NUL-terminated text (cp_tls_free_buffer); 0 with a reason in `err`. */
int cp_x509_text(const void *der, size_t len, unsigned char **out, size_t *out_len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
