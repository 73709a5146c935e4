#include "shims.h"
#include "_cgo_export.h"

static const uint8_t empty_byte[1] = {0};

void go_unary_trampoline(connectplugin_call *call, void *user_data) {
    goUnaryHandler(call, (uintptr_t)user_data);
}

void go_stream_trampoline(connectplugin_stream *stream, void *user_data) {
    goStreamHandler(stream, (uintptr_t)user_data);
}

void go_done_trampoline(void *user_data) {
    goCallDone((uintptr_t)user_data);
}

void go_free_trampoline(void *user_data) {
    goFreeHandle((uintptr_t)user_data);
}

int32_t go_interceptor_start_trampoline(connectplugin_interceptor_call *call, void *user_data) {
    return goInterceptorStart(call, (uintptr_t)user_data);
}

void go_interceptor_end_trampoline(connectplugin_interceptor_call *call, connectplugin_code code, const char *message,
                                   void *user_data) {
    goInterceptorEnd(call, code, (char *)message, (uintptr_t)user_data);
}

void go_interceptor_message_trampoline(connectplugin_interceptor_call *call, int32_t direction, const uint8_t *data,
                                       size_t len, void *user_data) {
    goInterceptorMessage(call, direction, (uint8_t *)data, len, (uintptr_t)user_data);
}

void go_log_trampoline(const char *plugin, int32_t level, const char *message, const char *timestamp,
                       const char *const *keys, const char *const *values, size_t field_count, void *user_data) {
    goLogRecord((char *)plugin, level, (char *)message, (char *)timestamp, (char **)keys, (char **)values, field_count,
                (uintptr_t)user_data);
}

void go_plugin_exit_trampoline(int32_t kind, int32_t value, void *user_data) {
    goPluginExit(kind, value, (uintptr_t)user_data);
}

void *go_handle_to_user_data(uintptr_t handle) {
    return (void *)handle;
}

const uint8_t *go_empty_bytes(void) {
    return empty_byte;
}
