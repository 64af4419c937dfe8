//! Someone else reaps our children: a PID-1-style `waitpid(-1)` loop on
//! a thread of the same process, or SIGCHLD set to `SIG_IGN` (the kernel
//! reaps at exit). Every status a `JobSet`, `wait` and `terminate` report
//! must still be the child's own (recovered from `PIDFD_INFO_EXIT`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use childfd::{Command, Signal};
use childfd_testbin::{SigchldIgnored, assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::{SLACK, on_both, sh};

const JOBS: u64 = 60;

/// Runs jobs exiting with known codes, plain waits and a terminate, and
/// checks each status.
async fn statuses_are_each_childs_own(tag: &str) {
    let mut jobs = JobSet::new(8);
    for i in 0..JOBS {
        jobs.push(
            sh(&format!("echo {i}; exit {}", i % 7), tag),
            Options::new(),
        );
    }
    let mut reports = HashMap::new();
    while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
        .await
        .expect("jobs hung")
    {
        match ev {
            Event::Started { .. } => {}
            Event::Exited(r) => assert!(reports.insert(r.id, r).is_none(), "reported twice"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reports.len() as u64, JOBS);
    for (id, r) in &reports {
        assert_eq!(
            r.status.and_then(|s| s.code()),
            Some((id % 7) as i32),
            "job {id}"
        );
        assert_eq!(r.stdout.text(), format!("{id}\n"), "job {id}");
    }
    for code in 0..10 {
        let mut c = Command::new("sh");
        c.args(["-c", &format!("exit {code}")])
            .env("CHILDFD_TEST_TAG", tag);
        let child = c.spawn_async().await.expect("spawn");
        let st = tokio::time::timeout(SLACK, child.wait())
            .await
            .expect("wait hung");
        assert_eq!(st.expect("status").code(), Some(code));
    }
    let child = sh("sleep 1000 & sleep 1000", tag)
        .spawn_async()
        .await
        .expect("spawn");
    let t = tokio::time::timeout(SLACK, child.terminate(Duration::from_secs(5))).await;
    let t = t.expect("terminate hung").expect("terminate");
    assert_eq!(t.status.signal(), Some(Signal::TERM));
}

#[test]
fn statuses_stay_right_while_a_waitpid_any_loop_reaps_our_children() {
    on_both(|flavor| async move {
        let tag = new_tag("foreign-waitpid");
        let recovered = childfd::recovered_statuses();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        // A PID-1-style reaper: takes whatever child has exited.
        let reaper = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if childfd_testbin::reap_any_nohang().is_none() {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        statuses_are_each_childs_own(&tag).await;
        stop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || reaper.join().expect("reaper"))
            .await
            .unwrap();
        assert!(
            childfd::recovered_statuses() > recovered,
            "{flavor:?}: premise: the foreign reaper took some of our children's statuses"
        );
        tokio::task::spawn_blocking(move || assert_no_survivors(&tag))
            .await
            .unwrap();
    });
}

#[test]
fn statuses_stay_right_with_sigchld_ignored() {
    on_both(|_| async move {
        let tag = new_tag("sigchld-ign");
        let ignored = SigchldIgnored::new();
        statuses_are_each_childs_own(&tag).await;
        drop(ignored);
        tokio::task::spawn_blocking(move || assert_no_survivors(&tag))
            .await
            .unwrap();
    });
}
