/*
 * bench_util.h — helpers shared by the C benchmarks: timing, percentiles, and the stable cost
 * figures (CPU time, context switches, RSS) of this process (getrusage) and of another process
 * (/proc/PID).
 *
 * Another process's figures are read from /proc:
 *   CPU: the sum over its threads of /proc/PID/task/TID/schedstat (first field, ns on CPU: exact,
 *        unlike the 10 ms ticks of /proc/PID/stat utime+stime, which is used when schedstat is absent);
 *   context switches: the sum over its threads of voluntary_ctxt_switches + nonvoluntary_ctxt_switches
 *        of /proc/PID/task/TID/status (/proc/PID/status alone counts the main thread only);
 *   RSS: VmRSS of /proc/PID/status.
 * Threads that exit between two samples take their counts with them: proc_sample() records the
 * thread ids, and proc_lost_threads() says how many of the first sample's threads are gone, so a
 * figure that undercounts is flagged rather than reported as cheaper.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static inline int64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bench_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts samples (ns); the value at quantile q (0..1) in µs. */
static inline double bench_quantile_us(int64_t *samples, int n, double q, int sorted) {
    if (n <= 0) return 0;
    if (!sorted) qsort(samples, (size_t)n, sizeof *samples, bench_cmp_i64);
    if (q == 0.5) return (n % 2 ? (double)samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0) / 1000.0;
    int idx = (int)((double)n * q + 0.5) - 1;
    if (idx < 0) idx = 0;
    if (idx >= n) idx = n - 1;
    return (double)samples[idx] / 1000.0;
}

static inline double bench_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static inline int bench_env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    int n = v ? atoi(v) : 0;
    return n > 0 ? n : fallback;
}

/* ---- Costs of a process. */

#define BENCH_MAX_TIDS 4096

typedef struct bench_cost {
    int64_t cpu_ns;   /* user + system CPU time */
    int64_t ctxsw;    /* voluntary + involuntary context switches */
    int64_t rss_kb;   /* resident set (0 for this process's getrusage sample) */
    int ntids;        /* threads seen (proc samples only) */
    int tids[BENCH_MAX_TIDS];
} bench_cost;

/* This process: getrusage(RUSAGE_SELF) sums every thread, including those that already exited. */
static inline void self_sample(bench_cost *c) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    c->cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
                ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
    c->ctxsw = ru.ru_nvcsw + ru.ru_nivcsw;
    c->rss_kb = 0;
    c->ntids = 0;
}

static inline int64_t proc_status_field(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    size_t kl = strlen(key);
    int64_t v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* utime + stime of /proc/PID/stat in ns (tick resolution; includes exited threads). */
static inline int64_t proc_stat_cpu_ns(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* After ") ": field 3 (state) ... utime is field 14, stime 15. */
    long long utime = 0, stime = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14) utime = atoll(tok);
        if (field == 15) {
            stime = atoll(tok);
            break;
        }
    }
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) hz = 100;
    return (utime + stime) * (1000000000LL / hz);
}

/* Another process: returns 0, or -1 when /proc/PID cannot be read. */
static inline int proc_sample(int pid, bench_cost *c) {
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    c->cpu_ns = 0;
    c->ctxsw = 0;
    c->ntids = 0;
    int have_schedstat = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int tid = atoi(e->d_name);
        if (c->ntids < BENCH_MAX_TIDS) c->tids[c->ntids++] = tid;
        snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, tid);
        FILE *f = fopen(path, "r");
        long long ns = 0;
        if (!f || fscanf(f, "%lld", &ns) != 1) have_schedstat = 0;
        if (f) fclose(f);
        c->cpu_ns += ns;
        snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
        int64_t v = proc_status_field(path, "voluntary_ctxt_switches");
        int64_t nv = proc_status_field(path, "nonvoluntary_ctxt_switches");
        if (v > 0) c->ctxsw += v;
        if (nv > 0) c->ctxsw += nv;
    }
    closedir(d);
    if (!have_schedstat) c->cpu_ns = proc_stat_cpu_ns(pid);
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    c->rss_kb = proc_status_field(path, "VmRSS");
    return 0;
}

/* How many threads of the earlier sample are missing from the later one. */
static inline int proc_lost_threads(const bench_cost *before, const bench_cost *after) {
    int lost = 0;
    for (int i = 0; i < before->ntids; i++) {
        int found = 0;
        for (int j = 0; j < after->ntids && !found; j++) found = after->tids[j] == before->tids[i];
        lost += !found;
    }
    return lost;
}

#endif
