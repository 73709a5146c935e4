// The system's libnghttp2 (Debian libnghttp2-dev), imported as a Swift module.
#ifndef CCONNECTPLUGIN_NGHTTP2_H
#define CCONNECTPLUGIN_NGHTTP2_H
#include <nghttp2/nghttp2.h>
#endif
