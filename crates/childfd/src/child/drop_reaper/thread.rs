//! The reaper thread's loop: wait, check, finish what is ready.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

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

/// The thread checks its fds and retries every entry on a schedule kept
/// by the monotonic clock: [`CHECK_FIRST`] after it starts or after the
/// last event, each check that finds everything in order with no event
/// since the one before doubles the gap, up to [`CHECK_MAX`]. Events and
/// interrupted waits never postpone a check that is due: under a steady
/// stream of them it still runs once per [`CHECK_FIRST`].
///
/// Why not sleep until an event: a host that closes the number of an
/// adopted pidfd (`close_range(3, ~0)`) releases that file, and epoll drops
/// it without a word, so that child's exit would never wake the thread.
/// Only looking finds that, and the kernel gives no notice of a `close`.
/// So a swept pidfd's child is reaped within about as long as the thread
/// had been idle before the sweep (at most [`CHECK_MAX`] late).
const CHECK_FIRST: Duration = Duration::from_secs(1);
/// The longest gap between two checks.
const CHECK_MAX: Duration = Duration::from_secs(64);
/// Entries that were ready but could not be finished (a zombie that a
/// debugger still holds, a cgroup not removable yet) are muted in epoll
/// and retried this often, so a level-triggered event cannot spin.
const RETRY: Duration = Duration::from_millis(100);

/// When the next full check is due.
struct Schedule {
    gap: Duration,
    due: Instant,
    /// An event came since the last check.
    eventful: bool,
}

impl Schedule {
    fn new() -> Schedule {
        Schedule {
            gap: CHECK_FIRST,
            due: Instant::now() + CHECK_FIRST,
            eventful: false,
        }
    }

    /// The wait until the check is due (at most `cap`).
    fn timeout(&self, cap: Option<Duration>) -> Timespec {
        let d = self.due.saturating_duration_since(Instant::now());
        let d = cap.map_or(d, |c| d.min(c));
        Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    }

    /// An event: the next check comes at most [`CHECK_FIRST`] from now.
    fn event(&mut self) {
        self.eventful = true;
        self.gap = CHECK_FIRST;
        self.due = self.due.min(Instant::now() + CHECK_FIRST);
    }

    fn is_due(&self) -> bool {
        Instant::now() >= self.due
    }

    /// A check ran; `quiet`: it found everything in order and nothing was
    /// pending or had happened since the one before.
    fn checked(&mut self, quiet: bool) {
        self.gap = if quiet && !self.eventful {
            (self.gap * 2).min(CHECK_MAX)
        } else {
            CHECK_FIRST
        };
        self.due = Instant::now() + self.gap;
        self.eventful = false;
    }
}

/// The reaper thread: reaps what becomes ready; ends, closing its fds, as
/// soon as nothing is pending. It runs with signals blocked (see
/// [`super::start`]), so its waits end only by an event or a timeout.
pub(super) fn run() {
    let mut events = Vec::with_capacity(256);
    let mut deferred: Vec<u32> = Vec::new();
    let mut schedule = Schedule::new();
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
        let timeout = schedule.timeout((!deferred.is_empty()).then_some(RETRY));
        let waited = match &poller {
            Some(p) => p.wait(&mut events, &timeout),
            None => {
                // No instance (out of fds): tick without one.
                std::thread::sleep(CHECK_FIRST);
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
        if !keys.is_empty() {
            schedule.event();
        }
        let due = schedule.is_due();
        if due || suspect {
            let in_order = check(&mut st);
            schedule.checked(in_order && !suspect && deferred.is_empty());
        }
        keys.append(&mut deferred);
        keys.sort_unstable();
        keys.dedup();
        deferred = finish(&mut st, &keys, true);
        if due || suspect {
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
