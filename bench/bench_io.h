/* bench_io.h — whole-buffer reads and writes on a blocking socket, for the raw ping-pong baseline
 * (bench_server.c's echo and unary_bench.c's client). Header-only. */
#ifndef CONNECTPLUGIN_BENCH_IO_H
#define CONNECTPLUGIN_BENCH_IO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

/* Reads exactly @p len bytes; 0 on success, -1 on error or end of stream. */
static inline int read_full(int fd, uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

/* Writes all @p len bytes; 0 on success, -1 on error. */
static inline int write_full(int fd, const uint8_t *buf, size_t len) {
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, buf + put, len - put);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        put += (size_t)n;
    }
    return 0;
}

#endif
