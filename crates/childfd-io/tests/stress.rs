//! Random trees × random operation sequences, against the invariants:
//! every wait returns within its bound, the reported status is consistent
//! with what the tree did and what was sent, output is counted exactly,
//! and afterwards there is no zombie, no live descendant (beyond what the
//! containment mode documents it cannot reach), no extra fd and no
//! leftover cgroup. Failures shrink to a minimal tree and sequence.
//!
//! `harness = false`: the binary re-runs itself as the tree (the spec in
//! `CHILDFD_TREE_SPEC`), built with `fork` while it is single-threaded.
//! Case count: `CHILDFD_STRESS_CASES` (default 24, for CI);
//! `cargo xtask stress --minutes N` runs it longer.

use std::time::{Duration, Instant};

use childfd::{Child, Command, Containment, EndedBy, Signal, Stdio};
use childfd_io::{Options, Outcome};
use childfd_testbin::tree::{self, Node};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Op {
    Wait(u64),
    Signal(Signal),
    KillTree,
    Terminate(u64),
    Output {
        deadline_ms: u64,
        wait_delay_ms: u64,
    },
    Drop,
}

fn node(depth: u32) -> BoxedStrategy<Node> {
    let leaf = (
        0u32..3000,
        0u32..500,
        prop_oneof![3 => 0u32..30, 1 => 0u32..400],
        prop_oneof![4 => (0u8..4).prop_map(|c| (c, None)), 1 => prop_oneof![Just(15), Just(9), Just(10)].prop_map(|s| (0, Some(s)))],
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(out, err, sleep_ms, (code, signal), setsid, ignore_term, stop, close)| Node {
            out,
            err,
            sleep_ms,
            code,
            signal,
            setsid,
            ignore_term,
            stop,
            close,
            children: Vec::new(),
        });
    if depth == 0 {
        return leaf.boxed();
    }
    (leaf, prop::collection::vec(node(depth - 1), 0..3))
        .prop_map(|(mut n, children)| {
            n.children = children;
            n
        })
        .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..400).prop_map(Op::Wait),
        1 => prop_oneof![Just(Signal::TERM), Just(Signal::KILL), Just(Signal::USR1), Just(Signal::CONT)].prop_map(Op::Signal),
        1 => Just(Op::KillTree),
        2 => (0u64..300).prop_map(Op::Terminate),
        2 => ((50u64..600), (50u64..300)).prop_map(|(deadline_ms, wait_delay_ms)| Op::Output { deadline_ms, wait_delay_ms }),
        1 => Just(Op::Drop),
    ]
}

fn mode() -> impl Strategy<Value = u8> {
    0u8..4
}

/// The root's own ending, if nothing is sent to it and it does not stop.
fn natural(n: &Node) -> (Option<i32>, Option<i32>) {
    match n.signal {
        Some(s) if !(s == 15 && n.ignore_term) => (None, Some(s)),
        Some(_) => (None, Some(15)), // raise(TERM) after SIG_DFL reset: dies by TERM
        None => (Some(n.code as i32), None),
    }
}

fn has_escapee(n: &Node) -> bool {
    n.children.iter().any(|c| c.setsid || has_escapee(c))
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(msg()))
    }
}

fn run_case(tree: &Node, ops: &[Op], mode: u8) -> Result<(), TestCaseError> {
    let containment = match mode {
        0 => Containment::ProcessGroup,
        1 => Containment::Session,
        2 => Containment::cgroup(),
        _ => Containment::Inherit,
    };
    let tag = childfd_testbin::new_tag("stress");
    let fds_before = childfd_testbin::open_fds();
    let mut child: Option<Child> = Some(
        Command::new(std::env::current_exe().unwrap())
            .env(tree::ENV, tree.to_string())
            .env("CHILDFD_TEST_TAG", &tag)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .containment(containment.clone())
            .spawn()
            .map_err(|e| TestCaseError::fail(format!("spawn: {e}")))?,
    );
    let cgroup_parent = child
        .as_ref()
        .and_then(|c| c.cgroup_path())
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf());
    let mut sent = false;
    // Only the first `output` gets the pipes.
    let mut pipes_taken = false;
    let nat = natural(tree);
    let consistent = |s: childfd::ExitStatus, sent: bool| {
        let natural_ok = (s.code(), s.signal().map(|x| x.as_raw())) == nat;
        natural_ok || (sent || tree.stop) && s.signal().is_some()
    };
    for op in ops {
        let Some(c) = child.as_mut() else { break };
        let start = Instant::now();
        match op {
            Op::Wait(ms) => {
                let r = c
                    .wait_timeout(Duration::from_millis(*ms))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check(start.elapsed() < Duration::from_millis(*ms) + SLACK, || {
                    format!("wait({ms}ms) took {:?}", start.elapsed())
                })?;
                if let Some(s) = r {
                    check(consistent(s, sent), || {
                        format!("status {s} after wait, natural {nat:?}, sent {sent}")
                    })?;
                }
            }
            Op::Signal(sig) => {
                c.signal(*sig)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                sent |= *sig != Signal::CONT;
            }
            Op::KillTree => {
                c.kill_tree()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                sent = true;
            }
            Op::Terminate(g) => {
                let t = c
                    .terminate(Duration::from_millis(*g))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check(
                    start.elapsed() < Duration::from_millis(*g) + Duration::from_secs(10) + SLACK,
                    || format!("terminate took {:?}", start.elapsed()),
                )?;
                let sent_before = sent;
                sent = true;
                check(consistent(t.status, true), || {
                    format!("terminate status {}", t.status)
                })?;
                // TERM alone cannot give a SIGKILL status, unless the tree
                // (or this test, earlier) sent one.
                if t.ended_by == EndedBy::Term && !sent_before {
                    check(
                        t.status.signal() != Some(Signal::KILL) || nat.1 == Some(9),
                        || format!("ended by TERM with {}", t.status),
                    )?;
                }
            }
            Op::Output {
                deadline_ms,
                wait_delay_ms,
            } => {
                let opts = Options::new()
                    .deadline(Duration::from_millis(*deadline_ms))
                    .grace(Duration::from_millis(200))
                    .wait_delay(Duration::from_millis(*wait_delay_ms))
                    .kill_tree_on_held_pipes(true)
                    .max_bytes(4096);
                let out =
                    childfd_io::output(c, opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let bound = Duration::from_millis(deadline_ms + 200 + wait_delay_ms)
                    + Duration::from_secs(10)
                    + SLACK;
                check(out.elapsed < bound, || {
                    format!("output took {:?}", out.elapsed)
                })?;
                if let Some(s) = out.status {
                    check(
                        consistent(s, sent || out.outcome != Outcome::Exited),
                        || format!("output status {s}"),
                    )?;
                }
                // Nothing interfered: every byte the tree wrote was counted.
                if !pipes_taken
                    && out.outcome == Outcome::Exited
                    && !sent
                    && !tree.any_stop()
                    && out.status.is_some_and(|s| consistent(s, false))
                {
                    check(out.stdout.total == tree.total_out(), || {
                        format!(
                            "stdout {} bytes, tree wrote {}",
                            out.stdout.total,
                            tree.total_out()
                        )
                    })?;
                }
                sent |= out.outcome != Outcome::Exited;
                pipes_taken = true;
            }
            Op::Drop => {
                child = None;
            }
        }
    }
    // End of the sequence: end what is left, within bounds. Failures are
    // reported only after the cleanup below, so that no survivor of this
    // case poisons the next one.
    let mut verdict: Result<(), TestCaseError> = Ok(());
    if let Some(c) = child.take() {
        if let Err(e) = c.terminate(Duration::from_millis(100)) {
            verdict = Err(TestCaseError::fail(format!("final terminate: {e}")));
        }
        // What containment promises: cgroup mode leaves no descendant;
        // group modes none but setsid escapees; Inherit only the child.
        let survivors = childfd_testbin::tagged(&tag);
        let allowed = match mode {
            2 => false,
            3 => true,
            _ => has_escapee(tree),
        };
        let _ = childfd_testbin::eventually(Duration::from_secs(2), || {
            childfd_testbin::tagged(&tag).is_empty() || allowed
        });
        let survivors_now = childfd_testbin::tagged(&tag);
        if verdict.is_ok() {
            verdict = check(survivors_now.is_empty() || allowed, || {
                format!("survivors in mode {mode}: {survivors:?}")
            });
        }
    }
    // Escapees (and trees of dropped handles) are the test's: end them.
    childfd_testbin::kill_tagged(&tag);
    verdict?;
    check(
        childfd_testbin::eventually(Duration::from_secs(10), || {
            childfd_testbin::tagged(&tag).is_empty()
        }),
        || "tagged processes survive".into(),
    )?;
    // No zombie: orphans came back to this subreaper and are reaped.
    let clean = childfd_testbin::eventually(Duration::from_secs(10), || {
        let _ = childfd::reaper::reap_orphans();
        childfd_testbin::children().is_empty() && childfd::pending_reaps() == 0
    });
    check(clean, || {
        format!("children left: {:?}", childfd_testbin::children())
    })?;
    // No extra fd (beyond what childfd keeps for the whole process).
    let fds_ok = childfd_testbin::eventually(Duration::from_secs(5), || {
        childfd_testbin::leaked_fds_since(&fds_before).is_empty()
    });
    check(fds_ok, || {
        format!("fds: {:?}", childfd_testbin::describe_fds())
    })?;
    if let Some(p) = cgroup_parent {
        check(
            childfd_testbin::eventually(Duration::from_secs(10), || {
                childfd_testbin::our_cgroup_leaves(&p).is_empty()
            }),
            || "cgroup leaves left".into(),
        )?;
    }
    Ok(())
}

fn main() {
    tree::run_if_requested();
    childfd::reaper::become_subreaper().expect("subreaper");
    let cases: u32 = std::env::var("CHILDFD_STRESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let seed_minutes: Option<f64> = std::env::var("CHILDFD_STRESS_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok());
    let start = Instant::now();
    let mut rounds = 0u64;
    let spawns = std::sync::atomic::AtomicU64::new(0);
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (node(3), prop::collection::vec(op(), 1..5), mode());
        let result = runner.run(&strategy, |(tree, ops, mode)| {
            spawns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run_case(&tree, &ops, mode)
        });
        if let Err(e) = result {
            eprintln!("stress: FAILED: {e}");
            std::process::exit(1);
        }
        rounds += 1;
        match seed_minutes {
            Some(m) if start.elapsed().as_secs_f64() < m * 60.0 => continue,
            _ => break,
        }
    }
    println!(
        "stress: {rounds} round(s) of {cases} cases, {spawns} trees spawned (with shrinking runs), in {:?}; no zombie, survivor, fd or cgroup left",
        start.elapsed(),
        spawns = spawns.into_inner(),
    );
}
