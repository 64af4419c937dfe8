//! childfd's own stdout and stderr as pipes: a reader that leaves, a
//! reader that stops reading, a closed stderr, and an escapee holding the
//! program's pipe after a timeout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use childfd_testbin::{assert_no_survivors, kill_tagged, new_tag, tagged};
use common::*;

#[test]
fn yes_piped_into_head_ends_with_141_instead_of_draining_for_ever() {
    let tag = new_tag("cli-epipe");
    let json = report_path("cli-epipe");
    let mut c = start(&tag, &["run", "--json-file", json.to_str().unwrap(), "yes"]);
    let err = read_all(c.stderr.take().unwrap());
    // `head -1`: read one line, then close the pipe.
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "y\n");
    drop(out);
    let status = c.finish();
    assert_eq!(status.code(), Some(141), "{:?}", err.recv_timeout(BOUND));
    let r = take_report(&json);
    assert_eq!(r["outcome"], "broken_pipe", "{r}");
    // Quiet, as a pipeline's SIGPIPE is.
    assert_eq!(err.recv_timeout(BOUND).unwrap(), "");
    c.assert_nothing_left();
}

#[test]
fn keep_draining_runs_the_program_to_its_end_after_the_reader_left() {
    let tag = new_tag("cli-drain");
    let mut c = start(
        &tag,
        &[
            "run",
            "--keep-draining",
            "sh",
            "-c",
            "echo first; sleep 0.3; head -c 1000000 /dev/zero; exit 7",
        ],
    );
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    drop(out);
    let status = c.finish();
    assert_eq!(status.code(), Some(7));
    assert_no_survivors(&tag);
}

#[test]
fn a_deadline_holds_while_childfds_stdout_is_blocked() {
    let tag = new_tag("cli-blocked");
    let json = report_path("cli-blocked");
    // `yes | sleep 10`: nobody reads childfd's stdout.
    let mut c = start(
        &tag,
        &[
            "run",
            "--timeout",
            "1",
            "--json-file",
            json.to_str().unwrap(),
            "yes",
        ],
    );
    let err = read_all(c.stderr.take().unwrap());
    let unread = c.stdout.take().unwrap();
    let status = c.finish();
    drop(unread);
    assert_eq!(status.code(), Some(124), "{:?}", err.recv_timeout(BOUND));
    let r = take_report(&json);
    assert_eq!(r["outcome"], "timed_out", "{r}");
    let (bytes, passed) = (
        r["stdout"]["bytes"].as_u64(),
        r["stdout"]["passed"].as_u64(),
    );
    assert!(
        bytes >= passed && r["stdout"]["dropped"].as_u64().is_some(),
        "{r}"
    );
    c.assert_nothing_left();
}

#[test]
fn a_stderr_nobody_reads_cannot_hold_childfd_past_its_deadline() {
    let tag = new_tag("cli-stuckerr");
    // The program fills childfd's stderr; childfd's own "timed out" line
    // and its report then have nowhere to go.
    let c = command(
        &tag,
        &["run", "--timeout", "1", "--json", "sh", "-c", "yes >&2"],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let unread = c.stderr.take().unwrap();
    let status = c.finish();
    drop(unread);
    assert_eq!(status.code(), Some(124));
    c.assert_nothing_left();
}

#[test]
fn a_closed_stderr_does_not_panic_childfd() {
    let tag = new_tag("cli-stderr");
    // `childfd run ... 2>&1 >/dev/null | true`: stderr's reader is gone
    // before childfd writes its "timed out" line.
    let c = command(
        &tag,
        &[
            "run",
            "--timeout",
            "300ms",
            "sh",
            "-c",
            "echo err >&2; sleep 300",
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    drop(c.stderr.take());
    let status = c.finish();
    assert_eq!(status.code(), Some(124));
    assert_no_survivors(&tag);
    // And with fd 2 closed outright.
    let r = childfd_in_sh(&tag, "exec CHILDFD run --timeout 300ms sleep 300 2>&-");
    assert_eq!(r.code, 124, "{}", r.stderr);
    assert_no_survivors(&tag);
}

#[test]
fn an_escapee_holding_the_pipe_after_a_timeout_costs_no_grace_and_term_is_reported() {
    let tag = new_tag("cli-escapee");
    let json = report_path("cli-escapee");
    let r = childfd(
        &tag,
        &[
            "run",
            "--contain",
            "pgroup",
            "--timeout",
            "1s",
            "--kill-after",
            "300s",
            "--json-file",
            json.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "setsid sleep 300 & echo started; sleep 300",
        ],
    );
    let left = tagged(&tag);
    kill_tagged(&tag); // the escapee: outside a process group's reach
    assert_eq!(r.code, 124, "{}", r.stderr);
    assert_eq!(r.stdout, "started\n");
    // SIGTERM ended the whole group at once: the 300 s grace was not
    // waited for (the helper's bound would have failed the test), nor
    // was SIGKILL sent.
    let rep = take_report(&json);
    assert_eq!(rep["ended_by"], "term", "{rep}");
    assert_eq!(rep["status"]["name"], "SIGTERM", "{rep}");
    assert_eq!(rep["holders"][0]["name"], "sleep", "{rep}");
    assert!(
        r.stderr.contains("SIGTERM ended its tree") && r.stderr.contains("held by sleep (pid"),
        "{}",
        r.stderr
    );
    assert_eq!(left.len(), 1, "only the escapee was left: {left:?}");
}

#[test]
fn contain_auto_catches_a_setsid_escapee_where_cgroups_allow() {
    let tag = new_tag("cli-auto");
    let json = report_path("cli-auto");
    let r = childfd(
        &tag,
        &[
            "run",
            "--timeout",
            "500ms",
            "--json-file",
            json.to_str().unwrap(),
            "sh",
            "-c",
            "setsid sleep 300 & echo started; sleep 300",
        ],
    );
    assert_eq!(r.code, 124, "{}", r.stderr);
    let rep = take_report(&json);
    if rep["containment"] == "cgroup" {
        assert_no_survivors(&tag);
        assert!(rep["holders"].as_array().unwrap().is_empty(), "{rep}");
    } else {
        eprintln!("WARNING: no writable cgroup v2 here: auto fell back to a process group");
        assert_eq!(rep["containment"], "pgroup");
        kill_tagged(&tag);
    }
    assert_no_leaf(r.pid);
}
