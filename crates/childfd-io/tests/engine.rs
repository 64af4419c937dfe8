//! The capture state machine, driven from outside the crate through
//! `childfd_io::engine` as another event loop would (childfd-tokio does):
//! the engine decides and signals, the caller sleeps and reaps.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use childfd::{Command, EndedBy, Signal};
use childfd_io::Outcome;
use childfd_io::engine::{Lifecycle, Limits, Step};
use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};

/// Generous: only a hang exceeds it.
const SLACK: Duration = Duration::from_secs(10);

/// Runs the engine like a poll loop would, sleeping on the pidfd until
/// the instant `step` asks for.
fn drive(child: &childfd::Child, life: &mut Lifecycle) -> (Outcome, Instant) {
    let end = Instant::now() + SLACK;
    loop {
        life.poll_exit(child).unwrap();
        match life.step(child, Instant::now(), false, &Vec::new).unwrap() {
            Step::Done(outcome, _) => return (outcome, Instant::now()),
            Step::Wait(wake) => {
                assert!(Instant::now() < end, "the engine never finished");
                let until = wake.unwrap_or(end).min(end);
                let _ = child.wait_deadline(until);
            }
        }
    }
}

#[test]
fn a_deadline_driven_from_outside_the_crate_terminates_the_tree() {
    let h = Hygiene::start();
    let tag = new_tag("engine");
    let child = Command::new("sh")
        .args(["-c", "sleep 1000 & sleep 1000"])
        .env("CHILDFD_TEST_TAG", &tag)
        .spawn()
        .unwrap();
    assert_eq!(child.as_raw_fd(), child.as_fd().as_raw_fd());
    let start = Instant::now();
    let limits = Limits {
        deadline: Some(Duration::from_millis(100)),
        grace: Duration::from_secs(5),
        ..Limits::default()
    };
    limits.validate().unwrap();
    let mut life = Lifecycle::new(start, &limits);
    let (outcome, at) = drive(&child, &mut life);
    assert_eq!(outcome, Outcome::TimedOut);
    assert_eq!(life.ended_by(), Some(EndedBy::Term));
    assert!(at >= start + Duration::from_millis(100));
    assert_eq!(life.status.unwrap().signal(), Some(Signal::TERM));
    drop(child);
    assert_no_survivors(&tag);
    h.finish(1);
}

#[test]
fn contradictory_limits_are_rejected_before_anything_starts() {
    let limits = Limits {
        deadline: Some(Duration::ZERO),
        grace: Duration::ZERO,
        ..Limits::default()
    };
    assert!(limits.validate().is_err());
}
