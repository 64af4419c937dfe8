//! The parent's pipe ends: non-blocking reads into a capture and a line
//! splitter, and non-blocking, SIGPIPE-free writes of the input.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;

use crate::capture::Capture;
use crate::lines::LineSplitter;
use crate::options::{Input, Stream};
use crate::sys;

pub(crate) const CHUNK: usize = 64 * 1024;

/// `O_NONBLOCK` on a pipe end we created (`pipe2(O_CLOEXEC)`: no other
/// status flags, so no `F_GETFL` is needed; close-on-exec is a
/// descriptor flag and unaffected).
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    rustix::fs::fcntl_setfl(fd, OFlags::NONBLOCK)?;
    Ok(())
}

/// One output stream being read.
pub(crate) struct Reader {
    pub fd: Option<OwnedFd>,
    pub capture: Capture,
    pub lines: Option<LineSplitter>,
    pub stream: Stream,
}

impl Reader {
    /// The pipe's inode while it is open (for naming its holders).
    pub(crate) fn open_inode(&self) -> Option<u64> {
        self.fd.as_ref().and_then(crate::holders::pipe_inode)
    }

    pub(crate) fn new(
        fd: Option<OwnedFd>,
        stream: Stream,
        head: usize,
        tail: usize,
        lines: bool,
    ) -> Reader {
        Reader {
            fd,
            capture: Capture::new(head, tail),
            lines: lines.then(LineSplitter::new),
            stream,
        }
    }

    /// Reads at most [`READS_PER_TURN`] chunks, so that a child (or a
    /// crowd of descendants) writing as fast as we read cannot keep the
    /// loop here past a deadline; lines go to `emit`. [`Drained::More`]
    /// means the budget ran out before the pipe would block: the loop is
    /// edge-triggered, so the caller must come back without waiting for
    /// another event.
    pub(crate) fn drain(
        &mut self,
        buf: &mut [u8],
        emit: &mut dyn FnMut(Stream, &[u8]),
        chunk: &mut dyn FnMut(Stream, &[u8]),
    ) -> io::Result<Drained> {
        let stream = self.stream;
        for _ in 0..READS_PER_TURN {
            let Some(fd) = &self.fd else {
                return Ok(Drained::Blocked);
            };
            match rustix::io::read(fd, &mut *buf) {
                Ok(0) => {
                    if let Some(lines) = &mut self.lines {
                        lines.finish(&mut |l| emit(stream, l));
                    }
                    return Ok(self.fd.take().map_or(Drained::Blocked, Drained::Eof));
                }
                Ok(n) => {
                    chunk(stream, &buf[..n]);
                    self.capture.push(&buf[..n]);
                    if let Some(lines) = &mut self.lines {
                        lines.push(&buf[..n], &mut |l| emit(stream, l));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(Drained::Blocked),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Drained::More)
    }
}

/// Reads of [`CHUNK`] bytes one stream gets per turn of a loop (1 MiB).
pub(crate) const READS_PER_TURN: usize = 16;

/// What one bounded [`Reader::drain`] left behind.
pub(crate) enum Drained {
    /// The pipe would block (or was closed before): wait for an event.
    Blocked,
    /// The budget ran out with data maybe left: come back next turn.
    More,
    /// EOF: here is the fd, to deregister and close.
    Eof(OwnedFd),
}

/// What one bounded [`Feeder::feed`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fed {
    /// The pipe is full: wait for it to become writable.
    Blocked,
    /// A write went through and input is left: come back next turn.
    More,
    /// All input was written: close the pipe.
    Done,
}

/// Input being written to the child's stdin.
pub(crate) struct Feeder<'a> {
    pub input: Input<'a>,
    pending: Vec<u8>,
    off: usize,
    pub done: bool,
    pub written: u64,
}

impl<'a> Feeder<'a> {
    pub(crate) fn new(input: Input<'a>) -> Feeder<'a> {
        Feeder {
            input,
            pending: Vec::new(),
            off: 0,
            done: false,
            written: 0,
        }
    }

    /// One bounded unit of feeding: at most one read of the input (to
    /// refill) and one `write(2)`, however fast the reader at the other
    /// end drains the pipe (a grandchild that inherited stdin can drain
    /// it for ever: a loop until `EAGAIN` would never return). `EPIPE`
    /// when the reader is gone (no SIGPIPE is raised).
    pub(crate) fn feed(&mut self, fd: BorrowedFd<'_>, scratch: &mut [u8]) -> io::Result<Fed> {
        let buf: &[u8] = match &mut self.input {
            // Bytes are written from where they are, not copied.
            Input::Bytes(b) => b,
            Input::Shared(b) => b,
            Input::None if self.off >= self.pending.len() => {
                self.done = true;
                return Ok(Fed::Done);
            }
            Input::None => &self.pending,
            Input::Reader(r) => {
                if self.off >= self.pending.len() {
                    self.pending.clear();
                    self.off = 0;
                    match r.read(scratch) {
                        Ok(0) => self.input = Input::None,
                        Ok(n) => self.pending.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    return Ok(Fed::More);
                }
                &self.pending
            }
        };
        if self.off >= buf.len() {
            self.input = Input::None;
            self.pending.clear();
            self.off = 0;
            self.done = true;
            return Ok(Fed::Done);
        }
        match sys::write_no_sigpipe(fd.as_fd(), &buf[self.off..]) {
            Ok(n) => {
                self.off += n;
                self.written += n as u64;
                Ok(Fed::More)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fed::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fed::More),
            Err(e) => Err(e),
        }
    }
}
