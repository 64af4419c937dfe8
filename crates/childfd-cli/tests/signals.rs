//! Signals sent to `childfd` itself: the terminating ones end the whole
//! tree (escapees too, where cgroup containment is available), write the
//! report and exit 128+N; USR1 is passed on; TSTP/CONT stop and continue
//! the tree; a SIGKILLed childfd takes its program with it.

mod common;

use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag, wait_tagged};
use common::*;

/// A program with a descendant in its group and a `setsid` escapee; it
/// prints `ready` once both run.
const TREE: &str = "ulimit -c 0; sleep 300 & setsid sleep 300 & sleep 0.05; echo ready; wait";

/// `childfd run --json-file JSON sh -c SCRIPT`, started with the tag.
#[track_caller]
fn start_sh_reporting(tag: &str, json: &std::path::Path, script: &str) -> Running {
    start(
        tag,
        &[
            "run",
            "--json-file",
            json.to_str().unwrap(),
            "sh",
            "-c",
            script,
        ],
    )
}

#[test]
fn a_terminating_signal_to_childfd_orphans_no_part_of_the_tree() {
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
    ] {
        let tag = new_tag("cli-sig");
        let json = report_path("cli-sig");
        let mut c = start_sh_reporting(&tag, &json, TREE);
        let out = c.stdout_until("ready");
        let err = read_all(c.stderr.take().unwrap());
        wait_tagged(&tag, 4); // childfd, sh, two sleeps
        c.signal(sig);
        let status = c.finish();
        drop(out);
        let stderr = err.recv_timeout(BOUND).unwrap();
        assert_eq!(status.code(), Some(128 + sig), "{name}: {stderr}");
        let r = take_report(&json);
        assert_eq!(r["outcome"], "signalled", "{name}: {r}");
        assert_eq!(r["signal_received"]["name"], name);
        assert_eq!(r["exit_code"], 128 + sig);
        assert!(r["pid"].as_u64().is_some() && r["started_at"].is_string());
        if r["containment"] == "cgroup" {
            // The escapee is in the leaf too: nothing at all is left.
            assert_no_survivors(&tag);
        } else {
            eprintln!("WARNING: no writable cgroup v2: checking the group only");
            let left = childfd_testbin::tagged(&tag);
            childfd_testbin::kill_tagged(&tag);
            assert!(left.len() <= 1, "more than the escapee left: {left:?}");
        }
        assert_no_leaf(c.id());
        assert!(stderr.contains(&format!("got {name}")), "{stderr}");
    }
}

#[test]
fn a_second_terminating_signal_kills_at_once_instead_of_waiting_the_grace() {
    let tag = new_tag("cli-sig2");
    let json = report_path("cli-sig2");
    let mut c = start(
        &tag,
        &[
            "run",
            "--kill-after",
            "60s",
            "--json-file",
            json.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    let out = c.stdout_until("ready");
    c.signal(libc::SIGTERM);
    // The program ignores TERM: childfd waits out the grace...
    std::thread::sleep(Duration::from_millis(200));
    assert!(c.try_wait().unwrap().is_none(), "returned before the grace");
    // ...until a second signal says not to.
    c.signal(libc::SIGTERM);
    let status = c.finish();
    drop(out);
    assert_eq!(status.code(), Some(143));
    let r = take_report(&json);
    assert_eq!(r["status"]["name"], "SIGKILL", "{r}");
    c.assert_nothing_left();
}

/// Signal `sig` (named `trap` in the shell) sent to childfd reaches the
/// program, whose trap prints `got-<trap in lower case>`; then `end` ends
/// the run with exit code `code`, leaving nothing behind.
#[track_caller]
fn passed_on_to_the_program(trap: &str, sig: i32, end: i32, code: i32) {
    let got = format!("got-{}", trap.to_lowercase());
    let tag = new_tag(&format!("cli-{}", trap.to_lowercase()));
    let script = format!("trap 'echo {got}' {trap}; echo ready; while :; do sleep 0.05; done");
    let mut c = start(&tag, &["run", "sh", "-c", &script]);
    let out = c.stdout_until("ready");
    c.signal(sig);
    let (_, out) = read_until(out, &got);
    c.signal(end);
    assert_eq!(c.finish().code(), Some(code));
    drop(out);
    c.assert_nothing_left();
}

#[test]
fn usr1_to_childfd_reaches_the_program() {
    passed_on_to_the_program("USR1", libc::SIGUSR1, libc::SIGTERM, 143);
}

#[test]
fn a_term_at_any_moment_of_the_start_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    // Before the handlers exist TERM kills childfd itself (nothing was
    // spawned yet); from then on it is held until the program exists and
    // then ends its tree. Either way nothing may be left.
    for i in 0..20 {
        let tag = new_tag("cli-early");
        let mut c = start(
            &tag,
            &["run", "sh", "-c", "sleep 300 & setsid sleep 300 & wait"],
        );
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_micros(200 * i));
        }
        c.signal(libc::SIGTERM);
        let status = c.finish();
        assert!(
            status.code() == Some(143) || status.signal() == Some(libc::SIGTERM),
            "{status:?}"
        );
        c.assert_nothing_left();
    }
}

#[test]
fn a_flood_of_job_control_and_passed_on_signals_leaves_childfd_in_control() {
    let tag = new_tag("cli-flood");
    let json = report_path("cli-flood");
    let mut c = start_sh_reporting(
        &tag,
        &json,
        "trap '' USR1 USR2; sleep 300 & setsid sleep 300 & echo ready; wait",
    );
    let out = c.stdout_until("ready");
    for _ in 0..100 {
        for sig in [
            libc::SIGUSR1,
            libc::SIGWINCH,
            libc::SIGTSTP,
            libc::SIGCONT,
            libc::SIGUSR2,
        ] {
            c.signal(sig);
        }
    }
    // Whatever order they were handled in, the last word was SIGCONT:
    // childfd runs, and a TERM still ends everything.
    assert!(
        childfd_testbin::eventually(BOUND, || matches!(state(c.id()), Some('S' | 'R'))),
        "childfd left stopped: {:?}",
        state(c.id())
    );
    c.signal(libc::SIGTERM);
    assert_eq!(c.finish().code(), Some(143));
    drop(out);
    assert_eq!(take_report(&json)["outcome"], "signalled");
    c.assert_nothing_left();
}

#[test]
fn winch_to_childfd_reaches_the_program() {
    passed_on_to_the_program("WINCH", libc::SIGWINCH, libc::SIGINT, 130);
}

#[test]
fn a_signal_while_the_output_is_still_being_flushed_ends_the_run() {
    // The program has exited; childfd still holds output its reader does
    // not take. A TERM then ends childfd at once (143), not after the reader.
    let tag = new_tag("cli-sigflush");
    let json = report_path("cli-sigflush");
    let mut c = start_sh_reporting(&tag, &json, "head -c 300000 /dev/zero; echo done >&2");
    let unread = c.stdout.take().unwrap();
    let (_, err) = read_until(c.stderr.take().unwrap(), "done");
    // The program is done once nothing tagged but childfd is left.
    assert!(
        childfd_testbin::eventually(BOUND, || childfd_testbin::tagged(&tag).len() == 1),
        "the program did not finish"
    );
    c.signal(libc::SIGTERM);
    let status = c.finish();
    drop((unread, err));
    assert_eq!(status.code(), Some(143));
    let r = take_report(&json);
    assert_eq!(r["outcome"], "signalled", "{r}");
    assert_eq!(r["status"]["code"], 0, "{r}");
    assert!(r["stdout"]["dropped"].as_u64() > Some(0), "{r}");
    c.assert_nothing_left();
}

#[test]
fn tstp_to_childfd_stops_the_tree_and_cont_continues_it() {
    let tag = new_tag("cli-tstp");
    let mut c = start(
        &tag,
        &[
            "run",
            "sh",
            "-c",
            // No fork in the program: a vfork child stopped before its
            // exec would hold the shell in state D, not T.
            "echo ready; exec sleep 300",
        ],
    );
    let out = c.stdout_until("ready");
    let sh = wait_comm(&tag, "sleep");
    c.signal(libc::SIGTSTP);
    wait_state(c.id(), 'T');
    wait_state(sh, 'T');
    c.signal(libc::SIGCONT);
    assert!(
        childfd_testbin::eventually(BOUND, || matches!(state(sh), Some('S' | 'R'))
            && matches!(state(c.id()), Some('S' | 'R'))),
        "not continued: childfd {:?}, program {:?}",
        state(c.id()),
        state(sh)
    );
    c.signal(libc::SIGTERM);
    assert_eq!(c.finish().code(), Some(143));
    drop(out);
    c.assert_nothing_left();
}

#[test]
fn a_sigkilled_childfd_takes_its_program_with_it() {
    let tag = new_tag("cli-pdeath");
    let mut c = start(&tag, &["run", "sh", "-c", "echo ready; exec sleep 300"]);
    let out = c.stdout_until("ready");
    let program = wait_comm(&tag, "sleep") as i32;
    c.signal(libc::SIGKILL);
    let _ = c.finish();
    drop(out);
    // The parent-death signal: the kernel kills the program.
    assert!(
        childfd_testbin::eventually(BOUND, || !childfd_testbin::alive(program)),
        "the program outlived childfd"
    );
    assert_no_survivors(&tag);
    // childfd could not remove its leaf (it was SIGKILLed): the test does.
    if let Some(dir) = childfd_testbin::own_cgroup_dir() {
        for l in childfd_testbin::cgroup_leaves_of(&dir, c.id()) {
            assert!(
                childfd_testbin::eventually(BOUND, || std::fs::remove_dir(&l).is_ok()),
                "cannot remove {}",
                l.display()
            );
        }
    }
}
