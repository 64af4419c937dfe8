//! `output` never hangs and says why it returned: inherited pipes, full
//! pipes, endless output, deadlines, lines.

use std::time::Duration;

use childfd::{Command, EndedBy, Stdio};
use childfd_io::{CommandExt, Options, Outcome, OutputError, Stream};
use childfd_testbin::{Hygiene, assert_no_survivors, new_tag, tagged};

/// Generous: only a hang exceeds it.
const SLACK: Duration = Duration::from_secs(5);

fn scripts(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("childfd-io-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("sleep.sh"),
        "echo started\nsh \"$(dirname \"$0\")/sleep1.sh\" &\n",
    )
    .unwrap();
    std::fs::write(d.join("sleep1.sh"), "sleep 1000\n").unwrap();
    d
}

#[test]
fn a_grandchild_holding_stdout_cannot_hang_output() {
    let h = Hygiene::start();
    for kill in [false, true] {
        let tag = new_tag("held");
        let dir = scripts(&tag);
        let wait_delay = Duration::from_millis(500);
        let out = Command::new("sh")
            .arg(dir.join("sleep.sh"))
            .env("CHILDFD_TEST_TAG", &tag)
            .output_with(
                Options::new()
                    .wait_delay(wait_delay)
                    .kill_tree_on_held_pipes(kill),
            )
            .unwrap();
        let exited = out.exited_after.expect("sleep.sh exited");
        assert!(out.elapsed >= exited + wait_delay, "{out:?}");
        assert!(
            out.elapsed < exited + wait_delay + SLACK,
            "returned too late: {out:?}"
        );
        assert_eq!(out.stdout.text(), "started\n");
        assert_eq!(out.outcome, Outcome::PipesHeldOpen);
        assert!(out.status.unwrap().success());
        let sleeps: Vec<u32> = out
            .holders
            .iter()
            .filter(|h| h.name == "sleep")
            .map(|h| h.pid)
            .collect();
        assert_eq!(
            sleeps.len(),
            1,
            "the sleep should be named as a holder: {:?}",
            out.holders
        );
        if kill {
            // The tree (sleep1.sh and its sleep) was killed.
            assert_no_survivors(&tag);
        } else {
            let alive: Vec<u32> = tagged(&tag).iter().map(|p| p.pid as u32).collect();
            assert!(
                alive.contains(&sleeps[0]),
                "without kill the sleep still runs"
            );
            childfd_testbin::kill_tagged(&tag);
            assert_no_survivors(&tag);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
    h.finish(1);
}

#[test]
fn a_mebibyte_on_stderr_before_any_stdout_does_not_deadlock() {
    let h = Hygiene::start();
    let script =
        "head -c 1048576 /dev/zero | tr '\\0' e >&2; head -c 1048576 /dev/zero | tr '\\0' o";
    let out = Command::new("sh")
        .args(["-c", script])
        .output_with(Options::new().deadline(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(out.outcome, Outcome::Exited);
    assert!(out.status.unwrap().success());
    assert_eq!(out.stderr.head.len(), 1 << 20);
    assert_eq!(out.stdout.head.len(), 1 << 20);
    assert!(
        out.stderr.head.iter().all(|&b| b == b'e') && out.stdout.head.iter().all(|&b| b == b'o')
    );
    assert_eq!((out.stdout.dropped, out.stderr.dropped), (0, 0));
    h.finish(1);
}

#[test]
fn stdin_and_stdout_both_full_at_once_do_not_deadlock() {
    let h = Hygiene::start();
    let input: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let out = Command::new("cat")
        .output_with(
            Options::new()
                .stdin_bytes(&input[..])
                .deadline(Duration::from_secs(60)),
        )
        .unwrap();
    assert_eq!(out.outcome, Outcome::Exited);
    assert_eq!(out.stdin_written, input.len() as u64);
    assert!(!out.stdin_closed_early);
    assert!(out.stdout.head == input, "cat echoed something else");
    h.finish(1);
}

/// Peak resident memory of this process since the last reset, in KiB.
fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn yes_for_two_seconds_under_a_64k_cap_keeps_memory_bounded_and_counts_drops() {
    let h = Hygiene::start();
    // Reset the peak to the current resident size (Linux 4.0+).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = peak_rss_kib();
    let cap = 64 << 10;
    let out = Command::new("yes")
        .output_with(
            Options::new()
                .deadline(Duration::from_secs(2))
                .grace(Duration::from_millis(500))
                .max_bytes(cap)
                .keep_tail(100),
        )
        .unwrap();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert_eq!(out.outcome, Outcome::TimedOut);
    assert_eq!(out.ended_by, Some(EndedBy::Term));
    assert_eq!(out.stdout.head.len(), cap);
    assert_eq!(out.stdout.tail.len(), 100);
    assert!(
        out.stdout.total > 100 * cap as u64,
        "yes wrote only {} bytes in 2 s",
        out.stdout.total
    );
    assert_eq!(out.stdout.dropped, out.stdout.total - cap as u64 - 100);
    assert!(out.stdout.head.chunks(2).all(|c| c == b"y\n"));
    eprintln!(
        "yes wrote {} MiB; peak RSS grew {grown_mib} MiB",
        out.stdout.total >> 20
    );
    if reset {
        assert!(
            grown_mib < 32,
            "memory grew by {grown_mib} MiB while capturing under a 64 KiB cap"
        );
    } else {
        eprintln!("WARNING: cannot reset the peak RSS here; memory bound not checked");
    }
    h.finish(1);
}

#[test]
fn lines_split_across_reads_arrive_in_order_with_the_partial_last_line() {
    let h = Hygiene::start();
    let script = "printf a; sleep 0.05; printf 'b\\nc'; sleep 0.05; printf 'x\\n' >&2; sleep 0.05; printf 'd\\ne'";
    let mut lines = Vec::new();
    let out = Command::new("sh")
        .args(["-c", script])
        .output_with(
            Options::new()
                .deadline(Duration::from_secs(30))
                .on_line(|s, l| lines.push((s, String::from_utf8_lossy(l).into_owned()))),
        )
        .unwrap();
    assert_eq!(out.outcome, Outcome::Exited);
    let expected = [
        (Stream::Stdout, "ab"),
        (Stream::Stderr, "x"),
        (Stream::Stdout, "cd"),
        (Stream::Stdout, "e"),
    ];
    let got: Vec<(Stream, &str)> = lines.iter().map(|(s, l)| (*s, l.as_str())).collect();
    assert_eq!(got, expected);
    assert_eq!(out.stdout.text(), "ab\ncd\ne");
    h.finish(1);
}

#[test]
fn a_deadline_terminates_the_whole_tree_and_returns_what_was_read() {
    let h = Hygiene::start();
    let tag = new_tag("deadline");
    let deadline = Duration::from_millis(300);
    let out = Command::new("sh")
        .args(["-c", "echo before; sleep 300; true"])
        .env("CHILDFD_TEST_TAG", &tag)
        .output_with(
            Options::new()
                .deadline(deadline)
                .grace(Duration::from_secs(2)),
        )
        .unwrap();
    assert_eq!(out.outcome, Outcome::TimedOut);
    assert_eq!(out.ended_by, Some(EndedBy::Term));
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(childfd::Signal::TERM)
    );
    assert_eq!(out.stdout.text(), "before\n");
    assert!(
        out.elapsed >= deadline && out.elapsed < deadline + SLACK,
        "{out:?}"
    );
    assert_no_survivors(&tag);
    // A tree that ignores TERM is killed after the grace.
    let tag = new_tag("deadline-kill");
    let out = Command::new("sh")
        .args(["-c", "trap '' TERM; sleep 300 & wait"])
        .env("CHILDFD_TEST_TAG", &tag)
        .output_with(
            Options::new()
                .deadline(deadline)
                .grace(Duration::from_millis(200)),
        )
        .unwrap();
    assert_eq!(
        (out.outcome, out.ended_by),
        (Outcome::TimedOut, Some(EndedBy::Kill))
    );
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(childfd::Signal::KILL)
    );
    assert_no_survivors(&tag);
    h.finish(1);
}

#[test]
fn contradictory_options_are_rejected_before_anything_runs() {
    let h = Hygiene::start();
    let zero = Options::new()
        .deadline(Duration::ZERO)
        .grace(Duration::ZERO);
    let e = Command::new("true").output_with(zero).unwrap_err();
    assert!(matches!(e, OutputError::InvalidOptions { .. }), "{e}");
    assert!(e.to_string().contains("zero deadline"), "{e}");
    let e = Command::new("true")
        .output_with(Options::new().keep_tail(10))
        .unwrap_err();
    assert!(matches!(e, OutputError::InvalidOptions { .. }), "{e}");
    assert!(childfd_testbin::children().is_empty());
    h.finish(1);
}

#[test]
fn output_on_a_child_without_pipes_just_waits_for_it() {
    let h = Hygiene::start();
    let mut c = Command::new("sh")
        .args(["-c", "exit 4"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let out = childfd_io::output(&mut c, Options::new().deadline(Duration::from_secs(30))).unwrap();
    assert_eq!(
        (out.outcome, out.status.and_then(|s| s.code())),
        (Outcome::Exited, Some(4))
    );
    assert_eq!(out.stdout.total, 0);
    drop(c);
    h.finish(1);
}

#[test]
fn a_zero_wait_delay_reads_what_an_exited_child_left_in_its_pipes() {
    let h = Hygiene::start();
    let mut child = Command::new("sh")
        .args(["-c", "echo out; echo err >&2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Exited (and reaped) before the capture looks.
    assert!(child.wait_timeout(SLACK).unwrap().unwrap().success());
    let out = childfd_io::output(&mut child, Options::new().wait_delay(Duration::ZERO)).unwrap();
    assert_eq!(
        out.outcome,
        Outcome::Exited,
        "nobody holds the pipes: {out:?}"
    );
    assert!(out.holders.is_empty());
    assert_eq!(
        (out.stdout.text(), out.stderr.text()),
        ("out\n".into(), "err\n".into())
    );
    drop(child);
    h.finish(0);
}

#[test]
fn a_wait_delay_or_grace_of_duration_max_never_fires_and_never_panics() {
    let h = Hygiene::start();
    let tag = new_tag("max-delay");
    let out = Command::new("sh")
        .args(["-c", "echo hi; sleep 0.3 & exit 0"])
        .env("CHILDFD_TEST_TAG", &tag)
        .output_with(Options::new().wait_delay(Duration::MAX))
        .unwrap();
    assert_eq!(
        (out.outcome, out.stdout.text()),
        (Outcome::Exited, "hi\n".into())
    );
    assert_no_survivors(&tag);
    let out = Command::new("sleep")
        .arg("1000")
        .output_with(
            Options::new()
                .deadline(Duration::from_millis(50))
                .grace(Duration::MAX),
        )
        .unwrap();
    assert_eq!(
        (out.outcome, out.ended_by),
        (Outcome::TimedOut, Some(EndedBy::Term))
    );
    h.finish(0);
}
