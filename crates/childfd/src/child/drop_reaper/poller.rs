//! The reaper's epoll instance, used only after proving that its number
//! still names it.
//!
//! Every epoll file shares one anonymous inode, so fstat(2) cannot tell
//! ours from a host's epoll that took its number. An adopted fd of ours
//! (checked by its own identity) proves it instead: `epoll_ctl(EPOLL_CTL_MOD)`
//! of an fd succeeds only on the instance where that very file is
//! registered. So the reaper probes with one entry before it waits or adds
//! (see [`Poller::probe`]): a host's epoll is never waited on (which would
//! take its edge-triggered events) and never has our fds added to it. This
//! costs no extra fd.
//!
//! Every registration's data carries a per-process random tag in its high
//! 32 bits, so an event from an instance that is not ours is recognised.
//!
//! See [epoll_ctl(2)](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::epoll;

/// What an event's data says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// An adopted entry of ours, by key.
    Entry(u32),
    /// Not ours: a different epoll instance answered.
    Foreign,
}

/// An epoll instance; see the module docs.
pub(super) struct Poller {
    epoll: Option<OwnedFd>,
    tag: u32,
    /// Whether the last `epoll_ctl` with one of our checked fds succeeded
    /// (the number was ours then); [`Drop`] closes only then.
    trusted: AtomicBool,
}

impl Poller {
    /// A new instance.
    ///
    /// # Errors
    ///
    /// From epoll_create1(2).
    pub(super) fn new(tag: u32) -> io::Result<Poller> {
        Ok(Poller {
            epoll: Some(epoll::create(epoll::CreateFlags::CLOEXEC)?),
            tag,
            trusted: AtomicBool::new(true),
        })
    }

    fn ep(&self) -> Option<BorrowedFd<'_>> {
        self.epoll.as_ref().map(|e| e.as_fd())
    }

    fn record(&self, ok: bool) -> bool {
        self.trusted.store(ok, Ordering::Relaxed);
        ok
    }

    /// Whether our number still names this instance: re-registers `fd`
    /// (checked by the caller, registered here under `key` with `flags`)
    /// unchanged. Fails with `ENOENT` on any other epoll instance.
    pub(super) fn probe(&self, key: u32, fd: BorrowedFd<'_>, flags: epoll::EventFlags) -> bool {
        let ok = self
            .ep()
            .is_some_and(|ep| epoll::modify(ep, fd, self.data(key), flags).is_ok());
        self.record(ok)
    }

    /// Registers `fd` (checked by the caller) under `key`. Only on an
    /// instance made or probed in the same locked section.
    pub(super) fn add(&self, key: u32, fd: BorrowedFd<'_>, flags: epoll::EventFlags) -> bool {
        let ok = self
            .ep()
            .is_some_and(|ep| epoll::add(ep, fd, self.data(key), flags).is_ok());
        self.record(ok)
    }

    /// Stops watching `fd` (checked by the caller).
    pub(super) fn delete(&self, fd: BorrowedFd<'_>) {
        let ok = self.ep().is_some_and(|ep| epoll::delete(ep, fd).is_ok());
        self.record(ok);
    }

    /// Keeps `fd` registered under `key` but reporting nothing (a
    /// level-triggered event of an entry that cannot be finished yet).
    pub(super) fn mute(&self, key: u32, fd: BorrowedFd<'_>) {
        let ok = self.ep().is_some_and(|ep| {
            epoll::modify(ep, fd, self.data(key), epoll::EventFlags::empty()).is_ok()
        });
        self.record(ok);
    }

    /// Marks the instance as not provably ours: dropping it forgets its
    /// number instead of closing it.
    pub(super) fn distrust(&self) {
        self.record(false);
    }

    /// `epoll_wait`; only on an instance probed just before.
    pub(super) fn wait(
        &self,
        events: &mut Vec<epoll::Event>,
        timeout: &rustix::event::Timespec,
    ) -> Result<(), rustix::io::Errno> {
        let ep = self.ep().ok_or(rustix::io::Errno::BADF)?;
        epoll::wait(ep, rustix::buffer::spare_capacity(events), Some(timeout)).map(|_| ())
    }

    /// Who an event is from.
    pub(super) fn source(&self, ev: &epoll::Event) -> Source {
        let d = ev.data.u64();
        if (d >> 32) as u32 == self.tag {
            Source::Entry(d as u32)
        } else {
            Source::Foreign
        }
    }

    fn data(&self, key: u32) -> epoll::EventData {
        epoll::EventData::new_u64((u64::from(self.tag) << 32) | u64::from(key))
    }
}

impl Drop for Poller {
    /// Closes the epoll fd only if the last check found it ours; else the
    /// number is forgotten (it is someone else's now).
    fn drop(&mut self) {
        if let Some(ep) = self.epoll.take() {
            if self.trusted.load(Ordering::Relaxed) {
                drop(ep);
            } else {
                let _ = ep.into_raw_fd();
            }
        }
    }
}
