/*
 * test_support.h — the test framework shared by the forked C test programs (test_abi.c,
 * test_interceptor.c): CHECK macros, EXPECT_ST (a status and its owned error object), time helpers,
 * and run_tests, which runs each test in its own forked process with a time limit (CTESTS_FILTER,
 * CTESTS_NO_FORK, CTESTS_TIMEOUT) and runs LeakSanitizer's check in the child under ASan.
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

/*
 * Calls fn(args..., &error) and checks: the status is @p want; on success the error was set to NULL;
 * on failure an error object came back with the same status and a message. Frees the error.
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
    if (got == CONNECTPLUGIN_OK) {
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

static pid_t g_child;
static void on_alarm(int sig) {
    (void)sig;
    if (g_child > 0) kill(g_child, SIGKILL);
}

/* Defined only when built with -fsanitize=address (scripts/sanitize.sh): _exit skips the leak check
   LeakSanitizer runs at exit, so a forked test runs it itself; nonzero when it found leaks. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Runs one test in a child process; returns true if it passed. */
static bool run_forked(const test_case *t, int timeout_s) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return false;
    }
    if (pid == 0) {
        t->fn();
        fflush(NULL);
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
            fprintf(stderr, "    FAIL [%s] LeakSanitizer found leaks (report above)\n", t->name);
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
        fprintf(stderr, "    FAIL [%s] %s (signal %d)\n", t->name,
                WTERMSIG(status) == SIGKILL ? "timed out" : "crashed", WTERMSIG(status));
        return false;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Runs every test of @p tests (one forked process each unless CTESTS_NO_FORK), prints the summary
   line and returns the exit status. */
static int run_tests(const test_case *tests, size_t count) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *filter = getenv("CTESTS_FILTER");
    bool no_fork = getenv("CTESTS_NO_FORK") && strcmp(getenv("CTESTS_NO_FORK"), "0") != 0;
    int timeout_s = getenv("CTESTS_TIMEOUT") ? atoi(getenv("CTESTS_TIMEOUT")) : 60;
    if (timeout_s <= 0) timeout_s = 60;
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        const test_case *t = &tests[i];
        if (filter && !strstr(t->name, filter)) continue;
        g_test_name = t->name;
        bool ok;
        if (no_fork) {
            int before = atomic_load(&g_check_failures);
            t->fn();
            ok = atomic_load(&g_check_failures) == before;
        } else {
            ok = run_forked(t, timeout_s);
        }
        printf("%s - %s\n", ok ? "ok  " : "FAIL", t->name);
        if (ok) passed++;
        else failed++;
    }
    printf("c-tests: %d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

#endif /* CONNECTPLUGIN_TEST_SUPPORT_H */
