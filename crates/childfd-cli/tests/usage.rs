//! The command line as a `timeout(1)` user types it: bare seconds, `--`
//! optional, `-s`/`-k`, `--version`, and short messages for every error.

mod common;

use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag};
use common::*;

#[test]
fn every_usage_error_is_a_short_message_and_125() {
    let tag = new_tag("cli-usage");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--timeout", "soon", "true"], "--timeout"),
        (&["run", "--kill-after", "x", "true"], "--kill-after"),
        (&["run", "--wait-delay", "-1", "true"], "-1"),
        (&["run", "--wait-delay", "1y2", "true"], "--wait-delay"),
        (&["run", "--max-output", "lots", "true"], "--max-output"),
        (&["run", "--contain", "jail", "true"], "jail"),
        (&["run", "-s", "NOPE", "true"], "--signal"),
        (&["run", "--json-fd", "0", "true"], "--json-fd"),
        (&["run", "--json-fd", "987", "true"], "--json-fd 987"),
        (&["run", "--nope", "true"], "--nope"),
        (&["run", "--timeout"], "--timeout"),
        (&["run", "--"], "PROGRAM"),
        (&["run"], "PROGRAM"),
        (
            &["run", "--foreground", "--no-foreground", "true"],
            "cannot be used with",
        ),
        (&["walk"], "walk"),
        (&[], "Usage"),
    ];
    for (args, culprit) in cases {
        let r = childfd(&tag, args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(culprit), "{args:?}: {}", r.stderr);
        // Not the whole usage: what is wrong, the usage line, a pointer.
        assert!(
            r.stderr.lines().count() <= 8 && !r.stderr.contains("--keep-draining"),
            "{args:?}: too long:\n{}",
            r.stderr
        );
        assert_eq!(r.stdout, "", "{args:?}");
    }
}

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    let tag = new_tag("cli-help");
    let r = childfd(&tag, &["--version"]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, concat!("childfd ", env!("CARGO_PKG_VERSION")))
    );
    let r = childfd(&tag, &["run", "--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--timeout",
        "--signal",
        "--kill-after",
        "--wait-delay",
        "--contain",
        "--max-output",
        "--pipe",
        "--keep-draining",
        "--json-file",
        "--json-fd",
        "--no-foreground",
        "--preserve-status",
    ] {
        assert!(r.stdout.contains(flag), "{flag} missing from --help");
    }
    // Which flags need the pipe is said.
    assert!(r.stdout.contains("Needs the pipe"), "{}", r.stdout);
}

#[test]
fn bare_seconds_and_spans_are_durations_and_timeout_0_is_no_limit() {
    let tag = new_tag("cli-durations");
    for t in ["1", "0.5", "500ms", "1s", "0m1s"] {
        let r = childfd(&tag, &["run", "--timeout", t, "sleep", "300"]);
        assert_eq!(r.code, 124, "--timeout {t}: {}", r.stderr);
    }
    let r = childfd(
        &tag,
        &["run", "--timeout", "0", "sh", "-c", "sleep 0.3; exit 4"],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.elapsed >= Duration::from_millis(300));
    assert_no_survivors(&tag);
}

#[test]
fn the_separator_is_optional_and_signal_chooses_the_first_signal() {
    let tag = new_tag("cli-sep");
    let r = childfd(&tag, &["run", "sh", "-c", "echo $1", "-", "--timeout"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "--timeout\n"),
        "{}",
        r.stderr
    );
    let json = report_path("cli-sep");
    let r = childfd(
        &tag,
        &[
            "run",
            "-t",
            "300ms",
            "-s",
            "INT",
            "-k",
            "10",
            "--json-file",
            json.to_str().unwrap(),
            "sleep",
            "300",
        ],
    );
    assert_eq!(r.code, 124, "{}", r.stderr);
    let rep = take_report(&json);
    assert_eq!(rep["status"]["name"], "SIGINT", "{rep}");
    assert_eq!(rep["ended_by"], "term", "{rep}");
    assert_no_survivors(&tag);
}

#[test]
fn json_fd_gets_the_report_and_stderr_stays_for_people() {
    let tag = new_tag("cli-jsonfd");
    let r = childfd_in_sh(
        &tag,
        "CHILDFD run --json-fd 3 sh -c 'printf partial >&2' 3>&1",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "partial");
    let rep: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (rep["outcome"].as_str(), rep["stderr"]["bytes"].as_u64()),
        (Some("exited"), Some(7))
    );
    // On stderr, the report starts a line of its own.
    let r = childfd(&tag, &["run", "--json", "sh", "-c", "printf partial >&2"]);
    let last = r.stderr.lines().last().unwrap();
    assert!(r.stderr.starts_with("partial\n{"), "{}", r.stderr);
    assert!(serde_json::from_str::<serde_json::Value>(last).is_ok());
}

#[test]
fn preserve_status_exits_with_the_programs_status_on_timeout() {
    let tag = new_tag("cli-preserve");
    let r = childfd(
        &tag,
        &[
            "run",
            "--timeout",
            "300ms",
            "--preserve-status",
            "sleep",
            "300",
        ],
    );
    assert_eq!(r.code, 143, "{}", r.stderr);
    let r = childfd(
        &tag,
        &[
            "run",
            "-t",
            "300ms",
            "--preserve-status",
            "sh",
            "-c",
            "trap 'exit 9' TERM; sleep 300 & wait",
        ],
    );
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert_no_survivors(&tag);
}
