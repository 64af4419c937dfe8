//! The orphan reaper's wake-up: a SIGCHLD handler that writes to an
//! eventfd.
//!
//! An orphan re-parented to this process gives no notice until it exits,
//! and then only SIGCHLD. `signalfd(2)` would need SIGCHLD blocked in every
//! thread of the process, which a library cannot arrange; a handler that
//! writes to an eventfd works with any mask. It is installed only while
//! SIGCHLD is at its default action (which discards it), never over a
//! handler of the program's, and removed again by [`uninstall`].
//!
//! See [sigaction(2)](https://man7.org/linux/man-pages/man2/sigaction.2.html)
//! and [eventfd(2)](https://man7.org/linux/man-pages/man2/eventfd.2.html).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::fork::PerProcess;

/// The eventfd the handler writes to and the process that made it, as
/// `pid << 32 | fd`; 0 until made. One word, so that a handler never pairs
/// one process's pid with another's fd.
static WAKE: AtomicU64 = AtomicU64::new(0);
/// Whether the handler installed is ours (by [`install`]).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The handler: adds 1 to the eventfd. Async-signal-safe (one `write`),
/// and keeps the interrupted code's errno.
extern "C" fn on_sigchld(_sig: libc::c_int) {
    let wake = WAKE.load(Ordering::Acquire);
    let (pid, fd) = ((wake >> 32) as i32, wake as u32 as i32);
    // A `fork()`ed copy inherits the handler, but the fd number is only
    // remembered from the parent: the copy may have closed it and opened a
    // file of its own there, which must never get our 8 bytes.
    // SAFETY: getpid has no preconditions and is async-signal-safe.
    if wake == 0 || unsafe { libc::getpid() } != pid {
        return;
    }
    // SAFETY: no preconditions; returns this thread's errno slot.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: `slot` is valid for this thread's lifetime.
    let errno = unsafe { *slot };
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd that is never
    // closed (see `wake_fd`).
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    // SAFETY: as above.
    unsafe { *slot = errno };
}

/// The process's wake-up eventfd (non-blocking), made once per process
/// and never closed: a handler running in another thread may be about to
/// write to it, and a closed number could be reused by an unrelated file.
/// A `fork()`ed copy makes its own; the parent's number is neither used
/// nor closed there (the copy may have reused it).
pub(crate) fn wake_fd() -> io::Result<BorrowedFd<'static>> {
    static FD: PerProcess<OnceLock<OwnedFd>> = PerProcess::new();
    let cell = FD.get(OnceLock::new, |_| {});
    if let Some(fd) = cell.get() {
        return Ok(fd.as_fd());
    }
    let made = rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?;
    let fd = cell.get_or_init(|| made);
    let pid = super::env::getpid() as u32;
    WAKE.store(
        (u64::from(pid) << 32) | u64::from(fd.as_raw_fd() as u32),
        Ordering::Release,
    );
    Ok(fd.as_fd())
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
/// From eventfd(2) or sigaction(2).
pub(crate) fn install() -> io::Result<bool> {
    wake_fd()?;
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

/// Empties the eventfd (it is non-blocking).
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

/// Adds 1 to an eventfd, waking its poller.
pub(crate) fn notify(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}
