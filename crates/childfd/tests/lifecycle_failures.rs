//! Lifecycle and containment failures, each reproduced: a wait that hangs
//! on an untaken stdin, a stopped member killed by SIGHUP before its TERM
//! handler ran, and members in nested cgroups that the tree did not reach.
//! (Failures that need a process of their own, with a forced fallback, a
//! seccomp filter, a PID namespace or SIGPIPE at its default, are in
//! `lifecycle_hostile.rs`.)

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use childfd::{Child, Command, Containment, EndedBy, Stdio};
use childfd_testbin::{Hygiene, assert_no_survivors, eventually, new_tag, read_stat, tagged};

const BOUND: Duration = Duration::from_secs(30);

/// [`Hygiene`]. Deliberately not a subreaper: a member orphaned by its
/// leader's death must go to init, outside the session, for its process
/// group to become orphaned (the condition under which the kernel sends
/// SIGHUP to stopped members).
fn start() -> Hygiene {
    Hygiene::start()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("childfd-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `f` on a thread and waits at most `BOUND` for it; on timeout kills
/// `pid` (our unreaped child, so the number is safe) and fails.
#[track_caller]
fn bounded<T: Send + 'static>(what: &str, pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(_) => {
            childfd_testbin::kill(pid as i32, libc::SIGKILL);
            let _ = t.join();
            panic!("{what} did not return within {BOUND:?} (child {pid} killed)");
        }
    }
}

fn cat_with_untaken_stdin() -> Child {
    Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn wait_with_an_untaken_piped_stdin_hangs_on_cat() {
    let h = start();
    let c = cat_with_untaken_stdin();
    let s = bounded("wait", c.id(), move || c.wait().unwrap());
    assert!(s.success(), "{s}");

    let c = cat_with_untaken_stdin();
    let s = c.wait_timeout(Duration::from_secs(10)).unwrap();
    drop(c.kill());
    drop(c);
    assert!(s.is_some_and(|s| s.success()), "wait_timeout: {s:?}");

    let c = cat_with_untaken_stdin();
    let d = std::time::Instant::now() + Duration::from_secs(10);
    let s = c.wait_deadline(d).unwrap();
    drop(c.kill());
    drop(c);
    assert!(s.is_some_and(|s| s.success()), "wait_deadline: {s:?}");

    // Command::status waits the same way (std's status gives cat a piped
    // stdin only when asked, and so do we).
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut cmd = Command::new("cat");
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        let _ = tx.send(cmd.status().map(|s| s.success()));
    });
    let ok = rx.recv_timeout(BOUND);
    if ok.is_err() {
        // Only cat can be our child here; end it so the test can fail.
        for p in childfd_testbin::children() {
            childfd_testbin::kill(p.pid, libc::SIGKILL);
        }
    }
    t.join().unwrap();
    assert!(matches!(ok, Ok(Ok(true))), "Command::status: {ok:?}");

    // try_wait leaves stdin alone, as std's does: the caller may still
    // take it and write.
    let mut c = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(c.try_wait().unwrap().is_none());
    {
        use std::io::{Read, Write};
        let mut w = c.take_stdin().expect("still there after try_wait");
        w.write_all(b"kept").unwrap();
        drop(w);
        let mut out = String::new();
        c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "kept");
    }
    assert!(c.wait_timeout(BOUND).unwrap().unwrap().success());
    drop(c);
    h.finish(3);
}

/// A member that stops itself and, once continued, exits 0 from its TERM
/// handler after writing `handled` to `$1`.
const STOPPED_MEMBER: &str = r#"trap 'echo handled > "$1"; exit 0' TERM
echo $$ > "$1.pid"
kill -STOP $$
while :; do sleep 1; done
"#;

/// One round: leader `sh` (dies of TERM) with a stopped member that handles
/// TERM; `terminate` must let the member's handler run.
fn stopped_member_round(mode: &Containment, dir: &Path, round: usize) {
    let tag = new_tag("stopped-member");
    let marker = dir.join(format!("marker-{round}"));
    let script = dir.join("member.sh");
    let c = Command::new("sh")
        .args([
            "-c",
            &format!("sh {} {} & wait", script.display(), marker.display()),
        ])
        .env("CHILDFD_TEST_TAG", &tag)
        .containment(mode.clone())
        .spawn()
        .unwrap();
    let pid_file = dir.join(format!("marker-{round}.pid"));
    let member = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    };
    let stopped = eventually(BOUND, || {
        member().and_then(read_stat).is_some_and(|p| p.state == 'T')
    });
    assert!(stopped, "round {round}: the member never stopped");
    let t = c.terminate(Duration::from_secs(10)).unwrap();
    let handled = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(
        handled.trim(),
        "handled",
        "{mode:?} round {round}: the stopped member died before its TERM handler ran ({t:?})"
    );
    assert_eq!(t.ended_by, EndedBy::Term, "{mode:?} round {round}");
    drop(c);
    assert_no_survivors(&tag);
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_file(&pid_file);
}

#[test]
fn terminate_lets_sighup_kill_a_stopped_member_before_its_term_handler() {
    let h = start();
    let dir = scratch(&new_tag("stopped"));
    std::fs::write(dir.join("member.sh"), STOPPED_MEMBER).unwrap();
    let modes = [
        (Containment::ProcessGroup, 50),
        (Containment::Session, 10),
        (Containment::cgroup(), 10),
    ];
    for (mode, rounds) in modes {
        for round in 0..rounds {
            stopped_member_round(&mode, &dir, round);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
    h.finish(3);
}

/// A leader whose member (pid in `$1.pid`) exits 0 from its TERM handler
/// after writing `handled` to `$1`; the test moves the member into a child
/// cgroup of the leaf, as a nested `childfd run --contain cgroup` or a
/// delegating service manager would.
const NESTED_MEMBER: &str = r#"trap 'echo handled > "$1"; exit 0' TERM
echo $$ > "$1.pid"
while :; do sleep 0.05; done
"#;

/// Spawns the nested-member tree in cgroup mode and moves the member into
/// `<leaf>/nested/deeper`; returns the child, the marker path and the
/// member's pid.
fn nested_member_tree(dir: &Path, tag: &str) -> (Child, PathBuf, i32) {
    let marker = dir.join("marker");
    let c = Command::new("sh")
        .args([
            "-c",
            &format!(
                "sh {} {} & wait",
                dir.join("member.sh").display(),
                marker.display()
            ),
        ])
        .env("CHILDFD_TEST_TAG", tag)
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let pid_file = dir.join("marker.pid");
    assert!(eventually(BOUND, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|s| s.ends_with('\n'))));
    let member: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nested = c.cgroup_path().unwrap().join("nested/deeper");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("cgroup.procs"), member.to_string()).unwrap();
    (c, marker, member)
}

#[test]
fn cgroup_mode_misses_members_in_nested_cgroups() {
    let h = start();
    let tag = new_tag("nested-cgroup");
    let dir = scratch(&tag);
    std::fs::write(dir.join("member.sh"), NESTED_MEMBER).unwrap();
    let (c, marker, member) = nested_member_tree(&dir, &tag);
    let parent = c.cgroup_path().unwrap().parent().unwrap().to_path_buf();
    let t = c.terminate(Duration::from_secs(5)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        "handled",
        "the member {member} in a nested cgroup never saw SIGTERM ({t:?})"
    );
    assert_eq!(t.ended_by, EndedBy::Term);
    drop(c);
    assert_no_survivors(&tag);
    assert!(
        eventually(BOUND, || childfd_testbin::our_cgroup_leaves(&parent)
            .is_empty()),
        "leaf (with its nested cgroups) left behind: {:?}",
        childfd_testbin::our_cgroup_leaves(&parent)
    );
    assert!(tagged(&tag).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
    h.finish(3);
}
