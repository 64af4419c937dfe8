//! The Child lifecycle: zombies, exec failures, wrong-process signals,
//! leaked pipes, concurrent wait and kill.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Barrier;
use std::time::Duration;

use childfd::{Command, ExitStatus, Signal, SpawnError, SpawnStage, Stdio};
use childfd_testbin::{EXIT0, Hygiene, PAUSE, alive, children};

const BOUND: Duration = Duration::from_secs(30);

#[track_caller]
fn wait_bounded(child: &childfd::Child) -> ExitStatus {
    match child.wait_timeout(BOUND).expect("wait") {
        Some(s) => s,
        None => {
            child.kill().ok();
            panic!("child {} did not end within {BOUND:?}", child.id());
        }
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("childfd-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn dropping_10000_handles_running_and_exited_leaves_no_zombie_fd_or_thread_per_child() {
    let h = Hygiene::start();
    // Exited but never waited: give each time to exit before the drop.
    let exited: Vec<_> = (0..2000)
        .map(|_| Command::new(EXIT0).spawn().unwrap())
        .collect();
    assert!(childfd_testbin::eventually(BOUND, || children()
        .iter()
        .all(|p| p.state == 'Z')));
    drop(exited);
    // Dropped while surely running, then killed from outside by pid (the
    // handle is gone; the pid is still ours and unreaped, so it is safe).
    let mut running_pids = Vec::new();
    for _ in 0..1000 {
        let c = Command::new(PAUSE).spawn().unwrap();
        running_pids.push(c.id() as i32);
    }
    for pid in &running_pids {
        assert!(alive(*pid), "pause child {pid} should still run");
        // By pid is safe here: it is our child and not yet reaped.
        assert!(childfd_testbin::kill(*pid, libc::SIGKILL));
    }
    // The bulk: dropped right after spawn, whatever state they are in.
    for _ in 0..7000 {
        drop(Command::new(EXIT0).spawn().unwrap());
    }
    assert!(
        childfd_testbin::eventually(BOUND, || childfd::pending_reaps() == 0),
        "background reaper still holds {} children",
        childfd::pending_reaps()
    );
    // One background reaper thread at most, never one per child.
    h.finish(1);
}

#[test]
fn kill_on_drop_kills_a_running_child() {
    let h = Hygiene::start();
    let c = Command::new(PAUSE).kill_on_drop(true).spawn().unwrap();
    let pid = c.id() as i32;
    assert!(alive(pid));
    drop(c);
    assert!(childfd_testbin::eventually(BOUND, || !alive(pid)));
    h.finish(1);
}

/// Spawns `cmd` with stdout piped, reads all of it, waits (bounded) and
/// asserts success; returns what it printed. The handle is dropped.
#[track_caller]
fn run_ok_capture(cmd: &mut Command) -> String {
    let mut c = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    let status = wait_bounded(&c);
    assert!(status.success(), "{cmd:?}: {status}");
    out
}

#[track_caller]
fn assert_spawn_error(e: SpawnError, kind: ErrorKind, stage: SpawnStage) {
    assert_eq!(e.kind(), kind, "{e}: {:?}", std::error::Error::source(&e));
    assert_eq!(e.stage(), stage, "{e}");
}

#[test]
fn failed_exec_reports_kind_and_stage_and_leaves_no_zombie() {
    let h = Hygiene::start();
    let dir = tempdir("exec");
    let noexec = dir.join("noexec");
    std::fs::write(&noexec, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let badinterp = dir.join("badinterp");
    std::fs::write(&badinterp, "#!/nonexistent/interpreter\nexit 0\n").unwrap();
    std::fs::set_permissions(&badinterp, std::fs::Permissions::from_mode(0o755)).unwrap();

    let e = Command::new("/no/such/program").spawn().unwrap_err();
    assert_spawn_error(e, ErrorKind::NotFound, SpawnStage::Exec);
    let e = Command::new("childfd-no-such-program-in-path")
        .spawn()
        .unwrap_err();
    assert_spawn_error(e, ErrorKind::NotFound, SpawnStage::Exec);
    let e = Command::new(&noexec).spawn().unwrap_err();
    assert_spawn_error(e, ErrorKind::PermissionDenied, SpawnStage::Exec);
    let e = Command::new(&badinterp).spawn().unwrap_err();
    assert_spawn_error(e, ErrorKind::NotFound, SpawnStage::Exec);
    let e = Command::new(EXIT0)
        .current_dir("/no/such/dir")
        .spawn()
        .unwrap_err();
    assert_spawn_error(e, ErrorKind::NotFound, SpawnStage::Chdir);
    let msg = Command::new("/no/such/program")
        .spawn()
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("/no/such/program") && msg.contains("exec"),
        "{msg}"
    );

    // PATH search: EACCES on an earlier entry is remembered over a later ENOENT.
    let e = Command::new("noexec")
        .env("PATH", format!("{}:/no/such/dir", dir.display()))
        .spawn()
        .unwrap_err();
    assert_spawn_error(e, ErrorKind::PermissionDenied, SpawnStage::Exec);
    // ...and a later usable entry is still found.
    std::fs::copy(EXIT0, dir.join("exit0")).unwrap();
    let c = Command::new("exit0")
        .env("PATH", format!("/no/such:{}", dir.display()))
        .spawn()
        .unwrap();
    assert!(wait_bounded(&c).success());
    drop(c);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        children().is_empty(),
        "a failed spawn left a child: {:?}",
        children()
    );
    h.finish(1);
}

#[test]
fn invalid_input_is_an_error_before_any_process_exists() {
    let h = Hygiene::start();
    let before = children().len();
    let cases: Vec<Command> = vec![
        Command::new(""),
        Command::new("tr\0ue"),
        {
            let mut c = Command::new(EXIT0);
            c.arg("ok").arg("bad\0arg");
            c
        },
        {
            let mut c = Command::new(EXIT0);
            c.env("KEY", "va\0lue");
            c
        },
        {
            let mut c = Command::new(EXIT0);
            c.env("A=B", "x");
            c
        },
        {
            let mut c = Command::new(EXIT0);
            c.current_dir("/t\0mp");
            c
        },
        {
            let mut c = Command::new(EXIT0);
            let (a, b) = std::io::pipe().unwrap();
            c.fd(5, a).fd(5, b);
            c
        },
        {
            let mut c = Command::new(EXIT0);
            c.fd(1, std::fs::File::open("/dev/null").unwrap());
            c
        },
        {
            let mut c = Command::new(EXIT0);
            c.stdout(Stdio::same_as_stdout());
            c
        },
    ];
    for c in &cases {
        let e = c.spawn().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{c:?}: {e}");
        assert_eq!(e.stage(), SpawnStage::Validate);
        assert!(matches!(e, SpawnError::Invalid { .. }));
    }
    assert_eq!(children().len(), before);
    drop(cases);
    h.finish(1);
}

/// Makes the kernel hand out `pid` next (root only), so a recycled pid can
/// be produced on purpose. Returns false if not permitted.
fn next_pid_will_be(pid: i32) -> bool {
    std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).is_ok()
}

#[test]
fn signalling_after_reap_never_reaches_the_process_that_reused_the_pid() {
    let h = Hygiene::start();
    let c = Command::new(EXIT0).spawn().unwrap();
    let old_pid = c.id() as i32;
    assert!(wait_bounded(&c).success());
    // Recycle the pid: start an unrelated process with exactly that pid.
    let mut victim = None;
    for _ in 0..50 {
        if !next_pid_will_be(old_pid) {
            break;
        }
        let v = std::process::Command::new(PAUSE).spawn().unwrap();
        if v.id() as i32 == old_pid {
            victim = Some(v);
            break;
        }
        let mut v = v;
        v.kill().unwrap();
        v.wait().unwrap();
    }
    match &mut victim {
        Some(v) => {
            for sig in [Signal::TERM, Signal::KILL, Signal::STOP] {
                c.signal(sig).expect("signal after exit is Ok");
            }
            c.kill().unwrap();
            assert!(
                alive(old_pid),
                "a signal through the old handle hit the new process {old_pid}"
            );
            assert!(v.try_wait().unwrap().is_none());
            v.kill().unwrap();
            v.wait().unwrap();
        }
        None => {
            eprintln!(
                "WARNING: could not recycle pid {old_pid} (needs root to write \
                 /proc/sys/kernel/ns_last_pid); checking only that signalling after exit is Ok"
            );
            c.kill().unwrap();
        }
    }
    // The same holds after a drop-and-respawn cycle with the status cached.
    assert_eq!(c.try_wait().unwrap().map(|s| s.code()), Some(Some(0)));
    drop(c);
    h.finish(1);
}

#[test]
fn siblings_spawned_concurrently_hold_no_copy_of_each_others_stdin() {
    let h = Hygiene::start();
    const THREADS: usize = 8;
    for round in 0..10 {
        let spawned = Barrier::new(THREADS);
        let first_half_done = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (spawned, first_half_done) = (&spawned, &first_half_done);
                s.spawn(move || {
                    let mut c = Command::new("cat")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    let mut stdin = c.take_stdin().unwrap();
                    stdin.write_all(b"x").unwrap();
                    spawned.wait();
                    // No other cat may hold our pipe: check its fds.
                    let mine =
                        std::fs::read_link(format!("/proc/self/fd/{}", stdin.as_raw_fd())).unwrap();
                    let first = (t + round) % 2 == 0;
                    let close_and_wait = |stdin, c: &childfd::Child| {
                        drop(stdin);
                        // EOF must reach cat while the other half's cats still run.
                        let st = c.wait_timeout(BOUND).unwrap();
                        assert!(
                            st.is_some_and(|s| s.success()),
                            "cat {} got no EOF: {st:?}",
                            c.id()
                        );
                    };
                    if first {
                        close_and_wait(stdin, &c);
                        first_half_done.wait();
                    } else {
                        first_half_done.wait();
                        close_and_wait(stdin, &c);
                    }
                    mine
                });
            }
        });
    }
    h.finish(1);
}

#[test]
fn concurrent_wait_and_kill_from_two_threads_1000_rounds() {
    let h = Hygiene::start();
    for _ in 0..1000 {
        let c = Command::new(PAUSE).spawn().unwrap();
        let status = std::thread::scope(|s| {
            let waiter = s.spawn(|| wait_bounded(&c));
            s.spawn(|| c.kill().unwrap());
            waiter.join().unwrap()
        });
        assert_eq!(status.signal(), Some(Signal::KILL));
        // Cached: the same answer again, and killing again is harmless.
        assert_eq!(c.try_wait().unwrap(), Some(status));
        c.kill().unwrap();
    }
    h.finish(1);
}

#[test]
fn two_threads_waiting_on_one_child_both_get_its_status() {
    let h = Hygiene::start();
    for _ in 0..200 {
        let c = Command::new("sh").args(["-c", "exit 42"]).spawn().unwrap();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| c.wait().unwrap());
            let b = s.spawn(|| wait_bounded(&c));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!((a.code(), b.code()), (Some(42), Some(42)));
    }
    h.finish(1);
}

#[test]
fn wait_timeout_returns_none_while_running_then_the_status() {
    let h = Hygiene::start();
    let c = Command::new(PAUSE).spawn().unwrap();
    assert_eq!(c.try_wait().unwrap(), None);
    assert_eq!(c.wait_timeout(Duration::from_millis(20)).unwrap(), None);
    assert_eq!(c.wait_timeout(Duration::ZERO).unwrap(), None);
    c.signal(Signal::TERM).unwrap();
    let s = wait_bounded(&c);
    assert_eq!(s.signal(), Some(Signal::TERM));
    assert_eq!(s.code(), None);
    assert_eq!(s.to_string(), "signal: 15 (SIGTERM)");
    assert_eq!(std::process::ExitStatus::from(s).to_string(), s.to_string());
    drop(c);
    h.finish(1);
}

#[test]
fn stdio_pipes_env_cwd_and_mapped_fds_reach_the_child() {
    let h = Hygiene::start();
    let dir = tempdir("stdio");
    let (map_r, mut map_w) = std::io::pipe().unwrap();
    map_w.write_all(b"from fd 7").unwrap();
    drop(map_w);
    let mut c = Command::new("sh")
        .args(["-c", "echo \"$FOO\" $(pwd); echo err >&2; cat <&7; cat"])
        .env("FOO", "bar")
        .env_remove("HOME")
        .current_dir(&dir)
        .fd(7, map_r)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::same_as_stdout())
        .spawn()
        .unwrap();
    let mut stdin = c.take_stdin().unwrap();
    stdin.write_all(b" and stdin").unwrap();
    drop(stdin);
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert!(wait_bounded(&c).success());
    let canon = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(
        out,
        format!("bar {}\nerr\nfrom fd 7 and stdin", canon.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
    drop(c);
    h.finish(1);
}

#[test]
fn env_clear_gives_an_empty_environment_and_default_path() {
    let h = Hygiene::start();
    let out = run_ok_capture(Command::new("env").env_clear().env("ONLY", "1"));
    assert_eq!(out, "ONLY=1\n");
    h.finish(1);
}

#[test]
fn spawn_with_env_passes_the_snapshot_with_the_commands_changes() {
    let h = Hygiene::start();
    let snapshot = childfd::EnvSnapshot::capture();
    let lines = |c: &mut Command| {
        let mut child = c.stdout(Stdio::piped()).spawn_with_env(&snapshot).unwrap();
        let mut out = String::new();
        child
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(wait_bounded(&child).success());
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    // As `env` prints them, one line each (a value may hold a newline).
    let text: String = std::env::vars()
        .filter(|(k, _)| k != "HOME")
        .map(|(k, v)| format!("{k}={v}\n"))
        .chain(["CHILDFD_SNAPSHOT_ADDED=1\n".to_string()])
        .collect();
    let mut expected: Vec<String> = text.lines().map(str::to_string).collect();
    expected.sort();
    let got = lines(
        Command::new("env")
            .env("CHILDFD_SNAPSHOT_ADDED", "1")
            .env_remove("HOME"),
    );
    assert_eq!(got, expected);
    let got = lines(Command::new("env").env_clear().env("ONLY", "1"));
    assert_eq!(got, ["ONLY=1"]);
    h.finish(1);
}

#[test]
fn fd_mappings_that_overlap_each_other_are_shuffled_correctly() {
    let h = Hygiene::start();
    // Source fds that are each other's targets: a naive dup2 sequence would
    // clobber one before using it.
    let (r1, mut w1) = std::io::pipe().unwrap();
    let (r2, mut w2) = std::io::pipe().unwrap();
    w1.write_all(b"one").unwrap();
    w2.write_all(b"two").unwrap();
    drop((w1, w2));
    let (n1, n2) = (r1.as_raw_fd(), r2.as_raw_fd());
    let out = run_ok_capture(
        Command::new("sh")
            // (/dev/fd rather than `<&N`: dash takes single-digit fds only)
            .args(["-c", &format!("cat /dev/fd/{n1}; echo; cat /dev/fd/{n2}")])
            .fd(n2, r1)
            .fd(n1, r2),
    );
    assert_eq!(out, "two\none");
    h.finish(1);
}

#[test]
fn exec_through_proc_self_fd_still_finds_the_fd() {
    // The fexecve pattern: the program is one of our (close-on-exec) fds,
    // named by path. The child must still see it when it calls execve,
    // however many fds we hold.
    let h = Hygiene::start();
    let many: Vec<_> = (0..100)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let prog = std::fs::File::open(childfd_testbin::EXIT0).unwrap();
    let fd = prog.as_raw_fd();
    for path in [format!("/proc/self/fd/{fd}"), format!("/dev/fd/{fd}")] {
        let c = Command::new(&path).spawn().unwrap();
        assert!(wait_bounded(&c).success(), "{path}");
    }
    let c = Command::new(childfd_testbin::EXIT0)
        .current_dir(format!("/proc/self/fd/{fd}/.."))
        .spawn();
    // A file is no directory: ENOTDIR at the chdir stage, not ENOENT
    // (which would mean the fd was gone in the child).
    let e = c.unwrap_err();
    assert_eq!(
        (e.stage(), e.raw_os_error()),
        (childfd::SpawnStage::Chdir, Some(libc::ENOTDIR)),
        "{e}"
    );
    drop((many, prog));
    h.finish(1);
}

#[test]
fn an_fd_opened_without_cloexec_never_reaches_the_child() {
    let h = Hygiene::start();
    let secret = std::fs::File::open("/etc/hostname").unwrap();
    let fd = secret.as_raw_fd();
    // Drop O_CLOEXEC on purpose, as careless code (or a C library) would.
    rustix::io::fcntl_setfd(&secret, rustix::io::FdFlags::empty()).unwrap();
    let c = Command::new("sh")
        .args(["-c", &format!("test ! -e /proc/self/fd/{fd}")])
        .spawn()
        .unwrap();
    assert!(wait_bounded(&c).success(), "fd {fd} leaked into the child");
    drop(c);
    // Passed on purpose, it arrives.
    let dup = secret.try_clone().unwrap();
    let c = Command::new("sh")
        .args(["-c", "test -e /proc/self/fd/9"])
        .fd(9, dup)
        .spawn()
        .unwrap();
    assert!(wait_bounded(&c).success());
    drop(secret);
    drop(c);
    h.finish(1);
}

#[test]
fn child_leads_its_own_process_group_by_default() {
    let h = Hygiene::start();
    let c = Command::new(PAUSE).spawn().unwrap();
    let p = childfd_testbin::read_stat(c.id() as i32).unwrap();
    assert_eq!(p.pgrp, c.id() as i32);
    c.kill().unwrap();
    wait_bounded(&c);
    drop(c);
    let c = Command::new(PAUSE)
        .containment(childfd::Containment::Session)
        .spawn()
        .unwrap();
    let p = childfd_testbin::read_stat(c.id() as i32).unwrap();
    assert_eq!((p.pgrp, p.session), (c.id() as i32, c.id() as i32));
    c.kill().unwrap();
    wait_bounded(&c);
    drop(c);
    let c = Command::new(PAUSE)
        .containment(childfd::Containment::Inherit)
        .spawn()
        .unwrap();
    let p = childfd_testbin::read_stat(c.id() as i32).unwrap();
    assert_eq!(p.pgrp, rustix::process::getpgrp().as_raw_nonzero().get());
    c.kill().unwrap();
    wait_bounded(&c);
    drop(c);
    h.finish(1);
}

#[test]
fn from_std_command_copies_program_args_env_and_cwd() {
    let h = Hygiene::start();
    let mut std_cmd = std::process::Command::new("sh");
    std_cmd
        .args(["-c", "echo $X; pwd"])
        .env("X", "y")
        .current_dir("/");
    let out = run_ok_capture(&mut Command::from(&std_cmd));
    assert_eq!(out, "y\n/\n");
    h.finish(1);
}

#[test]
fn spawning_with_another_uid_runs_as_it_and_keeps_the_parent_dumpable() {
    let h = Hygiene::start();
    if !childfd_testbin::is_root() {
        eprintln!("WARNING: not root; uid/gid changes cannot be tested here");
        h.finish(1);
        return;
    }
    let before = childfd_testbin::dumpable();
    let out = run_ok_capture(
        Command::new("sh")
            .args(["-c", "id -u; id -g; id -G"])
            .uid(65534)
            .gid(65534),
    );
    // Supplementary groups were dropped (only the gid is left).
    assert_eq!(out, "65534\n65534\n65534\n");
    // Under CLONE_VM, setuid in the child would have marked the parent's
    // memory non-dumpable (no core dumps, /proc/<pid> owned by root).
    assert_eq!(
        childfd_testbin::dumpable(),
        before,
        "the parent's dumpable flag changed"
    );
    h.finish(1);
}

#[test]
fn child_and_command_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<childfd::Child>();
    send_sync::<Command>();
    send_sync::<childfd::SpawnError>();
    send_sync::<childfd::WaitError>();
    send_sync::<childfd::TreeError>();
}
