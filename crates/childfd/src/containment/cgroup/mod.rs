//! cgroup v2 leaves: one fresh cgroup per child, so that every descendant
//! (even one that called `setsid` or double-forked) can be found and killed.
//!
//! - The cgroup2 mount is found in `/proc/self/mountinfo`, never assumed,
//!   with its root (a mount of a subtree maps cgroup paths to directories
//!   through it, see [`mount`]).
//! - Leaves are named `childfd-<pid>-<n>-<random>`: pids repeat across PID
//!   namespaces sharing a parent cgroup; `EEXIST` picks a new name.
//! - The tree is the leaf and every cgroup below it ([`subtree`]).
//! - The parent directory is the caller's (delegated) one, or else the
//!   process's own cgroup (from `/proc/self/cgroup`) when it is writable.
//! - The child is spawned into the leaf with `clone3(CLONE_INTO_CGROUP)`
//!   (Linux 5.7), so it runs no instruction outside it. The legacy `clone`
//!   path has the child write `0` to the leaf's `cgroup.procs` before exec.
//! - Killing writes `1` to `cgroup.kill` (5.14); before that, a
//!   freeze-and-kill loop (`cgroup.freeze`, then SIGKILL to each member).
//! - Emptiness is `populated 0` in `cgroup.events`, which `poll(2)` reports
//!   as `POLLPRI` when it changes.
//!
//! See [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html).
//!
//! # Caveats
//!
//! A leaf is removed once its tree is empty: at once when the handle is
//! dropped after the tree ended, else by the background reaper thread. If
//! the process exits before that (a tree still running, or killed members
//! still exiting when the handle was dropped), the leaf stays until removed
//! by hand (`rmdir`). A program about to exit should therefore kill the
//! tree and call [`Child::wait_tree_deadline`](crate::Child::wait_tree_deadline)
//! before dropping the handle, as the `childfd` command does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

pub(crate) mod mount;
pub(crate) mod subtree;

/// Where cgroup leaves are created.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CgroupParent {
    /// The process's own cgroup v2 directory, if writable.
    Auto,
    /// This directory of a cgroup v2 hierarchy (typically delegated to the
    /// caller).
    Dir(PathBuf),
}

/// The process's own cgroup v2 directory (`0::/path` in
/// `/proc/self/cgroup`, through the mount that shows it).
fn own_cgroup_dir(mounts: &[mount::Mount]) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let cg = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    mount::dir_of(mounts, Path::new(cg))
}

/// Why a cgroup leaf could not be made.
pub(crate) fn no_cgroup_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

/// `CGROUP2_SUPER_MAGIC`, statfs(2)'s `f_type` of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Resolves the parent directory for new leaves. If that fails with the
/// mounts as last read, they are read again (a cgroup2 mount may have
/// been unmounted or mounted elsewhere since) and it is tried once more.
pub(crate) fn resolve_parent(parent: &CgroupParent) -> io::Result<PathBuf> {
    match resolve_parent_in(&mount::mounts(), parent) {
        Err(_) if mount::reload() => resolve_parent_in(&mount::mounts(), parent),
        r => r,
    }
}

fn resolve_parent_in(mounts: &[mount::Mount], parent: &CgroupParent) -> io::Result<PathBuf> {
    if mounts.is_empty() {
        return Err(no_cgroup_error("no cgroup v2 hierarchy is mounted"));
    }
    let dir = match parent {
        CgroupParent::Dir(d) => d.clone(),
        CgroupParent::Auto => own_cgroup_dir(mounts).ok_or_else(|| {
            no_cgroup_error("this process's cgroup v2 directory is unknown or not mounted here")
        })?,
    };
    if mount::cgroup_path_of(mounts, &dir).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not inside the cgroup v2 mount {}",
                dir.display(),
                mounts
                    .iter()
                    .map(|m| m.point.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    // A directory of a cgroup2 mount that is gone is a plain one now.
    match rustix::fs::statfs(&dir) {
        Ok(st) if st.f_type as u64 == CGROUP2_SUPER_MAGIC => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not in a cgroup v2 file system", dir.display()),
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("cgroup directory {}: {e}", dir.display()),
            ));
        }
    }
    rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cgroup directory {} is not writable: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Attempts at a fresh name before giving up on `EEXIST`.
const NAME_ATTEMPTS: u32 = 16;

/// 32 random bits from getrandom(2) (without blocking), else from the
/// clock: names need to be unlikely to collide, not unpredictable.
pub(crate) fn name_nonce() -> u32 {
    let mut b = [0u8; 4];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK) {
        Ok(4) => u32::from_ne_bytes(b),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    }
}

/// One child's cgroup.
///
/// Its own files (`cgroup.kill`, `cgroup.events`) are opened through the
/// directory's fd, which names the cgroup wherever its file system is
/// mounted now. What needs paths (the subtree below it, removal) goes
/// through [`Leaf::live_path`]: the path it was made at, or, once that is
/// gone (the cgroup2 file system was unmounted, lazily under our fd, and
/// mounted elsewhere), its cgroup's directory in the mounts read again.
#[derive(Debug)]
pub(crate) struct Leaf {
    path: PathBuf,
    /// Its cgroup path (as `/proc/<pid>/cgroup` prints it), to find it in
    /// another mount.
    cgroup: Option<PathBuf>,
    /// The directory, for `CLONE_INTO_CGROUP` and its own files.
    dir: OwnedFd,
    removed: AtomicBool,
}

impl Leaf {
    /// Creates `<parent>/childfd-<pid>-<n>-<random>`.
    ///
    /// The pid alone is not unique: processes in different PID namespaces
    /// (two containers' PID 1) can share a parent cgroup. A random part
    /// makes a clash unlikely, and `EEXIST` picks a new name.
    pub(crate) fn create(parent: &Path) -> io::Result<Leaf> {
        let mut attempt = 0;
        let path = loop {
            let name = format!(
                "childfd-{}-{}-{:08x}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed),
                name_nonce()
            );
            let path = parent.join(name);
            match fs::create_dir(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < NAME_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => Ok(Leaf {
                cgroup: mount::cgroup_path_of(&mount::mounts(), &path),
                path,
                dir,
                removed: AtomicBool::new(false),
            }),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e.into())
            }
        }
    }

    /// The path it was made at.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the leaf's own file `name` through its directory fd.
    fn open_own(&self, name: &str, write: bool) -> io::Result<File> {
        let mode = if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        let fd = rustix::fs::openat(&self.dir, name, mode | OFlags::CLOEXEC, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Whether the cgroup was removed (its directory fd names a deleted
    /// cgroup), as opposed to its path going stale.
    pub(crate) fn deleted(&self) -> bool {
        matches!(
            self.open_own("cgroup.events", false)
                .map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENOENT | libc::ENODEV))
        )
    }

    /// Where the leaf's directory is now: [`path`](Self::path) while it
    /// shows the leaf, else its cgroup mapped through the mounts read
    /// again (a cgroup2 file system mounted elsewhere since).
    fn live_path(&self) -> PathBuf {
        if self.path.join("cgroup.events").exists() || self.deleted() {
            return self.path.clone();
        }
        let Some(cg) = &self.cgroup else {
            return self.path.clone();
        };
        mount::reload();
        match mount::dir_of(&mount::mounts(), cg) {
            Some(dir) if dir.join("cgroup.events").exists() => dir,
            _ => self.path.clone(),
        }
    }

    pub(crate) fn dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// `cgroup.procs` opened for writing (the legacy-clone child writes `0`).
    pub(crate) fn open_procs(&self) -> io::Result<OwnedFd> {
        Ok(OpenOptions::new()
            .write(true)
            .open(self.live_path().join("cgroup.procs"))?
            .into())
    }

    /// Whether the leaf was removed (its tree was empty): from then on
    /// the tree is empty, signalling it does nothing and waiting returns.
    fn gone(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Whether any process is in the leaf (`populated` in `cgroup.events`).
    pub(crate) fn populated(&self) -> io::Result<bool> {
        if self.gone() {
            return Ok(false);
        }
        let events = self.open_own("cgroup.events", false)?;
        read_populated_from(&events)
    }

    /// Kills every member: `cgroup.kill`, or freeze-and-kill without it.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match self
            .open_own("cgroup.kill", true)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"1"))
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound || force_no_cgroup_kill() => {
                self.freeze_and_kill()
            }
            Err(e) => Err(e),
        }
    }

    /// Before Linux 5.14: freeze the leaf (and so its whole subtree) so
    /// nobody forks, SIGKILL each member listed in the `cgroup.procs` of
    /// the leaf and of every cgroup below it, thaw, and repeat until empty.
    fn freeze_and_kill(&self) -> io::Result<()> {
        let path = self.live_path();
        let freeze = path.join("cgroup.freeze");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let can_freeze = fs::write(&freeze, "1").is_ok();
            if can_freeze {
                // Wait (bounded) for "frozen 1"; killing works regardless.
                let until = Instant::now() + Duration::from_millis(100);
                while Instant::now() < until && !read_key(&path, "frozen").unwrap_or(true) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // Pinned by pidfd where possible: a member SIGKILLed earlier
            // may have been reaped by an outside parent and its pid reused.
            // By number otherwise (see `subtree`'s remaining window).
            let listed = subtree::pids(&path)?;
            subtree::pin_each(&path, &listed, true, &mut |m| m.signal(libc::SIGKILL))?;
            if can_freeze {
                let _ = fs::write(&freeze, "0");
            }
            if !self.populated()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "cgroup did not empty after freeze-and-kill",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sigs`, in order, to every member of the leaf and of the
    /// cgroups below it: the child `leader` through `to_leader`, the others
    /// through pidfds while the subtree is frozen; see [`subtree`] for how.
    /// Returns the members that could not be signalled safely.
    pub(crate) fn signal_members(
        &self,
        sigs: &[crate::Signal],
        leader: i32,
        to_leader: &dyn Fn(crate::Signal) -> io::Result<()>,
    ) -> io::Result<Vec<i32>> {
        if self.gone() {
            sigs.iter().try_for_each(|&s| to_leader(s))?;
            return Ok(Vec::new());
        }
        subtree::signal_members(&self.live_path(), sigs, leader, to_leader)
    }

    /// Waits until the leaf is empty or `deadline` passes; true if empty.
    /// Polls `cgroup.events` for `POLLPRI`, so no busy loop.
    pub(crate) fn wait_empty(&self, deadline: Option<Instant>) -> io::Result<bool> {
        if self.gone() {
            return Ok(true);
        }
        let mut events = self.open_own("cgroup.events", false)?;
        loop {
            let mut text = String::new();
            events.rewind()?;
            events.read_to_string(&mut text)?;
            if !key_in(&text, "populated").unwrap_or(true) {
                return Ok(true);
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    Some(d - now)
                }
            };
            crate::sys::pidfd::poll_priority(events.as_fd(), timeout)?;
        }
    }

    /// Removes the leaf, and the cgroups created below it, if they are
    /// empty; true once removed.
    pub(crate) fn try_remove(&self) -> bool {
        if self.removed.load(Ordering::Acquire) {
            return true;
        }
        let removed = remove_tree(&self.live_path());
        if removed {
            self.removed.store(true, Ordering::Release);
        }
        removed
    }

    /// The path to remove later, unless already removed.
    pub(crate) fn pending_path(&self) -> Option<PathBuf> {
        (!self.removed.load(Ordering::Acquire)).then(|| self.live_path())
    }
}

/// Removes the cgroup at `path` and its empty descendants, deepest first;
/// true once `path` is gone.
pub(crate) fn remove_tree(path: &Path) -> bool {
    subtree::remove(path)
}

fn key_in(text: &str, key: &str) -> Option<bool> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim() != "0")
    })
}

fn read_key(dir: &Path, key: &str) -> Option<bool> {
    key_in(&fs::read_to_string(dir.join("cgroup.events")).ok()?, key)
}

/// `populated` read through an open `cgroup.events` (from its start).
pub(crate) fn read_populated_from(events: &File) -> io::Result<bool> {
    Ok(key_in(&read_events_from(events)?, "populated").unwrap_or(true))
}

/// The text of an open `cgroup.events`, read from its start.
fn read_events_from(mut events: &File) -> io::Result<String> {
    let mut text = String::new();
    events.rewind()?;
    events.read_to_string(&mut text)?;
    Ok(text)
}

static NO_CGROUP_KILL: AtomicBool = AtomicBool::new(false);

fn force_no_cgroup_kill() -> bool {
    NO_CGROUP_KILL.load(Ordering::Relaxed)
}

/// Behave as a kernel without `cgroup.kill` (before 5.14). Tests only.
pub(crate) fn disable_cgroup_kill() {
    NO_CGROUP_KILL.store(true, Ordering::Relaxed);
}

impl Leaf {
    /// `kill` honouring the forced fallback.
    pub(crate) fn kill_tree(&self) -> io::Result<()> {
        if self.gone() {
            return Ok(());
        }
        if force_no_cgroup_kill() {
            self.freeze_and_kill()
        } else {
            self.kill()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keys_are_read_exactly() {
        assert_eq!(key_in("populated 1\nfrozen 0\n", "populated"), Some(true));
        assert_eq!(key_in("populated 0\nfrozen 1\n", "populated"), Some(false));
        assert_eq!(key_in("populated 0\nfrozen 1\n", "frozen"), Some(true));
        assert_eq!(key_in("", "populated"), None);
    }
}
