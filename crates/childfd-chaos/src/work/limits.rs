//! A job's random time limits, and the judging of an `output()`-style
//! result against them (shared by `output()` and `childfd-tokio`'s
//! output, which return the same [`Output`]).

use std::time::Duration;

use childfd::EndedBy;
use childfd_io::{Outcome, Output};
use childfd_testbin::Rng;
use childfd_testbin::tree::Node;

use super::check_status;
use crate::shared::Shared;

/// A job's deadline, its grace between SIGTERM and SIGKILL, and its
/// wait-delay (the drain bound after the child exits).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the start of the job.
    pub deadline: Duration,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// How long output is still read after the child's exit.
    pub wait_delay: Duration,
}

impl Limits {
    /// A deadline of `min_ms` plus up to `spread_ms`, a grace of 0-99 ms
    /// and a wait-delay of 1-100 ms, drawn from `r` in that order.
    pub fn random(r: &mut Rng, min_ms: u64, spread_ms: u64) -> Limits {
        Limits {
            deadline: Duration::from_millis(min_ms + r.next(spread_ms)),
            grace: Duration::from_millis(r.next(100)),
            wait_delay: Duration::from_millis(1 + r.next(100)),
        }
    }
}

/// Sets [`Limits`] on any of the options builders (`childfd_io::Options`,
/// `JobOptions`, `childfd_tokio::Options` share the method names, not a
/// trait), with the tree killed when its pipes are held open past the
/// wait-delay and at most 4 KiB kept per stream.
macro_rules! with_limits {
    ($opts:expr, $limits:expr) => {{
        let l: $crate::work::limits::Limits = $limits;
        $opts
            .deadline(l.deadline)
            .grace(l.grace)
            .wait_delay(l.wait_delay)
            .kill_tree_on_held_pipes(true)
            .max_bytes(4096)
    }};
}
pub(crate) use with_limits;

/// Checks what an `output()` of `node` under `limits` returned: the
/// tree's own status (or SIGTERM/SIGKILL after the deadline), and the
/// wait-delay or deadline held. `name` labels the workload in violations.
/// A timed-out, SIGKILLed child reported without a status is counted, not
/// a violation: [`Output::status`] documents `None` when the child could
/// not be reaped within the bounds after SIGKILL (both crates wait for the
/// reap only a short while after the drain bound: 100 ms).
pub fn judge_output(sh: &Shared, name: &str, out: &Output, node: &Node, limits: Limits) {
    let kill = out.ended_by == Some(EndedBy::Kill);
    let Some(status) = out.status else {
        if out.outcome == Outcome::TimedOut && kill {
            return Shared::bump(&sh.n.killed_unreaped);
        }
        return sh.violation(format!("{name} without a status: {out:?}"));
    };
    match out.outcome {
        Outcome::Exited => check_status(sh, name, node, status, false),
        Outcome::PipesHeldOpen => {
            check_status(sh, &format!("{name} (pipes held)"), node, status, false);
            if let Some(exit) = out.exited_after {
                let wd = limits.wait_delay;
                sh.wait_delay_late(name, out.elapsed.saturating_sub(exit + wd), wd);
            }
        }
        Outcome::TimedOut => {
            check_status(sh, &format!("{name} (timed out)"), node, status, true);
            sh.deadline_late(name, out.elapsed, limits, kill);
        }
        other => sh.violation(format!("{name}: unexpected outcome {other:?}")),
    }
}
