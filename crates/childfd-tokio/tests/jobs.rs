//! `JobSet` on both runtimes: the cap, events, cancellation, deadlines,
//! and 1,000 jobs on the runtime's threads alone.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag};
use childfd_tokio::{Event, JobSet, Options, Outcome, Stream};
use common::{Flavor, WORKERS, on_both, sh};

#[test]
fn a_job_set_caps_the_jobs_in_flight_and_reports_each_once() {
    on_both(|_| async {
        let tag = new_tag("set");
        let mut jobs = JobSet::new(3);
        for i in 0..10 {
            jobs.push(
                sh(&format!("echo {i}; sleep 0.05; exit {}", i % 2), &tag),
                Options::new(),
            );
        }
        let mut started = 0;
        let mut reports = HashMap::new();
        while let Some(ev) = jobs.next().await {
            assert!(jobs.in_flight() <= 3);
            match ev {
                Event::Started { .. } => started += 1,
                Event::Exited(r) => {
                    assert!(reports.insert(r.id, r).is_none(), "reported twice");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((started, reports.len()), (10, 10));
        for (id, r) in &reports {
            assert_eq!(r.stdout.text(), format!("{id}\n"));
            assert_eq!(r.status.unwrap().code(), Some((*id % 2) as i32));
        }
        let s = jobs.summary();
        assert_eq!((s.succeeded, s.failed, s.max_in_flight), (5, 5, 3));
        assert!(jobs.is_empty());
        assert_no_survivors(&tag);
    });
}

#[test]
fn job_set_deadlines_held_pipes_lines_and_cancel() {
    on_both(|_| async {
        let tag = new_tag("set-kinds");
        let mut jobs = JobSet::new(8);
        let slow = jobs.push(
            sh("sleep 1000 & sleep 1000", &tag),
            Options::new().deadline(Duration::from_millis(200)),
        );
        let held = jobs.push(
            sh("echo x; sleep 1000 &", &tag),
            Options::new()
                .wait_delay(Duration::from_millis(200))
                .kill_tree_on_held_pipes(true),
        );
        let lines = jobs.push(
            sh("echo a; echo b >&2; echo c", &tag),
            Options::new().line_events(true),
        );
        let cancelled = jobs.push(sh("sleep 1000 & sleep 1000", &tag), Options::new());
        let mut got_lines = Vec::new();
        let mut outcomes = HashMap::new();
        while let Some(ev) = jobs.next().await {
            match ev {
                Event::Started { id, .. } if id == cancelled => jobs.cancel(id),
                Event::Started { .. } => {}
                Event::Line {
                    id, stream, line, ..
                } => {
                    assert_eq!(id, lines);
                    assert!(!outcomes.contains_key(&id), "a line after its job's report");
                    got_lines.push((stream, String::from_utf8(line).unwrap()));
                }
                Event::Exited(r)
                | Event::TimedOut(r)
                | Event::PipesHeldOpen(r)
                | Event::Cancelled(r) => {
                    outcomes.insert(r.id, (r.outcome, r.holders));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(outcomes[&slow].0, Outcome::TimedOut);
        assert_eq!(outcomes[&held].0, Outcome::PipesHeldOpen);
        assert!(outcomes[&held].1.iter().any(|h| h.name == "sleep"));
        assert_eq!(outcomes[&lines].0, Outcome::Exited);
        assert_eq!(outcomes[&cancelled].0, Outcome::Cancelled);
        let out: Vec<&str> = got_lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(out, ["a", "c"]);
        assert!(got_lines.contains(&(Stream::Stderr, "b".to_string())));
        // A queued job cancelled before it starts.
        let mut jobs = JobSet::new(1);
        jobs.push(sh("sleep 0.05", &tag), Options::new());
        let queued = jobs.push(sh("echo never", &tag), Options::new());
        jobs.cancel(queued);
        let mut cancelled_unstarted = false;
        while let Some(ev) = jobs.next().await {
            if let Event::Cancelled(r) = ev {
                assert_eq!((r.id, r.pid), (queued, None));
                cancelled_unstarted = true;
            }
        }
        assert!(cancelled_unstarted);
        assert_no_survivors(&tag);
    });
}

#[test]
fn a_dropped_job_set_leaves_nothing_behind() {
    on_both(|_| async {
        let tag = new_tag("set-drop");
        let mut jobs = JobSet::new(4);
        for _ in 0..4 {
            jobs.push(sh("sleep 1000 & sleep 1000", &tag), Options::new());
        }
        let mut started = 0;
        while started < 4 {
            if let Some(Event::Started { .. }) = jobs.next().await {
                started += 1;
            }
        }
        drop(jobs);
        // The aborted tasks are dropped (killing their trees) as soon as
        // the runtime runs: check from a blocking thread, not this one.
        tokio::task::spawn_blocking(move || assert_no_survivors(&tag))
            .await
            .unwrap();
    });
}

/// Samples the process's thread count every millisecond until stopped.
fn thread_sampler() -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(childfd_testbin::thread_count());
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    });
    (stop, h)
}

#[test]
fn a_thousand_jobs_with_deadlines_use_only_the_runtime_threads() {
    common::warm_up();
    const JOBS: usize = 1000;
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = childfd_testbin::Hygiene::start();
        let rt = common::runtime(flavor);
        // The runtime's workers exist now; nothing else should be added.
        rt.block_on(async { tokio::task::yield_now().await });
        let (stop, sampler) = thread_sampler();
        let base = childfd_testbin::thread_count(); // with the sampler
        let tag = new_tag("thousand");
        let timed_out = Arc::new(AtomicUsize::new(0));
        let t = timed_out.clone();
        let tag2 = tag.clone();
        rt.block_on(async move {
            let mut jobs = JobSet::new(JOBS);
            for _ in 0..JOBS {
                // Stays until the deadline: all 1,000 are in flight at once.
                jobs.push(
                    sh("echo up; exec sleep 1000", &tag2),
                    Options::new()
                        .deadline(Duration::from_secs(3))
                        .grace(Duration::from_secs(5)),
                );
            }
            let run = async {
                while let Some(ev) = jobs.next().await {
                    if let Event::TimedOut(r) = ev {
                        assert_eq!(r.stdout.text(), "up\n");
                        t.fetch_add(1, Ordering::Relaxed);
                    }
                }
                jobs.summary()
            };
            let s = tokio::time::timeout(Duration::from_secs(120), run)
                .await
                .expect("jobs hung");
            assert_eq!(s.max_in_flight, JOBS);
        });
        stop.store(true, Ordering::Relaxed);
        let peak = sampler.join().unwrap();
        assert_eq!(timed_out.load(Ordering::Relaxed), JOBS);
        // No thread per job: the runtime's own threads (created before the
        // baseline), plus the core crate's background reaper at most.
        assert!(
            peak <= base + 1,
            "{flavor:?}: threads peaked at {peak}, {base} before the jobs ({} workers)",
            if flavor == Flavor::MultiThread {
                WORKERS
            } else {
                0
            }
        );
        assert_no_survivors(&tag);
        rt.shutdown_timeout(common::SLACK);
        h.finish(common::LIBRARY_THREADS);
    }
}
