//! Signals sent to `childfd` itself: the terminating ones end the whole
//! tree (escapees too, where cgroup containment is available), write the
//! report and exit 128+N; USR1 is passed on; TSTP/CONT stop and continue
//! the tree; a SIGKILLed childfd takes its program with it.

mod common;

use std::time::Duration;

use childfd_testbin::{assert_no_survivors, kill, new_tag, wait_tagged};
use common::*;

/// A program with a descendant in its group and a `setsid` escapee; it
/// prints `ready` once both run.
const TREE: &str = "ulimit -c 0; sleep 300 & setsid sleep 300 & sleep 0.05; echo ready; wait";

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
        let c = command(
            &tag,
            &[
                "run",
                "--json-file",
                json.to_str().unwrap(),
                "sh",
                "-c",
                TREE,
            ],
        )
        .spawn()
        .unwrap();
        let mut c = Running::new(&tag, c);
        let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
        let err = read_all(c.stderr.take().unwrap());
        wait_tagged(&tag, 4); // childfd, sh, two sleeps
        assert!(kill(c.id() as i32, sig));
        let status = wait_bounded(&mut c, BOUND);
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
    let c = command(
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
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    assert!(kill(c.id() as i32, libc::SIGTERM));
    // The program ignores TERM: childfd waits out the grace...
    std::thread::sleep(Duration::from_millis(200));
    assert!(c.try_wait().unwrap().is_none(), "returned before the grace");
    // ...until a second signal says not to.
    assert!(kill(c.id() as i32, libc::SIGTERM));
    let status = wait_bounded(&mut c, BOUND);
    drop(out);
    assert_eq!(status.code(), Some(143));
    let r = take_report(&json);
    assert_eq!(r["status"]["name"], "SIGKILL", "{r}");
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn usr1_to_childfd_reaches_the_program() {
    let tag = new_tag("cli-usr1");
    let c = command(
        &tag,
        &[
            "run",
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.05; done",
        ],
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    assert!(kill(c.id() as i32, libc::SIGUSR1));
    let (_, out) = read_until(out, "got-usr1");
    assert!(kill(c.id() as i32, libc::SIGTERM));
    assert_eq!(wait_bounded(&mut c, BOUND).code(), Some(143));
    drop(out);
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn a_term_at_any_moment_of_the_start_leaves_nothing_behind() {
    use std::os::unix::process::ExitStatusExt;
    // Before the handlers exist TERM kills childfd itself (nothing was
    // spawned yet); from then on it is held until the program exists and
    // then ends its tree. Either way nothing may be left.
    for i in 0..20 {
        let tag = new_tag("cli-early");
        let c = command(
            &tag,
            &["run", "sh", "-c", "sleep 300 & setsid sleep 300 & wait"],
        )
        .spawn()
        .unwrap();
        let mut c = Running::new(&tag, c);
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_micros(200 * i));
        }
        assert!(kill(c.id() as i32, libc::SIGTERM));
        let status = wait_bounded(&mut c, BOUND);
        assert!(
            status.code() == Some(143) || status.signal() == Some(libc::SIGTERM),
            "{status:?}"
        );
        assert_no_survivors(&tag);
        assert_no_leaf(c.id());
    }
}

#[test]
fn a_flood_of_job_control_and_passed_on_signals_leaves_childfd_in_control() {
    let tag = new_tag("cli-flood");
    let json = report_path("cli-flood");
    let c = command(
        &tag,
        &[
            "run",
            "--json-file",
            json.to_str().unwrap(),
            "sh",
            "-c",
            "trap '' USR1 USR2; sleep 300 & setsid sleep 300 & echo ready; wait",
        ],
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    for _ in 0..100 {
        for sig in [
            libc::SIGUSR1,
            libc::SIGWINCH,
            libc::SIGTSTP,
            libc::SIGCONT,
            libc::SIGUSR2,
        ] {
            assert!(kill(c.id() as i32, sig));
        }
    }
    // Whatever order they were handled in, the last word was SIGCONT:
    // childfd runs, and a TERM still ends everything.
    assert!(
        childfd_testbin::eventually(BOUND, || matches!(state(c.id()), Some('S' | 'R'))),
        "childfd left stopped: {:?}",
        state(c.id())
    );
    assert!(kill(c.id() as i32, libc::SIGTERM));
    assert_eq!(wait_bounded(&mut c, BOUND).code(), Some(143));
    drop(out);
    assert_eq!(take_report(&json)["outcome"], "signalled");
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn winch_to_childfd_reaches_the_program() {
    let tag = new_tag("cli-winch");
    let c = command(
        &tag,
        &[
            "run",
            "sh",
            "-c",
            "trap 'echo got-winch' WINCH; echo ready; while :; do sleep 0.05; done",
        ],
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    assert!(kill(c.id() as i32, libc::SIGWINCH));
    let (_, out) = read_until(out, "got-winch");
    assert!(kill(c.id() as i32, libc::SIGINT));
    assert_eq!(wait_bounded(&mut c, BOUND).code(), Some(130));
    drop(out);
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn a_signal_while_the_output_is_still_being_flushed_ends_the_run() {
    // The program has exited; childfd still holds output its reader does
    // not take. A TERM then ends childfd at once (143), not after the reader.
    let tag = new_tag("cli-sigflush");
    let json = report_path("cli-sigflush");
    let c = command(
        &tag,
        &[
            "run",
            "--json-file",
            json.to_str().unwrap(),
            "sh",
            "-c",
            "head -c 300000 /dev/zero; echo done >&2",
        ],
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let unread = c.stdout.take().unwrap();
    let (_, err) = read_until(c.stderr.take().unwrap(), "done");
    // The program is done once nothing tagged but childfd is left.
    assert!(
        childfd_testbin::eventually(BOUND, || childfd_testbin::tagged(&tag).len() == 1),
        "the program did not finish"
    );
    assert!(kill(c.id() as i32, libc::SIGTERM));
    let status = wait_bounded(&mut c, BOUND);
    drop((unread, err));
    assert_eq!(status.code(), Some(143));
    let r = take_report(&json);
    assert_eq!(r["outcome"], "signalled", "{r}");
    assert_eq!(r["status"]["code"], 0, "{r}");
    assert!(r["stdout"]["dropped"].as_u64() > Some(0), "{r}");
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn tstp_to_childfd_stops_the_tree_and_cont_continues_it() {
    let tag = new_tag("cli-tstp");
    let c = command(
        &tag,
        &[
            "run",
            "sh",
            "-c",
            // No fork in the program: a vfork child stopped before its
            // exec would hold the shell in state D, not T.
            "echo ready; exec sleep 300",
        ],
    )
    .spawn()
    .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    let sh = wait_comm(&tag, "sleep");
    assert!(kill(c.id() as i32, libc::SIGTSTP));
    wait_state(c.id(), 'T');
    wait_state(sh, 'T');
    assert!(kill(c.id() as i32, libc::SIGCONT));
    assert!(
        childfd_testbin::eventually(BOUND, || matches!(state(sh), Some('S' | 'R'))
            && matches!(state(c.id()), Some('S' | 'R'))),
        "not continued: childfd {:?}, program {:?}",
        state(c.id()),
        state(sh)
    );
    assert!(kill(c.id() as i32, libc::SIGTERM));
    assert_eq!(wait_bounded(&mut c, BOUND).code(), Some(143));
    drop(out);
    assert_no_survivors(&tag);
    assert_no_leaf(c.id());
}

#[test]
fn a_sigkilled_childfd_takes_its_program_with_it() {
    let tag = new_tag("cli-pdeath");
    let c = command(&tag, &["run", "sh", "-c", "echo ready; exec sleep 300"])
        .spawn()
        .unwrap();
    let mut c = Running::new(&tag, c);
    let (_, out) = read_until(c.stdout.take().unwrap(), "ready");
    let program = wait_comm(&tag, "sleep") as i32;
    assert!(kill(c.id() as i32, libc::SIGKILL));
    let _ = wait_bounded(&mut c, BOUND);
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
