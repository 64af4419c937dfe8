//! A `JobSet`'s cap under churn: jobs that exit at once, time out (tree
//! terminated), hold their pipes (tree killed), fail to spawn, or are
//! cancelled by the caller while running. A thread watching `/proc` must
//! never see processes of more jobs alive at once than the cap, and each
//! job must be reported exactly once.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag};
use childfd_tokio::{Event, JobSet, Options, Outcome};
use common::{SLACK, on_both, sh};

const CAP: usize = 4;
const JOBS: u64 = 80;

/// Jobs (`<tag>-<id>` in their environment) with a live process now.
fn live_jobs(tag: &str) -> BTreeSet<String> {
    let prefix = format!("CHILDFD_TEST_TAG={tag}-");
    childfd_testbin::processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .filter_map(|p| std::fs::read(format!("/proc/{}/environ", p.pid)).ok())
        .filter_map(|env| {
            env.split(|&b| b == 0).find_map(|kv| {
                kv.strip_prefix(prefix.as_bytes())
                    .map(|id| String::from_utf8_lossy(id).into_owned())
            })
        })
        .collect()
}

/// Watches until `stop`; the most jobs seen alive at once.
fn watch(
    tag: String,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(live_jobs(&tag).len(), Ordering::Relaxed);
        }
    })
}

/// Job `i`: which kind of ending it gets.
fn push(jobs: &mut JobSet, tag: &str, i: u64) -> u64 {
    let job_tag = format!("{tag}-{i}");
    let (script, opts) = match i % 5 {
        0 => ("echo quick", Options::new()),
        1 => (
            "sleep 1000 & exec sleep 1000",
            Options::new().deadline(Duration::from_millis(30)),
        ),
        2 => (
            "echo held; sleep 1000 &",
            Options::new()
                .wait_delay(Duration::from_millis(30))
                .kill_tree_on_held_pipes(true),
        ),
        3 => ("sleep 1000 & exec sleep 1000", Options::new()), // cancelled once started
        _ => ("", Options::new()),
    };
    let cmd = if i % 5 == 4 {
        childfd::Command::new("/no/such/program")
    } else {
        sh(script, &job_tag)
    };
    jobs.push(cmd, opts)
}

#[test]
fn a_job_set_under_churn_never_has_more_jobs_alive_than_its_cap() {
    on_both(|flavor| async move {
        let tag = new_tag("churn");
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let watcher = watch(tag.clone(), stop.clone(), peak.clone());
        let mut jobs = JobSet::new(CAP);
        for i in 0..JOBS {
            push(&mut jobs, &tag, i);
        }
        let mut reports = HashMap::new();
        while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
            .await
            .expect("jobs hung")
        {
            assert!(jobs.in_flight() <= CAP);
            match ev {
                Event::Started { id, .. } if id % 5 == 3 => jobs.cancel(id),
                Event::Started { .. } => {}
                Event::Exited(r)
                | Event::TimedOut(r)
                | Event::PipesHeldOpen(r)
                | Event::Cancelled(r)
                | Event::SpawnFailed(r) => {
                    let expected = match r.id % 5 {
                        0 => Outcome::Exited,
                        1 => Outcome::TimedOut,
                        2 => Outcome::PipesHeldOpen,
                        3 => Outcome::Cancelled,
                        _ => Outcome::SpawnFailed,
                    };
                    assert_eq!(r.outcome, expected, "{flavor:?}: job {}", r.id);
                    assert!(reports.insert(r.id, r).is_none(), "a job reported twice");
                }
                other => panic!("{flavor:?}: unexpected {other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || watcher.join().expect("watcher"))
            .await
            .unwrap();
        assert_eq!(reports.len() as u64, JOBS);
        let s = jobs.summary();
        assert_eq!(
            (s.max_in_flight, s.cancelled, s.spawn_failed),
            (CAP, JOBS / 5, JOBS / 5)
        );
        let peak = peak.load(Ordering::Relaxed);
        assert!(
            peak <= CAP,
            "{flavor:?}: processes of {peak} jobs alive at once, cap {CAP}"
        );
        tokio::task::spawn_blocking(move || {
            for i in 0..JOBS {
                assert_no_survivors(&format!("{tag}-{i}"));
            }
        })
        .await
        .unwrap();
    });
}
