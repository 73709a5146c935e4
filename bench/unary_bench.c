/*
 * unary_bench.c — the cost of one sequential unary round trip through libconnectplugin, beside a
 * raw-socket ping-pong, with the server in another process (bench_server) so that client and server
 * costs are measured apart.
 *
 *   unary_bench NAME URL SERVER_PID [RAW_ADDR RAW_PID]
 *       URL: unix:///path or http://host:port of a server of /bench.v1.BenchService/Unary (bench_server
 *       cp, or the Go/Python bench handlers); RAW_ADDR: unix:/path or tcp:host:port of `bench_server
 *       raw`, the baseline (optional). One caller, 64-byte request and response, HTTP/2 (h2c). Each
 *       measurement: WARMUP calls, then N timed ones; repeated REPEATS times (baseline and ours
 *       interleaved); medians over the repeats are printed:
 *
 *   bench: NAME_baseline median_us=X p99_us=Y client_cpu_us=A server_cpu_us=B client_ctxsw=C server_ctxsw=D
 *   bench: NAME median_us=X p99_us=Y client_cpu_us=A server_cpu_us=B client_ctxsw=C server_ctxsw=D
 *          baseline_median_us=Z ratio=R cpu_ratio=Q [client_allocs=E server_allocs=F]
 *
 *       *_cpu_us: CPU µs per call (user + system, every thread of the process); *_ctxsw: voluntary +
 *       involuntary context switches per call. The client's come from getrusage(RUSAGE_SELF), the
 *       server's from /proc/SERVER_PID (bench_util.h). ratio = median / baseline median; cpu_ratio =
 *       (client + server CPU) / the baseline's. With the malloc counter (malloc_count.c) preloaded into
 *       this process (BENCH_MALLOC_COUNT_FILE) and into the server (its file in BENCH_ALLOC_SERVER_FILE),
 *       allocations per call (malloc, calloc, realloc, memalign family) are added.
 *
 *   unary_bench --stdio URL
 *       the host-language protocol of bench/hosts.py (the Go, Python and Swift clients speak it too):
 *       WARMUP calls, print "warm", wait for a line on stdin, N timed calls, print
 *       "result median_us=X p99_us=Y client_cpu_us=A client_ctxsw=C". Under callgrind, the counters
 *       are zeroed before the timed calls and dumped after them (bench/instr.py).
 *
 * Environment: BENCH_N (20000), BENCH_WARMUP (2000), BENCH_REPEATS (3), BENCH_PROTOCOL (connect;
 * grpc, grpcweb). Diagnostics go to stderr.
 */
#include "bench_util.h"
#include "bench_io.h"

#include <connectplugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h> /* no-ops unless run under callgrind (bench/instr.py) */
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS
#endif

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

/* ---- allocation counters of malloc_count.c (a shared file of uint64 counters) */

static const volatile uint64_t *map_counters(const char *path) {
    if (!path || !*path) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : (const volatile uint64_t *)p;
}

/* malloc + calloc + realloc + memalign family (slots 0..3; see malloc_count.c). */
static uint64_t allocs(const volatile uint64_t *c) { return c ? c[0] + c[1] + c[2] + c[3] : 0; }

/* ---- one measurement */

typedef struct result {
    double median_us, p99_us;
    double client_cpu_us, server_cpu_us, client_ctxsw, server_ctxsw;
    double client_allocs, server_allocs;
} result;

static const volatile uint64_t *g_self_allocs, *g_server_allocs;
static bench_cost g_sb, g_sa; /* server samples (large: static) */

typedef bool (*call_fn)(void *ctx);

static result measure(call_fn fn, void *ctx, int server_pid, int64_t *samples) {
    for (int i = 0; i < g_warmup; i++)
        if (!fn(ctx)) exit(1);
    bench_cost cb, ca;
    if (server_pid > 0 && proc_sample(server_pid, &g_sb) != 0) die_errno("read /proc of the server");
    uint64_t ab = allocs(g_self_allocs), sab = allocs(g_server_allocs);
    self_sample(&cb);
    for (int i = 0; i < g_n; i++) {
        int64_t t0 = bench_now_ns();
        if (!fn(ctx)) exit(1);
        samples[i] = bench_now_ns() - t0;
    }
    self_sample(&ca);
    uint64_t aa = allocs(g_self_allocs), saa = allocs(g_server_allocs);
    result r = {0};
    if (server_pid > 0) {
        if (proc_sample(server_pid, &g_sa) != 0) die_errno("read /proc of the server");
        int lost = proc_lost_threads(&g_sb, &g_sa);
        if (lost)
            fprintf(stderr, "unary_bench: warning: %d server threads exited during the measurement; "
                            "server figures undercount\n", lost);
        r.server_cpu_us = (double)(g_sa.cpu_ns - g_sb.cpu_ns) / 1000.0 / g_n;
        r.server_ctxsw = (double)(g_sa.ctxsw - g_sb.ctxsw) / g_n;
    }
    r.client_cpu_us = (double)(ca.cpu_ns - cb.cpu_ns) / 1000.0 / g_n;
    r.client_ctxsw = (double)(ca.ctxsw - cb.ctxsw) / g_n;
    r.client_allocs = (double)(aa - ab) / g_n;
    r.server_allocs = (double)(saa - sab) / g_n;
    r.median_us = bench_quantile_us(samples, g_n, 0.5, 0);
    r.p99_us = bench_quantile_us(samples, g_n, 0.99, 1);
    return r;
}

/* ---- ours: a connectplugin unary call */

static uint8_t g_request[MSG_SIZE];

static bool call_unary(void *ctx) {
    connectplugin_client *client = ctx;
    connectplugin_response *response = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status status =
        connectplugin_client_call_unary(client, PROCEDURE, g_request, sizeof g_request, NULL, &response, &error);
    if (status != CONNECTPLUGIN_OK) die("connectplugin_client_call_unary", status, error);
    size_t len = 0;
    connectplugin_response_message(response, &len);
    connectplugin_response_free(response);
    if (len != MSG_SIZE) {
        fprintf(stderr, "unary_bench: response of %zu bytes, want %d\n", len, MSG_SIZE);
        return false;
    }
    return true;
}

static connectplugin_client *new_client(const char *url) {
    connectplugin_error *error = NULL;
    connectplugin_status status;
    connectplugin_client_options *options = connectplugin_client_options_new();
    if (!options) die("connectplugin_client_options_new", CONNECTPLUGIN_ERR_RESOURCE, NULL);
    if ((status = connectplugin_client_options_set_http_version(options, CONNECTPLUGIN_HTTP_2, &error)) !=
        CONNECTPLUGIN_OK)
        die("connectplugin_client_options_set_http_version", status, error);
    const char *protocol = getenv("BENCH_PROTOCOL");
    if (protocol && *protocol &&
        (status = connectplugin_client_options_set_protocol(options, protocol, &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_client_options_set_protocol", status, error);
    connectplugin_client *client = NULL;
    status = connectplugin_client_new(url, options, &client, &error);
    connectplugin_client_options_free(options);
    if (status != CONNECTPLUGIN_OK) die("connectplugin_client_new", status, error);
    return client;
}

/* ---- the baseline: ping-pong of 64-byte messages with bench_server raw */

static bool ping_pong(void *ctx) {
    int fd = *(int *)ctx;
    uint8_t pong[MSG_SIZE];
    if (write_full(fd, g_request, sizeof g_request) != 0 || read_full(fd, pong, sizeof pong) != 0) {
        fprintf(stderr, "unary_bench: ping-pong: %s\n", strerror(errno));
        return false;
    }
    return true;
}

/* "unix:/path" or "tcp:host:port" */
static int raw_connect(const char *addr) {
    int fd;
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "%s", addr + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&su, sizeof su) != 0) die_errno("connect (raw unix)");
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        char host[64];
        const char *hp = addr + 4, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof host) {
            fprintf(stderr, "unary_bench: bad raw address %s\n", addr);
            exit(2);
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = 0;
        struct sockaddr_in si = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
        inet_pton(AF_INET, host, &si.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&si, sizeof si) != 0) die_errno("connect (raw tcp)");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        fprintf(stderr, "unary_bench: raw address must be unix:PATH or tcp:HOST:PORT, not %s\n", addr);
        exit(2);
    }
    return fd;
}

static void print_costs(const char *name, const result *r) {
    printf("bench: %s median_us=%.1f p99_us=%.1f client_cpu_us=%.1f server_cpu_us=%.1f client_ctxsw=%.2f "
           "server_ctxsw=%.2f",
           name, r->median_us, r->p99_us, r->client_cpu_us, r->server_cpu_us, r->client_ctxsw, r->server_ctxsw);
}

static double med(result *rs, int n, size_t offset) {
    double v[64];
    for (int i = 0; i < n && i < 64; i++) v[i] = *(double *)((char *)&rs[i] + offset);
    return bench_median(v, n < 64 ? n : 64);
}

static result median_result(result *rs, int n) {
    result m;
    m.median_us = med(rs, n, offsetof(result, median_us));
    m.p99_us = med(rs, n, offsetof(result, p99_us));
    m.client_cpu_us = med(rs, n, offsetof(result, client_cpu_us));
    m.server_cpu_us = med(rs, n, offsetof(result, server_cpu_us));
    m.client_ctxsw = med(rs, n, offsetof(result, client_ctxsw));
    m.server_ctxsw = med(rs, n, offsetof(result, server_ctxsw));
    m.client_allocs = med(rs, n, offsetof(result, client_allocs));
    m.server_allocs = med(rs, n, offsetof(result, server_allocs));
    return m;
}

/* --stdio plugin:PATH: the host side of the plugin bench (bench/plugins.py): launches PATH (bench_server
   plugin) through connectplugin_plugin_client_start, dispenses "bench" and calls through that client;
   *out_launch_us is the time from the launch to the first call's answer. */
static connectplugin_plugin_client *g_plugin;

static connectplugin_client *plugin_client(const char *path, double *out_launch_us) {
    connectplugin_error *error = NULL;
    connectplugin_plugin_client_config *config = NULL;
    int64_t t0 = bench_now_ns();
    connectplugin_status status =
        connectplugin_plugin_client_config_new("BENCH_PLUGIN", "connectplugin-bench", path, &config, &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_client_config_add_plugin(config, 1, "bench", &error);
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_client_start(config, &g_plugin, &error);
    connectplugin_plugin_client_config_free(config);
    connectplugin_client *client = NULL;
    if (status == CONNECTPLUGIN_OK) status = connectplugin_plugin_client_dispense(g_plugin, "bench", &client, &error);
    if (status != CONNECTPLUGIN_OK) die("launch the plugin", status, error);
    if (!call_unary(client)) exit(1);
    *out_launch_us = (double)(bench_now_ns() - t0) / 1000.0;
    return client;
}

static int stdio_client(const char *url, int64_t *samples) {
    double launch_us = 0;
    bool plugin = strncmp(url, "plugin:", 7) == 0;
    connectplugin_client *client = plugin ? plugin_client(url + 7, &launch_us) : new_client(url);
    for (int i = 0; i < g_warmup; i++)
        if (!call_unary(client)) return 1;
    if (plugin)
        printf("warm pid=%d launch_us=%.1f\n", (int)connectplugin_plugin_client_pid(g_plugin), launch_us);
    else
        printf("warm\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    int saved = g_warmup;
    g_warmup = 0;
    CALLGRIND_ZERO_STATS;
    result r = measure(call_unary, client, 0, samples);
    CALLGRIND_DUMP_STATS;
    g_warmup = saved;
    printf("result median_us=%.2f p99_us=%.2f client_cpu_us=%.2f client_ctxsw=%.3f\n", r.median_us, r.p99_us,
           r.client_cpu_us, r.client_ctxsw);
    fflush(stdout);
    connectplugin_client_free(client);
    connectplugin_plugin_client_free(g_plugin);
    return 0;
}

int main(int argc, char **argv) {
    g_n = bench_env_int("BENCH_N", g_n);
    g_warmup = bench_env_int("BENCH_WARMUP", g_warmup);
    g_repeats = bench_env_int("BENCH_REPEATS", g_repeats);
    if (g_repeats > 64) g_repeats = 64;
    signal(SIGPIPE, SIG_IGN);
    g_request[0] = 0x0a;
    g_request[1] = MSG_SIZE - 2;
    memset(g_request + 2, 'q', MSG_SIZE - 2);
    int64_t *samples = malloc((size_t)g_n * sizeof *samples);
    if (!samples) {
        fprintf(stderr, "unary_bench: out of memory\n");
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "--stdio") == 0) return stdio_client(argv[2], samples);
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: unary_bench NAME URL SERVER_PID [RAW_ADDR RAW_PID] | unary_bench --stdio URL\n");
        return 2;
    }
    const char *name = argv[1], *url = argv[2];
    int server_pid = atoi(argv[3]);
    const char *raw_addr = argc == 6 ? argv[4] : NULL;
    int raw_pid = argc == 6 ? atoi(argv[5]) : 0;
    g_self_allocs = map_counters(getenv("BENCH_MALLOC_COUNT_FILE"));
    g_server_allocs = map_counters(getenv("BENCH_ALLOC_SERVER_FILE"));
    bool count_allocs = g_self_allocs && g_server_allocs;

    fprintf(stderr, "unary_bench: %s: libconnectplugin %s, %d calls after %d warm-up, %d repeats, %d-byte messages\n",
            name, connectplugin_version(), g_n, g_warmup, g_repeats, MSG_SIZE);
    connectplugin_client *client = new_client(url);
    int raw_fd = raw_addr ? raw_connect(raw_addr) : -1;
    result ours[64], base[64];
    for (int r = 0; r < g_repeats; r++) {
        if (raw_addr) base[r] = measure(ping_pong, &raw_fd, raw_pid, samples);
        ours[r] = measure(call_unary, client, server_pid, samples);
        fprintf(stderr, "unary_bench: %s run %d: median %.1f us p99 %.1f us cpu %.1f+%.1f us ctxsw %.2f+%.2f",
                name, r + 1, ours[r].median_us, ours[r].p99_us, ours[r].client_cpu_us, ours[r].server_cpu_us,
                ours[r].client_ctxsw, ours[r].server_ctxsw);
        if (raw_addr)
            fprintf(stderr, "; baseline median %.1f us p99 %.1f us cpu %.1f+%.1f us ctxsw %.2f+%.2f", base[r].median_us,
                    base[r].p99_us, base[r].client_cpu_us, base[r].server_cpu_us, base[r].client_ctxsw,
                    base[r].server_ctxsw);
        fprintf(stderr, "\n");
    }
    result m = median_result(ours, g_repeats);
    if (raw_addr) {
        result b = median_result(base, g_repeats);
        char bname[160];
        snprintf(bname, sizeof bname, "%s_baseline", name);
        print_costs(bname, &b);
        printf("\n");
        print_costs(name, &m);
        double bcpu = b.client_cpu_us + b.server_cpu_us;
        printf(" baseline_median_us=%.1f ratio=%.2f cpu_ratio=%.2f", b.median_us, m.median_us / b.median_us,
               bcpu > 0 ? (m.client_cpu_us + m.server_cpu_us) / bcpu : 0.0);
    } else {
        print_costs(name, &m);
    }
    if (count_allocs) printf(" client_allocs=%.1f server_allocs=%.1f", m.client_allocs, m.server_allocs);
    printf("\n");
    fflush(stdout);
    if (raw_fd >= 0) close(raw_fd);
    connectplugin_client_free(client);
    free(samples);
    return 0;
}
