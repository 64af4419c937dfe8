//! Low fd numbers reserved for the sources of a spawn's fd plan, so that the
//! child copies only the bottom of the parent's fd table.
//!
//! Without `CLONE_FILES`, [`clone(2)`] copies the parent's whole fd table
//! (taking a reference on every open file) and [`execve(2)`] drops every
//! copy again: a parent holding 10,000 pidfds of children in flight pays
//! that on every spawn, three to four times the cost of the spawn itself.
//! With `CLONE_FILES` the child starts on the parent's table and its first
//! fd step is [`close_range(2)`]`(n, ~0, CLOSE_RANGE_UNSHARE)`, which gives
//! it a private copy of the fds below `n` only. That is cheap only if every
//! fd the child needs is a low number: so each source of the fd plan that
//! lies above [`LOW`] (a pipe end, `/dev/null`, a caller's fd) is duplicated
//! into one of a few low slots reserved here (`dup3`), and the slot is put
//! back to `/dev/null` as soon as the child has exec'd, so that it never
//! keeps a pipe open.
//!
//! The slots are ordinary fds of the process. They must be taken while low
//! numbers are still free, so the first set is made at the first spawn of
//! the process, whatever it needs; another set is made when threads spawn
//! at the same time, for as long as new sets still come out low. A spawn
//! that finds no set free simply copies more of the table. A process that
//! has spawned therefore keeps four more fds open (`/dev/null` and one set);
//! [`crate::reserved_fds`] lists them.
//!
//! [`clone(2)`]: https://man7.org/linux/man-pages/man2/clone.2.html
//! [`execve(2)`]: https://man7.org/linux/man-pages/man2/execve.2.html
//! [`close_range(2)`]: https://man7.org/linux/man-pages/man2/close_range.2.html

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{Mode, OFlags};
use rustix::io::DupFlags;

/// Sources at or below this number are used where they are: copying a
/// table this small costs less than parking.
pub(crate) const LOW: RawFd = 64;
/// Slots per set: the three standard streams.
const SLOTS: usize = 3;
/// At most this many sets exist (one per thread spawning at the same time);
/// a spawn that finds none free does without.
const MAX_SETS: usize = 16;

static NULL: OnceLock<OwnedFd> = OnceLock::new();

struct Pool {
    free: Vec<[OwnedFd; SLOTS]>,
    created: usize,
    /// A new set came out above [`LOW`]: no use making more.
    crowded: bool,
    /// Every slot ever created and still open, for [`reserved`].
    numbers: Vec<RawFd>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    created: 0,
    crowded: false,
    numbers: Vec::new(),
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process-wide `/dev/null` (read-write, close-on-exec), opened at
/// first use: the source of `Stdio::null()` and the resting value of every
/// slot.
pub(crate) fn null() -> rustix::io::Result<BorrowedFd<'static>> {
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let mut fd = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    if fd.as_raw_fd() < 3 {
        // Started with a standard stream closed: never keep 0-2 for good,
        // or a later dup2 onto it by the program would redirect ours.
        fd = rustix::io::fcntl_dupfd_cloexec(&fd, 3)?;
    }
    // A racing thread may have set it first: ours is then closed.
    let _ = NULL.set(fd);
    Ok(NULL.get().expect("set above").as_fd())
}

/// The fds this module keeps open: `/dev/null` and the slots.
pub(crate) fn reserved() -> Vec<RawFd> {
    let mut v: Vec<RawFd> = NULL.get().map(|f| f.as_raw_fd()).into_iter().collect();
    v.extend(pool().numbers.iter().copied());
    v
}

/// The slots one spawn uses; puts them back to `/dev/null` when dropped.
/// Drop it only after the child has exec'd or exited (`CLONE_VFORK`
/// guarantees that once the clone has returned).
pub(crate) struct Parked {
    set: Option<[OwnedFd; SLOTS]>,
    /// The sources parked so far, by number, in slot order.
    sources: [RawFd; SLOTS],
    used: usize,
    tried: bool,
    enabled: bool,
}

impl Parked {
    /// Parks nothing unless `enabled` (the spawn shares the fd table);
    /// then also makes the process's first set, while low numbers are free.
    pub(crate) fn new(enabled: bool) -> Parked {
        let off = Parked {
            set: None,
            sources: [-1; SLOTS],
            used: 0,
            tried: false,
            enabled,
        };
        if !enabled {
            return off;
        }
        let mut p = pool();
        if p.created == 0 && !p.crowded {
            if let Some(set) = new_set(&mut p) {
                p.free.push(set);
            }
        }
        drop(p);
        off
    }

    /// The fd number the child should take `src` from: `src` itself when
    /// it is low already (or no slot is free), else a low slot now holding
    /// a duplicate of it.
    pub(crate) fn park(&mut self, src: BorrowedFd<'_>) -> RawFd {
        let raw = src.as_raw_fd();
        if !self.enabled || raw <= LOW {
            return raw;
        }
        // One slot per source, however many streams use it.
        if let Some(i) = self.sources[..self.used].iter().position(|&s| s == raw) {
            if let Some(set) = &self.set {
                return set[i].as_raw_fd();
            }
        }
        if self.used == SLOTS {
            return raw;
        }
        if !self.tried {
            self.tried = true;
            self.set = take_set();
        }
        let Some(set) = self.set.as_mut() else {
            return raw;
        };
        let slot = &mut set[self.used];
        if slot.as_raw_fd() >= raw || rustix::io::dup3(src, slot, DupFlags::CLOEXEC).is_err() {
            return raw;
        }
        let parked = slot.as_raw_fd();
        self.sources[self.used] = raw;
        self.used += 1;
        parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let Some(mut set) = self.set.take() else {
            return;
        };
        let reset = match null() {
            Ok(null) => set[..self.used]
                .iter_mut()
                .all(|slot| rustix::io::dup3(null, slot, DupFlags::CLOEXEC).is_ok()),
            Err(_) => self.used == 0,
        };
        let mut p = pool();
        if reset {
            p.free.push(set);
        } else {
            // Never keep a slot that may still hold a child's pipe end:
            // close the set (a later spawn makes a new one).
            let closed: Vec<RawFd> = set.iter().map(|f| f.as_raw_fd()).collect();
            p.numbers.retain(|n| !closed.contains(n));
            p.created -= 1;
            drop(set);
        }
    }
}

/// A free set, or a new one.
fn take_set() -> Option<[OwnedFd; SLOTS]> {
    let mut p = pool();
    match p.free.pop() {
        Some(set) => Some(set),
        None => new_set(&mut p),
    }
}

/// A new set at the lowest free numbers from 3 up, unless [`MAX_SETS`]
/// exist or those numbers are no longer low.
fn new_set(p: &mut Pool) -> Option<[OwnedFd; SLOTS]> {
    if p.created >= MAX_SETS || p.crowded {
        return None;
    }
    let null = null().ok()?;
    let a = rustix::io::fcntl_dupfd_cloexec(null, 3).ok()?;
    let b = rustix::io::fcntl_dupfd_cloexec(null, 3).ok()?;
    let c = rustix::io::fcntl_dupfd_cloexec(null, 3).ok()?;
    if [&a, &b, &c].iter().any(|f| f.as_raw_fd() > LOW) {
        p.crowded = true;
        return None;
    }
    p.created += 1;
    p.numbers
        .extend([a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd()]);
    Some([a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_slot_is_back_to_dev_null_after_drop() {
        // The first set is made before the table fills up; then push a
        // pipe above LOW so that it gets parked.
        drop(Parked::new(true));
        let mut filler = Vec::new();
        while filler.len() < LOW as usize + 8 {
            filler.push(rustix::io::fcntl_dupfd_cloexec(null().unwrap(), 3).unwrap());
        }
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        assert!(r.as_raw_fd() > LOW, "pipe at {}", r.as_raw_fd());
        let slot = {
            let mut parked = Parked::new(true);
            let slot = parked.park(r.as_fd());
            assert!(slot < r.as_raw_fd(), "not parked: {slot}");
            // The same source again (stdout and stderr to one pipe) takes
            // no second slot.
            assert_eq!(parked.park(r.as_fd()), slot);
            assert_eq!(parked.used, 1);
            let target = std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap();
            assert!(target.to_string_lossy().starts_with("pipe:"), "{target:?}");
            slot
        };
        let target = std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        assert!(reserved().contains(&slot));
        // The pipe's only read end is `r` now: closing it makes writes fail.
        drop(r);
        assert_eq!(
            rustix::io::write(&w, b"x").unwrap_err(),
            rustix::io::Errno::PIPE
        );
    }
}
