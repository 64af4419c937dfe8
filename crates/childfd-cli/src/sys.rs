//! The command's only `unsafe`: the signal mask around terminal hand-over,
//! and taking a file descriptor number from the command line.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Runs `f` with SIGTTOU blocked in this thread
/// ([pthread_sigmask(3)](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)):
/// `tcsetpgrp` from a background process group raises SIGTTOU, which
/// would stop childfd just when it takes its terminal back. A blocked
/// SIGTTOU is not raised for `tcsetpgrp`
/// ([termios(3)](https://man7.org/linux/man-pages/man3/termios.3.html)).
pub fn with_sigttou_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data; all-zero is a valid value that
    // sigemptyset then initialises.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut set, libc::SIGTTOU) };
    // SAFETY: reads `set`, writes `old`; affects only this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    let r = f();
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    r
}

/// Blocks SIGTTOU in the calling thread for the rest of its life: a
/// thread that writes to childfd's terminal while the program holds the
/// foreground (`stty tostop`) then writes instead of stopping childfd.
pub fn block_sigttou_in_this_thread() {
    // SAFETY: sigset_t is plain data; all-zero is a valid value that
    // sigemptyset then initialises.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut set, libc::SIGTTOU) };
    // SAFETY: reads `set`; affects only this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()) };
}

/// A close-on-exec duplicate of descriptor `n`, which the caller named on
/// the command line (`--json-fd N`): `fcntl(n, F_DUPFD_CLOEXEC, 3)`
/// ([fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html)).
/// Fails with `EBADF` if `n` is not open.
pub fn dup_fd(n: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; an invalid
    // `n` gives EBADF.
    let r = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}
