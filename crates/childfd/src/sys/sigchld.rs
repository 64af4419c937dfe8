//! The orphan reaper's wake-up: a SIGCHLD handler that writes to a pipe.
//!
//! An orphan re-parented to this process gives no notice until it exits,
//! and then only SIGCHLD. `signalfd(2)` would need SIGCHLD blocked in every
//! thread of the process, which a library cannot arrange; a handler that
//! writes to a pipe works with any mask. It is installed only while
//! SIGCHLD is at its default action (which discards it), never over a
//! handler of the program's, and removed again by [`uninstall`].
//!
//! The handler writes only after checking that the number it remembers
//! still is the pipe's write end ([`CheckedPipe`]: a pipe has an inode of
//! its own, which an eventfd has not): a host that closed every fd and
//! opened its own files at our numbers never gets our bytes. When the check
//! fails, the handler instead sends SIGCHLD to the reaper thread
//! (tgkill(2)), whose sleep then ends with `EINTR`, and the thread makes a
//! new pipe ([`checked_wake`]) and looks for orphans at once.
//!
//! See [sigaction(2)](https://man7.org/linux/man-pages/man2/sigaction.2.html),
//! [pipe(2)](https://man7.org/linux/man-pages/man2/pipe.2.html) and
//! [tgkill(2)](https://man7.org/linux/man-pages/man2/tgkill.2.html).

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use super::checked_pipe::CheckedPipe;
use super::fork::PerProcess;

/// What the handler writes to, with the process that made it.
#[derive(Debug)]
struct Wake {
    pid: i32,
    pipe: CheckedPipe,
}

/// The current [`Wake`], or null until one is made. Published as one
/// pointer, so a handler never pairs one pipe's number with another's
/// inode; a replaced one is never freed (a handler may be reading it).
static WAKE: AtomicPtr<Wake> = AtomicPtr::new(core::ptr::null_mut());
/// The reaper thread to wake when the pipe is not ours any more, as
/// `pid << 32 | tid`; 0 if none.
static THREAD: AtomicU64 = AtomicU64::new(0);
/// Whether the handler installed is ours (by [`install`]).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// `gettid(2)`, async-signal-safe.
fn gettid() -> i32 {
    // SAFETY: no arguments, no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The handler: writes one byte to the wake pipe if its number still is
/// ours, else wakes the reaper thread with SIGCHLD. Async-signal-safe
/// (getpid, fstat, fcntl, write, gettid, tgkill), and keeps the
/// interrupted code's errno.
extern "C" fn on_sigchld(_sig: libc::c_int) {
    // SAFETY: a published `Wake` is never freed.
    let Some(wake) = (unsafe { WAKE.load(Ordering::Acquire).as_ref() }) else {
        return;
    };
    // A `fork()`ed copy inherits the handler, but the numbers are only
    // remembered from the parent.
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    if wake.pid != pid || wake.pipe.notify() {
        return;
    }
    let thread = THREAD.load(Ordering::Acquire);
    let tid = thread as u32 as i32;
    if (thread >> 32) as i32 != pid || tid == 0 || tid == gettid() {
        // In the reaper thread itself, its sleep ends with EINTR anyway.
        return;
    }
    // SAFETY: no preconditions; returns this thread's errno slot.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: `slot` is valid for this thread's lifetime.
    let errno = unsafe { *slot };
    // SAFETY: a thread of this very process (pid checked above); SIGCHLD
    // runs this handler there, which returns without sending again.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGCHLD) };
    // SAFETY: as above.
    unsafe { *slot = errno };
}

/// The process's wake-up pipe, checked just now: made on first use, and
/// made anew (and published to the handler) when either end's number no
/// longer names it. A replaced pipe's read end is closed only if it still
/// checks out, its write end never (a handler may be about to write to
/// it). A `fork()`ed copy makes its own; the parent's numbers are neither
/// used nor closed there (the copy may have reused them).
///
/// # Errors
///
/// From pipe2(2) or fstat(2).
pub(crate) fn checked_wake() -> io::Result<CheckedPipe> {
    static CURRENT: PerProcess<Mutex<Option<CheckedPipe>>> = PerProcess::new();
    let mut cur = CURRENT
        .get(|| Mutex::new(None), |_| {})
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = *cur {
        if p.intact() {
            return Ok(p);
        }
    }
    let new = CheckedPipe::new()?;
    let wake = Box::new(Wake {
        pid: super::env::getpid(),
        pipe: new,
    });
    WAKE.store(Box::into_raw(wake), Ordering::Release);
    if let Some(old) = cur.replace(new) {
        old.close(true);
    }
    Ok(new)
}

/// Names the calling thread as the one the handler wakes when the pipe is
/// not ours any more ([`clear_thread`] undoes it).
pub(crate) fn set_thread() {
    let pid = super::env::getpid() as u32;
    THREAD.store(
        (u64::from(pid) << 32) | u64::from(gettid() as u32),
        Ordering::Release,
    );
}

/// Undoes [`set_thread`] if the calling thread is the one named.
pub(crate) fn clear_thread() {
    let me = (u64::from(super::env::getpid() as u32) << 32) | u64::from(gettid() as u32);
    let _ = THREAD.compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire);
}

/// The calling thread's id, for [`kick`].
pub(crate) fn thread_id() -> i32 {
    gettid()
}

/// Ends a sleep of thread `tid` of this process with `EINTR` by sending it
/// SIGCHLD, if our handler is installed (which does nothing else there
/// than check the pipe). False if it is not (nothing was sent).
pub(crate) fn kick(tid: i32) -> bool {
    if tid == 0 || !still_installed() {
        return false;
    }
    let pid = super::env::getpid();
    // SAFETY: tgkill has no memory preconditions; the pid is ours, so the
    // signal reaches no other process.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGCHLD) == 0 }
}

/// The current SIGCHLD action.
fn current() -> io::Result<libc::sigaction> {
    // SAFETY: plain data, all-zero is valid; filled in by sigaction.
    let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a null new action only reads the current one.
    if unsafe { libc::sigaction(libc::SIGCHLD, core::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// Installs the wake-up handler if SIGCHLD is at its default action and no
/// handler of ours is installed. Returns whether this call installed it
/// (then the caller calls [`uninstall`] when done).
///
/// # Errors
///
/// From pipe2(2) or sigaction(2).
pub(crate) fn install() -> io::Result<bool> {
    checked_wake()?;
    if current()?.sa_sigaction != libc::SIG_DFL || INSTALLED.swap(true, Ordering::AcqRel) {
        return Ok(false);
    }
    // SAFETY: plain data, all-zero is valid; every field is set below.
    let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
    act.sa_sigaction = on_sigchld as extern "C" fn(libc::c_int) as usize;
    // SA_RESTART: interrupted restartable calls in other threads resume.
    // SA_NOCLDSTOP: no wake-up for stopped or continued children.
    act.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
    // SAFETY: `act.sa_mask` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: a fully initialised action for a valid signal.
    if unsafe { libc::sigaction(libc::SIGCHLD, &act, core::ptr::null_mut()) } != 0 {
        INSTALLED.store(false, Ordering::Release);
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Whether our handler is still the SIGCHLD action (the program may have
/// replaced it since).
pub(crate) fn still_installed() -> bool {
    current().is_ok_and(|a| a.sa_sigaction == on_sigchld as extern "C" fn(libc::c_int) as usize)
}

/// Puts SIGCHLD back to its default action if our handler is still there.
pub(crate) fn uninstall() {
    if still_installed() {
        // SAFETY: plain data, all-zero is valid (SIG_DFL, empty mask).
        let act: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: a fully initialised action for a valid signal.
        unsafe { libc::sigaction(libc::SIGCHLD, &act, core::ptr::null_mut()) };
    }
    INSTALLED.store(false, Ordering::Release);
}
