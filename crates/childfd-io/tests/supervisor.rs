//! The Supervisor runs thousands of children from one loop: every outcome
//! matches its child, the cap holds, failures stay local, cancellation
//! loses nothing already read, and the loop sleeps while children sleep.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use childfd::{Command, EndedBy, Signal};
use childfd_io::{Event, JobId, JobOptions, Outcome, Stream, Supervisor};
use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};

use childfd_testbin::Rng;

#[derive(Debug, Clone, Copy)]
enum Ending {
    Code(i32),
    Signal(Signal),
}

#[derive(Debug)]
struct Spec {
    sleep_ms: u64,
    ending: Ending,
    /// A deadline that fires (shorter than the sleep), if any.
    deadline_fires: bool,
}

#[test]
fn two_thousand_random_children_each_get_their_own_outcome_under_the_cap() {
    let h = Hygiene::start();
    const JOBS: usize = 2000;
    const CAP: usize = 64;
    let tag = new_tag("sup2000");
    let mut rng = Rng(0x5eed_c41d_f00d);
    let mut sup = Supervisor::new(CAP).unwrap();
    let mut specs: HashMap<JobId, Spec> = HashMap::new();
    for i in 0..JOBS {
        let sleep_ms = rng.next(301);
        let ending = match rng.next(4) {
            0 => Ending::Signal([Signal::USR1, Signal::TERM, Signal::KILL][rng.next(3) as usize]),
            _ => Ending::Code(rng.next(256) as i32),
        };
        let deadline_fires = sleep_ms >= 100 && rng.next(10) == 0;
        let end = match ending {
            Ending::Code(c) => format!("exit {c}"),
            Ending::Signal(s) => format!("kill -{} $$", s.as_raw()),
        };
        // A job whose deadline fires sleeps far beyond it, so that its
        // outcome does not depend on how soon a loaded machine runs the
        // loop (deadline accuracy is measured by the supervisor bench).
        let sleep = if deadline_fires {
            "60".to_string()
        } else {
            format!("{}.{:03}", sleep_ms / 1000, sleep_ms % 1000)
        };
        let script = format!("echo job {i}; sleep {sleep}; {end}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]).env("CHILDFD_TEST_TAG", &tag);
        let deadline = if deadline_fires {
            Duration::from_millis(sleep_ms / 2)
        } else {
            Duration::from_secs(60)
        };
        let id = sup.push(
            cmd,
            JobOptions::new()
                .deadline(deadline)
                .grace(Duration::from_secs(5)),
        );
        specs.insert(
            id,
            Spec {
                sleep_ms,
                ending,
                deadline_fires,
            },
        );
    }
    let mut finished = 0;
    let mut started = 0;
    while let Some(ev) = sup.next() {
        assert!(sup.in_flight() <= CAP, "cap exceeded: {}", sup.in_flight());
        match ev {
            Event::Started { .. } => started += 1,
            Event::Exited(r) => {
                finished += 1;
                let spec = &specs[&r.id];
                assert!(
                    !spec.deadline_fires,
                    "job {} should have timed out: {spec:?} {r:?}",
                    r.id
                );
                assert_eq!(
                    r.stdout.text(),
                    format!("job {}\n", r.id),
                    "job {} got another's output",
                    r.id
                );
                // A report cannot come before the child's own sleep ended.
                assert!(
                    r.elapsed >= Duration::from_millis(spec.sleep_ms),
                    "job {}: {spec:?} {r:?}",
                    r.id
                );
                let status = r.status.expect("exited");
                match spec.ending {
                    Ending::Code(c) => assert_eq!(status.code(), Some(c), "job {}: {spec:?}", r.id),
                    Ending::Signal(s) => {
                        assert_eq!(status.signal(), Some(s), "job {}: {spec:?}", r.id)
                    }
                }
            }
            Event::TimedOut(r) => {
                finished += 1;
                let spec = &specs[&r.id];
                assert!(
                    spec.deadline_fires,
                    "job {} timed out unexpectedly: {spec:?} {r:?}",
                    r.id
                );
                assert_eq!(r.ended_by, Some(EndedBy::Term));
                assert_eq!(
                    r.status.and_then(|s| s.signal()),
                    Some(Signal::TERM),
                    "job {}",
                    r.id
                );
                // On a loaded machine the shell may not have printed yet
                // when its deadline came; it never prints another's line.
                let text = r.stdout.text();
                assert!(
                    format!("job {}\n", r.id).starts_with(&text),
                    "job {} got {text:?}",
                    r.id
                );
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!((started, finished), (JOBS, JOBS));
    let summary = sup.summary();
    assert!(
        summary.max_in_flight <= CAP && summary.max_in_flight > CAP / 2,
        "{summary:?}"
    );
    let timed_out = specs.values().filter(|s| s.deadline_fires).count() as u64;
    assert_eq!(summary.timed_out, timed_out);
    eprintln!("{summary:?}");
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}

#[test]
fn a_spawn_failure_in_the_middle_does_not_disturb_the_others() {
    let h = Hygiene::start();
    let mut sup = Supervisor::new(4).unwrap();
    let mut bad = Vec::new();
    for i in 0..30 {
        if i % 10 == 5 {
            bad.push(sup.push(Command::new("/no/such/program"), JobOptions::new()));
        } else {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("echo {i}")]);
            sup.push(cmd, JobOptions::new().deadline(Duration::from_secs(30)));
        }
    }
    let mut failed = Vec::new();
    let mut ok = 0;
    for ev in sup.by_ref() {
        match ev {
            Event::SpawnFailed(r) => {
                match r.error.as_deref() {
                    Some(childfd_io::OutputError::Spawn(e)) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::NotFound)
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(r.outcome, Outcome::SpawnFailed);
                failed.push(r.id);
            }
            Event::Exited(r) => {
                assert!(r.status.unwrap().success());
                assert_eq!(r.stdout.text(), format!("{}\n", r.id));
                ok += 1;
            }
            Event::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((failed, ok), (bad, 27));
    assert_eq!(sup.summary().spawn_failed, 3);
    drop(sup);
    h.finish(1);
}

#[test]
fn cancelling_all_mid_output_loses_no_output_already_read() {
    let h = Hygiene::start();
    let tag = new_tag("supcancel");
    let mut sup = Supervisor::new(8).unwrap();
    let script = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.005; done";
    for _ in 0..12 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).env("CHILDFD_TEST_TAG", &tag);
        sup.push(cmd, JobOptions::new().lines(true));
    }
    let mut lines: HashMap<JobId, Vec<String>> = HashMap::new();
    let mut reports = Vec::new();
    let mut cancelled = false;
    while let Some(ev) = sup.next() {
        match ev {
            Event::Line {
                id, stream, line, ..
            } => {
                assert_eq!(stream, Stream::Stdout);
                lines
                    .entry(id)
                    .or_default()
                    .push(String::from_utf8(line).unwrap());
                let running_with_output = lines.values().filter(|v| v.len() >= 5).count();
                if !cancelled && running_with_output == 8 {
                    sup.cancel_all();
                    cancelled = true;
                }
            }
            Event::Cancelled(r) => reports.push(r),
            Event::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(cancelled);
    assert_eq!(reports.len(), 12);
    let started: Vec<_> = reports.iter().filter(|r| r.pid.is_some()).collect();
    assert_eq!(started.len(), 8, "the 4 queued jobs never started");
    for r in started {
        let got = lines.get(&r.id).cloned().unwrap_or_default();
        // Every line delivered as an event is in the report, in order,
        // and the report holds nothing beyond what was read: no gaps.
        let captured: Vec<String> = r.stdout.text().lines().map(str::to_string).collect();
        assert_eq!(captured, got, "job {}", r.id);
        assert!(got.len() >= 5);
        for (n, l) in got.iter().enumerate() {
            assert_eq!(l, &format!("line {n}"), "job {}: line {n} lost", r.id);
        }
        assert_eq!(r.outcome, Outcome::Cancelled);
        assert_eq!(r.status.and_then(|s| s.signal()), Some(Signal::KILL));
    }
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}

#[test]
fn a_callback_loop_can_cancel_one_job_and_then_all() {
    let h = Hygiene::start();
    let tag = new_tag("supcb");
    let mut sup = Supervisor::new(3).unwrap();
    for _ in 0..6 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo up; sleep 300; true"])
            .env("CHILDFD_TEST_TAG", &tag);
        sup.push(cmd, JobOptions::new().lines(true));
    }
    let started = Instant::now();
    let mut first: Option<JobId> = None;
    let mut cancelled = Vec::new();
    let summary = sup.run_controlled(|sup, ev| match ev {
        // The first job to print is cancelled alone; when the next one
        // prints, everything else goes.
        Event::Line { id, .. } => match first {
            None => {
                first = Some(id);
                sup.cancel(id);
            }
            Some(f) if f != id => sup.cancel_all(),
            Some(_) => {}
        },
        Event::Cancelled(r) => cancelled.push(r),
        Event::Started { .. } => {}
        other => panic!("unexpected {other:?}"),
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "cancel did not end the sleeps"
    );
    // Six distinct jobs cancelled: those that had started (the first one,
    // the other two under the cap, perhaps one that took the first one's
    // slot) were killed by SIGKILL; the queued rest never started.
    let ids: std::collections::HashSet<JobId> = cancelled.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 6);
    let first = first.expect("a job printed");
    let ran: Vec<_> = cancelled.iter().filter(|r| r.pid.is_some()).collect();
    assert!((3..=4).contains(&ran.len()), "{} started", ran.len());
    assert!(ran.iter().any(|r| r.id == first));
    for r in &ran {
        assert_eq!(r.status.and_then(|s| s.signal()), Some(Signal::KILL));
    }
    assert_eq!((summary.cancelled, summary.succeeded), (6, 0));
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}

#[test]
fn while_every_child_sleeps_the_supervising_thread_sleeps_too() {
    let h = Hygiene::start();
    let mut sup = Supervisor::new(50).unwrap();
    for _ in 0..50 {
        let mut cmd = Command::new("sleep");
        cmd.arg("1");
        sup.push(cmd, JobOptions::new().deadline(Duration::from_secs(30)));
    }
    let start = Instant::now();
    let summary = sup.run(|ev| assert!(!matches!(ev, Event::Failed(_) | Event::SpawnFailed(_))));
    let wall = start.elapsed();
    assert_eq!(summary.succeeded, 50);
    // A polling loop would burn about the whole second of wall time; one
    // that sleeps in epoll_wait uses a few milliseconds for 50 spawns.
    assert!(
        summary.supervisor_cpu < wall / 4,
        "supervising thread used {:?} of CPU in {wall:?}",
        summary.supervisor_cpu
    );
    eprintln!(
        "50 sleeping children: {:?} CPU in {wall:?}",
        summary.supervisor_cpu
    );
    drop(sup);
    h.finish(1);
}

#[test]
fn a_job_that_closed_its_pipes_is_reported_when_it_exits_later() {
    // The loop watches such a job's exit only from its pipes' EOF on (or
    // from its deadline on): a child that outlives its pipes must still
    // be reaped and reported when it exits, not at its deadline.
    let h = Hygiene::start();
    let mut sup = Supervisor::new(4).unwrap();
    let mut quiet = Command::new("sh");
    quiet.args(["-c", "echo bye; exec >&- 2>&-; sleep 0.3; exit 3"]);
    let quiet = sup.push(quiet, JobOptions::new().deadline(Duration::from_secs(30)));
    let mut late = Command::new("sh");
    late.args(["-c", "exec >&- 2>&-; exec sleep 60"]);
    let late = sup.push(
        late,
        JobOptions::new()
            .deadline(Duration::from_millis(200))
            .grace(Duration::from_secs(20)),
    );
    let mut reports = HashMap::new();
    for ev in sup.by_ref() {
        if let Some(r) = ev.into_report() {
            reports.insert(r.id, r);
        }
    }
    let q = &reports[&quiet];
    assert_eq!(q.outcome, Outcome::Exited, "{q:?}");
    assert_eq!(q.status.and_then(|s| s.code()), Some(3));
    assert_eq!(q.stdout.text(), "bye\n");
    // Reported at its exit, not found exited when its deadline fired.
    assert!(
        q.elapsed >= Duration::from_millis(300) && q.elapsed < Duration::from_secs(10),
        "{q:?}"
    );
    let l = &reports[&late];
    assert_eq!(l.outcome, Outcome::TimedOut, "{l:?}");
    // TERM ended the sleep: its exit ended the grace, long before 20 s.
    assert_eq!(l.ended_by, Some(EndedBy::Term), "{l:?}");
    assert!(l.elapsed < Duration::from_secs(10), "{l:?}");
    drop(sup);
    h.finish(1);
}
