//! After a deadline, a `setsid` escapee (outside the process group) that
//! holds the output pipe: SIGTERM ended the whole group at once, so
//! `output()` must neither wait out the grace nor send SIGKILL, must stop
//! reading shortly after the tree was gone, name the holder and say that
//! SIGTERM sufficed.

use std::time::{Duration, Instant};

use childfd::{Command, Containment, EndedBy, Stdio};
use childfd_io::{Options, Outcome, output};
use childfd_testbin::{kill_tagged, new_tag, tagged};

#[test]
fn an_escapee_holding_the_pipe_after_the_deadline_costs_no_grace_and_term_is_reported() {
    let tag = new_tag("io-escapee");
    let mut child = Command::new("sh")
        .args(["-c", "setsid sleep 300 & echo started; sleep 300"])
        .env("CHILDFD_TEST_TAG", &tag)
        .containment(Containment::ProcessGroup)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let out = output(
        &mut child,
        Options::new()
            .deadline(Duration::from_millis(500))
            .grace(Duration::from_secs(30)),
    )
    .unwrap();
    let took = start.elapsed();
    let left = tagged(&tag);
    kill_tagged(&tag); // the escapee: a process group cannot reach it
    assert_eq!(out.outcome, Outcome::TimedOut);
    assert_eq!(out.stdout.text(), "started\n");
    assert_eq!(out.ended_by, Some(EndedBy::Term), "{out:?}");
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(childfd::Signal::TERM)
    );
    assert!(out.holders.iter().any(|h| h.name == "sleep"), "{out:?}");
    // Far below the 30 s grace (the old behaviour waited it, then 1 s more).
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        left.len(),
        1,
        "only the escapee outlives the group: {left:?}"
    );
}
