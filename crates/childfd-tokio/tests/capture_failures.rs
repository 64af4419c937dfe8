//! Captures that cannot end normally: one that fails midway (its job is
//! abandoned, so its tree must not run on unwatched), and one whose child
//! exited while a grandchild holds the pipes (the child must be reaped
//! while the capture waits, not left a zombie).

mod common;

use childfd::Stdio;
use childfd_testbin::{Hygiene, assert_no_survivors, kill_tagged, new_tag, read_stat};
use childfd_tokio::{CommandExt, Options, Outcome, OutputError, output};
use common::{Flavor, LIBRARY_THREADS, SLACK, on_both, runtime, sh, wait_tagged};

/// The capture's pipes are registered with the reactor of the runtime
/// that first polled it; once that runtime is shut down, polling the
/// same future on another runtime fails its reads ("being shutdown"): a
/// real error in the middle of a capture, with the child still running.
#[test]
fn a_capture_that_fails_midway_kills_the_abandoned_tree() {
    common::warm_up();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        let tag = new_tag("abandoned");
        let mut cmd = sh("echo started; sleep 1000 & sleep 1000", &tag);
        let (opts, mut lines) = Options::new().lines();
        let mut job = Box::pin(async move { cmd.output_async(opts).await });
        let first = runtime(flavor);
        first.block_on(async {
            // The tree being up is not enough: the capture's task may not
            // have had its spawn's reply yet, and would then register its
            // pipes with the second runtime and never fail. A line read
            // means its stdout is on this runtime's reactor (read until
            // empty, then registered, before the line is seen).
            let up = async {
                let line = tokio::time::timeout(SLACK, lines.next()).await;
                let line = line.expect("the capture read no line").map(|l| l.line);
                assert_eq!(line.as_deref(), Some(&b"started"[..]));
                wait_tagged(&tag, 2).await
            };
            tokio::select! {
                r = &mut job => panic!("{flavor:?}: the capture ended early: {r:?}"),
                running = up => assert!(running.len() >= 2),
            }
        });
        drop(first); // its reactor goes, with the capture's pipes on it
        let second = runtime(flavor);
        let result = second.block_on(async { tokio::time::timeout(SLACK, job).await });
        let result = result.expect("the capture failed or finished, not hung");
        assert!(
            matches!(result, Err(OutputError::Io { .. })),
            "{flavor:?}: expected an I/O error from the dead reactor, got {result:?}"
        );
        // The job was abandoned: nothing of its tree may run on.
        assert_no_survivors(&tag);
        second.shutdown_timeout(SLACK);
        h.finish(LIBRARY_THREADS);
    }
}

/// Whether `pid`, our child, has been reaped: gone from `/proc`, or (if
/// the number was reused meanwhile) no longer our zombie.
fn reaped(pid: i32) -> bool {
    let me = std::process::id() as i32;
    read_stat(pid).is_none_or(|p| p.ppid != me)
}

#[test]
fn a_child_whose_pipes_a_grandchild_holds_is_reaped_while_output_waits() {
    on_both(|_| async {
        let tag = new_tag("held-zombie");
        // No deadline, no wait-delay, no input: nothing but the exit
        // itself asks for the child to be reaped before EOF.
        let mut child = sh("echo started; sleep 1000 & exit 3", &tag)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_async()
            .await
            .expect("spawn");
        let pid = child.id() as i32;
        let capture = output(&mut child, Options::new());
        let watch = async {
            wait_tagged(&tag, 1).await;
            let was_reaped = tokio::task::spawn_blocking(move || {
                childfd_testbin::eventually(SLACK, || reaped(pid))
            })
            .await
            .expect("poll");
            // Let the capture end: the grandchild held the pipes.
            let t = tag.clone();
            tokio::task::spawn_blocking(move || kill_tagged(&t))
                .await
                .expect("kill");
            was_reaped
        };
        let (out, was_reaped) = tokio::join!(
            async { tokio::time::timeout(SLACK * 2, capture).await },
            watch
        );
        let out = out
            .expect("output ended once the grandchild died")
            .expect("output");
        assert!(
            was_reaped,
            "the child stayed a zombie while its grandchild held the pipes"
        );
        assert_eq!(out.outcome, Outcome::Exited);
        assert_eq!(out.status.expect("status").code(), Some(3));
        assert_eq!(out.stdout.text(), "started\n");
        assert_no_survivors(&tag);
    });
}
