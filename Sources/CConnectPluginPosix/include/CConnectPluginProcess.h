// Child processes and pipes: posix_spawn, pidfd (Linux 5.3+), reaping, pipe creation. Results are
// -errno style like the rest of the shims; nothing here installs a signal handler (no SIGCHLD).
#ifndef CCONNECTPLUGIN_PROCESS_H
#define CCONNECTPLUGIN_PROCESS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A pipe, both ends close-on-exec: fds[0] reads, fds[1] writes. 0 or -errno. */
int cp_pipe(int fds[2]);
/* Sets or clears O_NONBLOCK. 0 or -errno. */
int cp_set_nonblocking(int fd, int on);

/* Starts `path` with `argv` (NULL-terminated; argv[0] is the program name) and `envp`
   (NULL-terminated; NULL = this process's environment). `search_path` != 0 looks `path` up in PATH
   when it has no slash. The child's stdin/stdout/stderr are dup'ed from `stdin_fd`/`stdout_fd`/
   `stderr_fd` (-1 = inherit this process's). `cwd` NULL = this process's working directory. The
   child starts with every signal at its default disposition and an empty signal mask. On success
   returns 0 and stores the pid; else -errno (ENOENT: no such program). */
int cp_spawn(const char *path, char *const argv[], char *const envp[], int search_path,
             int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd, int *pid_out);

/* As cp_spawn, but with fork/exec so that the child gets `death_signal` (e.g. SIGKILL) as its
   parent-death signal (Linux PR_SET_PDEATHSIG; 0 = none, then this is cp_spawn). The kernel sends it
   when the *thread* that called this exits, so call it from a thread that lives as long as the
   process. The child checks that the parent is still there right after prctl (else it raises the
   signal itself). Between fork and exec only async-signal-safe calls run; an exec failure comes
   back through a close-on-exec pipe as -errno. */
int cp_spawn_ex(const char *path, char *const argv[], char *const envp[], int search_path,
                int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd, int death_signal, int *pid_out);

/* A pidfd for a child (readable once it exited), close-on-exec. fd or -errno (-ENOSYS: kernel too old). */
int cp_pidfd_open(int pid);
/* Sends `sig` through a pidfd (never to a recycled pid). 0 or -errno. */
int cp_pidfd_send_signal(int pidfd, int sig);
/* Sends `sig` to `pid`. 0 or -errno. */
int cp_kill(int pid, int sig);
/* Reaps `pid` if it ended, without blocking: 1 with *exited = 1 and *code = the exit status, or
   *exited = 0 and *code = the signal that ended it; 0 while it runs; -errno (ECHILD: not our child
   or already reaped, e.g. when SIGCHLD is ignored). */
int cp_wait_exit(int pid, int *exited, int *code);

#ifdef __cplusplus
}
#endif
#endif
