//! Each fallback for older kernels or restricted environments, forced on
//! this machine and checked to work.
//!
//! Fallbacks are process-wide, so each scenario runs in its own process:
//! `main` re-runs this binary with `CHILDFD_FALLBACK_SCENARIO` set.
//! `harness = false` keeps the scenario process single-threaded (a seccomp
//! filter applies to the thread that installs it and what it spawns).

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::time::Duration;

use childfd::{Command, SpawnMethod, SpawnStage, Stdio};

const SCENARIOS: &[&str] = &[
    "clone3-einval",
    "no-group-signal",
    "no-cgroup-kill",
    "clone3-enosys",
    "clone3-eperm",
    "clone-pidfd-refused",
    "forced-clone3-fork",
    "forced-clone-vm",
    "no-close-range",
    "no-close-range-unshare",
    "no-clone-into-cgroup",
    "under-valgrind",
    "no-exit-info",
];

fn main() {
    match std::env::var("CHILDFD_FALLBACK_SCENARIO") {
        Ok(s) => scenario(&s),
        Err(_) => {
            for s in SCENARIOS {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .env("CHILDFD_FALLBACK_SCENARIO", s)
                    .env_remove("CHILDFD_SPAWN_METHOD")
                    .output()
                    .unwrap();
                echo_and_check(&out, &format!("scenario {s}"));
            }
        }
    }
}

/// Prints what a scenario process printed; fails if it failed.
fn echo_and_check(out: &std::process::Output, what: &str) {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    print!("{text}");
}

/// What every method must still do right.
fn basic_checks(expected: SpawnMethod) {
    assert_eq!(childfd::spawn_method(), expected);
    for n in [0, 3, 77] {
        let c = Command::new("sh")
            .args(["-c", &format!("exit {n}")])
            .spawn()
            .unwrap();
        assert_eq!(
            c.wait_timeout(Duration::from_secs(30))
                .unwrap()
                .unwrap()
                .code(),
            Some(n)
        );
    }
    let mut c = Command::new("echo")
        .arg("hi")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = String::new();
    c.take_stdout().unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "hi\n");
    c.wait().unwrap();
    let e = Command::new("/no/such/program").spawn().unwrap_err();
    assert_eq!(
        (e.kind(), e.stage()),
        (ErrorKind::NotFound, SpawnStage::Exec)
    );
    let e = Command::new("true")
        .current_dir("/no/such/dir")
        .spawn()
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.stage()),
        (ErrorKind::NotFound, SpawnStage::Chdir)
    );
    // A fd without O_CLOEXEC must not leak, low or among many.
    let secret = std::fs::File::open("/etc/hostname").unwrap();
    rustix::io::fcntl_setfd(&secret, rustix::io::FdFlags::empty()).unwrap();
    let fd = secret.as_raw_fd();
    let c = Command::new("sh")
        .args(["-c", &format!("test ! -e /proc/self/fd/{fd}")])
        .spawn()
        .unwrap();
    assert!(c.wait().unwrap().success(), "fd {fd} leaked");
    let many: Vec<_> = (0..300)
        .map(|_| rustix::io::dup(&secret).unwrap())
        .collect();
    let high = many.last().unwrap().as_raw_fd();
    let mut c = Command::new("sh")
        .args([
            "-c",
            &format!("cat; test ! -e /proc/self/fd/{fd} && test ! -e /proc/self/fd/{high}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut w = c.take_stdin().unwrap();
        w.write_all(b"many").unwrap();
    }
    let mut s = String::new();
    c.take_stdout().unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "many");
    assert!(c.wait().unwrap().success(), "fd {fd} or {high} leaked");
    drop(many);
    assert!(
        childfd_testbin::children().is_empty(),
        "zombies left: {:?}",
        childfd_testbin::children()
    );
    println!("scenario ok: method {expected:?}");
}

/// Makes this process a subreaper until dropped, then reaps the tree's
/// orphans itself (rather than leaving zombies for init) and checks none
/// is left.
struct OrphansReaped;

impl OrphansReaped {
    fn start() -> OrphansReaped {
        childfd::reaper::become_subreaper().unwrap();
        OrphansReaped
    }
}

impl Drop for OrphansReaped {
    fn drop(&mut self) {
        let done = childfd_testbin::eventually(Duration::from_secs(10), || {
            childfd::reaper::reap_orphans().unwrap();
            childfd_testbin::children().is_empty()
        });
        assert!(
            done || std::thread::panicking(),
            "orphans left: {:?}",
            childfd_testbin::children()
        );
    }
}

fn scenario(name: &str) {
    let native = if cfg!(target_arch = "x86_64") {
        SpawnMethod::Clone3Vm
    } else {
        SpawnMethod::Clone3Fork
    };
    let legacy = if cfg!(target_arch = "x86_64") {
        SpawnMethod::CloneVm
    } else {
        SpawnMethod::Clone3Fork
    };
    match name {
        // A container runtime's seccomp profile refusing clone3.
        "clone3-enosys" => {
            childfd_testbin::seccomp_deny(libc::SYS_clone3, libc::ENOSYS);
            basic_checks(legacy);
        }
        "clone3-eperm" => {
            childfd_testbin::seccomp_deny(libc::SYS_clone3, libc::EPERM);
            basic_checks(legacy);
        }
        // A profile (or valgrind) that refuses clone3 and CLONE_PIDFD on the
        // legacy clone as well: children are cloned without it and their
        // pidfd opened with pidfd_open, never EINVAL.
        "clone-pidfd-refused" => {
            childfd_testbin::seccomp_deny(libc::SYS_clone3, libc::ENOSYS);
            childfd_testbin::seccomp_deny_with_flag(
                libc::SYS_clone,
                0,
                libc::CLONE_PIDFD as u32,
                libc::EPERM,
            );
            // The first spawn under the filter, of a missing program: the
            // exec error, not the refusal.
            let e = Command::new("/no/such/program").spawn().unwrap_err();
            assert_eq!(
                (e.kind(), e.stage()),
                (ErrorKind::NotFound, SpawnStage::Exec)
            );
            basic_checks(legacy);
            // A dropped running child is still reaped through its pidfd.
            drop(Command::new(childfd_testbin::SLEEP200).spawn().unwrap());
            assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
                childfd_testbin::children().is_empty()
            }));
            println!("scenario ok: clone without CLONE_PIDFD, then pidfd_open");
        }
        // The method of architectures without the CLONE_VM trampoline.
        "forced-clone3-fork" => {
            // SAFETY: single-threaded process; nothing reads the environment concurrently.
            unsafe { std::env::set_var("CHILDFD_SPAWN_METHOD", "clone3-fork") };
            basic_checks(SpawnMethod::Clone3Fork);
        }
        "forced-clone-vm" => {
            // SAFETY: single-threaded process; nothing reads the environment concurrently.
            unsafe { std::env::set_var("CHILDFD_SPAWN_METHOD", "clone-vm") };
            basic_checks(SpawnMethod::CloneVm);
        }
        // Kernels before 5.11: fds marked close-on-exec one by one.
        "no-close-range" => {
            childfd::force_fallback::no_close_range();
            basic_checks(native);
        }
        // A seccomp filter that refuses close_range's CLOSE_RANGE_UNSHARE:
        // the child falls back to unshare(CLONE_FILES), a whole copy.
        "no-close-range-unshare" => {
            childfd_testbin::seccomp_deny_with_flag(
                libc::SYS_close_range,
                2,
                libc::CLOSE_RANGE_UNSHARE,
                libc::EPERM,
            );
            basic_checks(native);
        }
        // valgrind refuses clone3 (ENOSYS) and aborts the program on a
        // clone with flags it cannot emulate (CLONE_FILES with CLONE_VFORK):
        // the legacy method must keep to the classic flags.
        "under-valgrind" => {
            let Ok(out) = std::process::Command::new("valgrind")
                .args(["-q", "--error-exitcode=99"])
                .arg(std::env::current_exe().unwrap())
                .env("CHILDFD_FALLBACK_SCENARIO", "inside-valgrind")
                .output()
            else {
                println!("scenario SKIPPED LOUDLY: valgrind is not installed on this machine");
                return;
            };
            echo_and_check(&out, "under valgrind");
        }
        "inside-valgrind" => basic_checks(legacy),
        // Kernels before 6.15: a stolen status is an error, never made up.
        "no-exit-info" => {
            childfd::force_fallback::no_pidfd_exit_info();
            let c = Command::new("sh").args(["-c", "exit 5"]).spawn().unwrap();
            // Steal it, as a foreign reaper would, once it has exited.
            let pid = c.id() as i32;
            let st = childfd_testbin::waitpid(pid);
            assert_eq!(libc::WEXITSTATUS(st), 5);
            match c.wait_timeout(Duration::from_secs(30)) {
                Err(childfd::WaitError::StatusUnavailable { pid: p }) => assert_eq!(p, pid as u32),
                other => panic!("expected StatusUnavailable, got {other:?}"),
            }
            // Not stolen: still reported normally.
            let c = Command::new("sh").args(["-c", "exit 6"]).spawn().unwrap();
            assert_eq!(c.wait().unwrap().code(), Some(6));
            println!("scenario ok: stolen status reported as StatusUnavailable");
        }
        // Kernels 5.3/5.4: clone3 exists but refuses CLONE_CLEAR_SIGHAND.
        "clone3-einval" => {
            childfd_testbin::seccomp_deny(libc::SYS_clone3, libc::EINVAL);
            assert_eq!(childfd::spawn_method(), native, "probe sees clone3");
            let c = Command::new("sh").args(["-c", "exit 9"]).spawn().unwrap();
            assert_eq!(c.wait().unwrap().code(), Some(9));
            basic_checks(legacy);
        }
        // Kernels before 6.9: a group is signalled by number, only while its
        // leader is unreaped.
        "no-group-signal" => {
            childfd::force_fallback::no_pidfd_group_signal();
            let _orphans = OrphansReaped::start();
            let tag = childfd_testbin::new_tag("nogroupsig");
            let c = Command::new("sh")
                .args(["-c", "sleep 300 & wait"])
                .env("CHILDFD_TEST_TAG", &tag)
                .spawn()
                .unwrap();
            childfd_testbin::wait_tagged(&tag, 2);
            let t = c.terminate(Duration::from_secs(10)).unwrap();
            assert_eq!(t.ended_by, childfd::EndedBy::Term);
            childfd_testbin::assert_no_survivors(&tag);
            // The leader is reaped now: refusing is the only safe answer.
            match c.signal_tree(childfd::Signal::TERM) {
                Err(childfd::TreeError::GroupUnreachable { pid }) => assert_eq!(pid, c.id()),
                other => panic!("expected GroupUnreachable, got {other:?}"),
            }
            println!("scenario ok: group signalled by number while the leader was unreaped");
        }
        // Kernels before 5.14: freeze-and-kill instead of cgroup.kill.
        "no-cgroup-kill" => {
            childfd::force_fallback::no_cgroup_kill();
            let _orphans = OrphansReaped::start();
            let tag = childfd_testbin::new_tag("nocgkill");
            let c = match Command::new("sh")
                .args([
                    "-c",
                    "setsid sleep 300 & while :; do sleep 300 & sleep 0.01; done",
                ])
                .env("CHILDFD_TEST_TAG", &tag)
                .containment(childfd::Containment::cgroup())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    println!("WARNING: no writable cgroup v2 ({e}); freeze-and-kill not tested");
                    return;
                }
            };
            childfd_testbin::wait_tagged(&tag, 10);
            c.kill_tree().unwrap();
            assert!(
                c.wait_tree_deadline(std::time::Instant::now() + Duration::from_secs(30))
                    .unwrap()
            );
            childfd_testbin::assert_no_survivors(&tag);
            let parent = c.cgroup_path().unwrap().parent().unwrap().to_path_buf();
            drop(c);
            assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
                childfd_testbin::our_cgroup_leaves(&parent).is_empty()
            }));
            println!("scenario ok: cgroup emptied by freeze-and-kill");
        }
        // Kernels 5.5 and 5.6: clone3 without CLONE_INTO_CGROUP; the child
        // joins its leaf by writing to cgroup.procs before it execs.
        "no-clone-into-cgroup" => {
            childfd::force_fallback::no_clone_into_cgroup();
            let c = match Command::new("sleep")
                .arg("300")
                .containment(childfd::Containment::cgroup())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    println!("WARNING: no writable cgroup v2 ({e}); cgroup.procs join not tested");
                    return;
                }
            };
            assert_eq!(childfd::spawn_method(), native);
            let leaf = c.cgroup_path().unwrap().to_path_buf();
            let own = std::fs::read_to_string(format!("/proc/{}/cgroup", c.id())).unwrap();
            let v2 = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup v2 line");
            assert!(
                leaf.ends_with(v2.trim_start_matches('/')),
                "child in {v2}, leaf {}",
                leaf.display()
            );
            c.kill_tree().unwrap();
            assert!(
                c.wait_tree_deadline(std::time::Instant::now() + Duration::from_secs(30))
                    .unwrap()
            );
            let parent = leaf.parent().unwrap().to_path_buf();
            drop(c);
            assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
                childfd_testbin::our_cgroup_leaves(&parent).is_empty()
            }));
            println!("scenario ok: child joined its cgroup through cgroup.procs");
        }
        other => panic!("unknown scenario {other}"),
    }
}
