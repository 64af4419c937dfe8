//! A running or ended child, identified by its pidfd.

mod drop_reaper;
mod pipes;

pub use pipes::{ChildStderr, ChildStdin, ChildStdout};

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::containment::Tree;
use crate::error::{SignalError, WaitError};
use crate::sys::pidfd::{self, Block, ExitInfo};
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
    reap: Mutex<()>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    kill_on_drop: bool,
    pub(crate) tree: Tree,
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
            reap: Mutex::new(()),
            stdin,
            stdout,
            stderr,
            kill_on_drop,
            tree,
        }
    }

    pub(crate) fn pidfd_ref(&self) -> BorrowedFd<'_> {
        self.fd()
    }

    pub(crate) fn reap_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reap.lock().unwrap_or_else(|e| e.into_inner())
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
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the parent's end of the stdout pipe (with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the parent's end of the stderr pipe (with `Stdio::piped()`).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Waits for the child to end and returns its status.
    ///
    /// A blocking `waitid(P_PIDFD, WEXITED | __WALL)` (the timed variants
    /// `poll(2)` the pidfd first); if another reaper in this process took
    /// the child first (`ECHILD`), the status comes from
    /// `ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT)`. The status is cached: every
    /// later call returns it.
    ///
    /// # Errors
    ///
    /// [`WaitError::StatusUnavailable`] when another reaper took the status
    /// and the kernel (before 6.15) cannot report it; [`WaitError::Os`].
    pub fn wait(&self) -> Result<ExitStatus, WaitError> {
        if let Some(s) = self.status.get() {
            return Ok(*s);
        }
        // Without a deadline, one blocking waitid under the reaping lock
        // does what poll + waitid would, in one system call. A concurrent
        // try_wait does not wait for this lock (it reports "not yet").
        let _guard = self.reap.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.status.get() {
            return Ok(*s);
        }
        match self.reap_locked(Block::Yes)? {
            Some(s) => Ok(s),
            None => Err(self.os(std::io::Error::other("blocking waitid returned no child"))),
        }
    }

    /// `waitid` under the reaping lock (held by the caller): caches and
    /// returns the status if reaped; recovers it from the kernel if another
    /// reaper took it (`ECHILD`).
    fn reap_locked(&self, block: Block) -> Result<Option<ExitStatus>, WaitError> {
        let raw = match pidfd::wait(self.fd(), block) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                crate::reaper::unregister(self.pid);
                RECOVERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.recover_stolen_status()?
            }
            Err(e) => return Err(self.os(e)),
        };
        crate::reaper::unregister(self.pid);
        Ok(Some(*self.status.get_or_init(|| ExitStatus::from_raw(raw))))
    }

    /// Waits at most `timeout`; `Ok(None)` if the child is still running.
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
    /// granularity); `Ok(None)` if the child is still running then.
    ///
    /// # Errors
    ///
    /// As [`wait`](Child::wait).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<Option<ExitStatus>, WaitError> {
        self.wait_deadline_inner(Some(deadline))
    }

    fn wait_deadline_inner(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<ExitStatus>, WaitError> {
        let mut unreapable_pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.status.get() {
                return Ok(Some(*s));
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return self.try_wait();
                    }
                    Some(d - now)
                }
            };
            let ready = pidfd::poll_readable(self.fd(), timeout).map_err(|e| self.os(e))?;
            if ready {
                if let Some(s) = self.try_wait()? {
                    return Ok(Some(s));
                }
                // Exited but not reapable yet: a zombie that a debugger
                // (ptrace) still holds. The pidfd stays readable, so back
                // off instead of spinning.
                let pause = unreapable_pause.min(match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()),
                    None => unreapable_pause,
                });
                std::thread::sleep(pause);
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
        let _guard = match self.reap.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // Another thread is reaping (possibly blocked in `wait`): the
            // status will be there once it has; not yet.
            Err(std::sync::TryLockError::WouldBlock) => return Ok(self.status.get().copied()),
        };
        if let Some(s) = self.status.get() {
            return Ok(Some(*s));
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

    /// Sends `sig` to the child with `pidfd_send_signal(2)`.
    ///
    /// Once the child has ended this is `Ok(())` and sends nothing: the
    /// pidfd names this process only, never one that reused its pid.
    ///
    /// # Errors
    ///
    /// [`SignalError`] if the kernel refuses (for example `EPERM`).
    pub fn signal(&self, sig: Signal) -> Result<(), SignalError> {
        if self.status.get().is_some() {
            return Ok(());
        }
        match pidfd::send_signal(self.fd(), sig.as_raw(), 0) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(SignalError {
                pid: self.pid,
                signal: sig,
                source,
            }),
        }
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
            Ok(Some(_)) | Err(_) => crate::reaper::unregister(self.pid), // reaped (by us or someone else)
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
