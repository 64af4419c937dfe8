//! What the supervisor tells its caller: [`Event`]s, each job's
//! [`Report`], and the [`Summary`] of counts.

use std::time::Duration;

use childfd::{EndedBy, ExitStatus, SpawnError};

use super::{JobId, Supervisor};
use crate::capture::Captured;
use crate::holders::Holder;
use crate::options::Stream;
use crate::{Outcome, OutputError};

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// The job.
    pub id: JobId,
    /// Its child's pid (`None` if it was cancelled before it started).
    pub pid: Option<u32>,
    /// The child's status, if it ended.
    pub status: Option<ExitStatus>,
    /// Why the job ended.
    pub outcome: Outcome,
    /// What was kept of stdout.
    pub stdout: Captured,
    /// What was kept of stderr.
    pub stderr: Captured,
    /// Processes holding a pipe when reading stopped.
    pub holders: Vec<Holder>,
    /// After a deadline: TERM or KILL.
    pub ended_by: Option<EndedBy>,
    /// Time from spawn to this report.
    pub elapsed: Duration,
}

/// What a [`Supervisor`] reports, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The job's child was spawned.
    Started {
        /// The job.
        id: JobId,
        /// Its pid.
        pid: u32,
    },
    /// A line of output (with [`JobOptions::lines`](super::JobOptions::lines)).
    Line {
        /// The job.
        id: JobId,
        /// Which stream.
        stream: Stream,
        /// The line, without `\n`.
        line: Vec<u8>,
    },
    /// The child exited and its pipes reached EOF.
    Exited(Report),
    /// The deadline fired and the tree was terminated.
    TimedOut(Report),
    /// The child exited but its pipes were still held after the wait-delay.
    PipesHeldOpen(Report),
    /// The job was cancelled (its tree killed, its output drained).
    Cancelled(Report),
    /// The job's child could not be spawned.
    SpawnFailed {
        /// The job.
        id: JobId,
        /// Why.
        error: SpawnError,
    },
    /// Supervising the job failed unexpectedly (its tree was killed).
    Failed {
        /// The job.
        id: JobId,
        /// Why.
        error: OutputError,
    },
    /// A signal interrupted the loop's wait (only with
    /// [`Supervisor::stop_on_interrupt`]); no job is concerned.
    Interrupted,
}

impl Event {
    /// The job the event is about (`None` for [`Event::Interrupted`]).
    pub fn id(&self) -> Option<JobId> {
        match self {
            Event::Started { id, .. }
            | Event::Line { id, .. }
            | Event::SpawnFailed { id, .. }
            | Event::Failed { id, .. } => Some(*id),
            Event::Exited(r)
            | Event::TimedOut(r)
            | Event::PipesHeldOpen(r)
            | Event::Cancelled(r) => Some(r.id),
            Event::Interrupted => None,
        }
    }
}

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
    /// The most children that were in flight at once.
    pub max_in_flight: usize,
    /// CPU time of the supervising thread (`CLOCK_THREAD_CPUTIME_ID`).
    pub supervisor_cpu: Duration,
}

impl Supervisor {
    /// A job cancelled before it started.
    pub(super) fn report_unstarted(&mut self, id: JobId) {
        self.summary.cancelled += 1;
        self.out.push_back(Event::Cancelled(Report {
            id,
            pid: None,
            status: None,
            outcome: Outcome::Cancelled,
            stdout: Captured::default(),
            stderr: Captured::default(),
            holders: Vec::new(),
            ended_by: None,
            elapsed: Duration::ZERO,
        }));
    }

    /// Counts a finished job's report and queues its event.
    pub(super) fn report(&mut self, outcome: Outcome, report: Report) {
        let event = match outcome {
            Outcome::Exited => {
                if report.status.is_some_and(|s| s.success()) {
                    self.summary.succeeded += 1;
                } else {
                    self.summary.failed += 1;
                }
                Event::Exited(report)
            }
            Outcome::TimedOut => {
                self.summary.timed_out += 1;
                Event::TimedOut(report)
            }
            Outcome::PipesHeldOpen => {
                self.summary.pipes_held += 1;
                Event::PipesHeldOpen(report)
            }
            Outcome::Cancelled => {
                self.summary.cancelled += 1;
                Event::Cancelled(report)
            }
        };
        self.out.push_back(event);
    }
}
