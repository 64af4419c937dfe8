//! Writing to a pipe without raising SIGPIPE in the caller.
//!
//! `write(2)` to a pipe whose read end is closed fails with `EPIPE` *and*
//! sends SIGPIPE to the writing thread. Rust programs ignore SIGPIPE, but a
//! C host, or a Rust program built to keep the default (`-Zon-broken-pipe`),
//! dies of it. `send(MSG_NOSIGNAL)` works on sockets only, and setting the
//! disposition to `SIG_IGN` would change it for the whole process.
//!
//! So the write runs with SIGPIPE blocked in the calling thread only
//! (`pthread_sigmask`); the signal the kernel then raises stays pending in
//! that thread, and `sigtimedwait(2)` with a zero timeout takes it before
//! the mask is restored. A SIGPIPE that was already pending before the
//! write is left alone (it would have been delivered anyway). When the
//! caller had SIGPIPE blocked already, the signal this write raised is
//! taken all the same: left pending, it would kill the caller the moment it
//! unblocks SIGPIPE. Cost: two `rt_sigprocmask` calls and one
//! `rt_sigpending` per write, plus one `rt_sigtimedwait` on `EPIPE`.
//!
//! See [pthread_sigmask(3)](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
//! and [sigtimedwait(2)](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The set holding only SIGPIPE.
fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid value, and
    // sigemptyset/sigaddset initialise it properly.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above; SIGPIPE is a valid signal number.
    unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) };
    set
}

/// `write(2)` that returns `EPIPE` (`BrokenPipe`) without SIGPIPE ever
/// reaching a handler or the default action in this process.
///
/// # Errors
///
/// From write(2), with `EINTR` retried.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let set = sigpipe_set();
    // SAFETY: plain data, all-zero is valid; filled in by pthread_sigmask.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid sigset_t pointers; affects only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    // SAFETY: `old` was filled in by the kernel above.
    let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    let pending_before = sigpipe_pending();
    let result = loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes; `fd` is
        // open for the duration of the call (borrowed).
        let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if r >= 0 {
            break Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            break Err(e);
        }
    };
    let broken = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE));
    if broken && !pending_before {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid set and timespec; a null siginfo is allowed.
        // Takes the SIGPIPE this write raised (EAGAIN if none).
        unsafe { libc::sigtimedwait(&set, core::ptr::null_mut(), &zero) };
    }
    if !was_blocked {
        // SAFETY: restores the mask returned by the kernel above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    }
    result
}

/// Whether SIGPIPE is pending for this thread or the process.
fn sigpipe_pending() -> bool {
    // SAFETY: plain data; filled in by sigpending.
    let mut pending: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::sigpending(&mut pending) };
    // SAFETY: `pending` was filled in by the kernel.
    unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
}
