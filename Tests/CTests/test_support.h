/*
 * test_support.h — the test framework shared by the forked C test programs (test_abi.c,
 * test_interceptor.c, test_stream.c): CHECK macros, EXPECT_ST / CALL_ST (a status and its owned
 * error object), time helpers, and run_tests / run_timed_tests, which run each test in its own forked
 * process with a time limit and run LeakSanitizer's check in the child under ASan. Environment:
 *   CTESTS_FILTER=substr   run only the tests whose name contains substr
 *   CTESTS_NO_FORK=1       run everything in one process (for gdb/valgrind)
 *   CTESTS_TIMEOUT=sec     per-test time limit (default 60; a timed test's own minimum wins)
 *   CTESTS_SKIP=a,b        do not run these tests (listed as "skip")
 * Header-only: include it once, after <connectplugin.h> and the system headers, from the one .c file
 * of a test program.
 */
#ifndef CONNECTPLUGIN_TEST_SUPPORT_H
#define CONNECTPLUGIN_TEST_SUPPORT_H

#include <connectplugin.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------- */
/* Test framework                                                                                 */
/* ---------------------------------------------------------------------------------------------- */

static atomic_int g_check_failures;
static const char *g_test_name = "";

static bool check_impl(bool ok, const char *expr, int line) {
    if (!ok) {
        atomic_fetch_add(&g_check_failures, 1);
        fprintf(stderr, "    FAIL [%s] line %d: %s\n", g_test_name, line, expr);
    }
    return ok;
}
#define CHECK(cond) check_impl((cond), #cond, __LINE__)
#define CHECK_MSG(cond, ...)                                                                                     \
    do {                                                                                                         \
        if (!check_impl((cond), #cond, __LINE__)) {                                                              \
            fprintf(stderr, "      ");                                                                           \
            fprintf(stderr, __VA_ARGS__);                                                                        \
            fprintf(stderr, "\n");                                                                               \
        }                                                                                                        \
    } while (0)

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }
#define CHECK_STR(got, want)                                                                                     \
    do {                                                                                                         \
        const char *g_ = (got);                                                                                  \
        const char *w_ = (want);                                                                                 \
        CHECK_MSG(streq(g_, w_), "got \"%s\", want \"%s\"", g_ ? g_ : "(null)", w_);                             \
    } while (0)

/* CHECK that evaluates to the condition and names the context @p what (a string) on failure. */
__attribute__((unused)) static bool check_what(bool ok, const char *expr, const char *what, int line) {
    if (!check_impl(ok, expr, line)) fprintf(stderr, "      (%s)\n", what);
    return ok;
}
#define CHECK_MSG_BOOL(cond, what) check_what((cond), #cond, (what), __LINE__)

/*
 * Calls fn(args..., &error) and checks: the status is @p want; on success (OK, or EOF: the end of a
 * stream) the error was set to NULL; on failure an error object came back with the same status and a
 * message. Frees the error.
 */
static char g_sentinel_storage;
#define ERR_SENTINEL ((connectplugin_error *)&g_sentinel_storage)
static _Thread_local connectplugin_error *g_err;

static bool expect_status_impl(connectplugin_status want, const char *what, int line, connectplugin_status got,
                               connectplugin_error **errp) {
    connectplugin_error *err = *errp;
    *errp = NULL;
    bool ok = true;
    if (got != want) {
        ok = false;
        fprintf(stderr, "    FAIL [%s] line %d: %s returned %d (%s), want %d (%s); message: %s\n", g_test_name, line,
                what, got, connectplugin_status_string(got), want, connectplugin_status_string(want),
                err && err != ERR_SENTINEL ? connectplugin_error_message(err) : "(no error object)");
    }
    if (got == CONNECTPLUGIN_OK || got == CONNECTPLUGIN_EOF) {
        if (err != NULL) {
            ok = false;
            fprintf(stderr, "    FAIL [%s] line %d: %s succeeded but did not set *out_error to NULL\n", g_test_name,
                    line, what);
        }
    } else if (err == NULL || err == ERR_SENTINEL) {
        ok = false;
        fprintf(stderr, "    FAIL [%s] line %d: %s failed (%d) without an error object\n", g_test_name, line, what, got);
    } else {
        if (connectplugin_error_status(err) != got) {
            ok = false;
            fprintf(stderr, "    FAIL [%s] line %d: %s: error_status %d != returned status %d\n", g_test_name, line,
                    what, connectplugin_error_status(err), got);
        }
        if (connectplugin_error_message(err) == NULL) {
            ok = false;
            fprintf(stderr, "    FAIL [%s] line %d: %s: error message is NULL\n", g_test_name, line, what);
        }
    }
    if (err != ERR_SENTINEL) connectplugin_error_free(err);
    if (!ok) atomic_fetch_add(&g_check_failures, 1);
    return ok;
}
/* EXPECT_ST(CONNECTPLUGIN_OK, connectplugin_server_start, server) calls connectplugin_server_start(server, &err). */
#define EXPECT_ST(want, fn, ...) (g_err = ERR_SENTINEL, expect_status_impl((want), #fn, __LINE__, fn(__VA_ARGS__, &g_err), &g_err))

/* Like EXPECT_ST, but the error (if any) is handed back in *out for more checks (caller frees). */
#define CALL_ST(out, fn, ...) (*(out) = ERR_SENTINEL, fn(__VA_ARGS__, (out)))

/* Checks inside handlers (on library threads): a failure is counted in the handler state's
   `atomic_int handler_failures` (the test checks it is 0 at the end) and printed. */
__attribute__((unused)) static void handler_check_impl(atomic_int *failures, bool ok, const char *what, int line) {
    if (!ok) {
        atomic_fetch_add(failures, 1);
        fprintf(stderr, "    FAIL [%s] handler line %d: %s\n", g_test_name, line, what);
    }
}
#define HCHECK(st, cond) handler_check_impl(&(st)->handler_failures, (cond), #cond, __LINE__)

/* Runs fn(args..., &err) in a handler and records a failure unless the status is OK. */
__attribute__((unused)) static bool handler_ok_impl(atomic_int *failures, connectplugin_status status,
                                                    connectplugin_error *err, const char *what, int line) {
    if (status != CONNECTPLUGIN_OK) {
        atomic_fetch_add(failures, 1);
        fprintf(stderr, "    FAIL [%s] handler line %d: %s: %s: %s\n", g_test_name, line, what,
                connectplugin_status_string(status), connectplugin_error_message(err));
    }
    connectplugin_error_free(err);
    return status == CONNECTPLUGIN_OK;
}
#define HOK(st, fn, ...)                                                                                         \
    do {                                                                                                         \
        connectplugin_error *e_ = NULL;                                                                          \
        connectplugin_status s_ = fn(__VA_ARGS__, &e_);                                                          \
        handler_ok_impl(&(st)->handler_failures, s_, e_, #fn, __LINE__);                                         \
    } while (0)

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}


typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* A test that may need longer than CTESTS_TIMEOUT's default: it gets at least min_timeout_s. */
typedef struct timed_test_case {
    const char *name;
    void (*fn)(void);
    int min_timeout_s;
} timed_test_case;

static pid_t g_child;
static void on_alarm(int sig) {
    (void)sig;
    if (g_child > 0) kill(g_child, SIGKILL);
}

/* Defined only when built with -fsanitize=address (scripts/sanitize.sh): _exit skips the leak check
   LeakSanitizer runs at exit, so a forked test runs it itself; nonzero when it found leaks. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Runs one test in a child process; returns true if it passed. */
static bool run_forked(const char *name, void (*fn)(void), int timeout_s) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid == 0) {
        fn();
        fflush(NULL);
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
            fprintf(stderr, "    FAIL [%s] LeakSanitizer found leaks (report above)\n", name);
            _exit(1);
        }
        _exit(atomic_load(&g_check_failures) == 0 ? 0 : 1);
    }
    g_child = pid;
    alarm((unsigned)timeout_s);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    alarm(0);
    g_child = 0;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "    FAIL [%s] %s (signal %d)\n", name,
                WTERMSIG(status) == SIGKILL ? "timed out" : "crashed", WTERMSIG(status));
        return false;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* CTESTS_SKIP="a,b": tests not to run (the sanitizer stage skips the volume and memory-bound tests). */
static bool test_skipped(const char *name) {
    const char *list = getenv("CTESTS_SKIP");
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return true;
        p = end ? end + 1 : p + len;
    }
    return false;
}

/* The settings of a run (from the environment) and its tally. */
typedef struct test_run {
    const char *filter;
    bool no_fork;
    int timeout_s;
    int passed, failed;
} test_run;

static test_run test_run_begin(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_run r = {0};
    r.filter = getenv("CTESTS_FILTER");
    r.no_fork = getenv("CTESTS_NO_FORK") && strcmp(getenv("CTESTS_NO_FORK"), "0") != 0;
    r.timeout_s = getenv("CTESTS_TIMEOUT") ? atoi(getenv("CTESTS_TIMEOUT")) : 60;
    if (r.timeout_s <= 0) r.timeout_s = 60;
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return r;
}

/* Runs one test unless the filter or CTESTS_SKIP leaves it out, and prints its line. */
static void test_run_one(test_run *r, const char *name, void (*fn)(void), int min_timeout_s) {
    if (r->filter && !strstr(name, r->filter)) return;
    if (test_skipped(name)) {
        printf("skip - %s (CTESTS_SKIP)\n", name);
        return;
    }
    g_test_name = name;
    bool ok;
    int64_t t0 = now_ms();
    if (r->no_fork) {
        int before = atomic_load(&g_check_failures);
        fn();
        ok = atomic_load(&g_check_failures) == before;
    } else {
        ok = run_forked(name, fn, r->timeout_s > min_timeout_s ? r->timeout_s : min_timeout_s);
    }
    printf("%s - %s (%.1f s)\n", ok ? "ok  " : "FAIL", name, (double)(now_ms() - t0) / 1000.0);
    if (ok) r->passed++;
    else r->failed++;
}

/* Prints the summary line and returns the exit status. */
static int test_run_end(const test_run *r) {
    printf("c-tests: %d passed, %d failed\n", r->passed, r->failed);
    return r->failed == 0 && r->passed > 0 ? 0 : 1;
}

/* Runs every test of @p tests (one forked process each unless CTESTS_NO_FORK), prints the summary
   line and returns the exit status. */
__attribute__((unused)) static int run_tests(const test_case *tests, size_t count) {
    test_run r = test_run_begin();
    for (size_t i = 0; i < count; i++) test_run_one(&r, tests[i].name, tests[i].fn, 0);
    return test_run_end(&r);
}

/* run_tests for tests with their own minimum time limits. */
__attribute__((unused)) static int run_timed_tests(const timed_test_case *tests, size_t count) {
    test_run r = test_run_begin();
    for (size_t i = 0; i < count; i++) test_run_one(&r, tests[i].name, tests[i].fn, tests[i].min_timeout_s);
    return test_run_end(&r);
}

#endif /* CONNECTPLUGIN_TEST_SUPPORT_H */
