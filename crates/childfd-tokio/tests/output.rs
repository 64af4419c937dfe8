//! `output` on tokio: the same outcomes as childfd-io's, on both runtimes.

mod common;

use std::time::{Duration, Instant};

use childfd::{Command, EndedBy, Signal, Stdio};
use childfd_testbin::{assert_no_survivors, new_tag, wait_tagged};
use childfd_tokio::{CommandExt, Options, Outcome, OutputError, Stream, output, spawn};
use common::{SLACK, on_both, sh};

#[test]
fn a_grandchild_holding_stdout_cannot_hang_output() {
    on_both(|_| async {
        for kill in [false, true] {
            let tag = new_tag("held");
            let wait_delay = Duration::from_millis(300);
            let out = sh("echo started; sleep 1000 &", &tag)
                .output_async(
                    Options::new()
                        .wait_delay(wait_delay)
                        .kill_tree_on_held_pipes(kill),
                )
                .await
                .unwrap();
            let exited = out.exited_after.expect("sh exited");
            assert!(out.elapsed >= exited + wait_delay, "{out:?}");
            assert!(out.elapsed < exited + wait_delay + SLACK, "{out:?}");
            assert_eq!(out.stdout.text(), "started\n");
            assert_eq!(out.outcome, Outcome::PipesHeldOpen);
            assert!(out.status.unwrap().success());
            assert!(
                out.holders.iter().any(|h| h.name == "sleep"),
                "the sleep should be named: {:?}",
                out.holders
            );
            if !kill {
                // Not killed: still there, holding the pipe.
                assert_eq!(wait_tagged(&tag, 1).len(), 1);
                childfd_testbin::kill_tagged(&tag);
            }
            assert_no_survivors(&tag);
        }
    });
}

#[test]
fn a_deadline_terminates_the_whole_tree() {
    on_both(|_| async {
        let tag = new_tag("deadline");
        let deadline = Duration::from_millis(200);
        let start = Instant::now();
        let out = sh("echo before; sleep 1000 & sleep 1000", &tag)
            .output_async(
                Options::new()
                    .deadline(deadline)
                    .grace(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(out.outcome, Outcome::TimedOut);
        assert_eq!(out.ended_by, Some(EndedBy::Term));
        assert_eq!(out.status.unwrap().signal(), Some(Signal::TERM));
        assert_eq!(out.stdout.text(), "before\n");
        assert!(start.elapsed() >= deadline);
        assert!(start.elapsed() < deadline + SLACK);
        assert_no_survivors(&tag);

        // TERM ignored: KILL after the grace.
        let tag = new_tag("deadline-kill");
        let grace = Duration::from_millis(200);
        let out = sh("trap '' TERM; sleep 1000 & sleep 1000", &tag)
            .output_async(Options::new().deadline(deadline).grace(grace))
            .await
            .unwrap();
        assert_eq!(
            (out.outcome, out.ended_by),
            (Outcome::TimedOut, Some(EndedBy::Kill))
        );
        assert!(out.elapsed >= deadline + grace);
        assert_no_survivors(&tag);
    });
}

#[test]
fn caps_keep_head_and_tail_and_count_the_rest() {
    on_both(|_| async {
        // 200,000 bytes "0123456789..." on stdout: more than a pipe holds.
        let out = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do printf 0123456789; i=$((i+1)); done; printf end >&2"])
            .output_async(Options::new().max_bytes(4).keep_tail(6))
            .await
            .unwrap();
        assert_eq!(out.outcome, Outcome::Exited);
        assert_eq!(out.stdout.head, b"0123");
        assert_eq!(out.stdout.tail, b"456789");
        assert_eq!(out.stdout.total, 200_000);
        assert_eq!(out.stdout.dropped, 200_000 - 10);
        assert_eq!(out.stderr.text(), "end");
        assert!(out.status.unwrap().success());
    });
}

#[test]
fn lines_arrive_as_a_stream_in_order() {
    on_both(|_| async {
        let (opts, mut lines) = Options::new().max_bytes(0).lines();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done; printf tail >&2",
        ]);
        let capture = cmd.output_async(opts);
        let collect = async {
            let mut got = Vec::new();
            while let Some(l) = lines.next().await {
                got.push(l);
            }
            got
        };
        let (out, got) = tokio::join!(capture, collect);
        let out = out.unwrap();
        assert_eq!(
            out.stdout.total,
            (0..3000).map(|i| format!("line{i}\n").len() as u64).sum()
        );
        assert!(out.stdout.head.is_empty(), "max_bytes(0) keeps nothing");
        let stdout: Vec<String> = got
            .iter()
            .filter(|l| l.stream == Stream::Stdout)
            .map(|l| String::from_utf8(l.line.clone()).unwrap())
            .collect();
        assert_eq!(
            stdout.len(),
            3000,
            "more lines than the stream's soft bound"
        );
        for (i, l) in stdout.iter().enumerate() {
            assert_eq!(l, &format!("line{i}"));
        }
        let stderr: Vec<&[u8]> = got
            .iter()
            .filter(|l| l.stream == Stream::Stderr)
            .map(|l| l.line.as_slice())
            .collect();
        assert_eq!(stderr, vec![&b"tail"[..]], "a partial last line at EOF");
    });
}

#[test]
fn stdin_is_fed_while_reading_and_an_early_exit_raises_no_sigpipe() {
    // A SIGPIPE would now kill the test process.
    childfd_testbin::default_sigpipe();
    on_both(|_| async {
        let input = vec![b'a'; 1 << 20];
        let out = Command::new("cat")
            .output_async(Options::new().stdin_bytes(input))
            .await
            .unwrap();
        assert_eq!(out.stdout.total, 1 << 20);
        assert_eq!(out.stdin_written, 1 << 20);
        assert!(!out.stdin_closed_early);

        // The child exits without reading: the rest is dropped, no SIGPIPE.
        let out = Command::new("sh")
            .args(["-c", "exec 0<&-; echo gone"])
            .output_async(Options::new().stdin_bytes(vec![b'b'; 1 << 20]))
            .await
            .unwrap();
        assert_eq!(out.stdout.text(), "gone\n");
        assert!(out.stdin_closed_early);
        assert!(out.stdin_written < 1 << 20);
    });
}

#[test]
fn output_on_a_spawned_child_takes_its_pipes() {
    on_both(|_| async {
        let mut child = spawn(
            Command::new("sh")
                .args(["-c", "echo out; echo err >&2; exit 3"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let out = output(&mut child, Options::new()).await.unwrap();
        assert_eq!(
            (out.stdout.text().as_str(), out.stderr.text().as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(out.status.unwrap().code(), Some(3));
        assert!(child.take_stdout().is_none());
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
    });
}

#[test]
fn invalid_options_start_nothing() {
    on_both(|_| async {
        let r = Command::new("true")
            .output_async(Options::new().keep_tail(10))
            .await;
        assert!(
            matches!(r, Err(OutputError::InvalidOptions { .. })),
            "{r:?}"
        );
    });
}

#[test]
fn a_job_cancelled_by_dropping_its_future_leaves_nothing_behind() {
    on_both(|_| async {
        // Dropped mid-capture (by a timeout around it).
        let tag = new_tag("dropped");
        let mut cmd = sh("sleep 1000 & sleep 1000 & echo up; wait", &tag);
        let fut = cmd.output_async(Options::new());
        let r = tokio::time::timeout(Duration::from_millis(300), fut).await;
        assert!(r.is_err(), "should have been cancelled");
        assert_no_survivors(&tag);

        // Dropped before its first poll.
        let tag = new_tag("unpolled");
        let mut cmd = sh("sleep 1000 & sleep 1000", &tag);
        let fut = cmd.output_async(Options::new());
        drop(fut);
        assert_no_survivors(&tag);

        // A borrowed child: the capture is dropped, the tree killed, the
        // child still ours to wait for.
        let tag = new_tag("borrowed");
        let mut child = spawn(
            Command::new("sh")
                .args(["-c", "sleep 1000 & sleep 1000"])
                .env("CHILDFD_TEST_TAG", &tag)
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(100),
            output(&mut child, Options::new()),
        )
        .await;
        assert!(r.is_err());
        let st = tokio::time::timeout(SLACK, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.signal(), Some(Signal::KILL));
        assert_no_survivors(&tag);
    });
}
