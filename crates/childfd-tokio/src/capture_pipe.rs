//! A captured output pipe that joins the reactor only if it has to.
//!
//! A short job has often written its output and exited by the time its
//! capture first looks: then one `read` takes the output and the next
//! reads EOF, and registering the pipe with the reactor (`fcntl` for
//! `O_NONBLOCK`, `epoll_ctl` to add, `epoll_ctl` to delete) would buy
//! nothing. So a pipe the capture got straight from the spawn starts as a
//! plain fd, read without blocking by
//! [`preadv2(RWF_NOWAIT)`](https://man7.org/linux/man-pages/man2/preadv2.2.html)
//! (the fd itself stays blocking, no `fcntl`), and is registered the first
//! time it has nothing to read yet.
//!
//! # Caveats
//!
//! Pipes accept `RWF_NOWAIT` on recent kernels (`FMODE_NOWAIT`); where the
//! read refuses it (`EOPNOTSUPP`, `EINVAL`; `ENOSYS` or `EPERM` from a
//! seccomp filter) the pipe is registered at once, and so is every later
//! one of the process. Any other error registers the pipe too, and the
//! reactor's read reports it if it persists.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::net::unix::pipe;

/// Set once a pipe refused `RWF_NOWAIT`: from then on pipes are registered
/// at once.
static NOWAIT_REFUSED: AtomicBool = AtomicBool::new(false);

/// The read end of a child's output pipe, as a capture reads it.
#[derive(Debug)]
pub(crate) enum CapturePipe {
    /// Not registered yet: a blocking fd, read with `RWF_NOWAIT`.
    Plain(OwnedFd),
    /// On the reactor.
    Polled(pipe::Receiver),
}

impl CapturePipe {
    /// Waits until a read may find data (or EOF). A plain pipe is always
    /// worth a read: the read registers it if it finds nothing.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            CapturePipe::Plain(_) => Ok(()),
            CapturePipe::Polled(rx) => rx.readable().await,
        }
    }

    /// Reads into `buf` without blocking: `Ok(0)` at EOF, `WouldBlock` when
    /// the pipe is empty (or a plain read failed); a plain pipe must then be
    /// [`registered`](Self::registered) before the next
    /// [`readable`](Self::readable).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = match self {
            CapturePipe::Polled(rx) => return rx.try_read(buf),
            CapturePipe::Plain(fd) => fd,
        };
        Self::read_plain(fd, buf)
    }

    /// As [`read`](Self::read), but a registered pipe is read whatever
    /// the reactor last said of it (its readiness may not have caught up
    /// with an exit seen just now). The readiness is left as it is: at
    /// worst the next [`readable`](Self::readable) wakes for a read that
    /// finds nothing (and clears it).
    pub(crate) fn read_regardless(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            CapturePipe::Polled(rx) => Ok(rustix::io::read(rx, buf)?),
            CapturePipe::Plain(fd) => Self::read_plain(fd, buf),
        }
    }

    fn read_plain(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
        if NOWAIT_REFUSED.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let flags = rustix::io::ReadWriteFlags::NOWAIT;
        // `u64::MAX`: read at the current position (a pipe has none).
        use rustix::io::Errno;
        match rustix::io::preadv2(fd, &mut [IoSliceMut::new(buf)], u64::MAX, flags) {
            Ok(n) => Ok(n),
            Err(Errno::AGAIN) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => {
                if matches!(
                    e,
                    Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS | Errno::PERM
                ) {
                    NOWAIT_REFUSED.store(true, Ordering::Relaxed);
                }
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }

    /// The pipe on the reactor: a plain one is made non-blocking
    /// (`fcntl(O_NONBLOCK)`) and registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as
    /// [`crate::Child::from_child`].
    pub(crate) fn registered(self) -> io::Result<CapturePipe> {
        match self {
            CapturePipe::Plain(fd) => {
                rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
                Ok(CapturePipe::Polled(
                    pipe::Receiver::from_owned_fd_unchecked(fd)?,
                ))
            }
            polled => Ok(polled),
        }
    }

    /// A registered pipe whose runtime was shut down (a child spawned on
    /// a runtime dropped since), registered with the current runtime
    /// instead; checked when a capture starts.
    pub(crate) fn on_this_runtime(self) -> io::Result<CapturePipe> {
        match self {
            CapturePipe::Polled(rx) if runtime_gone(|cx| rx.poll_read_ready(cx)) => {
                Ok(CapturePipe::Polled(
                    pipe::Receiver::from_owned_fd_unchecked(rx.into_nonblocking_fd()?)?,
                ))
            }
            other => Ok(other),
        }
    }

    /// Whether the pipe is still plain (not registered).
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, CapturePipe::Plain(_))
    }
}

impl AsFd for CapturePipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            CapturePipe::Plain(fd) => fd.as_fd(),
            CapturePipe::Polled(rx) => rx.as_fd(),
        }
    }
}

/// Whether a registration's runtime was shut down: its readiness poll
/// fails (tokio fails it for that reason only). Polled once with a waker
/// that does nothing: a pending poll is left for the real waits to wake.
pub(crate) fn runtime_gone(poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<()>>) -> bool {
    matches!(
        poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Err(_))
    )
}
