//! Random trees on tokio (`childfd-tokio`): eight tasks on a two-thread
//! runtime, each looping over `output_async` with a deadline, or
//! `spawn_async` then `wait().await` or `terminate(grace).await`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::Stdio;
use childfd_testbin::Rng;
use childfd_tokio::{CommandExt, Options};

use super::limits::{Limits, judge_output, with_limits};
use super::{Round, check_status};
use crate::config::next_seed;
use crate::shared::Shared;

/// Watchdog bound on one step (deadline + grace + drain is under 2 s; a
/// tree without stops ends in under a second).
const STEP_BOUND: Duration = Duration::from_secs(30);

/// Runs the tokio worker for one round.
pub fn run(sh: &'static Shared, round: &Round, seed: u64) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return sh.violation(format!("tokio runtime: {e}")),
    };
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = Rng(next_seed(seed ^ (i << 20)));
                while !sh.stop_work.load(Ordering::Relaxed) {
                    let _op = sh.op("a childfd-tokio step", STEP_BOUND);
                    if r.next(2) == 0 {
                        output(sh, &round, &mut r).await;
                    } else {
                        wait(sh, &round, &mut r).await;
                    }
                }
            }));
        }
        for t in tasks {
            if t.await.is_err() {
                sh.violation("a childfd-tokio task panicked");
            }
        }
    });
}

async fn output(sh: &Shared, round: &Round, r: &mut Rng) {
    let (node, containment, mode) = round.random_tree(r, true);
    let limits = Limits::random(r, 100, 500);
    let opts = with_limits!(Options::new(), limits);
    Shared::bump(&sh.n.tokio_spawns);
    sh.n.processes
        .fetch_add(node.count() as u64, Ordering::Relaxed);
    let mut cmd = round.command(&node, containment);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = match cmd.spawn_async().await {
        Ok(c) => c,
        Err(e) => return sh.violation(format!("childfd-tokio spawn ({mode}): {e}")),
    };
    match childfd_tokio::output(&mut child, opts).await {
        Ok(out) => judge_output(sh, "childfd-tokio output", &out, &node, limits),
        Err(e) => sh.violation(format!("childfd-tokio output of `{node}` ({mode}): {e}")),
    }
    // As a caller does to leave nothing behind: members that closed their
    // output and stopped themselves outlive an Exited report.
    if let Err(e) = child.kill_tree() {
        sh.violation(format!("childfd-tokio kill_tree after output: {e}"));
    }
    sh.reaped(child.id());
}

async fn wait(sh: &Shared, round: &Round, r: &mut Rng) {
    let (node, containment, mode) = round.random_tree(r, false);
    let mut cmd = round.command(&node, containment);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    Shared::bump(&sh.n.tokio_spawns);
    sh.n.processes
        .fetch_add(node.count() as u64, Ordering::Relaxed);
    let child = match cmd.spawn_async().await {
        Ok(c) => c,
        Err(e) => return sh.violation(format!("childfd-tokio spawn ({mode}): {e}")),
    };
    let ended = if r.next(3) == 0 {
        child
            .terminate(Duration::from_millis(r.next(100)))
            .await
            .map(|t| (t.status, true))
            .map_err(|e| e.to_string())
    } else {
        child
            .wait()
            .await
            .map(|s| (s, false))
            .map_err(|e| e.to_string())
    };
    match ended {
        Ok((s, killed)) => check_status(sh, "childfd-tokio wait", &node, s, killed),
        Err(e) => sh.violation(format!("childfd-tokio wait of `{node}`: {e}")),
    }
    if let Err(e) = child.kill_tree() {
        sh.violation(format!("childfd-tokio kill_tree after the status: {e}"));
    }
    sh.reaped(child.id());
}
