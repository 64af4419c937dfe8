//! What [`output`](crate::output) should do: the same bounds as
//! [`childfd_io::Options`], with input and lines that can cross threads.

use std::sync::Arc;
use std::time::Duration;

use childfd_io::engine::Limits;

use crate::lines::{LineSink, Lines};

/// Options of [`output`](crate::output) and of a [`JobSet`](crate::JobSet)
/// job. The same bounds as [`childfd_io::Options`], checked by the same
/// code; input is owned bytes and lines come as a stream, so the future is
/// `Send`.
///
/// ```
/// use childfd_tokio::Options;
/// use std::time::Duration;
/// let opts = Options::new()
///     .deadline(Duration::from_secs(60))
///     .grace(Duration::from_secs(2))
///     .wait_delay(Duration::from_millis(500))
///     .max_bytes(1 << 20)
///     .keep_tail(64 << 10);
/// # let _ = opts;
/// ```
#[derive(Debug, Default)]
pub struct Options {
    pub(crate) limits: Limits,
    pub(crate) input: Option<Vec<u8>>,
    pub(crate) lines: Option<LineSink>,
    pub(crate) line_events: bool,
    pub(crate) tag: Option<Arc<str>>,
}

impl Options {
    /// No deadline, no wait-delay (wait for EOF however long it takes),
    /// everything kept, no input, grace [`DEFAULT_GRACE`](crate::DEFAULT_GRACE).
    pub fn new() -> Options {
        Options::default()
    }

    /// When this much time has passed since [`output`](crate::output) was
    /// called (for a job: since it started), the tree is terminated:
    /// SIGTERM and SIGCONT, then SIGKILL after the [grace](Self::grace);
    /// the outcome is [`Outcome::TimedOut`](crate::Outcome::TimedOut).
    pub fn deadline(mut self, after: Duration) -> Self {
        self.limits.deadline = Some(after);
        self
    }

    /// Time between SIGTERM and SIGKILL when the deadline fires (default
    /// [`DEFAULT_GRACE`](crate::DEFAULT_GRACE)).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.limits.grace = grace;
        self
    }

    /// After the child exits, keep reading at most this long. If a pipe is
    /// still held open then by a descendant that inherited it, stop and
    /// report [`Outcome::PipesHeldOpen`](crate::Outcome::PipesHeldOpen)
    /// with the holders. Without it, reading waits for EOF (bounded only
    /// by the deadline).
    pub fn wait_delay(mut self, delay: Duration) -> Self {
        self.limits.wait_delay = Some(delay);
        self
    }

    /// When the wait-delay expires with pipes held, kill the child's tree
    /// (after naming the holders).
    pub fn kill_tree_on_held_pipes(mut self, yes: bool) -> Self {
        self.limits.kill_tree_on_held_pipes = yes;
        self
    }

    /// Keep at most the first `n` bytes of each stream; the rest is still
    /// read (the child never blocks on a full pipe) and counted.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.limits.head = n;
        self.limits.head_set = true;
        self
    }

    /// With [`max_bytes`](Self::max_bytes): also keep the last `n` bytes of
    /// each stream.
    pub fn keep_tail(mut self, n: usize) -> Self {
        self.limits.tail = n;
        self.limits.tail_set = true;
        self
    }

    /// Bytes to write to the child's stdin (non-blocking, interleaved with
    /// reading, never raising SIGPIPE), then close it.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.input = Some(bytes.into());
        self
    }

    /// Every line of stdout and stderr, in arrival order, as a
    /// [`Stream`](futures_core::Stream) (the line without `\n`; a partial
    /// last line at EOF; lines longer than
    /// [`MAX_LINE`](childfd_io::lines::MAX_LINE) in pieces). Consume it
    /// concurrently with [`output`](crate::output) (`join!`, another task):
    /// when 1,024 lines are waiting, reading pauses (the deadline still
    /// fires). Dropping the stream discards the lines.
    pub fn lines(mut self) -> (Self, Lines) {
        let (sink, lines) = crate::lines::channel();
        self.lines = Some(sink);
        (self, lines)
    }

    /// For a [`JobSet`](crate::JobSet) job: deliver each line as an
    /// [`Event::Line`](crate::Event::Line).
    pub fn line_events(mut self, yes: bool) -> Self {
        self.line_events = yes;
        self
    }

    /// For a [`JobSet`](crate::JobSet) job: a name carried by its events
    /// and report (a test's name, say).
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    pub(crate) fn has_input(&self) -> bool {
        self.input.is_some()
    }
}
