//! Helper programs and hygiene checks for childfd's tests and benchmarks.
//!
//! - [`EXIT0`], [`PAUSE`]: static children without libc (built by
//!   `build.rs`), so spawn costs are not hidden behind the dynamic loader.
//! - [`Hygiene`]: serialises a test within its binary and checks
//!   afterwards that it left no child (zombie or running), no extra fd and
//!   at most the expected threads.
//! - [`seccomp_deny`]: makes one syscall fail, to force fallback paths.
#![allow(unsafe_code)]
#![allow(
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

pub mod scenario;
pub mod tree;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Path of a static program that exits 0 at once.
pub const EXIT0: &str = env!("CHILDFD_TESTBIN_EXIT0");
/// Path of a static program that waits for a signal forever.
pub const PAUSE: &str = env!("CHILDFD_TESTBIN_PAUSE");
/// Path of a static program that prints `line` and exits 0.
pub const ECHO1: &str = env!("CHILDFD_TESTBIN_ECHO1");
/// Path of a static program that sleeps 200 ms and exits 0.
pub const SLEEP200: &str = env!("CHILDFD_TESTBIN_SLEEP200");

static SERIAL: Mutex<()> = Mutex::new(());

/// The process's open fds, by number, without the directory fd this
/// listing itself opens (its number depends on which fds are free, so it
/// would look like a leak whenever that changes).
pub fn open_fds() -> BTreeSet<i32> {
    let own_listing = std::path::PathBuf::from(format!("/proc/{}/fd", std::process::id()));
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            if target == own_listing {
                return None;
            }
            e.file_name().to_str()?.parse().ok()
        })
        .collect()
}

/// The fds open now that were not in `before`, except those childfd keeps
/// open on purpose for the whole process once made: the background
/// reaper's epoll fd, and the shared `/dev/null` and low fd slots of
/// spawns (`childfd::reserved_fds`), which must be back to `/dev/null` (a
/// slot still holding something would keep a child's pipe open). A
/// non-empty result is a leak.
pub fn leaked_fds_since(before: &BTreeSet<i32>) -> Vec<i32> {
    let reserved = childfd::reserved_fds();
    let at_rest = |fd: i32| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|t| t == std::path::Path::new("/dev/null"))
    };
    let mut new: Vec<i32> = open_fds()
        .difference(before)
        .copied()
        .filter(|fd| !reserved.contains(fd))
        .chain(reserved.iter().copied().filter(|&fd| !at_rest(fd)))
        .collect();
    if let Some(i) = new.iter().position(|&fd| is_epoll(fd)) {
        new.remove(i);
    }
    new
}

fn is_epoll(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]")
}

/// Open fds with what they point to, for failure messages.
pub fn describe_fds() -> Vec<(i32, String)> {
    open_fds()
        .into_iter()
        .map(|fd| {
            let l =
                std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string());
            (fd, l.unwrap_or_else(|e| e.to_string()))
        })
        .collect()
}

/// Names (`comm`) of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|s| s.trim_end().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// A process as read from `/proc/<pid>/stat`.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Pid.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub session: i32,
    /// State letter (`Z` for zombie).
    pub state: char,
    /// Command name.
    pub comm: String,
}

/// Every process on the system (that could be read).
pub fn processes() -> Vec<Proc> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(p) = read_stat(pid) {
            v.push(p);
        }
    }
    v
}

/// Reads `/proc/<pid>/stat`.
pub fn read_stat(pid: i32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let mut rest = s[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    let session = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgrp,
        session,
        state,
        comm,
    })
}

/// Children of this process (zombie or not).
pub fn children() -> Vec<Proc> {
    let me = std::process::id() as i32;
    processes().into_iter().filter(|p| p.ppid == me).collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A test's check that it leaves nothing behind. Holds a lock so tests of
/// one binary run one at a time (their process-wide checks would see each
/// other otherwise).
#[derive(Debug)]
pub struct Hygiene {
    _serial: MutexGuard<'static, ()>,
    fds: BTreeSet<i32>,
    threads: usize,
}

impl Hygiene {
    /// Takes the lock and records the fds and threads now.
    pub fn start() -> Hygiene {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Hygiene {
            _serial: serial,
            fds: open_fds(),
            threads: thread_count(),
        }
    }

    /// Asserts (waiting a bounded time for background reaping) that this
    /// process has no children, the same fds as at start, and at most
    /// `extra_threads` more threads. Children found are killed by pid
    /// (they are ours) before failing.
    #[track_caller]
    pub fn finish(self, extra_threads: usize) {
        let no_children = eventually(Duration::from_secs(20), || children().is_empty());
        if !no_children {
            let left = children();
            for p in &left {
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            // By pid: `waitpid(-1)` blocked for ever once the orphan
            // reaper had taken one of them and another child lived on.
            for p in &left {
                unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::__WALL) };
            }
            panic!("test left children behind: {left:?}");
        }
        let fds_ok = eventually(Duration::from_secs(5), || {
            // Fds that were open at the start may close meanwhile: the
            // background reaper finishing an earlier test's dropped children.
            leaked_fds_since(&self.fds).is_empty()
        });
        assert!(
            fds_ok,
            "fds changed: before {:?}, after {:?}",
            self.fds,
            describe_fds()
        );
        // The test harness may start threads for other tests meanwhile
        // (blocked on the serial lock), so count the library's own threads,
        // which are named `childfd-*`, and bound the total far below one
        // per child.
        let ours = thread_names()
            .iter()
            .filter(|n| n.starts_with("childfd-"))
            .count();
        assert!(
            ours <= extra_threads,
            "childfd threads: {:?}",
            thread_names()
        );
        let threads = thread_count();
        assert!(
            threads <= self.threads + extra_threads + 8,
            "threads grew from {} to {threads}: {:?}",
            self.threads,
            thread_names()
        );
    }
}

/// Installs a seccomp filter on the calling thread (and what it spawns)
/// that makes syscall `nr` fail with `errno`; everything else is allowed.
///
/// # Panics
///
/// If the filter cannot be installed.
pub fn seccomp_deny(nr: i64, errno: i32) {
    seccomp_deny_if(nr, None, errno);
}

/// As [`seccomp_deny`], but only for calls whose argument `arg` (0-based)
/// has any of the bits of `mask` set in its low 32 bits: for example
/// `close_range` with `CLOSE_RANGE_UNSHARE`, as a filter that predates the
/// flag would refuse it.
///
/// # Panics
///
/// If the filter cannot be installed.
pub fn seccomp_deny_with_flag(nr: i64, arg: u32, mask: u32, errno: i32) {
    seccomp_deny_if(nr, Some((arg, mask)), errno);
}

/// Installs a seccomp filter on the calling thread (and what it spawns)
/// that kills the whole process (`SECCOMP_RET_KILL_PROCESS`, as SIGSYS)
/// when it calls syscall `nr`, as strict container profiles do.
///
/// # Panics
///
/// If the filter cannot be installed.
pub fn seccomp_kill_on(nr: i64) {
    seccomp_install(nr, None, libc::SECCOMP_RET_KILL_PROCESS);
}

fn seccomp_deny_if(nr: i64, flag: Option<(u32, u32)>, errno: i32) {
    seccomp_install(
        nr,
        flag,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    );
}

fn seccomp_install(nr: i64, flag: Option<(u32, u32)>, action: u32) {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
    let arch = if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else {
        AUDIT_ARCH_AARCH64
    };
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let ld_w_abs = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let jset = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    let deny = stmt(ret, action);
    let allow = stmt(ret, libc::SECCOMP_RET_ALLOW);
    let mut filter = vec![
        stmt(ld_w_abs, 4), // seccomp_data.arch
        jump(jeq, arch, 1, 0),
        allow,
        stmt(ld_w_abs, 0), // seccomp_data.nr
    ];
    match flag {
        None => filter.extend([jump(jeq, nr as u32, 0, 1), deny, allow]),
        Some((arg, mask)) => filter.extend([
            jump(jeq, nr as u32, 0, 3),
            // seccomp_data.args[arg], low 32 bits (little-endian)
            stmt(ld_w_abs, 16 + 8 * arg),
            jump(jset, mask, 0, 1),
            deny,
            allow,
        ]),
    }
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
            "PR_SET_NO_NEW_PRIVS"
        );
        let r = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        );
        assert_eq!(r, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
    }
}

/// Installs `handler` for `sig` with `SA_RESTART` and an empty mask, as a
/// host program installs its own; the handler must be async-signal-safe.
pub fn install_handler(sig: i32, handler: extern "C" fn(libc::c_int)) {
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = libc::SA_RESTART;
    let r = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    assert_eq!(
        r,
        0,
        "sigaction({sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Puts `sig` back to `SIG_DFL`.
pub fn default_handler(sig: i32) {
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    assert_eq!(
        r,
        0,
        "sigaction({sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// `kill(pid, sig)`; whether it succeeded. Only for pids the test owns.
pub fn kill(pid: i32, sig: i32) -> bool {
    unsafe { libc::kill(pid, sig) == 0 }
}

/// `waitpid(-1, WNOHANG)`, as a PID-1 reaper or a careless library calls
/// it: the pid reaped, if any.
pub fn reap_any_nohang() -> Option<i32> {
    let mut st = 0;
    let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
    (r > 0).then_some(r)
}

/// Blocking `waitpid(pid)`; the raw wait status.
pub fn waitpid(pid: i32) -> i32 {
    let mut st = 0;
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(
        r,
        pid,
        "waitpid({pid}): {}",
        std::io::Error::last_os_error()
    );
    st
}

/// SIGCHLD set to `SIG_IGN` (the kernel then auto-reaps children) until
/// dropped.
#[derive(Debug)]
pub struct SigchldIgnored {
    old: libc::sighandler_t,
}

impl SigchldIgnored {
    /// Sets SIGCHLD to `SIG_IGN`.
    pub fn new() -> SigchldIgnored {
        SigchldIgnored {
            old: unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) },
        }
    }
}

impl Default for SigchldIgnored {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SigchldIgnored {
    fn drop(&mut self) {
        unsafe { libc::signal(libc::SIGCHLD, self.old) };
    }
}

/// Runs `f` in a `fork`ed child, which then exits 0; returns the raw wait
/// status.
///
/// # Safety
///
/// The calling process must be single-threaded (after `fork` only the
/// calling thread exists; locks held by others would never be released).
pub unsafe fn in_forked_child(f: fn()) -> i32 {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        f();
        unsafe { libc::_exit(0) };
    }
    waitpid(pid)
}

/// How [`a_forked_copy_drops`] makes its copy.
#[derive(Debug, Clone, Copy)]
pub enum Fork {
    /// glibc's `fork()` (runs the `pthread_atfork` handlers).
    Libc,
    /// The raw `fork` system call (no handler runs: a copy the library
    /// hears nothing about).
    RawSyscall,
}

/// Forks a copy of this process that drops its copy of `child` (a library
/// forking and then returning normally, running destructors) and exits 0;
/// then checks from the parent, within 500 ms, whether the child is still
/// running, kills and reaps it, and returns whether it had survived the
/// copy's drop. The copy arms `alarm(20)`, so a hang in it fails instead of
/// hanging the test.
///
/// # Safety
///
/// The calling process must be single-threaded (after a fork only the
/// calling thread exists; locks held by others would never be released).
pub unsafe fn a_forked_copy_drops(child: childfd::Child, how: Fork) -> bool {
    let pid = match how {
        Fork::Libc => unsafe { libc::fork() },
        Fork::RawSyscall => unsafe { libc::syscall(libc::SYS_fork) as i32 },
    };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe { libc::alarm(20) };
        drop(child);
        unsafe { libc::_exit(0) };
    }
    let status = waitpid(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked copy failed (status {status:#x})"
    );
    // A kill by the copy would end the child within this bound.
    let after_copy = child.wait_timeout(Duration::from_millis(500)).unwrap();
    child.kill().unwrap();
    let end = child.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(end.is_some(), "the child did not end after SIGKILL");
    after_copy.is_none()
}

/// `fork()`s a copy of this process that holds every fd the caller had
/// (a fork of the host, as a library might make) and only sleeps `d`, then
/// exits 0; returns its pid (reap it with [`waitpid`]). The copy calls
/// nothing but `nanosleep` and `_exit`, so forking a threaded process is
/// safe.
pub fn fork_sleeper(d: Duration) -> i32 {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    };
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            libc::nanosleep(&ts, std::ptr::null_mut());
            libc::_exit(0);
        }
    }
    pid
}

/// A tag unique to this call, to export as `CHILDFD_TEST_TAG` in a test's
/// tree so that every descendant (even one that left the group or session)
/// can be found in `/proc/*/environ`.
pub fn new_tag(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Live (not zombie) processes whose environment has `CHILDFD_TEST_TAG=<tag>`.
pub fn tagged(tag: &str) -> Vec<Proc> {
    let needle = format!("CHILDFD_TEST_TAG={tag}");
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// Waits (bounded) until at least `n` tagged processes are alive.
#[track_caller]
pub fn wait_tagged(tag: &str, n: usize) -> Vec<Proc> {
    assert!(
        eventually(Duration::from_secs(20), || tagged(tag).len() >= n),
        "expected {n} processes tagged {tag}, found {:?}",
        tagged(tag)
    );
    tagged(tag)
}

/// Asserts that no process tagged `tag` survives (waiting a bounded time
/// for them to die); kills survivors by pid (they are the test's) and
/// fails if there were any.
#[track_caller]
pub fn assert_no_survivors(tag: &str) {
    if eventually(Duration::from_secs(10), || tagged(tag).is_empty()) {
        return;
    }
    let left = tagged(tag);
    kill_tagged(tag);
    panic!("processes of the tree survived: {left:?}");
}

/// SIGKILLs every process tagged `tag` (they are the test's own) until
/// none is left, bounded at about 2 s.
///
/// "None left" needs three empty scans of `/proc` in a row: a process
/// forked during a scan can get a pid (after pid wrap-around) below the
/// scan's position and be missed by that one scan.
pub fn kill_tagged(tag: &str) {
    let mut empty_scans = 0;
    for _ in 0..200 {
        let left = tagged(tag);
        if left.is_empty() {
            empty_scans += 1;
            if empty_scans == 3 {
                return;
            }
        } else {
            empty_scans = 0;
            for p in &left {
                kill(p.pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This process's cgroup v2 directory (from `/proc/self/mountinfo` and
/// `/proc/self/cgroup`), where childfd creates leaves by default. A mount
/// of a subtree (mountinfo's root field) is taken into account.
pub fn own_cgroup_dir() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let cg = cg.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split(' ');
        let root = f.nth(3)?;
        let point = f.next()?;
        let rel = std::path::Path::new(&cg).strip_prefix(root).ok()?;
        Some(std::path::Path::new(point).join(rel))
    })
}

/// cgroup leaves under `dir` created by process `pid` (`childfd-<pid>-*`).
pub fn cgroup_leaves_of(dir: &std::path::Path, pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("childfd-{pid}-");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// cgroup directories under `dir` whose name starts with `childfd-<our pid>-`.
pub fn our_cgroup_leaves(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    cgroup_leaves_of(dir, std::process::id())
}

/// `prctl(PR_GET_DUMPABLE)` of this process.
pub fn dumpable() -> i32 {
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Sets SIGPIPE back to its default action (terminate), which Rust's
/// runtime replaced with `SIG_IGN`, so a test can detect a SIGPIPE.
pub fn default_sigpipe() {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn open_fds_does_not_count_its_own_listing() {
        let before = open_fds();
        // Takes the lowest free number: the one the listing used before.
        let f = std::fs::File::open("/dev/null").unwrap();
        let after = open_fds();
        let new: Vec<i32> = after.difference(&before).copied().collect();
        assert_eq!(new, vec![f.as_raw_fd()]);
    }
}

/// An endless input that comes in small pieces, a millisecond apart (a
/// generator, a slow device): whoever drains the pipe keeps up with it, so
/// the pipe never fills and a writer that loops until `EAGAIN` never
/// stops.
#[derive(Debug)]
pub struct Trickle;

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        let n = buf.len().min(512);
        buf[..n].fill(b'x');
        Ok(n)
    }
}

/// A small deterministic generator (xorshift), so randomized tests
/// reproduce from their seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n` (0 if `n` is 0).
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
