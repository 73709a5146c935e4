/*
 * procstat.c — prints the costs of another process so far, for the shell benchmarks:
 *   procstat PID   ->   "CPU_NS CTXSW RSS_KB THREADS"
 * CPU time and context switches summed over its threads, as in bench_util.h.
 */
#include "bench_util.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: procstat PID\n");
        return 2;
    }
    static bench_cost c;
    if (proc_sample(atoi(argv[1]), &c) != 0) {
        fprintf(stderr, "procstat: cannot read /proc/%s\n", argv[1]);
        return 1;
    }
    printf("%lld %lld %lld %d\n", (long long)c.cpu_ns, (long long)c.ctxsw, (long long)c.rss_kb, c.ntids);
    return 0;
}
