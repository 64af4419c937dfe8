//! A running or ended child, identified by its pidfd.

mod drop_reaper;
mod output;
mod pipes;
mod wait;

pub(crate) use drop_reaper::disable_pidfs;
pub use output::Output;
pub use pipes::{ChildStderr, ChildStdin, ChildStdout, StdinSlot};

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::containment::Tree;
use crate::error::{SignalError, WaitError};
use crate::sys::pidfd::{self, Block};
use crate::{ExitStatus, Signal};

/// A child process, owned through its pidfd.
///
/// The pidfd, not the pid, is the child's identity: waiting and signalling
/// go through it, so they can never reach another process that reused the
/// pid. All methods take `&self` and `Child` is `Send + Sync`: one thread
/// can block in [`wait`](Child::wait) while another calls
/// [`kill`](Child::kill).
///
/// Dropping a `Child` never blocks and never leaves a zombie: a child still
/// running is handed to a background reaper thread (one for the whole
/// process). With [`Command::kill_on_drop`](crate::Command::kill_on_drop)
/// it is killed first.
///
/// ```
/// use childfd::{Command, Signal};
/// use std::time::Duration;
///
/// let child = Command::new("sleep").arg("60").spawn()?;
/// assert!(child.try_wait()?.is_none());
/// child.kill()?;
/// let status = child.wait_timeout(Duration::from_secs(10))?.expect("killed");
/// assert_eq!(status.signal(), Some(Signal::KILL));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Child {
    /// Always `Some` until `drop`, which hands it to the reaper.
    pidfd: Option<OwnedFd>,
    pid: u32,
    status: OnceLock<ExitStatus>,
    /// Serialises reaping so that exactly one `waitid` takes the status.
    /// Held only for non-blocking work: reaping with `WNOHANG`, and
    /// signalling by number while the child is known unreaped. Counts the
    /// tree operations in progress (see [`Child::hold_leader`]).
    reap: Mutex<usize>,
    /// Notified when the last tree operation in progress ends.
    reap_allowed: Condvar,
    /// Whether the pid is still registered as owned with the orphan
    /// reaper; released exactly once (see [`crate::reaper`]).
    registered: AtomicBool,
    /// The parent's end of the child's stdin pipe (with
    /// [`Stdio::piped`](crate::Stdio::piped)) until taken, as std's field:
    /// `child.stdin.take()`, `child.stdin.as_mut()`. [`wait`](Child::wait)
    /// (and the timed waits) close it first, as std's `wait` does, so a
    /// child reading its stdin to the end cannot deadlock the wait.
    pub stdin: StdinSlot,
    /// The parent's end of the child's stdout pipe (with
    /// [`Stdio::piped`](crate::Stdio::piped)) until taken, as std's field.
    pub stdout: Option<ChildStdout>,
    /// The parent's end of the child's stderr pipe (with
    /// [`Stdio::piped`](crate::Stdio::piped)) until taken, as std's field.
    pub stderr: Option<ChildStderr>,
    kill_on_drop: bool,
    pub(crate) tree: Tree,
    /// The process that spawned the child. A `fork()`ed copy of it holds a
    /// copy of this handle, but the child is not the copy's to kill or reap.
    owner: i32,
}

/// How long to wait for a concurrent reaper in this process to finish
/// releasing our child before the kernel has recorded its exit status.
const EXIT_INFO_PATIENCE: Duration = Duration::from_millis(200);

impl Child {
    pub(crate) fn new(
        pidfd: OwnedFd,
        pid: u32,
        stdin: Option<ChildStdin>,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
        kill_on_drop: bool,
        tree: Tree,
    ) -> Child {
        Child {
            pidfd: Some(pidfd),
            pid,
            status: OnceLock::new(),
            reap: Mutex::new(0),
            reap_allowed: Condvar::new(),
            registered: AtomicBool::new(true),
            stdin: StdinSlot::from(stdin),
            stdout,
            stderr,
            kill_on_drop,
            tree,
            owner: crate::sys::env::getpid(),
        }
    }

    pub(crate) fn pidfd_ref(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    pub(crate) fn reap_guard(&self) -> MutexGuard<'_, usize> {
        self.reap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps concurrent waits from reaping the child until the returned
    /// guard is dropped, where the child's process group can only be
    /// signalled by number (before Linux 6.9, or `pidfd_send_signal`
    /// refused): the unreaped leader (a zombie once it exits) pins the
    /// group number, so a tree operation that must still signal the group
    /// (terminate's SIGKILL after the grace) can, even after the leader
    /// died of its SIGTERM. Waits sleep meanwhile and reap once the last
    /// guard is gone. Must not be held while this thread waits.
    pub(crate) fn hold_leader(&self) -> LeaderHold<'_> {
        *self.reap_guard() += 1;
        LeaderHold(self)
    }

    /// Whether a tree operation in progress forbids reaping now (`holds`
    /// is the count under the reaping lock).
    pub(super) fn reaping_held(&self, holds: usize) -> bool {
        holds > 0 && matches!(self.tree, Tree::Group) && !pidfd::group_signal_supported()
    }

    pub(crate) fn cached_status(&self) -> Option<ExitStatus> {
        self.status.get().copied()
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // Invariant: `pidfd` is only taken in `drop`.
        self.pidfd
            .as_ref()
            .map(|f| f.as_fd())
            .expect("pidfd present until drop")
    }

    /// The child's pid, for display and logs only: the pid may be reused
    /// once the child is reaped. Use the pidfd ([`AsFd`]) as identity.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Takes the parent's end of the stdin pipe (with `Stdio::piped()`).
    ///
    /// An untaken stdin is closed by [`wait`](Child::wait),
    /// [`wait_timeout`](Child::wait_timeout) and
    /// [`wait_deadline`](Child::wait_deadline) before they wait, so the
    /// child sees end-of-file.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Closes the parent's end of an untaken stdin pipe.
    fn close_stdin(&self) {
        self.stdin.close();
    }

    /// Unregisters the pid from the orphan reaper's owned set, once.
    /// Called when the child is reaped (by us or, `ECHILD`, by someone
    /// else); the drop reaper takes the registration over otherwise.
    fn release_registration(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            crate::reaper::unregister(self.pid);
        }
    }

    /// Takes the parent's end of the stdout pipe (with `Stdio::piped()`).
    ///
    /// Waiting does not touch an untaken stdout or stderr: a child that
    /// exits after writing less than the pipe's capacity (64 KiB by
    /// default) can be waited for first and read afterwards, as with
    /// `std::process`. A child that writes more blocks until someone reads:
    /// take the pipe and read it, or let `childfd-io` read both streams
    /// while it waits. (Closing them instead would kill such a child with
    /// SIGPIPE and change its status; draining them would need a thread or
    /// a poll loop inside `wait` and discard output the caller asked for.)
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the parent's end of the stderr pipe (with `Stdio::piped()`).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Sends `sig` to the child with `pidfd_send_signal(2)`.
    ///
    /// Once the child has ended this is `Ok(())` and sends nothing: the
    /// pidfd names this process only, never one that reused its pid. If
    /// `pidfd_send_signal` is refused (`ENOSYS`/`EPERM` from a seccomp
    /// profile, valgrind), the signal goes by pid with `kill(2)`, only after
    /// checking under the reaping lock that the child is still unreaped
    /// (so its pid cannot have been reused).
    ///
    /// # Errors
    ///
    /// [`SignalError`] if the kernel refuses (for example `EPERM`).
    pub fn signal(&self, sig: Signal) -> Result<(), SignalError> {
        if self.status.get().is_some() {
            return Ok(());
        }
        let result = match pidfd::send_signal(self.fd(), sig.as_raw(), 0) {
            Err(e) if pidfd::signal_refused(&e) => self.kill_while_unreaped(self.pid as i32, sig),
            r => r,
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(SignalError {
                pid: self.pid,
                signal: sig,
                source,
            }),
        }
    }

    /// `kill(target, sig)` by number (`target` is the child's pid, or its
    /// negation for its process group), under the reaping lock and only
    /// after `waitid(WNOWAIT)` showed the child unreaped: its zombie pins
    /// both numbers, and no reap of ours can happen meanwhile. `ESRCH`
    /// (nothing sent) once the child was reaped.
    ///
    /// For kernels or sandboxes without `pidfd_send_signal` (seccomp
    /// profiles, valgrind) and, for groups, kernels before 6.9. A reaper
    /// elsewhere in the process (`waitpid(-1)`) that bypasses this lock
    /// could still reap the child between the check and the `kill`.
    pub(crate) fn kill_while_unreaped(&self, target: i32, sig: Signal) -> std::io::Result<()> {
        let _reaping = self.reap_guard();
        if self.status.get().is_some() || !pidfd::is_unreaped(self.fd())? {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        pidfd::kill_checked(target, sig.as_raw())
    }

    /// Sends `SIGKILL` to the child (not to its descendants).
    ///
    /// # Errors
    ///
    /// As [`signal`](Child::signal).
    pub fn kill(&self) -> Result<(), SignalError> {
        self.signal(Signal::KILL)
    }

    fn os(&self, source: std::io::Error) -> WaitError {
        WaitError::Os {
            pid: self.pid,
            source,
        }
    }
}

impl AsFd for Child {
    /// The child's pidfd.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl AsRawFd for Child {
    /// The child's pidfd, for registering with another event loop (tokio's
    /// `AsyncFd`, a raw `epoll`): readable once the child has exited
    /// ([`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)).
    /// Valid while the `Child` lives; do not close it.
    fn as_raw_fd(&self) -> RawFd {
        self.fd().as_raw_fd()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.owner != crate::sys::env::getpid() {
            // A copy made by `fork()`: the child, its tree and its cgroup
            // leaf belong to the process that spawned it. Only this copy's
            // fds are closed; nothing is killed, reaped or removed.
            return;
        }
        if self.kill_on_drop && self.pidfd.is_some() {
            // The whole tree, as far as containment reaches (never blocks).
            let _ = self.kill_tree();
        }
        if let Tree::Cgroup(leaf) = &self.tree {
            if !leaf.try_remove() {
                if let Some(path) = leaf.pending_path() {
                    drop_reaper::adopt_cgroup(path);
                }
            }
        }
        let Some(fd) = self.pidfd.take() else { return };
        if self.status.get().is_some() {
            return;
        }
        match pidfd::wait(fd.as_fd(), Block::No) {
            // Reaped (by us or someone else).
            Ok(Some(_)) | Err(_) => self.release_registration(),
            // Still running, so still registered: the drop reaper
            // unregisters it once it has reaped it.
            Ok(None) => drop_reaper::adopt(fd, self.pid),
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("pidfd", &self.pidfd)
            .field("status", &self.status.get())
            .finish_non_exhaustive()
    }
}

/// A tree operation in progress; see [`Child::hold_leader`].
pub(crate) struct LeaderHold<'a>(&'a Child);

impl Drop for LeaderHold<'_> {
    fn drop(&mut self) {
        let mut holds = self.0.reap_guard();
        *holds -= 1;
        if *holds == 0 {
            self.0.reap_allowed.notify_all();
        }
    }
}

/// Number of dropped children (and cgroup leaves) the background reaper
/// has not cleaned up yet.
pub fn pending_reaps() -> usize {
    drop_reaper::pending()
}

static RECOVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many exit statuses were taken by another reaper first and had to be
/// recovered from the kernel (`PIDFD_INFO_EXIT`). For diagnostics and tests.
#[doc(hidden)]
pub fn recovered_statuses() -> u64 {
    RECOVERED.load(std::sync::atomic::Ordering::Relaxed)
}
