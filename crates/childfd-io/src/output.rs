//! `output`: one child, one `mio::Poll` over its pidfd and the parent's
//! pipe ends, until exit and EOF, a deadline, or the wait-delay.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use childfd::{Child, EndedBy, ExitStatus};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::OutputError;
use crate::capture::Captured;
use crate::holders::Holder;
use crate::lifecycle::{Lifecycle, Step};
use crate::options::{Input, Options, Stream};
use crate::pipes::{CHUNK, Drained, Fed, Feeder, Reader, set_nonblocking};

const PIDFD: Token = Token(0);
const STDOUT: Token = Token(1);
const STDERR: Token = Token(2);
const STDIN: Token = Token(3);

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The child exited and both pipes reached EOF.
    Exited,
    /// The deadline passed; the tree was terminated.
    TimedOut,
    /// The child exited, but after the wait-delay a pipe was still held
    /// open by another process (see [`Output::holders`]).
    PipesHeldOpen,
    /// Cancelled ([`Supervisor::cancel`](crate::Supervisor::cancel)); the
    /// tree was killed.
    Cancelled,
    /// [`Supervisor`](crate::Supervisor) only: the child exited and its
    /// pipes reached EOF, but with
    /// [`kill_tree_on_exit`](crate::JobOptions::kill_tree_on_exit)
    /// processes of its tree were left and killed (see
    /// [`Report::left_behind`](crate::Report::left_behind)).
    Leaked,
    /// [`Supervisor`](crate::Supervisor) only: the child could not be
    /// spawned (see [`Report::error`](crate::Report::error)).
    SpawnFailed,
    /// [`Supervisor`](crate::Supervisor) only: supervising the job failed
    /// (its tree was killed; see [`Report::error`](crate::Report::error)).
    Failed,
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

fn io_err(e: impl Into<io::Error>) -> OutputError {
    OutputError::Io { source: e.into() }
}

/// Registers the pidfd, the output pipes and stdin (non-blocking) in a
/// new poll.
fn register(
    child: &Child,
    readers: &[Reader; 2],
    stdin: Option<&OwnedFd>,
) -> Result<Poll, OutputError> {
    let poll = Poll::new().map_err(io_err)?;
    let reg = poll.registry();
    let pidfd_raw = child.as_fd().as_raw_fd();
    reg.register(&mut SourceFd(&pidfd_raw), PIDFD, Interest::READABLE)
        .map_err(io_err)?;
    for (r, token) in readers.iter().zip([STDOUT, STDERR]) {
        if let Some(fd) = &r.fd {
            set_nonblocking(fd).map_err(io_err)?;
            reg.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
                .map_err(io_err)?;
        }
    }
    if let Some(fd) = stdin {
        set_nonblocking(fd).map_err(io_err)?;
        reg.register(&mut SourceFd(&fd.as_raw_fd()), STDIN, Interest::WRITABLE)
            .map_err(io_err)?;
    }
    Ok(poll)
}

/// The child's stdin while it is fed.
struct StdinFeed<'a> {
    fd: Option<OwnedFd>,
    feeder: Feeder<'a>,
    closed_early: bool,
}

impl StdinFeed<'_> {
    /// One bounded feeding turn if `hot` (the pipe may take more); closes
    /// stdin once fed or once the child `exited` (a descendant that
    /// inherited it must not keep us writing). Returns whether to come
    /// back without waiting for an event.
    fn turn(
        &mut self,
        hot: bool,
        exited: bool,
        poll: &Poll,
        buf: &mut [u8],
    ) -> Result<bool, OutputError> {
        let Some(fd) = &self.fd else { return Ok(false) };
        let mut again = false;
        if hot {
            again = match self.feeder.feed(fd.as_fd(), buf) {
                Ok(fed) => fed == Fed::More,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    self.closed_early = true;
                    self.feeder.done = true;
                    false
                }
                Err(e) => return Err(io_err(e)),
            };
        }
        if self.feeder.done || exited {
            if !self.feeder.done {
                self.closed_early = true; // exited with input left
            }
            if let Some(fd) = self.fd.take() {
                let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            return Ok(false);
        }
        Ok(again)
    }
}

/// One bounded read turn of `r`; whether data is left for another.
fn read_turn(
    r: &mut Reader,
    poll: &Poll,
    buf: &mut [u8],
    emit: &mut dyn FnMut(Stream, &[u8]),
    chunk: &mut dyn FnMut(Stream, &[u8]),
) -> Result<bool, OutputError> {
    Ok(match r.drain(buf, emit, chunk).map_err(io_err)? {
        Drained::More => true,
        Drained::Blocked => false,
        Drained::Eof(fd) => {
            let _ = poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
            false
        }
    })
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
/// ```
/// use childfd::{Command, Stdio};
/// use childfd_io::{Options, Outcome, output};
/// use std::time::Duration;
///
/// let mut child = Command::new("sh")
///     .args(["-c", "read name; echo \"hello $name\"; echo done >&2; exit 2"])
///     .stdin(Stdio::piped())
///     .stdout(Stdio::piped())
///     .stderr(Stdio::piped())
///     .spawn()?;
/// let out = output(&mut child, Options::new().stdin_bytes(&b"world\n"[..]).deadline(Duration::from_secs(30)))?;
/// assert_eq!(out.outcome, Outcome::Exited);
/// assert_eq!((out.stdout.text(), out.stderr.text()), ("hello world\n".into(), "done\n".into()));
/// assert_eq!(out.status.and_then(|s| s.code()), Some(2));
/// assert_eq!(out.stdin_written, 6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`OutputError::InvalidOptions`] before anything happens; I/O, wait or
/// tree-control errors otherwise.
pub fn output(child: &mut Child, mut opts: Options<'_>) -> Result<Output, OutputError> {
    opts.validate()?;
    let start = Instant::now();
    let lines = opts.on_line.is_some();
    let mut readers = [
        Reader::new(
            child.take_stdout().map(OwnedFd::from),
            Stream::Stdout,
            opts.limits.head,
            opts.limits.tail,
            lines,
        ),
        Reader::new(
            child.take_stderr().map(OwnedFd::from),
            Stream::Stderr,
            opts.limits.head,
            opts.limits.tail,
            lines,
        ),
    ];
    let mut stdin = child.take_stdin().map(OwnedFd::from);
    let input = std::mem::replace(&mut opts.input, Input::None);
    if matches!(input, Input::None) {
        stdin = None; // closing it gives the child EOF
    }
    let mut feed = StdinFeed {
        fd: stdin,
        feeder: Feeder::new(input),
        closed_early: false,
    };
    let mut life = Lifecycle::new(start, &opts.limits);

    let mut poll = register(child, &readers, feed.fd.as_ref())?;
    life.poll_exit(child)?;
    // Exited before we looked: what it wrote is read before the
    // wait-delay (which may be zero) is judged, as after a pidfd event.
    let mut exit_unread = life.status.is_some();

    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; CHUNK];
    let mut on_line = opts.on_line.take();
    let mut on_output = opts.on_output.take();
    let mut emit = |s: Stream, l: &[u8]| {
        if let Some(f) = on_line.as_mut() {
            f(s, l);
        }
    };
    let mut chunk = |s: Stream, c: &[u8]| {
        if let Some(f) = on_output.as_mut() {
            f(s, c);
        }
    };
    // Streams with work left after their bounded turn ([`Drained::More`],
    // [`Fed::More`]): the next poll does not wait. Stdin starts hot: it
    // is writable until proven otherwise.
    let mut hot = [false, false, feed.fd.is_some()];
    let (outcome, holders) = loop {
        if std::mem::take(&mut exit_unread) || life.deadline_due(Instant::now()) {
            // Exit first: the kernel closes the child's fds before its
            // exit is visible, so the reads after it see its EOF.
            life.poll_exit(child)?;
            for (k, r) in readers.iter_mut().enumerate() {
                hot[k] = read_turn(r, &poll, &mut buf, &mut emit, &mut chunk)?;
            }
            // An exited child's stdin is closed (input left: closed early)
            // before the state machine may end the capture.
            hot[2] = feed.turn(hot[2], life.status.is_some(), &poll, &mut buf)?;
        }
        let pipes_open = readers.iter().any(|r| r.fd.is_some());
        let inodes = || readers.iter().filter_map(Reader::open_inode).collect();
        let wake = match life.step(child, Instant::now(), pipes_open, &inodes)? {
            Step::Done(outcome, holders) => break (outcome, holders),
            Step::Wait(w) => w,
        };
        let timeout = if hot.contains(&true) {
            Some(Duration::ZERO)
        } else {
            wake.map(|w| w.saturating_duration_since(Instant::now()))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
        for ev in events.iter() {
            match ev.token() {
                PIDFD => life.poll_exit(child)?,
                STDOUT => hot[0] = true,
                STDERR => hot[1] = true,
                STDIN => hot[2] = true,
                _ => {}
            }
        }
        for (k, r) in readers.iter_mut().enumerate() {
            if !hot[k] {
                continue;
            }
            hot[k] = read_turn(r, &poll, &mut buf, &mut emit, &mut chunk)?;
        }
        hot[2] = feed.turn(hot[2], life.status.is_some(), &poll, &mut buf)?;
    };

    let mut status = life.status;
    if status.is_none() {
        // The tree was signalled; give the child a moment to be reaped.
        status = child.wait_timeout(Duration::from_millis(100))?;
    }
    let [out, err] = readers;
    Ok(Output {
        status,
        outcome,
        stdout: out.capture.finish(),
        stderr: err.capture.finish(),
        stdin_written: feed.feeder.written,
        stdin_closed_early: feed.closed_early,
        holders,
        ended_by: life.ended_by(),
        exited_after: life.exited_at.map(|e| e - start),
        elapsed: start.elapsed(),
    })
}
