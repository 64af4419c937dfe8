//! The background reaper for children whose handle was dropped while they
//! ran.
//!
//! One thread, started at the first hand-over, blocks in `epoll_wait` over
//! the pidfds of every adopted child and reaps each exactly once with
//! `waitid(P_PIDFD)`, then closes its pidfd. Handing over is two
//! non-blocking calls (`epoll_ctl` and a short map insert), so dropping a
//! `Child` never blocks. No thread per child.
//!
//! # Caveats
//!
//! If the thread cannot be started (thread limit reached), adopted
//! children stay registered and are reaped once a later hand-over manages
//! to start it; until then they remain zombies.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::event::epoll;

use crate::sys::pidfd::{self, Block};

struct Reaper {
    epoll: OwnedFd,
    /// Adopted pidfds by number; the map owns them.
    children: Mutex<HashMap<i32, OwnedFd>>,
    started: AtomicBool,
}

static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

/// Hands `pidfd` (of a child that is not yet reaped) to the background
/// reaper. Never blocks.
pub(crate) fn adopt(pidfd: OwnedFd) {
    let Some(r) = REAPER.get_or_init(|| {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
        Some(Reaper {
            epoll,
            children: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
        })
    }) else {
        // No epoll instance: reap inline without blocking if possible; a
        // still-running child becomes a zombie later (documented).
        let _ = pidfd::wait(pidfd.as_fd(), Block::No);
        return;
    };
    let key = pidfd.as_raw_fd();
    {
        // Registered under the lock, so the reaper finds the fd in the map
        // as soon as it can see the event.
        let mut map = r.children.lock().unwrap_or_else(|e| e.into_inner());
        let added = epoll::add(
            &r.epoll,
            &pidfd,
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::IN,
        );
        if added.is_err() {
            drop(map);
            let _ = pidfd::wait(pidfd.as_fd(), Block::No);
            return;
        }
        map.insert(key, pidfd);
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
    loop {
        events.clear();
        if epoll::wait(&r.epoll, rustix::buffer::spare_capacity(&mut events), None).is_err() {
            continue; // EINTR
        }
        for ev in events.iter() {
            let key = ev.data.u64() as i32;
            let mut map = r.children.lock().unwrap_or_else(|e| e.into_inner());
            let Some(fd) = map.get(&key) else { continue };
            match pidfd::wait(fd.as_fd(), Block::No) {
                // Reaped, or someone else did: done with this child.
                Ok(Some(_)) | Err(_) => {
                    let _ = epoll::delete(&r.epoll, fd);
                    map.remove(&key);
                }
                Ok(None) => {}
            }
        }
    }
}

/// Number of adopted children not yet reaped (for tests and diagnostics).
pub(crate) fn pending() -> usize {
    match REAPER.get() {
        Some(Some(r)) => r.children.lock().unwrap_or_else(|e| e.into_inner()).len(),
        _ => 0,
    }
}
