//! A `Child` that outlives the runtime it was spawned or first waited on
//! (a runtime per test, a handle kept in a struct that outlives it): it
//! can still be waited, terminated and captured on the next runtime, and
//! dropped anywhere without leaving a process or a zombie.

mod common;

use std::time::Duration;

use childfd::{EndedBy, Signal, Stdio};
use childfd_testbin::{Hygiene, assert_no_survivors, eventually, new_tag};
use childfd_tokio::{Child, Options, Outcome, output, spawn};
use common::{Flavor, LIBRARY_THREADS, SLACK, runtime, sh, wait_tagged};

/// Spawns `cmd` on a runtime of `flavor` (its pipes join that runtime's
/// reactor); with `wait_first`, starts a wait that times out (so does its
/// pidfd: the child must not exit by itself before the test lets it).
/// Then drops the runtime.
fn spawned_on_a_dropped_runtime(
    flavor: Flavor,
    cmd: &mut childfd::Command,
    tag: &str,
    wait_first: bool,
) -> Child {
    let rt = runtime(flavor);
    let child = rt.block_on(async {
        let child = spawn(cmd).unwrap();
        wait_tagged(tag, 1).await;
        if wait_first {
            let r = tokio::time::timeout(Duration::from_millis(10), child.wait()).await;
            assert!(r.is_err(), "still running");
        }
        child
    });
    drop(rt);
    child
}

#[track_caller]
fn each_flavor(body: impl Fn(Flavor)) {
    common::warm_up();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        body(flavor);
        assert!(eventually(SLACK, || childfd::pending_reaps() == 0));
        h.finish(LIBRARY_THREADS);
    }
}

#[test]
fn a_child_first_waited_on_a_runtime_since_dropped_can_be_waited_on_the_next() {
    each_flavor(|flavor| {
        let tag = new_tag("next-rt");
        let gate = common::Gate::new(&tag);
        let mut cmd = sh(&gate.then("exit 0"), &tag);
        let child = spawned_on_a_dropped_runtime(flavor, &mut cmd, &tag, true);
        let rt = runtime(flavor);
        gate.open();
        rt.block_on(async {
            let st = tokio::time::timeout(SLACK, child.wait()).await.unwrap();
            assert!(st.unwrap().success(), "{flavor:?}");
            let st = tokio::time::timeout(SLACK, child.wait_tree())
                .await
                .unwrap();
            assert!(st.unwrap().success());
        });
        drop(child);

        // terminate, on a tree that ignores TERM.
        let tag = new_tag("next-rt-term");
        let script = "trap '' TERM; sleep 1000 & sleep 1000";
        let child = spawned_on_a_dropped_runtime(flavor, &mut sh(script, &tag), &tag, true);
        rt.block_on(async {
            let t = tokio::time::timeout(SLACK, child.terminate(Duration::from_millis(100)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(t.ended_by, EndedBy::Kill);
            assert_eq!(t.status.signal(), Some(Signal::KILL));
        });
        assert_no_survivors(&tag);
    });
}

#[test]
fn output_on_a_child_spawned_on_a_runtime_since_dropped_reads_all_its_output() {
    each_flavor(|flavor| {
        let tag = new_tag("next-rt-output");
        let mut cmd = sh("read x; echo got $x; echo err >&2", &tag);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawned_on_a_dropped_runtime(flavor, &mut cmd, &tag, false);
        let rt = runtime(flavor);
        let out = rt.block_on(async {
            let opts = Options::new().stdin_bytes(&b"it\n"[..]).deadline(SLACK);
            output(&mut child, opts).await.unwrap()
        });
        assert_eq!(out.outcome, Outcome::Exited, "{flavor:?}: {out:?}");
        assert_eq!(out.stdout.text(), "got it\n");
        assert_eq!(out.stderr.text(), "err\n");
        assert!(out.status.unwrap().success());
        drop(child);
        assert_no_survivors(&tag);
    });
}

#[test]
fn a_kill_on_drop_child_dropped_after_its_runtime_or_on_another_thread_kills_its_tree() {
    each_flavor(|flavor| {
        let tree = |tag: &str| {
            let mut c = sh("sleep 1000 & sleep 1000", tag);
            c.kill_on_drop(true).stdout(Stdio::piped());
            c
        };
        // Dropped with no runtime at all.
        let tag = new_tag("kod-no-rt");
        let child = spawned_on_a_dropped_runtime(flavor, &mut tree(&tag), &tag, true);
        drop(child);
        assert_no_survivors(&tag);

        // Dropped inside another runtime's block_on.
        let tag = new_tag("kod-other-rt");
        let child = spawned_on_a_dropped_runtime(flavor, &mut tree(&tag), &tag, true);
        runtime(flavor).block_on(async move { drop(child) });
        assert_no_survivors(&tag);

        // Moved to a plain thread while its runtime lives, dropped there.
        let tag = new_tag("kod-thread");
        let rt = runtime(flavor);
        let child = rt.block_on(async {
            let child = spawn(&mut tree(&tag)).unwrap();
            wait_tagged(&tag, 3).await;
            let _ = tokio::time::timeout(Duration::from_millis(10), child.wait()).await;
            child
        });
        std::thread::spawn(move || drop(child)).join().unwrap();
        assert_no_survivors(&tag);
        drop(rt);
    });
}
