/*
 * malloc_count.c — an LD_PRELOAD shim that counts the allocations of a process, cheaply, for the
 * allocations-per-call figures of unary_bench.
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
 *   LD_PRELOAD=./malloc_count.so BENCH_MALLOC_COUNT_FILE=/tmp/x.cnt PROGRAM
 *
 * The counters live in BENCH_MALLOC_COUNT_FILE (created, 4096 bytes, mapped shared), so another
 * process reads them at any moment without stopping this one (unary_bench maps the server's file).
 * Slots (uint64, relaxed atomics): 0 malloc, 1 calloc, 2 realloc, 3 memalign / posix_memalign /
 * aligned_alloc / valloc, 4 free (of a non-NULL pointer), 5 bytes requested. Calls made before the
 * file is mapped (the dynamic loader's) are not counted. The real functions are glibc's __libc_*.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t g_dummy[8];
static uint64_t *g_counts = g_dummy;

__attribute__((constructor)) static void malloc_count_init(void) {
    const char *path = getenv("BENCH_MALLOC_COUNT_FILE");
    if (!path || !*path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (ftruncate(fd, 4096) != 0) {
        close(fd);
        return;
    }
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED) g_counts = p;
}

static inline void count(int slot, size_t bytes) {
    __atomic_fetch_add(&g_counts[slot], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&g_counts[5], bytes, __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
    count(0, n);
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b) {
    count(1, a * b);
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    count(2, n);
    return __libc_realloc(p, n);
}

void free(void *p) {
    if (p) __atomic_fetch_add(&g_counts[4], 1, __ATOMIC_RELAXED);
    __libc_free(p);
}

void *memalign(size_t align, size_t n) {
    count(3, n);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    count(3, n);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    count(3, n);
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n) {
    count(3, n);
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}
