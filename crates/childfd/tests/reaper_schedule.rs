//! The drop reaper's periodic check of its fds, in a host that keeps the
//! reaper thread busy: a swept pidfd gives no event, so only that check
//! finds the dropped child it belonged to, and nothing may postpone it for
//! ever.
//!
//! Each scenario runs in its own process (`main` re-runs this binary with
//! `CHILDFD_REAPER_SCHEDULE_SCENARIO` set), so its signal flood and the fd
//! it sweeps stay inside it; a scenario that overruns its bound is killed
//! and fails.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use childfd::Command;
use childfd_testbin::{EXIT0, PAUSE, SLEEP200};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "a_swept_pidfd_is_noticed_while_handled_signals_hit_the_reaper_thread",
        a_swept_pidfd_is_noticed_while_handled_signals_hit_the_reaper_thread,
    ),
    (
        "a_swept_pidfd_is_noticed_while_other_dropped_children_keep_the_reaper_busy",
        a_swept_pidfd_is_noticed_while_other_dropped_children_keep_the_reaper_busy,
    ),
];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// Longest a dropped child whose pidfd was swept may stay unreaped after
/// it exited (the reaper checks at least once a second while busy).
const REAP_BOUND: Duration = Duration::from_secs(10);

fn main() {
    childfd_testbin::scenario::main(
        "CHILDFD_REAPER_SCHEDULE_SCENARIO",
        SCENARIOS,
        SCENARIO_LIMIT,
    );
}

/// Issue: the reaper thread did not block signals, and a wait cut short
/// by `EINTR` neither counted as idle nor moved the check's deadline, so a
/// handled signal arriving more often than once a second (a profiler's
/// timer, a host's SIGUSR1 traffic) postponed the check of its fds for
/// ever: a dropped child whose pidfd the host swept stayed a zombie. And
/// the host's handler ran on the library's thread.
fn a_swept_pidfd_is_noticed_while_handled_signals_hit_the_reaper_thread() {
    install_counting_handler(libc::SIGUSR1);
    swept_child_is_reaped_while(|stop, reaper_tid, done| {
        let me = std::process::id() as i32;
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: plain syscall; the handler is installed.
            let r = unsafe { libc::syscall(libc::SYS_tgkill, me, reaper_tid, libc::SIGUSR1) };
            sent += u64::from(r == 0);
            done.store(sent, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(100));
        }
        assert!(sent > 50, "only {sent} signals sent to the reaper thread");
        println!("  {sent} SIGUSR1 sent to the reaper thread");
    });
    let on_reaper = ON_REAPER.load(Ordering::Relaxed);
    assert_eq!(
        on_reaper, 0,
        "the host's SIGUSR1 handler ran {on_reaper} times on the reaper thread"
    );
}

/// Issue: the check of the reaper's fds ran only after a wait that ended
/// with nothing ready; other dropped children exiting every few
/// milliseconds (a build system dropping handles) postponed it for ever,
/// so a dropped child whose pidfd the host swept stayed a zombie.
fn a_swept_pidfd_is_noticed_while_other_dropped_children_keep_the_reaper_busy() {
    swept_child_is_reaped_while(|stop, _, done| {
        let mut dropped = 0u64;
        while !stop.load(Ordering::Relaxed) {
            drop(Command::new(EXIT0).spawn().unwrap());
            drop(Command::new(SLEEP200).spawn().unwrap());
            dropped += 2;
            done.store(dropped, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("  {dropped} other children dropped meanwhile");
    });
}

/// Drops two running children, closes the pidfd number of one of them
/// behind the library's back (a host sweeping fds), runs `disturb` on a
/// thread (with a stop flag, the reaper thread's tid and a counter of what
/// it did), ends the swept
/// child by pid and requires it reaped within [`REAP_BOUND`]; then leaves
/// no child, pending reap or fd behind.
fn swept_child_is_reaped_while(disturb: fn(&AtomicBool, i32, &AtomicU64)) {
    let before = childfd_testbin::open_fds();
    // An adopted child whose pidfd stays intact: the reaper's quick probe
    // of its epoll instance succeeds through it all along.
    let intact = drop_running(PAUSE);
    let child = Command::new(PAUSE).spawn().unwrap();
    let (swept, swept_fd) = (child.id() as i32, child.as_raw_fd());
    drop(child);
    let mut tid = None;
    assert!(
        childfd_testbin::eventually(REAP_BOUND, || {
            tid = reaper_tid();
            tid.is_some()
        }),
        "no reaper thread"
    );
    let tid = tid.unwrap();
    REAPER_TID.store(tid, Ordering::Relaxed);
    // SAFETY: the scenario sweeps this number on purpose (the point of the
    // test: the library's adopted pidfd goes).
    assert_eq!(unsafe { libc::close(swept_fd) }, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (s, d) = (stop.clone(), done.clone());
    let disturber = std::thread::spawn(move || disturb(&s, tid, &d));
    // Once the disturbance runs, end the swept child. It was never reaped
    // (it cannot exit by itself), so its pid is still its own.
    assert!(
        childfd_testbin::eventually(REAP_BOUND, || done.load(Ordering::Relaxed) >= 20),
        "the disturbance did not start"
    );
    assert!(childfd_testbin::kill(swept, libc::SIGKILL));
    let reaped =
        childfd_testbin::eventually(REAP_BOUND, || childfd_testbin::read_stat(swept).is_none());
    stop.store(true, Ordering::Relaxed);
    disturber.join().unwrap();
    assert!(childfd_testbin::kill(intact, libc::SIGKILL));
    let clean = childfd_testbin::eventually(REAP_BOUND, || {
        childfd::pending_reaps() == 0
            && childfd_testbin::children().is_empty()
            && childfd_testbin::leaked_fds_since(&before).is_empty()
    });
    assert!(
        reaped,
        "the dropped child {swept} whose pidfd was swept was not reaped within {REAP_BOUND:?}: {:?}",
        childfd_testbin::read_stat(swept)
    );
    assert!(
        clean,
        "left behind: {} pending reaps, children {:?}, fds {:?}",
        childfd::pending_reaps(),
        childfd_testbin::children(),
        childfd_testbin::leaked_fds_since(&before)
    );
}

/// Spawns `program` (which runs until signalled) and drops its handle
/// while it runs: the background reaper has it. Its pid.
fn drop_running(program: &str) -> i32 {
    let child = Command::new(program).spawn().unwrap();
    let pid = child.id() as i32;
    drop(child);
    pid
}

/// The tid of the thread named `childfd-reaper`, once it runs.
fn reaper_tid() -> Option<i32> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "childfd-reaper")
        })
        .and_then(|t| t.file_name().to_str()?.parse().ok())
}

static REAPER_TID: AtomicI32 = AtomicI32::new(0);
/// How often the handler ran on the reaper thread.
static ON_REAPER: AtomicU64 = AtomicU64::new(0);

extern "C" fn counting_handler(_: libc::c_int) {
    // SAFETY: gettid is async-signal-safe; atomics are lock-free.
    let me = unsafe { libc::gettid() };
    if me == REAPER_TID.load(Ordering::Relaxed) {
        ON_REAPER.fetch_add(1, Ordering::Relaxed);
    }
}

/// A host's handler for `sig` (`SA_RESTART`, as most hosts install them;
/// `epoll_wait` is never restarted after a handler anyway).
fn install_counting_handler(sig: i32) {
    childfd_testbin::install_handler(sig, counting_handler);
}
