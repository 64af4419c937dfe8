//! The reaper thread's loop: wait, check, finish what is ready.

use std::os::fd::AsFd;

use rustix::event::Timespec;

use super::held::Held;
use super::poller::Source;
use super::{Progress, State, rebuild, state};

/// Checks every entry's fd; rebuilds if one is not ours. True if all were.
fn check(st: &mut State) -> bool {
    let intact = st
        .entries
        .values()
        .all(|e| e.fd.as_ref().is_some_and(|h| h.get().is_some()));
    if !intact || !st.poller_is_ours(None) {
        rebuild(st);
        return false;
    }
    true
}

/// Without anything ready, the thread checks its fds and retries every
/// entry after this long; each check that finds everything in order
/// doubles the wait, up to [`IDLE_MAX`], and anything else (an event, a
/// number not ours) brings it back to this.
///
/// Why not sleep until an event: a host that closes the number of an
/// adopted pidfd (`close_range(3, ~0)`) releases that file, and epoll drops
/// it without a word, so that child's exit would never wake the thread.
/// Only looking finds that, and the kernel gives no notice of a `close`.
/// So a swept pidfd's child is reaped within about as long as the thread
/// had been idle before the sweep (at most [`IDLE_MAX`] late).
const IDLE_FIRST: u64 = 1;
/// The longest idle wait, in seconds.
const IDLE_MAX: u64 = 64;
/// Entries that were ready but could not be finished (a zombie that a
/// debugger still holds, a cgroup not removable yet) are muted in epoll
/// and retried this often, so a level-triggered event cannot spin.
const RETRY: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// The reaper thread: reaps what becomes ready; ends, closing its fds, as
/// soon as nothing is pending.
pub(super) fn run() {
    let mut events = Vec::with_capacity(256);
    let mut deferred: Vec<u32> = Vec::new();
    let mut idle_secs = IDLE_FIRST;
    loop {
        events.clear();
        let poller = {
            let mut st = state();
            if st.entries.is_empty() {
                // (A hand-over that found its cgroup empty added nothing.)
                st.poller = None;
                st.running = false;
                return;
            }
            // Never wait on a number that may be a host's epoll now.
            if !st.poller_is_ours(None) {
                rebuild(&mut st);
            }
            st.poller.clone()
        };
        let idle_wait = Timespec {
            tv_sec: idle_secs as i64,
            tv_nsec: 0,
        };
        let timeout = if deferred.is_empty() {
            &idle_wait
        } else {
            &RETRY
        };
        let waited = match &poller {
            Some(p) => p.wait(&mut events, timeout),
            None => {
                // No instance (out of fds): tick without one.
                std::thread::sleep(std::time::Duration::from_secs(1));
                Ok(())
            }
        };
        let mut st = state();
        let mut suspect = matches!(waited, Err(e) if e != rustix::io::Errno::INTR);
        let mut keys: Vec<u32> = Vec::new();
        for ev in &events {
            match poller.as_ref().map(|p| p.source(ev)) {
                Some(Source::Entry(k)) => keys.push(k),
                _ => suspect = true,
            }
        }
        let idle = waited.is_ok() && events.is_empty();
        let in_order = !(suspect || idle) || check(&mut st);
        idle_secs = if idle && in_order && deferred.is_empty() {
            (idle_secs * 2).min(IDLE_MAX)
        } else {
            IDLE_FIRST
        };
        keys.append(&mut deferred);
        keys.sort_unstable();
        keys.dedup();
        deferred = finish(&mut st, &keys, true);
        if idle || suspect {
            // Everything else once more: an event may have been lost with
            // a swept fd, or missed (a cgroup not removable at its event).
            let rest: Vec<u32> = st
                .entries
                .keys()
                .filter(|k| !keys.contains(k))
                .copied()
                .collect();
            finish(&mut st, &rest, false);
        }
        if st.entries.is_empty() {
            // The last references: closes the poller's fd (if still ours)
            // before anyone can see nothing pending.
            st.poller = None;
            drop(poller);
            st.running = false;
            return;
        }
    }
}

/// Finishes what it can of `keys`. With `ready` (they had an event),
/// returns those still pending, muted in epoll, to retry.
fn finish(st: &mut State, keys: &[u32], ready: bool) -> Vec<u32> {
    let mut deferred = Vec::new();
    let mut stale = false;
    for key in keys {
        let Some(entry) = st.entries.get_mut(key) else {
            continue;
        };
        let progress = entry.try_finish();
        let fd = entry.fd.as_ref().and_then(Held::get);
        match (progress, &st.poller, fd) {
            (Progress::Done, p, fd) => {
                if let (Some(p), Some(f)) = (p, fd) {
                    p.delete(f.as_fd());
                }
                st.entries.remove(key);
            }
            (Progress::Pending, _, _) if !ready => {}
            (Progress::Pending, p, fd) => {
                if let (Some(p), Some(f)) = (p, fd) {
                    p.mute(*key, f.as_fd());
                }
                entry.muted = true;
                deferred.push(*key);
            }
            (Progress::Stale, _, _) => stale = true,
        }
    }
    if stale {
        rebuild(st);
    }
    deferred
}
