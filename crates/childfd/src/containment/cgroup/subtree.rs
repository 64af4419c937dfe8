//! A leaf and every cgroup below it: members that moved into a child
//! cgroup of the leaf (a nested `childfd run --contain cgroup`, or
//! systemd-style delegation) are part of the tree.
//!
//! - `cgroup.kill`, `cgroup.freeze` and `populated` in `cgroup.events`
//!   already act on the whole subtree; `cgroup.procs` lists only the
//!   cgroup's own members, so signalling and the freeze-and-kill fallback
//!   read it in every directory of the subtree.
//! - Removing a leaf removes its empty descendants first, deepest first
//!   (`rmdir(2)` refuses a cgroup that has children).
//!
//! Signals other than SIGKILL are sent by pid to a *frozen* subtree: a
//! frozen process cannot exit on its own, so a pid read from `cgroup.procs`
//! cannot be freed and recycled before the `kill(2)`. No pidfd is opened
//! (a seccomp profile may kill a process that calls `pidfd_open`). Only if
//! the freeze cannot be confirmed in time is each member pinned with
//! `pidfd_open(2)` and its membership checked before it is signalled.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Signal;
use crate::sys::pidfd;

/// How long to wait for `frozen 1` before signalling without the freeze.
const FREEZE_PATIENCE: Duration = Duration::from_millis(500);

/// `dir` and every cgroup below it, deepest first (`dir` last).
pub(crate) fn dirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, expanded)) = stack.pop() {
        if expanded {
            out.push(d);
            continue;
        }
        stack.push((d.clone(), true));
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), false));
                }
            }
        }
    }
    out
}

/// Every pid in `dir` and the cgroups below it.
pub(crate) fn pids(dir: &Path) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for d in dirs_deepest_first(dir) {
        match fs::read_to_string(d.join("cgroup.procs")) {
            Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            // A nested cgroup removed meanwhile: it had nobody left.
            Err(e) if e.kind() == io::ErrorKind::NotFound && d != dir => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Removes `dir` and its (empty) descendants, deepest first. True once
/// `dir` is gone.
pub(crate) fn remove(dir: &Path) -> bool {
    for d in dirs_deepest_first(dir) {
        match fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return false,
        }
    }
    true
}

/// A subtree frozen by [`freeze`] until dropped (then thawed, unless it
/// was frozen before).
pub(crate) struct Frozen<'a> {
    dir: &'a Path,
    /// `cgroup.freeze` was 1 already: leave it so.
    was_frozen: bool,
    /// `frozen 1` was seen: no member can run, so none can exit.
    pub(crate) confirmed: bool,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.was_frozen {
            let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
        }
    }
}

/// Writes `1` to `cgroup.freeze` (which freezes the whole subtree) and
/// waits, at most `patience`, on `cgroup.events` for `frozen 1`.
pub(crate) fn freeze(dir: &Path, patience: Duration) -> io::Result<Frozen<'_>> {
    let was_frozen = fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1");
    if !was_frozen {
        fs::write(dir.join("cgroup.freeze"), "1")?;
    }
    let mut frozen = Frozen {
        dir,
        was_frozen,
        confirmed: false,
    };
    let events = fs::File::open(dir.join("cgroup.events"))?;
    let deadline = Instant::now() + patience;
    loop {
        let text = super::read_events_from(&events)?;
        if super::key_in(&text, "frozen") == Some(true)
            || !super::key_in(&text, "populated").unwrap_or(true)
        {
            frozen.confirmed = true;
            return Ok(frozen);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(frozen);
        }
        pidfd::poll_priority(events.as_fd(), Some(deadline - now))?;
    }
}

/// Sends `sigs`, in order, to every member of `dir` and the cgroups below
/// it (see the module docs for why the subtree is frozen meanwhile): each
/// signal goes to the child `leader` through `to_leader` (its pidfd, which
/// its owner controls) and to every other member, before the next signal.
/// `cg_path` is `dir` as `/proc/<pid>/cgroup` names it, for the fallback.
///
/// Everyone is frozen while the signals are sent, so none of them acts on
/// one before all have it: SIGCONT reaches every stopped member before a
/// SIGTERM can end the leader (see [`Child::terminate`](crate::Child::terminate)).
pub(crate) fn signal_members(
    dir: &Path,
    cg_path: Option<&Path>,
    sigs: &[Signal],
    leader: i32,
    to_leader: &dyn Fn(Signal) -> io::Result<()>,
) -> io::Result<()> {
    // A freeze that cannot even be asked for (a cgroup file not writable
    // here) leaves the pinned fallback.
    let frozen = freeze(dir, FREEZE_PATIENCE).ok();
    let confirmed = frozen.as_ref().is_some_and(|f| f.confirmed);
    let mut members = pids(dir)?;
    members.retain(|&p| p != leader);
    for &sig in sigs {
        to_leader(sig)?;
        if confirmed {
            for &pid in &members {
                // A frozen member cannot exit, so `pid` is still the one
                // listed; ESRCH only if it was killed meanwhile.
                let _ = pidfd::kill_checked(pid, sig.as_raw());
            }
        } else {
            signal_pinned(&members, cg_path, sig.as_raw());
        }
    }
    drop(frozen);
    Ok(())
}

/// The fallback when the freeze was not confirmed: pin each pid with a
/// pidfd, then check the process holding that pid is in the subtree. If the
/// pid was recycled in between, the pidfd's own process is dead and the
/// signal goes nowhere.
fn signal_pinned(members: &[i32], cg_path: Option<&Path>, sig: i32) {
    let Some(cg_path) = cg_path else { return };
    let inside = |line: &str| {
        line.strip_prefix("0::")
            .is_some_and(|p| Path::new(p).starts_with(cg_path))
    };
    for &pid in members {
        let Ok(fd) = pidfd::open(pid) else { continue };
        let in_tree =
            fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| t.lines().any(inside));
        if in_tree {
            let _ = pidfd::send_signal(fd.as_fd(), sig, 0);
        }
    }
}
