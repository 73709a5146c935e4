/*
 * unary_bench.c — unary round-trip latency through libconnectplugin, beside a raw-socket baseline.
 *
 * For each transport (Unix socket, TCP loopback): a C client calls a C handler over HTTP/2 (h2c),
 * one caller, 64-byte request and response; and, on the same socket type, a raw ping-pong of 64-byte
 * messages with an echo thread doing blocking read/write. Each measurement: WARMUP calls, then N timed
 * ones; repeated REPEATS times; the median of the medians (and of the p99s) is reported, one line each:
 *
 *   bench: unary_h2c_unix median_us=X p99_us=Y baseline_median_us=Z ratio=R
 *   bench: unary_h2c_tcp median_us=X p99_us=Y baseline_median_us=Z ratio=R
 *
 * Environment: BENCH_N (20000), BENCH_WARMUP (2000), BENCH_REPEATS (3). Diagnostics go to stderr.
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
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE 64
#define PROCEDURE "/bench.v1.BenchService/Unary"

static int g_n = 20000;
static int g_warmup = 2000;
static int g_repeats = 3;

static void die(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "unary_bench: %s: %s (%s): %s\n", what, connectplugin_status_string(status),
            connectplugin_code_name(connectplugin_error_code(error)), connectplugin_error_message(error));
    connectplugin_error_free(error);
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "unary_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double median_us;
    double p99_us;
} stats;

/* Sorts samples (ns) and returns the median and the 99th percentile in µs. */
static stats summarize(int64_t *samples, int n) {
    qsort(samples, (size_t)n, sizeof *samples, cmp_i64);
    stats s;
    s.median_us = (n % 2 ? (double)samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0) / 1000.0;
    int idx = (int)((double)n * 0.99 + 0.5) - 1;
    if (idx < 0) idx = 0;
    if (idx >= n) idx = n - 1;
    s.p99_us = (double)samples[idx] / 1000.0;
    return s;
}

static double median_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ---- The Connect handler: answers every request with 64 bytes. */

static uint8_t g_response[MSG_SIZE];

static void handle_unary(connectplugin_call *call, void *user_data) {
    (void)user_data;
    size_t len = 0;
    connectplugin_call_request(call, &len);
    connectplugin_error *error = NULL;
    connectplugin_status status = len == MSG_SIZE
                                      ? connectplugin_call_respond(call, g_response, sizeof g_response, &error)
                                      : connectplugin_call_fail(call, CONNECTPLUGIN_CODE_INVALID_ARGUMENT, "want 64 bytes", &error);
    if (status != CONNECTPLUGIN_OK) {
        fprintf(stderr, "unary_bench: handler: %s\n", connectplugin_error_message(error));
        connectplugin_error_free(error);
    }
}

/* One unary measurement: warmup + n calls; fills samples (ns). */
static stats measure_unary(connectplugin_client *client, int64_t *samples) {
    uint8_t request[MSG_SIZE];
    memset(request, 'q', sizeof request);
    for (int i = -g_warmup; i < g_n; i++) {
        connectplugin_response *response = NULL;
        connectplugin_error *error = NULL;
        int64_t t0 = now_ns();
        connectplugin_status status =
            connectplugin_client_call_unary(client, PROCEDURE, request, sizeof request, NULL, &response, &error);
        int64_t t1 = now_ns();
        if (status != CONNECTPLUGIN_OK) die("connectplugin_client_call_unary", status, error);
        size_t len = 0;
        connectplugin_response_message(response, &len);
        connectplugin_response_free(response);
        if (len != MSG_SIZE) {
            fprintf(stderr, "unary_bench: response of %zu bytes, want %d\n", len, MSG_SIZE);
            exit(1);
        }
        if (i >= 0) samples[i] = t1 - t0;
    }
    return summarize(samples, g_n);
}

/* ---- The raw-socket baseline: ping-pong of 64-byte messages with an echo thread. */

static int read_full(int fd, uint8_t *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len) {
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, buf + put, len - put);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        put += (size_t)n;
    }
    return 0;
}

static void *echo_thread(void *arg) {
    int listener = *(int *)arg;
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) die_errno("accept");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on Unix sockets */
    uint8_t buf[MSG_SIZE];
    while (read_full(fd, buf, sizeof buf) == 0 && write_full(fd, buf, sizeof buf) == 0) {
    }
    close(fd);
    return NULL;
}

/* One baseline measurement over a fresh connection, on a Unix socket at unix_path or on TCP loopback. */
static stats measure_baseline(bool is_unix, const char *unix_path, int64_t *samples) {
    int listener = socket(is_unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) die_errno("socket");
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    struct sockaddr_in si = {.sin_family = AF_INET};
    struct sockaddr *sa;
    socklen_t sl;
    if (is_unix) {
        snprintf(su.sun_path, sizeof su.sun_path, "%s", unix_path);
        unlink(unix_path);
        sa = (struct sockaddr *)&su;
        sl = sizeof su;
    } else {
        si.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa = (struct sockaddr *)&si;
        sl = sizeof si;
    }
    if (bind(listener, sa, sl) != 0 || listen(listener, 1) != 0) die_errno("bind/listen");
    if (!is_unix && getsockname(listener, sa, &sl) != 0) die_errno("getsockname");
    pthread_t thread;
    if (pthread_create(&thread, NULL, echo_thread, &listener) != 0) die_errno("pthread_create");
    int fd = socket(is_unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, sa, sl) != 0) die_errno("connect");
    int one = 1;
    if (!is_unix) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t ping[MSG_SIZE], pong[MSG_SIZE];
    memset(ping, 'p', sizeof ping);
    for (int i = -g_warmup; i < g_n; i++) {
        int64_t t0 = now_ns();
        if (write_full(fd, ping, sizeof ping) != 0 || read_full(fd, pong, sizeof pong) != 0) die_errno("ping-pong");
        int64_t t1 = now_ns();
        if (i >= 0) samples[i] = t1 - t0;
    }
    close(fd);
    pthread_join(thread, NULL);
    close(listener);
    if (is_unix) unlink(unix_path);
    return summarize(samples, g_n);
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    int n = v ? atoi(v) : 0;
    return n > 0 ? n : fallback;
}

int main(void) {
    g_n = env_int("BENCH_N", g_n);
    g_warmup = env_int("BENCH_WARMUP", g_warmup);
    g_repeats = env_int("BENCH_REPEATS", g_repeats);
    signal(SIGPIPE, SIG_IGN);
    memset(g_response, 'r', sizeof g_response);
    int64_t *samples = malloc((size_t)g_n * sizeof *samples);
    double *medians = malloc((size_t)g_repeats * sizeof *medians);
    double *p99s = malloc((size_t)g_repeats * sizeof *p99s);
    double *base = malloc((size_t)g_repeats * sizeof *base);
    if (!samples || !medians || !p99s || !base) {
        fprintf(stderr, "unary_bench: out of memory\n");
        return 1;
    }

    char server_sock[108], baseline_sock[108];
    snprintf(server_sock, sizeof server_sock, "/tmp/cp-bench-%d.sock", (int)getpid());
    snprintf(baseline_sock, sizeof baseline_sock, "/tmp/cp-bench-%d-raw.sock", (int)getpid());

    connectplugin_server *server = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status status = connectplugin_server_new(NULL, &server, &error);
    if (status != CONNECTPLUGIN_OK) die("connectplugin_server_new", status, error);
    if ((status = connectplugin_server_listen_unix(server, server_sock, &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_server_listen_unix", status, error);
    if ((status = connectplugin_server_listen_tcp(server, "127.0.0.1:0", &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_server_listen_tcp", status, error);
    if ((status = connectplugin_server_register_unary(server, PROCEDURE, handle_unary, NULL, NULL, &error)) !=
        CONNECTPLUGIN_OK)
        die("connectplugin_server_register_unary", status, error);
    if ((status = connectplugin_server_start(server, &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_server_start", status, error);

    fprintf(stderr, "unary_bench: libconnectplugin %s, %d calls after %d warm-up, %d repeats, %d-byte messages\n",
            connectplugin_version(), g_n, g_warmup, g_repeats, MSG_SIZE);
    for (int t = 0; t < 2; t++) {
        bool is_unix = t == 0;
        char url[160];
        if (is_unix) snprintf(url, sizeof url, "unix://%s", server_sock);
        else snprintf(url, sizeof url, "http://%s", connectplugin_server_address(server, 1));
        connectplugin_client_options *options = connectplugin_client_options_new();
        if (!options) die("connectplugin_client_options_new", CONNECTPLUGIN_ERR_RESOURCE, NULL);
        if ((status = connectplugin_client_options_set_http_version(options, CONNECTPLUGIN_HTTP_2, &error)) !=
            CONNECTPLUGIN_OK)
            die("connectplugin_client_options_set_http_version", status, error);
        connectplugin_client *client = NULL;
        status = connectplugin_client_new(url, options, &client, &error);
        connectplugin_client_options_free(options);
        if (status != CONNECTPLUGIN_OK) die("connectplugin_client_new", status, error);

        for (int r = 0; r < g_repeats; r++) {
            stats b = measure_baseline(is_unix, baseline_sock, samples);
            stats u = measure_unary(client, samples);
            base[r] = b.median_us;
            medians[r] = u.median_us;
            p99s[r] = u.p99_us;
            fprintf(stderr, "unary_bench: %s run %d: unary median %.1f us p99 %.1f us, baseline median %.1f us p99 %.1f us\n",
                    is_unix ? "unix" : "tcp", r + 1, u.median_us, u.p99_us, b.median_us, b.p99_us);
        }
        double median = median_of(medians, g_repeats);
        double p99 = median_of(p99s, g_repeats);
        double baseline = median_of(base, g_repeats);
        printf("bench: %s median_us=%.1f p99_us=%.1f baseline_median_us=%.1f ratio=%.2f\n",
               is_unix ? "unary_h2c_unix" : "unary_h2c_tcp", median, p99, baseline, median / baseline);
        fflush(stdout);
        connectplugin_client_free(client);
    }

    if ((status = connectplugin_server_stop(server, 1000, &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_server_stop", status, error);
    connectplugin_server_free(server);
    free(samples);
    free(medians);
    free(p99s);
    free(base);
    return 0;
}
