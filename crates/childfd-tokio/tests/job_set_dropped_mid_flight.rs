//! A `JobSet` dropped while its jobs are in every phase at once: queued
//! in the set, held at their spawn (a `pre_exec` gate on a spawner
//! thread), capturing, in a deadline's grace with TERM ignored, with a
//! `setsid` escapee in a cgroup leaf. Nothing of any of them may be left:
//! no process, no zombie, no fd, no cgroup leaf.

mod common;

use std::time::Duration;

use childfd::{Command, Containment, SpawnStage};
use childfd_testbin::{assert_no_survivors, new_tag, our_cgroup_leaves, own_cgroup_dir};
use childfd_tokio::{Event, JobSet, Options};
use common::gate::Gate;
use common::{SLACK, on_both, sh};

/// Whether cgroup mode works here; says so loudly when it does not.
fn cgroups_here() -> bool {
    match childfd::Command::new("true")
        .containment(Containment::cgroup())
        .spawn()
    {
        Ok(c) => c.wait_timeout(SLACK).expect("wait").is_some(),
        Err(e) if e.stage() == SpawnStage::Cgroup => {
            eprintln!("NO WRITABLE CGROUP V2 DIRECTORY HERE: process groups only ({e})");
            false
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

#[test]
fn a_job_set_dropped_with_jobs_in_every_phase_leaves_no_process_fd_or_cgroup_leaf() {
    let cgroup = cgroups_here();
    on_both(move |_| async move {
        let tag = new_tag("set-drop-phases");
        let contained = |mut c: Command| {
            if cgroup {
                c.containment(Containment::cgroup());
            }
            c
        };
        let gate = std::sync::Arc::new(Gate::new());
        let mut jobs = JobSet::new(5);
        // Capturing, with a daemon that left the process group.
        jobs.push(
            contained(sh("setsid sleep 1000 & sleep 1000 & sleep 1000", &tag)),
            Options::new(),
        );
        // In the deadline's grace: TERM ignored by the whole tree.
        jobs.push(
            contained(sh("trap '' TERM; sleep 1000 & sleep 1000", &tag)),
            Options::new()
                .deadline(Duration::from_millis(100))
                .grace(Duration::from_secs(600)),
        );
        // Lines nobody takes.
        jobs.push(
            contained(sh("while :; do echo line; done", &tag)),
            Options::new().line_events(true),
        );
        // Held at its spawn, on a spawner thread.
        jobs.push(gate.hold(contained(sh("sleep 1000", &tag))), Options::new());
        jobs.push(sh("exec sleep 1000", &tag), Options::new());
        // Queued in the set, never started.
        for _ in 0..3 {
            jobs.push(sh("exec sleep 1000", &tag), Options::new());
        }
        // Four children spawned (and their trees up), the fifth held.
        let mut started = 0;
        while started < 4 {
            let ev = tokio::time::timeout(SLACK, jobs.next())
                .await
                .expect("jobs start");
            if let Some(Event::Started { .. }) = ev {
                started += 1;
            }
        }
        let g = gate.clone();
        let held = tokio::task::spawn_blocking(move || g.wait_held())
            .await
            .unwrap();
        let t = tag.clone();
        tokio::task::spawn_blocking(move || childfd_testbin::wait_tagged(&t, 7))
            .await
            .unwrap();
        // Past the deadline: the TERM-proof job is in its grace.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(jobs);
        gate.open();
        tokio::task::spawn_blocking(move || {
            assert!(held, "premise: a spawn was held at its gate");
            assert_no_survivors(&tag);
            if let Some(dir) = own_cgroup_dir().filter(|_| cgroup) {
                let gone =
                    childfd_testbin::eventually(SLACK, || our_cgroup_leaves(&dir).is_empty());
                assert!(gone, "cgroup leaves left: {:?}", our_cgroup_leaves(&dir));
            }
        })
        .await
        .unwrap();
    });
}
