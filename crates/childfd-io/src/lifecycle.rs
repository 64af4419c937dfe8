//! When a child's capture is done, and what to do meanwhile: the deadline
//! (terminate the tree: TERM + CONT, KILL after the grace), the wait-delay
//! after exit (stop and name the pipe holders), cancellation (KILL now).
//! Shared by [`output`](crate::output) and the
//! [`Supervisor`](crate::Supervisor); it only decides and signals, the
//! caller does the I/O.

use std::time::{Duration, Instant};

use childfd::{Child, EndedBy, ExitStatus, Signal};

use crate::holders::{self, Holder};
use crate::{Outcome, OutputError};

/// After SIGKILL, how long to keep reading pipes that something outside
/// the tree still holds, when no wait-delay was given.
pub const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);
/// While terminating, how often to check whether the tree is gone.
const TREE_CHECK: Duration = Duration::from_millis(10);

#[derive(Debug)]
enum Phase {
    Running,
    /// TERM sent (deadline) or KILL sent (cancel); KILL at `kill_at`
    /// unless the tree is gone.
    Ending {
        kill_at: Instant,
        killed_at: Option<Instant>,
        cancelled: bool,
    },
}

/// What the caller should do next.
#[derive(Debug)]
pub enum Step {
    /// Finished: stop reading and report.
    Done(Outcome, Vec<Holder>),
    /// Keep going; call `step` again on any event, or at this time.
    Wait(Option<Instant>),
}

/// One child's capture state machine (see the module docs).
#[derive(Debug)]
pub struct Lifecycle {
    deadline: Option<Instant>,
    grace: Duration,
    wait_delay: Option<Duration>,
    kill_on_held: bool,
    /// The child's status, once [`poll_exit`](Self::poll_exit) reaped it.
    pub status: Option<ExitStatus>,
    /// When `poll_exit` saw the child exit.
    pub exited_at: Option<Instant>,
    phase: Phase,
}

impl Lifecycle {
    /// The state machine of a child started at `start`, with these limits.
    pub fn new(start: Instant, limits: &crate::options::Limits) -> Lifecycle {
        Lifecycle {
            deadline: limits.deadline.and_then(|d| start.checked_add(d)),
            grace: limits.grace,
            wait_delay: limits.wait_delay,
            kill_on_held: limits.kill_tree_on_held_pipes,
            status: None,
            exited_at: None,
            phase: Phase::Running,
        }
    }

    /// The pidfd was readable (or might be): reap if exited.
    pub fn poll_exit(&mut self, child: &Child) -> Result<(), OutputError> {
        if self.status.is_none() {
            self.status = child.try_wait()?;
            if self.status.is_some() {
                self.exited_at = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// Cancel: SIGKILL the tree now, then drain.
    pub fn cancel(&mut self, child: &Child) -> Result<(), OutputError> {
        if matches!(
            self.phase,
            Phase::Ending {
                cancelled: true,
                ..
            }
        ) {
            return Ok(());
        }
        child.kill_tree()?;
        let now = Instant::now();
        self.phase = Phase::Ending {
            kill_at: now,
            killed_at: Some(now),
            cancelled: true,
        };
        Ok(())
    }

    /// With the deadline fired: whether TERM sufficed.
    pub fn ended_by(&self) -> Option<EndedBy> {
        match self.phase {
            Phase::Running
            | Phase::Ending {
                cancelled: true, ..
            } => None,
            Phase::Ending {
                killed_at: Some(_), ..
            } => Some(EndedBy::Kill),
            Phase::Ending {
                killed_at: None, ..
            } => Some(EndedBy::Term),
        }
    }

    /// Decides, at `now`, whether the capture is done; signals the tree
    /// when a deadline or grace has passed. `inodes` gives the inodes of
    /// the pipes still open (for naming holders).
    pub fn step(
        &mut self,
        child: &Child,
        now: Instant,
        pipes_open: bool,
        inodes: &dyn Fn() -> Vec<u64>,
    ) -> Result<Step, OutputError> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        loop {
            match &mut self.phase {
                Phase::Running => {
                    if self.status.is_some() && !pipes_open {
                        return Ok(Step::Done(Outcome::Exited, Vec::new()));
                    }
                    if let Some(d) = self.deadline {
                        if now >= d {
                            child.signal_tree(Signal::TERM)?;
                            child.signal_tree(Signal::CONT)?;
                            let kill_at = now + self.grace;
                            self.phase = Phase::Ending {
                                kill_at,
                                killed_at: None,
                                cancelled: false,
                            };
                            continue;
                        }
                        at(d);
                    }
                    if let (Some(e), Some(delay)) = (self.exited_at, self.wait_delay) {
                        if now >= e + delay {
                            let held = holders::find(&inodes());
                            if self.kill_on_held {
                                child.kill_tree()?;
                            }
                            return Ok(Step::Done(Outcome::PipesHeldOpen, held));
                        }
                        at(e + delay);
                    }
                    return Ok(Step::Wait(wake));
                }
                Phase::Ending {
                    kill_at,
                    killed_at,
                    cancelled,
                } => {
                    let outcome = if *cancelled {
                        Outcome::Cancelled
                    } else {
                        Outcome::TimedOut
                    };
                    if self.status.is_some() && !pipes_open && child.wait_tree_deadline(now)? {
                        return Ok(Step::Done(outcome, Vec::new()));
                    }
                    match killed_at {
                        None if now >= *kill_at => {
                            child.kill_tree()?;
                            *killed_at = Some(now);
                            continue;
                        }
                        None => at(*kill_at),
                        Some(k) => {
                            let drain = self.wait_delay.unwrap_or(DRAIN_AFTER_KILL);
                            if now >= *k + drain {
                                return Ok(Step::Done(outcome, holders::find(&inodes())));
                            }
                            at(*k + drain);
                        }
                    }
                    at(now + TREE_CHECK);
                    return Ok(Step::Wait(wake));
                }
            }
        }
    }
}
