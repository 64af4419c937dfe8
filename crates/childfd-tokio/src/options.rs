//! What [`output`](crate::output) should do: the same bounds as
//! [`childfd_io::Options`], with input and lines that can cross threads.

use std::sync::Arc;

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

    childfd_io::engine::limits_builder!();

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
