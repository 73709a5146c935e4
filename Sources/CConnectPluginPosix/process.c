#define _GNU_SOURCE
#include "CConnectPluginProcess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int cp_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int cp_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

int cp_spawn(const char *path, char *const argv[], char *const envp[], int search_path,
             int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd, int *pid_out) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all, none;
    int rc;
    if (!path || !argv || !pid_out) return -EINVAL;
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) return -rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -rc;
    }
    /* dup2 clears close-on-exec on the target, so the child keeps exactly 0, 1, 2 (and what the
       caller left inheritable). */
    if (rc == 0 && stdin_fd >= 0) rc = posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    if (rc == 0 && stdout_fd >= 0) rc = posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
    if (rc == 0 && stderr_fd >= 0) rc = posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
    if (rc == 0 && cwd) rc = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    sigfillset(&all);
    sigemptyset(&none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    if (rc == 0) {
        pid_t pid = 0;
        char *const *env = envp ? envp : environ;
        rc = search_path ? posix_spawnp(&pid, path, &fa, &attr, argv, env)
                         : posix_spawn(&pid, path, &fa, &attr, argv, env);
        if (rc == 0) *pid_out = (int)pid;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? 0 : -rc;
}

int cp_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (fd < 0) return -errno;
    /* pidfd_open sets close-on-exec itself (PIDFD_CLOEXEC is implied). */
    return (int)fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

int cp_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
#else
    (void)pidfd;
    (void)sig;
    return -ENOSYS;
#endif
}

int cp_kill(int pid, int sig) {
    return kill((pid_t)pid, sig) < 0 ? -errno : 0;
}

int cp_wait_exit(int pid, int *exited, int *code) {
    int status = 0;
    pid_t r;
    do {
        r = waitpid((pid_t)pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (r == 0) return 0;
    if (WIFEXITED(status)) {
        if (exited) *exited = 1;
        if (code) *code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        if (exited) *exited = 0;
        if (code) *code = WTERMSIG(status);
    } else {
        /* Stopped/continued are not reported without WUNTRACED/WCONTINUED. */
        return 0;
    }
    return 1;
}
