//! Whole process trees: orphans left by killing only the direct child,
//! escapees, fork loops, stopped members, TERM-ignoring trees, and cgroup
//! leaves left behind. Every test ends with no survivor (found by a tag in
//! the environment, which escapees keep) and no leftover cgroup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use childfd::{Child, Command, Containment, EndedBy, Signal, SpawnStage, Stdio};
use childfd_testbin::{Hygiene, assert_no_survivors, new_tag, tagged, wait_tagged};

const BOUND: Duration = Duration::from_secs(30);

/// Starts a test: this process becomes a subreaper running childfd's
/// orphan reaper, so members orphaned by a kill come back to us and are
/// reaped at once (not left as zombies for init), then [`Hygiene`].
fn start() -> Hygiene {
    static REAPER: std::sync::OnceLock<childfd::reaper::Reaper> = std::sync::OnceLock::new();
    REAPER.get_or_init(|| {
        childfd::reaper::become_subreaper().unwrap();
        childfd::reaper::Reaper::start().unwrap()
    });
    Hygiene::start()
}

fn tree(tag: &str, script: &str, containment: Containment) -> Child {
    Command::new("sh")
        .args(["-c", script])
        .env("CHILDFD_TEST_TAG", tag)
        .stdout(Stdio::null())
        .containment(containment)
        .spawn()
        .expect("spawn tree")
}

/// The directory holding the child's cgroup leaf (cgroup mode), to check
/// afterwards that no leaf is left in it.
fn cgroup_parent(c: &Child) -> Option<std::path::PathBuf> {
    c.cgroup_path()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

fn modes() -> Vec<(&'static str, Containment)> {
    vec![
        ("pgroup", Containment::ProcessGroup),
        ("session", Containment::Session),
        ("cgroup", Containment::cgroup()),
    ]
}

#[track_caller]
fn gone_within(child: &Child, d: Duration) {
    assert!(
        child.wait_tree_deadline(Instant::now() + d).unwrap(),
        "tree of {} not gone",
        child.id()
    );
}

/// The cgroup directory that leaves are created in, checked empty of ours.
#[track_caller]
fn assert_no_leftover_cgroups(parent: Option<PathBuf>) {
    if let Some(p) = parent {
        assert!(
            childfd_testbin::eventually(BOUND, || childfd_testbin::our_cgroup_leaves(&p)
                .is_empty()),
            "cgroup leaves left: {:?}",
            childfd_testbin::our_cgroup_leaves(&p)
        );
    }
}

/// The end of a tree test: the tree is gone (bounded), no tagged process
/// survives, and once the child is dropped no cgroup leaf of its is left.
#[track_caller]
fn assert_tree_gone(c: Child, tag: &str) {
    let parent = cgroup_parent(&c);
    gone_within(&c, BOUND);
    assert_no_survivors(tag);
    drop(c);
    assert_no_leftover_cgroups(parent);
}

/// `start.sh` in `mode`, once it, `sub.sh` and a sleep run (tagged `tag`);
/// the scripts are in `dir` ([`scripts_dir`]).
#[track_caller]
fn start_sh(tag: &str, dir: &Path, mode: Containment) -> Child {
    let c = tree(tag, &format!("exec sh {}/start.sh", dir.display()), mode);
    wait_tagged(tag, 3);
    c
}

fn scripts_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("childfd-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("start.sh"), "sh \"$(dirname \"$0\")/sub.sh\"\n").unwrap();
    std::fs::write(
        d.join("sub.sh"),
        "while :; do echo tick; sleep 0.05; done\n",
    )
    .unwrap();
    d
}

#[test]
fn killing_the_tree_of_start_sh_leaves_no_orphaned_sub_sh() {
    let h = start();
    for (name, mode) in modes() {
        let tag = new_tag(&format!("startsh-{name}"));
        let dir = scripts_dir(&tag);
        let c = start_sh(&tag, &dir, mode);
        c.kill_tree().unwrap();
        assert_eq!(
            c.wait_timeout(BOUND).unwrap().and_then(|s| s.signal()),
            Some(Signal::KILL)
        );
        assert_tree_gone(c, &tag);
        std::fs::remove_dir_all(dir).unwrap();
    }
    h.finish(3);
}

#[test]
fn killing_only_start_sh_orphans_sub_sh_until_kill_tree_after_the_leader_died() {
    let h = start();
    for (name, mode) in modes() {
        let tag = new_tag(&format!("leaderfirst-{name}"));
        let dir = scripts_dir(&tag);
        let c = start_sh(&tag, &dir, mode);
        c.kill().unwrap();
        c.wait_timeout(BOUND).unwrap().expect("start.sh killed");
        // The failure this prevents: sub.sh keeps running, re-parented.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !tagged(&tag).is_empty(),
            "{name}: sub.sh should still run after killing only start.sh"
        );
        // The leader is reaped; the tree can still be killed (by struct pid
        // or cgroup, never by a possibly recycled number).
        c.kill_tree().unwrap();
        assert_tree_gone(c, &tag);
        std::fs::remove_dir_all(dir).unwrap();
    }
    h.finish(3);
}

#[test]
fn kill_tree_kills_the_sleep_of_sh_c_under_bash_and_dash() {
    let h = start();
    for shell in ["/bin/bash", "/bin/dash"] {
        if !Path::new(shell).exists() {
            eprintln!("WARNING: {shell} is not installed; not tested with it");
            continue;
        }
        let tag = new_tag("shc");
        // `sleep 300; true` keeps the shell from exec'ing the sleep.
        let c = Command::new(shell)
            .args(["-c", "sleep 300; true"])
            .env("CHILDFD_TEST_TAG", &tag)
            .spawn()
            .unwrap();
        wait_tagged(&tag, 2);
        c.kill_tree().unwrap();
        assert_tree_gone(c, &tag);
    }
    h.finish(3);
}

/// A tree with a `setsid` escapee and a double-forked daemon.
const ESCAPEES: &str = "setsid sleep 300 & (sleep 300 &); sleep 300";

#[test]
fn cgroup_mode_kills_setsid_and_double_forked_escapees() {
    let h = start();
    let tag = new_tag("escape-cgroup");
    let c = tree(&tag, ESCAPEES, Containment::cgroup());
    wait_tagged(&tag, 4);
    c.kill_tree().unwrap();
    assert_tree_gone(c, &tag);
    h.finish(3);
}

#[test]
fn group_mode_cannot_reach_a_setsid_escapee_and_says_the_tree_is_gone() {
    let h = start();
    for (name, mode) in [
        ("pgroup", Containment::ProcessGroup),
        ("session", Containment::Session),
    ] {
        let tag = new_tag(&format!("escape-{name}"));
        let c = tree(&tag, ESCAPEES, mode);
        // Settled: all three sleeps exec'd (so `setsid` has run: a snapshot
        // while it still runs shows it in the leader's group), and the
        // subshell that started the double-forked one has exited.
        let settled = || {
            let m = tagged(&tag);
            let sleeps = m.iter().filter(|p| p.comm == "sleep").count();
            (m.len() == 4 && sleeps == 3).then_some(m)
        };
        assert!(
            childfd_testbin::eventually(BOUND, || settled().is_some()),
            "{name}: tree never settled: {:?}",
            tagged(&tag)
        );
        let members = settled().expect("a settled tree stays so");
        let escapee: Vec<_> = members
            .iter()
            .filter(|p| p.pgrp != c.id() as i32)
            .map(|p| p.pid)
            .collect();
        assert_eq!(
            escapee.len(),
            1,
            "{name}: one setsid escapee expected: {members:?}"
        );
        let t = c.terminate(Duration::from_secs(5)).unwrap();
        // What group mode reports: its tree (the group) is gone, by TERM ...
        assert_eq!(t.ended_by, EndedBy::Term);
        // ... and the double-forked sleep (same group) died with it, but the
        // setsid one is out of reach, as documented.
        let left: Vec<_> = tagged(&tag).iter().map(|p| p.pid).collect();
        assert_eq!(
            left, escapee,
            "{name}: only the setsid escapee should survive"
        );
        childfd_testbin::kill_tagged(&tag);
        assert_no_survivors(&tag);
    }
    h.finish(3);
}

#[test]
fn a_fork_loop_is_killed_completely_in_cgroup_mode() {
    let h = start();
    let tag = new_tag("forkloop");
    let c = tree(&tag, "while :; do sleep 1000 & done", Containment::cgroup());
    wait_tagged(&tag, 50);
    let start = Instant::now();
    c.kill_tree().unwrap();
    gone_within(&c, BOUND);
    eprintln!("fork loop killed in {:?}", start.elapsed());
    assert_tree_gone(c, &tag);
    h.finish(3);
}

#[test]
fn terminate_reaches_a_stopped_member_with_term() {
    let h = start();
    for (name, mode) in modes() {
        let tag = new_tag(&format!("stopped-{name}"));
        let c = tree(&tag, "sleep 300 & kill -STOP $!; wait", mode);
        let members = wait_tagged(&tag, 2);
        assert!(
            childfd_testbin::eventually(BOUND, || tagged(&tag).iter().any(|p| p.state == 'T')),
            "{name}: no stopped member: {members:?}"
        );
        let t = c.terminate(Duration::from_secs(10)).unwrap();
        // Without SIGCONT the stopped sleep would only die by SIGKILL.
        assert_eq!(t.ended_by, EndedBy::Term, "{name}");
        assert_eq!(t.status.signal(), Some(Signal::TERM), "{name}");
        assert_no_survivors(&tag);
    }
    h.finish(3);
}

#[test]
fn terminate_kills_a_tree_that_ignores_term_after_the_grace() {
    let h = start();
    for (name, mode) in modes() {
        let tag = new_tag(&format!("ignoreterm-{name}"));
        // The disposition SIG_IGN survives exec, so the sleep ignores it too.
        let c = tree(&tag, "trap '' TERM; sleep 300 & wait", mode);
        wait_tagged(&tag, 2);
        let start = Instant::now();
        let t = c.terminate(Duration::from_millis(200)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(t.ended_by, EndedBy::Kill, "{name}");
        assert_eq!(t.status.signal(), Some(Signal::KILL), "{name}");
        assert_no_survivors(&tag);
    }
    h.finish(3);
}

#[test]
fn a_dropped_cgroup_child_leaves_no_cgroup_directory() {
    let h = start();
    // Still running when dropped: the leaf goes once the tree ends.
    let tag = new_tag("dropcg");
    let c = tree(&tag, "sleep 0.3 & sleep 0.2", Containment::cgroup());
    let parent = cgroup_parent(&c);
    drop(c);
    assert_no_leftover_cgroups(parent.clone());
    // With kill_on_drop, an escapee is killed and the leaf removed.
    let tag2 = new_tag("dropcg-kill");
    let c = Command::new("sh")
        .args(["-c", ESCAPEES])
        .env("CHILDFD_TEST_TAG", &tag2)
        .containment(Containment::cgroup())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_tagged(&tag2, 4);
    drop(c);
    assert_no_survivors(&tag2);
    assert_no_survivors(&tag);
    assert_no_leftover_cgroups(parent);
    h.finish(3);
}

#[test]
fn cgroup_mode_without_a_usable_cgroup_fails_clearly_and_creates_nothing() {
    let h = start();
    let e = Command::new("true")
        .containment(Containment::cgroup_in("/tmp"))
        .spawn()
        .unwrap_err();
    assert_eq!(
        (e.stage(), e.kind()),
        (SpawnStage::Cgroup, std::io::ErrorKind::InvalidInput),
        "{e}"
    );
    let msg = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(msg.contains("not inside the cgroup v2 mount"), "{msg}");
    let mount = Command::new("true")
        .containment(Containment::cgroup())
        .spawn()
        .map(|c| {
            let p = c.cgroup_path().unwrap().parent().unwrap().to_path_buf();
            c.wait().unwrap();
            p
        });
    if let Ok(parent) = mount {
        let e = Command::new("true")
            .containment(Containment::cgroup_in(parent.join("no-such-dir")))
            .spawn()
            .unwrap_err();
        assert_eq!(
            (e.stage(), e.kind()),
            (SpawnStage::Cgroup, std::io::ErrorKind::NotFound),
            "{e}"
        );
        assert_no_leftover_cgroups(Some(parent));
    } else {
        eprintln!(
            "WARNING: no writable cgroup v2 on this machine: {:?}",
            mount.err()
        );
    }
    h.finish(3);
}

#[test]
fn a_pdeathsig_child_survives_the_exit_of_the_thread_that_spawned_it() {
    let h = start();
    let c = std::thread::spawn(|| {
        Command::new(childfd_testbin::PAUSE)
            .pdeathsig(Signal::KILL)
            .spawn()
            .unwrap()
    })
    .join()
    .unwrap();
    // The spawning thread has exited; with a naive spawn the kernel would
    // have sent SIGKILL to the child now.
    assert_eq!(
        c.wait_timeout(Duration::from_millis(300)).unwrap(),
        None,
        "child died with its spawning thread"
    );
    c.kill().unwrap();
    c.wait_timeout(BOUND).unwrap().unwrap();
    drop(c);
    // childfd-reaper, childfd-spawner and childfd-orphans.
    h.finish(3);
}

#[test]
fn inherit_mode_reaches_the_child_only() {
    let h = start();
    let tag = new_tag("inherit");
    let c = tree(&tag, "sleep 300; true", Containment::Inherit);
    // The sleep has exec'd: before that it is a copy of `sh`.
    let sleep = || {
        tagged(&tag)
            .into_iter()
            .find(|p| p.comm == "sleep" && p.ppid == c.id() as i32)
    };
    assert!(
        childfd_testbin::eventually(BOUND, || sleep().is_some()),
        "the sleep never started: {:?}",
        tagged(&tag)
    );
    let sleep = sleep().expect("started").pid;
    c.kill_tree().unwrap();
    assert_eq!(
        c.wait_timeout(BOUND).unwrap().and_then(|s| s.signal()),
        Some(Signal::KILL)
    );
    // The sleep was not reached: as documented, Inherit contains nothing.
    // (The shell is reaped; the sleep, if hit, would be dying or a zombie.)
    let left: Vec<_> = tagged(&tag).into_iter().map(|p| (p.pid, p.state)).collect();
    let status = std::fs::read_to_string(format!("/proc/{sleep}/status")).unwrap_or_default();
    let kill_pending = status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .any(|v| u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & (1 << 8) != 0));
    assert!(
        left.len() == 1 && left[0].0 == sleep && !kill_pending,
        "only the sleep {sleep} should be left, unsignalled: {left:?}"
    );
    childfd_testbin::kill_tagged(&tag);
    assert_no_survivors(&tag);
    drop(c);
    h.finish(3);
}

#[test]
fn tree_operations_after_the_cgroup_leaf_was_removed_are_no_ops() {
    // Found by the stress suite: terminate() removes the emptied leaf, and
    // a later signal_tree/terminate/wait_tree failed on its missing files.
    let h = start();
    let tag = new_tag("cg-after");
    let c = tree(&tag, "exit 0", Containment::cgroup());
    let t = c.terminate(Duration::from_millis(50)).unwrap();
    assert!(t.status.success() || t.status.signal() == Some(Signal::TERM));
    c.signal_tree(Signal::TERM).unwrap();
    c.kill_tree().unwrap();
    assert!(c.wait_tree_deadline(Instant::now()).unwrap());
    assert_eq!(c.terminate(Duration::ZERO).unwrap().status, t.status);
    let parent = cgroup_parent(&c);
    drop(c);
    assert_no_leftover_cgroups(parent);
    h.finish(3);
}

#[test]
fn tree_operations_racing_a_terminate_that_removes_the_leaf_fail_with_enoent() {
    // Found by an adversarial test: while one thread's terminate() ended
    // the tree and removed the leaf, another thread's signal_tree or
    // kill_tree failed with ENOENT or ENODEV (in most of 40 rounds) though
    // an empty tree is not an error.
    let h = start();
    let mut failures = Vec::new();
    for round in 0..20 {
        let tag = new_tag("cg-race");
        let c = tree(&tag, "sleep 30 & exec sleep 30", Containment::cgroup());
        wait_tagged(&tag, 2);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let looping = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let looper = s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    looping.store(true, std::sync::atomic::Ordering::Relaxed);
                    let r = if round % 2 == 0 {
                        c.signal_tree(Signal::CONT)
                    } else {
                        c.kill_tree()
                    };
                    if let Err(e) = r {
                        return Some(format!("{e}: {:?}", std::error::Error::source(&e)));
                    }
                    n += 1;
                }
                assert!(n > 0);
                None
            });
            // No race without the looper: on a loaded machine its thread
            // may not run before terminate() is done.
            assert!(
                childfd_testbin::eventually(BOUND, || looping
                    .load(std::sync::atomic::Ordering::Relaxed)),
                "round {round}: the looper never ran"
            );
            let t = c.terminate(Duration::from_secs(5));
            // Keep racing a little after the leaf is gone.
            let until = Instant::now() + Duration::from_millis(5);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = t {
                failures.push(format!("round {round}: terminate: {e}"));
            }
            if let Some(e) = looper.join().unwrap() {
                failures.push(format!("round {round}: {e}"));
            }
        });
        assert_tree_gone(c, &tag);
    }
    assert!(failures.is_empty(), "{failures:#?}");
    h.finish(3);
}
