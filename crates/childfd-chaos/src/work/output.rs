//! Random trees through `childfd_io::output`, some fed stdin they never
//! read; the whole tree is killed after each (what a caller does to leave
//! nothing behind).

use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::{EndedBy, Stdio};
use childfd_io::{Options, Outcome, Output};
use childfd_testbin::Rng;
use childfd_testbin::tree::Node;

use super::{Round, check_status};
use crate::shared::Shared;

/// Watchdog bound on one `output()` call: its own documented bound is
/// deadline + grace + drain (under 2 s here).
const OUTPUT_BOUND: Duration = Duration::from_secs(20);

/// Runs one `output()` worker for one round.
pub fn run(sh: &Shared, round: &Round, seed: u64) {
    let mut r = Rng(seed);
    while !sh.stop_work.load(Ordering::Relaxed) {
        one(sh, round, &mut r);
    }
}

fn one(sh: &Shared, round: &Round, r: &mut Rng) {
    let (node, containment, mode) = round.random_tree(r, true);
    let deadline = Duration::from_millis(100 + r.next(500));
    let grace = Duration::from_millis(r.next(100));
    let wait_delay = Duration::from_millis(1 + r.next(100));
    let stdin = (r.next(4) == 0).then(|| vec![b'i'; r.next(200_000) as usize]);
    let mut cmd = round.command(&node, containment);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    Shared::bump(&sh.n.output_spawns);
    sh.n.processes
        .fetch_add(node.count() as u64, Ordering::Relaxed);
    let _op = sh.op(format!("output() of `{node}` ({mode})"), OUTPUT_BOUND);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return sh.violation(format!("output(): spawn: {e}")),
    };
    let mut opts = Options::new()
        .deadline(deadline)
        .grace(grace)
        .wait_delay(wait_delay)
        .kill_tree_on_held_pipes(true)
        .max_bytes(4096);
    if let Some(bytes) = stdin {
        opts = opts.stdin_bytes(bytes);
    }
    match childfd_io::output(&mut child, opts) {
        Ok(out) => judge(sh, &out, &node, deadline, grace, wait_delay),
        Err(e) => sh.violation(format!("output() of `{node}` ({mode}): {e}")),
    }
    if let Err(e) = child.kill_tree() {
        sh.violation(format!("kill_tree after output(): {e}"));
    }
    sh.reaped(child.id());
}

fn judge(
    sh: &Shared,
    out: &Output,
    node: &Node,
    deadline: Duration,
    grace: Duration,
    wd: Duration,
) {
    let Some(status) = out.status else {
        // Documented: after SIGKILL, output() waits for the reap only as
        // long as the drain bound (the wait-delay).
        if out.outcome == Outcome::TimedOut && out.ended_by == Some(EndedBy::Kill) {
            return Shared::bump(&sh.n.killed_unreaped);
        }
        return sh.violation(format!("output() without a status: {out:?}"));
    };
    match out.outcome {
        Outcome::Exited => check_status(sh, "output()", node, status, false),
        Outcome::PipesHeldOpen => {
            check_status(sh, "output() (pipes held)", node, status, false);
            if let Some(exit) = out.exited_after {
                sh.wait_delay_late(out.elapsed.saturating_sub(exit + wd), wd);
            }
        }
        Outcome::TimedOut => {
            check_status(sh, "output() (timed out)", node, status, true);
            let kill = out.ended_by == Some(EndedBy::Kill);
            sh.deadline_late("output()", out.elapsed, deadline, grace, kill, wd);
        }
        other => sh.violation(format!("output(): unexpected outcome {other:?}")),
    }
}
