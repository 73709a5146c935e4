/*
 * stream_bench.c — one-stream throughput through libconnectplugin, beside a raw-socket baseline.
 *
 * A server-streaming handler sends COUNT messages of SIZE bytes as fast as the stream takes them;
 * one client thread receives them over HTTP/2 (h2c on TCP loopback, gRPC protocol). The baseline
 * moves the same bytes (SIZE-byte writes, COUNT of them) over a raw TCP loopback socket, one writer
 * thread and one reader thread. Each figure is the median of REPEATS runs, printed as
 *
 *   bench: stream_64B msgs_per_s=X mb_per_s=Y baseline_mb_per_s=Z ratio=R
 *   bench: stream_64KiB msgs_per_s=X mb_per_s=Y baseline_mb_per_s=Z ratio=R
 *
 * where ratio = baseline MB/s / our MB/s (lower is better; 1 = as fast as raw sockets), followed by
 * the stable costs cpu_us_per_mib=A ctxsw_per_mib=C baseline_cpu_us_per_mib=B baseline_ctxsw_per_mib=D:
 * CPU µs and context switches per MiB moved, of the whole process (getrusage: here client and
 * server share the process, as the baseline's writer and reader threads do).
 * Environment: BENCH_PROTOCOL (grpc; or connect, grpcweb), BENCH_HTTP1 (set: HTTP/1.1), BENCH_REPEATS (3), BENCH_STREAM_BYTES (total bytes per run, default 256 MiB for
 * 64 KiB messages and 16 MiB for 64-byte ones).
 */
#define _GNU_SOURCE

#include <connectplugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROCEDURE "/bench.v1.BenchService/Flood"

static void die(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "stream_bench: %s: %s (%s): %s\n", what, connectplugin_status_string(status),
            connectplugin_code_name(connectplugin_error_code(error)), connectplugin_error_message(error));
    connectplugin_error_free(error);
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "stream_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* CPU ns and context switches of the process so far. */
static void usage(int64_t *cpu_ns, int64_t *ctxsw) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
              ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
    *ctxsw = ru.ru_nvcsw + ru.ru_nivcsw;
}

/* The costs of the last run_stream / run_raw. */
static int64_t g_run_cpu_ns, g_run_ctxsw;

static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* The request is 8 bytes: uint32 count, uint32 size (little endian). */
static void handle_flood(connectplugin_stream *stream, void *user_data) {
    (void)user_data;
    const uint8_t *req = NULL;
    size_t len = 0;
    connectplugin_error *error = NULL;
    if (connectplugin_stream_receive(stream, &req, &len, &error) != CONNECTPLUGIN_OK || len != 8) {
        connectplugin_error_free(error);
        connectplugin_stream_fail(stream, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, "want count and size", NULL);
        return;
    }
    uint32_t count, size;
    memcpy(&count, req, 4);
    memcpy(&size, req + 4, 4);
    uint8_t *msg = malloc(size ? size : 1);
    if (!msg) return;
    /* Incompressible content, so no layer can cheat. */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        msg[i] = (uint8_t)x;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (connectplugin_stream_send(stream, msg, size, &error) != CONNECTPLUGIN_OK) {
            fprintf(stderr, "stream_bench: send: %s\n", connectplugin_error_message(error));
            connectplugin_error_free(error);
            break;
        }
    }
    free(msg);
}

/* One run through the library: returns seconds. */
static double run_stream(connectplugin_client *client, uint32_t count, uint32_t size) {
    connectplugin_client_stream *s = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status st = connectplugin_client_open_stream(client, PROCEDURE, CONNECTPLUGIN_SERVER_STREAM, NULL, &s, &error);
    if (st != CONNECTPLUGIN_OK) die("open_stream", st, error);
    uint8_t req[8];
    memcpy(req, &count, 4);
    memcpy(req + 4, &size, 4);
    int64_t c0, x0, c1, x1;
    usage(&c0, &x0);
    int64_t t0 = now_ns();
    if ((st = connectplugin_client_stream_send(s, req, sizeof req, &error)) != CONNECTPLUGIN_OK) die("send", st, error);
    if ((st = connectplugin_client_stream_close_send(s, &error)) != CONNECTPLUGIN_OK) die("close_send", st, error);
    uint32_t got = 0;
    for (;;) {
        const uint8_t *data = NULL;
        size_t len = 0;
        st = connectplugin_client_stream_receive(s, &data, &len, &error);
        if (st == CONNECTPLUGIN_EOF) break;
        if (st != CONNECTPLUGIN_OK) die("receive", st, error);
        if (len != size) {
            fprintf(stderr, "stream_bench: got %zu bytes, want %u\n", len, size);
            exit(1);
        }
        got++;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    usage(&c1, &x1);
    g_run_cpu_ns = c1 - c0;
    g_run_ctxsw = x1 - x0;
    connectplugin_client_stream_free(s);
    if (got != count) {
        fprintf(stderr, "stream_bench: got %u messages, want %u\n", got, count);
        exit(1);
    }
    return secs;
}

typedef struct raw_args {
    int fd;
    uint32_t count, size;
} raw_args;

static void *raw_writer(void *arg) {
    raw_args *a = arg;
    uint8_t *buf = calloc(1, a->size);
    if (!buf) die_errno("calloc");
    for (uint32_t i = 0; i < a->count; i++) {
        size_t off = 0;
        while (off < a->size) {
            ssize_t n = write(a->fd, buf + off, a->size - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) die_errno("write");
            off += (size_t)n;
        }
    }
    free(buf);
    shutdown(a->fd, SHUT_WR);
    return NULL;
}

/* The same bytes over a raw TCP loopback socket: returns seconds. */
static double run_raw(uint32_t count, uint32_t size) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in si = {.sin_family = AF_INET};
    si.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof si;
    if (listener < 0 || bind(listener, (struct sockaddr *)&si, sl) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (struct sockaddr *)&si, &sl) != 0)
        die_errno("listen");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&si, sl) != 0) die_errno("connect");
    int s = accept(listener, NULL, NULL);
    if (s < 0) die_errno("accept");
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    raw_args a = {.fd = s, .count = count, .size = size};
    pthread_t t;
    int64_t c0, x0, c1, x1;
    usage(&c0, &x0);
    int64_t t0 = now_ns();
    if (pthread_create(&t, NULL, raw_writer, &a) != 0) die_errno("pthread_create");
    /* The reader consumes message by message, like the library's client does. */
    uint8_t *buf = malloc(size);
    if (!buf) die_errno("malloc");
    uint64_t total = 0;
    for (;;) {
        size_t off = 0;
        while (off < size) {
            ssize_t n = read(c, buf + off, size - off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die_errno("read");
            if (n == 0) break;
            off += (size_t)n;
        }
        if (off < size) break;
        total += size;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    pthread_join(t, NULL);
    usage(&c1, &x1);
    g_run_cpu_ns = c1 - c0;
    g_run_ctxsw = x1 - x0;
    free(buf);
    close(c);
    close(s);
    close(listener);
    if (total != (uint64_t)count * size) {
        fprintf(stderr, "stream_bench: raw moved %llu bytes\n", (unsigned long long)total);
        exit(1);
    }
    return secs;
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    long n = v ? atol(v) : 0;
    return n > 0 ? n : fallback;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    int repeats = (int)env_long("BENCH_REPEATS", 3);
    connectplugin_server *server = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status st = connectplugin_server_new(NULL, &server, &error);
    if (st != CONNECTPLUGIN_OK) die("server_new", st, error);
    if ((st = connectplugin_server_listen_tcp(server, "127.0.0.1:0", &error)) != CONNECTPLUGIN_OK) die("listen", st, error);
    if ((st = connectplugin_server_register_stream(server, PROCEDURE, CONNECTPLUGIN_SERVER_STREAM, handle_flood, NULL, NULL,
                                                   &error)) != CONNECTPLUGIN_OK)
        die("register_stream", st, error);
    if ((st = connectplugin_server_start(server, &error)) != CONNECTPLUGIN_OK) die("start", st, error);
    char url[160];
    snprintf(url, sizeof url, "http://%s", connectplugin_server_address(server, 0));
    connectplugin_client_options *o = connectplugin_client_options_new();
    const char *proto = getenv("BENCH_PROTOCOL") ? getenv("BENCH_PROTOCOL") : "grpc";
    if ((st = connectplugin_client_options_set_protocol(o, proto, &error)) != CONNECTPLUGIN_OK) die("set_protocol", st, error);
    if (getenv("BENCH_HTTP1") &&
        (st = connectplugin_client_options_set_http_version(o, CONNECTPLUGIN_HTTP_1_1, &error)) != CONNECTPLUGIN_OK)
        die("set_http_version", st, error);
    /* 64 KiB messages: raise the default 4 MiB limit is not needed; keep the default. */
    connectplugin_client *client = NULL;
    if ((st = connectplugin_client_new(url, o, &client, &error)) != CONNECTPLUGIN_OK) die("client_new", st, error);
    connectplugin_client_options_free(o);

    struct { const char *name; uint32_t size; long bytes; } cases[] = {
        {"stream_64B", 64, env_long("BENCH_STREAM_BYTES_SMALL", 16L << 20)},
        {"stream_64KiB", 64 << 10, env_long("BENCH_STREAM_BYTES", 256L << 20)},
    };
    fprintf(stderr, "stream_bench: libconnectplugin %s, %d repeats, gRPC over h2c on TCP loopback, one stream\n",
            connectplugin_version(), repeats);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint32_t count = (uint32_t)(cases[k].bytes / cases[k].size);
        double *ours = calloc((size_t)repeats, sizeof(double));
        double *raw = calloc((size_t)repeats, sizeof(double));
        double *cpu = calloc((size_t)repeats, sizeof(double)), *cs = calloc((size_t)repeats, sizeof(double));
        double *rcpu = calloc((size_t)repeats, sizeof(double)), *rcs = calloc((size_t)repeats, sizeof(double));
        if (!ours || !raw || !cpu || !cs || !rcpu || !rcs) die_errno("calloc");
        double mib = (double)count * cases[k].size / (1024.0 * 1024.0);
        run_stream(client, count / 10 + 1, cases[k].size); /* warm-up */
        for (int r = 0; r < repeats; r++) {
            ours[r] = run_stream(client, count, cases[k].size);
            cpu[r] = (double)g_run_cpu_ns / 1000.0 / mib;
            cs[r] = (double)g_run_ctxsw / mib;
            raw[r] = run_raw(count, cases[k].size);
            rcpu[r] = (double)g_run_cpu_ns / 1000.0 / mib;
            rcs[r] = (double)g_run_ctxsw / mib;
        }
        double secs = median_of(ours, repeats), raw_secs = median_of(raw, repeats);
        double mb = (double)count * cases[k].size / 1e6;
        printf("bench: %s msgs_per_s=%.0f mb_per_s=%.1f baseline_mb_per_s=%.1f ratio=%.2f cpu_us_per_mib=%.0f "
               "ctxsw_per_mib=%.1f baseline_cpu_us_per_mib=%.0f baseline_ctxsw_per_mib=%.1f\n",
               cases[k].name, count / secs, mb / secs, mb / raw_secs, secs / raw_secs, median_of(cpu, repeats),
               median_of(cs, repeats), median_of(rcpu, repeats), median_of(rcs, repeats));
        fflush(stdout);
        free(ours);
        free(raw);
        free(cpu);
        free(cs);
        free(rcpu);
        free(rcs);
    }
    connectplugin_client_free(client);
    connectplugin_server_free(server);
    return 0;
}
