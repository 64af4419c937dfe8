//! The async child on both runtimes: wait, signals, the tree, terminate,
//! pipes, cancellation and drop.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use childfd::{Command, EndedBy, Signal, Stdio};
use childfd_testbin::{alive, assert_no_survivors, eventually, new_tag};
use childfd_tokio::{CommandExt, spawn};
use common::{SLACK, on_both, sh, wait_tagged};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn wait_returns_the_exit_status_without_blocking_the_runtime() {
    on_both(|_| async {
        let child = spawn(Command::new("sh").args(["-c", "sleep 0.2; exit 7"])).unwrap();
        assert!(child.try_wait().unwrap().is_none());
        // While it runs, the runtime keeps running other tasks.
        let ticker = tokio::spawn(async {
            let mut n = 0;
            while n < 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                n += 1;
            }
            n
        });
        let status = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(7));
        assert_eq!(ticker.await.unwrap(), 5);
        assert_eq!(child.wait().await.unwrap().code(), Some(7), "cached");
        assert_eq!(child.try_wait().unwrap().unwrap().code(), Some(7));
    });
}

#[test]
fn a_dropped_wait_future_loses_nothing() {
    on_both(|_| async {
        let child = spawn(Command::new("sh").args(["-c", "sleep 0.3; exit 4"])).unwrap();
        // Cancel the wait several times before the exit.
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_millis(20), child.wait()).await;
            assert!(r.is_err(), "should still run");
        }
        let status = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(4));
    });
}

#[test]
fn kill_and_signal_reach_the_child_through_its_pidfd() {
    on_both(|_| async {
        let child = spawn(Command::new("sleep").arg("1000")).unwrap();
        child.signal(Signal::TERM).unwrap();
        let st = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.signal(), Some(Signal::TERM));
        // After reaping, signalling is a no-op (the pid may be reused).
        child.kill().unwrap();

        let child = spawn(Command::new("sleep").arg("1000")).unwrap();
        child.kill().unwrap();
        let st = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.signal(), Some(Signal::KILL));
    });
}

#[test]
fn kill_tree_and_wait_tree_leave_no_descendant() {
    on_both(|_| async {
        let tag = new_tag("tree");
        let child = spawn(&mut sh("sleep 1000 & sleep 1000 & wait", &tag)).unwrap();
        let pids = wait_tagged(&tag, 3).await;
        child.signal_tree(Signal::STOP).unwrap();
        child.kill_tree().unwrap();
        let st = tokio::time::timeout(SLACK, child.wait_tree())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.signal(), Some(Signal::KILL));
        for p in pids {
            assert!(!alive(p.pid), "{p:?} survived wait_tree");
        }
        assert_no_survivors(&tag);
    });
}

#[test]
fn wait_tree_waits_for_a_descendant_that_outlives_the_child() {
    on_both(|_| async {
        let tag = new_tag("outlive");
        let start = Instant::now();
        let child = spawn(&mut sh("sleep 0.4 & exit 0", &tag)).unwrap();
        let st = tokio::time::timeout(SLACK, child.wait_tree())
            .await
            .unwrap()
            .unwrap();
        assert!(st.success());
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "returned before the background sleep ended"
        );
        assert_no_survivors(&tag);
    });
}

#[test]
fn terminate_uses_term_then_kill_after_the_grace_on_the_runtime_timer() {
    on_both(|_| async {
        // Ends on TERM.
        let child = spawn(Command::new("sleep").arg("1000")).unwrap();
        let t = tokio::time::timeout(SLACK, child.terminate(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.ended_by, t.status.signal()),
            (EndedBy::Term, Some(Signal::TERM))
        );

        // A tree ignoring TERM (and one member stopped) needs KILL.
        let tag = new_tag("term");
        let child = spawn(&mut sh(
            "trap '' TERM; sleep 1000 & kill -STOP $!; sleep 1000",
            &tag,
        ))
        .unwrap();
        wait_tagged(&tag, 3).await;
        let grace = Duration::from_millis(300);
        let start = Instant::now();
        let t = tokio::time::timeout(SLACK, child.terminate(grace))
            .await
            .unwrap()
            .unwrap();
        assert!(start.elapsed() >= grace);
        assert_eq!(t.ended_by, EndedBy::Kill);
        assert_no_survivors(&tag);
    });
}

#[test]
fn stdio_pipes_are_tokio_async_read_and_write() {
    on_both(|_| async {
        let mut child = spawn(
            Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let mut stdin = child.take_stdin().unwrap();
        let mut stdout = child.take_stdout().unwrap();
        let data = vec![b'x'; 300_000]; // more than a pipe holds
        let writer = tokio::spawn(async move {
            stdin.write_all(&data).await.unwrap();
            // Dropping stdin gives cat EOF.
        });
        let mut got = Vec::new();
        tokio::time::timeout(SLACK, stdout.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 300_000);
        assert!(child.wait().await.unwrap().success());
    });
}

#[test]
fn the_pidfd_is_reachable_as_a_raw_fd_for_other_event_loops() {
    on_both(|_| async {
        let child = Command::new("true").spawn_async().await.unwrap();
        let raw = child.as_raw_fd();
        assert_eq!(raw, child.as_fd().as_raw_fd());
        assert_eq!(raw, child.inner().as_raw_fd());
        let link = std::fs::read_link(format!("/proc/self/fd/{raw}")).unwrap();
        assert_eq!(link.to_string_lossy(), "anon_inode:[pidfd]");
        child.wait().await.unwrap();
    });
}

#[test]
fn a_dropped_child_is_reaped_in_the_background_and_kill_on_drop_kills_its_tree() {
    on_both(|_| async {
        // Dropped while running, without kill_on_drop: it finishes, and
        // the background reaper takes it (no zombie; checked by on_both).
        let child = spawn(Command::new("sh").args(["-c", "sleep 0.1"])).unwrap();
        drop(child);

        // With kill_on_drop: the whole tree dies at drop.
        let tag = new_tag("kod");
        let child = spawn(sh("sleep 1000 & sleep 1000", &tag).kill_on_drop(true)).unwrap();
        wait_tagged(&tag, 3).await;
        drop(child);
        assert_no_survivors(&tag);
        assert!(eventually(SLACK, || childfd::pending_reaps() == 0));
    });
}

#[test]
fn spawning_outside_a_runtime_fails_without_starting_a_child() {
    common::warm_up();
    let h = childfd_testbin::Hygiene::start();
    let err = spawn(&mut Command::new("true")).unwrap_err();
    assert!(
        matches!(err, childfd_tokio::SpawnError::Register { .. }),
        "{err:?}"
    );
    h.finish(common::LIBRARY_THREADS);
}
