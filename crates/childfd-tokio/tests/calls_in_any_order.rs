//! The async child's methods called in any order, from several tasks, after
//! the child was reaped, and again after their futures were dropped
//! midway: each returns what it should, and nothing is left behind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use childfd::{EndedBy, Signal};
use childfd_testbin::{alive, assert_no_survivors, new_tag};
use childfd_tokio::spawn;
use common::{SLACK, on_both, sh, wait_tagged};

/// Bounded by [`SLACK`]: only a hang exceeds it.
fn bounded<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(SLACK, f)
}

#[test]
fn every_method_after_the_child_was_reaped_returns_at_once_without_error() {
    on_both(|_| async {
        let tag = new_tag("after-reap");
        let child = spawn(&mut sh("exit 9", &tag)).unwrap();
        let st = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.code(), Some(9));
        assert_eq!(child.try_wait().unwrap(), Some(st));
        child.signal(Signal::TERM).unwrap();
        child.kill().unwrap();
        child.signal_tree(Signal::TERM).unwrap();
        child.kill_tree().unwrap();
        assert_eq!(bounded(child.wait_tree()).await.unwrap().unwrap(), st);
        let t = bounded(child.terminate(Duration::from_secs(1000)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((t.status, t.ended_by), (st, EndedBy::Term));
        assert_eq!(child.wait().await.unwrap(), st);
        assert_no_survivors(&tag);
    });
}

#[test]
fn a_terminate_dropped_mid_grace_and_awaited_again_still_ends_the_tree() {
    on_both(|_| async {
        let tag = new_tag("term-again");
        let child = spawn(&mut sh("trap '' TERM; sleep 1000 & sleep 1000", &tag)).unwrap();
        let members = wait_tagged(&tag, 3).await;
        // Dropped in its grace: TERM and CONT were sent, nothing else.
        for _ in 0..3 {
            let r = tokio::time::timeout(
                Duration::from_millis(30),
                child.terminate(Duration::from_secs(1000)),
            )
            .await;
            assert!(r.is_err(), "the tree ignores TERM");
        }
        for m in &members {
            assert!(alive(m.pid), "{m:?} was killed by a dropped terminate");
        }
        let t = tokio::time::timeout(SLACK, child.terminate(Duration::from_millis(50)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.ended_by, EndedBy::Kill);
        assert_eq!(t.status.signal(), Some(Signal::KILL));
        assert_no_survivors(&tag);
    });
}

#[test]
fn waits_terminates_and_kills_from_several_tasks_agree_on_one_status() {
    on_both(|_| async {
        let tag = new_tag("many-tasks");
        let child =
            Arc::new(spawn(&mut sh("trap '' TERM; sleep 1000 & sleep 1000", &tag)).unwrap());
        wait_tagged(&tag, 3).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let c = child.clone();
            tasks.spawn(async move {
                match i % 4 {
                    0 => bounded(c.wait()).await.unwrap().unwrap(),
                    1 => bounded(c.wait_tree()).await.unwrap().unwrap(),
                    2 => {
                        bounded(c.terminate(Duration::from_millis(100)))
                            .await
                            .unwrap()
                            .unwrap()
                            .status
                    }
                    _ => {
                        // A wait dropped midway, then a kill of the tree.
                        let _ = tokio::time::timeout(Duration::from_millis(20), c.wait()).await;
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        c.kill_tree().unwrap();
                        bounded(c.wait()).await.unwrap().unwrap()
                    }
                }
            });
        }
        let mut seen = Vec::new();
        while let Some(st) = tasks.join_next().await {
            seen.push(st.unwrap());
        }
        assert_eq!(seen.len(), 8);
        assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
        assert_eq!(seen[0].signal(), Some(Signal::KILL));
        assert_no_survivors(&tag);
    });
}
