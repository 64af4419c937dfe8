//! `output`: childfd-io's capture state machine, with the pidfd and the
//! pipes on tokio's reactor and the timers on tokio's clock.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use childfd_io::engine::{self, Capture, Lifecycle, Step};
use childfd_io::lines::LineSplitter;
use childfd_io::{Output, OutputError, Stream};
use tokio::net::unix::pipe;
use tokio::sync::Notify;

use crate::Child;
use crate::capture_pipe::{CapturePipe, runtime_gone};
use crate::lines::LineSink;
use crate::options::Options;

/// Bytes read per `read(2)`.
const CHUNK: usize = 64 * 1024;
/// Reads per wake-up before letting other branches (and tasks) run: a
/// child that writes without pause cannot starve its own deadline.
const BURST: usize = 16;
/// After the state machine is done with the child not reaped yet, how
/// long to wait for it (as childfd-io).
const LAST_REAP: Duration = Duration::from_millis(100);
/// How long a capture runs before it watches the child's exit even when
/// nothing else asks for it: a child whose output is held open by a
/// descendant after it exited is reaped by then, not left a zombie until
/// the pipes close. A short job has usually exited (and is reaped by one
/// `waitid(WNOHANG)`) by then, so its pidfd still never joins the reactor.
const WATCH_EXIT_AFTER: Duration = Duration::from_millis(50);

thread_local! {
    /// One read buffer per runtime thread, shared by every capture on it
    /// (a read never spans an await).
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

fn io_err(e: impl Into<io::Error>) -> OutputError {
    OutputError::Io { source: e.into() }
}

/// Runs `child` to completion while reading its piped stdout and stderr
/// and feeding its stdin, on the runtime's reactor: exactly
/// [`childfd_io::output`]'s semantics, from the same state machine.
/// Takes the pipes out of `child`.
///
/// Returns when the child has exited and both pipes are at EOF, or the
/// deadline passed (the tree is terminated: SIGTERM + SIGCONT, SIGKILL
/// after the grace), or the wait-delay after exit passed with a pipe still
/// held ([`Outcome::PipesHeldOpen`](crate::Outcome::PipesHeldOpen), with
/// the holders named). With a deadline it never takes longer than
/// deadline + grace + the drain bound (wait-delay, or 1 s).
///
/// Dropping the future before it completes kills the child's tree
/// (SIGKILL): a capture cannot be resumed, and a cancelled job must leave
/// nothing behind. The child stays yours to [`wait`](Child::wait) for.
///
/// # Errors
///
/// [`OutputError::InvalidOptions`] before anything happens; I/O, wait or
/// tree-control errors otherwise.
pub async fn output(child: &mut Child, opts: Options) -> Result<Output, OutputError> {
    capture(child, [None, None], opts, None).await
}

/// [`output`], cancellable through `cancel` (a [`JobSet`](crate::JobSet)
/// job): on notification the tree is killed and the pipes drained
/// ([`Outcome::Cancelled`](crate::Outcome::Cancelled)). `plain` holds the
/// stdout and stderr pipes when they come straight from the spawn, not
/// registered yet (see [`crate::capture_pipe`]); else the child's are read.
pub(crate) async fn capture(
    child: &mut Child,
    plain: [Option<OwnedFd>; 2],
    mut opts: Options,
    cancel: Option<&Notify>,
) -> Result<Output, OutputError> {
    opts.limits.validate()?;
    let start = Instant::now();
    let sink = opts.lines.take();
    let lines = sink.is_some();
    let [out, err] = plain.map(|fd| fd.map(CapturePipe::Plain));
    let readers = [
        Reader::new(
            out.or_else(|| child.take_stdout().map(CapturePipe::Polled))
                .map(CapturePipe::on_this_runtime)
                .transpose()
                .map_err(io_err)?,
            Stream::Stdout,
            &opts,
            lines,
        ),
        Reader::new(
            err.or_else(|| child.take_stderr().map(CapturePipe::Polled))
                .map(CapturePipe::on_this_runtime)
                .transpose()
                .map_err(io_err)?,
            Stream::Stderr,
            &opts,
            lines,
        ),
    ];
    let mut feed = Feed {
        // Without input, closing stdin at once gives the child EOF.
        tx: child
            .take_stdin()
            .filter(|_| opts.input.is_some())
            .map(stdin_on_this_runtime)
            .transpose()
            .map_err(io_err)?,
        data: opts.input.take().unwrap_or_default(),
        off: 0,
        closed_early: false,
    };
    let child: &Child = child;
    let mut guard = KillTreeIfDropped(Some(child));
    let mut run = Run {
        child,
        life: Lifecycle::new(start, &opts.limits),
        readers,
        sink,
        deadline: opts.limits.deadline.and_then(|d| start.checked_add(d)),
        // The exit matters before the pipes' EOF: the wait-delay counts
        // from it, and stdin is closed at it.
        watch_exit_early: opts.limits.wait_delay.is_some() || feed.tx.is_some(),
        watch_exit_at: start + WATCH_EXIT_AFTER,
        watching_exit: false,
        read_after_exit: false,
    };
    let result = run.run(&mut feed, cancel).await;
    guard.0 = None; // finished (or failed): not a cancellation
    let (outcome, holders) = result?;
    let mut status = run.life.status;
    if status.is_none() {
        // The tree was signalled; give the child a moment to be reaped.
        if let Ok(reaped) = tokio::time::timeout(LAST_REAP, child.wait()).await {
            status = Some(reaped?);
        }
    }
    let [out, err] = run.readers;
    Ok(Output {
        status,
        outcome,
        stdout: out.capture.finish(),
        stderr: err.capture.finish(),
        stdin_written: feed.off as u64,
        stdin_closed_early: feed.closed_early,
        holders,
        ended_by: run.life.ended_by(),
        exited_after: run.life.exited_at.map(|e| e - start),
        elapsed: start.elapsed(),
    })
}

/// Kills the tree when a capture future is dropped unfinished.
struct KillTreeIfDropped<'a>(Option<&'a Child>);

impl Drop for KillTreeIfDropped<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.0 {
            let _ = child.kill_tree();
        }
    }
}

/// One output stream being read.
struct Reader {
    rx: Option<CapturePipe>,
    capture: Capture,
    split: Option<LineSplitter>,
    stream: Stream,
}

impl Reader {
    fn new(rx: Option<CapturePipe>, stream: Stream, opts: &Options, lines: bool) -> Reader {
        Reader {
            rx,
            capture: Capture::new(opts.limits.head, opts.limits.tail),
            split: lines.then(LineSplitter::new),
            stream,
        }
    }

    async fn readable(&self) -> io::Result<()> {
        match &self.rx {
            Some(rx) => rx.readable().await,
            None => std::future::pending().await,
        }
    }

    /// Reads what the pipe holds now (at most [`BURST`] chunks), closing it
    /// at EOF; `regardless` of what the reactor last said of a registered
    /// pipe's readiness (see [`Run::read_after_exit_or_deadline`]).
    fn read_now(&mut self, sink: Option<&LineSink>, regardless: bool) -> io::Result<()> {
        let stream = self.stream;
        let mut emit = |l: &[u8]| {
            if let Some(s) = sink {
                s.send(stream, l);
            }
        };
        for _ in 0..BURST {
            let Some(rx) = &self.rx else { return Ok(()) };
            let read = if regardless {
                CapturePipe::read_regardless
            } else {
                CapturePipe::read
            };
            let got = BUF.with_borrow_mut(|buf| match read(rx, buf) {
                Ok(0) => Ok(false),
                Ok(n) => {
                    self.capture.push(&buf[..n]);
                    if let Some(split) = &mut self.split {
                        split.push(&buf[..n], &mut emit);
                    }
                    Ok(true)
                }
                Err(e) => Err(e),
            });
            match got {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(split) = &mut self.split {
                        split.finish(&mut emit);
                    }
                    self.rx = None; // deregisters and closes
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Empty: a plain pipe joins the reactor to wait.
                    if rx.is_plain() {
                        self.rx = self.rx.take().map(CapturePipe::registered).transpose()?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The input being written to the child's stdin.
struct Feed {
    tx: Option<pipe::Sender>,
    data: Vec<u8>,
    off: usize,
    closed_early: bool,
}

impl Feed {
    async fn writable(&self) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx.writable().await,
            None => std::future::pending().await,
        }
    }

    /// Writes as much as the pipe takes without blocking or SIGPIPE; closes
    /// stdin when all is written, when the child closed its end, or once
    /// the child has exited.
    fn feed(&mut self, exited: bool) -> io::Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        while self.off < self.data.len() {
            let rest = &self.data[self.off..];
            match tx.try_io(|| engine::write_no_sigpipe(tx.as_fd(), rest)) {
                Ok(n) => self.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc_epipe()) => {
                    self.closed_early = true;
                    self.tx = None;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let done = self.off >= self.data.len();
        if done || exited {
            self.closed_early |= !done; // exited with input left
            self.tx = None;
        }
        Ok(())
    }
}

/// As [`CapturePipe::on_this_runtime`], for stdin.
fn stdin_on_this_runtime(tx: pipe::Sender) -> io::Result<pipe::Sender> {
    if !runtime_gone(|cx| tx.poll_write_ready(cx)) {
        return Ok(tx);
    }
    pipe::Sender::from_owned_fd_unchecked(tx.into_nonblocking_fd()?)
}

/// `EPIPE` (32 on every Linux architecture).
fn libc_epipe() -> i32 {
    io::Error::from(io::ErrorKind::BrokenPipe)
        .raw_os_error()
        .unwrap_or(32)
}

struct Run<'a> {
    child: &'a Child,
    life: Lifecycle,
    readers: [Reader; 2],
    sink: Option<LineSink>,
    deadline: Option<Instant>,
    watch_exit_early: bool,
    /// When the exit is watched at the latest ([`WATCH_EXIT_AFTER`]).
    watch_exit_at: Instant,
    /// Whether the pidfd is watched (on the reactor) yet.
    watching_exit: bool,
    /// Whether the pipes were read since the exit was seen.
    read_after_exit: bool,
}

impl Run<'_> {
    /// The event loop: ask the state machine, then wait for whichever comes
    /// first of exit, output, room for input, room for lines, cancellation
    /// or the instant it named.
    async fn run(
        &mut self,
        feed: &mut Feed,
        cancel: Option<&Notify>,
    ) -> Result<(childfd_io::Outcome, Vec<childfd_io::Holder>), OutputError> {
        let core = self.child.inner();
        let mut cancelled = cancel.is_none();
        let mut unreapable_pause = Duration::from_millis(1);
        loop {
            let pipes_open = self.readers.iter().any(|r| r.rx.is_some());
            self.watch_exit_when_it_matters(pipes_open)?;
            self.read_after_exit_or_deadline()?;
            // An exited child's stdin is closed (input left: closed early)
            // before the state machine may end the capture.
            feed.feed(self.life.status.is_some()).map_err(io_err)?;
            let pipes_open = self.readers.iter().any(|r| r.rx.is_some());
            let readers = &self.readers;
            let inodes = || {
                readers
                    .iter()
                    .filter_map(|r| r.rx.as_ref().and_then(engine::pipe_inode))
                    .collect()
            };
            let wake = match self.life.step(core, Instant::now(), pipes_open, &inodes)? {
                Step::Done(outcome, holders) => return Ok((outcome, holders)),
                Step::Wait(w) => w,
            };
            // Not watching the exit yet: wake when it is due.
            let exit_unwatched = !self.watching_exit && self.life.status.is_none();
            let wake = match wake {
                Some(w) if exit_unwatched => Some(w.min(self.watch_exit_at)),
                None if exit_unwatched => Some(self.watch_exit_at),
                w => w,
            };
            let room = self.sink.as_ref().is_none_or(LineSink::has_room);
            let sleep = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w.into()).await,
                    None => std::future::pending().await,
                }
            };
            let [out, err] = &mut self.readers;
            tokio::select! {
                biased;
                () = async { cancel.expect("checked").notified().await }, if !cancelled => {
                    cancelled = true;
                    self.life.cancel(core)?;
                }
                r = self.child.exited(), if self.watching_exit && self.life.status.is_none() => {
                    r.map_err(io_err)?;
                    self.life.poll_exit(core)?;
                    if self.life.status.is_none() {
                        // Exited but not reapable yet (held by a debugger).
                        tokio::time::sleep(unreapable_pause).await;
                        unreapable_pause = (unreapable_pause * 2).min(Duration::from_millis(100));
                    }
                }
                r = out.readable(), if room && out.rx.is_some() => {
                    r.map_err(io_err)?;
                    out.read_now(self.sink.as_ref(), false).map_err(io_err)?;
                }
                r = err.readable(), if room && err.rx.is_some() => {
                    r.map_err(io_err)?;
                    err.read_now(self.sink.as_ref(), false).map_err(io_err)?;
                }
                r = feed.writable(), if feed.tx.is_some() => r.map_err(io_err)?,
                () = async { self.sink.as_ref().expect("checked").wait_room().await }, if !room => {}
                () = sleep => {}
            }
            // Feed stdin after any event: room in the pipe, or the exit.
            feed.feed(self.life.status.is_some()).map_err(io_err)?;
        }
    }

    /// Before the state machine decides, as childfd-io does in the turn
    /// that sees the pidfd event or the deadline: once the exit is first
    /// seen, and when the deadline is due (the exit looked up first), the
    /// pipes are read. A `select!` takes one event per turn, so without
    /// this an exit seen in one turn was judged before the output waiting
    /// beside it was read: a wait-delay of zero reported the pipes held
    /// (with nobody holding them), and a task that ran late (a busy
    /// runtime) found its child, which had exited before the deadline,
    /// timed out.
    fn read_after_exit_or_deadline(&mut self) -> Result<(), OutputError> {
        let core = self.child.inner();
        let deadline_due = self.life.deadline_due(Instant::now());
        if deadline_due {
            // The kernel closes the child's fds before its exit shows:
            // reads after it see its EOF.
            self.life.poll_exit(core)?;
        }
        let exit_unread = self.life.status.is_some() && !self.read_after_exit;
        if !(deadline_due || exit_unread) {
            return Ok(());
        }
        self.read_after_exit |= self.life.status.is_some();
        for r in &mut self.readers {
            r.read_now(self.sink.as_ref(), true).map_err(io_err)?;
        }
        Ok(())
    }

    /// Starts watching the pidfd once the exit matters: from the start
    /// with a wait-delay or input, else once the pipes are at EOF, the
    /// deadline has come, the tree is being ended or the job has run for
    /// [`WATCH_EXIT_AFTER`] (a child that exited while a descendant holds
    /// its pipes is then reaped, not left a zombie until they close). A
    /// short job has usually exited by the end of its output: one
    /// `waitid(WNOHANG)` then reaps it, and its pidfd never joins the
    /// reactor (as the Supervisor's jobs).
    fn watch_exit_when_it_matters(&mut self, pipes_open: bool) -> Result<(), OutputError> {
        if self.watching_exit || self.life.status.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        let due = !pipes_open
            || self.life.ending()
            || self.deadline.is_some_and(|d| now >= d)
            || now >= self.watch_exit_at;
        if due {
            // Exited already (its output ended with it), or about to be
            // signalled: know it before the state machine decides.
            self.life.poll_exit(self.child.inner())?;
        }
        self.watching_exit = due || self.watch_exit_early;
        Ok(())
    }
}
