//! What a caller asks of one job: [`JobOptions`].

use crate::options::{Limits, limits_builder};

/// Identifies a job of a [`Supervisor`](super::Supervisor), in the order
/// they were pushed.
pub type JobId = u64;

/// Per-job options: deadline, grace, wait-delay, what to keep of output.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub(crate) limits: Limits,
    pub(super) lines: bool,
    pub(super) capture: bool,
    pub(super) kill_tree_on_exit: bool,
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
        }
    }

    limits_builder!();

    /// Deliver each line as an [`Event::Line`](super::Event::Line) as it
    /// arrives.
    pub fn lines(mut self, yes: bool) -> Self {
        self.lines = yes;
        self
    }

    /// When the job ends, however it ends, kill whatever is left of its
    /// tree (descendants that closed their output and live on, stopped
    /// ones included): nothing of the job outlives its report.
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
