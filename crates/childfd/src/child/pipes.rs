//! The parent's ends of piped stdio.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

macro_rules! pipe_end {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name {
            inner: File,
        }

        impl $name {
            pub(crate) fn from_fd(fd: OwnedFd) -> $name {
                $name {
                    inner: File::from(fd),
                }
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.as_raw_fd()
            }
        }

        impl From<$name> for OwnedFd {
            fn from(p: $name) -> OwnedFd {
                p.inner.into()
            }
        }
    };
}

pipe_end!(
    ChildStdin,
    "The write end of the child's stdin pipe. Dropping it gives the child EOF. Writing never raises SIGPIPE: a closed pipe is `Err(BrokenPipe)`."
);
pipe_end!(ChildStdout, "The read end of the child's stdout pipe.");
pipe_end!(ChildStderr, "The read end of the child's stderr pipe.");

impl Write for ChildStdin {
    /// `write(2)` with SIGPIPE blocked in this thread: a child that closed
    /// its stdin (or exited) gives `Err(BrokenPipe)`, and SIGPIPE never
    /// kills or interrupts the caller, even in a host that keeps SIGPIPE at
    /// its default action (a C host). See the `sys::sigpipe` module.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::sys::sigpipe::write(self.inner.as_fd(), buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// The [`stdin`](crate::Child::stdin) field of a [`Child`](crate::Child):
/// the parent's end of the child's stdin pipe, if there is one and it has
/// not been taken.
///
/// It reads like std's `Option<ChildStdin>` field (`take`, `as_mut`,
/// `is_some`, ...). It is not a plain `Option` because
/// [`Child::wait`](crate::Child::wait) takes `&self` (one thread may wait
/// while another signals) and must still close it before waiting, as std's
/// `wait` does.
///
/// ```
/// use childfd::{Command, Stdio};
/// use std::io::Write;
///
/// let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
/// assert!(child.stdin.is_some());
/// child.stdin.as_mut().expect("piped").write_all(b"some input")?;
/// assert!(child.wait()?.success()); // stdin was closed: `cat` saw EOF
/// assert!(child.stdin.is_none());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct StdinSlot(Mutex<Option<ChildStdin>>);

impl StdinSlot {
    fn inner(&mut self) -> &mut Option<ChildStdin> {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Option<ChildStdin>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the pipe out, leaving the slot empty (`Option::take`).
    pub fn take(&mut self) -> Option<ChildStdin> {
        self.inner().take()
    }

    /// The pipe, to write to it in place (`Option::as_mut`).
    pub fn as_mut(&mut self) -> Option<&mut ChildStdin> {
        self.inner().as_mut()
    }

    /// Puts a pipe in, returning the one it held (`Option::replace`).
    pub fn replace(&mut self, stdin: ChildStdin) -> Option<ChildStdin> {
        self.inner().replace(stdin)
    }

    /// Whether it holds the pipe.
    pub fn is_some(&self) -> bool {
        self.lock().is_some()
    }

    /// Whether it is empty (no pipe, taken, or closed by `wait`).
    pub fn is_none(&self) -> bool {
        !self.is_some()
    }

    /// Closes the pipe if still held (the child sees end-of-file).
    pub(crate) fn close(&self) {
        drop(self.lock().take());
    }
}

impl From<Option<ChildStdin>> for StdinSlot {
    fn from(stdin: Option<ChildStdin>) -> StdinSlot {
        StdinSlot(Mutex::new(stdin))
    }
}
