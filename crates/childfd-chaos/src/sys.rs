//! The raw system calls of the chaos harness: signals, fork, fd juggling,
//! pidfds. Every unsafe block of the crate lives here.
// (unsafe allowed here only: see main.rs)

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `kill(2)`; whether the signal was sent.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// `setsid(2)`.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `getpgrp(2)`.
pub fn getpgrp() -> i32 {
    // SAFETY: getpgrp has no preconditions.
    unsafe { libc::getpgrp() }
}

/// `getpid(2)` (the pid in this process's PID namespace).
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn set_pdeathsig(sig: i32) {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
pub fn set_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// `waitpid(pid, flags | __WALL)`: `(pid, raw status)`, `None` for
/// nothing (WNOHANG) or an error (ECHILD).
pub fn waitpid(pid: i32, flags: i32) -> Option<(i32, i32)> {
    let mut st = 0;
    // SAFETY: `st` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, flags | libc::__WALL) };
    (r > 0).then_some((r, st))
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: a raw syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: on success the kernel returned a new fd that we now own.
    (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`; whether it was sent.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> bool {
    // SAFETY: a raw syscall on a live fd; the info pointer may be NULL.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// `poll(2)` for readability of `fd` for up to `ms` milliseconds: a pidfd
/// is readable once its process has exited. A poll interrupted by a
/// handled signal (EINTR: the orphan reaper's SIGCHLD, the chaos's own
/// signals) is resumed for the rest of the time, never taken for "not
/// readable".
pub fn readable(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms.max(0) as u64);
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so a wait never ends before its deadline.
        let left = left.as_micros().div_ceil(1000) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return r > 0;
        }
    }
}

/// `open(path, O_RDONLY [| O_CLOEXEC])`: a raw fd the caller owns
/// (deliberately without `O_CLOEXEC` when `cloexec` is false: a spawned
/// child must still never see it).
pub fn open_raw(path: &str, cloexec: bool) -> Option<RawFd> {
    let c = CString::new(path).ok()?;
    let flags = libc::O_RDONLY | if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    (fd >= 0).then_some(fd)
}

/// `dup2(from, to)`; `to` must be an fd number the caller owns (or a free
/// one it then owns).
pub fn dup2(from: RawFd, to: RawFd) -> bool {
    // SAFETY: dup2 on numbers the caller owns; no memory is involved.
    unsafe { libc::dup2(from, to) >= 0 }
}

/// `fcntl(F_DUPFD, min)`: a duplicate of `fd` at the lowest free number
/// at or above `min`.
pub fn dup_at_least(fd: RawFd, min: RawFd) -> Option<RawFd> {
    // SAFETY: fcntl with integer arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD, min) };
    (r >= 0).then_some(r)
}

/// `close(fd)` of an fd the caller owns.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd`; nothing else uses the number.
    unsafe { libc::close(fd) };
}

/// `close_range(first, last, 0)` of fds the caller owns.
pub fn close_range(first: u32, last: u32) -> bool {
    // SAFETY: a raw syscall with integer arguments; the caller owns the range.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) == 0 }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    l.rlim_cur = l.rlim_max;
    // SAFETY: a valid rlimit pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
    // SAFETY: a valid rlimit pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    l.rlim_cur
}

/// `fork(2)`: runs `copy` in the forked copy, which then `_exit`s with
/// the code it returned; returns the copy's pid in the parent.
///
/// The copy has only the calling thread. It is sound as the chaos uses
/// it: the caller holds `chaos::ENV_FORK`, so no thread holds std's
/// environment write lock; glibc's malloc is fork-safe; the copy prints
/// nothing (std's stdout lock may be held); any other lock it takes is
/// childfd's own, whose fork-safety is what is under test (a copy that
/// hangs on one is reported and killed).
pub fn fork_then(copy: impl FnOnce() -> i32) -> io::Result<i32> {
    // SAFETY: see above; the copy never returns into the caller's frames.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        exit_now(copy());
    }
    Ok(pid)
}

/// Starts `exe` with the environment `env` and stdout on `stdout`, by
/// `fork` + `execve` (in a process group of its own if `own_group`); the
/// pid. Not `posix_spawn` or a vfork-style clone: those hold the calling
/// thread until the child execs, and a SIGTSTP sent to the caller's group
/// in between stops the child before its exec and the caller for ever.
/// With fork the caller returns at once and a stopped child can be
/// continued.
pub fn fork_exec(
    exe: &CString,
    env: &[CString],
    stdout: BorrowedFd<'_>,
    own_group: bool,
) -> io::Result<i32> {
    let argv = [exe.as_ptr(), std::ptr::null()];
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let out = stdout.as_raw_fd();
    // SAFETY: the child calls only async-signal-safe functions on data
    // prepared before the fork (no allocation, no locks), then execs or
    // `_exit`s.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        if own_group {
            // SAFETY: async-signal-safe, integer arguments.
            unsafe { libc::setpgid(0, 0) };
        }
        // SAFETY: async-signal-safe; `out` is open in the copy.
        unsafe { libc::dup2(out, 1) };
        let cloexec = libc::CLOSE_RANGE_CLOEXEC;
        // SAFETY: async-signal-safe, integer arguments.
        unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, cloexec) };
        // SAFETY: NUL-terminated strings and NULL-terminated arrays built
        // before the fork, alive until the exec.
        unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        exit_now(127);
    }
    Ok(pid)
}

/// `_exit(code)`: no atexit handlers, no stdio flush.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `write(2)` of all of `buf` to an fd the caller owns (best effort).
pub fn write_all(fd: RawFd, buf: &[u8]) {
    // SAFETY: a valid buffer of the given length.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// `std::env::set_var`, from a thread racing every other use of the
/// environment in the process, as a misbehaving host does.
pub fn set_env(key: &str, val: &str) {
    // SAFETY: std serialises its own environment accesses with its lock;
    // the point of the chaos is that childfd must not read `environ`
    // outside that lock (it copies it under the lock before a spawn).
    unsafe { std::env::set_var(key, val) };
}

/// `std::env::remove_var`; as [`set_env`].
pub fn remove_env(key: &str) {
    // SAFETY: as in `set_env`.
    unsafe { std::env::remove_var(key) };
}

/// Counts of handled signals, by number.
pub static HANDLED: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];

/// The fd a decoy reports its signals to (one byte per signal).
static REPORT_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn count_signal(sig: libc::c_int) {
    if let Some(c) = HANDLED.get(sig as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let fd = REPORT_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = [sig as u8];
        // SAFETY: write(2) is async-signal-safe; a valid one-byte buffer.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

/// Installs a handler that counts `sig` in [`HANDLED`] (and reports it to
/// the fd set with [`report_signals_to`]).
pub fn handle(sig: i32) -> bool {
    // SAFETY: an all-zero sigaction is a valid value of the C struct.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: a valid sigset pointer.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: a valid sigaction; the handler only touches atomics and
    // calls write(2), both async-signal-safe.
    unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0 }
}

/// Makes the signal handler write each signal's number as one byte to `fd`.
pub fn report_signals_to(fd: RawFd) {
    REPORT_FD.store(fd, Ordering::Relaxed);
}

/// `pause(2)` forever.
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system call a thread of this process is in (`/proc`), if any.
    fn in_syscall(tid: i32) -> Option<i64> {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
        s.split(' ').next()?.parse().ok()
    }

    fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < end, "not within 10 s: {what}");
            std::thread::yield_now();
        }
    }

    /// A forked copy's report pipe was polled while the orphan reaper's
    /// SIGCHLD handler ran: poll returned EINTR and the harness reported
    /// a healthy copy as hung (and SIGKILLed it mid-spawn).
    #[test]
    fn readable_resumes_a_poll_interrupted_by_a_handled_signal() {
        assert!(handle(libc::SIGUSR2));
        let (rd, mut wr) = std::io::pipe().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let poller = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            tx.send((tid, me)).unwrap();
            readable(std::os::fd::AsFd::as_fd(&rd), 20_000)
        });
        let (tid, thread) = rx.recv().unwrap();
        let in_poll = || in_syscall(tid) == Some(libc::SYS_poll);
        eventually("the poller is in poll", in_poll);
        let before = HANDLED[libc::SIGUSR2 as usize].load(Ordering::Relaxed);
        // SAFETY: `thread` is alive: it cannot return before the pipe is
        // written or 20 s have passed.
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR2) }, 0);
        eventually("the handler ran", || {
            HANDLED[libc::SIGUSR2 as usize].load(Ordering::Relaxed) > before
        });
        // The old poll returned at once: the thread never polls again.
        let resumed = {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                if in_poll() {
                    break true;
                }
                if poller.is_finished() || Instant::now() > end {
                    break false;
                }
                std::thread::yield_now();
            }
        };
        // (EPIPE if the old poller gave up and closed its end.)
        let _ = std::io::Write::write_all(&mut wr, b"x");
        let ready = poller.join().unwrap();
        assert!(resumed, "poll was not resumed after EINTR");
        assert!(ready, "readable() said no although the pipe got a byte");
    }
}
