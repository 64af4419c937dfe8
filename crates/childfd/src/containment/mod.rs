//! Containment: control of a child's whole process tree.
//!
//! | mode | at spawn | [`signal_tree`](Child::signal_tree) reaches | does not reach |
//! |---|---|---|---|
//! | [`Containment::ProcessGroup`] (default) | `setpgid(0, 0)` | the child and every process in its process group (descendants that kept it: `sh -c 'a; b'`, `(cmd &)`, double forks), by `struct pid` | descendants that moved to another group or session (`setsid`, `setpgid`, shells with job control, daemons) |
//! | [`Containment::Session`] | `setsid()` | the same: the group the child leads as session leader | the same |
//! | [`Containment::Cgroup`] | a fresh leaf cgroup, `CLONE_INTO_CGROUP` | every process in the leaf **and in every cgroup below it** (a nested `childfd run --contain cgroup`, a delegating service manager), whatever its group or session | a process that moved itself out of the leaf's subtree (needs write access to another cgroup's `cgroup.procs`) |
//! | [`Containment::Inherit`] | nothing | the child only | every descendant |
//! | [`Containment::JoinGroup`] | `setpgid(0, pgid)` | the child only (the group is its leader's: signal it through the leader) | every descendant, and the rest of the group |
//!
//! A process group is signalled with `pidfd_send_signal(pidfd, sig, NULL,
//! PIDFD_SIGNAL_PROCESS_GROUP)` (Linux 6.9): the group is named by its
//! leader's `struct pid`, so a recycled group number is never hit, even
//! after the leader was reaped.
//!
//! In cgroup mode, SIGKILL is `cgroup.kill` (the whole subtree, racing
//! correctly with forks); other signals go to the child through its pidfd
//! and to every other member through a pidfd opened for it, while the
//! subtree is frozen (`cgroup.freeze`) so that all get them together
//! (see the caveats). Emptiness (`populated` in
//! `cgroup.events`) covers the subtree, and removing the leaf removes the
//! (empty) cgroups created below it first.
//!
//! [`Child::terminate`] sends SIGCONT, then SIGTERM: a stopped member is
//! running again before any TERM can end the leader. (TERM first could
//! leave the group orphaned with a stopped member, which the kernel then
//! sends SIGHUP, so the member would die of SIGHUP before its TERM handler
//! ran.)
//!
//! # Caveats
//!
//! - Before Linux 6.9, or when a seccomp profile refuses
//!   `pidfd_send_signal`, a group can only be signalled by number, which is
//!   safe only while the leader is not reaped (its zombie pins the number).
//!   childfd then signals the group only after checking, under its reaping
//!   lock, that the leader is unreaped, and returns
//!   [`TreeError::GroupUnreachable`] once it has been reaped. While
//!   [`terminate`](Child::terminate), [`signal_tree`](Child::signal_tree) or
//!   [`wait_tree_deadline`](Child::wait_tree_deadline) runs, a concurrent
//!   [`wait`](Child::wait) does not reap the leader: it returns once the
//!   operation ends (so terminate's SIGKILL still reaches a member that
//!   outlived the leader's SIGTERM), and [`try_wait`](Child::try_wait) says
//!   `None` meanwhile. A reaper
//!   elsewhere in the process (a `waitpid(-1)` loop) could still reap the
//!   leader between that check and the `kill`. The same holds for the child
//!   itself ([`Child::signal`]) when `pidfd_send_signal` is refused.
//! - Process groups and sessions do not contain descendants that create
//!   their own group or session (`setsid`, `setpgid`, daemons): only cgroup
//!   mode does.
//! - In cgroup mode, signalling freezes the subtree for a moment and
//!   reaches each member through a pidfd (`pidfd_open(2)`, then its
//!   membership checked again), so a member killed and reaped by an outside
//!   parent cannot pass the signal to a process that reused its pid. Under
//!   a seccomp filter, `pidfd_open` is first tried once in a throwaway copy
//!   of the thread (a filter may kill on it) and used if it works there.
//!   Where it is refused (or kills), members of a subtree confirmed frozen
//!   are signalled by pid, with a window of microseconds for that reuse;
//!   if the freeze is not confirmed either, they are not signalled and
//!   [`signal_tree`](Child::signal_tree) returns
//!   [`TreeError::MembersNotSignalled`] naming them
//!   ([`terminate`](Child::terminate) goes on: its SIGKILL reaches them).

pub(crate) mod cgroup;

pub use cgroup::CgroupParent;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sys::pidfd;
use crate::{Child, ExitStatus, Signal, WaitError};
use cgroup::Leaf;

/// How a child's descendants are grouped so they can be signalled and
/// killed as a tree. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Containment {
    /// The child leads a new process group (`setpgid(0, 0)`); the default.
    #[default]
    ProcessGroup,
    /// The child leads a new session (`setsid()`), without a controlling
    /// terminal.
    Session,
    /// The child runs in a fresh cgroup v2 leaf under this parent; catches
    /// every descendant. Spawning fails with a clear error when no writable
    /// cgroup v2 directory exists; it never silently degrades.
    Cgroup(CgroupParent),
    /// The child stays in the caller's process group; only the child itself
    /// can be signalled.
    Inherit,
    /// The child joins the existing process group `pgid` (`setpgid(0,
    /// pgid)`), as with std's `process_group(pgid)`. The group belongs to
    /// its leader: this child's tree is the child only, and the group is
    /// signalled through the leader's [`Child::signal_tree`].
    JoinGroup(u32),
}

impl Containment {
    /// Cgroup mode with leaves under the process's own cgroup.
    ///
    /// Catches what a process group cannot: here a `setsid` daemon.
    ///
    /// ```
    /// use childfd::{Command, Containment, SpawnStage};
    /// use std::time::Duration;
    ///
    /// let child = match Command::new("sh")
    ///     .args(["-c", "setsid sleep 300 & exit 0"])
    ///     .containment(Containment::cgroup())
    ///     .spawn()
    /// {
    ///     Ok(child) => child,
    ///     // No writable cgroup v2 directory here: nothing was started.
    ///     Err(e) if e.stage() == SpawnStage::Cgroup => return Ok(()),
    ///     Err(e) => return Err(e.into()),
    /// };
    /// let leaf = child.cgroup_path().expect("cgroup mode").to_owned();
    /// child.wait()?; // `sh` is gone; its daemon lives on in the leaf
    /// child.kill_tree()?; // cgroup.kill: the daemon too
    /// assert!(child.wait_tree_deadline(std::time::Instant::now() + Duration::from_secs(10))?);
    /// drop(child); // the empty leaf is removed
    /// assert!(!leaf.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cgroup() -> Containment {
        Containment::Cgroup(CgroupParent::Auto)
    }

    /// Cgroup mode with leaves under `dir` (a cgroup v2 directory).
    pub fn cgroup_in(dir: impl Into<std::path::PathBuf>) -> Containment {
        Containment::Cgroup(CgroupParent::Dir(dir.into()))
    }
}

/// A child's tree, as created at spawn.
#[derive(Debug)]
pub(crate) enum Tree {
    /// The child only.
    Single,
    /// The group (or session) the child leads.
    Group,
    /// The child's own cgroup.
    Cgroup(Leaf),
}

/// Signalling or ending a tree failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Before Linux 6.9 a process group can be signalled only while its
    /// leader is unreaped; it has been reaped, so the group is not signalled
    /// (its number could belong to someone else now).
    #[error(
        "process group of {pid} cannot be signalled safely: its leader was reaped and this kernel lacks PIDFD_SIGNAL_PROCESS_GROUP"
    )]
    GroupUnreachable {
        /// The leader's pid.
        pid: u32,
    },
    /// Members were still alive after SIGKILL and the bounded wait.
    #[error("the tree of {pid} still had members {waited:?} after SIGKILL")]
    Survivors {
        /// The child's pid.
        pid: u32,
        /// How long it was waited for.
        waited: Duration,
    },
    /// Cgroup mode: these members got none of the signals. `pidfd_open`
    /// was refused (a seccomp profile, an old kernel) or no fd was left,
    /// and the subtree could not be confirmed frozen, so a member's pid
    /// could have been freed and reused before a `kill(2)` by number. Every
    /// other member got the signals; `kill_tree` (`cgroup.kill`) still
    /// reaches these.
    #[error(
        "members {members:?} of the tree of {pid} were not signalled: no pidfd could be opened for them and the tree was not frozen, so signalling them by pid could hit a reused pid"
    )]
    MembersNotSignalled {
        /// The child's pid.
        pid: u32,
        /// The members left out.
        members: Vec<u32>,
    },
    /// A system call or cgroup file operation failed.
    #[error("controlling the tree of {pid} failed")]
    Os {
        /// The child's pid.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// How [`Child::terminate`] ended the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The tree was gone within the grace period after SIGTERM.
    Term,
    /// SIGKILL was needed.
    Kill,
}

/// The result of [`Child::terminate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// The child's status.
    pub status: ExitStatus,
    /// Which signal ended the tree.
    pub ended_by: EndedBy,
}

/// How long to wait for a SIGKILLed tree to disappear before giving up.
const KILL_PATIENCE: Duration = Duration::from_secs(10);

impl Child {
    fn tree_err(&self, source: io::Error) -> TreeError {
        TreeError::Os {
            pid: self.id(),
            source,
        }
    }

    /// The child's cgroup directory (cgroup mode).
    pub fn cgroup_path(&self) -> Option<&Path> {
        match &self.tree {
            Tree::Cgroup(leaf) => Some(leaf.path()),
            _ => None,
        }
    }

    /// Sends `sig` to the child's whole tree, as its containment allows
    /// (see the [containment table](crate::containment)).
    ///
    /// Process group: `pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP)`, which
    /// also reaches the group after its leader exited. Cgroup: every member
    /// of the leaf and of the cgroups below it (SIGKILL through
    /// `cgroup.kill`, others by pid while the subtree is frozen). Inherit:
    /// the child only. An empty tree is not an error. Another thread may be
    /// blocked in [`wait`](Child::wait) meanwhile.
    ///
    /// ```
    /// use childfd::{Command, Signal};
    /// use std::time::{Duration, Instant};
    ///
    /// // `sh` waits for its background `sleep`: both are in the child's group.
    /// let child = Command::new("sh").args(["-c", "sleep 300 & wait"]).spawn()?;
    /// child.signal_tree(Signal::TERM)?; // both get it, not only `sh`
    /// let status = child.wait_timeout(Duration::from_secs(10))?.expect("the tree ended");
    /// assert_eq!(status.signal(), Some(Signal::TERM));
    /// assert!(child.wait_tree_deadline(Instant::now() + Duration::from_secs(10))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::GroupUnreachable`] on kernels before 6.9 once the leader
    /// is reaped; in cgroup mode [`TreeError::MembersNotSignalled`] naming
    /// members that could not be signalled safely (the others were);
    /// [`TreeError::Os`].
    pub fn signal_tree(&self, sig: Signal) -> Result<(), TreeError> {
        let _hold = self.hold_leader();
        self.signal_tree_in_order(&[sig])
    }

    /// Sends each of `sigs` to the whole tree, in order (each reaches every
    /// member before the next is sent). In cgroup mode the subtree stays
    /// frozen for all of them.
    fn signal_tree_in_order(&self, sigs: &[Signal]) -> Result<(), TreeError> {
        match &self.tree {
            Tree::Single => {
                for &sig in sigs {
                    self.signal(sig).map_err(|e| self.tree_err(e.source))?;
                }
                Ok(())
            }
            Tree::Group => sigs.iter().try_for_each(|&sig| self.signal_group(sig)),
            Tree::Cgroup(leaf) if sigs == [Signal::KILL] => leaf
                .kill_tree()
                .or_else(|e| self.unless_leaf_removed(leaf, e)),
            Tree::Cgroup(leaf) => {
                let to_leader = |sig: Signal| self.signal(sig).map_err(|e| e.source);
                match leaf.signal_members(sigs, self.id() as i32, &to_leader) {
                    Ok(skipped) if skipped.is_empty() => Ok(()),
                    Ok(skipped) => Err(TreeError::MembersNotSignalled {
                        pid: self.id(),
                        members: skipped.into_iter().map(|p| p as u32).collect(),
                    }),
                    Err(e) => self.unless_leaf_removed(leaf, e),
                }
            }
        }
    }

    /// A cgroup operation failed with `e`. If that is because the leaf was
    /// removed meanwhile (another thread's `terminate` or `wait_tree` found
    /// the tree empty and cleaned up: `ENOENT` opening a file of the leaf,
    /// `ENODEV` writing one already open), the tree is empty for good (a
    /// removed cgroup takes no new member): not an error. A path gone
    /// because the cgroup2 file system was mounted elsewhere is not that:
    /// the leaf itself, reached through its directory fd, must be gone too.
    fn unless_leaf_removed(&self, leaf: &Leaf, e: io::Error) -> Result<(), TreeError> {
        let vanished = matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV));
        if vanished && !leaf.path().exists() && leaf.deleted() {
            return Ok(());
        }
        Err(self.tree_err(e))
    }

    /// `signal_tree(SIGKILL)`: in cgroup mode, `cgroup.kill`.
    ///
    /// # Errors
    ///
    /// As [`signal_tree`](Child::signal_tree).
    pub fn kill_tree(&self) -> Result<(), TreeError> {
        self.signal_tree(Signal::KILL)
    }

    fn signal_group(&self, sig: Signal) -> Result<(), TreeError> {
        let fd = self.pidfd_ref();
        if pidfd::send_group_signal(fd, sig.as_raw()).map_err(|e| self.tree_err(e))? {
            return Ok(());
        }
        // Before 6.9 (or pidfd_send_signal refused): by number, only while
        // the leader provably pins it.
        match self.kill_while_unreaped(-(self.id() as i32), sig) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(TreeError::GroupUnreachable { pid: self.id() })
            }
            Err(e) => Err(self.tree_err(e)),
        }
    }

    /// Whether the child and every member of its tree have ended.
    fn tree_gone(&self) -> Result<bool, TreeError> {
        let fd = self.pidfd_ref();
        let leader_exited = self.cached_status().is_some()
            || pidfd::poll_readable(fd, Some(Duration::ZERO)).map_err(|e| self.tree_err(e))?;
        if !leader_exited {
            return Ok(false);
        }
        match &self.tree {
            Tree::Single => Ok(true),
            Tree::Cgroup(leaf) => Ok(!leaf.populated().map_err(|e| self.tree_err(e))?),
            Tree::Group if pidfd::group_signal_supported() => {
                // Reap the leader so its zombie does not count as a member.
                self.try_wait()?;
                // Exact and cheap: no member at all (by struct pid).
                if !pidfd::group_has_members(fd).map_err(|e| self.tree_err(e))? {
                    return Ok(true);
                }
                // Members left may all be zombies (killed orphans waiting for
                // init to reap them): dead, so the tree is gone. Their
                // zombies pin the group number, so /proc names our group.
                Ok(!group_members_besides_leader(self.id() as i32))
            }
            // Before 6.9: keep the leader unreaped (it pins the number) and
            // look for other members by process group in /proc.
            Tree::Group => Ok(!group_members_besides_leader(self.id() as i32)),
        }
    }

    /// Waits until the child and its whole tree have ended, or `deadline`
    /// passes; returns whether the tree is gone. Cgroup mode sleeps on
    /// `cgroup.events`; group mode re-checks with a growing interval
    /// (a process group has no exit notification).
    ///
    /// # Errors
    ///
    /// [`TreeError::Os`] or [`TreeError::Wait`].
    pub fn wait_tree_deadline(&self, deadline: Instant) -> Result<bool, TreeError> {
        // Before 6.9 the unreaped leader pins the group number we scan for.
        let _hold = self.hold_leader();
        if let Tree::Cgroup(leaf) = &self.tree {
            if !leaf
                .wait_empty(Some(deadline))
                .map_err(|e| self.tree_err(e))?
            {
                return Ok(false);
            }
        } else if self.wait_leader_exit(deadline)?.is_none() {
            return Ok(false);
        }
        let mut pause = Duration::from_micros(100);
        loop {
            if self.tree_gone()? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Waits for the leader to exit without reaping it (so that, before
    /// 6.9, its zombie keeps pinning the group number).
    fn wait_leader_exit(&self, deadline: Instant) -> Result<Option<()>, TreeError> {
        loop {
            if self.cached_status().is_some() {
                return Ok(Some(()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if pidfd::poll_readable(self.pidfd_ref(), Some(deadline - now))
                .map_err(|e| self.tree_err(e))?
            {
                return Ok(Some(()));
            }
        }
    }

    /// Ends the child's tree gracefully: SIGCONT, then SIGTERM to the tree
    /// (stopped members must see the TERM, and get their grace), wait up to `grace` for the
    /// child and every member to end, then SIGKILL the tree. Reaps the child
    /// and removes its cgroup leaf. Another thread may be blocked in
    /// [`wait`](Child::wait) meanwhile; before 6.9 it returns once this ends
    /// (see the [caveats](crate::containment#caveats)).
    ///
    /// ```
    /// use childfd::{Command, EndedBy, Signal, Stdio};
    /// use std::io::{BufRead, BufReader};
    /// use std::time::Duration;
    ///
    /// // A polite tree ends on TERM...
    /// let job = Command::new("sh").args(["-c", "sleep 300 & sleep 300"]).spawn()?;
    /// let t = job.terminate(Duration::from_secs(5))?;
    /// assert_eq!((t.ended_by, t.status.signal()), (EndedBy::Term, Some(Signal::TERM)));
    ///
    /// // ...one that ignores TERM gets KILL once the grace period is over.
    /// let mut stubborn = Command::new("sh")
    ///     .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
    ///     .stdout(Stdio::piped())
    ///     .spawn()?;
    /// let mut ready = String::new(); // wait until the trap is set
    /// BufReader::new(stubborn.take_stdout().expect("piped")).read_line(&mut ready)?;
    /// let t = stubborn.terminate(Duration::from_millis(200))?;
    /// assert_eq!(t.ended_by, EndedBy::Kill);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TreeError::Survivors`] if members outlive SIGKILL for 10 s; others
    /// as [`signal_tree`](Child::signal_tree).
    pub fn terminate(&self, grace: Duration) -> Result<Termination, TreeError> {
        // Before 6.9 the SIGKILL below goes to the group by number, which
        // needs the leader unreaped: a concurrent wait must not reap it
        // when it dies of the SIGTERM. Released before our own wait.
        let hold = self.hold_leader();
        // CONT first: once it is sent no member is stopped, so when TERM
        // ends the leader and orphans the group, the kernel finds no
        // stopped member to send SIGHUP to (which would kill a member that
        // handles TERM before it sees it).
        match self.signal_tree_in_order(&[Signal::CONT, Signal::TERM]) {
            // Those members get no grace: the SIGKILL below reaches them.
            Ok(()) | Err(TreeError::MembersNotSignalled { .. }) => {}
            Err(e) => return Err(e),
        }
        let ended_by = if self.wait_tree_deadline(deadline_after(grace))? {
            EndedBy::Term
        } else {
            self.kill_tree()?;
            if !self.wait_tree_deadline(deadline_after(KILL_PATIENCE))? {
                return Err(TreeError::Survivors {
                    pid: self.id(),
                    waited: KILL_PATIENCE,
                });
            }
            EndedBy::Kill
        };
        drop(hold);
        let status = self.wait()?;
        if let Tree::Cgroup(leaf) = &self.tree {
            leaf.try_remove();
        }
        Ok(Termination { status, ended_by })
    }
}

fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(86400 * 365))
}

/// Whether any process other than `leader` (and not a zombie) has process
/// group `leader`: the pre-6.9 emptiness test, from `/proc`.
fn group_members_besides_leader(leader: i32) -> bool {
    live_group_members(leader).any(|pid| pid != leader)
}

/// The pids of the live (not zombie) members of process group `pgid`, from
/// the state and group fields of `/proc/<pid>/stat`. By number: callers
/// make sure the number still names their group (a member or an unreaped
/// leader pins it). Public for `childfd-io`'s count of what a job left
/// behind; not a stable API.
#[doc(hidden)]
pub fn live_group_members(pgid: i32) -> impl Iterator<Item = i32> {
    let dir = std::fs::read_dir("/proc").ok();
    dir.into_iter().flatten().flatten().filter_map(move |e| {
        let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let mut f = rest.split_whitespace();
        let state = f.next()?;
        let pgrp = f.nth(1)?.parse::<i32>().ok()?;
        (pgrp == pgid && state != "Z" && state != "X").then_some(pid)
    })
}
