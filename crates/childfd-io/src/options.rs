//! What [`output`](crate::output) should do: deadlines, wait-delay, caps,
//! input and line streaming.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::time::Duration;

use crate::OutputError;

/// Which output stream a line or byte count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The child's fd 1.
    Stdout,
    /// The child's fd 2.
    Stderr,
}

/// A line callback: `(stream, line without the newline)`.
pub(crate) type LineFn<'a> = Box<dyn FnMut(Stream, &[u8]) + 'a>;

pub(crate) enum Input<'a> {
    None,
    Bytes(Cow<'a, [u8]>),
    Reader(Box<dyn Read + 'a>),
}

/// Options of [`output`](crate::output). Built by chaining:
///
/// ```
/// use childfd_io::Options;
/// use std::time::Duration;
/// let opts = Options::new()
///     .deadline(Duration::from_secs(60))
///     .grace(Duration::from_secs(2))
///     .wait_delay(Duration::from_millis(500))
///     .max_bytes(1 << 20)
///     .keep_tail(64 << 10);
/// # let _ = opts;
/// ```
pub struct Options<'a> {
    pub(crate) deadline: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) wait_delay: Option<Duration>,
    pub(crate) kill_tree_on_held_pipes: bool,
    pub(crate) head: usize,
    pub(crate) tail: usize,
    pub(crate) tail_set: bool,
    pub(crate) max_set: bool,
    pub(crate) input: Input<'a>,
    pub(crate) on_line: Option<LineFn<'a>>,
    pub(crate) on_output: Option<LineFn<'a>>,
}

/// Default grace between SIGTERM and SIGKILL when a deadline fires.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

impl Default for Options<'_> {
    fn default() -> Self {
        Options::new()
    }
}

impl<'a> Options<'a> {
    /// No deadline, no wait-delay (wait for EOF however long it takes),
    /// everything kept, no input, grace [`DEFAULT_GRACE`].
    pub fn new() -> Options<'a> {
        Options {
            deadline: None,
            grace: DEFAULT_GRACE,
            wait_delay: None,
            kill_tree_on_held_pipes: false,
            head: usize::MAX,
            tail: 0,
            tail_set: false,
            max_set: false,
            input: Input::None,
            on_line: None,
            on_output: None,
        }
    }

    /// When this much time has passed since `output` started, the child's
    /// tree is terminated (`terminate(grace)`: SIGTERM + SIGCONT, then
    /// SIGKILL after the grace) and what was read is returned with outcome
    /// [`Outcome::TimedOut`](crate::Outcome::TimedOut).
    pub fn deadline(mut self, after: Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Time between SIGTERM and SIGKILL when the deadline fires.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// After the child exits, keep reading at most this long (Go's
    /// `WaitDelay`). If a pipe is still held open then (by a descendant
    /// that inherited it), stop and report
    /// [`Outcome::PipesHeldOpen`](crate::Outcome::PipesHeldOpen) with the
    /// holders. Without it, `output` waits for EOF however long it takes
    /// (bounded only by the deadline).
    pub fn wait_delay(mut self, delay: Duration) -> Self {
        self.wait_delay = Some(delay);
        self
    }

    /// When the wait-delay expires with pipes held, kill the child's tree
    /// (after naming the holders).
    pub fn kill_tree_on_held_pipes(mut self, yes: bool) -> Self {
        self.kill_tree_on_held_pipes = yes;
        self
    }

    /// Keep at most the first `n` bytes of each stream; the rest is still
    /// read (so the child never blocks on a full pipe) and counted.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.head = n;
        self.max_set = true;
        self
    }

    /// With [`max_bytes`](Options::max_bytes): also keep the last `n` bytes.
    pub fn keep_tail(mut self, n: usize) -> Self {
        self.tail = n;
        self.tail_set = true;
        self
    }

    /// Bytes to write to the child's stdin (non-blocking, interleaved with
    /// reading), then close it.
    pub fn stdin_bytes(mut self, bytes: impl Into<Cow<'a, [u8]>>) -> Self {
        self.input = Input::Bytes(bytes.into());
        self
    }

    /// A reader to copy to the child's stdin, then close it. It is read in
    /// 64 KiB chunks when the pipe has room; it should not block for long
    /// (a file or an in-memory buffer, not a socket).
    pub fn stdin_reader(mut self, r: impl Read + 'a) -> Self {
        self.input = Input::Reader(Box::new(r));
        self
    }

    /// Calls `f(stream, line)` for every line of stdout and stderr, in
    /// arrival order, without the `\n`; a partial last line is delivered
    /// at EOF. Lines longer than [`MAX_LINE`](crate::lines::MAX_LINE) come
    /// in pieces. Independent of the byte caps.
    pub fn on_line(mut self, f: impl FnMut(Stream, &[u8]) + 'a) -> Self {
        self.on_line = Some(Box::new(f));
        self
    }

    /// Calls `f(stream, bytes)` with every chunk as it is read, in arrival
    /// order, without waiting for newlines (to pass output through, for
    /// example). Independent of the byte caps and of
    /// [`on_line`](Options::on_line).
    pub fn on_output(mut self, f: impl FnMut(Stream, &[u8]) + 'a) -> Self {
        self.on_output = Some(Box::new(f));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), OutputError> {
        let bad = |reason: &'static str| Err(OutputError::InvalidOptions { reason });
        if self.deadline == Some(Duration::ZERO) && self.grace.is_zero() {
            return bad("a zero deadline with no grace would kill the child before it could run");
        }
        if self.tail_set && !self.max_set {
            return bad("keep_tail needs max_bytes (without a cap everything is kept)");
        }
        Ok(())
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("deadline", &self.deadline)
            .field("grace", &self.grace)
            .field("wait_delay", &self.wait_delay)
            .field("kill_tree_on_held_pipes", &self.kill_tree_on_held_pipes)
            .field("max_bytes", &self.max_set.then_some(self.head))
            .field("keep_tail", &self.tail)
            .field("on_line", &self.on_line.is_some())
            .field("on_output", &self.on_output.is_some())
            .finish_non_exhaustive()
    }
}
