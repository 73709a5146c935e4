/* C trampolines between libconnectplugin and the Go package. Declarations only. */
#ifndef CONNECTPLUGIN_GO_SHIMS_H
#define CONNECTPLUGIN_GO_SHIMS_H

#include <stdint.h>
#include "connectplugin.h"

/* connectplugin_unary_handler: forwards to the exported Go function goUnaryHandler. */
void go_unary_trampoline(connectplugin_call *call, void *user_data);
/* connectplugin_stream_handler: forwards to the exported Go function goStreamHandler. */
void go_stream_trampoline(connectplugin_stream *stream, void *user_data);
/* connectplugin_done_func: forwards to the exported Go function goCallDone. */
void go_done_trampoline(void *user_data);
/* connectplugin_free_func: forwards to the exported Go function goFreeHandle. */
void go_free_trampoline(void *user_data);
/* connectplugin_interceptor_start_func / _end_func / _message_func: forward to goInterceptorStart,
   goInterceptorEnd and goInterceptorMessage. */
int32_t go_interceptor_start_trampoline(connectplugin_interceptor_call *call, void *user_data);
void go_interceptor_end_trampoline(connectplugin_interceptor_call *call, connectplugin_code code, const char *message,
                                   void *user_data);
void go_interceptor_message_trampoline(connectplugin_interceptor_call *call, int32_t direction, const uint8_t *data,
                                       size_t len, void *user_data);
/* connectplugin_log_func: forwards to the exported Go function goLogRecord. */
void go_log_trampoline(const char *plugin, int32_t level, const char *message, const char *timestamp,
                       const char *const *keys, const char *const *values, size_t field_count, void *user_data);
/* connectplugin_plugin_exit_func: forwards to the exported Go function goPluginExit. */
void go_plugin_exit_trampoline(int32_t kind, int32_t value, void *user_data);
/* Turns a runtime/cgo.Handle (an integer) into the user_data pointer; never a Go pointer. */
void *go_handle_to_user_data(uintptr_t handle);
/* A static byte used as the data pointer of empty buffers. */
const uint8_t *go_empty_bytes(void);

#endif
