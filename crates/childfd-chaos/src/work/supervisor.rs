//! Random trees through one Supervisor, with random deadlines, graces and
//! wait-delays, until the round stops taking work; then drained.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::EndedBy;
use childfd_io::{Event, JobOptions, Report, Supervisor};
use childfd_testbin::Rng;
use childfd_testbin::tree::Node;

use super::limits::{Limits, with_limits};
use super::{Round, check_status};
use crate::shared::Shared;

/// A watchdog bound on waiting for the next event: the longest job
/// (deadline 450 ms + grace 100 ms + drain) many times over.
const EVENT_BOUND: Duration = Duration::from_secs(20);

struct Job {
    node: Node,
    limits: Limits,
}

/// Runs the Supervisor worker for one round.
pub fn run(sh: &Shared, round: &Round, seed: u64) {
    let mut r = Rng(seed);
    let mut sup = match Supervisor::new(16) {
        Ok(s) => s,
        Err(e) => return sh.violation(format!("Supervisor::new: {e}")),
    };
    let mut jobs: HashMap<u64, Job> = HashMap::new();
    loop {
        while !sh.stop_work.load(Ordering::Relaxed) && jobs.len() < 32 {
            let (node, containment, _) = round.random_tree(&mut r, true);
            let limits = Limits::random(&mut r, 50, 400);
            let opts = with_limits!(JobOptions::new(), limits).kill_tree_on_exit(true);
            Shared::bump(&sh.n.sup_spawns);
            sh.n.processes
                .fetch_add(node.count() as u64, Ordering::Relaxed);
            let id = sup.push(round.command(&node, containment), opts);
            jobs.insert(id, Job { node, limits });
        }
        if jobs.is_empty() {
            break;
        }
        let ev = {
            let _op = sh.op("Supervisor::next", EVENT_BOUND);
            sup.next()
        };
        let Some(ev) = ev else {
            sh.violation(format!(
                "Supervisor ended with {} jobs unreported",
                jobs.len()
            ));
            break;
        };
        let Some(id) = ev.id() else {
            sh.violation(format!("Supervisor: unexpected event {ev:?}"));
            continue;
        };
        match ev {
            Event::Started { .. } | Event::Line { .. } => continue,
            // Leaked: the child exited, members of its tree that closed their
            // output lived on and were killed (kill_tree_on_exit).
            Event::Exited(rep) | Event::PipesHeldOpen(rep) | Event::Leaked(rep) => {
                own(sh, &rep, &jobs[&id].node);
            }
            Event::TimedOut(rep) => {
                timed_out(sh, &rep, &jobs[&id]);
            }
            Event::Cancelled(_) => sh.violation(format!("job {id} cancelled, never asked")),
            Event::SpawnFailed(rep) => sh.violation(format!("Supervisor spawn: {:?}", rep.error)),
            Event::Failed(rep) => sh.violation(format!("Supervisor job failed: {:?}", rep.error)),
            other => sh.violation(format!("Supervisor: unexpected event {other:?}")),
        }
        jobs.remove(&id);
    }
}

fn own(sh: &Shared, rep: &Report, node: &Node) {
    match rep.status {
        Some(s) => check_status(sh, "Supervisor job", node, s, false),
        None => sh.violation(format!("Supervisor job without a status: {rep:?}")),
    }
    if let Some(pid) = rep.pid {
        sh.reaped(pid);
    }
}

fn timed_out(sh: &Shared, rep: &Report, job: &Job) {
    let kill = rep.ended_by == Some(EndedBy::Kill);
    match rep.status {
        Some(s) => check_status(sh, "Supervisor job (timed out)", &job.node, s, true),
        // Documented: after SIGKILL the report waits for the reap only
        // as long as the drain bound (the wait-delay).
        None if kill => Shared::bump(&sh.n.killed_unreaped),
        None => sh.violation(format!(
            "Supervisor job timed out without a status: {rep:?}"
        )),
    }
    sh.deadline_late("Supervisor job", rep.elapsed, job.limits, kill);
    if let Some(pid) = rep.pid {
        sh.reaped(pid);
    }
}
