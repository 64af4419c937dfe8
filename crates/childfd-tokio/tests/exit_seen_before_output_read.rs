//! An exit the capture sees before it has read what the child wrote: the
//! output is read before the state machine judges the wait-delay or the
//! deadline, as childfd-io does (it reads in the turn that sees the exit).

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use childfd::{Command, Stdio};
use childfd_tokio::{Options, Outcome, output, spawn};
use common::{SLACK, on_both};

/// Blocks the calling thread (a runtime worker) until the pidfd says the
/// child exited, without reaping it.
fn block_until_exited(pidfd: &OwnedFd) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let limit = Timespec {
        tv_sec: SLACK.as_secs() as i64,
        tv_nsec: 0,
    };
    let n = poll(&mut fds, Some(&limit)).expect("poll");
    assert_eq!(n, 1, "the child should exit within {SLACK:?}");
}

#[test]
fn a_child_that_exited_before_its_deadline_is_not_timed_out_when_the_runtime_runs_late() {
    on_both(|_| async {
        let mut child = spawn(
            Command::new("sh")
                .args(["-c", "echo done"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let pidfd = child.as_fd().try_clone_to_owned().unwrap();
        let deadline = Duration::from_millis(100);
        let capture = output(&mut child, Options::new().deadline(deadline));
        // Another task of this thread hogs it: the child exits, and the
        // deadline passes, before the capture runs again.
        let hog = async move {
            tokio::task::yield_now().await;
            block_until_exited(&pidfd);
            std::thread::sleep(deadline * 2);
        };
        let (out, ()) = tokio::join!(capture, hog);
        let out = out.unwrap();
        assert_eq!(out.outcome, Outcome::Exited, "{out:?}");
        assert_eq!(out.ended_by, None, "{out:?}");
        assert_eq!(out.stdout.text(), "done\n");
        assert!(out.status.unwrap().success());
    });
}

#[test]
fn a_zero_wait_delay_reads_what_an_exited_child_left_in_its_pipes() {
    on_both(|_| async {
        // The child waits for a gate, so that its pidfd is on the reactor
        // (a wait was started) before it exits.
        let tag = childfd_testbin::new_tag("zero-delay");
        let gate = common::Gate::new(&tag);
        let mut child = spawn(
            common::sh(&gate.then("echo out; echo err >&2"), &tag)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let running = tokio::time::timeout(Duration::from_millis(10), child.wait()).await;
        assert!(running.is_err(), "sh waits for its gate");
        gate.open();
        let st = tokio::time::timeout(SLACK, child.wait()).await.unwrap();
        assert!(st.unwrap().success());

        let out = output(&mut child, Options::new().wait_delay(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            out.outcome,
            Outcome::Exited,
            "nobody holds the pipes: {out:?}"
        );
        assert!(out.holders.is_empty());
        assert_eq!(out.stdout.text(), "out\n");
        assert_eq!(out.stderr.text(), "err\n");

        // childfd-io says the same.
        let mut child = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(child.wait_timeout(SLACK).unwrap().unwrap().success());
        let io = childfd_io::Options::new().wait_delay(Duration::ZERO);
        let out = childfd_io::output(&mut child, io).unwrap();
        assert_eq!(out.outcome, Outcome::Exited, "{out:?}");
        assert_eq!(
            (out.stdout.text(), out.stderr.text()),
            ("out\n".into(), "err\n".into())
        );
    });
}

#[test]
fn input_left_for_a_child_that_exited_before_the_capture_is_reported_closed_early() {
    childfd_testbin::default_sigpipe();
    on_both(|_| async {
        let mut child = spawn(
            Command::new("true")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        // Exited, not reaped, its stdin still open here (a wait would
        // close it).
        block_until_exited(&child.as_fd().try_clone_to_owned().unwrap());
        let input = vec![b'x'; 8 << 20];
        let out = output(&mut child, Options::new().stdin_bytes(input.clone()))
            .await
            .unwrap();
        assert_eq!(out.outcome, Outcome::Exited, "{out:?}");
        assert!(out.stdin_closed_early, "{out:?}");
        assert!(out.stdin_written < input.len() as u64);
    });
}
