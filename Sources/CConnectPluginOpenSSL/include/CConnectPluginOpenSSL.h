// The system's OpenSSL 3, for TLS (used from the protocol-family issue on). Macros Swift cannot
// import get function wrappers here.
#ifndef CCONNECTPLUGIN_OPENSSL_H
#define CCONNECTPLUGIN_OPENSSL_H
#include <openssl/ssl.h>
#include <openssl/err.h>
static inline unsigned long cp_openssl_version_num(void) { return OpenSSL_version_num(); }
#endif
