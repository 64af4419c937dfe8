//! Fds the reaper keeps across calls, each used only after checking that
//! its number still names the file the reaper opened.
//!
//! A host may close every fd it did not open itself (`close_range(3, ~0)`
//! when it daemonizes, a test harness sweeping fds, a `fork()`ed copy
//! before it runs something) and open its own files meanwhile, which take
//! the lowest free numbers: the reaper's. A number remembered from an
//! earlier call is therefore only a guess. [`Held`] records what the file
//! was when it was opened (device and inode from fstat(2); for a pidfd on
//! a kernel whose pidfds share one anonymous inode, also its pid from
//! `/proc/self/fdinfo`) and hands the fd out only while the number still
//! matches. Dropping a `Held` closes the number only if it still matches;
//! otherwise the number is forgotten, since it is now someone else's.
//!
//! # Caveats
//!
//! The check and the use are two system calls: a host that closes and
//! reopens the number between them is not detected. The reaper checks
//! right before each use, so that window is a few microseconds.
//!
//! See [fstat(2)](https://man7.org/linux/man-pages/man2/fstat.2.html),
//! [proc_pid_fdinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_fdinfo.5.html).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `PIDFS_MAGIC` (`"PIDF"`): pidfds on this file system (Linux 6.9+) have
/// one inode per process, so the inode alone tells pidfds apart.
const PIDFS_MAGIC: i64 = 0x5049_4446;

static NO_PIDFS: AtomicBool = AtomicBool::new(false);

/// Behave as a kernel whose pidfds share one anonymous inode (before 6.9):
/// pidfds are then told apart by the pid in `/proc/self/fdinfo`. Tests only.
pub(crate) fn disable_pidfs() {
    NO_PIDFS.store(true, Ordering::Relaxed);
}

/// What a held number must still be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
    /// For a pidfd whose inode is shared by every pidfd: its pid.
    pid: Option<i32>,
}

impl Identity {
    /// The identity of `fd` now; `pid` for a pidfd of that process.
    pub(super) fn of(fd: BorrowedFd<'_>, pid: Option<i32>) -> Option<Identity> {
        let st = rustix::fs::fstat(fd).ok()?;
        let pid = match pid {
            Some(p) if !inode_per_process(fd) => Some(p),
            _ => None,
        };
        Some(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            pid,
        })
    }

    /// Whether `fd` is (still) the file this identity was taken from.
    pub(super) fn matches(&self, fd: BorrowedFd<'_>) -> bool {
        let Ok(st) = rustix::fs::fstat(fd) else {
            return false;
        };
        if (st.st_dev, st.st_ino) != (self.dev, self.ino) {
            return false;
        }
        match self.pid {
            None => true,
            Some(pid) => fdinfo_pid(fd) == Some(pid),
        }
    }
}

/// Whether `fd` (a pidfd) lives on pidfs, where each process has its own
/// inode.
#[allow(clippy::unnecessary_cast)] // `f_type` is i32 on some architectures
fn inode_per_process(fd: BorrowedFd<'_>) -> bool {
    !NO_PIDFS.load(Ordering::Relaxed)
        && rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as i64 == PIDFS_MAGIC)
}

/// The `Pid:` line of `/proc/self/fdinfo/<fd>`: the pid of a pidfd's
/// process (`-1` once it was reaped).
fn fdinfo_pid(fd: BorrowedFd<'_>) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// An fd the reaper opened, with the identity it had then.
#[derive(Debug)]
pub(super) struct Held {
    file: Option<File>,
    id: Identity,
}

impl Held {
    /// Takes `fd`, which the caller opened (or verified) just now; `pid`
    /// for a pidfd. `None` (the fd closed) if it cannot be fstat'ed.
    pub(super) fn new(fd: OwnedFd, pid: Option<i32>) -> Option<Held> {
        let id = Identity::of(fd.as_fd(), pid)?;
        Some(Held {
            file: Some(File::from(fd)),
            id,
        })
    }

    /// The file, if its number still names it.
    pub(super) fn get(&self) -> Option<&File> {
        let f = self.file.as_ref()?;
        self.id.matches(f.as_fd()).then_some(f)
    }

    /// Gives up the number without closing it: it may be another file's
    /// now. The identity stays, for comparing a reopened fd with it.
    pub(super) fn forget(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.into_raw_fd();
        }
    }

    /// Whether `other` was taken from the same file (for pidfds on pidfs:
    /// the same process).
    pub(super) fn same_identity(&self, other: &Held) -> bool {
        self.id == other.id
    }
}

impl Drop for Held {
    /// Closes the number only if it still names our file.
    fn drop(&mut self) {
        let Some(f) = self.file.take() else { return };
        if self.id.matches(f.as_fd()) {
            drop(f);
        } else {
            let _ = f.into_raw_fd();
        }
    }
}
