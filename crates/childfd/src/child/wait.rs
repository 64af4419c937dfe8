//! Waiting for a child: `wait`, `try_wait` and the timed variants.
//!
//! The reaping lock (`Child::reap`) is held only around a non-blocking
//! `waitid(WNOHANG)`, never while a thread blocks: tree operations that
//! must know the child is still unreaped (signalling a process group by
//! number before Linux 6.9, signalling by pid when `pidfd_send_signal` is
//! refused) take the same lock and must never wait for the child's exit.
//! A blocking wait therefore sleeps in `waitid(WNOWAIT)` (or `poll(2)` on
//! the pidfd, with a deadline) without the lock, and reaps afterwards.
//!
//! Where a process group can only be signalled by number (before 6.9, or
//! `pidfd_send_signal` refused), a tree operation in progress holds the
//! leader unreaped ([`Child::hold_leader`]): a wait that finds the leader
//! exited meanwhile sleeps on `Child::reap_allowed` and reaps when the
//! operation ends, so the operation's later signals still reach the group.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{Child, EXIT_INFO_PATIENCE, RECOVERED};
use crate::ExitStatus;
use crate::error::WaitError;
use crate::sys::pidfd::{self, Block, ExitInfo};

impl Child {
    /// Waits for the child to end and returns its status.
    ///
    /// First closes the parent's end of a piped stdin that was not taken
    /// ([`take_stdin`](Child::take_stdin)), as `std::process::Child::wait`
    /// does: a child reading its stdin to the end (`cat`) would otherwise
    /// wait for the caller while the caller waits for it. Untaken stdout and
    /// stderr pipes stay open, so that output written before the exit can
    /// still be read afterwards; see [`take_stdout`](Child::take_stdout).
    ///
    /// Blocks in `waitid(P_PIDFD, WEXITED | WNOWAIT | __WALL)`, then reaps
    /// with `waitid(WNOHANG)`; if another reaper in this process took the
    /// child first (`ECHILD`), the status comes from `ioctl(PIDFD_GET_INFO,
    /// PIDFD_INFO_EXIT)`. The status is cached: every later call returns
    /// it. Another thread may signal, kill or terminate the child (and its
    /// tree) meanwhile.
    ///
    /// See [waitid(2)](https://man7.org/linux/man-pages/man2/waitid.2.html).
    ///
    /// # Errors
    ///
    /// [`WaitError::StatusUnavailable`] when another reaper took the status
    /// and the kernel (before 6.15) cannot report it; [`WaitError::Os`].
    pub fn wait(&self) -> Result<ExitStatus, WaitError> {
        self.close_stdin();
        let mut unreapable_pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.status.get() {
                return Ok(*s);
            }
            // Sleep until the child is a zombie, without the reaping lock.
            // `false` (reaped by someone else) is handled by the reap below.
            pidfd::wait_exited(self.fd()).map_err(|e| self.os(e))?;
            {
                let _guard = self.reap_lock_allowed(None);
                if let Some(s) = self.status.get() {
                    return Ok(*s);
                }
                if let Some(s) = self.reap_locked(Block::No)? {
                    return Ok(s);
                }
            }
            // Exited but not reapable yet (a tracer still holds it).
            std::thread::sleep(unreapable_pause);
            unreapable_pause = (unreapable_pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Takes the reaping lock once no tree operation holds the leader
    /// unreaped (or the status is known), sleeping until then or until
    /// `deadline`; `None` if the deadline passed first.
    fn reap_lock_allowed(&self, deadline: Option<Instant>) -> Option<MutexGuard<'_, usize>> {
        let mut guard = self.reap_guard();
        while self.reaping_held(*guard) && self.status.get().is_none() {
            guard = match deadline {
                None => self
                    .reap_allowed
                    .wait(guard)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    let woken = self.reap_allowed.wait_timeout(guard, left);
                    woken.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        Some(guard)
    }

    /// `waitid` under the reaping lock (held by the caller): caches and
    /// returns the status if reaped; recovers it from the kernel if another
    /// reaper took it (`ECHILD`).
    pub(super) fn reap_locked(&self, block: Block) -> Result<Option<ExitStatus>, WaitError> {
        let raw = match pidfd::wait(self.fd(), block) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                self.release_registration();
                RECOVERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.recover_stolen_status()?
            }
            Err(e) => return Err(self.os(e)),
        };
        self.release_registration();
        Ok(Some(*self.status.get_or_init(|| ExitStatus::from_raw(raw))))
    }

    /// Waits at most `timeout`; `Ok(None)` if the child is still running.
    /// Closes an untaken piped stdin first, as [`wait`](Child::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Child::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>, WaitError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.wait_deadline(d),
            None => self.wait().map(Some),
        }
    }

    /// Waits until `deadline` (rounded up to the kernel's timer
    /// granularity); `Ok(None)` if the child is still running then. Polls
    /// the pidfd ([poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html)),
    /// then reaps. Closes an untaken piped stdin first, as
    /// [`wait`](Child::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Child::wait).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<Option<ExitStatus>, WaitError> {
        self.close_stdin();
        let mut unreapable_pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.status.get() {
                return Ok(Some(*s));
            }
            let now = Instant::now();
            if now >= deadline {
                return self.try_wait();
            }
            let ready =
                pidfd::poll_readable(self.fd(), Some(deadline - now)).map_err(|e| self.os(e))?;
            if ready {
                // Once no tree operation holds the leader unreaped.
                let Some(guard) = self.reap_lock_allowed(Some(deadline)) else {
                    return Ok(self.status.get().copied());
                };
                if let Some(s) = self.status.get() {
                    return Ok(Some(*s));
                }
                if let Some(s) = self.reap_locked(Block::No)? {
                    return Ok(Some(s));
                }
                drop(guard);
                // Exited but not reapable yet: a zombie that a debugger
                // (ptrace) still holds, or another thread of ours is
                // reaping it right now. The pidfd stays readable, so back
                // off instead of spinning.
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(unreapable_pause.min(left));
                unreapable_pause = (unreapable_pause * 2).min(Duration::from_millis(100));
            }
        }
    }

    /// Returns the status if the child has ended, without blocking.
    ///
    /// # Errors
    ///
    /// As [`wait`](Child::wait).
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, WaitError> {
        if let Some(s) = self.status.get() {
            return Ok(Some(*s));
        }
        let guard = match self.reap.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // Another thread is reaping or signalling by number (both
            // short): the status will be there once it has; not yet.
            Err(std::sync::TryLockError::WouldBlock) => return Ok(self.status.get().copied()),
        };
        if let Some(s) = self.status.get() {
            return Ok(Some(*s));
        }
        if self.reaping_held(*guard) {
            // A tree operation keeps the leader unreaped until it ends.
            return Ok(None);
        }
        self.reap_locked(Block::No)
    }

    /// Another reaper took our child: ask the kernel what the status was.
    /// The other reaper may still be releasing the process, so retry for a
    /// short bounded time before giving up.
    fn recover_stolen_status(&self) -> Result<i32, WaitError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(10);
        loop {
            match pidfd::exit_info(self.fd()) {
                ExitInfo::Status(raw) => return Ok(raw),
                ExitInfo::Unsupported => {
                    return Err(WaitError::StatusUnavailable { pid: self.pid });
                }
                ExitInfo::NotYet if start.elapsed() < EXIT_INFO_PATIENCE => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                ExitInfo::NotYet => return Err(WaitError::StatusUnavailable { pid: self.pid }),
            }
        }
    }
}
