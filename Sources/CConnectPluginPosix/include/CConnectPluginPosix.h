// Thin wrappers over Linux system calls whose C shapes Swift imports poorly (packed epoll_event,
// sockaddr unions, errno). Everything returns -errno style results or plain values; nothing aborts.
#ifndef CCONNECTPLUGIN_POSIX_H
#define CCONNECTPLUGIN_POSIX_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CP_EV_READ 1u
#define CP_EV_WRITE 2u
#define CP_EV_HUP 4u
#define CP_EV_ERR 8u

int cp_errno(void);
const char *cp_strerror(int err);

/* epoll: events are CP_EV_* bits; `token` comes back with every event (edge-triggered off). */
int cp_epoll_create(void);
int cp_epoll_add(int epfd, int fd, uint32_t events, uint64_t token);
int cp_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token);
int cp_epoll_del(int epfd, int fd);
/* Waits; fills tokens[i]/events[i]; returns count, 0 on timeout, -errno on error (EINTR → 0). */
int cp_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

int cp_eventfd(void);
int cp_eventfd_signal(int fd);
void cp_eventfd_drain(int fd);

/* Sockets. All created non-blocking and close-on-exec. Return fd or -errno. */
int cp_listen_tcp(const char *host, int port, int backlog, char *bound, size_t bound_len);
int cp_listen_unix(const char *path, int backlog);
int cp_accept(int listen_fd);
/* The remote host of a connected socket, for grouping connections by peer: an IPv4 or IPv6
   address, except that a global unicast IPv6 address is cut to its /64 ("2001:db8:1:2::/64"; one
   subscriber usually holds a whole /64); IPv4-mapped addresses are written as IPv4. Returns 1 for
   TCP (host written), 0 for a Unix socket or another family (out is ""), -errno on error. */
int cp_peer_host(int fd, char *out, size_t out_len);
/* Starts a non-blocking connect; returns fd (connect may still be in progress) or -errno.
   *in_progress is set to 1 when the caller must wait for writability then call cp_connect_result. */
int cp_connect_tcp(const char *host, int port, int *in_progress);
int cp_connect_unix(const char *path, int *in_progress);
int cp_connect_result(int fd);
ssize_t cp_read(int fd, void *buf, size_t len);   /* -errno on error, 0 on EOF */
ssize_t cp_write(int fd, const void *buf, size_t len); /* -errno on error; MSG_NOSIGNAL */
int cp_close(int fd);
int cp_shutdown_write(int fd);
int cp_set_nodelay(int fd);

/* Monotonic clock in nanoseconds. */
uint64_t cp_now_ns(void);
/* Number of online CPUs (>= 1). */
int cp_cpu_count(void);
/* Names the calling thread (shown by top -H, gdb, /proc/PID/task/TID/comm and sanitizer reports);
   a name longer than 15 bytes is cut to 15. Returns 0 or -errno. */
int cp_set_thread_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
