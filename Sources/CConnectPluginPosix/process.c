#define _GNU_SOURCE
#include "CConnectPluginProcess.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
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

static int cp_dup_to(int fd, int target) {
    if (fd < 0) return 0;
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) ? -1 : 0;
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

int cp_spawn_ex(const char *path, char *const argv[], char *const envp[], int search_path,
                int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd, int death_signal, int *pid_out) {
    int errpipe[2];
    pid_t parent, pid;
    int child_errno = 0;
    ssize_t n;
    if (death_signal == 0) return cp_spawn(path, argv, envp, search_path, stdin_fd, stdout_fd, stderr_fd, cwd, pid_out);
    if (!path || !argv || !pid_out) return -EINVAL;
    if (pipe2(errpipe, O_CLOEXEC) < 0) return -errno;
    parent = getpid();
    pid = fork();
    if (pid < 0) {
        int e = errno;
        close(errpipe[0]);
        close(errpipe[1]);
        return -e;
    }
    if (pid == 0) {
        /* The child: async-signal-safe calls only. */
        sigset_t none;
        struct sigaction dfl;
        int sig, e;
        char *const *env = envp ? envp : environ;
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)death_signal, 0, 0, 0) < 0) goto fail;
        if (getppid() != parent) raise(death_signal);
        if (cp_dup_to(stdin_fd, 0) < 0 || cp_dup_to(stdout_fd, 1) < 0 || cp_dup_to(stderr_fd, 2) < 0) goto fail;
        if (cwd && chdir(cwd) < 0) goto fail;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (sig = 1; sig < 65; sig++) {
            if (sig != SIGKILL && sig != SIGSTOP) (void)sigaction(sig, &dfl, NULL);
        }
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        if (search_path) execvpe(path, argv, env);
        else execve(path, argv, env);
    fail:
        e = errno;
        (void)!write(errpipe[1], &e, sizeof e);
        _exit(127);
    }
    close(errpipe[1]);
    do {
        n = read(errpipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -(child_errno ? child_errno : EIO);
    }
    *pid_out = (int)pid;
    return 0;
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
