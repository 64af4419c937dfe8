//! The background reaper for children whose handle was dropped while they
//! ran.
//!
//! One thread, started at the first hand-over, blocks in `epoll_wait` over
//! the pidfds of every adopted child and reaps each exactly once with
//! `waitid(P_PIDFD)`, then closes its pidfd. Handing over is two
//! non-blocking calls (`epoll_ctl` and a short map insert), so dropping a
//! `Child` never blocks. No thread per child.
//!
//! It also removes the cgroup leaves of dropped children once their tree is
//! empty, woken by `POLLPRI` on `cgroup.events`.
//!
//! # Caveats
//!
//! If the thread cannot be started (thread limit reached), adopted
//! children stay registered and are reaped once a later hand-over manages
//! to start it; until then they remain zombies.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::epoll;

use crate::sys::fork::PerProcess;
use crate::sys::pidfd::{self, Block};

enum Entry {
    /// A child to reap: its pidfd and pid.
    Child(OwnedFd, u32),
    /// A cgroup leaf to remove once empty: its `cgroup.events` and path.
    Cgroup(File, PathBuf),
}

impl Entry {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Entry::Child(fd, _) => fd.as_fd(),
            Entry::Cgroup(f, _) => f.as_fd(),
        }
    }

    /// Does the entry's work if it can now; true when done.
    fn try_finish(&self) -> bool {
        match self {
            Entry::Child(fd, pid) => match pidfd::wait(fd.as_fd(), Block::No) {
                Ok(None) => false,
                // Reaped, or someone else did: done with this child.
                Ok(Some(_)) | Err(_) => {
                    crate::reaper::unregister(*pid);
                    true
                }
            },
            // Read through the watched file: kernfs counts an event as seen
            // only when that open file reads it (else epoll keeps firing).
            Entry::Cgroup(events, path) => {
                match crate::containment::cgroup::read_populated_from(events) {
                    Ok(true) => false,
                    Ok(false) => std::fs::remove_dir(path).is_ok(),
                    Err(_) => true, // gone already
                }
            }
        }
    }
}

struct Reaper {
    epoll: OwnedFd,
    /// Adopted fds by number; the map owns them.
    entries: Mutex<HashMap<i32, Entry>>,
    started: AtomicBool,
}

/// One reaper per process. A `fork()`ed copy starts its own: the epoll fd
/// it inherited is the parent's epoll *instance*, so adding its children
/// there would wake (and, with keys the parent does not know, spin) the
/// parent's thread, and that thread does not exist in the copy anyway.
static REAPER: PerProcess<Option<Reaper>> = PerProcess::new();

fn reaper() -> &'static Option<Reaper> {
    REAPER.get(
        || {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
            Some(Reaper {
                epoll,
                entries: Mutex::new(HashMap::new()),
                started: AtomicBool::new(false),
            })
        },
        forget_parents,
    )
}

/// In a forked copy: closes our copies of the parent's adopted fds, which
/// closes nothing of the parent's (the parent holds its own), and never
/// calls `epoll_ctl` on the shared instance. The copy's epoll fd stays
/// open (the value is never dropped); if a thread that did not survive the
/// fork held the map's lock, the entries stay open too.
fn forget_parents(stale: &Option<Reaper>) {
    if let Some(r) = stale {
        if let Ok(mut map) = r.entries.try_lock() {
            map.clear();
        }
    }
}

/// Hands `pidfd` (of child `pid`, not yet reaped) to the background
/// reaper. Never blocks.
pub(crate) fn adopt(pidfd: OwnedFd, pid: u32) {
    register(Entry::Child(pidfd, pid), epoll::EventFlags::IN);
}

/// Hands a cgroup leaf to the background reaper, which removes it once its
/// tree is empty. Never blocks.
pub(crate) fn adopt_cgroup(path: PathBuf) {
    if let Ok(events) = File::open(path.join("cgroup.events")) {
        register(Entry::Cgroup(events, path), epoll::EventFlags::PRI);
    }
}

fn register(entry: Entry, flags: epoll::EventFlags) {
    let Some(r) = reaper() else {
        // No epoll instance: finish inline without blocking if possible;
        // a still-running child becomes a zombie later (documented).
        entry.try_finish();
        return;
    };
    let key = entry.fd().as_raw_fd();
    {
        // Registered under the lock, so the reaper finds the entry in the
        // map as soon as it can see its event.
        let mut map = r.entries.lock().unwrap_or_else(|e| e.into_inner());
        if epoll::add(
            &r.epoll,
            entry.fd(),
            epoll::EventData::new_u64(key as u64),
            flags,
        )
        .is_err()
        {
            drop(map);
            entry.try_finish();
            return;
        }
        // A cgroup may have emptied before it was watched: check once now.
        if matches!(entry, Entry::Cgroup(..)) && entry.try_finish() {
            let _ = epoll::delete(&r.epoll, entry.fd());
            return;
        }
        map.insert(key, entry);
    }
    if !r.started.swap(true, Ordering::AcqRel) {
        let spawned = std::thread::Builder::new()
            .name("childfd-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || run(r));
        if spawned.is_err() {
            r.started.store(false, Ordering::Release);
        }
    }
}

fn run(r: &'static Reaper) {
    let mut events = Vec::with_capacity(256);
    // Entries that were ready but could not be finished (a zombie that a
    // debugger still holds): muted in epoll and retried every 100 ms, so a
    // level-triggered event cannot make this thread spin.
    let mut deferred: Vec<i32> = Vec::new();
    let retry = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        events.clear();
        let timeout = if deferred.is_empty() {
            None
        } else {
            Some(&retry)
        };
        if epoll::wait(
            &r.epoll,
            rustix::buffer::spare_capacity(&mut events),
            timeout,
        )
        .is_err()
        {
            continue; // EINTR
        }
        let mut map = r.entries.lock().unwrap_or_else(|e| e.into_inner());
        let ready = events.iter().map(|ev| ev.data.u64() as i32);
        let keys: Vec<i32> = ready.chain(deferred.drain(..)).collect();
        for key in keys {
            let Some(entry) = map.get(&key) else { continue };
            if entry.try_finish() {
                let _ = epoll::delete(&r.epoll, entry.fd());
                map.remove(&key);
            } else if matches!(entry, Entry::Child(..)) {
                let data = epoll::EventData::new_u64(key as u64);
                let _ = epoll::modify(&r.epoll, entry.fd(), data, epoll::EventFlags::empty());
                if !deferred.contains(&key) {
                    deferred.push(key);
                }
            }
        }
    }
}

/// Number of adopted entries not finished yet (for tests and diagnostics).
pub(crate) fn pending() -> usize {
    match REAPER.peek() {
        Some(Some(r)) => r.entries.lock().unwrap_or_else(|e| e.into_inner()).len(),
        _ => 0,
    }
}
