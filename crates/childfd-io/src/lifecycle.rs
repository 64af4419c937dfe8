//! When a child's capture is done, and what to do meanwhile: the deadline
//! (terminate the tree: CONT + TERM, KILL after the grace), the wait-delay
//! after exit (stop and name the pipe holders, and with
//! `kill_tree_on_held_pipes` KILL the tree), cancellation (KILL now).
//!
//! Whenever it kills the tree, the capture ends only once the tree is gone
//! (or a bound has passed): the caller then drops a `Child` whose tree is
//! empty, so a cgroup leaf is removed at once, not later by the background
//! reaper, which a process that exits right after never gives the chance.
//! Shared by [`output`](crate::output) and the
//! [`Supervisor`](crate::Supervisor); it only decides and signals, the
//! caller does the I/O.

use std::time::{Duration, Instant};

use childfd::{Child, EndedBy, ExitStatus, Signal, TreeError};

use crate::holders::{self, Holder};
use crate::{Outcome, OutputError};

/// After SIGKILL, how long to keep reading pipes that something outside
/// the tree still holds, when no wait-delay was given.
pub const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);
/// After the first signal ended the whole tree, how long to keep reading
/// pipes that something outside the tree (a `setsid` escapee) still holds,
/// when no wait-delay was given.
pub const DRAIN_AFTER_TREE_GONE: Duration = Duration::from_millis(250);
/// While terminating, how often to check whether the tree is gone.
const TREE_CHECK: Duration = Duration::from_millis(10);

/// Far enough to be never for a capture, near enough to add to any
/// `Instant` (about a century).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, or about a century after `t` when that overflows: a grace or
/// wait-delay of [`Duration::MAX`] means "never", not a panic.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(NEVER)).unwrap_or(t)
}

/// Why the tree is being ended.
#[derive(Debug)]
enum Why {
    /// The deadline, or [`Lifecycle::terminate`].
    Deadline,
    /// [`Lifecycle::cancel`].
    Cancelled,
    /// The wait-delay passed with these processes holding a pipe, and
    /// `kill_tree_on_held_pipes` is set.
    HeldPipes(Vec<Holder>),
}

#[derive(Debug)]
enum Phase {
    Running,
    /// TERM sent (deadline) or KILL sent (cancel, held pipes); KILL at
    /// `kill_at` unless the tree is gone.
    Ending {
        kill_at: Instant,
        killed_at: Option<Instant>,
        why: Why,
        /// When the child and its whole tree were seen gone while a pipe
        /// was still open (held by a process outside the tree).
        tree_gone_at: Option<Instant>,
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
    first_signal: Signal,
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
            first_signal: Signal::TERM,
            status: None,
            exited_at: None,
            phase: Phase::Running,
        }
    }

    /// Sends `sig` instead of SIGTERM when the deadline fires (`timeout
    /// -s`); SIGCONT still follows, SIGKILL after the grace.
    pub fn first_signal(mut self, sig: Signal) -> Lifecycle {
        self.first_signal = sig;
        self
    }

    /// Ends the tree now as the deadline would, but with `sig` as the
    /// first signal (one the caller received, to pass on): `sig` and
    /// SIGCONT to the tree, SIGKILL after the grace unless it is gone by
    /// then. The outcome is then [`Outcome::TimedOut`]. Does nothing once
    /// the tree is being ended.
    ///
    /// # Errors
    ///
    /// [`OutputError::Tree`] if the tree cannot be signalled.
    pub fn terminate(
        &mut self,
        child: &Child,
        now: Instant,
        sig: Signal,
    ) -> Result<(), OutputError> {
        if let Phase::Running = self.phase {
            self.start_ending(child, now, sig)?;
        }
        Ok(())
    }

    /// Whether the tree is being ended (deadline,
    /// [`terminate`](Self::terminate) or [`cancel`](Self::cancel)).
    pub fn ending(&self) -> bool {
        matches!(self.phase, Phase::Ending { .. })
    }

    fn start_ending(
        &mut self,
        child: &Child,
        now: Instant,
        sig: Signal,
    ) -> Result<(), OutputError> {
        // CONT first: sent after the TERM, it could come too late for a
        // stopped member once the leader died of the TERM (its orphaned
        // group gets SIGHUP + SIGCONT from the kernel, and the SIGHUP ends
        // a member that handles TERM before it ever sees it).
        for s in [Signal::CONT, sig] {
            match child.signal_tree(s) {
                // Members that could not be signalled safely: the kill at
                // the end of the grace reaches them.
                Ok(()) | Err(TreeError::MembersNotSignalled { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.phase = Phase::Ending {
            kill_at: after(now, self.grace),
            killed_at: None,
            why: Why::Deadline,
            tree_gone_at: None,
        };
        Ok(())
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

    /// Whether the deadline has passed while the child runs (as far as we
    /// know): before calling [`step`](Self::step), which would then
    /// terminate the tree, the caller should [`poll_exit`](Self::poll_exit)
    /// and read the pipes, so that a child that exited just before is
    /// reported exited.
    pub fn deadline_due(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Running)
            && self.status.is_none()
            && self.deadline.is_some_and(|d| now >= d)
    }

    /// Cancel: SIGKILL the tree now, then drain. Does nothing once the
    /// tree was killed for holding a pipe open.
    pub fn cancel(&mut self, child: &Child) -> Result<(), OutputError> {
        if matches!(
            self.phase,
            Phase::Ending {
                why: Why::Cancelled | Why::HeldPipes(_),
                ..
            }
        ) {
            return Ok(());
        }
        self.kill_now(child, Why::Cancelled)
    }

    /// SIGKILL the tree now; the capture ends once it is gone.
    fn kill_now(&mut self, child: &Child, why: Why) -> Result<(), OutputError> {
        child.kill_tree()?;
        let now = Instant::now();
        self.phase = Phase::Ending {
            kill_at: now,
            killed_at: Some(now),
            why,
            tree_gone_at: None,
        };
        Ok(())
    }

    /// With the deadline fired: whether TERM sufficed.
    pub fn ended_by(&self) -> Option<EndedBy> {
        match self.phase {
            Phase::Running
            | Phase::Ending {
                why: Why::Cancelled | Why::HeldPipes(_),
                ..
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
    ///
    /// Once the first signal has ended the child and its whole tree, pipes
    /// still open are held by processes outside the tree: reading stops
    /// after the wait-delay (or [`DRAIN_AFTER_TREE_GONE`]) from that
    /// moment, without SIGKILL, and [`ended_by`](Self::ended_by) says
    /// [`EndedBy::Term`].
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
                            self.start_ending(child, now, self.first_signal)?;
                            continue;
                        }
                        at(d);
                    }
                    if let (Some(e), Some(delay)) = (self.exited_at, self.wait_delay) {
                        if now >= after(e, delay) {
                            let held = holders::find(&inodes());
                            if self.kill_on_held {
                                // Done once the killed tree is gone.
                                self.kill_now(child, Why::HeldPipes(held))?;
                                continue;
                            }
                            return Ok(Step::Done(Outcome::PipesHeldOpen, held));
                        }
                        at(after(e, delay));
                    }
                    return Ok(Step::Wait(wake));
                }
                Phase::Ending {
                    why: Why::HeldPipes(held),
                    killed_at,
                    ..
                } => {
                    // The wait-delay is over: done once the killed tree is
                    // gone, whatever outside it still holds a pipe.
                    let bound = after(
                        killed_at.unwrap_or(now),
                        self.wait_delay.unwrap_or(DRAIN_AFTER_KILL),
                    );
                    if now >= bound || child.wait_tree_deadline(now)? {
                        return Ok(Step::Done(Outcome::PipesHeldOpen, std::mem::take(held)));
                    }
                    at(bound);
                    at(now + TREE_CHECK);
                    return Ok(Step::Wait(wake));
                }
                Phase::Ending {
                    kill_at,
                    killed_at,
                    why,
                    tree_gone_at,
                } => {
                    let outcome = if matches!(why, Why::Cancelled) {
                        Outcome::Cancelled
                    } else {
                        Outcome::TimedOut
                    };
                    if tree_gone_at.is_none()
                        && self.status.is_some()
                        && child.wait_tree_deadline(now)?
                    {
                        if !pipes_open {
                            return Ok(Step::Done(outcome, Vec::new()));
                        }
                        // Only the pipes are left, held outside the tree:
                        // no SIGKILL can help, so drain briefly from now.
                        *tree_gone_at = Some(now);
                    }
                    if let Some(gone) = *tree_gone_at {
                        if !pipes_open {
                            return Ok(Step::Done(outcome, Vec::new()));
                        }
                        let drain = self.wait_delay.unwrap_or(DRAIN_AFTER_TREE_GONE);
                        if now >= after(gone, drain) {
                            return Ok(Step::Done(outcome, holders::find(&inodes())));
                        }
                        at(after(gone, drain));
                        return Ok(Step::Wait(wake));
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
                            if now >= after(*k, drain) {
                                return Ok(Step::Done(outcome, holders::find(&inodes())));
                            }
                            at(after(*k, drain));
                        }
                    }
                    at(now + TREE_CHECK);
                    return Ok(Step::Wait(wake));
                }
            }
        }
    }
}
