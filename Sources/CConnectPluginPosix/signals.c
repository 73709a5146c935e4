#define _GNU_SOURCE
#include "CConnectPluginSignals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define CP_MAX_SIGNALS 8

static struct {
    int signo;
    struct sigaction previous;
} saved[CP_MAX_SIGNALS];
static volatile sig_atomic_t signal_fds[65];

static void on_signal(int signo) {
    int saved_errno = errno;
    if (signo > 0 && signo < 65) {
        int fd = signal_fds[signo];
        if (fd > 0) {
            unsigned char b = (unsigned char)signo;
            ssize_t r = write(fd, &b, 1);
            (void)r;
        }
    }
    errno = saved_errno;
}

int cp_signal_to_pipe(int signo, int write_fd) {
    if (signo <= 0 || signo >= 65 || write_fd < 0) return -EINVAL;
    int slot = -1;
    for (int i = 0; i < CP_MAX_SIGNALS; i++) {
        if (saved[i].signo == signo) { slot = i; break; }
        if (slot < 0 && saved[i].signo == 0) slot = i;
    }
    if (slot < 0) return -ENOSPC;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    /* SA_ONSTACK: the signal may land on a thread of a Go host with a small stack (Go requires it of C handlers). */
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    signal_fds[signo] = write_fd;
    struct sigaction prev;
    if (sigaction(signo, &sa, &prev) != 0) return -errno;
    if (saved[slot].signo != signo) {
        saved[slot].signo = signo;
        saved[slot].previous = prev;
    }
    return 0;
}

int cp_signal_restore(int signo) {
    for (int i = 0; i < CP_MAX_SIGNALS; i++) {
        if (saved[i].signo == signo) {
            int rc = sigaction(signo, &saved[i].previous, NULL);
            saved[i].signo = 0;
            if (signo > 0 && signo < 65) signal_fds[signo] = 0;
            return rc == 0 ? 0 : -errno;
        }
    }
    return -ENOENT;
}

int cp_dup_cloexec(int fd) {
    int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return r >= 0 ? r : -errno;
}

int cp_dup2(int from, int to) { return dup2(from, to) >= 0 ? 0 : -errno; }

int cp_write_all(int fd, const void *buf, unsigned long len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (unsigned long)n;
    }
    return 0;
}
