//! A non-blocking pipe whose two numbers are used only after checking that
//! they still name its ends.
//!
//! A host may close every fd it did not open itself (`close_range(3, ~0)`
//! when it daemonizes) and open its own files, which take the lowest free
//! numbers: ours. A number remembered from earlier is therefore only a
//! guess. A pipe, unlike an eventfd (every eventfd shares one anonymous
//! inode), has an inode of its own: [`CheckedPipe`] records its device and
//! inode from fstat(2) when it is made, and an end is used only while its
//! number still has that inode and that end's access mode (fcntl(2)
//! `F_GETFL`). Both calls are async-signal-safe, so a signal handler can
//! check before it writes ([`CheckedPipe::notify`]).
//!
//! The check and the use are two system calls: a host that closes and
//! reopens the number between them is not detected. A number that fails
//! its check is never closed (it is someone else's file now), only
//! forgotten.
//!
//! See [pipe(2)](https://man7.org/linux/man-pages/man2/pipe.2.html),
//! [fstat(2)](https://man7.org/linux/man-pages/man2/fstat.2.html),
//! [fcntl(2)](https://man7.org/linux/man-pages/man2/fcntl.2.html).

use std::io;
use std::os::fd::{BorrowedFd, IntoRawFd, RawFd};

/// The two ends of a pipe by number, with the pipe's identity. Plain data:
/// it closes nothing by itself (see [`CheckedPipe::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckedPipe {
    read: RawFd,
    write: RawFd,
    dev: u64,
    ino: u64,
}

/// Whether `fd` is open on the inode `(dev, ino)` with access mode `mode`
/// (`O_RDONLY` or `O_WRONLY`). Async-signal-safe: fstat and fcntl only.
fn check(fd: RawFd, dev: u64, ino: u64, mode: libc::c_int) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: plain data, all-zero is valid; filled in by fstat.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer; a closed or foreign
    // number only makes fstat fail or describe another file.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    if (st.st_dev, st.st_ino) != (dev, ino) {
        return false;
    }
    // SAFETY: F_GETFL takes no argument and changes nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == mode
}

impl CheckedPipe {
    /// A new pipe (`O_CLOEXEC | O_NONBLOCK` on both ends).
    ///
    /// # Errors
    ///
    /// From pipe2(2) or fstat(2).
    pub(crate) fn new() -> io::Result<CheckedPipe> {
        let (r, w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        let st = rustix::fs::fstat(&r)?;
        Ok(CheckedPipe {
            read: r.into_raw_fd(),
            write: w.into_raw_fd(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Whether the read end's number still names it.
    pub(crate) fn read_ok(&self) -> bool {
        check(self.read, self.dev, self.ino, libc::O_RDONLY)
    }

    /// Whether the write end's number still names it. Async-signal-safe.
    pub(crate) fn write_ok(&self) -> bool {
        check(self.write, self.dev, self.ino, libc::O_WRONLY)
    }

    /// Whether both ends still are ours.
    pub(crate) fn intact(&self) -> bool {
        self.read_ok() && self.write_ok()
    }

    /// The read end, checked just now.
    pub(crate) fn reader(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the number was checked to be our read end just now; the
        // owner of this pipe closes it only through `close`, which takes
        // the pipe by value.
        self.read_ok()
            .then(|| unsafe { BorrowedFd::borrow_raw(self.read) })
    }

    /// Writes one byte to the write end if it still is ours; false if it is
    /// not. A full pipe counts as written (its reader is awake anyway).
    /// Async-signal-safe: fstat, fcntl and write only, and errno is kept.
    pub(crate) fn notify(&self) -> bool {
        // SAFETY: no preconditions; returns this thread's errno slot.
        let slot = unsafe { libc::__errno_location() };
        // SAFETY: `slot` is valid for this thread's lifetime.
        let errno = unsafe { *slot };
        let ours = self.write_ok();
        if ours {
            let one = 1u8;
            // SAFETY: writes one byte from a valid u8 to a number checked
            // to be our write end just now.
            unsafe { libc::write(self.write, (&one as *const u8).cast(), 1) };
        }
        // SAFETY: as above.
        unsafe { *slot = errno };
        ours
    }

    /// Empties the pipe if its read end still is ours.
    pub(crate) fn drain(&self) {
        let Some(r) = self.reader() else { return };
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(r, &mut buf), Ok(n) if n == buf.len()) {}
    }

    /// Closes each end whose number still names it; forgets the others.
    /// With `keep_write`, the write end is never closed (a signal handler
    /// may be about to write to it: a closed number could be reused).
    pub(crate) fn close(self, keep_write: bool) {
        if self.read_ok() {
            // SAFETY: checked to be our read end just now, and `self` is
            // consumed: nothing of ours uses the number again.
            drop(unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(self.read)
            });
        }
        if !keep_write && self.write_ok() {
            // SAFETY: as above, for the write end.
            drop(unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(self.write)
            });
        }
    }
}
