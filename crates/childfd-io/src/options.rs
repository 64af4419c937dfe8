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
    /// Bytes shared with the caller (a job's input; several jobs may feed
    /// the same bytes).
    Shared(std::sync::Arc<[u8]>),
    Reader(Box<dyn Read + 'a>),
}

/// Default grace between SIGTERM and SIGKILL when a deadline fires.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// The bounds of one child's capture, shared by [`Options`] and
/// [`JobOptions`](crate::JobOptions): when to terminate, how long to read
/// after exit, what to keep.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Terminate the tree this long after the start.
    pub deadline: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Keep reading at most this long after the child's exit.
    pub wait_delay: Option<Duration>,
    /// Kill the tree when the wait-delay expires with pipes held.
    pub kill_tree_on_held_pipes: bool,
    /// Bytes kept from the start of each stream.
    pub head: usize,
    /// Bytes kept from the end of each stream.
    pub tail: usize,
    /// Whether `head` was set (a tail needs a head cap).
    pub head_set: bool,
    /// Whether `tail` was set.
    pub tail_set: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: None,
            grace: DEFAULT_GRACE,
            wait_delay: None,
            kill_tree_on_held_pipes: false,
            head: usize::MAX,
            tail: 0,
            head_set: false,
            tail_set: false,
        }
    }
}

impl Limits {
    /// Rejects contradictory limits, before anything is started.
    ///
    /// # Errors
    ///
    /// [`OutputError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), OutputError> {
        let bad = |reason: &'static str| Err(OutputError::InvalidOptions { reason });
        if self.deadline == Some(Duration::ZERO) && self.grace.is_zero() {
            return bad("a zero deadline with no grace would kill the child before it could run");
        }
        if self.tail_set && !self.head_set {
            return bad("keep_tail needs max_bytes (without a cap everything is kept)");
        }
        Ok(())
    }
}

/// The builder methods for [`Limits`], written once for every options type
/// that has a `limits` field: [`Options`], [`JobOptions`](crate::JobOptions)
/// and `childfd_tokio::Options` (through [`engine`](crate::engine); not a
/// stable API).
#[doc(hidden)]
#[macro_export]
macro_rules! limits_builder {
    () => {
        /// When this much time has passed since the child started (for
        /// [`output`](crate::output): since it was called), its tree is
        /// terminated: SIGCONT and SIGTERM, then SIGKILL after the
        /// [grace](Self::grace); the outcome is
        /// [`Outcome::TimedOut`](crate::Outcome::TimedOut).
        pub fn deadline(mut self, after: std::time::Duration) -> Self {
            self.limits.deadline = Some(after);
            self
        }

        /// Time between SIGTERM and SIGKILL when the deadline fires
        /// (default [`DEFAULT_GRACE`](crate::DEFAULT_GRACE)).
        pub fn grace(mut self, grace: std::time::Duration) -> Self {
            self.limits.grace = grace;
            self
        }

        /// After the child exits, keep reading at most this long (Go's
        /// `WaitDelay`). If a pipe is still held open then, by a
        /// descendant that inherited it, stop and report
        /// [`Outcome::PipesHeldOpen`](crate::Outcome::PipesHeldOpen) with
        /// the holders. Without it, reading waits for EOF however long it
        /// takes (bounded only by the deadline).
        pub fn wait_delay(mut self, delay: std::time::Duration) -> Self {
            self.limits.wait_delay = Some(delay);
            self
        }

        /// When the wait-delay expires with pipes held, kill the child's
        /// tree (after naming the holders), and end the capture once the
        /// tree is gone (or after another wait-delay, if a member cannot
        /// die): a cgroup leaf is then removed as soon as the `Child` is
        /// dropped, even by a program that exits right after.
        pub fn kill_tree_on_held_pipes(mut self, yes: bool) -> Self {
            self.limits.kill_tree_on_held_pipes = yes;
            self
        }

        /// Keep at most the first `n` bytes of each stream; the rest is
        /// still read (so the child never blocks on a full pipe) and
        /// counted.
        pub fn max_bytes(mut self, n: usize) -> Self {
            self.limits.head = n;
            self.limits.head_set = true;
            self
        }

        /// With [`max_bytes`](Self::max_bytes): also keep the last `n`
        /// bytes of each stream.
        pub fn keep_tail(mut self, n: usize) -> Self {
            self.limits.tail = n;
            self.limits.tail_set = true;
            self
        }
    };
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
    pub(crate) limits: Limits,
    pub(crate) input: Input<'a>,
    pub(crate) on_line: Option<LineFn<'a>>,
    pub(crate) on_output: Option<LineFn<'a>>,
}

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
            limits: Limits::default(),
            input: Input::None,
            on_line: None,
            on_output: None,
        }
    }

    limits_builder!();

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
        self.limits.validate()
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("limits", &self.limits)
            .field("on_line", &self.on_line.is_some())
            .field("on_output", &self.on_output.is_some())
            .finish_non_exhaustive()
    }
}
