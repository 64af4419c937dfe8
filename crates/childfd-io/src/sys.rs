//! The crate's only `unsafe`: writing to a pipe without SIGPIPE, and
//! comparing two threads' fd tables.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `write(2)` to a pipe that may have no reader left, without raising
/// SIGPIPE in the host: SIGPIPE is blocked in this thread around the
/// write, and if the write raised it (`EPIPE`), the pending signal is
/// consumed with `sigtimedwait` before the mask is restored. A SIGPIPE
/// that was already pending before is left alone.
pub fn write_no_sigpipe(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: sigset_t is plain data; all-zero is a valid value that
    // sigemptyset then initialises.
    let mut pipe_set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut pending: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid, writable sigset_t values.
    unsafe {
        libc::sigemptyset(&mut pipe_set);
    }
    // SAFETY: as above.
    unsafe {
        libc::sigaddset(&mut pipe_set, libc::SIGPIPE);
    }
    // SAFETY: reads `pipe_set`, writes `old`; affects only this thread.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_set, &mut old);
    }
    // SAFETY: writes `pending`.
    unsafe {
        libc::sigpending(&mut pending);
    }
    // SAFETY: reads an initialised set.
    let was_pending = unsafe { libc::sigismember(&pending, libc::SIGPIPE) } == 1;
    // SAFETY: `buf` is valid for reads of its length.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    let result = if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    };
    if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) && !was_pending {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: consumes the SIGPIPE this write raised (it is blocked, so
        // pending on this thread); a null siginfo is allowed.
        unsafe {
            libc::sigtimedwait(&pipe_set, core::ptr::null_mut(), &zero);
        }
    }
    // SAFETY: restores the mask read above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
    }
    result
}

/// `kcmp(a, b, KCMP_FILES)`: whether tasks `a` and `b` share one fd table
/// (a zombie has none, so it shares no table).
///
/// # Errors
///
/// From kcmp(2): `ENOSYS` without `CONFIG_KCMP`, `EPERM` without ptrace
/// access to both tasks, `ESRCH` if one is gone.
pub fn same_fd_table(a: u32, b: u32) -> io::Result<bool> {
    const KCMP_FILES: libc::c_long = 2;
    // SAFETY: integer arguments only; KCMP_FILES ignores the last two.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a),
            libc::c_long::from(b),
            KCMP_FILES,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r == 0)
    }
}
