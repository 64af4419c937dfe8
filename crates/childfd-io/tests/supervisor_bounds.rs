//! The Supervisor's bounds hold however many jobs it runs: a child that
//! exited before its deadline is reported exited even when the loop is
//! late, and a deadline fires while the queue is still being spawned.

use std::time::{Duration, Instant};

use childfd::Command;
use childfd_io::{Event, JobOptions, Supervisor};
use childfd_testbin::{EXIT0, Hygiene, PAUSE, assert_no_survivors, eventually, new_tag};

/// More jobs in flight than one `epoll_wait` returns events (256), each
/// exiting at once, with a deadline that passes while the caller is slow
/// to ask for events: every one of them exited, none may be reported
/// timed out (a deadline must not be fired before the exit it raced with
/// was looked at).
#[test]
fn jobs_that_exited_before_their_deadline_are_exited_even_when_the_loop_is_late() {
    let h = Hygiene::start();
    const JOBS: usize = 300;
    // Long enough that every job has exited before it under load (checked
    // below, not assumed: with 50 ms a job not yet scheduled when its
    // deadline passed was rightly reported timed out), short enough that
    // the slow caller below outlasts it.
    const DEADLINE: Duration = Duration::from_secs(2);
    let mut sup = Supervisor::new(JOBS).unwrap();
    let pushed = Instant::now();
    for _ in 0..JOBS {
        sup.push(
            Command::new(EXIT0),
            JobOptions::new()
                .deadline(DEADLINE)
                .grace(Duration::from_secs(5)),
        );
    }
    let (mut started, mut exited, mut slept) = (0, 0, false);
    let mut pids = Vec::new();
    for ev in sup.by_ref() {
        match ev {
            Event::Started { pid, .. } => {
                started += 1;
                pids.push(pid as i32);
            }
            Event::Exited(r) => {
                assert!(r.status.unwrap().success(), "{r:?}");
                exited += 1;
            }
            other => panic!("a job that exited before its deadline reported {other:?}"),
        }
        if started == JOBS && !slept {
            // Every job has exited (a zombie, or reaped already) ...
            let all_exited = || {
                pids.iter()
                    .all(|&p| childfd_testbin::read_stat(p).is_none_or(|s| s.state == 'Z'))
            };
            assert!(
                eventually(DEADLINE, all_exited),
                "the test's premise failed: jobs still running {DEADLINE:?} after being pushed"
            );
            assert!(
                pushed.elapsed() < DEADLINE,
                "the test's premise failed: the jobs took {:?} to exit",
                pushed.elapsed()
            );
            // ... then the caller is busy elsewhere until every deadline
            // has passed.
            let last_deadline = Instant::now() + DEADLINE;
            while Instant::now() < last_deadline {
                std::thread::sleep(last_deadline - Instant::now());
            }
            slept = true;
        }
    }
    assert_eq!((started, exited), (JOBS, JOBS));
    drop(sup);
    h.finish(1);
}

/// Job 0 has a 1 ms deadline; 500 jobs are queued behind it with room for
/// all. Its deadline must fire (and its report come) while the others are
/// still being spawned, not after the whole queue was started.
#[test]
fn a_deadline_fires_while_the_queue_is_still_being_spawned() {
    let h = Hygiene::start();
    const JOBS: usize = 500;
    let tag = new_tag("supearly");
    let mut sup = Supervisor::new(JOBS).unwrap();
    for i in 0..JOBS {
        let mut cmd = Command::new(PAUSE);
        cmd.env("CHILDFD_TEST_TAG", &tag);
        let opts = if i == 0 {
            JobOptions::new().deadline(Duration::from_millis(1))
        } else {
            JobOptions::new().deadline(Duration::from_secs(60))
        };
        sup.push(cmd, opts);
    }
    let mut started = 0;
    let mut started_before_timeout = None;
    while let Some(ev) = sup.next() {
        match ev {
            Event::Started { .. } => started += 1,
            Event::TimedOut(r) => {
                assert_eq!(r.id, 0, "{r:?}");
                started_before_timeout = Some(started);
                sup.cancel_all();
            }
            Event::Cancelled(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let before = started_before_timeout.expect("job 0 timed out");
    assert!(
        before < JOBS,
        "job 0's deadline fired only after all {JOBS} jobs were started"
    );
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}
