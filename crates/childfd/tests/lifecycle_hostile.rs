//! Lifecycle failures that need a process of their own: a forced fallback
//! (process-wide), a seccomp filter, SIGPIPE at its default action, a PID
//! or mount namespace. Each scenario is named after the failure it
//! reproduces; `main` re-runs this binary once per scenario
//! (`CHILDFD_LIFECYCLE_SCENARIO`), wrapped in `unshare` where it needs a
//! namespace. `harness = false` keeps each scenario process
//! single-threaded until it starts threads itself.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use childfd::{Child, Command, Containment, EndedBy, Signal, Stdio, WaitError};
use childfd_testbin::{
    PAUSE, alive, assert_no_survivors, children, eventually, kill_tagged, new_tag, read_stat,
    wait_tagged,
};

#[path = "lifecycle_hostile/fd_pressure.rs"]
mod fd_pressure;
#[path = "lifecycle_hostile/orphan_schedule.rs"]
mod orphan_schedule;
#[path = "lifecycle_hostile/remount.rs"]
mod remount;
#[path = "lifecycle_hostile/seccomp_members.rs"]
mod seccomp_members;

const BOUND: Duration = Duration::from_secs(30);

/// How a scenario process is started.
#[derive(Clone, Copy)]
enum Wrap {
    Plain,
    /// PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`).
    PidNs,
    /// In a new mount namespace (`unshare --mount --propagation private`).
    MountNs,
}

const SCENARIOS: &[(&str, Wrap)] = &[
    (
        "tree_ops_deadlock_against_a_blocked_wait_before_6_9",
        Wrap::Plain,
    ),
    (
        "terminate_before_6_9_cannot_kill_a_member_once_a_blocked_wait_reaped_the_leader",
        Wrap::Plain,
    ),
    (
        "orphan_reaper_takes_the_status_of_a_child_with_a_recycled_pid",
        Wrap::PidNs,
    ),
    (
        "refused_pidfd_send_signal_eperm_leaves_children_running",
        Wrap::Plain,
    ),
    (
        "refused_pidfd_send_signal_enosys_leaves_children_running",
        Wrap::Plain,
    ),
    (
        "pidfd_open_killing_profile_kills_the_host_in_cgroup_signal_tree",
        Wrap::Plain,
    ),
    (
        "stdin_write_to_an_exited_child_kills_a_host_with_default_sigpipe",
        Wrap::Plain,
    ),
    ("idle_orphan_reaper_keeps_waking_up", Wrap::Plain),
    (
        "cgroup_leaf_names_collide_across_pid_namespaces",
        Wrap::Plain,
    ),
    (
        "cgroup_mount_root_of_a_subtree_mount_is_ignored",
        Wrap::MountNs,
    ),
    (
        "nested_cgroup_members_survive_kill_tree_without_cgroup_kill",
        Wrap::Plain,
    ),
    (
        "cgroup_signal_tree_hits_an_unrelated_process_that_reused_a_frozen_members_pid",
        Wrap::PidNs,
    ),
    (
        "cgroup_leaf_lands_in_another_cgroup_bind_mounted_below_the_mount_point",
        Wrap::MountNs,
    ),
    (
        "orphans_wait_for_the_60_s_scan_once_the_program_replaces_the_sigchld_handler",
        Wrap::Plain,
    ),
    (
        "drop_reaper_wakes_every_second_while_a_dropped_child_runs",
        Wrap::Plain,
    ),
    (
        "orphan_reaper_handler_check_backs_off_on_every_wake_up_under_steady_traffic",
        Wrap::Plain,
    ),
    (
        "pinning_a_tree_bigger_than_the_fd_limit_leaves_members_unsignalled",
        Wrap::Plain,
    ),
    (
        "one_free_fd_too_few_gives_up_signalling_the_whole_tree",
        Wrap::Plain,
    ),
    (
        "cgroupfs_remounted_elsewhere_after_the_mounts_were_read_fails_cgroup_containment",
        Wrap::MountNs,
    ),
    (
        "a_tree_running_across_a_cgroupfs_remount_is_taken_for_removed",
        Wrap::MountNs,
    ),
    (
        "unfrozen_cgroup_members_are_skipped_under_a_seccomp_filter_that_allows_pidfd_open",
        Wrap::Plain,
    ),
    (
        "unfrozen_cgroup_members_are_skipped_silently_when_seccomp_refuses_pidfd_open",
        Wrap::Plain,
    ),
];

fn main() {
    if let Ok(s) = std::env::var("CHILDFD_LIFECYCLE_SCENARIO") {
        scenario(&s);
        return;
    }
    for &(name, wrap) in SCENARIOS {
        let (status, text) = run_bounded(name, wrap);
        assert!(status.success(), "{name} failed ({status}):\n{text}");
        print!("{text}");
        assert!(
            text.contains(&format!("ok: {name}")),
            "{name} did not finish:\n{text}"
        );
    }
    // The mount-root scenarios' sub cgroups, empty once their process exited.
    if let Some(own) = childfd_testbin::own_cgroup_dir() {
        for e in std::fs::read_dir(own).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("mountroot-") || name.starts_with("belowmount-") {
                std::fs::remove_dir(e.path()).unwrap();
            }
        }
    }
}

/// Runs scenario `name` with its output in a file (a process it leaves
/// behind after a failure cannot hold a pipe of ours open), for at most
/// 5 minutes; its status and output.
fn run_bounded(name: &str, wrap: Wrap) -> (std::process::ExitStatus, String) {
    let path = std::env::temp_dir().join(format!(
        "childfd-lifecycle-hostile-{}-{name}",
        std::process::id()
    ));
    let file = std::fs::File::create(&path).unwrap();
    let mut child = run_wrapped(name, wrap, |_| {})
        .stdin(StdStdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut status = None;
    let done = eventually(Duration::from_secs(300), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !done {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::remove_file(&path).unwrap();
    assert!(done, "{name} did not finish within 5 minutes:\n{text}");
    (status.unwrap(), text)
}

/// This binary, set to run `name`, wrapped as asked.
fn run_wrapped(
    name: &str,
    wrap: Wrap,
    env: impl FnOnce(&mut std::process::Command),
) -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrap {
        Wrap::Plain => std::process::Command::new(&exe),
        Wrap::PidNs => {
            let mut c = std::process::Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc"]).arg(&exe);
            c
        }
        Wrap::MountNs => {
            let mut c = std::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private"]).arg(&exe);
            c
        }
    };
    cmd.env("CHILDFD_LIFECYCLE_SCENARIO", name);
    env(&mut cmd);
    cmd
}

fn scenario(name: &str) {
    match name {
        "tree_ops_deadlock_against_a_blocked_wait_before_6_9" => tree_ops_against_blocked_wait(),
        "terminate_before_6_9_cannot_kill_a_member_once_a_blocked_wait_reaped_the_leader" => {
            terminate_against_blocked_wait()
        }
        "orphan_reaper_takes_the_status_of_a_child_with_a_recycled_pid" => recycled_pid(),
        "refused_pidfd_send_signal_eperm_leaves_children_running" => refused_signal(libc::EPERM),
        "refused_pidfd_send_signal_enosys_leaves_children_running" => refused_signal(libc::ENOSYS),
        "pidfd_open_killing_profile_kills_the_host_in_cgroup_signal_tree" => pidfd_open_kills(),
        "stdin_write_to_an_exited_child_kills_a_host_with_default_sigpipe" => default_sigpipe(),
        "idle_orphan_reaper_keeps_waking_up" => idle_reaper(),
        "cgroup_leaf_names_collide_across_pid_namespaces" => names_across_pid_namespaces(),
        "cgroup-hold" => cgroup_hold(),
        "cgroup_mount_root_of_a_subtree_mount_is_ignored" => mount_root(),
        "nested_cgroup_members_survive_kill_tree_without_cgroup_kill" => nested_without_kill(),
        "cgroup_signal_tree_hits_an_unrelated_process_that_reused_a_frozen_members_pid" => {
            frozen_member_recycled()
        }
        "cgroup_leaf_lands_in_another_cgroup_bind_mounted_below_the_mount_point" => {
            bind_mount_below_the_mount_point()
        }
        "orphans_wait_for_the_60_s_scan_once_the_program_replaces_the_sigchld_handler" => {
            replaced_sigchld_handler()
        }
        "drop_reaper_wakes_every_second_while_a_dropped_child_runs" => idle_drop_reaper(),
        "orphan_reaper_handler_check_backs_off_on_every_wake_up_under_steady_traffic" => {
            orphan_schedule::handler_check_backs_off_on_every_wake_up_under_steady_traffic()
        }
        "pinning_a_tree_bigger_than_the_fd_limit_leaves_members_unsignalled" => {
            fd_pressure::pinning_a_tree_bigger_than_the_fd_limit_leaves_members_unsignalled()
        }
        "one_free_fd_too_few_gives_up_signalling_the_whole_tree" => {
            fd_pressure::one_free_fd_too_few_gives_up_signalling_the_whole_tree()
        }
        "cgroupfs_remounted_elsewhere_after_the_mounts_were_read_fails_cgroup_containment" => {
            remount::cgroupfs_remounted_elsewhere_after_the_mounts_were_read_fails_cgroup_containment()
        }
        "a_tree_running_across_a_cgroupfs_remount_is_taken_for_removed" => {
            remount::a_tree_running_across_a_cgroupfs_remount_is_taken_for_removed()
        }
        "unfrozen_cgroup_members_are_skipped_under_a_seccomp_filter_that_allows_pidfd_open" => {
            seccomp_members::unfrozen_members_skipped_under_a_filter_that_allows_pidfd_open()
        }
        "unfrozen_cgroup_members_are_skipped_silently_when_seccomp_refuses_pidfd_open" => {
            seccomp_members::unfrozen_members_skipped_silently_when_seccomp_refuses_pidfd_open()
        }
        other => panic!("unknown scenario {other}"),
    }
    assert!(
        children().is_empty(),
        "{name}: children left: {:?}",
        children()
    );
    println!("ok: {name}");
}

/// `sh -c 'sleep 60 & wait'` tagged `tag`, with both processes running.
fn sleeper_tree(tag: &str, mode: Containment) -> Child {
    let c = Command::new("sh")
        .args(["-c", "sleep 60 & wait"])
        .env("CHILDFD_TEST_TAG", tag)
        .containment(mode)
        .spawn()
        .unwrap();
    wait_tagged(tag, 2);
    c
}

/// Whether thread `tid` of this process is blocked in syscall `nr`.
fn in_syscall(tid: i32, nr: i64) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.split(' ').next() == Some(nr.to_string().as_str()))
}

/// A thread calling `c.wait()`, returned once it is blocked in `waitid`
/// (bounded; `what` names the scenario if it never blocks).
#[track_caller]
fn blocked_waiter(
    c: &Arc<Child>,
    what: &str,
) -> std::thread::JoinHandle<Result<childfd::ExitStatus, WaitError>> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let waiter = {
        let c = c.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            c.wait()
        })
    };
    let tid = tid_rx.recv().unwrap();
    assert!(
        eventually(BOUND, || in_syscall(tid, libc::SYS_waitid)),
        "{what}: the waiter never blocked in waitid"
    );
    waiter
}

/// Before Linux 6.9 (forced), a thread blocked in `wait` must not keep
/// `kill_tree`, `signal_tree` or `terminate` from another thread waiting
/// for ever on the reaping lock.
fn tree_ops_against_blocked_wait() {
    childfd::force_fallback::no_pidfd_group_signal();
    for op in ["kill_tree", "signal_tree", "terminate"] {
        let tag = new_tag(op);
        let c = Arc::new(sleeper_tree(&tag, Containment::ProcessGroup));
        let waiter = blocked_waiter(&c, op);
        let (tx, rx) = mpsc::channel();
        let c2 = c.clone();
        let worker = std::thread::spawn(move || {
            let r = match op {
                "kill_tree" => c2.kill_tree(),
                "signal_tree" => c2.signal_tree(Signal::TERM),
                _ => c2.terminate(Duration::from_secs(10)).map(|_| ()),
            };
            let _ = tx.send(r);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(r) => r.unwrap_or_else(|e| panic!("{op}: {e}")),
            Err(_) => {
                // Our unreaped child: its number is safe to use.
                childfd_testbin::kill(c.id() as i32, libc::SIGKILL);
                kill_tagged(&tag);
                panic!("{op} blocked for 20 s while another thread waited: deadlock");
            }
        }
        worker.join().unwrap();
        let status = waiter.join().unwrap().unwrap();
        assert!(status.signal().is_some(), "{op}: {status}");
        assert_no_survivors(&tag);
    }
}

/// Before Linux 6.9 (forced) the tree is signalled by number, only while
/// the leader is unreaped. A thread blocked in `wait` (or `wait_timeout`)
/// must not reap the leader when `terminate`'s SIGTERM kills it: the
/// SIGKILL after the grace must still reach a member that ignores SIGTERM.
fn terminate_against_blocked_wait() {
    childfd::force_fallback::no_pidfd_group_signal();
    for mode in [Containment::ProcessGroup, Containment::Session] {
        for how in ["wait", "wait_timeout"] {
            let tag = new_tag("term-vs-wait");
            let c = Arc::new(
                Command::new("sh")
                    .args(["-c", "(trap '' TERM; exec sleep 60) & exec sleep 60"])
                    .env("CHILDFD_TEST_TAG", &tag)
                    .containment(mode.clone())
                    .spawn()
                    .unwrap(),
            );
            // Both exec'd sleep: the member's TERM is ignored by then.
            assert!(eventually(BOUND, || {
                let t = childfd_testbin::tagged(&tag);
                t.len() == 2 && t.iter().all(|p| p.comm == "sleep")
            }));
            let member = childfd_testbin::tagged(&tag)
                .into_iter()
                .find(|p| p.pid != c.id() as i32)
                .unwrap()
                .pid;
            let (tid_tx, tid_rx) = mpsc::channel();
            let (wait_tx, wait_rx) = mpsc::channel();
            let c2 = c.clone();
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                let r = match how {
                    "wait" => c2.wait().map(Some),
                    _ => c2.wait_timeout(BOUND),
                };
                let _ = wait_tx.send(r);
            });
            let tid = tid_rx.recv().unwrap();
            let blocked = |tid: i32| match how {
                "wait" => in_syscall(tid, libc::SYS_waitid),
                _ => std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
                    .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('S'))),
            };
            assert!(eventually(BOUND, || blocked(tid)), "{how}: never blocked");
            let (tx, rx) = mpsc::channel();
            let c3 = c.clone();
            std::thread::spawn(move || {
                let _ = tx.send(c3.terminate(Duration::from_millis(300)));
            });
            let t = rx.recv_timeout(Duration::from_secs(20));
            let member_alive = alive(member);
            let waited = wait_rx.recv_timeout(Duration::from_secs(20));
            if member_alive || !matches!(t, Ok(Ok(_))) || waited.is_err() {
                // Our unreaped child's number, or nothing: safe either way.
                childfd_testbin::kill(c.id() as i32, libc::SIGKILL);
                kill_tagged(&tag);
            }
            let t = t
                .unwrap_or_else(|_| panic!("{mode:?} {how}: terminate hung 20 s"))
                .unwrap_or_else(|e| panic!("{mode:?} {how}: terminate failed: {e}"));
            assert!(
                !member_alive,
                "{mode:?} {how}: the member ignoring TERM survived"
            );
            assert_eq!(t.ended_by, EndedBy::Kill, "{mode:?} {how}");
            assert_eq!(t.status.signal(), Some(Signal::TERM), "{mode:?} {how}");
            let w = waited
                .unwrap_or_else(|_| panic!("{mode:?} {how}: the wait did not return"))
                .unwrap_or_else(|e| panic!("{mode:?} {how}: wait failed: {e}"));
            assert_eq!(w, Some(t.status), "{mode:?} {how}");
            drop(c);
            assert_no_survivors(&tag);
        }
    }
}

/// PID 1 of a fresh namespace: a foreign reaper takes child A, the next
/// spawn B gets A's pid (`ns_last_pid`), then A's owner learns A is gone.
/// The orphan pass must still see B as owned, and B's owner must get B's
/// status from `waitid` (kernel status recovery is off, as before 6.15).
fn recycled_pid() {
    assert_eq!(std::process::id(), 1, "not PID 1 of a new namespace");
    childfd::force_fallback::no_pidfd_exit_info();
    let a = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let p = a.id() as i32;
    let raw = childfd_testbin::waitpid(p);
    assert_eq!(libc::WEXITSTATUS(raw), 3, "the foreign reaper took A");
    std::fs::write("/proc/sys/kernel/ns_last_pid", (p - 1).to_string()).unwrap();
    let b = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
    assert_eq!(b.id() as i32, p, "ns_last_pid did not hand A's pid to B");
    assert!(
        matches!(a.wait(), Err(WaitError::StatusUnavailable { .. })),
        "A's status was taken by a foreign reaper"
    );
    drop(a);
    assert!(eventually(BOUND, || read_stat(p).is_some_and(|s| s.state == 'Z')));
    let orphans = childfd::reaper::reap_orphans().unwrap();
    assert!(
        !orphans.iter().any(|&(pid, _)| pid as i32 == p),
        "the orphan reaper took B's status: {orphans:?}"
    );
    let s = b.wait().expect("B's own status, from waitid");
    assert_eq!(s.code(), Some(7));
}

/// A seccomp profile refusing `pidfd_send_signal` (as valgrind does):
/// `kill`, `terminate` and `kill_on_drop` must still work, by pid, while
/// the child is unreaped.
fn refused_signal(errno: i32) {
    childfd_testbin::seccomp_deny(libc::SYS_pidfd_send_signal, errno);
    let c = Command::new(PAUSE).spawn().unwrap();
    c.kill().expect("kill falls back to kill(2)");
    let s = c.wait_timeout(BOUND).unwrap().expect("killed");
    assert_eq!(s.signal(), Some(Signal::KILL));
    c.kill()
        .expect("after the exit: nothing to signal, and no error");
    drop(c);

    // The fallback takes the reaping lock: a thread blocked in `wait`
    // must not keep `kill` from another thread waiting for it.
    let c = Arc::new(Command::new(PAUSE).spawn().unwrap());
    let waiter = blocked_waiter(&c, "refused pidfd_send_signal");
    let (tx, rx) = mpsc::channel();
    let c2 = c.clone();
    let killer = std::thread::spawn(move || tx.send(c2.kill()).unwrap());
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r.expect("kill while another thread waits"),
        Err(_) => {
            childfd_testbin::kill(c.id() as i32, libc::SIGKILL);
            panic!("kill blocked for 20 s while another thread waited");
        }
    }
    killer.join().unwrap();
    let s = waiter.join().unwrap().unwrap();
    assert_eq!(s.signal(), Some(Signal::KILL));
    drop(c);

    for mode in [
        Containment::ProcessGroup,
        Containment::Session,
        Containment::Inherit,
    ] {
        let tag = new_tag("refused-terminate");
        let c = Command::new(PAUSE)
            .env("CHILDFD_TEST_TAG", &tag)
            .containment(mode.clone())
            .spawn()
            .unwrap();
        let t = c.terminate(Duration::from_secs(10)).unwrap();
        assert_eq!(t.status.signal(), Some(Signal::TERM), "{mode:?}");
        drop(c);
        assert_no_survivors(&tag);
    }

    let tag = new_tag("refused-tree");
    let c = sleeper_tree(&tag, Containment::ProcessGroup);
    let t = c.terminate(Duration::from_secs(10)).unwrap();
    assert_eq!(t.ended_by, EndedBy::Term);
    drop(c);
    assert_no_survivors(&tag);

    for mode in [Containment::ProcessGroup, Containment::Inherit] {
        let tag = new_tag("refused-drop");
        let c = Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .env("CHILDFD_TEST_TAG", &tag)
            .containment(mode.clone())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_tagged(&tag, 2);
        let pid = c.id() as i32;
        drop(c);
        assert!(
            eventually(BOUND, || !alive(pid)),
            "{mode:?}: kill_on_drop left the child running"
        );
        if mode == Containment::ProcessGroup {
            assert_no_survivors(&tag);
        } else {
            kill_tagged(&tag);
        }
    }
    assert!(eventually(BOUND, || children().is_empty()));
}

/// A profile that kills the process on `pidfd_open`: signalling a cgroup
/// tree must not need one.
fn pidfd_open_kills() {
    let tag = new_tag("pidfd-open");
    let c = sleeper_tree(&tag, Containment::cgroup());
    let parent = c.cgroup_path().unwrap().parent().unwrap().to_path_buf();
    childfd_testbin::seccomp_kill_on(libc::SYS_pidfd_open);
    c.signal_tree(Signal::TERM).unwrap();
    assert!(c.wait_tree_deadline(Instant::now() + BOUND).unwrap());
    assert_eq!(c.wait().unwrap().signal(), Some(Signal::TERM));
    let t = c.terminate(Duration::from_secs(1)).unwrap();
    assert_eq!(t.ended_by, EndedBy::Term);
    let tag2 = new_tag("pidfd-open-terminate");
    let c2 = sleeper_tree(&tag2, Containment::cgroup());
    assert_eq!(
        c2.terminate(Duration::from_secs(10)).unwrap().ended_by,
        EndedBy::Term
    );
    drop((c, c2));
    assert_no_survivors(&tag);
    assert_no_survivors(&tag2);
    assert!(eventually(BOUND, || childfd_testbin::our_cgroup_leaves(
        &parent
    )
    .is_empty()));
}

/// A C-like host (SIGPIPE at its default action) writing to the stdin of
/// a child that has exited gets `BrokenPipe`, and lives.
fn default_sigpipe() {
    childfd_testbin::default_sigpipe();
    let mut c = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let mut w = c.take_stdin().unwrap();
    assert!(c.wait().unwrap().success());
    let e = w.write_all(b"to nobody").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    let e = w.write(&[0u8; 100_000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    // Nothing left behind: SIGPIPE neither pending nor blocked.
    // SAFETY: plain data, filled in by the kernel.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::sigpending(&mut set) };
    // SAFETY: `set` was filled in.
    let pending = unsafe { libc::sigismember(&set, libc::SIGPIPE) };
    assert_eq!(pending, 0, "SIGPIPE pending");
    // SAFETY: a null new set only reads the mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) };
    // SAFETY: `set` was filled in.
    let blocked = unsafe { libc::sigismember(&set, libc::SIGPIPE) };
    assert_eq!(blocked, 0, "SIGPIPE blocked");
    sigpipe_blocked_by_the_host_is_left_pending_and_kills_it_on_unblock();
}

/// A host that keeps SIGPIPE blocked itself (at its default action) got
/// `BrokenPipe`, but the SIGPIPE the write raised stayed pending, and the
/// host died the moment it unblocked SIGPIPE.
fn sigpipe_blocked_by_the_host_is_left_pending_and_kills_it_on_unblock() {
    // SAFETY: plain data, initialised by sigemptyset/sigaddset.
    let mut pipe_set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid, writable set; SIGPIPE is a valid signal.
    unsafe { libc::sigemptyset(&mut pipe_set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut pipe_set, libc::SIGPIPE) };
    // SAFETY: valid set; changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_set, std::ptr::null_mut()) };
    let mut c = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let mut w = c.take_stdin().unwrap();
    assert!(c.wait().unwrap().success());
    let e = w.write_all(b"to nobody").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    // SAFETY: plain data, filled in by the kernel.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::sigpending(&mut set) };
    // SAFETY: `set` was filled in.
    let pending = unsafe { libc::sigismember(&set, libc::SIGPIPE) };
    assert_eq!(pending, 0, "SIGPIPE left pending while the host blocks it");
    // With nothing pending, unblocking is harmless (it killed the host).
    // SAFETY: valid set; changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &pipe_set, std::ptr::null_mut()) };
}

/// `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` of thread `tid`.
fn switches(tid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    s.lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// An idle init (one service running, no orphan exiting) must cost no
/// wake-ups; the reaper still reaps an orphan as soon as it exits.
fn idle_reaper() {
    childfd::reaper::become_subreaper().unwrap();
    let reaper = childfd::reaper::Reaper::start().unwrap();
    let service = Command::new(PAUSE).spawn().unwrap();
    let sh = Command::new("sh")
        .args(["-c", "sleep 0.05 & exit 0"])
        .spawn()
        .unwrap();
    assert!(sh.wait_timeout(BOUND).unwrap().unwrap().success());
    assert!(
        eventually(BOUND, || reaper.reaped() >= 1),
        "the orphaned sleep was never reaped"
    );
    let tid = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|t| {
            std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
                .is_ok_and(|c| c.trim() == "childfd-orphans")
        })
        .expect("reaper thread");
    // A measuring window, not synchronisation: the thread should sleep
    // through it (the polling reaper woke 20 to 200 times per second).
    let before = switches(&tid);
    std::thread::sleep(Duration::from_secs(1));
    let woke = switches(&tid) - before;
    assert!(
        woke <= 2,
        "the idle orphan reaper woke {woke} times in one second"
    );
    service.kill().unwrap();
    service.wait().unwrap();
    drop(reaper);
    assert!(
        !std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "childfd-orphans")
            }),
        "the reaper thread outlived its handle"
    );
    println!("idle orphan reaper: {woke} wake-ups in 1 s");
}

/// Two PID-1 processes of different namespaces spawn into the same parent
/// cgroup; the second must not fail with EEXIST.
fn names_across_pid_namespaces() {
    let start = || {
        let mut child = run_wrapped("cgroup-hold", Wrap::PidNs, |_| {})
            .stdin(StdStdio::piped())
            .stdout(StdStdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line)
    };
    let (mut a, leaf_a) = start();
    assert!(leaf_a.starts_with("leaf "), "first PID 1: {leaf_a:?}");
    let (mut b, leaf_b) = start();
    drop(a.stdin.take());
    drop(b.stdin.take());
    let (sa, sb) = (a.wait().unwrap(), b.wait().unwrap());
    assert!(
        leaf_b.starts_with("leaf "),
        "second PID 1 could not spawn ({sb}): {leaf_b:?}"
    );
    assert_ne!(leaf_a, leaf_b);
    assert!(sa.success() && sb.success(), "{sa} {sb}");
    let parent = childfd_testbin::own_cgroup_dir().unwrap();
    assert!(childfd_testbin::cgroup_leaves_of(&parent, 1).is_empty());
}

/// PID 1 of a new namespace: spawn into a cgroup leaf, print it, hold it
/// until stdin closes.
fn cgroup_hold() {
    match Command::new(PAUSE)
        .containment(Containment::cgroup())
        .spawn()
    {
        Ok(c) => {
            println!("leaf {}", c.cgroup_path().unwrap().display());
            std::io::stdout().flush().unwrap();
            let mut rest = String::new();
            let _ = std::io::stdin().read_line(&mut rest);
            c.kill_tree().unwrap();
            assert!(c.wait_tree_deadline(Instant::now() + BOUND).unwrap());
            c.wait().unwrap();
            drop(c);
            assert!(children().is_empty());
            // The test closed our stdout after the first line.
            std::process::exit(0);
        }
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    }
}

/// In a private mount namespace, the cgroup2 mount is replaced by a bind
/// mount of a subtree (mountinfo root `/…/sub`), with this process inside
/// it: leaves must be found, created and signalled through the new mount.
fn mount_root() {
    let own = childfd_testbin::own_cgroup_dir().unwrap();
    let point = cgroup2_mount_point();
    let sub = own.join(format!("mountroot-{}", std::process::id()));
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    let target = std::env::temp_dir().join(format!("childfd-cgmnt-{}", std::process::id()));
    std::fs::create_dir_all(&target).unwrap();
    sh_ok(&format!(
        "mount --bind '{}' '{}' && umount -l '{}'",
        sub.display(),
        target.display(),
        point.display()
    ));
    assert_eq!(
        cgroup2_mount_point(),
        target,
        "the subtree is the only cgroup2 mount now"
    );

    for mode in [Containment::cgroup(), Containment::cgroup_in(&target)] {
        let tag = new_tag("mount-root");
        let c = sleeper_tree(&tag, mode.clone());
        let leaf = c.cgroup_path().unwrap().to_path_buf();
        assert!(leaf.starts_with(&target), "{mode:?}: {}", leaf.display());
        let t = c.terminate(Duration::from_secs(10)).unwrap();
        assert_eq!(t.ended_by, EndedBy::Term, "{mode:?}: TERM reached nobody");
        drop(c);
        assert_no_survivors(&tag);
        assert!(!leaf.exists(), "{mode:?}: leaf left: {}", leaf.display());
    }
    // The sub cgroup is removed by the parent test process once we exit.
    sh_ok(&format!(
        "umount '{}' && rmdir '{}'",
        target.display(),
        target.display()
    ));
    let _ = (own, sub);
}

fn sh_ok(script: &str) {
    let s = std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .unwrap();
    assert!(s.success(), "{script}: {s}");
}

fn cgroup2_mount_point() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = info
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| left.split(' ').nth(4).map(str::to_string))?
        })
        .expect("a cgroup2 mount");
    PathBuf::from(p)
}

/// Without `cgroup.kill` (forced), `kill_tree` must kill a member that
/// moved into a cgroup below the leaf, and remove the nested cgroups.
fn nested_without_kill() {
    childfd::force_fallback::no_cgroup_kill();
    let tag = new_tag("nested-nokill");
    let c = Command::new("sh")
        .args(["-c", "sh -c 'echo $$; exec sleep 60' & wait"])
        .env("CHILDFD_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let mut c = c;
    let mut line = String::new();
    BufReader::new(c.take_stdout().unwrap())
        .read_line(&mut line)
        .unwrap();
    let member: i32 = line.trim().parse().unwrap();
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    let nested = leaf.join("nested/deeper");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("cgroup.procs"), member.to_string()).unwrap();
    let started = Instant::now();
    c.kill_tree().unwrap_or_else(|e| {
        kill_tagged(&tag);
        panic!("kill_tree failed after {:?}: {e}", started.elapsed())
    });
    assert!(c.wait_tree_deadline(Instant::now() + BOUND).unwrap());
    assert_eq!(c.wait().unwrap().signal(), Some(Signal::KILL));
    let parent = leaf.parent().unwrap().to_path_buf();
    drop(c);
    assert_no_survivors(&tag);
    assert!(
        eventually(BOUND, || !leaf.exists()),
        "leaf with nested cgroups left: {}",
        leaf.display()
    );
    let _ = Path::new(&parent);
}

/// The unrelated process that got a killed member's pid (set by the hook).
static STRANGER: std::sync::Mutex<Option<std::process::Child>> = std::sync::Mutex::new(None);

/// Between the library's reading of the tree's members and its signals:
/// SIGKILL the highest listed member (it exits although frozen), reap it
/// as its parent (we are init), and hand its pid to a new process outside
/// the tree through `ns_last_pid`.
fn recycle_a_member(listed: &[i32]) {
    let mut stranger = STRANGER.lock().unwrap();
    if stranger.is_some() {
        return;
    }
    let Some(&m) = listed.iter().max() else {
        return;
    };
    childfd_testbin::kill(m, libc::SIGKILL);
    childfd_testbin::waitpid(m);
    std::fs::write("/proc/sys/kernel/ns_last_pid", (m - 1).to_string()).unwrap();
    // SIGTERM blocked (the mask survives exec), so a SIGTERM sent to it
    // stays pending where the test can see it.
    let mut cmd = std::process::Command::new(PAUSE);
    // SAFETY: the closure only calls async-signal-safe libc functions.
    #[allow(clippy::multiple_unsafe_ops_per_block)]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let s = cmd.spawn().unwrap();
    assert_eq!(
        s.id() as i32,
        m,
        "ns_last_pid did not hand the member's pid on"
    );
    *stranger = Some(s);
}

/// PID 1 of a fresh namespace: a cgroup tree's member, orphaned to us, is
/// SIGKILLed and reaped by us while `signal_tree` has the tree frozen and
/// its members listed, and its pid goes to a process outside the tree.
/// That process must not get the tree's signal.
fn frozen_member_recycled() {
    assert_eq!(std::process::id(), 1, "not PID 1 of a new namespace");
    let tag = new_tag("frozen-recycle");
    let c = Command::new("sh")
        .args(["-c", "(sleep 60 &); exec sleep 60"])
        .env("CHILDFD_TEST_TAG", &tag)
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    let listed = || std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap();
    assert!(
        eventually(BOUND, || listed().lines().count() == 2
            && read_stat(c.id() as i32).is_some_and(|p| p.comm == "sleep")),
        "tree did not start: {}",
        listed()
    );
    childfd::test_hooks::on_cgroup_members_listed(recycle_a_member);
    c.signal_tree(Signal::TERM).unwrap();
    let mut stranger = STRANGER.lock().unwrap().take().expect("the hook ran");
    let status = std::fs::read_to_string(format!("/proc/{}/status", stranger.id())).unwrap();
    let _ = stranger.kill();
    let _ = stranger.wait();
    let pending = status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .fold(0, |a, b| a | b);
    assert_eq!(
        pending & (1 << (libc::SIGTERM - 1)),
        0,
        "the tree's SIGTERM reached an unrelated process holding a dead member's pid"
    );
    assert_eq!(
        c.wait_timeout(BOUND).unwrap().unwrap().signal(),
        Some(Signal::TERM)
    );
    assert!(c.wait_tree_deadline(Instant::now() + BOUND).unwrap());
    drop(c);
    assert_no_survivors(&tag);
    assert!(
        eventually(BOUND, || !leaf.exists()),
        "leaf left: {}",
        leaf.display()
    );
}

/// In a private mount namespace, another cgroup S is bind-mounted onto the
/// directory of this process's own cgroup C, below the cgroup2 mount point.
/// mountinfo lists the bind mount (root S, point C's directory), yet the
/// directory was taken to be C: a leaf for C was made in S. It must be
/// made in C, or not at all (C has no visible directory).
fn bind_mount_below_the_mount_point() {
    let own = childfd_testbin::own_cgroup_dir().unwrap();
    let pid = std::process::id();
    let mine = own.join(format!("belowmount-{pid}"));
    let other = own.join(format!("belowmount-{pid}-other"));
    std::fs::create_dir(&mine).unwrap();
    std::fs::create_dir(&other).unwrap();
    std::fs::write(mine.join("cgroup.procs"), pid.to_string()).unwrap();
    let own_cg = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/cgroup"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(PathBuf::from))
            .unwrap()
    };
    let mine_cg = own_cg(pid);
    sh_ok(&format!(
        "mount --bind '{}' '{}'",
        other.display(),
        mine.display()
    ));
    let spawned = Command::new(PAUSE)
        .containment(Containment::cgroup())
        .spawn();
    // What S holds now (seen through the bind mount itself, which shows S).
    let in_other: Vec<_> = std::fs::read_dir(&mine)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    let child_cg = match &spawned {
        Ok(c) => {
            let cg = own_cg(c.id());
            c.kill_tree().unwrap();
            assert!(c.wait_tree_deadline(Instant::now() + BOUND).unwrap());
            c.wait().unwrap();
            Some(cg)
        }
        Err(e) => {
            println!("spawn refused, as it may be: {e}");
            None
        }
    };
    drop(spawned);
    // Clean up before judging: back to our cgroup, unmount, remove.
    std::fs::write(own.join("cgroup.procs"), pid.to_string()).unwrap();
    sh_ok(&format!("umount '{}'", mine.display()));
    let left_in_other: Vec<_> = std::fs::read_dir(&other)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for d in &left_in_other {
        let _ = std::fs::remove_dir(d);
    }
    assert!(eventually(BOUND, || std::fs::remove_dir(&mine).is_ok()));
    std::fs::remove_dir(&other).unwrap();
    assert!(
        in_other.is_empty(),
        "a leaf was made in the cgroup bind-mounted over ours: {in_other:?} (child in {child_cg:?})"
    );
    if let Some(cg) = child_cg {
        assert!(
            cg.starts_with(&mine_cg),
            "child in {} instead of below {}",
            cg.display(),
            mine_cg.display()
        );
    }
}

/// The program's own SIGCHLD handler (does nothing).
extern "C" fn program_sigchld(_: libc::c_int) {}

/// A subreaper starts the orphan `Reaper`, then installs its own SIGCHLD
/// handler (libraries first, then the program's: a common order). The
/// reaper's handler is gone; an orphan that exits next was reaped only at
/// the 60 s safety scan. It must be reaped within a few seconds.
fn replaced_sigchld_handler() {
    childfd::reaper::become_subreaper().unwrap();
    let reaper = childfd::reaper::Reaper::start().unwrap();
    childfd_testbin::install_handler(libc::SIGCHLD, program_sigchld);
    // Spawned by childfd (a `Child` is never reaped by the orphan pass; a
    // std child of ours would be, as any child no `Child` owns).
    let sh = Command::new("sh")
        .args(["-c", "sleep 0.1 & exit 0"])
        .spawn()
        .unwrap();
    assert!(sh.wait_timeout(BOUND).unwrap().unwrap().success());
    let started = Instant::now();
    // Far below the 60 s scan, far above the ~1 s this should take.
    let reaped = eventually(Duration::from_secs(10), || reaper.reaped() >= 1);
    let took = started.elapsed();
    drop(reaper);
    childfd_testbin::default_handler(libc::SIGCHLD);
    assert!(
        reaped,
        "the orphan was not reaped within 10 s of its exit after the program replaced SIGCHLD's handler"
    );
    println!("orphan reaped {took:?} after the program's handler replaced the reaper's");
}

/// Voluntary context switches of this process's thread named `name`.
fn voluntary_switches(name: &str) -> Option<u64> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// A dropped child that keeps running: the drop reaper woke once a second
/// for as long as it ran. Over 7 s it must wake a few times at most.
fn idle_drop_reaper() {
    let c = Command::new(PAUSE).spawn().unwrap();
    let pid = c.id() as i32;
    drop(c);
    assert!(
        eventually(BOUND, || voluntary_switches("childfd-reaper").is_some()),
        "no drop reaper thread"
    );
    // A measuring window, not synchronisation: the thread should sleep
    // through most of it.
    let before = voluntary_switches("childfd-reaper").unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let woke = voluntary_switches("childfd-reaper").unwrap() - before;
    childfd_testbin::kill(pid, libc::SIGKILL);
    assert!(
        eventually(BOUND, || childfd::pending_reaps() == 0
            && read_stat(pid).is_none()),
        "the dropped child was not reaped after its exit"
    );
    assert!(
        woke <= 3,
        "the drop reaper woke {woke} times in 7 s while one dropped child ran"
    );
    println!("drop reaper: {woke} wake-ups in 7 s");
}
