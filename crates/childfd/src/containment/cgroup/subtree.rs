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
//! pid, then `cgroup.procs` read again; a batch of at most 64 at a time,
//! see [`pin_each`]): a pidfd names the process that
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
    let mut skipped = Vec::new();
    for &sig in sigs {
        to_leader(sig)?;
        skipped.extend(pin_each(dir, &listed, confirmed, &mut |m| {
            m.signal(sig.as_raw())
        })?);
    }
    drop(frozen);
    skipped.sort_unstable();
    skipped.dedup();
    Ok(skipped)
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

/// How many members hold a pidfd at once (see [`pin_each`]).
const PIN_BATCH: usize = 64;

/// Calls `each` for every member of `listed` (pids read from `dir`'s
/// subtree) still in the subtree, each pinned by a pidfd, and returns the
/// members that could not be reached safely.
///
/// A batch at a time: up to [`PIN_BATCH`] pidfds are opened, `dir`'s
/// subtree is read again (a pidfd whose pid is still listed names a
/// member: the process it was opened on is alive, so the pid is still its
/// own, or it died and the pidfd reaches nobody), `each` runs for the
/// batch's members still listed, and the pidfds are closed. So a tree of
/// thousands needs only a few dozen free fds, and never takes those the
/// host's other threads need; a batch that runs out of fds
/// (`EMFILE`/`ENFILE`) ends early and the next one starts with them free.
///
/// A member whose pidfd cannot be opened at all (`pidfd_open` refused,
/// here or by the thread's seccomp filters, or no fd free even for one,
/// or none left to read the subtree again once it is open) is reached by
/// number if `numbers_ok` (the subtree is frozen), else returned as
/// skipped. Where not even the read is possible, the batch's members are
/// returned as skipped (some may have left the subtree meanwhile).
pub(crate) fn pin_each(
    dir: &Path,
    listed: &[i32],
    numbers_ok: bool,
    each: &mut dyn FnMut(&Member),
) -> io::Result<Vec<i32>> {
    if let Some(hook) = LISTED_HOOK.get() {
        hook(listed);
    }
    let may_open = !listed.is_empty() && pidfd::open_allowed();
    let mut skipped = Vec::new();
    let mut rest = listed;
    while !rest.is_empty() {
        let (mut members, mut unpinned, mut taken) = pin_batch(rest, may_open, numbers_ok);
        let still = loop {
            match pids(dir) {
                Ok(p) => break Some(p.into_iter().collect::<HashSet<i32>>()),
                // The batch took the fds the read needs: give half back
                // (those members come again in the next batch).
                Err(e) if is_out_of_fds(&e) && members.len() > 1 => {
                    let cut = members[members.len() / 2].0;
                    members.retain(|(i, _)| *i < cut);
                    unpinned.retain(|(i, _)| *i < cut);
                    taken = cut;
                }
                // Even one pidfd leaves no fd for the read: close it.
                Err(e) if is_out_of_fds(&e) && members.iter().any(|(_, m)| m.fd.is_some()) => {
                    unpin(&mut members, &mut unpinned, numbers_ok);
                }
                // No fd at all: the batch cannot be checked, nor reached.
                Err(e) if is_out_of_fds(&e) => break None,
                Err(e) => return Err(e),
            }
        };
        rest = &rest[taken..];
        let Some(still) = still else {
            skipped.extend(members.iter().map(|(_, m)| m.pid));
            skipped.extend(unpinned.iter().map(|(_, p)| *p));
            continue;
        };
        for (_, m) in members.iter().filter(|(_, m)| still.contains(&m.pid)) {
            each(m);
        }
        skipped.extend(
            unpinned
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| still.contains(p)),
        );
    }
    Ok(skipped)
}

/// Closes the batch's pidfds (the read of the subtree needs an fd): each
/// member is then reached by number if `numbers_ok`, else left unpinned.
fn unpin(members: &mut Vec<(usize, Member)>, unpinned: &mut Vec<(usize, i32)>, numbers_ok: bool) {
    for (i, m) in std::mem::take(members) {
        if numbers_ok {
            members.push((
                i,
                Member {
                    pid: m.pid,
                    fd: None,
                },
            ));
        } else {
            unpinned.push((i, m.pid));
        }
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Opens pidfds for the first of `pids`, at most [`PIN_BATCH`], and stops
/// early when the fds run out after one was opened. The members (by
/// number where allowed) and the pids left unpinned, each with its index
/// in `pids`, and how many of `pids` were dealt with.
#[allow(clippy::type_complexity)]
fn pin_batch(
    pids: &[i32],
    may_open: bool,
    numbers_ok: bool,
) -> (Vec<(usize, Member)>, Vec<(usize, i32)>, usize) {
    let mut members = Vec::new();
    let mut unpinned = Vec::new();
    let mut opened_any = false;
    let mut taken = 0;
    for (i, &pid) in pids.iter().enumerate().take(PIN_BATCH) {
        let opened = if may_open {
            pidfd::open(pid)
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        };
        match opened {
            Ok(fd) => {
                opened_any = true;
                members.push((i, Member { pid, fd: Some(fd) }));
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            // Out of fds with some held: this batch ends; the next one
            // starts with them closed.
            Err(e) if opened_any && is_out_of_fds(&e) => break,
            Err(_) if numbers_ok => members.push((i, Member { pid, fd: None })),
            Err(_) => unpinned.push((i, pid)),
        }
        taken = i + 1;
    }
    (members, unpinned, taken)
}

/// A test hook run by [`pin_each`] between reading the members and opening
/// their pidfds (see `childfd::test_hooks`).
static LISTED_HOOK: OnceLock<fn(&[i32])> = OnceLock::new();

/// Sets [`LISTED_HOOK`] (once per process).
pub(crate) fn set_listed_hook(hook: fn(&[i32])) {
    let _ = LISTED_HOOK.set(hook);
}
