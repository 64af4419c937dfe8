//! `fork()` of the whole (multi-threaded) process, as a library that forks
//! does. The copy, where only the forking thread lives on, sweeps every fd
//! above 2 with `close_range(3, ~0)` (with the fd kind), reopens files
//! with known content (they take the lowest numbers: the ones childfd's
//! reserved fds had), spawns trees and drops some, and reports one result
//! byte on a pipe before `_exit`.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd::{Command, Containment, Stdio};
use childfd_testbin::Rng;

use super::ENV_FORK;
use super::fds::Secrets;
use crate::config::Kind;
use crate::shared::{Shared, lock};
use crate::sys;
use crate::work::{Round, own_status};

/// How long a copy may take: a few short trees.
const COPY_BOUND: Duration = Duration::from_secs(20);

/// Forks every 50-400 ms until the chaos stops.
pub fn run(sh: &Shared, round: &Round, secrets: &Secrets, seed: u64) {
    let mut r = Rng(seed);
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50 + r.next(350)));
        once(sh, round, secrets, r.next(u64::MAX) | 1);
    }
}

fn once(sh: &Shared, round: &Round, secrets: &Secrets, seed: u64) {
    let (mut rd, wr) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return sh.violation(format!("pipe for a fork: {e}")),
    };
    let sweep = sh.cfg.kinds.has(Kind::Fds);
    let pid = {
        let _g = lock(&ENV_FORK);
        let report = wr.as_raw_fd();
        match sys::fork_then(|| copy(round, secrets, report, sweep, seed)) {
            Ok(pid) => pid,
            Err(e) => return sh.violation(format!("fork: {e}")),
        }
    };
    Shared::bump(&sh.n.forks);
    let pidfd = sys::pidfd_open(pid);
    drop(wr);
    let _op = sh.op(
        "a forked copy's spawns",
        COPY_BOUND + HOLD * u32::from(hold()) + Duration::from_secs(5),
    );
    let ready = sys::readable(rd.as_fd(), COPY_BOUND.as_millis() as i32);
    let mut res = Vec::new();
    if ready {
        let _ = rd.read_to_end(&mut res);
    }
    match res.as_slice() {
        [b'0', n] => {
            sh.n.forked_spawns
                .fetch_add(u64::from(*n), Ordering::Relaxed);
        }
        [code, ..] => sh.violation(format!("forked copy: {}", what(*code))),
        [] if !ready => {
            sh.violation(format!(
                "forked copy hung for {COPY_BOUND:?}: {}",
                where_stuck(pid)
            ));
            if let Some(fd) = &pidfd {
                sys::pidfd_signal(fd.as_fd(), libc::SIGKILL);
            }
        }
        [] => sh.violation("forked copy died without reporting"),
    }
    // Reap it if the orphan reaper has not.
    if let Some(fd) = &pidfd
        && sys::readable(fd.as_fd(), 5000)
    {
        sys::waitpid(pid, libc::WNOHANG);
    }
}

/// How long a hung copy is left alone with `CHAOS_HOLD=1`.
const HOLD: Duration = Duration::from_secs(60);

fn hold() -> bool {
    std::env::var_os("CHAOS_HOLD").is_some()
}

/// Where a hung copy and its children sit: state, system call and kernel
/// stack from /proc. With `CHAOS_HOLD=1` the copy is left alone for a
/// minute first, for a debugger.
fn where_stuck(pid: i32) -> String {
    if hold() {
        eprintln!("chaos: holding hung copy {pid} (pid in the chaos's namespace) for {HOLD:?}");
        std::thread::sleep(HOLD);
    }
    let proc = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let mut s = one_process(pid);
    for kid in proc(&format!("task/{pid}/children")).split_whitespace() {
        if let Ok(kid) = kid.parse() {
            s += &format!("; child {kid}: {}", one_process(kid));
        }
    }
    s
}

fn one_process(pid: i32) -> String {
    let proc = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let stat = proc("stat");
    let state = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split(' ')
        .next()
        .unwrap_or("?");
    let stack: Vec<_> = proc("stack")
        .lines()
        .take(4)
        .map(|l| l.replace("[<0>] ", ""))
        .collect();
    format!(
        "state {state}, wchan {}, syscall {}, kernel stack [{}]",
        proc("wchan"),
        proc("syscall").trim(),
        stack.join(" < ")
    )
}

fn what(code: u8) -> &'static str {
    match code {
        b'E' => "spawn failed",
        b'W' => "wait failed",
        b'S' => "a status was not the tree's own",
        b'T' => "a tree did not end within 10 s",
        b'R' => "dropped children were not reaped within 10 s",
        _ => "unknown result",
    }
}

/// The forked copy's work; its exit code.
fn copy(round: &Round, secrets: &Secrets, report: i32, sweep: bool, seed: u64) -> i32 {
    let mut r = Rng(seed);
    if sweep {
        // Everything but stdio and the report pipe: childfd's reserved
        // fds, the reaper's epoll, other threads' pipes and pidfds.
        sys::close_range(3, report as u32 - 1);
        sys::close_range(report as u32 + 1, u32::MAX);
        for _ in 0..4 {
            let _ = secrets.open(&mut r); // takes the lowest numbers
        }
    }
    let (code, n) = spawn_some(round, &mut r);
    sys::write_all(report, &[code, n]);
    0
}

fn spawn_some(round: &Round, r: &mut Rng) -> (u8, u8) {
    let mut waited = Vec::new();
    let mut n = 0u8;
    for _ in 0..1 + r.next(3) {
        let (node, containment, _) = round.random_tree(r, false);
        let mut cmd = round.command(&node, containment);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        match cmd.spawn() {
            Ok(c) if r.next(3) == 0 => drop(c),
            Ok(c) => waited.push((c, node)),
            Err(_) => return (b'E', n),
        }
        n += 1;
    }
    let mut exit0 = Command::new(childfd_testbin::EXIT0);
    exit0.containment(Containment::ProcessGroup);
    match exit0.spawn() {
        Ok(c) => drop(c),
        Err(_) => return (b'E', n),
    }
    n += 1;
    for (c, node) in &waited {
        match c.wait_timeout(Duration::from_secs(10)) {
            Ok(Some(s)) if (s.code(), s.signal().map(|s| s.as_raw())) == own_status(node) => {}
            Ok(Some(_)) => return (b'S', n),
            Ok(None) => return (b'T', n),
            Err(_) => return (b'W', n),
        }
        let _ = c.kill_tree();
    }
    // Dropped before the check: a waited child's cgroup leaf still
    // populated by its dying tree goes to the drop reaper too, and the
    // copy exits right after reporting.
    drop(waited);
    let reaped =
        childfd_testbin::eventually(Duration::from_secs(10), || childfd::pending_reaps() == 0);
    if reaped {
        (b'0', n)
    } else {
        eprintln!(
            "chaos: forked copy {} (pid in the chaos's namespace): {} pending after 10 s; {}",
            sys::getpid(),
            childfd::pending_reaps(),
            copy_state()
        );
        (b'R', n)
    }
}

/// The copy's own threads and children, and its fds, as /proc shows them
/// (for the report of a late reap).
fn copy_state() -> String {
    let me = sys::getpid();
    let mut s = String::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let tid: i32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            s += &format!("thread {tid} {}: {}; ", comm.trim(), one_process(tid));
        }
    }
    for p in childfd_testbin::processes() {
        if p.ppid == me {
            s += &format!("child {} {} state {}; ", p.pid, p.comm, p.state);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let mut v: Vec<String> = fds
            .flatten()
            .map(|f| {
                let t = std::fs::read_link(f.path()).unwrap_or_default();
                format!("{}={}", f.file_name().to_string_lossy(), t.display())
            })
            .collect();
        v.sort();
        s += &format!("fds {}", v.join(" "));
    }
    s
}
