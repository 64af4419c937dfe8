//! Runtimes created and dropped in a loop (a test harness making one per
//! test, a CLI one per command), each dropped with a job still running
//! (its `JobSet` dropped just before the runtime, or kept past it):
//! the spawner threads and the reaper are the process's, not the
//! runtime's, so neither threads nor fds may grow with the runtimes, and
//! no child may outlive its runtime.

mod common;

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
