//! Operations on a pidfd: wait, exit-status recovery, signals, readiness.
//!
//! See [pidfd_open(2)](https://man7.org/linux/man-pages/man2/pidfd_open.2.html),
//! [waitid(2)](https://man7.org/linux/man-pages/man2/waitid.2.html) and
//! [pidfd_send_signal(2)](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// Whether [`wait`] may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    Yes,
    No,
}

/// `waitid(P_PIDFD, fd, WEXITED | __WALL [| WNOHANG])`: reaps the child if
/// it has exited and returns its raw wait status (`code << 8`, or the
/// signal number with `0x80` for a core dump).
///
/// `__WALL` is required: a child whose exec failed still has
/// `exit_signal = 0`, which plain `WEXITED` does not see.
///
/// Returns `Ok(None)` with [`Block::No`] when the child is still running.
///
/// # Errors
///
/// `ECHILD` when the process was reaped by someone else (or is not our
/// child); other errors from waitid(2).
pub(crate) fn wait(fd: BorrowedFd<'_>, block: Block) -> io::Result<Option<i32>> {
    let mut flags = libc::WEXITED | libc::__WALL;
    if block == Block::No {
        flags |= libc::WNOHANG;
    }
    waitid_reap(libc::P_PIDFD, fd.as_raw_fd() as libc::id_t, flags)
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOWAIT | __WALL)`: blocks until the
/// process has exited, without reaping it (its zombie keeps pinning its pid
/// and group number). Returns `false` if it was reaped meanwhile (`ECHILD`).
///
/// Callers block here without any lock, then reap with [`wait`] and
/// [`Block::No`] under their reaping lock: a blocking reap would have to
/// hold that lock for as long as the child runs.
///
/// # Errors
///
/// From waitid(2), other than `EINTR` (retried) and `ECHILD`.
pub(crate) fn wait_exited(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match waitid_nowait(fd, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r,
        }
    }
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOWAIT | __WALL | extra)`, once:
/// `Ok(true)` if the process is unreaped (with `WNOHANG`: running or a
/// zombie; without: a zombie), `Ok(false)` if someone reaped it
/// (`ECHILD`). Errors, `EINTR` included, from waitid(2).
fn waitid_nowait(fd: BorrowedFd<'_>, extra: i32) -> io::Result<bool> {
    // SAFETY: all-zero siginfo_t is valid.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | libc::__WALL | extra;
    // SAFETY: valid out-pointer; P_PIDFD takes the fd as id.
    let r = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            fd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ECHILD) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `waitid(idtype, id, flags)` retried on `EINTR`; the raw wait status of
/// the process it reaped, or `None` if nothing was (with `WNOHANG`).
fn waitid_reap(idtype: libc::idtype_t, id: libc::id_t, flags: i32) -> io::Result<Option<i32>> {
    loop {
        // SAFETY: siginfo_t is plain data and all-zero is a valid value,
        // which also makes `si_pid == 0` mean "nothing reaped" with WNOHANG.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitid(idtype, id, &mut info, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed).
        let pid = unsafe { info.si_pid() };
        // SAFETY: as above.
        let status = unsafe { info.si_status() };
        if pid == 0 {
            return Ok(None);
        }
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_KILLED => status & 0x7f,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => return Err(io::Error::other("waitid returned an unexpected si_code")),
        };
        return Ok(Some(raw));
    }
}

/// `struct pidfd_info`, first version (64 bytes), from `linux/pidfd.h`.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const PIDFD_INFO_EXIT: u64 = 0x8;
/// `_IOWR(0xFF, 11, struct pidfd_info)` with the 64-byte struct.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// The answer of [`exit_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitInfo {
    /// The raw wait status recorded by the kernel at exit.
    Status(i32),
    /// The kernel has this feature but has not recorded an exit (yet).
    NotYet,
    /// This kernel cannot report exit statuses through pidfds (before 6.15).
    Unsupported,
}

static EXIT_INFO_SUPPORT: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

/// Forces [`exit_info`] to answer `Unsupported`, as on a kernel before 6.15.
/// Only for tests of the documented fallback.
pub(crate) fn disable_exit_info() {
    EXIT_INFO_SUPPORT.store(2, Ordering::Relaxed);
}

/// `ioctl(pidfd, PIDFD_GET_INFO)` asking for `PIDFD_INFO_EXIT` (Linux 6.15):
/// the exit status of a process, available even after another reaper took
/// it.
pub(crate) fn exit_info(fd: BorrowedFd<'_>) -> ExitInfo {
    if EXIT_INFO_SUPPORT.load(Ordering::Relaxed) == 2 {
        return ExitInfo::Unsupported;
    }
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: `info` is a writable 64-byte pidfd_info matching the size
    // encoded in the request number.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) };
    if r == -1 {
        let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return match e {
            // No such ioctl on this kernel (before 6.13).
            libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP => {
                EXIT_INFO_SUPPORT.store(2, Ordering::Relaxed);
                ExitInfo::Unsupported
            }
            // Gone, and no exit recorded yet: a concurrent reaper is still
            // between taking the zombie and releasing it.
            _ => ExitInfo::NotYet,
        };
    }
    if info.mask & PIDFD_INFO_EXIT != 0 {
        EXIT_INFO_SUPPORT.store(1, Ordering::Relaxed);
        ExitInfo::Status(info.exit_code)
    } else {
        // Before 6.15 the bit is never set; callers retry a bounded number
        // of times and then report the status as unavailable.
        ExitInfo::NotYet
    }
}

/// `pidfd_send_signal(fd, sig, NULL, flags)`.
///
/// # Errors
///
/// `ESRCH` once the process has exited (zombie or reaped): the pidfd refers
/// to that process only, so the signal can never reach another one.
pub(crate) fn send_signal(fd: BorrowedFd<'_>, sig: i32, flags: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments and a null siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            core::ptr::null::<libc::siginfo_t>(),
            flags,
        )
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether an error from `pidfd_send_signal` means the call itself was
/// refused (`ENOSYS`: an old kernel or a seccomp profile; `EPERM`: a
/// seccomp profile or valgrind) rather than the process being gone.
/// Callers then fall back to `kill(2)` by number, and only while the
/// process is known unreaped. (`EPERM` can also be a real permission
/// problem; `kill(2)` then reports the same.)
pub(crate) fn signal_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
}

/// `kill(pid, sig)` by number, with its error. Callers must prove the
/// number cannot have been recycled: it names an unreaped child of ours,
/// checked under the reaping lock.
pub(crate) fn kill_checked(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9): signal the process group the
/// pidfd's process leads, by its `struct pid`.
pub(crate) const PIDFD_SIGNAL_PROCESS_GROUP: u32 = 4;

/// Waits until `fd` is readable (the process exited) or `timeout` passes
/// (`None`: forever); `ppoll(2)` with nanosecond timeout. Returns whether it
/// is readable. `EINTR` returns `Ok(false)` early; callers loop on their
/// deadline.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match rustix::event::poll(&mut fds, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

static GROUP_SIGNAL: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

/// Whether `pidfd_send_signal(.., PIDFD_SIGNAL_PROCESS_GROUP)` works
/// (Linux 6.9); learnt from the first attempt.
pub(crate) fn group_signal_supported() -> bool {
    GROUP_SIGNAL.load(Ordering::Relaxed) != 2
}

/// Forces the pre-6.9 path. Tests only.
pub(crate) fn disable_group_signal() {
    GROUP_SIGNAL.store(2, Ordering::Relaxed);
}

/// Signals the process group led by the pidfd's process, by its `struct
/// pid`: `pidfd_send_signal(fd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP)`.
/// Works after the leader was reaped and can never reach a recycled group.
///
/// Returns `Ok(false)` if the kernel does not know the flag (then nothing
/// was sent), `Ok(true)` if sent or if the group is empty (`ESRCH`).
pub(crate) fn send_group_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<bool> {
    if !group_signal_supported() {
        return Ok(false);
    }
    match send_signal(fd, sig, PIDFD_SIGNAL_PROCESS_GROUP) {
        Ok(()) => {
            GROUP_SIGNAL.store(1, Ordering::Relaxed);
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(true),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL)
                && GROUP_SIGNAL.load(Ordering::Relaxed) == 0 =>
        {
            GROUP_SIGNAL.store(2, Ordering::Relaxed);
            Ok(false)
        }
        // Refused (seccomp, valgrind): behave as before 6.9 from now on,
        // where groups are signalled by number while the leader is unreaped.
        Err(e) if signal_refused(&e) => {
            GROUP_SIGNAL.store(2, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Whether the pidfd's process group has any member left (signal 0 by
/// `struct pid`). Only meaningful where [`group_signal_supported`].
pub(crate) fn group_has_members(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match send_signal(fd, 0, PIDFD_SIGNAL_PROCESS_GROUP) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `kill(pid, sig)` by number. Callers must prove the number cannot have
/// been recycled (see the containment module). Returns whether it was sent.
pub(crate) fn kill_by_number(pid: i32, sig: i32) -> bool {
    // SAFETY: plain integer arguments.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOHANG | WNOWAIT | __WALL)`: whether the
/// process is still unreaped (running or zombie), without reaping it.
/// `Ok(false)` means someone reaped it (`ECHILD`).
pub(crate) fn is_unreaped(fd: BorrowedFd<'_>) -> io::Result<bool> {
    waitid_nowait(fd, libc::WNOHANG)
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | __WALL)`: reaps `pid` if it is a
/// zombie child. By number: callers only pass children not yet reaped
/// (whose numbers cannot be recycled).
pub(crate) fn reap_pid_nohang(pid: i32) -> io::Result<Option<i32>> {
    waitid_reap(
        libc::P_PID,
        pid as libc::id_t,
        libc::WEXITED | libc::WNOHANG | libc::__WALL,
    )
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Whether `pidfd_open` may be called on the calling thread.
///
/// Yes without a seccomp filter (`Seccomp: 0` in
/// `/proc/thread-self/status`). Under a filter (a container's profile) it
/// usually is allowed, or refused with an errno, but a filter may also
/// kill the process on it, and what a filter does cannot be read. So the
/// call is first tried in a throwaway copy of the thread (see
/// [`probe_open_in_a_copy`]): allowed if it worked there, or failed with
/// anything but a refusal ([`open_refused`]); not if it was refused or
/// killed the copy, or the copy could not be made. The answer is kept per
/// thread for its filters as `/proc` shows them (mode and, since 5.9,
/// their count: filters can be added, never removed, so the same count is
/// the same filters).
pub(crate) fn open_allowed() -> bool {
    thread_local! {
        static PROBED: std::cell::Cell<Option<((u8, u32), bool)>> =
            const { std::cell::Cell::new(None) };
    }
    let key = seccomp_state();
    if key == Some((0, 0)) {
        return true;
    }
    if let (Some(key), Some((k, allowed))) = (key, PROBED.get()) {
        if k == key {
            return allowed;
        }
    }
    let allowed = match probe_open_in_a_copy() {
        Some(result) => result,
        None => return false, // unknown: probe again next time
    };
    if let Some(key) = key {
        PROBED.set(Some((key, allowed)));
    }
    allowed
}

/// The calling thread's seccomp mode and filter count (`u32::MAX` if the
/// kernel does not show it, before 5.9), from `/proc/thread-self/status`.
fn seccomp_state() -> Option<(u8, u32)> {
    let text = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let mode: u8 = field("Seccomp:")?.parse().ok()?;
    let count = field("Seccomp_filters:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if mode == 0 { 0 } else { u32::MAX });
    Some((mode, count))
}

/// Whether an error from `pidfd_open` means the call was refused (`ENOSYS`
/// before 5.3 or from a seccomp filter, `EPERM`/`EACCES` from a filter or
/// an LSM) rather than the process being gone or the fds running out.
pub(crate) fn open_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES)
    )
}

/// Tries `pidfd_open` in a fork-style copy of the calling thread, which
/// has the thread's seccomp filters (see
/// [`child_exec::probe_pidfd_open`](super::child_exec::probe_pidfd_open)).
/// `Some(true)`: it was not refused; `Some(false)`: refused, by an errno
/// or by a filter that kills (the copy died of `SIGSYS`); `None`: unknown,
/// not to be remembered (no copy could be made, a foreign reaper took it,
/// or it died of another signal, such as the OOM killer's `SIGKILL`).
///
/// The copy is made with `clone(2)` `CLONE_PIDFD` and exit signal 0 (no
/// SIGCHLD reaches the host, only a `__WALL` wait sees it) and waited for
/// through its pidfd (`P_PIDFD`), which never reaches another process
/// however soon its pid is reused. It is registered with the orphan
/// reaper (under its spawn gate) until it has been seen to exit, so an
/// orphan pass does not take its status. Every signal is blocked in the
/// thread around the clone, so the copy starts with all of them blocked.
///
/// # Caveats
///
/// Where `CLONE_PIDFD` is refused (a seccomp profile, valgrind) or
/// unknown (before 5.2), the copy is made without it and waited for by
/// pid; its final reap is then `WNOHANG`, so it never waits for a process
/// that got the pid after a foreign `waitpid(-1)` reaper took the copy.
fn probe_open_in_a_copy() -> Option<bool> {
    let (pid, pidfd) = clone_probe_copy()?;
    let wait = |flags: i32| match &pidfd {
        Some(fd) => match waitid_reap(libc::P_PIDFD, fd.as_raw_fd() as libc::id_t, flags) {
            // `P_PIDFD` is 5.4, `CLONE_PIDFD` 5.2: wait by pid on 5.2-5.3.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                waitid_reap(libc::P_PID, pid as libc::id_t, flags)
            }
            r => r,
        },
        None => waitid_reap(libc::P_PID, pid as libc::id_t, flags),
    };
    // Wait without reaping, unregister (the copy is still ours), then reap
    // it unless someone else has. `ECHILD`: a foreign reaper took it.
    let seen = wait(libc::WEXITED | libc::WNOWAIT | libc::__WALL);
    crate::reaper::unregister(pid as u32);
    let raw = seen.ok()??;
    let _ = wait(libc::WEXITED | libc::WNOHANG | libc::__WALL);
    probe_verdict(raw)
}

/// Makes the probe copy (which runs `probe_pidfd_open` and never returns
/// here): its pid, registered with the orphan reaper, and its pidfd if
/// the kernel gave one.
fn clone_probe_copy() -> Option<(i32, Option<OwnedFd>)> {
    let _gate = crate::reaper::spawn_gate();
    let _mask = super::signals::BlockAll::new(0);
    let mut pidfd: i32 = -1;
    let mut r = clone_copy(libc::CLONE_PIDFD as usize, &mut pidfd);
    if matches!(
        -r as i32,
        libc::EINVAL | libc::EPERM | libc::ENOSYS | libc::EACCES
    ) {
        r = clone_copy(0, &mut pidfd);
    }
    if r < 0 {
        return None;
    }
    crate::reaper::register(r as u32);
    // SAFETY: with CLONE_PIDFD the kernel wrote a new fd that nothing else
    // owns; -1 (the flag unknown, before 5.2) means no fd.
    let fd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Some((r as i32, fd))
}

/// `clone(flags)`, fork-style, exit signal 0; in the copy, runs
/// `probe_pidfd_open`. The pid, or `-errno`.
fn clone_copy(flags: usize, pidfd: &mut i32) -> isize {
    let pidfd = pidfd as *mut i32 as usize;
    // Where the pidfd goes: `parent_tid`, the third argument, except on
    // s390x (CLONE_BACKWARDS2), whose first two arguments are swapped.
    #[cfg(not(target_arch = "s390x"))]
    let args = [flags, 0, pidfd, 0, 0, 0];
    #[cfg(target_arch = "s390x")]
    let args = [0, flags, pidfd, 0, 0, 0];
    // SAFETY: a fork-style clone (no CLONE_VM, CLONE_FILES or
    // CLONE_SIGHAND): the copy has its own memory, fd table and handlers,
    // starts with every signal blocked, and runs only `probe_pidfd_open`,
    // which never returns. `pidfd` points to a live i32 the kernel may fill.
    let r = unsafe { super::raw::syscall6(libc::SYS_clone, args) };
    if r == 0 {
        super::child_exec::probe_pidfd_open();
    }
    r
}

/// What the probe copy's raw wait status says about `pidfd_open`: it
/// exited with 0 or an errno that is not a refusal (`Some(true)`), with a
/// refusal's errno or of `SIGSYS`, a seccomp kill or trap (`Some(false)`),
/// or it died of another signal, which says nothing of the filters
/// (`None`).
fn probe_verdict(raw: i32) -> Option<bool> {
    if libc::WIFEXITED(raw) {
        let errno = libc::WEXITSTATUS(raw);
        Some(errno == 0 || !open_refused(&io::Error::from_raw_os_error(errno)))
    } else if libc::WIFSIGNALED(raw) && libc::WTERMSIG(raw) == libc::SIGSYS {
        Some(false)
    } else {
        None
    }
}

/// Makes every later probe copy die of `SIGKILL` before it tries
/// `pidfd_open` (as if the OOM killer had picked it), or stops that.
pub(crate) fn kill_probe_copies(on: bool) {
    KILL_PROBE_COPIES.store(on, Ordering::Relaxed);
}

/// See [`kill_probe_copies`]; read by the copy, in its own memory.
pub(crate) static KILL_PROBE_COPIES: AtomicBool = AtomicBool::new(false);

/// Waits for `POLLPRI` (a kernfs file such as `cgroup.events` changed) or
/// the timeout.
pub(crate) fn poll_priority(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    match rustix::event::poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
