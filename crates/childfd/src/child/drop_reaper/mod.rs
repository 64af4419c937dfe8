//! The background reaper for children whose handle was dropped while they
//! ran.
//!
//! One thread, started at the first hand-over, blocks in `epoll_wait` over
//! the pidfds of every adopted child and reaps each exactly once with
//! `waitid(P_PIDFD)`, then closes its pidfd. Handing over is a few
//! non-blocking calls (`epoll_ctl`, fstat(2) checks and a short map
//! insert), so dropping a `Child` never blocks. No thread per child.
//!
//! It also removes the cgroup leaves of dropped children once their tree is
//! empty, woken by `POLLPRI` on `cgroup.events`.
//!
//! The thread blocks every signal the C library lets it block, so no
//! handler of the host runs on it and no handled signal interrupts its
//! waits.
//!
//! The thread and its fds exist only while something is adopted: the
//! thread ends once nothing is pending, and a later hand-over starts a new
//! one. So childfd keeps no fd open while nothing of it is in use.
//!
//! While something is adopted, the host may still close every fd it did
//! not open (`close_range(3, ~0)`) and open its own files at those
//! numbers. The reaper therefore uses no number it has not just checked
//! ([`held`], [`poller`]): it checks before each use, when an event is not
//! its own, when an epoll call fails, and on a monotonic schedule: 1 s
//! after the last event, then 2 s, 4 s, … up to 64 s while nothing happens
//! (see `thread`: a swept pidfd gives no event), however many events or
//! signals come meanwhile. If
//! anything is no longer its own it rebuilds: a new epoll instance, a new
//! pidfd for each child by `pidfd_open(pid)` (accepted only if it is the
//! same process: on pidfs the same inode), each `cgroup.events` reopened by
//! path. A number that failed its check is forgotten, never closed: it is
//! the host's now.
//!
//! # Caveats
//!
//! - If the thread cannot be started (thread limit reached), a child
//!   handed over then stays a zombie until a later hand-over starts it.
//! - On kernels before 6.9 every pidfd has the same inode; a pidfd is then
//!   checked by the pid its fdinfo names. If a foreign reaper in the host
//!   took a dropped child *and* the host swept the reaper's fds *and* the
//!   pid was reused by another child of the host before the reaper's next
//!   check, the reaper could take that child's status.

mod held;
mod poller;
mod thread;

pub(crate) use held::disable_pidfs;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::epoll;

use crate::sys::fork::PerProcess;
use crate::sys::pidfd::{self, Block};
use held::Held;
use poller::Poller;

/// What an adopted entry waits for.
enum What {
    /// A child to reap, by pid.
    Child(u32),
    /// A cgroup leaf to remove once empty, with `cgroup.events` open.
    Cgroup(PathBuf),
}

struct Entry {
    what: What,
    /// `None` while it could not be reopened (retried at each check).
    fd: Option<Held>,
    /// Registered with no events (ready but not finishable yet).
    muted: bool,
}

/// The result of [`Entry::try_finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Done,
    Pending,
    /// Its fd number is not ours any more: rebuild.
    Stale,
}

impl Entry {
    fn flags(&self) -> epoll::EventFlags {
        match self.what {
            What::Child(_) => epoll::EventFlags::IN,
            What::Cgroup(_) => epoll::EventFlags::PRI,
        }
    }

    /// Does the entry's work if it can now, through its checked fd.
    fn try_finish(&self) -> Progress {
        let Some(file) = self.fd.as_ref().and_then(Held::get) else {
            return Progress::Stale;
        };
        match &self.what {
            What::Child(pid) => match pidfd::wait(file.as_fd(), Block::No) {
                Ok(None) => Progress::Pending,
                // Reaped, or someone else did: done with this child.
                Ok(Some(_)) | Err(_) => {
                    crate::reaper::unregister(*pid);
                    Progress::Done
                }
            },
            // Read through the watched file: kernfs counts an event as seen
            // only when that open file reads it (else epoll keeps firing).
            What::Cgroup(path) => match crate::containment::cgroup::read_populated_from(file) {
                Ok(true) => Progress::Pending,
                Ok(false) if crate::containment::cgroup::remove_tree(path) => Progress::Done,
                // Empty but not removable yet (a sub-cgroup still being
                // torn down): retried.
                Ok(false) => Progress::Pending,
                Err(_) => Progress::Done, // gone already
            },
        }
    }

    /// Makes sure the entry's fd is its own again: keeps a number that
    /// still checks out, else forgets it and opens a fresh one. False if
    /// the entry has nothing left to do (its child or cgroup is gone).
    fn refresh(&mut self) -> bool {
        if self.fd.as_ref().is_some_and(|h| h.get().is_some()) {
            return true;
        }
        if let Some(h) = self.fd.as_mut() {
            h.forget();
        }
        let reopened = match &self.what {
            What::Child(pid) => reopen_child(*pid, self.fd.as_ref()),
            What::Cgroup(path) => File::open(path.join("cgroup.events"))
                .map(|f| Held::new(f.into(), None))
                .and_then(|h| h.ok_or_else(|| std::io::Error::other("fstat"))),
        };
        match reopened {
            Ok(fd) => {
                self.fd = Some(fd);
                true
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) => {
                if let What::Child(pid) = self.what {
                    crate::reaper::unregister(pid);
                }
                false
            }
            // Out of fds and the like: retried at the next check.
            Err(_) => true,
        }
    }
}

/// A fresh pidfd for `pid`, if it is still the process `old` was opened
/// for. The child is ours and unreaped (else it is gone: `ESRCH`), and an
/// unreaped child's pid cannot be reused. But after its exec a foreign
/// reaper in the host may have taken it; pidfs shows a reused pid by a new
/// inode.
fn reopen_child(pid: u32, old: Option<&Held>) -> std::io::Result<Held> {
    let fd = pidfd::open(pid as i32)?;
    let new = Held::new(fd, Some(pid as i32)).ok_or_else(|| std::io::Error::other("fstat"))?;
    match old {
        // A different process has the pid now: ours was reaped.
        Some(old) if !old.same_identity(&new) => {
            Err(std::io::Error::from_raw_os_error(libc::ESRCH))
        }
        _ => Ok(new),
    }
}

/// The reaper's state: the poller and thread exist only while adopted
/// entries are pending.
struct State {
    /// Shared with the thread, which ends (dropping its reference) once
    /// the map is empty. Replaced when rebuilt.
    poller: Option<Arc<Poller>>,
    /// Adopted entries by key (the low half of their epoll data).
    entries: HashMap<u32, Entry>,
    next_key: u32,
    /// Whether the thread runs (it may be without a poller for a while).
    running: bool,
    /// Random; the high half of every epoll data of this process.
    tag: u32,
}

/// One reaper per process. A `fork()`ed copy starts its own: the epoll fd
/// it inherited is the parent's epoll *instance*, so adding its children
/// there would wake (and, with keys the parent does not know, spin) the
/// parent's thread, and that thread does not exist in the copy anyway.
static REAPER: PerProcess<Mutex<State>> = PerProcess::new();

fn state() -> MutexGuard<'static, State> {
    let m = REAPER.get(
        || {
            Mutex::new(State {
                poller: None,
                entries: HashMap::new(),
                next_key: 0,
                running: false,
                tag: crate::containment::cgroup::name_nonce(),
            })
        },
        forget_parents,
    );
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// In a forked copy: lets go of the parent's adopted fds and epoll fd.
/// Each adopted fd is closed only if its number still names the file it
/// did (the copy's copy of it; closing that closes nothing of the
/// parent's) and never touched otherwise: the copy may have swept and
/// reused the numbers. The epoll fd, which cannot be proved ours without
/// an entry of the parent's, is forgotten, never closed.
/// No `epoll_ctl` reaches the shared instance. If a thread that did not survive the fork held the lock,
/// everything stays open.
fn forget_parents(stale: &Mutex<State>) {
    if let Ok(mut st) = stale.try_lock() {
        st.entries.clear();
        // Its last check was the parent's: in the copy the number may be a
        // file of the copy's by now (and every epoll shares one inode).
        if let Some(p) = st.poller.take() {
            p.distrust();
        }
    }
}

/// Hands `pidfd` (of child `pid`, not yet reaped) to the background
/// reaper. Never blocks.
pub(crate) fn adopt(pidfd: OwnedFd, pid: u32) {
    let fd = Held::new(pidfd, Some(pid as i32));
    register(Entry {
        what: What::Child(pid),
        fd,
        muted: false,
    });
}

/// Hands a cgroup leaf to the background reaper, which removes it once its
/// tree is empty. Never blocks.
pub(crate) fn adopt_cgroup(path: PathBuf) {
    if let Ok(events) = File::open(path.join("cgroup.events")) {
        let fd = Held::new(events.into(), None);
        register(Entry {
            what: What::Cgroup(path),
            fd,
            muted: false,
        });
    }
}

fn register(entry: Entry) {
    // Registered under the lock, so the reaper finds the entry in the map
    // as soon as it can see its event, and cannot decide to end meanwhile.
    let mut st = state();
    // A cgroup may have emptied before it is watched: check once now (an
    // event after this read is reported when it is added).
    if matches!(entry.what, What::Cgroup(_)) && entry.try_finish() == Progress::Done {
        return;
    }
    let fresh = !st.running;
    if fresh && !start(&mut st) {
        // No epoll instance or no thread: finish inline without blocking
        // if possible; a still-running child becomes a zombie until a
        // later hand-over starts the thread with it pending (documented).
        drop(st);
        entry.try_finish();
        return;
    }
    let key = st.next_key;
    st.next_key = (st.next_key + 1) % u32::MAX;
    // A poller made just now needs no probe; an older one must answer for
    // another entry before it gets this one.
    let ours = fresh || st.poller_is_ours(Some(key));
    let added = ours && st.poller.as_ref().is_some_and(|p| watch(p, key, &entry));
    st.entries.insert(key, entry);
    if !added {
        // The instance or the entry's fd is not ours any more.
        rebuild(&mut st);
    }
}

/// Registers the entry's checked fd with `p`.
fn watch(p: &Poller, key: u32, e: &Entry) -> bool {
    match e.fd.as_ref().and_then(Held::get) {
        Some(f) => p.add(key, f.as_fd(), e.flags()),
        None => false,
    }
}

impl State {
    /// Whether the poller's number still names it: probed with the first
    /// entry (other than `except`) whose own fd checks out.
    fn poller_is_ours(&self, except: Option<u32>) -> bool {
        let Some(p) = &self.poller else { return false };
        let probe = self.entries.iter().find_map(|(k, e)| {
            let f = e.fd.as_ref().and_then(Held::get)?;
            (Some(*k) != except).then_some((*k, f, e))
        });
        match probe {
            Some((k, f, e)) => {
                let flags = if e.muted {
                    epoll::EventFlags::empty()
                } else {
                    e.flags()
                };
                p.probe(k, f.as_fd(), flags)
            }
            None => false,
        }
    }
}

/// A new poller and the thread that waits on it.
fn start(st: &mut State) -> bool {
    let Ok(p) = Poller::new(st.tag) else {
        return false;
    };
    // The thread starts with every signal blocked: it never runs a host's
    // handler, and no handled signal cuts its waits short (EINTR).
    let started = crate::sys::signals::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("childfd-reaper".into())
            .stack_size(64 * 1024)
            .spawn(thread::run)
            .is_ok()
    });
    if started {
        st.poller = Some(Arc::new(p));
        st.running = true;
    }
    started
}

/// Replaces the poller with a new one holding every entry, each with an
/// fd that is its own again; drops entries with nothing left to do. The
/// old poller closes its fd only if a probe still finds it ours.
fn rebuild(st: &mut State) {
    if let Some(old) = &st.poller {
        if !st.poller_is_ours(None) {
            // Its number is forgotten, not closed.
            old.distrust();
        }
    }
    st.poller = None;
    let mut gone = Vec::new();
    for (k, e) in st.entries.iter_mut() {
        if !e.refresh() {
            gone.push(*k);
        }
    }
    for k in gone {
        st.entries.remove(&k);
    }
    let Ok(p) = Poller::new(st.tag) else {
        // Out of fds: the thread retries at its next tick without one.
        return;
    };
    for (k, e) in st.entries.iter_mut() {
        watch(&p, *k, e);
        e.muted = false;
    }
    st.poller = Some(Arc::new(p));
}

/// Number of adopted entries not finished yet (for tests and diagnostics).
pub(crate) fn pending() -> usize {
    match REAPER.peek() {
        Some(st) => st.lock().unwrap_or_else(|e| e.into_inner()).entries.len(),
        None => 0,
    }
}
