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
//! Members are signalled through pidfds (`pidfd_open(2)` on each listed
//! pid, then `cgroup.procs` read again): a pidfd names the process that
//! held the pid when it was opened, so a pid still listed after the open
//! is that process, in the tree; if the process died and the pid went to
//! another one meanwhile, the pidfd's signal goes nowhere (`ESRCH`). The
//! subtree is frozen while the signals are sent so that they arrive
//! together (see [`signal_members`]), but a freeze does not stop a
//! SIGKILLed member from exiting, and a parent outside the tree (init, a
//! subreaper) may reap it and its pid be reused before a `kill(2)` by
//! number: hence the pidfds.
//!
//! # Where `pidfd_open` cannot be used
//!
//! Under a seccomp filter (a container's profile) `pidfd_open` is used if
//! a throwaway copy of the calling thread could call it (a filter may kill
//! the process on it, so it is not tried here first; see
//! `sys::pidfd::open_allowed`). Where it is refused (`ENOSYS` before 5.3,
//! `EPERM`/`EACCES` from a filter, a filter that kills) or no fd is left:
//!
//! - if the subtree is confirmed frozen, listed members still present at
//!   the second read are signalled by pid: a member SIGKILLed, reaped by an
//!   outside parent and its pid reused between that read and the
//!   `kill(2)` (microseconds) would still be hit;
//! - if not, they are not signalled at all, and the caller is told which
//!   (`TreeError::MembersNotSignalled`).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Set by [`disable_freeze`].
static NO_FREEZE: AtomicBool = AtomicBool::new(false);

/// Behave as a cgroup whose `cgroup.freeze` cannot be written. Tests only.
pub(crate) fn disable_freeze() {
    NO_FREEZE.store(true, Ordering::Relaxed);
}

/// Writes `1` to `cgroup.freeze` (which freezes the whole subtree) and
/// waits, at most `patience`, on `cgroup.events` for `frozen 1`.
pub(crate) fn freeze(dir: &Path, patience: Duration) -> io::Result<Frozen<'_>> {
    if NO_FREEZE.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
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
/// it (see the module docs for how each is reached): each signal goes to
/// the child `leader` through `to_leader` (its pidfd, which its owner
/// controls) and to every other member, before the next signal.
///
/// Everyone is frozen while the signals are sent, so none of them acts on
/// one before all have it: SIGCONT reaches every stopped member before a
/// SIGTERM can end the leader (see [`Child::terminate`](crate::Child::terminate)).
///
/// Returns the members that could not be signalled safely (no pidfd, and
/// the freeze not confirmed, so their pids could be reused before a
/// `kill(2)`): the others got the signals.
pub(crate) fn signal_members(
    dir: &Path,
    sigs: &[Signal],
    leader: i32,
    to_leader: &dyn Fn(Signal) -> io::Result<()>,
) -> io::Result<Vec<i32>> {
    // A freeze that cannot even be asked for (a cgroup file not writable
    // here) leaves only the pidfds.
    let frozen = freeze(dir, FREEZE_PATIENCE).ok();
    let confirmed = frozen.as_ref().is_some_and(|f| f.confirmed);
    let mut listed = pids(dir)?;
    listed.retain(|&p| p != leader);
    let pinned = pin(dir, &listed, confirmed)?;
    for &sig in sigs {
        to_leader(sig)?;
        for m in &pinned.members {
            m.signal(sig.as_raw());
        }
    }
    drop(frozen);
    Ok(pinned.skipped)
}

/// A member to signal: pinned by a pidfd, or by pid where `pidfd_open`
/// cannot be used (see the module docs).
pub(crate) struct Member {
    pid: i32,
    fd: Option<OwnedFd>,
}

impl Member {
    /// `pidfd_send_signal(2)`, or `kill(2)` by number; errors ignored (the
    /// member exited meanwhile).
    pub(crate) fn signal(&self, sig: i32) {
        match &self.fd {
            Some(fd) => {
                let _ = pidfd::send_signal(fd.as_fd(), sig, 0);
            }
            None => {
                pidfd::kill_by_number(self.pid, sig);
            }
        }
    }
}

/// What [`pin`] found.
pub(crate) struct Pinned {
    /// The members to signal.
    pub(crate) members: Vec<Member>,
    /// Members still listed that have no pidfd (refused, or out of fds)
    /// and may not be signalled by number.
    pub(crate) skipped: Vec<i32>,
}

/// Pins each of `listed` (pids read from `dir`'s subtree) with a pidfd, then
/// keeps those still listed in the subtree. Members whose pidfd cannot be
/// opened (`pidfd_open` refused, here or by the thread's seccomp filters,
/// or no fd left) are kept by number if `numbers_ok` (the subtree is
/// frozen), else reported as skipped.
pub(crate) fn pin(dir: &Path, listed: &[i32], numbers_ok: bool) -> io::Result<Pinned> {
    if let Some(hook) = LISTED_HOOK.get() {
        hook(listed);
    }
    let may_open = !listed.is_empty() && pidfd::open_allowed();
    let mut members = Vec::with_capacity(listed.len());
    let mut unpinned = Vec::new();
    for &pid in listed {
        let opened = if may_open {
            pidfd::open(pid)
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        };
        match opened {
            Ok(fd) => members.push(Member { pid, fd: Some(fd) }),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(_) if numbers_ok => members.push(Member { pid, fd: None }),
            Err(_) => unpinned.push(pid),
        }
    }
    // A pidfd whose pid is still listed names a member: either the process
    // it was opened on is alive (so the pid is still its own), or it died
    // and the pidfd reaches nobody.
    let still: HashSet<i32> = pids(dir)?.into_iter().collect();
    members.retain(|m| still.contains(&m.pid));
    unpinned.retain(|p| still.contains(p));
    Ok(Pinned {
        members,
        skipped: unpinned,
    })
}

/// A test hook run by [`pin`] between reading the members and opening
/// their pidfds (see `childfd::test_hooks`).
static LISTED_HOOK: OnceLock<fn(&[i32])> = OnceLock::new();

/// Sets [`LISTED_HOOK`] (once per process).
pub(crate) fn set_listed_hook(hook: fn(&[i32])) {
    let _ = LISTED_HOOK.set(hook);
}
