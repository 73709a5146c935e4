// The system's zlib, for gzip. deflateInit2/inflateInit2 are macros Swift cannot import: wrapped.
#ifndef CCONNECTPLUGIN_ZLIB_H
#define CCONNECTPLUGIN_ZLIB_H
#include <zlib.h>
static inline int cp_deflate_init_gzip(z_streamp strm, int level) {
    return deflateInit2(strm, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
static inline int cp_inflate_init_gzip(z_streamp strm) {
    return inflateInit2(strm, 15 + 16);
}
#endif
