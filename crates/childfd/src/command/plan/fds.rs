//! Step 2 of a spawn: the child's fds, as `dup2(src, dst)` actions over
//! fds that this spawn created or that the caller handed to the command.
//!
//! # No fd kept across spawns
//!
//! Every fd the child takes is one of: a pipe end or a `/dev/null` opened
//! for this spawn, a duplicate made for this spawn, or an fd the caller
//! owns through its [`Stdio`](crate::Stdio) or [`Command::fd`]. Nothing is
//! remembered from an earlier spawn: a host may `close_range(3, ~0)` and
//! open its own files at any time, and a remembered number would then name
//! one of them. (An earlier design kept `/dev/null` and three "parking"
//! slots open for the whole process; this one keeps none.)
//!
//! With `CLONE_FILES` the child copies only the bottom of our fd table, up
//! to the highest fd it uses (see [`ChildPlan::unshare_fds_below`]). A
//! source above [`LOW`] is therefore duplicated (`F_DUPFD_CLOEXEC` from 3)
//! into the lowest free number, which is usually far lower in a process
//! holding many fds; the duplicate is closed once the child has exec'd.
//!
//! [`ChildPlan::unshare_fds_below`]: crate::sys::child_exec::ChildPlan::unshare_fds_below

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{Mode, OFlags};
use rustix::pipe::PipeFlags;

use super::os_err;
use crate::command::Command;
use crate::command::stdio::Kind;
use crate::error::{InvalidCommand, SpawnError, SpawnStage};
use crate::sys::child_exec::FdAction;

/// Sources at or below this number are used where they are: copying a
/// table this small costs less than a duplicate.
const LOW: RawFd = 64;

/// The child's fds and the parent's ends of its pipes.
pub(super) struct FdPlan {
    pub actions: Vec<FdAction>,
    pub stderr_to_stdout: bool,
    /// Some source is also a target: the child first moves every source
    /// to this number or above (into `scratch`), then dup2s from there.
    pub shuffle_min: Option<i32>,
    pub scratch: Vec<i32>,
    /// The parent's ends of piped stdin, stdout, stderr.
    pub parent_ends: [Option<OwnedFd>; 3],
    /// Fds made for the child (pipe ends, `/dev/null`, low duplicates):
    /// closed once it has exec'd.
    for_child: Vec<OwnedFd>,
    /// `(source, low duplicate)` of the sources moved down, by number.
    moved: Vec<(RawFd, RawFd)>,
    share_files: bool,
}

impl FdPlan {
    /// The plan for `cmd`; `share_files`: the child will copy only the
    /// bottom of our fd table, so high sources are moved down.
    pub(super) fn new(cmd: &Command, share_files: bool) -> Result<FdPlan, SpawnError> {
        let mut plan = FdPlan {
            actions: Vec::with_capacity(3 + cmd.fds.len()),
            stderr_to_stdout: false,
            shuffle_min: None,
            scratch: Vec::new(),
            parent_ends: [None, None, None],
            for_child: Vec::new(),
            moved: Vec::new(),
            share_files,
        };
        let mut null: Option<RawFd> = None;
        for (n, s) in [(0, &cmd.stdin), (1, &cmd.stdout), (2, &cmd.stderr)] {
            let src = match &s.0 {
                Kind::Inherit => continue,
                Kind::Null => match null {
                    Some(fd) => fd,
                    None => {
                        let fd = rustix::fs::open(
                            "/dev/null",
                            OFlags::RDWR | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| os_err(cmd, SpawnStage::Pipe, e.into()))?;
                        let low = plan.give(fd);
                        null = Some(low);
                        low
                    }
                },
                Kind::Piped => {
                    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
                        .map_err(|e| os_err(cmd, SpawnStage::Pipe, e.into()))?;
                    let (mine, theirs) = if n == 0 { (w, r) } else { (r, w) };
                    plan.parent_ends[n as usize] = Some(mine);
                    plan.give(theirs)
                }
                Kind::Fd(fd) => plan.low(fd.as_fd()),
                Kind::SameAsStdout if n == 2 => {
                    plan.stderr_to_stdout = true;
                    continue;
                }
                Kind::SameAsStdout => {
                    return Err(SpawnError::Invalid {
                        program: cmd.program_lossy(),
                        reason: InvalidCommand::SameAsStdout,
                    });
                }
            };
            plan.actions.push(FdAction { src, dst: n });
        }
        for (dst, fd) in &cmd.fds {
            let src = plan.low(fd.as_fd());
            plan.actions.push(FdAction { src, dst: *dst });
        }
        plan.order();
        Ok(plan)
    }

    /// Keeps `fd` (made for the child) until the child has exec'd; returns
    /// the number the child takes it from.
    fn give(&mut self, fd: OwnedFd) -> RawFd {
        let src = self.low(fd.as_fd());
        self.for_child.push(fd);
        src
    }

    /// The number the child should take `src` from: `src` itself when it is
    /// low already (or nothing lower is free), else a low duplicate.
    fn low(&mut self, src: BorrowedFd<'_>) -> RawFd {
        let raw = src.as_raw_fd();
        if !self.share_files || raw <= LOW {
            return raw;
        }
        if let Some(&(_, low)) = self.moved.iter().find(|(s, _)| *s == raw) {
            return low;
        }
        match rustix::io::fcntl_dupfd_cloexec(src, 3) {
            Ok(dup) if dup.as_raw_fd() < raw => {
                let low = dup.as_raw_fd();
                self.moved.push((raw, low));
                self.for_child.push(dup);
                low
            }
            _ => raw,
        }
    }

    /// If some source fd is also some other action's target, dup2 in order
    /// could overwrite it before use: then the child first moves every
    /// source above all targets.
    fn order(&mut self) {
        let a = &self.actions;
        let conflict = a
            .iter()
            .enumerate()
            .any(|(i, x)| a.iter().enumerate().any(|(j, y)| i != j && x.src == y.dst));
        if conflict {
            let top = a.iter().map(|x| x.dst).max().unwrap_or(2).max(2);
            self.shuffle_min = Some(top + 1);
            self.scratch = vec![-1; a.len()];
        }
    }

    /// The lowest number above every fd the child uses (the plan's and
    /// `extra`), for `close_range(n, ~0, CLOSE_RANGE_UNSHARE)`; 0 (copy the
    /// whole table) if that would overflow.
    pub(super) fn unshare_bound(&self, extra: RawFd) -> i32 {
        self.actions
            .iter()
            .flat_map(|a| [a.src, a.dst])
            .chain([2, extra])
            .max()
            .unwrap_or(2)
            .checked_add(1)
            .unwrap_or(0)
    }

    /// The child has exec'd (or failed): closes what was made for it and
    /// returns the parent's pipe ends.
    pub(super) fn finish(self) -> [Option<OwnedFd>; 3] {
        drop(self.for_child);
        self.parent_ends
    }
}
