// Signals for the plugin side of the runtime: SIGTERM and SIGINT turned into a byte on a pipe (the
// only async-signal-safe way to hand them to a thread), and the file-descriptor plumbing that keeps
// a plugin's own writes to fd 1 and fd 2 off the handshake channel.
#ifndef CCONNECTPLUGIN_SIGNALS_H
#define CCONNECTPLUGIN_SIGNALS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Makes `signo` write one byte (the signal number) to `write_fd` instead of its default action.
   Up to 8 signals; the previous action is saved for cp_signal_restore. Returns 0 or -errno. */
int cp_signal_to_pipe(int signo, int write_fd);
/* Restores the action saved by cp_signal_to_pipe for `signo`. */
int cp_signal_restore(int signo);
/* (cp_pipe and cp_set_nonblocking are in CConnectPluginProcess.h.) */
/* dup with close-on-exec, and dup2; -errno on error. */
int cp_dup_cloexec(int fd);
int cp_dup2(int from, int to);
/* Blocking full write (EINTR retried). Returns 0 or -errno. */
int cp_write_all(int fd, const void *buf, unsigned long len);

#ifdef __cplusplus
}
#endif
#endif
