//! The orphan [`Reaper`](childfd::reaper::Reaper) and its SIGCHLD wake-up
//! in a host that closes every fd it did not open (`close_range(3, ~0)`
//! when it daemonizes) and opens its own files, which take the numbers of
//! the reaper's pipes.
//!
//! Each scenario runs in its own process (`main` re-runs this binary with
//! `CHILDFD_ORPHAN_REAPER_FDS_SCENARIO` set), so the `close_range` and the
//! process-wide SIGCHLD handler stay inside it; a scenario that overruns
//! its bound is killed and fails.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use childfd::Command;
use childfd::reaper::Reaper;
use childfd_testbin::{EXIT0, eventually};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "sigchld_handler_writes_into_the_host_file_at_the_wake_fd_number",
        sigchld_handler_writes_into_the_host_file_at_the_wake_fd_number,
    ),
    (
        "orphan_thread_spins_polling_and_reading_host_files_after_close_range",
        orphan_thread_spins_polling_and_reading_host_files_after_close_range,
    ),
    (
        "reaper_drop_closes_the_host_fd_at_its_stop_fd_number",
        reaper_drop_closes_the_host_fd_at_its_stop_fd_number,
    ),
];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// Longest an exited orphan may stay a zombie.
const REAP_BOUND: Duration = Duration::from_secs(10);

fn main() {
    childfd_testbin::scenario::main(
        "CHILDFD_ORPHAN_REAPER_FDS_SCENARIO",
        SCENARIOS,
        SCENARIO_LIMIT,
    );
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

/// `close_range(3, ~0, 0)`: the host sweeps every fd it did not open.
fn close_from_3() {
    // SAFETY: the scenario owns every fd from 3 up, and no other thread of
    // it but the reaper's uses one meanwhile (the point of the test).
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    assert_eq!(r, 0, "close_range: {}", std::io::Error::last_os_error());
}

/// A host file: its number, identity and content.
struct HostFile {
    file: std::fs::File,
    fd: i32,
    id: (u64, u64),
    content: String,
}

/// Opens `n` host files in a fresh directory (they take the lowest free
/// numbers: the reaper's old ones).
fn open_host_files(name: &str, n: usize) -> (std::path::PathBuf, Vec<HostFile>) {
    let dir = std::env::temp_dir().join(format!("childfd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = (0..n)
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
        .collect();
    (dir, files)
}

/// What is wrong with the host's files now: a number that names another
/// file (or none), a moved offset (someone read or wrote through it),
/// other content.
fn host_file_damage(files: &mut [HostFile]) -> Vec<String> {
    let mut bad = Vec::new();
    for h in files {
        match std::fs::metadata(format!("/proc/self/fd/{}", h.fd)) {
            Ok(m) if (m.dev(), m.ino()) == h.id => {}
            other => {
                bad.push(format!("fd {} is not the host's file now: {other:?}", h.fd));
                continue;
            }
        }
        let pos = h.file.stream_position().unwrap_or(u64::MAX);
        if pos != 0 {
            bad.push(format!("fd {} was read or written: offset {pos}", h.fd));
        }
        let mut s = String::new();
        h.file.seek(SeekFrom::Start(0)).unwrap();
        h.file.read_to_string(&mut s).unwrap();
        h.file.seek(SeekFrom::Start(0)).unwrap();
        if s != h.content {
            bad.push(format!("fd {} content changed: {:?}", h.fd, s.as_bytes()));
        }
    }
    bad
}

/// Children that raise SIGCHLD (owned by `Child` handles, so the orphan
/// pass never takes their statuses).
fn raise_sigchld(n: usize) {
    for _ in 0..n {
        let child = Command::new(EXIT0).spawn().unwrap();
        let status = child.wait_timeout(REAP_BOUND).unwrap();
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}

/// Makes an orphan that exits after 50 ms (a `sh` that leaves a `sleep`
/// behind) and checks that the reaper reaps it within the bound.
fn orphan_is_reaped(reaper: &Reaper) {
    let before = reaper.reaped();
    let sh = Command::new("sh")
        .args(["-c", "sleep 0.05 & exit 0"])
        .spawn()
        .unwrap();
    assert!(sh.wait_timeout(REAP_BOUND).unwrap().unwrap().success());
    assert!(
        eventually(REAP_BOUND, || reaper.reaped() > before),
        "an orphan that exited after the host's close_range was not reaped"
    );
    let zombies: Vec<_> = childfd_testbin::children()
        .into_iter()
        .filter(|p| p.state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
}

/// The scenario's common end: the reaper is dropped in bounded time, its
/// thread is gone, the host's files are intact, nothing is left behind.
fn finish(reaper: Reaper, dir: &std::path::Path, host: &mut [HostFile]) {
    let t = Instant::now();
    drop(reaper);
    let took = t.elapsed();
    assert!(
        took < REAP_BOUND,
        "dropping the Reaper took {took:?} (its thread could not be woken)"
    );
    assert!(
        thread_ticks("childfd-orphans").is_none(),
        "the orphan thread outlived its handle"
    );
    let damage = host_file_damage(host);
    assert!(
        damage.is_empty(),
        "after the Reaper was dropped: {damage:?}"
    );
    assert!(childfd_testbin::children().is_empty(), "children left");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue: the SIGCHLD handler wrote 8 bytes per SIGCHLD to the fd number
/// remembered for its eventfd, which after the host's `close_range` was
/// the host's log file.
fn sigchld_handler_writes_into_the_host_file_at_the_wake_fd_number() {
    childfd::reaper::become_subreaper().unwrap();
    let reaper = Reaper::start().unwrap();
    close_from_3();
    let (dir, mut host) = open_host_files("orphan-wake", 6);
    raise_sigchld(3);
    // Another SIGCHLD, handled while the thread already made new pipes.
    orphan_is_reaped(&reaper);
    raise_sigchld(3);
    let damage = host_file_damage(&mut host);
    assert!(damage.is_empty(), "after SIGCHLDs: {damage:?}");
    finish(reaper, &dir, &mut host);
}

/// Issue: after the host's `close_range`, the thread polled and read the
/// host's regular files at its numbers (always readable): it spun, and
/// moved their offsets.
fn orphan_thread_spins_polling_and_reading_host_files_after_close_range() {
    childfd::reaper::become_subreaper().unwrap();
    let reaper = Reaper::start().unwrap();
    orphan_is_reaped(&reaper);
    close_from_3();
    let (dir, mut host) = open_host_files("orphan-spin", 6);
    raise_sigchld(3);
    // A measuring window, not synchronisation: an idle thread costs no CPU.
    let t0 = thread_ticks("childfd-orphans").expect("orphan thread");
    std::thread::sleep(Duration::from_secs(1));
    let ticks = thread_ticks("childfd-orphans").expect("orphan thread") - t0;
    println!("orphan thread after close_range: {ticks} CPU ticks in 1 s");
    assert!(
        ticks <= 5,
        "the orphan thread used {ticks} ticks of CPU in 1 s (100 = one core)"
    );
    let damage = host_file_damage(&mut host);
    assert!(damage.is_empty(), "after the idle second: {damage:?}");
    orphan_is_reaped(&reaper);
    finish(reaper, &dir, &mut host);
}

/// Issue: dropping the Reaper closed its stop eventfd by number, which
/// after the host's `close_range` was the host's file.
fn reaper_drop_closes_the_host_fd_at_its_stop_fd_number() {
    let reaper = Reaper::start().unwrap();
    close_from_3();
    let (dir, mut host) = open_host_files("orphan-drop", 6);
    finish(reaper, &dir, &mut host);
    drop(host);
    // And with the thread having remade its pipes first.
    let reaper = Reaper::start().unwrap();
    close_from_3();
    let (dir, mut host) = open_host_files("orphan-drop2", 6);
    raise_sigchld(2);
    finish(reaper, &dir, &mut host);
}
