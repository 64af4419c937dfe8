//! Pass-through of the program's output to childfd's own stdout or stderr
//! without ever blocking the event loop.
//!
//! The loop hands bytes to a bounded buffer; one writer thread per stream
//! does the (blocking) writes and wakes the loop when it made room or hit
//! an error. When the buffer is full the loop stops reading the program's
//! pipe (back-pressure reaches the program as a full pipe, exactly as if it
//! wrote to our stdout itself), and deadlines and signals still fire.
//!
//! Why a thread and not `O_NONBLOCK` on fd 1: the non-blocking flag lives
//! on the open file description, which childfd shares with its shell, the
//! terminal and every other process of the pipeline. Setting it would make
//! *their* writes fail with `EAGAIN` (and survive childfd if it died before
//! restoring it). A writer thread keeps the descriptions untouched.
//!
//! # Caveats
//!
//! When childfd returns while a write is blocked (its reader stopped
//! reading and the deadline passed), the bytes still buffered are lost,
//! and counted as dropped.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes buffered per stream before the loop stops reading the program.
pub const CAPACITY: usize = 256 * 1024;
/// Largest single write.
const WRITE_CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct State {
    buf: VecDeque<u8>,
    /// No more bytes will come.
    closed: bool,
    /// The write error that stopped the thread.
    error: Option<io::ErrorKind>,
    written: u64,
    /// The last byte written, to know whether a line is open.
    last: Option<u8>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the writer thread cannot leave the state inconsistent
        // (it only moves bytes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One stream's pass-through.
pub struct Sink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// Starts the writer thread for `fd`; it calls `wake` after each write
    /// and on error.
    pub fn start(fd: BorrowedFd<'static>, wake: impl Fn() + Send + 'static) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("childfd-sink".into())
            .spawn(move || writer(fd, &s, &wake))?;
        Ok(Sink { shared })
    }

    /// Free room in the buffer (0 once the stream failed: nothing more is
    /// accepted, the caller drops and counts instead).
    pub fn room(&self) -> usize {
        let st = self.shared.lock();
        if st.error.is_some() || st.closed {
            return 0;
        }
        CAPACITY.saturating_sub(st.buf.len())
    }

    /// Queues bytes (at most [`room`](Self::room) of them); returns how many
    /// were taken.
    pub fn push(&self, bytes: &[u8]) -> usize {
        let mut st = self.shared.lock();
        if st.error.is_some() || st.closed {
            return 0;
        }
        let n = bytes.len().min(CAPACITY.saturating_sub(st.buf.len()));
        st.buf.extend(&bytes[..n]);
        drop(st);
        self.shared.cv.notify_one();
        n
    }

    /// The error that stopped writing (`BrokenPipe` when the reader left).
    pub fn error(&self) -> Option<io::ErrorKind> {
        self.shared.lock().error
    }

    /// Whether everything queued has been written.
    pub fn flushed(&self) -> bool {
        let st = self.shared.lock();
        st.buf.is_empty() || st.error.is_some()
    }

    /// Bytes written so far, bytes still queued, and the last byte written.
    pub fn counts(&self) -> (u64, u64, Option<u8>) {
        let st = self.shared.lock();
        (st.written, st.buf.len() as u64, st.last)
    }

    /// No more bytes will come: the thread exits once the buffer is empty.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.cv.notify_one();
    }
}

fn writer(fd: BorrowedFd<'static>, s: &Shared, wake: &dyn Fn()) {
    crate::sys::block_sigttou_in_this_thread();
    let mut chunk = Vec::with_capacity(WRITE_CHUNK);
    loop {
        {
            let mut st = s.lock();
            while st.buf.is_empty() && !st.closed {
                st = s.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.buf.is_empty() {
                return;
            }
            let n = st.buf.len().min(WRITE_CHUNK);
            chunk.clear();
            let (a, b) = st.buf.as_slices();
            let from_a = a.len().min(n);
            chunk.extend_from_slice(&a[..from_a]);
            chunk.extend_from_slice(&b[..n - from_a]);
        }
        // SIGPIPE is ignored in this process (Rust's runtime sets it so),
        // so a reader that left shows as EPIPE here.
        let r = loop {
            match rustix::io::write(fd, &chunk) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        };
        let mut st = s.lock();
        match r {
            Ok(n) => {
                st.buf.drain(..n);
                st.written += n as u64;
                st.last = chunk.get(n.wrapping_sub(1)).copied().or(st.last);
            }
            Err(e) => {
                st.error = Some(io::Error::from(e).kind());
                drop(st);
                wake();
                return;
            }
        }
        drop(st);
        wake();
    }
}
