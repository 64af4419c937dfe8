//! The child-side builder options (resource limits, umask, nice value,
//! `no_new_privs`, a new session with a controlling terminal), `pre_exec`
//! and `exec`: each takes effect in the child, never in the parent.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use childfd::{Command, Containment, Resource, SpawnStage, Stdio};
use childfd_testbin::Hygiene;

/// A field of `/proc/self/status` of this process.
fn own_status(key: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

#[track_caller]
fn sh_output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn resource_limits_apply_in_the_child_only() {
    let h = Hygiene::start();
    let before = own_status("Umask:");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n; ulimit -c"])
        .rlimit(Resource::OpenFiles, 64, 64)
        .rlimit(Resource::Core, 0, 0);
    assert_eq!(sh_output(&mut cmd), "64\n0\n");
    // The last value for a resource wins.
    cmd.rlimit(Resource::OpenFiles, 32, 64);
    assert_eq!(sh_output(&mut cmd), "32\n0\n");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one struct rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(
        lim.rlim_cur > 64,
        "the parent's own limit changed: {}",
        lim.rlim_cur
    );
    // A limit the kernel refuses fails the spawn at its stage.
    let e = Command::new("true")
        .rlimit(Resource::OpenFiles, 100, 10)
        .spawn()
        .expect_err("soft > hard");
    assert_eq!(
        (e.stage(), e.raw_os_error()),
        (SpawnStage::Attributes, Some(libc::EINVAL)),
        "{e}"
    );
    assert_eq!(own_status("Umask:"), before);
    h.finish(0);
}

#[test]
fn umask_nice_and_no_new_privs_apply_in_the_child_only() {
    let h = Hygiene::start();
    let (umask, nnp) = (own_status("Umask:"), own_status("NoNewPrivs:"));
    let out = sh_output(
        Command::new("sh")
            .args([
                "-c",
                "umask; cut -d' ' -f19 /proc/$$/stat; grep NoNewPrivs /proc/$$/status",
            ])
            .umask(0o027)
            .nice(7)
            .no_new_privs(true),
    );
    assert_eq!(out, "0027\n7\nNoNewPrivs:\t1\n");
    assert_eq!(
        (own_status("Umask:"), own_status("NoNewPrivs:")),
        (umask, nnp)
    );
    // SAFETY: getpriority has no memory arguments.
    let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    assert_ne!(own_nice, 7, "the parent's nice value changed");
    h.finish(0);
}

/// A new pseudo-terminal: (master, slave).
// One sequence of libc calls with one justification.
#[allow(clippy::multiple_unsafe_ops_per_block)]
fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc calls; every returned fd is checked and owned.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let master = OwnedFd::from_raw_fd(m);
        let name = libc::ptsname(m);
        assert!(!name.is_null());
        let s = libc::open(name, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(s >= 0, "open slave: {}", std::io::Error::last_os_error());
        (master, OwnedFd::from_raw_fd(s))
    }
}

/// Reads from the pty master until `want` shows up or 10 s pass.
fn read_master(master: &OwnedFd, want: &str) -> String {
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    let mut got = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !got.contains(want) && std::time::Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            let mut buf = [0u8; 256];
            match f.read(&mut buf) {
                Ok(n) if n > 0 => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => break,
            }
        }
    }
    got
}

#[test]
fn setsid_with_a_controlling_terminal_gives_the_child_dev_tty() {
    let h = Hygiene::start();
    let (master, slave) = open_pty();
    let script = "echo via-dev-tty > /dev/tty";
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(slave.try_clone().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .setsid(true)
        .spawn()
        .unwrap();
    assert!(read_master(&master, "via-dev-tty").contains("via-dev-tty"));
    assert!(
        child
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("exited")
            .success()
    );
    drop(child);
    // Control: a new session without the terminal has no /dev/tty.
    let status = Command::new("sh")
        .args(["-c", script])
        .stdin(slave.try_clone().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .setsid(false)
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "/dev/tty opened without a controlling terminal"
    );
    // Asking for the terminal without the session is refused up front.
    let e = Command::new("true")
        .setsid(true)
        .containment(Containment::ProcessGroup)
        .spawn()
        .expect_err("no session");
    assert_eq!(e.stage(), SpawnStage::Validate, "{e}");
    drop((master, slave));
    h.finish(0);
}

static CALLS_SEEN_BY_PARENT: AtomicUsize = AtomicUsize::new(0);

#[test]
fn pre_exec_runs_in_a_copy_of_the_parent_just_before_exec() {
    let h = Hygiene::start();
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new("true");
    let hook = move || {
        CALLS_SEEN_BY_PARENT.fetch_add(1, Ordering::SeqCst);
        // SAFETY: writes 4 bytes of a static buffer to our pipe.
        let n = unsafe { libc::write(wfd, b"hook".as_ptr().cast(), 4) };
        if n == 4 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the closure makes one raw write(2) and touches an atomic.
    unsafe { cmd.pre_exec(hook) };
    let child = cmd.spawn().unwrap();
    drop(w);
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(
        got, "hook",
        "the closure ran in the child, with the parent's fds"
    );
    assert_eq!(
        CALLS_SEEN_BY_PARENT.load(Ordering::SeqCst),
        0,
        "the closure ran in the parent's memory (CLONE_VM)"
    );
    assert!(child.wait().unwrap().success());
    drop(child);
    // Its error fails the spawn at its stage, with its errno.
    let mut failing = Command::new("true");
    // SAFETY: returns at once.
    unsafe { failing.pre_exec(|| Err(std::io::Error::from_raw_os_error(libc::EDOM))) };
    let e = failing.spawn().expect_err("pre_exec failed");
    assert_eq!(
        (e.stage(), e.raw_os_error()),
        (SpawnStage::PreExec, Some(libc::EDOM)),
        "{e}"
    );
    // A panic is caught in the child and reported.
    let mut panicking = Command::new("true");
    // SAFETY: panics at once (caught in the child).
    unsafe { panicking.pre_exec(|| panic!("a pre_exec closure panicked (expected by this test)")) };
    let e = panicking.spawn().expect_err("pre_exec panicked");
    assert_eq!(
        (e.stage(), e.raw_os_error()),
        (SpawnStage::PreExec, Some(libc::ENOTRECOVERABLE)),
        "{e}"
    );
    h.finish(0);
}

const EXEC_ROLE: &str = "CHILDFD_TEST_EXEC_ROLE";

/// In the child role (a copy of this test binary started by the test
/// below), this process first fails an exec, then replaces itself.
fn exec_role() -> ! {
    let e = Command::new("/no/such/program")
        .containment(Containment::Inherit)
        .exec();
    println!("failed: {:?} at {}", e.kind(), e.stage());
    let e = Command::new("sh")
        .args([
            "-c",
            "echo \"umask $(umask) pid $$ nofile $(ulimit -n)\"; exit 7",
        ])
        .containment(Containment::Inherit)
        .umask(0o077)
        .rlimit(Resource::OpenFiles, 50, 50)
        .exec();
    panic!("exec failed: {e}");
}

#[test]
fn exec_replaces_this_process_with_the_prepared_program() {
    if std::env::var_os(EXEC_ROLE).is_some() {
        exec_role();
    }
    let h = Hygiene::start();
    let name = "exec_replaces_this_process_with_the_prepared_program";
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(EXEC_ROLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed: NotFound at exec"), "{text}");
    assert!(
        text.contains(&format!("umask 0077 pid {pid} nofile 50")),
        "the same process, prepared: {text}"
    );
    assert_eq!(out.status.code(), Some(7), "{text}");
    let e = Command::new("true")
        .containment(Containment::cgroup())
        .exec();
    assert_eq!(
        (e.stage(), e.kind()),
        (SpawnStage::Cgroup, std::io::ErrorKind::Unsupported),
        "{e}"
    );
    h.finish(0);
}

/// The `SigIgn` and `SigCgt` sets (bit `n - 1` for signal `n`) a program
/// run by `cmd` starts with.
fn child_dispositions(cmd: &mut Command) -> (u64, u64) {
    let out = sh_output(cmd.arg("/proc/self/status"));
    let field = |key: &str| {
        let line = out.lines().find(|l| l.starts_with(key)).unwrap();
        u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
    };
    (field("SigIgn:"), field("SigCgt:"))
}

/// Sets signal `sig`'s disposition, returning the old one.
fn set_disposition(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: sets one disposition of this process; no handler that
    // touches anything is installed (see `noop`).
    unsafe { libc::signal(sig, handler) }
}

extern "C" fn noop(_: libc::c_int) {}

/// A child that stays in the caller's group catches every signal until
/// `execve` (so that no signal to the group stops or kills it first): the
/// program must still start with the parent's ignored signals ignored, no
/// handler, and `SIG_DFL` for what the command lists (SIGPIPE, which the
/// Rust runtime ignores).
#[test]
fn child_in_callers_group_execs_with_inherited_ignores_and_no_handler() {
    let h = Hygiene::start();
    let old_usr2 = set_disposition(libc::SIGUSR2, libc::SIG_IGN);
    let old_usr1 = set_disposition(libc::SIGUSR1, noop as *const () as libc::sighandler_t);
    let bit = |sig: i32| 1u64 << (sig - 1);
    // SAFETY: getpgrp cannot fail.
    let own_group = unsafe { libc::getpgrp() } as u32;
    for containment in [
        Containment::Inherit,
        Containment::JoinGroup(own_group),
        Containment::ProcessGroup,
    ] {
        let (ign, cgt) = child_dispositions(Command::new("cat").containment(containment.clone()));
        assert_eq!(cgt, 0, "{containment:?}: handlers survived exec: {cgt:#x}");
        assert_ne!(
            ign & bit(libc::SIGUSR2),
            0,
            "{containment:?}: SigIgn {ign:#x}"
        );
        assert_eq!(
            ign & bit(libc::SIGPIPE),
            0,
            "{containment:?}: SigIgn {ign:#x}"
        );
        assert_eq!(
            ign & bit(libc::SIGUSR1),
            0,
            "{containment:?}: SigIgn {ign:#x}"
        );
    }
    // A pre_exec closure sees the catching handlers and may set its own
    // dispositions: SIG_IGN survives the exec.
    let mut cmd = Command::new("cat");
    cmd.containment(Containment::Inherit);
    let hook = || {
        // SAFETY: sigaction is plain data; all-zero is valid.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads this child's SIGINT disposition.
        unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) };
        if old.sa_sigaction == libc::SIG_DFL {
            return Err(std::io::Error::from_raw_os_error(libc::EDOM));
        }
        // SAFETY: sets this child's own disposition.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        Ok(())
    };
    // SAFETY: the closure makes two raw sigaction calls.
    unsafe { cmd.pre_exec(hook) };
    let (ign, cgt) = child_dispositions(&mut cmd);
    assert_eq!(cgt, 0);
    assert_ne!(ign & bit(libc::SIGINT), 0, "SigIgn {ign:#x}");
    set_disposition(libc::SIGUSR1, old_usr1);
    set_disposition(libc::SIGUSR2, old_usr2);
    h.finish(0);
}

/// The child's catching handler must not swallow a fault of the child
/// itself: returning from it would run the faulting instruction again for
/// ever, and the `CLONE_VFORK` parent would hang. The child dies of the
/// fault instead, as it would without the handler, and the spawn fails
/// (a child that died before `execve` is never reported spawned).
#[test]
fn fault_before_exec_in_callers_group_kills_the_child_instead_of_hanging_spawn() {
    let h = Hygiene::start();
    let mut cmd = Command::new("true");
    cmd.containment(Containment::Inherit)
        .rlimit(Resource::Core, 0, 0);
    let hook = || {
        // SAFETY: none: this closure faults on purpose (a read of address 8).
        let v = unsafe { std::ptr::read_volatile(std::ptr::dangling::<u64>()) };
        Err(std::io::Error::from_raw_os_error(v as i32))
    };
    // SAFETY: the closure faults at once; nothing else.
    unsafe { cmd.pre_exec(hook) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = cmd.spawn().map(|c| c.wait().map(|s| s.signal()));
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let got = rx.recv_timeout(Duration::from_secs(30));
    if got.is_err() {
        for p in childfd_testbin::children() {
            childfd_testbin::kill(p.pid, libc::SIGKILL);
        }
    }
    let got = got.expect("spawn hung on a child that faulted before exec");
    assert!(
        matches!(&got, Err(e) if e.contains("pre_exec failed: the child died before execve") && e.contains("11 (SIGSEGV)")),
        "{got:?}"
    );
    h.finish(0);
}
