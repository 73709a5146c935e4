#define _GNU_SOURCE
#include "CConnectPluginPosix.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int cp_errno(void) { return errno; }
const char *cp_strerror(int err) { return strerror(err); }

static uint32_t to_epoll(uint32_t ev) {
    uint32_t out = 0;
    if (ev & CP_EV_READ) out |= EPOLLIN | EPOLLRDHUP;
    if (ev & CP_EV_WRITE) out |= EPOLLOUT;
    return out;
}

int cp_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cp_epoll_add(int epfd, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = to_epoll(events);
    ev.data.u64 = token;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int cp_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = to_epoll(events);
    ev.data.u64 = token;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int cp_epoll_del(int epfd, int fd) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) < 0 ? -errno : 0;
}

int cp_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    if (max < 1) return 0;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = 0;
        if (evs[i].events & EPOLLIN) e |= CP_EV_READ;
        if (evs[i].events & EPOLLOUT) e |= CP_EV_WRITE;
        if (evs[i].events & (EPOLLHUP | EPOLLRDHUP)) e |= CP_EV_HUP;
        if (evs[i].events & EPOLLERR) e |= CP_EV_ERR;
        tokens[i] = evs[i].data.u64;
        events[i] = e;
    }
    return n;
}

int cp_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cp_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    return n < 0 ? -errno : 0;
}

void cp_eventfd_drain(int fd) {
    uint64_t v;
    while (read(fd, &v, sizeof v) > 0) {}
}

static void format_addr(const struct sockaddr *sa, char *out, size_t out_len) {
    char host[INET6_ADDRSTRLEN] = {0};
    if (!out || out_len == 0) return;
    out[0] = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, out_len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, out_len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

int cp_listen_tcp(const char *host, int port, int backlog, char *bound, size_t bound_len) {
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16];
    int last = -EADDRNOTAVAIL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo((host && host[0]) ? host : NULL, portstr, &hints, &res);
    if (rc != 0) return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { last = -errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
            last = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) format_addr((struct sockaddr *)&ss, bound, bound_len);
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    return last;
}

int cp_listen_unix(const char *path, int backlog) {
    struct sockaddr_un sun;
    struct stat st;
    if (!path || strlen(path) >= sizeof sun.sun_path) return -ENAMETOOLONG;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int cp_accept(int listen_fd) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cp_peer_host(int fd, char *out, size_t out_len) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN + 4] = {0};
    if (!out || out_len == 0) return -EINVAL;
    out[0] = 0;
    memset(&ss, 0, sizeof ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) return -errno;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
            inet_ntop(AF_INET, &a.s6_addr[12], host, sizeof host);
        } else if ((a.s6_addr[0] & 0xE0) == 0x20) {
            /* Global unicast (2000::/3): a subscriber usually holds a whole /64. */
            memset(&a.s6_addr[8], 0, 8);
            inet_ntop(AF_INET6, &a, host, INET6_ADDRSTRLEN);
            strcat(host, "/64");
        } else {
            /* Loopback, link-local, unique local: one host per address, as with IPv4. */
            inet_ntop(AF_INET6, &a, host, INET6_ADDRSTRLEN);
        }
    } else {
        return 0;
    }
    snprintf(out, out_len, "%s", host);
    return 1;
}

int cp_connect_tcp(const char *host, int port, int *in_progress) {
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16];
    int last = -ECONNREFUSED;
    *in_progress = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { last = -errno; continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) { freeaddrinfo(res); return fd; }
        if (errno == EINPROGRESS) { *in_progress = 1; freeaddrinfo(res); return fd; }
        last = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return last;
}

int cp_connect_unix(const char *path, int *in_progress) {
    struct sockaddr_un sun;
    *in_progress = 0;
    if (!path || strlen(path) >= sizeof sun.sun_path) return -ENAMETOOLONG;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) return fd;
    if (errno == EINPROGRESS || errno == EAGAIN) { *in_progress = 1; return fd; }
    int e = -errno;
    close(fd);
    return e;
}

int cp_connect_result(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return -err;
}

ssize_t cp_read(int fd, void *buf, size_t len) {
    ssize_t n = read(fd, buf, len);
    return n < 0 ? -errno : n;
}

ssize_t cp_write(int fd, const void *buf, size_t len) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(fd, buf, len);
    return n < 0 ? -errno : n;
}

int cp_close(int fd) { return close(fd) < 0 ? -errno : 0; }
int cp_shutdown_write(int fd) { return shutdown(fd, SHUT_WR) < 0 ? -errno : 0; }
int cp_set_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ? -errno : 0;
}

uint64_t cp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cp_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int cp_set_thread_name(const char *name) {
    char cut[16];
    if (!name) return -EINVAL;
    snprintf(cut, sizeof cut, "%s", name);
    int rc = pthread_setname_np(pthread_self(), cut);
    return rc == 0 ? 0 : -rc;
}
