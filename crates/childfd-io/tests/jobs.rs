//! What a Supervisor job carries in and out: the caller's tag in every
//! event, stdin (bytes or a reader, fed under the same bounds as
//! `output`), the processes a job left behind, and one report shape for
//! every ending.

use std::time::Duration;

use childfd::Command;
use childfd_io::{Event, JobOptions, Outcome, Supervisor};
use childfd_testbin::{Hygiene, Trickle, assert_no_survivors, new_tag};

fn sh(script: &str, tag: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]).env("CHILDFD_TEST_TAG", tag);
    cmd
}

/// The end of a test: the supervisor dropped, nothing tagged `tag` left,
/// and `h`'s checks (allowing one extra thread, as every test here).
#[track_caller]
fn assert_clean(sup: Supervisor, tag: &str, h: Hygiene) {
    drop(sup);
    assert_no_survivors(tag);
    h.finish(1);
}

#[test]
fn a_tag_is_carried_into_every_event_of_its_job() {
    let h = Hygiene::start();
    let tag = new_tag("jobtag");
    let mut sup = Supervisor::new(4).unwrap();
    for name in ["alpha", "beta"] {
        sup.push(
            sh(&format!("echo {name}"), &tag),
            JobOptions::new().lines(true).tag(name),
        );
    }
    sup.push(
        Command::new("/no/such/program"),
        JobOptions::new().tag("missing"),
    );
    let mut ended = Vec::new();
    for ev in sup.by_ref() {
        let t = ev.tag().expect("every event has its job's tag").to_string();
        match ev {
            Event::Started { .. } => assert_ne!(t, "missing"),
            Event::Line { line, .. } => assert_eq!(line, t.as_bytes()),
            Event::Exited(r) => {
                assert_eq!(r.stdout.text(), format!("{t}\n"));
                ended.push(t);
            }
            Event::SpawnFailed(r) => {
                assert!(r.error.is_some() && r.pid.is_none(), "{r:?}");
                ended.push(t);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    ended.sort();
    assert_eq!(ended, ["alpha", "beta", "missing"]);
    assert_clean(sup, &tag, h);
}

/// nextest's LEAK: the child exits cleanly but two background sleeps
/// (their output closed) live on. With `kill_tree_on_exit` they are killed
/// and the job is reported as a leak of two processes, not a clean exit.
#[test]
fn processes_left_behind_by_an_exited_job_are_reported_as_a_leak() {
    let h = Hygiene::start();
    let tag = new_tag("jobleak");
    let mut sup = Supervisor::new(4).unwrap();
    let leaky = sup.push(
        sh(
            "sleep 30 >/dev/null 2>&1 & sleep 30 >/dev/null 2>&1 & echo done",
            &tag,
        ),
        JobOptions::new().kill_tree_on_exit(true),
    );
    let clean = sup.push(
        sh("echo done", &tag),
        JobOptions::new().kill_tree_on_exit(true),
    );
    let mut seen = 0;
    for ev in sup.by_ref() {
        match ev {
            Event::Started { .. } => {}
            Event::Leaked(r) => {
                assert_eq!(r.id, leaky, "{r:?}");
                assert_eq!(r.outcome, Outcome::Leaked);
                assert_eq!(r.left_behind, 2, "{r:?}");
                assert!(r.status.unwrap().success());
                seen += 1;
            }
            Event::Exited(r) => {
                assert_eq!(r.id, clean, "{r:?}");
                assert_eq!(r.left_behind, 0);
                seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, 2);
    assert_eq!(sup.summary().leaked, 1);
    assert_clean(sup, &tag, h);
}

#[test]
fn job_stdin_bytes_reach_the_child_and_one_that_stops_reading_is_reported() {
    let h = Hygiene::start();
    let tag = new_tag("jobstdin");
    let input: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut sup = Supervisor::new(4).unwrap();
    let all = sup.push(
        sh("cat", &tag),
        JobOptions::new().stdin_bytes(input.clone()),
    );
    let some = sup.push(
        sh("head -c 10", &tag),
        JobOptions::new().stdin_bytes(input.clone()),
    );
    let none = sup.push(sh("cat", &tag), JobOptions::new());
    for ev in sup.by_ref() {
        let Some(r) = ev.into_report() else { continue };
        assert_eq!(r.outcome, Outcome::Exited, "{r:?}");
        if r.id == all {
            assert_eq!(r.stdout.head, input);
            assert_eq!(r.stdin_written, input.len() as u64);
            assert!(!r.stdin_closed_early);
        } else if r.id == some {
            assert_eq!(r.stdout.head, input[..10]);
            assert!(r.stdin_closed_early, "{r:?}");
        } else {
            assert_eq!(r.id, none);
            assert_eq!(r.stdout.total, 0, "stdin is /dev/null without input");
        }
    }
    assert_clean(sup, &tag, h);
}

/// `output`'s Exit-hang case under the Supervisor: the job's child exits,
/// a grandchild drains its endless stdin, and a neighbour job must still
/// get its 100 ms deadline on time.
#[test]
fn a_job_stdin_reader_drained_by_a_grandchild_holds_neither_the_job_nor_its_neighbours() {
    let h = Hygiene::start();
    let tag = new_tag("jobtrickle");
    let wait_delay = Duration::from_millis(10);
    let mut sup = Supervisor::new(4).unwrap();
    let held = sup.push(
        sh(
            "exec 3<&0; (cat >/dev/null; sleep 30) <&3 & echo started",
            &tag,
        ),
        JobOptions::new()
            .stdin_reader(Trickle)
            .wait_delay(wait_delay)
            .kill_tree_on_held_pipes(true),
    );
    let neighbour = sup.push(
        sh("exec sleep 30", &tag),
        JobOptions::new().deadline(Duration::from_millis(100)),
    );
    for ev in sup.by_ref() {
        let Some(r) = ev.into_report() else { continue };
        if r.id == held {
            assert_eq!(r.outcome, Outcome::PipesHeldOpen, "{r:?}");
            // (On a loaded machine the child may exit before the first write.)
            assert!(r.stdin_closed_early, "{r:?}");
            assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
        } else {
            assert_eq!(r.id, neighbour);
            assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
            assert!(r.elapsed < Duration::from_secs(2), "{r:?}");
        }
    }
    assert_clean(sup, &tag, h);
}
