//! The background reaper of dropped children in a host that closes and
//! reuses fd numbers behind its back (`close_range(3, ~0)` when it
//! daemonizes, a test harness sweeping fds, a `fork()`ed copy), and in a
//! forked copy of a host whose reaper is busy.
//!
//! Each scenario runs in its own process (`main` re-runs this binary with
//! `CHILDFD_REAPER_FDS_SCENARIO` set), so a `close_range` or `fork` stays
//! inside it; a scenario that overruns its bound is killed and fails.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use childfd::Command;
use childfd_testbin::{EXIT0, PAUSE, SLEEP200};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "host_close_range_while_dropped_children_run_leaves_no_zombie_no_spin_and_host_files_untouched",
        host_close_range_while_dropped_children_run_leaves_no_zombie_no_spin_and_host_files_untouched,
    ),
    (
        "foreign_epoll_and_pidfd_at_the_reapers_numbers_are_never_waited_on_or_reaped_through",
        foreign_epoll_and_pidfd_at_the_reapers_numbers_are_never_waited_on_or_reaped_through,
    ),
    (
        "foreign_epoll_and_pidfd_at_the_reapers_numbers_without_pidfs_inodes",
        foreign_epoll_and_pidfd_at_the_reapers_numbers_without_pidfs_inodes,
    ),
    (
        "forked_copy_of_a_host_with_a_busy_reaper_reaps_its_dropped_children_and_keeps_its_files",
        forked_copy_of_a_host_with_a_busy_reaper_reaps_its_dropped_children_and_keeps_its_files,
    ),
];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// Longest a dropped child may stay unreaped after it exited.
const REAP_BOUND: Duration = Duration::from_secs(10);

fn main() {
    childfd_testbin::scenario::main("CHILDFD_REAPER_FDS_SCENARIO", SCENARIOS, SCENARIO_LIMIT);
}

/// CPU ticks (user + system) of the thread named `name`, if one exists.
fn thread_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
        }
    }
    None
}

/// `close_range(first, ~0, 0)`.
fn close_from(first: u32) {
    // SAFETY: the scenario owns every fd from `first` up, and no other
    // thread of it uses one meanwhile (the point of the test: the
    // library's fds go too).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    assert_eq!(r, 0, "close_range: {}", std::io::Error::last_os_error());
}

/// A host file: its number, identity and content.
struct HostFile {
    file: std::fs::File,
    fd: i32,
    id: (u64, u64),
    content: String,
}

/// Opens `n` host files (they take the lowest free numbers).
fn open_host_files(dir: &std::path::Path, n: usize) -> Vec<HostFile> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("host{i}"));
            let content = format!("host file {i} of {}\n", std::process::id());
            std::fs::write(&path, &content).unwrap();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let m = file.metadata().unwrap();
            HostFile {
                fd: file.as_raw_fd(),
                id: (m.dev(), m.ino()),
                file,
                content,
            }
        })
        .collect()
}

/// What is wrong with the host's files now: a number that names another
/// file, a moved offset (someone read or wrote through it), other content.
fn host_file_damage(files: &mut [HostFile]) -> Vec<String> {
    let mut bad = Vec::new();
    for h in files {
        let path = format!("/proc/self/fd/{}", h.fd);
        match std::fs::metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) == h.id => {}
            other => bad.push(format!("fd {} is not the host's file now: {other:?}", h.fd)),
        }
        let pos = h.file.stream_position().unwrap_or(u64::MAX);
        if pos != 0 {
            bad.push(format!("fd {} was read or written: offset {pos}", h.fd));
        }
        let mut s = String::new();
        h.file.read_to_string(&mut s).unwrap();
        h.file.seek(SeekFrom::Start(0)).unwrap();
        if s != h.content {
            bad.push(format!("fd {} content changed: {s:?}", h.fd));
        }
    }
    bad
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("childfd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Issue: the drop reaper kept its epoll fd and the adopted pidfds by
/// number. After the host ran `close_range(3, ~0)` and opened its own
/// files, `epoll_wait` failed (EBADF/EINVAL) in a loop: the thread spun at
/// 100% CPU and the dropped children stayed zombies for ever.
///
/// The dropped children run until the scenario ends them after the sweep
/// and the later hand-overs (they cannot exit by themselves, so however
/// slow the machine, the sweep happens while all of them run).
fn host_close_range_while_dropped_children_run_leaves_no_zombie_no_spin_and_host_files_untouched() {
    let dir = scratch_dir("sweep");
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(drop_running(PAUSE));
    }
    assert_eq!(childfd::pending_reaps(), 3);
    // The thread names itself once it runs.
    assert!(
        childfd_testbin::eventually(REAP_BOUND, || thread_ticks("childfd-reaper").is_some()),
        "no reaper thread"
    );
    close_from(3);
    let mut host = open_host_files(&dir, 8);
    // More hand-overs after the sweep, while the reaper's old numbers are
    // the host's files.
    for _ in 0..2 {
        pids.push(drop_running(PAUSE));
    }
    assert_eq!(childfd::pending_reaps(), 5);
    end_dropped(&pids);
    let mut ticks = 0;
    let reaped = childfd_testbin::eventually(REAP_BOUND, || {
        ticks = thread_ticks("childfd-reaper").unwrap_or(ticks);
        childfd::pending_reaps() == 0 && childfd_testbin::children().is_empty()
    });
    let damage = host_file_damage(&mut host);
    let left = childfd_testbin::children();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        reaped,
        "dropped children not reaped within {REAP_BOUND:?}: {left:?}"
    );
    assert!(
        ticks < 50,
        "the reaper thread used {ticks} ticks of CPU (spinning)"
    );
    assert!(damage.is_empty(), "host files: {damage:?}");
    println!("  reaped; reaper thread used {ticks} ticks");
}

/// Spawns `program` (which runs until signalled) and drops its handle
/// while it runs: the background reaper has it. Its pid.
fn drop_running(program: &str) -> i32 {
    let child = Command::new(program).spawn().unwrap();
    let pid = child.id() as i32;
    drop(child);
    pid
}

/// SIGKILLs dropped children by pid. Safe from pid reuse: none of them
/// can exit by itself, so none was reaped and each pid is still its own.
fn end_dropped(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: plain syscall on a pid that is still our unreaped child.
        let r = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(r, 0, "kill {pid}: {}", std::io::Error::last_os_error());
    }
}

fn foreign_epoll_and_pidfd_at_the_reapers_numbers_without_pidfs_inodes() {
    childfd::force_fallback::no_pidfs_inodes();
    foreign_epoll_and_pidfd_at_the_reapers_numbers_are_never_waited_on_or_reaped_through();
}

/// Issue: a host that closed the reaper's numbers and reused them for its
/// own epoll instance and its own child's pidfd had the reaper wait on its
/// epoll (taking its edge-triggered events) and reap its child through
/// its pidfd (the host's wait then failed with ECHILD), while the dropped
/// child stayed a zombie.
fn foreign_epoll_and_pidfd_at_the_reapers_numbers_are_never_waited_on_or_reaped_through() {
    let child = Command::new("sleep").arg("1.5").spawn().unwrap();
    let ours = child.id() as i32;
    let pidfd_no = child.as_raw_fd();
    let before = childfd_testbin::open_fds();
    drop(child);
    let epoll_no = *childfd_testbin::open_fds()
        .difference(&before)
        .find(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]")
        })
        .expect("the reaper's epoll fd");

    // The host closes both numbers and takes them for its own files.
    let host_ep = dup_to(new_epoll(), epoll_no);
    let ev = new_eventfd();
    // Edge-triggered: whoever waits first takes the event. Its data is the
    // pidfd's number, the reaper's key for that child.
    epoll_add(
        &host_ep,
        &ev,
        libc::EPOLLIN | libc::EPOLLET,
        pidfd_no as u64,
    );
    bump(&ev);
    let mut host_child = std::process::Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn()
        .unwrap();
    let host_pidfd = dup_to(pidfd_open(host_child.id() as i32), pidfd_no);
    assert_eq!(
        (host_ep.as_raw_fd(), host_pidfd.as_raw_fd()),
        (epoll_no, pidfd_no)
    );

    // The dropped child ends after 1.5 s; the reaper looks at its numbers
    // at least once before (its idle tick is 1 s).
    let reaped = childfd_testbin::eventually(REAP_BOUND, || {
        childfd::pending_reaps() == 0 && childfd_testbin::read_stat(ours).is_none()
    });
    let host_events = epoll_ready(&host_ep);
    let host_status = host_child.wait();
    assert!(
        reaped,
        "the dropped child {ours} was not reaped within {REAP_BOUND:?}: {:?}",
        childfd_testbin::read_stat(ours)
    );
    assert_eq!(
        host_events,
        vec![pidfd_no as u64],
        "the host's edge-triggered event was taken from its epoll"
    );
    let code = host_status.map(|s| s.code());
    assert!(
        matches!(code, Ok(Some(7))),
        "the host's own child was reaped by someone else: {code:?}"
    );
    // Both numbers are still the host's.
    epoll_add(&host_ep, &new_eventfd(), libc::EPOLLIN, 1);
    assert!(childfd_testbin::children().is_empty());
}

fn new_epoll() -> OwnedFd {
    // SAFETY: plain syscall; the result is checked and owned below.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a new fd nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn new_eventfd() -> OwnedFd {
    // SAFETY: as above.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: as above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Moves `fd` to number `to` (closing whatever `to` was: the library's
/// fd, which the host "swept").
fn dup_to(fd: OwnedFd, to: i32) -> OwnedFd {
    // SAFETY: dup3 onto a number the scenario sweeps on purpose.
    let r = unsafe { libc::dup3(fd.as_raw_fd(), to, libc::O_CLOEXEC) };
    assert_eq!(r, to, "dup3: {}", std::io::Error::last_os_error());
    // SAFETY: `to` now holds a new reference that this scenario owns.
    unsafe { OwnedFd::from_raw_fd(to) }
}

fn epoll_add(ep: &OwnedFd, fd: &OwnedFd, events: i32, data: u64) {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: data,
    };
    // SAFETY: valid fds and event.
    let r =
        unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
    assert_eq!(r, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
}

fn bump(ev: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    assert_eq!(rustix::io::write(ev.as_fd(), &one).unwrap(), 8);
}

/// The data of the events ready on `ep` now.
fn epoll_ready(ep: &OwnedFd) -> Vec<u64> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: valid buffer of 8 events.
    let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 8, 0) };
    assert!(
        n >= 0,
        "the host's epoll fd is gone: {}",
        std::io::Error::last_os_error()
    );
    evs[..n as usize].iter().map(|e| e.u64).collect()
}

/// Issue: a `fork()`ed copy's dropped children were sometimes not reaped
/// (the chaos soak's "dropped children were not reaped within 10 s"). The
/// copy took over the parent's reaper state and closed the parent's
/// adopted fds by number; a copy that had swept its fds and opened its own
/// files lost them (and its own children's pidfds) to that.
fn forked_copy_of_a_host_with_a_busy_reaper_reaps_its_dropped_children_and_keeps_its_files() {
    let stop = Arc::new(AtomicBool::new(false));
    // Threads keeping the reaper busy: children handed over all the time.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(Command::new(EXIT0).spawn().unwrap());
                    drop(Command::new(SLEEP200).spawn().unwrap());
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    let dir = scratch_dir("forkcopy");
    let mut failures = Vec::new();
    for round in 0..8 {
        // Pending in the parent's reaper at the fork, whatever the load:
        // they run until ended below.
        let pids: Vec<i32> = (0..4).map(|_| drop_running(PAUSE)).collect();
        assert!(childfd::pending_reaps() >= 4);
        // SAFETY: the copy runs ordinary Rust code (a library forking a
        // threaded program); glibc's fork keeps malloc usable in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: a bound on the copy: a hang ends it with SIGALRM.
            unsafe { libc::alarm(30) };
            let code = std::panic::catch_unwind(|| forked_copy(&dir.join(format!("r{round}"))))
                .unwrap_or(70);
            let _ = std::io::stdout().flush();
            // SAFETY: ends the copy without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let status = childfd_testbin::waitpid(pid);
        end_dropped(&pids);
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failures.push(format!("round {round}: copy status {status:#x}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    let reaped = childfd_testbin::eventually(REAP_BOUND, || {
        childfd::pending_reaps() == 0 && childfd_testbin::children().is_empty()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failures.is_empty(), "forked copies failed: {failures:?}");
    assert!(reaped, "the parent's dropped children were not reaped");
}

/// The copy: sweeps its fds, opens its own files, spawns, keeps one child
/// and drops two; all must be reaped within the bound, the kept one with
/// its own status, and the files untouched. Its exit code.
fn forked_copy(dir: &std::path::Path) -> i32 {
    close_from(3);
    std::fs::create_dir_all(dir).unwrap();
    let mut host = open_host_files(dir, 4);
    let kept = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    for _ in 0..2 {
        drop(Command::new(SLEEP200).spawn().unwrap());
    }
    let status = kept.wait_timeout(REAP_BOUND);
    drop(kept);
    let reaped = childfd_testbin::eventually(REAP_BOUND, || {
        childfd::pending_reaps() == 0 && childfd_testbin::children().is_empty()
    });
    let damage = host_file_damage(&mut host);
    let mut code = 0;
    if !matches!(&status, Ok(Some(s)) if s.code() == Some(3)) {
        println!("forked copy: the kept child's wait gave {status:?}");
        code = 1;
    }
    if !reaped {
        println!(
            "forked copy: dropped children not reaped within {REAP_BOUND:?}: pending {}, children {:?}",
            childfd::pending_reaps(),
            childfd_testbin::children()
        );
        code = 2;
    }
    if !damage.is_empty() {
        println!("forked copy: its own files: {damage:?}");
        code = 3;
    }
    code
}
