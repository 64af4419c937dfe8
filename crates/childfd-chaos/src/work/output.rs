//! Random trees through `childfd_io::output`, some fed stdin they never
//! read; the whole tree is killed after each (what a caller does to leave
//! nothing behind).

use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::Stdio;
use childfd_io::Options;
use childfd_testbin::Rng;

use super::Round;
use super::limits::{Limits, judge_output, with_limits};
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
    let limits = Limits::random(r, 100, 500);
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
    let mut opts = with_limits!(Options::new(), limits);
    if let Some(bytes) = stdin {
        opts = opts.stdin_bytes(bytes);
    }
    match childfd_io::output(&mut child, opts) {
        Ok(out) => judge_output(sh, "output()", &out, &node, limits),
        Err(e) => sh.violation(format!("output() of `{node}` ({mode}): {e}")),
    }
    if let Err(e) = child.kill_tree() {
        sh.violation(format!("kill_tree after output(): {e}"));
    }
    sh.reaped(child.id());
}
