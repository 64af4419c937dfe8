//! What the supervisor tells its caller: [`Event`]s, each job's
//! [`Report`], and the [`Summary`] of counts.

use std::sync::Arc;
use std::time::Duration;

use childfd::{EndedBy, ExitStatus};

use super::{JobId, Supervisor};
use crate::capture::Captured;
use crate::holders::Holder;
use crate::options::Stream;
use crate::{Outcome, OutputError};

/// How a job ended: one shape for every ending, so that a runner needs
/// one code path ([`Event::report`]).
///
/// ```
/// use childfd_io::{Event, JobOptions, Outcome, Supervisor};
/// use std::time::Duration;
///
/// let mut sup = Supervisor::new(1)?;
/// let mut cmd = childfd::Command::new("sh");
/// cmd.args(["-c", "echo out; sleep 60 & exit 4"]); // the sleep keeps stdout open
/// let id = sup.push(cmd, JobOptions::new().wait_delay(Duration::from_millis(100)).kill_tree_on_held_pipes(true));
/// let mut report = None;
/// while let Some(ev) = sup.next() {
///     if let Event::PipesHeldOpen(r) = ev {
///         report = Some(r);
///     }
/// }
/// let r = report.expect("the sleep held the pipe");
/// assert_eq!((r.id, r.outcome), (id, Outcome::PipesHeldOpen));
/// assert_eq!(r.status.and_then(|s| s.code()), Some(4));
/// assert_eq!(r.stdout.text(), "out\n");
/// assert!(r.holders.iter().any(|h| h.name == "sleep"));
/// assert!(r.elapsed >= Duration::from_millis(100));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Report {
    /// The job.
    pub id: JobId,
    /// The caller's [tag](super::JobOptions::tag).
    pub tag: Option<Arc<str>>,
    /// Its child's pid (`None` if it never started).
    pub pid: Option<u32>,
    /// The child's status, if it ended.
    pub status: Option<ExitStatus>,
    /// Why the job ended.
    pub outcome: Outcome,
    /// What was kept of stdout.
    pub stdout: Captured,
    /// What was kept of stderr.
    pub stderr: Captured,
    /// Bytes written to stdin.
    pub stdin_written: u64,
    /// The child ended (or closed stdin) before taking all its input.
    pub stdin_closed_early: bool,
    /// Processes holding a pipe when reading stopped.
    pub holders: Vec<Holder>,
    /// With [`Outcome::Leaked`]: how many processes of the job's tree
    /// were still alive when its child exited (then killed).
    pub left_behind: usize,
    /// After a deadline: TERM or KILL.
    pub ended_by: Option<EndedBy>,
    /// With [`Outcome::SpawnFailed`] and [`Outcome::Failed`]: why.
    pub error: Option<Arc<OutputError>>,
    /// Time from spawn to this report.
    pub elapsed: Duration,
}

impl Report {
    /// The report of a job that did not run (or whose run is unknown).
    /// Public for `childfd-tokio`'s job set; not a stable API.
    #[doc(hidden)]
    pub fn empty(id: JobId, tag: Option<Arc<str>>, outcome: Outcome) -> Report {
        Report {
            id,
            tag,
            pid: None,
            status: None,
            outcome,
            stdout: Captured::default(),
            stderr: Captured::default(),
            stdin_written: 0,
            stdin_closed_early: false,
            holders: Vec::new(),
            left_behind: 0,
            ended_by: None,
            error: None,
            elapsed: Duration::ZERO,
        }
    }
}

/// What a [`Supervisor`] reports, in the order it happened.
///
/// ```
/// use childfd_io::{Event, JobOptions, Supervisor};
///
/// let mut sup = Supervisor::new(4)?;
/// let mut ok = childfd::Command::new("sh");
/// ok.args(["-c", "echo one; echo two"]);
/// let ok = sup.push(ok, JobOptions::new().lines(true));
/// let missing = sup.push(childfd::Command::new("/no/such/program"), JobOptions::new());
/// let mut log = Vec::new();
/// while let Some(ev) = sup.next() {
///     let what = match &ev {
///         Event::Started { .. } => "started".to_string(),
///         Event::Line { line, .. } => String::from_utf8_lossy(line).into_owned(),
///         Event::Exited(r) => format!("exited: {}", r.status.unwrap()),
///         Event::SpawnFailed(r) => format!("failed: {}", r.error.as_ref().expect("why")),
///         other => format!("{other:?}"),
///     };
///     log.push((ev.id(), what));
/// }
/// let of = |id| log.iter().filter(|(i, _)| *i == Some(id)).map(|(_, w)| w.as_str()).collect::<Vec<_>>();
/// assert_eq!(of(ok), ["started", "one", "two", "exited: exit status: 0"]);
/// assert_eq!(of(missing).len(), 1);
/// assert!(of(missing)[0].starts_with("failed: cannot spawn `/no/such/program`"), "{log:?}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The job's child was spawned.
    Started {
        /// The job.
        id: JobId,
        /// Its pid.
        pid: u32,
        /// The caller's [tag](super::JobOptions::tag).
        tag: Option<Arc<str>>,
    },
    /// A line of output (with [`JobOptions::lines`](super::JobOptions::lines)).
    Line {
        /// The job.
        id: JobId,
        /// Which stream.
        stream: Stream,
        /// The line, without `\n`.
        line: Vec<u8>,
        /// The caller's [tag](super::JobOptions::tag).
        tag: Option<Arc<str>>,
    },
    /// The child exited and its pipes reached EOF.
    Exited(Report),
    /// The deadline fired and the tree was terminated.
    TimedOut(Report),
    /// The child exited but its pipes were still held after the wait-delay.
    PipesHeldOpen(Report),
    /// The job was cancelled (its tree killed, its output drained).
    Cancelled(Report),
    /// The child exited, but (with
    /// [`kill_tree_on_exit`](super::JobOptions::kill_tree_on_exit))
    /// processes of its tree were left behind and killed:
    /// [`Report::left_behind`] says how many.
    Leaked(Report),
    /// The job's child could not be spawned ([`Report::error`] says why).
    SpawnFailed(Report),
    /// Supervising the job failed unexpectedly (its tree was killed;
    /// [`Report::error`] says why).
    Failed(Report),
    /// A signal interrupted the loop's wait (only with
    /// [`Supervisor::stop_on_interrupt`]); no job is concerned.
    Interrupted,
}

impl Event {
    /// The job the event is about (`None` for [`Event::Interrupted`]).
    pub fn id(&self) -> Option<JobId> {
        match self {
            Event::Started { id, .. } | Event::Line { id, .. } => Some(*id),
            _ => self.report().map(|r| r.id),
        }
    }

    /// The caller's [tag](super::JobOptions::tag) of the job.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Event::Started { tag, .. } | Event::Line { tag, .. } => tag.as_deref(),
            _ => self.report().and_then(|r| r.tag.as_deref()),
        }
    }

    /// The report, for the events that end a job (every one but
    /// `Started`, `Line` and `Interrupted`).
    ///
    /// ```
    /// # use childfd_io::{Event, JobOptions, Outcome, Supervisor};
    /// let mut sup = Supervisor::new(2)?;
    /// sup.push(childfd::Command::new("true"), JobOptions::new().tag("ok"));
    /// sup.push(childfd::Command::new("/nonexistent"), JobOptions::new().tag("missing"));
    /// for ev in sup.by_ref() {
    ///     let Some(r) = ev.report() else { continue };
    ///     match r.outcome {
    ///         Outcome::Exited => assert_eq!(r.tag.as_deref(), Some("ok")),
    ///         Outcome::SpawnFailed => assert!(r.error.is_some()),
    ///         other => panic!("{other:?}"),
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn report(&self) -> Option<&Report> {
        report_of!(self)
    }

    /// [`report`](Self::report), by value.
    pub fn into_report(self) -> Option<Report> {
        report_of!(self)
    }
}

/// The report an event carries, `Some` for the events that end a job:
/// one list of them for [`Event::report`] (by reference) and
/// [`Event::into_report`] (by value).
macro_rules! report_of {
    ($event:expr) => {
        match $event {
            Event::Exited(r)
            | Event::TimedOut(r)
            | Event::PipesHeldOpen(r)
            | Event::Cancelled(r)
            | Event::Leaked(r)
            | Event::SpawnFailed(r)
            | Event::Failed(r) => Some(r),
            Event::Started { .. } | Event::Line { .. } | Event::Interrupted => None,
        }
    };
}
use report_of;

/// Counts over a supervisor's life.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Jobs pushed.
    pub queued: u64,
    /// Children spawned.
    pub started: u64,
    /// Exited with code 0.
    pub succeeded: u64,
    /// Exited with another code or by a signal (not timed out).
    pub failed: u64,
    /// Deadline fired.
    pub timed_out: u64,
    /// Pipes still held after the wait-delay.
    pub pipes_held: u64,
    /// Cancelled (started or not).
    pub cancelled: u64,
    /// Could not be spawned.
    pub spawn_failed: u64,
    /// Supervision failed unexpectedly.
    pub errors: u64,
    /// Exited leaving processes behind (killed).
    pub leaked: u64,
    /// The most children that were in flight at once.
    pub max_in_flight: usize,
    /// CPU time of the supervising thread (`CLOCK_THREAD_CPUTIME_ID`).
    pub supervisor_cpu: Duration,
}

impl Supervisor {
    /// A job cancelled before it started.
    pub(super) fn report_unstarted(&mut self, id: JobId, tag: Option<Arc<str>>) {
        self.report(Report::empty(id, tag, Outcome::Cancelled));
    }

    /// Counts a finished job's report and queues its event.
    pub(super) fn report(&mut self, report: Report) {
        let event = self.summary.record(report);
        self.out.push_back(event);
    }
}

impl Summary {
    /// Counts a finished job's report and returns its event: the one
    /// mapping from [`Outcome`] to [`Event`], for the [`Supervisor`] and
    /// `childfd-tokio`'s job set. Not a stable API.
    #[doc(hidden)]
    pub fn record(&mut self, report: Report) -> Event {
        match report.outcome {
            Outcome::Exited => {
                if report.status.is_some_and(|s| s.success()) {
                    self.succeeded += 1;
                } else {
                    self.failed += 1;
                }
                Event::Exited(report)
            }
            Outcome::TimedOut => {
                self.timed_out += 1;
                Event::TimedOut(report)
            }
            Outcome::PipesHeldOpen => {
                self.pipes_held += 1;
                Event::PipesHeldOpen(report)
            }
            Outcome::Cancelled => {
                self.cancelled += 1;
                Event::Cancelled(report)
            }
            Outcome::Leaked => {
                self.leaked += 1;
                Event::Leaked(report)
            }
            Outcome::SpawnFailed => {
                self.spawn_failed += 1;
                Event::SpawnFailed(report)
            }
            Outcome::Failed => {
                self.errors += 1;
                Event::Failed(report)
            }
        }
    }
}
