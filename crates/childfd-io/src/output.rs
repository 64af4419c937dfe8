//! The loop: one `mio::Poll` over the child's pidfd and the parent's pipe
//! ends, until exit and EOF, a deadline, or the wait-delay.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use childfd::{Child, EndedBy, ExitStatus, Signal};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::fs::OFlags;

use crate::capture::{Capture, Captured};
use crate::holders::{self, Holder};
use crate::lines::LineSplitter;
use crate::options::{Input, LineFn, Options, Stream};
use crate::{OutputError, sys};

const PIDFD: Token = Token(0);
const STDOUT: Token = Token(1);
const STDERR: Token = Token(2);
const STDIN: Token = Token(3);
const CHUNK: usize = 64 * 1024;
/// After SIGKILL, how long to keep reading pipes that something outside
/// the tree still holds, when no wait-delay was given.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);
/// While terminating, how often to check whether the tree is gone.
const TREE_CHECK: Duration = Duration::from_millis(10);

/// Why [`output`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The child exited and both pipes reached EOF.
    Exited,
    /// The deadline passed; the tree was terminated.
    TimedOut,
    /// The child exited, but after the wait-delay a pipe was still held
    /// open by another process (see [`Output::holders`]).
    PipesHeldOpen,
}

/// What [`output`] saw.
#[derive(Debug, Clone)]
pub struct Output {
    /// The child's exit status (`None` only if it could not be reaped
    /// within the bounds after SIGKILL).
    pub status: Option<ExitStatus>,
    /// Why `output` returned.
    pub outcome: Outcome,
    /// What was kept of stdout.
    pub stdout: Captured,
    /// What was kept of stderr.
    pub stderr: Captured,
    /// Bytes written to stdin.
    pub stdin_written: u64,
    /// The child ended (or closed stdin) before taking all its input. The
    /// host got no SIGPIPE.
    pub stdin_closed_early: bool,
    /// Processes still holding an output pipe when `output` stopped
    /// reading (with [`Outcome::PipesHeldOpen`], or after a deadline).
    pub holders: Vec<Holder>,
    /// With [`Outcome::TimedOut`]: whether SIGTERM sufficed or SIGKILL was needed.
    pub ended_by: Option<EndedBy>,
    /// Time from the start of `output` to the child's exit.
    pub exited_after: Option<Duration>,
    /// Time `output` took.
    pub elapsed: Duration,
}

struct Reader {
    fd: Option<OwnedFd>,
    inode: Option<u64>,
    capture: Capture,
    lines: Option<LineSplitter>,
    stream: Stream,
}

enum Phase {
    Running,
    /// The deadline fired: TERM sent; KILL at `kill_at` unless gone.
    Terminating {
        kill_at: Instant,
        killed_at: Option<Instant>,
    },
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fl = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, fl | OFlags::NONBLOCK)?;
    Ok(())
}

fn io_err(e: impl Into<io::Error>) -> OutputError {
    OutputError::Io { source: e.into() }
}

/// Runs `child` to completion while reading its piped stdout and stderr
/// and feeding its stdin, all from one `mio::Poll` that also watches the
/// child's pidfd. Takes the pipes out of `child`.
///
/// Returns when the child has exited and both pipes are at EOF, or the
/// deadline passed (the tree is terminated), or the wait-delay after exit
/// passed with a pipe still held. With a deadline, it never takes longer
/// than deadline + grace + the drain bound (wait-delay, or 1 s); with a
/// wait-delay, never longer than wait-delay after the child's exit.
///
/// # Errors
///
/// [`OutputError::InvalidOptions`] before anything happens; I/O, wait or
/// tree-control errors otherwise.
pub fn output(child: &mut Child, mut opts: Options<'_>) -> Result<Output, OutputError> {
    opts.validate()?;
    let start = Instant::now();
    let deadline = opts.deadline.and_then(|d| start.checked_add(d));

    let mut readers = [
        (
            STDOUT,
            child.take_stdout().map(OwnedFd::from),
            Stream::Stdout,
        ),
        (
            STDERR,
            child.take_stderr().map(OwnedFd::from),
            Stream::Stderr,
        ),
    ]
    .map(|(_, fd, stream)| Reader {
        inode: fd.as_ref().and_then(holders::pipe_inode),
        fd,
        capture: Capture::new(opts.head, opts.tail),
        lines: opts.on_line.as_ref().map(|_| LineSplitter::new()),
        stream,
    });
    let mut stdin = child.take_stdin().map(OwnedFd::from);
    if matches!(opts.input, Input::None) {
        stdin = None; // closing it gives the child EOF
    }

    let mut poll = Poll::new().map_err(io_err)?;
    let pidfd_raw = child.as_fd().as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&pidfd_raw), PIDFD, Interest::READABLE)
        .map_err(io_err)?;
    for (r, token) in readers.iter().zip([STDOUT, STDERR]) {
        if let Some(fd) = &r.fd {
            set_nonblocking(fd).map_err(io_err)?;
            poll.registry()
                .register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
                .map_err(io_err)?;
        }
    }
    if let Some(fd) = &stdin {
        set_nonblocking(fd).map_err(io_err)?;
        poll.registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), STDIN, Interest::WRITABLE)
            .map_err(io_err)?;
    }

    let mut status: Option<ExitStatus> = child.try_wait()?;
    let mut exited_at = status.map(|_| Instant::now());
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_off = 0usize;
    let mut input_done = false;
    let mut stdin_written = 0u64;
    let mut stdin_closed_early = false;
    let mut phase = Phase::Running;
    let mut holders = Vec::new();
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; CHUNK];

    let outcome = loop {
        let pipes_open = readers.iter().any(|r| r.fd.is_some());
        let now = Instant::now();

        // Decide whether we are done, and otherwise when to wake up.
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        match &mut phase {
            Phase::Running => {
                if status.is_some() && !pipes_open {
                    break crate::Outcome::Exited;
                }
                if let Some(d) = deadline {
                    if now >= d {
                        child.signal_tree(Signal::TERM)?;
                        child.signal_tree(Signal::CONT)?;
                        phase = Phase::Terminating {
                            kill_at: now + opts.grace,
                            killed_at: None,
                        };
                        continue;
                    }
                    at(d);
                }
                if let (Some(e), Some(delay)) = (exited_at, opts.wait_delay) {
                    if now >= e + delay {
                        holders = holders::find(&inodes(&readers));
                        if opts.kill_tree_on_held_pipes {
                            child.kill_tree()?;
                        }
                        break crate::Outcome::PipesHeldOpen;
                    }
                    at(e + delay);
                }
            }
            Phase::Terminating { kill_at, killed_at } => {
                if status.is_some() && !pipes_open && child.wait_tree_deadline(now)? {
                    break crate::Outcome::TimedOut;
                }
                match killed_at {
                    None if now >= *kill_at => {
                        child.kill_tree()?;
                        *killed_at = Some(now);
                        continue;
                    }
                    None => at(*kill_at),
                    Some(k) => {
                        let drain = opts.wait_delay.unwrap_or(DRAIN_AFTER_KILL);
                        if now >= *k + drain {
                            holders = holders::find(&inodes(&readers));
                            break crate::Outcome::TimedOut;
                        }
                        at(*k + drain);
                    }
                }
                at(now + TREE_CHECK);
            }
        }

        let timeout = wake.map(|w| w.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
        for ev in events.iter() {
            match ev.token() {
                PIDFD if status.is_none() => {
                    status = child.try_wait()?;
                    if status.is_some() {
                        exited_at = Some(Instant::now());
                    }
                }
                STDOUT | STDERR => {
                    let r = &mut readers[if ev.token() == STDOUT { 0 } else { 1 }];
                    drain(r, &mut buf, &mut opts.on_line, &poll)?;
                }
                _ => {}
            }
        }
        // Feed stdin whenever it may have room (after any event: a writable
        // event, or the child having exited).
        if stdin.is_some() {
            let fd = stdin.as_ref().map(|f| f.as_fd()).expect("checked");
            let r = feed(
                fd,
                &mut opts.input,
                &mut pending,
                &mut pending_off,
                &mut input_done,
                &mut buf,
            );
            match r {
                Ok(n) => stdin_written += n,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    stdin_closed_early = true;
                    input_done = true;
                }
                Err(e) => return Err(io_err(e)),
            }
            if input_done || status.is_some() {
                if status.is_some() && !input_done {
                    stdin_closed_early = true; // exited with input left
                }
                let fd = stdin.take().expect("checked");
                let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
    };

    let ended_by = match phase {
        Phase::Running => None,
        Phase::Terminating { killed_at, .. } => Some(if killed_at.is_some() {
            EndedBy::Kill
        } else {
            EndedBy::Term
        }),
    };
    if status.is_none() {
        // Timed out: the tree was signalled; give the child a moment.
        status = child.wait_timeout(Duration::from_millis(100))?;
    }
    let [out, err] = readers;
    let finish = |r: Reader| r.capture.finish();
    Ok(Output {
        status,
        outcome,
        stdout: finish(out),
        stderr: finish(err),
        stdin_written,
        stdin_closed_early,
        holders,
        ended_by,
        exited_after: exited_at.map(|e| e - start),
        elapsed: start.elapsed(),
    })
}

fn inodes(readers: &[Reader; 2]) -> Vec<u64> {
    readers
        .iter()
        .filter(|r| r.fd.is_some())
        .filter_map(|r| r.inode)
        .collect()
}

/// Reads a pipe until it would block (edge-triggered) or reaches EOF.
fn drain(
    r: &mut Reader,
    buf: &mut [u8],
    on_line: &mut Option<LineFn<'_>>,
    poll: &Poll,
) -> Result<(), OutputError> {
    loop {
        let Some(fd) = &r.fd else { return Ok(()) };
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => {
                let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
                r.fd = None;
                if let (Some(lines), Some(f)) = (&mut r.lines, on_line.as_mut()) {
                    let stream = r.stream;
                    lines.finish(&mut |l| f(stream, l));
                }
                return Ok(());
            }
            Ok(n) => {
                r.capture.push(&buf[..n]);
                if let (Some(lines), Some(f)) = (&mut r.lines, on_line.as_mut()) {
                    let stream = r.stream;
                    lines.push(&buf[..n], &mut |l| f(stream, l));
                }
            }
            Err(rustix::io::Errno::AGAIN) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Writes as much pending input as the pipe takes; refills from the
/// input. Returns bytes written; `EPIPE` if the reader is gone.
fn feed(
    fd: std::os::fd::BorrowedFd<'_>,
    input: &mut Input<'_>,
    pending: &mut Vec<u8>,
    off: &mut usize,
    done: &mut bool,
    scratch: &mut [u8],
) -> io::Result<u64> {
    let mut written = 0u64;
    loop {
        if *off >= pending.len() {
            pending.clear();
            *off = 0;
            match input {
                Input::None => *done = true,
                Input::Bytes(b) => {
                    pending.extend_from_slice(b);
                    *input = Input::None;
                }
                Input::Reader(r) => match r.read(scratch) {
                    Ok(0) => *input = Input::None,
                    Ok(n) => pending.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                },
            }
            if *done {
                return Ok(written);
            }
            continue;
        }
        match sys::write_no_sigpipe(fd, &pending[*off..]) {
            Ok(n) => {
                *off += n;
                written += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
