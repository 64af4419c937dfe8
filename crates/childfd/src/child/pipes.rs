//! The parent's ends of piped stdio.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
