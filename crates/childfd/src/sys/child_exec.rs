//! The code that runs in the child between `clone` and `execve`.
//!
//! # What this code must never do, and why
//!
//! The child is created with `CLONE_VM | CLONE_VFORK`: it runs on a private
//! stack but in the parent's address space, while the spawning thread is
//! suspended in the middle of `clone`. Therefore it must never:
//!
//! - **allocate or free** memory: the allocator's locks may be held by
//!   another parent thread (deadlock) and its state is shared with the
//!   parent (corruption);
//! - **take any lock**, for the same reason;
//! - **touch thread-local storage**, including `errno`: the child shares the
//!   spawning thread's TLS block, so it would overwrite the parent's;
//!   therefore only the raw syscalls of [`super::raw`] are used, never libc;
//! - **panic or unwind**: unwinding would run the parent's frames on the
//!   wrong stack. There is no indexing, no overflow-checked arithmetic and no
//!   `unwrap` below; a failure is reported and the child exits;
//! - **return** into the caller: [`child_main`] is entered by the assembly
//!   trampoline in [`super::clone`] with nothing to return to, and ends in
//!   `execve` or `exit_group`;
//! - **write parent memory** other than the [`SpawnBlock`] it is given;
//! - **change any fd before unsharing the fd table**: with `CLONE_FILES`
//!   (see [`ChildPlan::unshare_fds_below`]) a `dup2` or close before that
//!   step would change the parent's own fds.
//!
//! Everything it needs (argv, envp, PATH candidates, the fd plan) was built
//! by the parent before the clone and is only read here.

use core::ffi::c_char;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use super::raw::{KERNEL_SIGSET_SIZE, KernelSigaction, sc};

/// Where the child reports a failure to the parent. It lives in memory the
/// parent can read after `clone` returns (shared by `CLONE_VM`, or a
/// `MAP_SHARED` page on the fork-style path).
#[repr(C)]
pub(crate) struct SpawnBlock {
    /// `errno` of the failed step, 0 if the child reached `execve` successfully.
    pub errno: AtomicI32,
    /// [`Stage`] of the failed step, as `u32`.
    pub stage: AtomicU32,
}

/// The steps of the child, in order; reported with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    ProcessGroup = 1,
    Fds = 2,
    Signals = 3,
    ParentDeath = 4,
    Credentials = 5,
    Chdir = 6,
    Exec = 7,
    Cgroup = 8,
}

impl Stage {
    pub(crate) fn from_u32(v: u32) -> Option<Stage> {
        Some(match v {
            1 => Stage::ProcessGroup,
            2 => Stage::Fds,
            3 => Stage::Signals,
            4 => Stage::ParentDeath,
            5 => Stage::Credentials,
            6 => Stage::Chdir,
            7 => Stage::Exec,
            8 => Stage::Cgroup,
            _ => return None,
        })
    }
}

/// How the child joins a process group or session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupAction {
    /// Stay in the parent's process group.
    Inherit,
    /// `setpgid(0, 0)`: lead a new process group.
    NewGroup,
    /// `setsid()`: lead a new session (and group).
    NewSession,
}

/// One `dup2(src, dst)` of the fd plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FdAction {
    pub src: i32,
    pub dst: i32,
}

/// Everything the child does, prepared by the parent.
///
/// All pointers point into memory owned by the parent's spawn frame, which
/// stays alive and unmodified while the child runs (the parent is suspended
/// by `CLONE_VFORK`).
pub(crate) struct ChildPlan<'a> {
    /// `cgroup.procs` of the child's cgroup, to join by writing `0` (the
    /// legacy clone path, which has no `CLONE_INTO_CGROUP`), or -1.
    pub cgroup_procs_fd: i32,
    /// Nonzero: the child was cloned with `CLONE_FILES` (it shares the
    /// parent's fd table) and must take a private copy of the fds below
    /// this number before touching any fd (`close_range(n, ~0,
    /// CLOSE_RANGE_UNSHARE)`). Every fd the plan uses is below it.
    pub unshare_fds_below: i32,
    /// NUL-terminated paths to try with `execve`, in order (execvp rules).
    pub candidates: &'a [*const c_char],
    /// NULL-terminated argv.
    pub argv: *const *const c_char,
    /// NULL-terminated envp.
    pub envp: *const *const c_char,
    pub group: GroupAction,
    /// `dup2(src, dst)` actions, in order.
    pub fd_actions: &'a [FdAction],
    /// Some source fd is also a target: first move every source above
    /// `shuffle_min` (into `shuffle_scratch`), then dup2 from there.
    pub shuffle_min: Option<i32>,
    /// One slot per fd action, written by the child when shuffling.
    pub shuffle_scratch: *mut i32,
    /// After the actions, `dup2(1, 2)` (stderr into stdout).
    pub stderr_to_stdout: bool,
    /// Mark every fd >= 3 close-on-exec with `close_range`; else (kernel
    /// without it) `fcntl(F_SETFD)` each fd from 3 to this bound.
    pub use_close_range: bool,
    pub cloexec_fallback_max: i32,
    /// Legacy `clone` (no `CLONE_CLEAR_SIGHAND`): reset every caught signal.
    pub reset_all_handlers: bool,
    /// Signals (bit `n - 1` for signal `n`) set back to `SIG_DFL`.
    pub default_signals: u64,
    /// `PR_SET_PDEATHSIG` signal, 0 for none, and the pid the parent must be.
    pub pdeathsig: i32,
    pub expected_ppid: i32,
    /// Supplementary groups to set (`setgroups`), if any.
    pub groups: Option<&'a [u32]>,
    /// With a uid change and no explicit groups: drop supplementary groups.
    pub drop_groups: bool,
    pub gid: Option<u32>,
    pub uid: Option<u32>,
    /// NUL-terminated directory to `chdir` into, or null.
    pub cwd: *const c_char,
    pub block: *const SpawnBlock,
}

/// Entry point of the child. Entered on the child's own stack by the
/// trampoline (or, fork-style, after `clone3` returned 0); never returns.
///
/// # Safety
///
/// `plan` must point to a valid [`ChildPlan`] whose pointers are all valid
/// for reads (and `block`, `shuffle_scratch` for writes), and the calling
/// context must be a freshly cloned child as described in the module docs.
pub(crate) unsafe extern "C" fn child_main(plan: *const ChildPlan<'_>) -> ! {
    // SAFETY: the caller guarantees `plan` is valid for the child's lifetime.
    let plan = unsafe { &*plan };
    // SAFETY: plan validity is forwarded from our caller.
    let Err((stage, errno)) = unsafe { run(plan) };
    // SAFETY: `block` is valid for writes; atomics need no exclusive access.
    let block = unsafe { &*plan.block };
    block.stage.store(stage as u32, Ordering::Relaxed);
    block.errno.store(errno, Ordering::Release);
    loop {
        // SAFETY: exit_group takes an int and never returns.
        unsafe { sc!(libc::SYS_exit_group, 127) };
    }
}

/// `Err((stage, errno))` from a raw syscall result.
#[inline(always)]
fn check(r: isize, stage: Stage) -> Result<isize, (Stage, i32)> {
    if r < 0 {
        Err((stage, (r as i32).wrapping_neg()))
    } else {
        Ok(r)
    }
}

enum Never {}

/// The child's steps; returns only on failure.
///
/// # Safety
///
/// As for [`child_main`].
// One block of raw syscalls whose arguments share a single justification;
// splitting it per call would only repeat that sentence thirty times.
#[allow(clippy::multiple_unsafe_ops_per_block)]
unsafe fn run(p: &ChildPlan<'_>) -> Result<Never, (Stage, i32)> {
    // SAFETY: every syscall below takes integers or pointers into the plan
    // (argv, envp, candidates, groups, cwd, scratch slots), which the parent
    // keeps valid and unchanged while it is suspended by CLONE_VFORK.
    unsafe {
        // 0. Join the cgroup before anything else (legacy clone path only;
        //    clone3 placed us there with CLONE_INTO_CGROUP).
        if p.cgroup_procs_fd >= 0 {
            check(
                sc!(libc::SYS_write, p.cgroup_procs_fd, b"0".as_ptr(), 1),
                Stage::Cgroup,
            )?;
        }

        // 1. Process group or session, first: a signal to the new group must
        //    reach the child even before it execs.
        match p.group {
            GroupAction::Inherit => {}
            GroupAction::NewGroup => {
                check(sc!(libc::SYS_setpgid, 0, 0), Stage::ProcessGroup)?;
            }
            GroupAction::NewSession => {
                check(sc!(libc::SYS_setsid), Stage::ProcessGroup)?;
            }
        }

        // 2. With CLONE_FILES the fd table is still the parent's: take a
        //    private copy of its bottom (all the plan uses), or failing that
        //    of all of it, before any fd changes. Nothing above the bound is
        //    copied, so a parent with thousands of fds does not pay for them.
        let mut only_stdio = false;
        if p.unshare_fds_below > 0 {
            let r = sc!(
                libc::SYS_close_range,
                p.unshare_fds_below,
                u32::MAX,
                libc::CLOSE_RANGE_UNSHARE
            );
            if r < 0 {
                check(sc!(libc::SYS_unshare, libc::CLONE_FILES), Stage::Fds)?;
            } else {
                // The copy holds fds below the bound only.
                only_stdio = p.unshare_fds_below <= 3;
            }
        }

        //    Every inherited fd >= 3 becomes close-on-exec (nothing to do if
        //    the private copy has none); then the fd plan (dup2 clears
        //    close-on-exec on its target, so mapped fds survive).
        if only_stdio {
            // Nothing at 3 or above was copied.
        } else if p.use_close_range {
            check(
                sc!(
                    libc::SYS_close_range,
                    3,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC
                ),
                Stage::Fds,
            )?;
        } else {
            let mut fd = 3;
            while fd <= p.cloexec_fallback_max {
                // EBADF for closed numbers is expected and ignored.
                sc!(libc::SYS_fcntl, fd, libc::F_SETFD, libc::FD_CLOEXEC);
                fd += 1;
            }
        }
        if let Some(min) = p.shuffle_min {
            let mut slot = p.shuffle_scratch;
            for a in p.fd_actions {
                let high = check(
                    sc!(libc::SYS_fcntl, a.src, libc::F_DUPFD_CLOEXEC, min),
                    Stage::Fds,
                )?;
                *slot = high as i32;
                slot = slot.add(1);
            }
        }
        let mut slot = p.shuffle_scratch as *const i32;
        for a in p.fd_actions {
            let src = if p.shuffle_min.is_some() {
                let s = *slot;
                slot = slot.add(1);
                s
            } else {
                a.src
            };
            if src == a.dst {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                check(sc!(libc::SYS_fcntl, src, libc::F_SETFD, 0), Stage::Fds)?;
            } else {
                check(sc!(libc::SYS_dup2, src, a.dst), Stage::Fds)?;
            }
        }
        if p.stderr_to_stdout {
            check(sc!(libc::SYS_dup2, 1, 2), Stage::Fds)?;
        }

        // 3. Signal dispositions and mask. Handlers were cleared by
        //    CLONE_CLEAR_SIGHAND, except on the legacy clone path.
        let dfl = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        let mut sig: u32 = 1;
        while sig <= 64 {
            let bit = 1u64 << (sig - 1);
            if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
                sig += 1;
                continue;
            }
            if p.default_signals & bit != 0 {
                check(
                    sc!(
                        libc::SYS_rt_sigaction,
                        sig,
                        &dfl as *const KernelSigaction,
                        0,
                        KERNEL_SIGSET_SIZE
                    ),
                    Stage::Signals,
                )?;
            } else if p.reset_all_handlers {
                let mut old = KernelSigaction {
                    handler: 0,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                let r = sc!(
                    libc::SYS_rt_sigaction,
                    sig,
                    0,
                    &mut old as *mut KernelSigaction,
                    KERNEL_SIGSET_SIZE
                );
                if r == 0 && old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN {
                    check(
                        sc!(
                            libc::SYS_rt_sigaction,
                            sig,
                            &dfl as *const KernelSigaction,
                            0,
                            KERNEL_SIGSET_SIZE
                        ),
                        Stage::Signals,
                    )?;
                }
            }
            sig += 1;
        }
        let empty: u64 = 0;
        check(
            sc!(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &empty as *const u64,
                0,
                KERNEL_SIGSET_SIZE
            ),
            Stage::Signals,
        )?;

        // 4. Credentials: groups first, uid last (after it we may lack the
        //    right to change the others).
        if let Some(groups) = p.groups {
            check(
                sc!(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                Stage::Credentials,
            )?;
        } else if p.drop_groups {
            // Best effort, as std does: an unprivileged caller cannot.
            let r = sc!(libc::SYS_setgroups, 0, 0);
            if r < 0 && r != -(libc::EPERM as isize) {
                check(r, Stage::Credentials)?;
            }
        }
        if let Some(gid) = p.gid {
            check(sc!(libc::SYS_setgid, gid), Stage::Credentials)?;
        }
        if let Some(uid) = p.uid {
            check(sc!(libc::SYS_setuid, uid), Stage::Credentials)?;
        }

        // 5. Parent-death signal, after the credentials (changing them clears
        //    it), then make sure the parent did not die before it was armed.
        if p.pdeathsig != 0 {
            check(
                sc!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, p.pdeathsig),
                Stage::ParentDeath,
            )?;
            if sc!(libc::SYS_getppid) as i32 != p.expected_ppid {
                return Err((Stage::ParentDeath, libc::ESRCH));
            }
        }

        // 6. Working directory.
        if !p.cwd.is_null() {
            check(sc!(libc::SYS_chdir, p.cwd), Stage::Chdir)?;
        }

        // 7. execve over the candidates with execvp's rules: a missing or
        //    unusable entry tries the next; EACCES is remembered and wins
        //    over a later ENOENT; any other error stops the search.
        let mut saw_eacces = false;
        let mut last = libc::ENOENT;
        for &path in p.candidates {
            let r = sc!(libc::SYS_execve, path, p.argv, p.envp);
            let e = (r as i32).wrapping_neg();
            match e {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {
                    last = e
                }
                _ => return Err((Stage::Exec, e)),
            }
        }
        Err((Stage::Exec, if saw_eacces { libc::EACCES } else { last }))
    }
}
