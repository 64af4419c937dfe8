//! A `JobSet` kept across runtimes: the runtime that runs its jobs' tasks
//! shuts down (dropping them: their trees are killed) while the set lives
//! on, and the set is then polled on another runtime. Each job must still
//! be reported exactly once (the dropped ones as `Cancelled`, saying why),
//! the queued ones must run, and nothing may be left behind. Joining a
//! task the runtime dropped gives a "cancelled" `JoinError`, which the set
//! took for a panic and resumed (`into_panic` on it panics).

mod common;

use std::collections::HashMap;

use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};
use childfd_tokio::{Event, JobSet, Options, Outcome};
use common::{Flavor, LIBRARY_THREADS, SLACK, runtime, sh};

const RUNNING: usize = 3;
const QUEUED: usize = 2;

#[test]
fn a_job_set_that_outlives_its_runtime_reports_the_dropped_jobs_instead_of_panicking() {
    common::warm_up();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        let tag = new_tag("set-outlives");
        let mut jobs = JobSet::new(RUNNING);
        for i in 0..RUNNING + QUEUED {
            let script = if i < RUNNING {
                "sleep 1000 & sleep 1000"
            } else {
                "echo later"
            };
            jobs.push(sh(script, &tag), Options::new().tag(format!("job{i}")));
        }
        let first = runtime(flavor);
        let (mut jobs, mut pids) = first.block_on(async move {
            let mut pids = HashMap::new();
            while pids.len() < RUNNING {
                match tokio::time::timeout(SLACK, jobs.next()).await {
                    Ok(Some(Event::Started { id, pid, .. })) => pids.insert(id, pid),
                    other => panic!("{flavor:?}: expected starts, got {other:?}"),
                };
            }
            (jobs, pids)
        });
        first.shutdown_timeout(SLACK); // drops the running jobs' tasks
        let second = runtime(flavor);
        let (reports, pids) = second.block_on(async move {
            let mut reports = HashMap::new();
            let all = async {
                while let Some(ev) = jobs.next().await {
                    match ev {
                        Event::Started { id, pid, .. } => assert!(pids.insert(id, pid).is_none()),
                        Event::Exited(r) | Event::Cancelled(r) => {
                            assert!(reports.insert(r.id, r).is_none(), "a job reported twice");
                        }
                        other => panic!("{flavor:?}: unexpected {other:?}"),
                    }
                }
            };
            tokio::time::timeout(SLACK, all)
                .await
                .expect("the set hung");
            assert_eq!(jobs.summary().cancelled, RUNNING as u64);
            (reports, pids)
        });
        second.shutdown_timeout(SLACK);
        assert_eq!(reports.len(), RUNNING + QUEUED, "{flavor:?}: {reports:?}");
        for (id, r) in &reports {
            assert_eq!(r.tag.as_deref(), Some(format!("job{id}").as_str()));
            if *id < RUNNING as u64 {
                assert_eq!(r.outcome, Outcome::Cancelled, "{flavor:?}: job {id}");
                assert_eq!(r.pid, Some(pids[id]), "{flavor:?}: job {id}");
                let why = r.error.as_ref().expect("why it was cancelled").to_string();
                assert!(!why.is_empty());
            } else {
                assert_eq!(r.outcome, Outcome::Exited, "{flavor:?}: job {id}");
                assert_eq!(r.stdout.text(), "later\n");
            }
        }
        assert_no_survivors(&tag);
        h.finish(LIBRARY_THREADS);
    }
}
