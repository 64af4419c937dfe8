//! What a caller asks of one job: [`JobOptions`].

use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::limits_builder;
use crate::options::{Input, Limits};

/// Identifies a job of a [`Supervisor`](super::Supervisor), in the order
/// they were pushed.
pub type JobId = u64;

/// Per-job options: deadline, grace, wait-delay, what to keep of output.
///
/// ```
/// use childfd_io::{Event, JobOptions, Supervisor};
/// use std::time::Duration;
///
/// let mut sup = Supervisor::new(2)?;
/// let opts = JobOptions::new()
///     .deadline(Duration::from_millis(300)) // then SIGTERM the tree...
///     .grace(Duration::from_secs(1)) // ...and SIGKILL after this
///     .max_bytes(4); // keep the first 4 bytes of each stream
/// let mut cmd = childfd::Command::new("sh");
/// cmd.args(["-c", "echo 123456; sleep 60"]);
/// sup.push(cmd, opts);
/// let mut seen = Vec::new();
/// while let Some(ev) = sup.next() {
///     if let Event::TimedOut(r) = ev {
///         seen.push((r.stdout.head, r.stdout.total, r.stdout.dropped));
///     }
/// }
/// assert_eq!(seen, [(b"1234".to_vec(), 7, 3)]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub(crate) limits: Limits,
    pub(super) lines: bool,
    pub(super) capture: bool,
    pub(super) kill_tree_on_exit: bool,
    pub(super) tag: Option<Arc<str>>,
    pub(super) input: JobInput,
}

/// A reader shared by the clones of one [`JobOptions`]: the first job
/// started with it takes it.
type SharedReader = Arc<Mutex<Option<Box<dyn Read + Send>>>>;

/// What a job's stdin is fed from.
#[derive(Clone, Default)]
pub(super) enum JobInput {
    #[default]
    None,
    Bytes(Arc<[u8]>),
    Reader(SharedReader),
}

impl JobInput {
    pub(super) fn is_some(&self) -> bool {
        !matches!(self, JobInput::None)
    }

    /// The input for one job's feeder.
    pub(super) fn take(&self) -> Input<'static> {
        match self {
            JobInput::None => Input::None,
            JobInput::Bytes(b) => Input::Shared(b.clone()),
            JobInput::Reader(r) => {
                let taken = r.lock().unwrap_or_else(|e| e.into_inner()).take();
                match taken {
                    Some(r) => Input::Reader(r),
                    None => Input::None,
                }
            }
        }
    }
}

impl fmt::Debug for JobInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobInput::None => f.write_str("None"),
            JobInput::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            JobInput::Reader(_) => f.write_str("Reader"),
        }
    }
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions::new()
    }
}

impl JobOptions {
    /// No deadline, no wait-delay, all output kept, no line events.
    pub fn new() -> JobOptions {
        JobOptions {
            limits: Limits::default(),
            lines: false,
            capture: true,
            kill_tree_on_exit: false,
            tag: None,
            input: JobInput::None,
        }
    }

    limits_builder!();

    /// Deliver each line as an [`Event::Line`](super::Event::Line) as it
    /// arrives.
    pub fn lines(mut self, yes: bool) -> Self {
        self.lines = yes;
        self
    }

    /// A name of the caller's (a test's name, a build step), carried in
    /// the job's [`Started`](super::Event::Started) and
    /// [`Line`](super::Event::Line) events and its [`Report`](super::Report).
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Bytes to write to the job's stdin, then close it; fed as
    /// [`Options::stdin_bytes`](crate::Options::stdin_bytes) does
    /// (non-blocking, one write per turn of the loop, closed when the
    /// child exits; a child that exits without reading it all is
    /// reported in [`Report::stdin_closed_early`](super::Report::stdin_closed_early)).
    /// Clones of these options share the bytes.
    pub fn stdin_bytes(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.input = JobInput::Bytes(bytes.into());
        self
    }

    /// A reader to copy to the job's stdin, then close it, one chunk per
    /// turn of the loop (it should not block for long: a file, a buffer).
    /// A reader cannot be shared: if these options are cloned, the first
    /// job started with them takes it and the others get an empty stdin.
    pub fn stdin_reader(mut self, r: impl Read + Send + 'static) -> Self {
        self.input = JobInput::Reader(Arc::new(Mutex::new(Some(Box::new(r)))));
        self
    }

    /// When the job ends, however it ends, kill whatever is left of its
    /// tree (descendants that closed their output and live on, stopped
    /// ones included): nothing of the job outlives its report. A job
    /// whose child exited but left processes behind is reported
    /// [`Event::Leaked`](super::Event::Leaked), with their number in
    /// [`Report::left_behind`](super::Report::left_behind).
    pub fn kill_tree_on_exit(mut self, yes: bool) -> Self {
        self.kill_tree_on_exit = yes;
        self
    }

    /// Send the job's stdout and stderr to `/dev/null` instead of pipes.
    pub fn discard_output(mut self) -> Self {
        self.capture = false;
        self
    }
}
