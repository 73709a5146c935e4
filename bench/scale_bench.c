/*
 * scale_bench.c — how the cost of unary calls grows with work: throughput, p50/p99 latency and CPU
 * per call at 1, 8, 64 and 256 concurrent callers (one client, one connection), and at 1, 100 and
 * 1000 connections (one client each), with the server's RSS per connection.
 *
 *   scale_bench URL SERVER_PID
 *
 * URL and the server as for unary_bench (bench_server cp in its own process; its CPU, context
 * switches and VmRSS come from /proc/SERVER_PID). Each row: CALLS calls in all, spread over the
 * callers, after a short warm-up; a connection row first opens every connection (one call each) and
 * reads the server's VmRSS before and after: rss_per_conn_kb = delta / connections (an estimate:
 * the allocator may reuse memory freed earlier). Prints one line per row and a table:
 *
 *   bench: scale_callers|scale_conns callers=C conns=K req_per_s=X p50_us=Y p99_us=Z client_cpu_us=A server_cpu_us=B
 *          client_ctxsw=C server_ctxsw=D [rss_per_conn_kb=R]
 *
 * Environment: BENCH_SCALE_CALLERS ("1 8 64 256"), BENCH_SCALE_CONNS ("1 100 1000"),
 * BENCH_SCALE_CALLS (20000 per row), BENCH_SCALE_CONN_CALLERS (callers of the connection rows, 64),
 * BENCH_PROTOCOL (connect).
 */
#include "bench_util.h"

#include <connectplugin.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>

#define MSG_SIZE 64
#define PROCEDURE "/bench.v1.BenchService/Unary"
#define MAX_ROWS 16

static uint8_t g_request[MSG_SIZE];
static const char *g_url;

static void die(const char *what, connectplugin_status status, connectplugin_error *error) {
    fprintf(stderr, "scale_bench: %s: %s (%s): %s\n", what, connectplugin_status_string(status),
            connectplugin_code_name(connectplugin_error_code(error)), connectplugin_error_message(error));
    connectplugin_error_free(error);
    exit(1);
}

static connectplugin_client *new_client(void) {
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
    if ((status = connectplugin_client_options_set_timeout_ms(options, 120000, &error)) != CONNECTPLUGIN_OK)
        die("connectplugin_client_options_set_timeout_ms", status, error);
    connectplugin_client *client = NULL;
    status = connectplugin_client_new(g_url, options, &client, &error);
    connectplugin_client_options_free(options);
    if (status != CONNECTPLUGIN_OK) die("connectplugin_client_new", status, error);
    return client;
}

static void call(connectplugin_client *client) {
    connectplugin_response *response = NULL;
    connectplugin_error *error = NULL;
    connectplugin_status status =
        connectplugin_client_call_unary(client, PROCEDURE, g_request, sizeof g_request, NULL, &response, &error);
    if (status != CONNECTPLUGIN_OK) die("connectplugin_client_call_unary", status, error);
    size_t len = 0;
    connectplugin_response_message(response, &len);
    connectplugin_response_free(response);
    if (len != MSG_SIZE) {
        fprintf(stderr, "scale_bench: response of %zu bytes, want %d\n", len, MSG_SIZE);
        exit(1);
    }
}

typedef struct worker {
    pthread_t thread;
    int index, callers, calls;
    connectplugin_client **clients;
    int nclients;
    int64_t *samples; /* calls entries */
} worker;

static pthread_barrier_t g_barrier;

static void *work(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(&g_barrier);
    for (int i = 0; i < w->calls; i++) {
        connectplugin_client *c = w->clients[(w->index + (int64_t)i * w->callers) % w->nclients];
        int64_t t0 = bench_now_ns();
        call(c);
        w->samples[i] = bench_now_ns() - t0;
    }
    return NULL;
}

typedef struct row {
    int callers, conns;
    bool conns_row; /* a connection row (with rss_per_conn_kb) */
    double req_per_s, p50_us, p99_us, client_cpu_us, server_cpu_us, client_ctxsw, server_ctxsw, rss_per_conn_kb;
} row;

static bench_cost g_sb, g_sa;

/* total calls over `callers` threads round-robin on `clients`. */
static row run_row(int callers, connectplugin_client **clients, int nclients, int total, int server_pid) {
    int per = total / callers;
    if (per < 10) per = 10;
    worker *ws = calloc((size_t)callers, sizeof *ws);
    int64_t *all = malloc((size_t)callers * (size_t)per * sizeof *all);
    if (!ws || !all) {
        fprintf(stderr, "scale_bench: out of memory\n");
        exit(1);
    }
    pthread_barrier_init(&g_barrier, NULL, (unsigned)callers + 1);
    for (int t = 0; t < callers; t++) {
        ws[t] = (worker){.index = t, .callers = callers, .calls = per, .clients = clients, .nclients = nclients,
                         .samples = all + (size_t)t * (size_t)per};
        if (pthread_create(&ws[t].thread, NULL, work, &ws[t]) != 0) {
            fprintf(stderr, "scale_bench: pthread_create: %s\n", strerror(errno));
            exit(1);
        }
    }
    bench_cost cb, ca;
    proc_sample(server_pid, &g_sb);
    self_sample(&cb);
    int64_t t0 = bench_now_ns();
    pthread_barrier_wait(&g_barrier);
    for (int t = 0; t < callers; t++) pthread_join(ws[t].thread, NULL);
    int64_t t1 = bench_now_ns();
    self_sample(&ca);
    proc_sample(server_pid, &g_sa);
    pthread_barrier_destroy(&g_barrier);
    int n = callers * per;
    int lost = proc_lost_threads(&g_sb, &g_sa);
    if (lost) fprintf(stderr, "scale_bench: warning: %d server threads exited during a row; server figures undercount\n", lost);
    row r = {.callers = callers, .conns = nclients};
    r.req_per_s = (double)n / ((double)(t1 - t0) / 1e9);
    r.p50_us = bench_quantile_us(all, n, 0.5, 0);
    r.p99_us = bench_quantile_us(all, n, 0.99, 1);
    r.client_cpu_us = (double)(ca.cpu_ns - cb.cpu_ns) / 1000.0 / n;
    r.server_cpu_us = (double)(g_sa.cpu_ns - g_sb.cpu_ns) / 1000.0 / n;
    r.client_ctxsw = (double)(ca.ctxsw - cb.ctxsw) / n;
    r.server_ctxsw = (double)(g_sa.ctxsw - g_sb.ctxsw) / n;
    free(ws);
    free(all);
    return r;
}

static int parse_list(const char *env, const char *fallback, int *out, int max) {
    const char *s = getenv(env);
    if (!s || !*s) s = fallback;
    int n = 0;
    char *end;
    while (*s && n < max) {
        long v = strtol(s, &end, 10);
        if (end == s) {
            s++;
            continue;
        }
        if (v > 0) out[n++] = (int)v;
        s = end;
    }
    return n;
}

static void print_row(const row *r) {
    printf("bench: %s callers=%d conns=%d req_per_s=%.0f p50_us=%.1f p99_us=%.1f client_cpu_us=%.1f "
           "server_cpu_us=%.1f client_ctxsw=%.2f server_ctxsw=%.2f",
           r->conns_row ? "scale_conns" : "scale_callers", r->callers, r->conns, r->req_per_s, r->p50_us, r->p99_us,
           r->client_cpu_us, r->server_cpu_us,
           r->client_ctxsw, r->server_ctxsw);
    if (r->conns_row) printf(" rss_per_conn_kb=%.1f", r->rss_per_conn_kb);
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: scale_bench URL SERVER_PID\n");
        return 2;
    }
    g_url = argv[1];
    int server_pid = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    g_request[0] = 0x0a;
    g_request[1] = MSG_SIZE - 2;
    memset(g_request + 2, 'q', MSG_SIZE - 2);
    int callers[MAX_ROWS], conns[MAX_ROWS];
    int ncallers = parse_list("BENCH_SCALE_CALLERS", "1 8 64 256", callers, MAX_ROWS);
    int nconns = parse_list("BENCH_SCALE_CONNS", "1 100 1000", conns, MAX_ROWS);
    int total = bench_env_int("BENCH_SCALE_CALLS", 20000);
    int conn_callers = bench_env_int("BENCH_SCALE_CONN_CALLERS", 64);
    /* 1000 connections need 1000+ descriptors here and in the server. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    row rows[2 * MAX_ROWS];
    int nrows = 0;

    connectplugin_client *one = new_client();
    for (int i = 0; i < 500; i++) call(one);
    for (int i = 0; i < ncallers; i++) {
        rows[nrows] = run_row(callers[i], &one, 1, total, server_pid);
        print_row(&rows[nrows++]);
    }
    connectplugin_client_free(one);

    for (int i = 0; i < nconns; i++) {
        int k = conns[i];
        connectplugin_client **clients = calloc((size_t)k, sizeof *clients);
        if (!clients) return 1;
        bench_cost before, after;
        proc_sample(server_pid, &before);
        for (int c = 0; c < k; c++) {
            clients[c] = new_client();
            call(clients[c]); /* opens its connection */
        }
        proc_sample(server_pid, &after);
        int t = k < conn_callers ? k : conn_callers;
        rows[nrows] = run_row(t, clients, k, total, server_pid);
        rows[nrows].rss_per_conn_kb = (double)(after.rss_kb - before.rss_kb) / k; /* < 0: memory given back */
        rows[nrows].conns_row = true;
        print_row(&rows[nrows++]);
        for (int c = 0; c < k; c++) connectplugin_client_free(clients[c]);
        free(clients);
    }

    printf("scale table (unary, 64-byte messages; CPU µs and context switches per call):\n");
    printf("  %7s %6s %9s %8s %9s %10s %10s %9s %9s %12s\n", "callers", "conns", "req/s", "p50_us", "p99_us",
           "client_cpu", "server_cpu", "client_cs", "server_cs", "rss/conn_kB");
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        char rss[32] = "-";
        if (r->conns_row) snprintf(rss, sizeof rss, "%.1f", r->rss_per_conn_kb);
        printf("  %7d %6d %9.0f %8.1f %9.1f %10.1f %10.1f %9.2f %9.2f %12s\n", r->callers, r->conns, r->req_per_s,
               r->p50_us, r->p99_us, r->client_cpu_us, r->server_cpu_us, r->client_ctxsw, r->server_ctxsw, rss);
    }
    fflush(stdout);
    return 0;
}
