/* The raw ways to spawn, as C programs do them: the baselines that
 * `cargo xtask bench` compares childfd with, in the same process run.
 * Each serial function spawns `path` (no arguments, our environment)
 * and waits for it, `n` times; returns 0, or -errno on the first failure.
 * They are thread-safe (each call has its own child stack). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Every way passes the process's own environment, as childfd, std and
 * tokio do by default: the work of copying it (and, for a dynamically
 * linked child, of the loader and locale reading it) is the same for all. */
extern char **environ;

struct exec_arg { const char *path; };

static int exec_child(void *p) {
    const char *path = ((struct exec_arg *)p)->path;
    char *argv[] = {(char *)path, NULL};
    execve(path, argv, environ);
    _exit(127);
}

/* The same, for a child cloned with CLONE_FILES: first take a private
 * copy of fds 0-2 only (close_range(3, ~0, CLOSE_RANGE_UNSHARE)), so the
 * parent's other fds are neither copied nor closed again by execve. */
static int exec_child_unshare(void *p) {
    if (syscall(SYS_close_range, 3, ~0U, 2 /* CLOSE_RANGE_UNSHARE */) != 0) _exit(126);
    return exec_child(p);
}

#define STACK (64 * 1024)

/* The child stack of this thread, mapped once and reused, as childfd
 * reuses its own: the baseline must not pay an mmap per spawn. */
static __thread char *thread_stack;

static char *child_stack(void) {
    if (!thread_stack) {
        char *s = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (s == MAP_FAILED) return NULL;
        thread_stack = s;
    }
    return thread_stack;
}

/* n serial clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD [| CLONE_FILES]) +
 * waitid(P_PIDFD); with `files`, the child unshares fds 0-2 only. */
static int clone_pidfd_serial(const char *path, int n, int files) {
    char *stack = child_stack();
    if (!stack) return -ENOMEM;
    struct exec_arg a = {path};
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (files ? CLONE_FILES : 0);
    for (int i = 0; i < n; i++) {
        int pidfd = -1;
        int pid = clone(files ? exec_child_unshare : exec_child, stack + STACK, flags, &a, &pidfd);
        if (pid < 0) return -errno;
        siginfo_t si;
        if (waitid(P_PIDFD, pidfd, &si, WEXITED | __WALL) < 0) { int e = errno; close(pidfd); return -e; }
        close(pidfd);
        if (si.si_code != CLD_EXITED || si.si_status != 0) return -ECHILD;
    }
    return 0;
}

/* clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) + waitid(P_PIDFD): the limit. */
int cb_clone_vm_pidfd(const char *path, int n) { return clone_pidfd_serial(path, n, 0); }

/* The same with CLONE_FILES, the child unsharing only fds 0-2: the limit
 * without the copy of the fd table. */
int cb_clone_files_pidfd(const char *path, int n) { return clone_pidfd_serial(path, n, 1); }

/* vfork + execve + waitpid. */
int cb_vfork(const char *path, int n) {
    for (int i = 0; i < n; i++) {
        char *argv[] = {(char *)path, NULL};
        pid_t pid = vfork();
        if (pid == 0) { execve(path, argv, environ); _exit(127); }
        if (pid < 0) return -errno;
        int st;
        if (waitpid(pid, &st, 0) < 0) return -errno;
    }
    return 0;
}

/* fork + execve + waitpid: copies the page tables. */
int cb_fork(const char *path, int n) {
    for (int i = 0; i < n; i++) {
        char *argv[] = {(char *)path, NULL};
        pid_t pid = fork();
        if (pid == 0) { execve(path, argv, environ); _exit(127); }
        if (pid < 0) return -errno;
        int st;
        if (waitpid(pid, &st, 0) < 0) return -errno;
    }
    return 0;
}

/* posix_spawn + waitpid (glibc: clone(CLONE_VM | CLONE_VFORK) inside). */
int cb_posix_spawn(const char *path, int n) {
    for (int i = 0; i < n; i++) {
        char *argv[] = {(char *)path, NULL};
        pid_t pid;
        int r = posix_spawn(&pid, path, NULL, NULL, argv, environ);
        if (r != 0) return -r;
        int st;
        if (waitpid(pid, &st, 0) < 0) return -errno;
    }
    return 0;
}

/* k children in flight: spawn all, then reap each as it exits.
 * way: 0 clone_vm_pidfd and 4 clone_files_pidfd (reaped by pidfd, in
 * spawn order), 1 vfork, 2 fork, 3 posix_spawn (reaped with waitpid(-1)). */
int cb_inflight(int way, const char *path, int k) {
    char *argv[] = {(char *)path, NULL};
    int *pidfds = NULL;
    char *stack = NULL;
    struct exec_arg a = {path};
    int by_pidfd = way == 0 || way == 4;
    if (by_pidfd) {
        pidfds = malloc(sizeof(int) * k);
        stack = child_stack();
        if (!pidfds || !stack) return -ENOMEM;
    }
    int spawned = 0, err = 0;
    for (; spawned < k; spawned++) {
        pid_t pid;
        if (by_pidfd) {
            int fd = -1;
            if (way == 0)
                pid = clone(exec_child, stack + STACK, CLONE_VM | CLONE_VFORK | CLONE_PIDFD, &a, &fd);
            else
                pid = clone(exec_child_unshare, stack + STACK, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_FILES, &a, &fd);
            pidfds[spawned] = fd;
        } else if (way == 1) {
            pid = vfork();
            if (pid == 0) { execve(path, argv, environ); _exit(127); }
        } else if (way == 2) {
            pid = fork();
            if (pid == 0) { execve(path, argv, environ); _exit(127); }
        } else {
            int r = posix_spawn(&pid, path, NULL, NULL, argv, environ);
            if (r != 0) { errno = r; pid = -1; }
        }
        if (pid < 0) { err = -errno; break; }
    }
    for (int i = 0; i < spawned; i++) {
        if (by_pidfd) {
            siginfo_t si;
            waitid(P_PIDFD, pidfds[i], &si, WEXITED | __WALL);
            close(pidfds[i]);
        } else {
            int st;
            waitpid(-1, &st, __WALL);
        }
    }
    if (by_pidfd) free(pidfds);
    return err;
}
