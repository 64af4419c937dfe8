//! A Supervisor driven from other threads through its `Handle`: pushes,
//! cancels and shutdowns take effect at once, even while the loop sleeps
//! until a far deadline; a signal can make `next` return.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use childfd::Command;
use childfd_io::{Event, JobOptions, Outcome, Supervisor};
use childfd_testbin::{Hygiene, PAUSE, assert_no_survivors, new_tag};

fn pause(tag: &str) -> Command {
    let mut cmd = Command::new(PAUSE);
    cmd.env("CHILDFD_TEST_TAG", tag);
    cmd
}

/// A test runner's Ctrl-C thread, while every job sleeps with a 60 s
/// deadline: `cancel_all` must end them now, not when the deadlines fire.
#[test]
fn cancel_all_from_another_thread_ends_sleeping_jobs_at_once() {
    let h = Hygiene::start();
    let tag = new_tag("handlecancel");
    let mut sup = Supervisor::new(4).unwrap();
    for _ in 0..4 {
        sup.push(
            pause(&tag),
            JobOptions::new().deadline(Duration::from_secs(60)),
        );
    }
    let handle = sup.handle();
    let (tx, rx) = mpsc::channel::<()>();
    let ctrl_c = std::thread::spawn(move || {
        rx.recv().unwrap();
        handle.cancel_all();
    });
    let (mut started, mut cancelled) = (0, 0);
    let mut asked = None;
    for ev in sup.by_ref() {
        match ev {
            Event::Started { .. } => {
                started += 1;
                if started == 4 {
                    asked = Some(Instant::now());
                    tx.send(()).unwrap();
                }
            }
            Event::Cancelled(r) => {
                assert!(r.pid.is_some(), "{r:?}");
                cancelled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = asked.expect("all started").elapsed();
    assert_eq!(cancelled, 4);
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");
    ctrl_c.join().unwrap();
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}

/// Jobs pushed from three threads all run and report; the loop waits for
/// pushes while handles live and ends when the last one is dropped.
#[test]
fn jobs_pushed_from_other_threads_run_and_the_loop_ends_with_the_last_handle() {
    let h = Hygiene::start();
    let mut sup = Supervisor::new(8).unwrap();
    let pushers: Vec<_> = (0..3)
        .map(|t| {
            let handle = sup.handle();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let mut cmd = Command::new("sh");
                    cmd.args(["-c", &format!("echo {t}.{i}")]);
                    ids.push((handle.push(cmd, JobOptions::new()), format!("{t}.{i}\n")));
                }
                ids
            })
        })
        .collect();
    let mut outputs = std::collections::HashMap::new();
    for ev in sup.by_ref() {
        match ev {
            Event::Started { .. } => {}
            Event::Exited(r) => {
                outputs.insert(r.id, r.stdout.text());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected: Vec<_> = pushers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert_eq!(outputs.len(), 30);
    for (id, text) in expected {
        assert_eq!(outputs[&id], text, "job {id}");
    }
    drop(sup);
    h.finish(1);
}

/// `shutdown` cancels what runs, and what is pushed after it is reported
/// cancelled without starting; then the iterator ends although a handle
/// is still alive.
#[test]
fn shutdown_cancels_running_jobs_and_refuses_later_pushes() {
    let h = Hygiene::start();
    let tag = new_tag("handleshutdown");
    let mut sup = Supervisor::new(2).unwrap();
    let handle = sup.handle();
    let first = handle.push(pause(&tag), JobOptions::new());
    let mut late = None;
    let mut reports = Vec::new();
    for ev in sup.by_ref() {
        match ev {
            Event::Started { id, .. } => {
                assert_eq!(id, first);
                handle.shutdown();
                late = Some(handle.push(pause(&tag), JobOptions::new()));
            }
            Event::Cancelled(r) => reports.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    let late = late.unwrap();
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Cancelled);
        assert_eq!(r.pid.is_none(), r.id == late, "{r:?}");
    }
    drop(handle);
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}

extern "C" fn on_usr1(_: libc::c_int) {}

/// With `stop_on_interrupt`, a signal delivered to the loop thread while
/// it sleeps in `epoll_wait` makes `next` return `Event::Interrupted`.
#[test]
fn next_returns_interrupted_when_a_signal_interrupts_the_wait() {
    let h = Hygiene::start();
    let tag = new_tag("handleeintr");
    // SAFETY: sigaction is plain data (all-zero: empty mask, no flags).
    // The handler installed below does nothing (async-signal-safe), for
    // SIGUSR1, which nothing else in this test binary uses.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
    // SAFETY: as above; `sa` is initialised.
    unsafe { libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) };
    let mut sup = Supervisor::new(1).unwrap();
    sup.stop_on_interrupt(true);
    sup.push(
        pause(&tag),
        JobOptions::new().deadline(Duration::from_secs(60)),
    );
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let kicker = std::thread::spawn(move || {
        // Until the loop reports the interruption: a signal that lands
        // between two waits interrupts nothing.
        while stop_rx.recv_timeout(Duration::from_millis(20)).is_err() {
            // SAFETY: `me` is the test thread, alive until it has sent stop.
            unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR1) };
        }
    });
    let start = Instant::now();
    let mut interrupted = false;
    while let Some(ev) = sup.next() {
        match ev {
            Event::Started { .. } => {}
            Event::Interrupted => {
                if !interrupted {
                    interrupted = true;
                    stop_tx.send(()).unwrap();
                    sup.cancel_all();
                }
            }
            Event::Cancelled(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never interrupted"
        );
    }
    kicker.join().unwrap();
    assert!(interrupted);
    drop(sup);
    assert_no_survivors(&tag);
    h.finish(1);
}
