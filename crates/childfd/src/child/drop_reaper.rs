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
//! The thread and its epoll fd exist only while something is adopted: the
//! thread ends once nothing is pending, and a later hand-over starts a new
//! one. So childfd keeps no fd open while nothing of it is in use.
//!
//! # Caveats
//!
//! If the thread cannot be started (thread limit reached), a child handed
//! over then stays a zombie (it is not kept for a later attempt).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
                    Ok(false) => crate::containment::cgroup::remove_tree(path),
                    Err(_) => true, // gone already
                }
            }
        }
    }
}

/// The reaper's state: the epoll instance and thread exist only while
/// adopted entries are pending.
struct State {
    /// Shared with the thread, which ends (dropping its reference, closing
    /// the fd) once the map is empty.
    epoll: Option<Arc<OwnedFd>>,
    /// Adopted fds by number; the map owns them.
    entries: HashMap<i32, Entry>,
}

/// One reaper per process. A `fork()`ed copy starts its own: the epoll fd
/// it inherited is the parent's epoll *instance*, so adding its children
/// there would wake (and, with keys the parent does not know, spin) the
/// parent's thread, and that thread does not exist in the copy anyway.
static REAPER: PerProcess<Mutex<State>> = PerProcess::new();

fn state() -> &'static Mutex<State> {
    REAPER.get(
        || {
            Mutex::new(State {
                epoll: None,
                entries: HashMap::new(),
            })
        },
        forget_parents,
    )
}

/// In a forked copy: closes our copies of the parent's adopted fds and
/// epoll fd, which closes nothing of the parent's (the parent holds its
/// own), and never calls `epoll_ctl` on the shared instance. If a thread
/// that did not survive the fork held the lock, they stay open.
fn forget_parents(stale: &Mutex<State>) {
    if let Ok(mut st) = stale.try_lock() {
        st.entries.clear();
        st.epoll = None;
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
    // Registered under the lock, so the reaper finds the entry in the map
    // as soon as it can see its event, and cannot decide to end meanwhile.
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    let epoll = match &st.epoll {
        Some(e) => e.clone(),
        None => match start() {
            Some(e) => {
                st.epoll = Some(e.clone());
                e
            }
            None => {
                // No epoll instance or no thread: finish inline without
                // blocking if possible; a still-running child becomes a
                // zombie until a later hand-over starts the thread with
                // it pending (documented).
                drop(st);
                entry.try_finish();
                return;
            }
        },
    };
    let key = entry.fd().as_raw_fd();
    let data = epoll::EventData::new_u64(key as u64);
    if epoll::add(&*epoll, entry.fd(), data, flags).is_err() {
        drop(st);
        entry.try_finish();
        return;
    }
    // A cgroup may have emptied before it was watched: check once now.
    if matches!(entry, Entry::Cgroup(..)) && entry.try_finish() {
        let _ = epoll::delete(&*epoll, entry.fd());
        return;
    }
    st.entries.insert(key, entry);
}

/// A new epoll instance and the thread that waits on it.
fn start() -> Option<Arc<OwnedFd>> {
    let epoll = Arc::new(epoll::create(epoll::CreateFlags::CLOEXEC).ok()?);
    let theirs = epoll.clone();
    std::thread::Builder::new()
        .name("childfd-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || run(theirs))
        .ok()?;
    Some(epoll)
}

/// The reaper thread: reaps what becomes ready; ends, closing its epoll
/// fd, as soon as nothing is pending. No fd of childfd's stays open while
/// nothing is adopted, so a host that later closes and reuses fd numbers
/// (`close_range(3, ~0)`) can never have the reaper wait on its files.
fn run(epoll: Arc<OwnedFd>) {
    let mut events = Vec::with_capacity(256);
    // Entries that were ready but could not be finished (a zombie that a
    // debugger still holds): muted in epoll and retried every 100 ms, so a
    // level-triggered event cannot make this thread spin.
    let mut deferred: Vec<i32> = Vec::new();
    let retry = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    // Without anything ready, look once a second whether anything is left
    // (a hand-over may have found its entry finished and added none).
    let idle = rustix::event::Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        events.clear();
        let timeout = if deferred.is_empty() { &idle } else { &retry };
        let timeout = Some(timeout);
        if let Err(e) = epoll::wait(
            &*epoll,
            rustix::buffer::spare_capacity(&mut events),
            timeout,
        ) {
            if e == rustix::io::Errno::INTR {
                continue;
            }
            // Not an epoll any more: nothing can be waited for here.
            deferred.clear();
        }
        let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
        let ready = events.iter().map(|ev| ev.data.u64() as i32);
        let keys: Vec<i32> = ready.chain(deferred.drain(..)).collect();
        for key in keys {
            let Some(entry) = st.entries.get(&key) else {
                continue;
            };
            if entry.try_finish() {
                let _ = epoll::delete(&*epoll, entry.fd());
                st.entries.remove(&key);
            } else if matches!(entry, Entry::Child(..)) {
                let data = epoll::EventData::new_u64(key as u64);
                let _ = epoll::modify(&*epoll, entry.fd(), data, epoll::EventFlags::empty());
                if !deferred.contains(&key) {
                    deferred.push(key);
                }
            }
        }
        if st.entries.is_empty() {
            if st.epoll.as_ref().is_some_and(|e| Arc::ptr_eq(e, &epoll)) {
                st.epoll = None;
            }
            return;
        }
    }
}

/// Number of adopted entries not finished yet (for tests and diagnostics).
pub(crate) fn pending() -> usize {
    match REAPER.peek() {
        Some(st) => st.lock().unwrap_or_else(|e| e.into_inner()).entries.len(),
        None => 0,
    }
}
