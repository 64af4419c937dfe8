//! cgroup v2 leaves: one fresh cgroup per child, so that every descendant
//! (even one that called `setsid` or double-forked) can be found and killed.
//!
//! - The cgroup2 mount is found in `/proc/self/mountinfo`, never assumed.
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
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

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

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
pub(crate) fn mount_point() -> Option<&'static Path> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    MOUNT
        .get_or_init(|| {
            let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
            parse_mountinfo(&info)
        })
        .as_deref()
}

/// The mount point of the first `cgroup2` filesystem in a mountinfo text.
fn parse_mountinfo(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount = left.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount)))
    })
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's own cgroup v2 directory (`0::/path` in `/proc/self/cgroup`).
fn own_cgroup_dir() -> Option<PathBuf> {
    let mount = mount_point()?;
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

/// Why a cgroup leaf could not be made.
pub(crate) fn no_cgroup_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

/// Resolves the parent directory for new leaves.
pub(crate) fn resolve_parent(parent: &CgroupParent) -> io::Result<PathBuf> {
    let mount =
        mount_point().ok_or_else(|| no_cgroup_error("no cgroup v2 hierarchy is mounted"))?;
    let dir = match parent {
        CgroupParent::Dir(d) => d.clone(),
        CgroupParent::Auto => own_cgroup_dir()
            .ok_or_else(|| no_cgroup_error("this process's cgroup v2 directory is unknown"))?,
    };
    if !dir.starts_with(mount) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not inside the cgroup v2 mount {}",
                dir.display(),
                mount.display()
            ),
        ));
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

/// One child's cgroup.
#[derive(Debug)]
pub(crate) struct Leaf {
    path: PathBuf,
    /// The directory, for `CLONE_INTO_CGROUP`.
    dir: OwnedFd,
    removed: AtomicBool,
}

impl Leaf {
    /// Creates `<parent>/childfd-<pid>-<n>`.
    pub(crate) fn create(parent: &Path) -> io::Result<Leaf> {
        let name = format!(
            "childfd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        fs::create_dir(&path)?;
        match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => Ok(Leaf {
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// `cgroup.procs` opened for writing (the legacy-clone child writes `0`).
    pub(crate) fn open_procs(&self) -> io::Result<OwnedFd> {
        Ok(OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))?
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
        read_populated(&self.path)
    }

    /// Kills every member: `cgroup.kill`, or freeze-and-kill without it.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match fs::write(self.path.join("cgroup.kill"), "1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound || force_no_cgroup_kill() => {
                self.freeze_and_kill()
            }
            Err(e) => Err(e),
        }
    }

    /// Before Linux 5.14: freeze the leaf so nobody forks, SIGKILL each
    /// member listed in `cgroup.procs`, thaw, and repeat until empty.
    fn freeze_and_kill(&self) -> io::Result<()> {
        let freeze = self.path.join("cgroup.freeze");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let can_freeze = fs::write(&freeze, "1").is_ok();
            if can_freeze {
                // Wait (bounded) for "frozen 1"; killing works regardless.
                let until = Instant::now() + Duration::from_millis(100);
                while Instant::now() < until && !read_key(&self.path, "frozen").unwrap_or(true) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            for pid in fs::read_to_string(self.path.join("cgroup.procs"))?.lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // A listed member of a frozen leaf cannot exit on its own,
                    // so its number cannot have been recycled.
                    crate::sys::pidfd::kill_by_number(pid, libc::SIGKILL);
                }
            }
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

    /// Every pid currently in the leaf.
    pub(crate) fn pids(&self) -> io::Result<Vec<i32>> {
        if self.gone() {
            return Ok(Vec::new());
        }
        Ok(fs::read_to_string(self.path.join("cgroup.procs"))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// Waits until the leaf is empty or `deadline` passes; true if empty.
    /// Polls `cgroup.events` for `POLLPRI`, so no busy loop.
    pub(crate) fn wait_empty(&self, deadline: Option<Instant>) -> io::Result<bool> {
        if self.gone() {
            return Ok(true);
        }
        let mut events = File::open(self.path.join("cgroup.events"))?;
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

    /// Removes the leaf if it is empty; true once removed.
    pub(crate) fn try_remove(&self) -> bool {
        if self.removed.load(Ordering::Acquire) {
            return true;
        }
        match fs::remove_dir(&self.path) {
            Ok(()) => {
                self.removed.store(true, Ordering::Release);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.removed.store(true, Ordering::Release);
                true
            }
            Err(_) => false,
        }
    }

    /// The path to remove later, unless already removed.
    pub(crate) fn pending_path(&self) -> Option<PathBuf> {
        (!self.removed.load(Ordering::Acquire)).then(|| self.path.clone())
    }
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

/// `populated` of the cgroup at `dir`.
pub(crate) fn read_populated(dir: &Path) -> io::Result<bool> {
    let text = fs::read_to_string(dir.join("cgroup.events"))?;
    Ok(key_in(&text, "populated").unwrap_or(true))
}

/// `populated` read through an open `cgroup.events` (from its start).
pub(crate) fn read_populated_from(mut events: &File) -> io::Result<bool> {
    let mut text = String::new();
    events.rewind()?;
    events.read_to_string(&mut text)?;
    Ok(key_in(&text, "populated").unwrap_or(true))
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
    fn mountinfo_parsing_finds_cgroup2_and_unescapes_spaces() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let info = "41 31 0:38 / /mnt/with\\040space rw shared:5 - cgroup2 none rw\n";
        assert_eq!(
            parse_mountinfo(info),
            Some(PathBuf::from("/mnt/with space"))
        );
        assert_eq!(
            parse_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn events_keys_are_read_exactly() {
        assert_eq!(key_in("populated 1\nfrozen 0\n", "populated"), Some(true));
        assert_eq!(key_in("populated 0\nfrozen 1\n", "populated"), Some(false));
        assert_eq!(key_in("populated 0\nfrozen 1\n", "frozen"), Some(true));
        assert_eq!(key_in("", "populated"), None);
    }
}
