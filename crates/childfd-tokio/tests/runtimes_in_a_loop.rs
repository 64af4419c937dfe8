//! Runtimes created and dropped in a loop (a test harness making one per
//! test, a CLI one per command), each dropped with a job still running
//! (its `JobSet` dropped just before the runtime, or kept past it):
//! the spawner threads and the reaper are the process's, not the
//! runtime's, so neither threads nor fds may grow with the runtimes, and
//! no child may outlive its runtime.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::{Flavor, LIBRARY_THREADS, SLACK, runtime, sh};

const RUNTIMES: usize = 60;

#[test]
fn runtimes_dropped_in_a_loop_with_jobs_running_leak_no_thread_fd_or_child() {
    common::warm_up();
    let h = Hygiene::start();
    let tag = new_tag("rt-loop");
    for i in 0..RUNTIMES {
        let flavor = if i % 2 == 0 {
            Flavor::CurrentThread
        } else {
            Flavor::MultiThread
        };
        let rt = runtime(flavor);
        let kept = rt.block_on(async {
            let out = sh("echo done", &tag)
                .output_async(Options::new())
                .await
                .expect("output");
            assert_eq!(out.stdout.text(), "done\n");
            let mut jobs = JobSet::new(2);
            jobs.push(sh("sleep 1000 & exec sleep 1000", &tag), Options::new());
            jobs.push(sh("exit 3", &tag), Options::new());
            let mut seen = (false, false);
            while seen != (true, true) {
                match tokio::time::timeout(SLACK, jobs.next())
                    .await
                    .expect("hung")
                {
                    Some(Event::Started { id: 0, .. }) => seen.0 = true,
                    Some(Event::Exited(r)) => {
                        assert_eq!(r.status.and_then(|s| s.code()), Some(3));
                        seen.1 = true;
                    }
                    Some(_) => {}
                    None => panic!("the running job was reported"),
                }
            }
            // With a job running, the set is dropped before its runtime,
            // or after it (its tasks then go with the runtime).
            (i % 4 >= 2).then_some(jobs)
        });
        drop(rt);
        drop(kept);
    }
    assert_no_survivors(&tag);
    h.finish(LIBRARY_THREADS);
}

/// Samples the process's thread count until `stop`; the peak.
fn sample_threads(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(childfd_testbin::thread_count());
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    })
}

/// Many current-thread runtimes at once, each on a thread of its own
/// with a `JobSet` whose jobs have `pre_exec` closures (each ends its
/// spawner batch): the process gains the runtimes' threads and nothing
/// per runtime or per job.
#[test]
fn many_runtimes_at_once_share_the_spawner_threads() {
    const RUNTIMES: usize = 8;
    const JOBS: usize = 40;
    common::warm_up();
    let h = Hygiene::start();
    let tag = new_tag("rt-many");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_threads(stop.clone());
    let base = childfd_testbin::thread_count(); // with the sampler
    let start = Arc::new(std::sync::Barrier::new(RUNTIMES));
    let threads: Vec<_> = (0..RUNTIMES)
        .map(|_| {
            let (tag, start) = (tag.clone(), start.clone());
            std::thread::spawn(move || {
                let rt = runtime(Flavor::CurrentThread);
                start.wait();
                rt.block_on(async {
                    let mut jobs = JobSet::new(JOBS);
                    for _ in 0..JOBS {
                        let mut cmd = sh("echo ok", &tag);
                        // SAFETY: the closure calls nothing.
                        unsafe { cmd.pre_exec(|| Ok(())) };
                        jobs.push(cmd, Options::new());
                    }
                    let mut ok = 0;
                    while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
                        .await
                        .expect("hung")
                    {
                        if let Event::Exited(r) = ev {
                            assert_eq!(r.stdout.text(), "ok\n");
                            ok += 1;
                        }
                    }
                    assert_eq!(ok, JOBS);
                });
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a runtime's thread");
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    // The runtimes' threads, and the core crate's background reaper if it
    // was not running at the start.
    assert!(
        peak <= base + RUNTIMES + 1,
        "threads peaked at {peak}: {base} + {RUNTIMES} runtimes"
    );
    assert_no_survivors(&tag);
    h.finish(LIBRARY_THREADS);
}
