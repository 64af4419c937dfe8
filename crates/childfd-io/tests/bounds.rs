//! Every bound of `output` holds whatever the input source and whoever
//! holds the pipes: stdin fed from an endless reader to a descendant that
//! drains it for ever cannot keep `output` past its wait-delay or its
//! deadline (ports of Go's `WaitDelay` tests `Exit-hang` and
//! `SIGKILL-hang`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use childfd::{Child, Command, EndedBy, Stdio};
use childfd_io::{Options, Outcome, Output, output};
use childfd_testbin::{Hygiene, Trickle, assert_no_survivors, kill_tagged, new_tag};

/// What the machine's load may add to a bound; the failures these tests
/// pin down overshot by seconds (or for ever).
const SLACK: Duration = Duration::from_secs(1);

/// Runs `output` on `child` (tagged `tag`) with the options `opts` builds,
/// on a thread, giving up (and failing) after 20 s so that a regression
/// fails instead of hanging.
#[track_caller]
fn output_within_20s(
    tag: &str,
    mut child: Child,
    opts: impl FnOnce() -> Options<'static> + Send + 'static,
) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = output(&mut child, opts());
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            kill_tagged(tag);
            panic!("output() had not returned after 20 s");
        }
    }
}

/// Spawns `sh -c script` with piped stdio and runs `output` with `opts`
/// on it, feeding it an endless stdin ([`Trickle`]), bounded as
/// [`output_within_20s`].
#[track_caller]
fn run_with_endless_stdin(
    tag: &str,
    script: &str,
    opts: impl FnOnce() -> Options<'static> + Send + 'static,
) -> Output {
    let child = Command::new("sh")
        .args(["-c", script])
        .env("CHILDFD_TEST_TAG", tag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    output_within_20s(tag, child, || opts().stdin_reader(Trickle))
}

#[test]
fn exit_hang_a_grandchild_draining_stdin_cannot_hold_output_past_the_wait_delay() {
    let h = Hygiene::start();
    let tag = new_tag("exithang");
    let wait_delay = Duration::from_millis(10);
    // sh exits at once; its background cat keeps reading our stdin for
    // ever, and its subshell (then a sleep) holds stderr.
    let out = run_with_endless_stdin(
        &tag,
        "exec 3<&0; (cat >/dev/null; sleep 30) <&3 & echo started",
        move || {
            Options::new()
                .wait_delay(wait_delay)
                .kill_tree_on_held_pipes(true)
        },
    );
    let exited = out.exited_after.expect("sh exited");
    assert!(
        out.elapsed < exited + wait_delay + SLACK,
        "returned {:?} after the exit, wait-delay {wait_delay:?}: {out:?}",
        out.elapsed - exited
    );
    assert_eq!(out.outcome, Outcome::PipesHeldOpen, "{out:?}");
    assert!(!out.holders.is_empty(), "{out:?}");
    assert!(out.stdin_closed_early, "the input is endless: {out:?}");
    assert_eq!(out.stdout.text(), "started\n");
    assert_no_survivors(&tag);
    h.finish(0);
}

#[test]
fn sigkill_hang_an_escaped_grandchild_draining_stdin_cannot_hold_output_past_kill_and_wait_delay() {
    let h = Hygiene::start();
    let tag = new_tag("killhang");
    let (deadline, grace, wait_delay) = (
        Duration::from_millis(200),
        Duration::from_millis(100),
        Duration::from_millis(10),
    );
    // sh and its sleep ignore SIGTERM (SIGKILL after the grace ends them);
    // the setsid'd sh left the process group, survives the kill, drains
    // stdin, then holds stderr.
    let out = run_with_endless_stdin(
        &tag,
        "trap '' TERM; exec 3<&0; setsid sh -c 'cat >/dev/null; sleep 30' <&3 & \
         echo started; sleep 30",
        move || {
            Options::new()
                .deadline(deadline)
                .grace(grace)
                .wait_delay(wait_delay)
        },
    );
    kill_tagged(&tag);
    assert!(
        out.elapsed < deadline + grace + wait_delay + SLACK,
        "returned after {:?}: {out:?}",
        out.elapsed
    );
    assert_eq!(out.outcome, Outcome::TimedOut, "{out:?}");
    assert_eq!(out.ended_by, Some(EndedBy::Kill), "{out:?}");
    assert!(!out.holders.is_empty(), "{out:?}");
    assert_eq!(out.stdout.text(), "started\n");
    assert_no_survivors(&tag);
    h.finish(0);
}

#[test]
fn a_grandchild_draining_stdin_cannot_hold_output_past_a_short_wait_delay_under_a_long_deadline() {
    let h = Hygiene::start();
    let tag = new_tag("drain3s");
    let (deadline, wait_delay) = (Duration::from_secs(3), Duration::from_millis(10));
    let out = run_with_endless_stdin(
        &tag,
        "exec 3<&0; (cat >/dev/null; sleep 30) <&3 &",
        move || {
            Options::new()
                .deadline(deadline)
                .wait_delay(wait_delay)
                .kill_tree_on_held_pipes(true)
        },
    );
    let exited = out.exited_after.expect("sh exited");
    assert!(
        out.elapsed < exited + wait_delay + SLACK && out.elapsed < deadline,
        "returned after {:?}, the child exited after {exited:?}: {out:?}",
        out.elapsed
    );
    assert_eq!(out.outcome, Outcome::PipesHeldOpen, "{out:?}");
    assert_no_survivors(&tag);
    h.finish(0);
}

#[test]
fn a_child_reading_stdin_for_ever_cannot_hold_output_past_its_deadline() {
    let h = Hygiene::start();
    let tag = new_tag("drainself");
    let (deadline, grace) = (Duration::from_millis(300), Duration::from_millis(100));
    let out = run_with_endless_stdin(&tag, "exec cat >/dev/null", move || {
        Options::new().deadline(deadline).grace(grace)
    });
    assert!(
        out.elapsed < deadline + grace + SLACK,
        "returned after {:?}: {out:?}",
        out.elapsed
    );
    assert_eq!(out.outcome, Outcome::TimedOut, "{out:?}");
    assert!(out.stdin_written > 0, "{out:?}");
    assert_no_survivors(&tag);
    h.finish(0);
}

/// Four descendants writing to stdout as fast as they can, read by a
/// caller whose pass-through sink takes a millisecond per chunk (a slow
/// terminal): the pipe never runs dry, so a reader that loops until
/// `EAGAIN` never leaves the read and the deadline never fires.
#[test]
fn a_crowd_writing_as_fast_as_we_read_cannot_hold_output_past_its_deadline() {
    let h = Hygiene::start();
    let tag = new_tag("crowd");
    let (deadline, grace) = (Duration::from_millis(300), Duration::from_millis(100));
    let child = Command::new("sh")
        .args(["-c", "yes & yes & yes & yes & wait"])
        .env("CHILDFD_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let passed = Arc::new(AtomicU64::new(0));
    let sink_count = passed.clone();
    let out = output_within_20s(&tag, child, move || {
        Options::new()
            .deadline(deadline)
            .grace(grace)
            .max_bytes(1024)
            .on_output(move |_, chunk| {
                // The slow terminal: every chunk passes through it, at a
                // millisecond each.
                std::io::sink().write_all(chunk).unwrap();
                sink_count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            })
    });
    assert!(
        out.elapsed < deadline + grace + SLACK,
        "returned after {:?}: {out:?}",
        out.elapsed
    );
    assert_eq!(out.outcome, Outcome::TimedOut, "{out:?}");
    assert!(out.stdout.total > 1024, "{out:?}");
    // Every byte read went through the sink, not only the kept 1,024.
    assert_eq!(
        passed.load(Ordering::Relaxed),
        out.stdout.total + out.stderr.total,
        "{out:?}"
    );
    assert_no_survivors(&tag);
    h.finish(0);
}
