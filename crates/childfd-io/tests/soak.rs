//! Soak: N random trees (default 1,000; `cargo xtask soak` runs 100,000)
//! through a Supervisor, 64 at a time, with random containment, random
//! deadlines (some firing), random wait-delays and random cancellations;
//! then the counts of zombies, leaked fds, surviving processes and
//! leftover cgroup leaves, which must all be zero.
//!
//! `harness = false`: the binary re-runs itself as each tree.

use std::time::{Duration, Instant};

use childfd::{Command, Containment};
use childfd_io::{Event, JobOptions, Supervisor};
use childfd_testbin::tree;

use childfd_testbin::Rng;

fn main() {
    tree::run_if_requested();
    // As a subreaper this process adopts every orphaned tree node; like a
    // real PID 1 it must reap them as they exit, or their zombies would
    // exhaust the pids long before 100,000 trees.
    childfd::reaper::become_subreaper().expect("subreaper");
    let orphans = childfd::reaper::Reaper::start().expect("orphan reaper");
    let spawns: u64 = std::env::var("CHILDFD_SOAK_SPAWNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tag = childfd_testbin::new_tag("soak");
    let fds_before = childfd_testbin::open_fds();
    let exe = std::env::current_exe().unwrap();
    let cgroup_ok = Command::new("true")
        .containment(Containment::cgroup())
        .status()
        .is_ok();
    let mut r = Rng(0x50a4_2026_1121 ^ spawns);
    let start = Instant::now();
    let mut sup = Supervisor::new(64).unwrap();
    let mut pushed = 0u64;
    let mut processes = 0u64;
    let mut cancelled = 0u64;
    let mut counts = [0u64; 5]; // exited, timed out, held, cancelled, other
    let reported = |c: &[u64; 5]| c.iter().sum::<u64>();
    while reported(&counts) < spawns {
        // Keep at most 128 jobs outstanding, so memory stays flat over
        // 100,000 trees.
        while pushed < spawns && pushed - reported(&counts) < 128 {
            let mode = r.next(if cgroup_ok { 3 } else { 2 });
            // setsid escapees only where containment catches them (cgroup).
            let node = tree::random(&mut r, 2, mode == 2);
            processes += node.count() as u64;
            let mut cmd = Command::new(&exe);
            cmd.env(tree::ENV, node.to_string())
                .env("CHILDFD_TEST_TAG", &tag)
                .containment(match mode {
                    0 => Containment::ProcessGroup,
                    1 => Containment::Session,
                    _ => Containment::cgroup(),
                });
            let opts = JobOptions::new()
                .deadline(Duration::from_millis(50 + r.next(400)))
                .grace(Duration::from_millis(r.next(100)))
                .wait_delay(Duration::from_millis(r.next(100)))
                .kill_tree_on_held_pipes(true)
                .kill_tree_on_exit(true)
                .max_bytes(1024);
            let id = sup.push(cmd, opts);
            pushed += 1;
            if r.next(50) == 0 {
                sup.cancel(id);
            }
        }
        let Some(ev) = sup.next() else { break };
        match ev {
            Event::Started { id, .. } => {
                if r.next(100) == 0 {
                    sup.cancel(id);
                    cancelled += 1;
                }
            }
            // Leaked: exited, with descendants left and killed
            // (kill_tree_on_exit).
            Event::Exited(_) | Event::Leaked(_) => counts[0] += 1,
            Event::TimedOut(_) => counts[1] += 1,
            Event::PipesHeldOpen(_) => counts[2] += 1,
            Event::Cancelled(_) => counts[3] += 1,
            Event::SpawnFailed(r) => panic!("spawn failed: {:?}", r.error),
            other => {
                counts[4] += 1;
                eprintln!("soak: unexpected {other:?}");
            }
        }
    }
    let summary = sup.summary();
    drop(sup);
    assert_eq!(
        counts.iter().sum::<u64>(),
        spawns,
        "every job reported once: {counts:?}"
    );
    assert_eq!(counts[4], 0);
    // Survivors: trees end by themselves (sleeps are short) or were killed.
    let survivors_clear = childfd_testbin::eventually(Duration::from_secs(20), || {
        childfd_testbin::tagged(&tag).is_empty()
    });
    let survivors = childfd_testbin::tagged(&tag).len();
    if !survivors_clear {
        childfd_testbin::kill_tagged(&tag);
    }
    let zombies_clear = childfd_testbin::eventually(Duration::from_secs(20), || {
        let _ = childfd::reaper::reap_orphans();
        childfd_testbin::children().is_empty() && childfd::pending_reaps() == 0
    });
    let zombies = childfd_testbin::children().len();
    let orphans_reaped = orphans.reaped();
    drop(orphans);
    let leaked_fds = childfd_testbin::leaked_fds_since(&fds_before).len();
    let leaves = childfd_testbin::own_cgroup_dir()
        .map_or(0, |d| childfd_testbin::our_cgroup_leaves(&d).len());
    println!(
        "soak: {spawns} trees ({processes} processes) in {:.0?}: {} exited, {} timed out, {} pipes held, {} cancelled; \
         max in flight {}; orphans reaped {orphans_reaped}; zombies {zombies}, leaked fds {leaked_fds}, survivors {survivors}, cgroup leaves {leaves}",
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        summary.max_in_flight,
    );
    let _ = cancelled;
    assert!(
        survivors_clear && zombies_clear && leaked_fds == 0 && leaves == 0,
        "soak left something behind"
    );
}
