//! Plain `Command::spawn` of random trees (no self-stops: nothing would
//! continue them), stdout to a file, then one of: wait, try_wait polling,
//! wait_timeout then kill, terminate, or drop (with or without
//! kill_on_drop). After the status, the handle is used again (signal,
//! kill, signal_tree) while its pid may already belong to a decoy.

use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::{Child, Signal, Stdio};
use childfd_testbin::Rng;
use childfd_testbin::tree::Node;

use super::{Round, check_status};
use crate::shared::Shared;

/// A spawn takes well under a millisecond; this bound is for a machine
/// with a load average of 20 on two cores: far beyond is a hang.
const SPAWN_BOUND: Duration = Duration::from_secs(30);

/// Trees without stops end within a second; far more under chaos is a
/// lost wakeup or a stopped child nobody continues.
const TREE_BOUND: Duration = Duration::from_secs(15);

/// Runs one plain-spawn worker for one round.
pub fn run(sh: &Shared, round: &Round, seed: u64, worker: usize) {
    let mut r = Rng(seed);
    let mut n = 0u64;
    while !sh.stop_work.load(Ordering::Relaxed) {
        one(sh, round, &mut r, worker, n);
        n += 1;
    }
}

fn one(sh: &Shared, round: &Round, r: &mut Rng, worker: usize, n: u64) {
    let (node, containment, mode) = round.random_tree(r, false);
    let path = round.scratch.join(format!("plain-{worker}-{n}.out"));
    let file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => return sh.violation(format!("scratch file {}: {e}", path.display())),
    };
    let mut cmd = round.command(&node, containment);
    cmd.stdout(Stdio::from(std::os::fd::OwnedFd::from(file)))
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(r.next(2) == 0);
    Shared::bump(&sh.n.plain_spawns);
    sh.n.processes
        .fetch_add(node.count() as u64, Ordering::Relaxed);
    let child = {
        let _op = sh.op(format!("Command::spawn of `{node}` ({mode})"), SPAWN_BOUND);
        match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return sh.violation(format!("Command::spawn ({mode}): {e}")),
        }
    };
    let _op = sh.op(format!("plain child `{node}` ({mode})"), TREE_BOUND * 2);
    let what = r.next(6);
    if what == 5 {
        return drop(child); // the background reaper's job now
    }
    finish(sh, &child, &node, what, r);
    if let Err(e) = child.kill_tree() {
        sh.violation(format!("kill_tree after the status ({mode}): {e}"));
    }
    sh.reaped(child.id());
    stale_ops(sh, &child, r);
}

fn finish(sh: &Shared, child: &Child, node: &Node, what: u64, r: &mut Rng) {
    let waited = match what {
        0 => child.wait().map(|s| (s, false)),
        1 => poll(child).map(|s| (s, false)),
        2 => child
            .wait_timeout(Duration::from_millis(r.next(200)))
            .and_then(|s| match s {
                Some(s) => Ok((s, false)),
                None => {
                    let _ = child.kill();
                    child.wait().map(|s| (s, true))
                }
            }),
        3 => match child.terminate(Duration::from_millis(r.next(100))) {
            Ok(t) => Ok((t.status, true)),
            Err(e) => return sh.violation(format!("terminate of `{node}`: {e}")),
        },
        _ => child.wait_timeout(TREE_BOUND).and_then(|s| match s {
            Some(s) => Ok((s, false)),
            None => {
                sh.violation(format!("tree `{node}` still running after {TREE_BOUND:?}"));
                let _ = child.kill_tree();
                child.wait().map(|s| (s, true))
            }
        }),
    };
    match waited {
        Ok((s, killed)) => check_status(sh, "Command::spawn", node, s, killed),
        Err(e) => sh.violation(format!("wait of `{node}`: {e}")),
    }
}

fn poll(child: &Child) -> Result<childfd::ExitStatus, childfd::WaitError> {
    for _ in 0..TREE_BOUND.as_millis() {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.wait()
}

/// The child is reaped and its tree killed: its pid (and group id) may be
/// reused any time now, by a decoy if the pid-reuse chaos aims at it.
/// Every one of these must be a no-op.
fn stale_ops(sh: &Shared, child: &Child, r: &mut Rng) {
    std::thread::sleep(Duration::from_millis(r.next(5)));
    let results = [
        child.signal(Signal::TERM).err().map(|e| e.to_string()),
        child.kill().err().map(|e| e.to_string()),
        child.signal_tree(Signal::TERM).err().map(|e| e.to_string()),
        child.kill_tree().err().map(|e| e.to_string()),
    ];
    sh.n.stale_ops.fetch_add(4, Ordering::Relaxed);
    for e in results.into_iter().flatten() {
        sh.violation(format!("signal after reaping failed (must be Ok): {e}"));
    }
}
