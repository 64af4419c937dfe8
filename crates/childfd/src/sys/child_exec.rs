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
//! - **read the live `environ`**: another parent thread may be reallocating
//!   it (`setenv`); `envp` is the parent's snapshot, taken under std's
//!   environment lock;
//! - **change any fd before unsharing the fd table**: with `CLONE_FILES`
//!   (see [`ChildPlan::unshare_fds_below`]) a `dup2` or close before that
//!   step would change the parent's own fds;
//! - **use an fd the parent did not hand over in this spawn**: every fd in
//!   the plan was created or duplicated by the parent for this spawn (or is
//!   the caller's own `Stdio`/mapped fd); no fd number is remembered across
//!   spawns, since the host may close and reuse any number;
//! - **be stopped or killed by a signal it was not sent**: a signal to the
//!   caller's process group (a terminal's SIGTSTP or SIGINT, a shell's
//!   SIGHUP) reaches the child too while it is a member. Stopped, a
//!   `CLONE_VFORK` child holds the spawning thread for ever; killed before
//!   it could report a failed `execve`, it makes a missing program look
//!   spawned. Nobody can have meant such a signal for this child: its
//!   owner does not know its pid yet. So [`set_signals`], while every
//!   signal is still blocked (glibc's internal 32 and 33 too: see
//!   [`super::signals`]), discards the pending ones (setting a
//!   disposition to `SIG_IGN` drops pending instances). When the child
//!   stays reachable by group signals until `execve` (`Inherit`, or
//!   joining an existing group: [`ChildPlan::catch_signals`]) it gives
//!   every catchable signal, the parent-death one included, a handler
//!   ([`on_signal`]) and keeps the mask full until [`release_signals`],
//!   just before `execve`; `execve` turns each handler back into
//!   `SIG_DFL` atomically. A signal that reached such a child before
//!   `execve` is recorded in the [`SpawnBlock`] (caught by the handler,
//!   or discarded pending: in `Inherit` mode from the clone on, when
//!   joining a group from [`release_signals`] on), and the parent sends
//!   it to the exec'd child by pidfd before it unblocks its own signals:
//!   the program gets it as if it had arrived just after `execve` (one
//!   instance per signal number). The parent-death signal, caught, ends
//!   the child only if its parent is really gone. In the other modes the
//!   child has left the caller's group in [`set_group`], before that
//!   step, and nothing new arrives. The only signals left deadly are
//!   `SIGKILL` and `SIGSTOP` (not catchable), and in the other modes the
//!   caller's own parent-death signal when the parent dies. SIGCHLD is
//!   the one signal the spawning thread may leave unblocked (where the
//!   clone reset every handler: see [`super::signals::BlockAll::new`]):
//!   until [`set_signals`] it is `SIG_DFL` or `SIG_IGN` here, so one that
//!   arrives is dropped (not forwarded) and harms nothing; from then on
//!   [`on_signal`] records it like the rest;
//! - **run a signal handler other than [`on_signal`]**, which makes only
//!   raw system calls (`getppid`, `rt_sigaction`, `exit_group`, and to die
//!   of a fault `tgkill`) and writes only the [`SpawnBlock`], found from
//!   its own stack address (its signal frame goes on the child's own
//!   stack, never an alternate one: a `CLONE_VFORK` child shares the
//!   spawning thread's `sigaltstack`).
//!
//! Everything it needs (argv, envp, PATH candidates, the fd plan) was built
//! by the parent before the clone and is only read here.
//!
//! # The one exception: `pre_exec` closures
//!
//! A caller's `Command::pre_exec` closures are arbitrary code. They run
//! last, just before `execve`, and only on the fork-style path (no
//! `CLONE_VM`, and no `CLONE_FILES`): the child then has its own copy of
//! the memory and fd table, so what the closures do cannot reach the
//! parent. Their own rules (async-signal-safe code only) are the caller's
//! contract, stated on `pre_exec`; a panic is caught here and reported. The steps run in
//! the order of [`run`], each a function below.
//!
//! The closures run after [`set_signals`] and [`release_signals`], so with
//! [`ChildPlan::catch_signals`] they see [`on_signal`] as the handler of
//! every catchable signal the parent did not ignore (its `SIG_IGN` is
//! kept), and otherwise `SIG_DFL`; they must not move the stack a signal
//! may interrupt (the handler finds its spawn block from it). A disposition a closure sets itself
//! wins: `SIG_IGN` survives `execve`, a handler becomes `SIG_DFL`.
//!
//! `Command::exec` runs the same steps in the calling process, never with
//! `catch_signals`: a signal to its group is meant for it, its own
//! handlers stay in force until `execve`, and there is no parent thread
//! to hold.
//!
//! # The other child: the `pidfd_open` probe
//!
//! [`probe_pidfd_open`] is the body of a fork-style copy (its memory is
//! its own) that only tries `pidfd_open` under the calling thread's seccomp
//! filters and exits; it keeps to the same rules (raw system calls, no
//! allocation, no return).

use core::ffi::c_char;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::raw::{KERNEL_SIGSET_SIZE, KernelSigaction, sc, set_signal_mask};

/// Where the child reports a failure to the parent. It lives in memory the
/// parent can read after `clone` returns (shared by `CLONE_VM`, or a
/// `MAP_SHARED` page on the fork-style path).
#[repr(C)]
pub(crate) struct SpawnBlock {
    /// `errno` of the failed step, 0 if the child reached `execve` successfully.
    pub errno: AtomicI32,
    /// [`Stage`] of the failed step, as `u32`; while the child runs, the
    /// step it has reached ([`Stage::Exec`] once it calls `execve`).
    pub stage: AtomicU32,
    /// With [`ChildPlan::catch_signals`]: the signals (bit `n - 1` for
    /// signal `n`) that reached the child before `execve`, caught by
    /// [`on_signal`] or discarded pending; the parent sends each to the
    /// exec'd child (see [`set_signals`]).
    pub caught: AtomicU64,
    /// With [`ChildPlan::catch_signals`] and a parent-death signal: the pid
    /// the child's parent must be, for [`on_signal`]; else 0.
    pub spawner: AtomicI32,
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
    Attributes = 9,
    PreExec = 10,
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
            9 => Stage::Attributes,
            10 => Stage::PreExec,
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
    /// `setpgid(0, pgid)`: join an existing process group.
    Join(i32),
}

/// Process attributes the child sets for itself (see [`set_attributes`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    /// `prlimit64(0, resource, {soft, hard}, NULL)` for each.
    pub rlimits: &'a [(u32, [u64; 2])],
    /// `umask(mask)`, unless negative.
    pub umask: i32,
    /// `setpriority(PRIO_PROCESS, 0, nice)`.
    pub nice: Option<i32>,
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    pub no_new_privs: bool,
    /// `ioctl(0, TIOCSCTTY, 0)`: stdin becomes the controlling terminal of
    /// the session the child leads.
    pub controlling_tty: bool,
}

/// The caller's `pre_exec` closures (see the module docs).
pub(crate) type PreExecHooks = Vec<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>>;

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
    /// The child stays in a process group others may signal until
    /// `execve` (`Inherit`, or joining an existing group): every catchable
    /// signal gets [`on_signal`] until `execve`, and what arrives is
    /// recorded for the parent to forward (see the module docs).
    pub catch_signals: bool,
    /// Signals (bit `n - 1` for signal `n`) set back to `SIG_DFL`.
    pub default_signals: u64,
    /// Whether the child keeps the spawning thread's signal mask
    /// ([`signal_mask`](Self::signal_mask)) rather than an empty one.
    pub inherit_signal_mask: bool,
    /// The mask the child execs with (bit `n - 1` for signal `n`); filled
    /// in by [`super::clone::spawn`].
    pub signal_mask: u64,
    /// The mask to hand on instead of the spawning thread's: the mask of
    /// the thread the spawn is made for (childfd-tokio's spawner).
    pub caller_signal_mask: Option<u64>,
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
    /// Process attributes to set.
    pub attributes: Attributes<'a>,
    /// The caller's `pre_exec` closures, or null; non-null only on the
    /// fork-style path (the child's memory is its own copy).
    pub pre_exec: *mut PreExecHooks,
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
    #[cfg(not(target_arch = "x86_64"))]
    FORK_CHILD_BLOCK.store(plan.block as *mut SpawnBlock, Ordering::Relaxed);
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

/// The child's steps, in order; returns only on failure.
///
/// # Safety
///
/// As for [`child_main`].
// The steps share one justification; one block per step would repeat it.
#[allow(clippy::multiple_unsafe_ops_per_block)]
unsafe fn run(p: &ChildPlan<'_>) -> Result<Never, (Stage, i32)> {
    // SAFETY: forwarded from our caller; each step only reads the plan and
    // makes raw syscalls on the child's own state.
    unsafe {
        reach(p, Stage::Cgroup);
        join_cgroup(p)?;
        reach(p, Stage::ProcessGroup);
        set_group(p)?;
        reach(p, Stage::Fds);
        setup_fds(p)?;
        reach(p, Stage::Signals);
        set_signals(p)?;
        reach(p, Stage::Attributes);
        set_attributes(p)?;
        reach(p, Stage::Credentials);
        set_credentials(p)?;
        reach(p, Stage::ParentDeath);
        arm_parent_death(p)?;
        reach(p, Stage::Chdir);
        change_dir(p)?;
        reach(p, Stage::Signals);
        release_signals(p)?;
        reach(p, Stage::PreExec);
        run_pre_exec(p)?;
        exec(p)
    }
}

/// Records in the [`SpawnBlock`] that the child has reached `stage`: a
/// child that dies of a signal during a step (a `pre_exec` closure that
/// crashes or is killed, a SIGKILL) leaves no errno, and the parent names
/// the step it died in. One relaxed store, no system call.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn reach(p: &ChildPlan<'_>, stage: Stage) {
    if !p.block.is_null() {
        // SAFETY: `block` is valid for writes; atomics need no exclusive access.
        unsafe { &*p.block }
            .stage
            .store(stage as u32, Ordering::Relaxed);
    }
}

/// Joins the cgroup before anything else (legacy clone path only; clone3
/// placed us there with `CLONE_INTO_CGROUP`).
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn join_cgroup(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if p.cgroup_procs_fd >= 0 {
        // SAFETY: writes one byte from a static buffer to an fd of the plan.
        let r = unsafe { sc!(libc::SYS_write, p.cgroup_procs_fd, b"0".as_ptr(), 1) };
        check(r, Stage::Cgroup)?;
    }
    Ok(())
}

/// Process group or session, early: a signal to the new group must reach
/// the child even before it execs, and one to the caller's group must stop
/// reaching it.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn set_group(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    let r = match p.group {
        GroupAction::Inherit => return Ok(()),
        // SAFETY: integer arguments; acts on the child itself.
        GroupAction::NewGroup => unsafe { sc!(libc::SYS_setpgid, 0, 0) },
        // SAFETY: no arguments; acts on the child itself.
        GroupAction::NewSession => unsafe { sc!(libc::SYS_setsid) },
        // SAFETY: integer arguments; acts on the child itself.
        GroupAction::Join(pgid) => unsafe { sc!(libc::SYS_setpgid, 0, pgid) },
    };
    check(r, Stage::ProcessGroup).map(drop)
}

/// With `CLONE_FILES` the fd table is still the parent's: takes a private
/// copy of its bottom (all the plan uses), or failing that of all of it,
/// before any fd changes. Nothing above the bound is copied, so a parent
/// with thousands of fds does not pay for them. Then every inherited fd
/// from 3 up becomes close-on-exec (nothing to do if the private copy has
/// none), and the fd plan runs (dup2 clears close-on-exec on its target, so
/// mapped fds survive).
///
/// # Safety
///
/// As for [`child_main`].
// Raw syscalls on integers and the plan's scratch slots, which share one
// justification.
#[allow(clippy::multiple_unsafe_ops_per_block)]
unsafe fn setup_fds(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    // SAFETY: fd syscalls on numbers of the plan; `shuffle_scratch` has one
    // writable slot per fd action.
    unsafe {
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
        if only_stdio {
            // Nothing at 3 or above was copied.
        } else if p.use_close_range {
            let r = sc!(
                libc::SYS_close_range,
                3,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC
            );
            check(r, Stage::Fds)?;
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
    }
    Ok(())
}

/// `rt_sigaction(sig, act, old)`.
///
/// # Safety
///
/// `act` is null or valid for reads, `old` null or valid for writes.
unsafe fn sigaction(sig: u32, act: *const KernelSigaction, old: *mut KernelSigaction) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { sc!(libc::SYS_rt_sigaction, sig, act, old, KERNEL_SIGSET_SIZE) }
}

const fn action(handler: usize) -> KernelSigaction {
    KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    }
}

/// Signal dispositions and mask, while every signal is still blocked:
///
/// 1. every pending signal is discarded (`SIG_IGN`, then its disposition
///    back): none was sent to this child by its owner, who cannot know its
///    pid yet (see the module docs). In `Inherit` mode the child has been
///    a member of the caller's group since the clone, so those signals
///    were sent to its group: they are recorded in the [`SpawnBlock`] and
///    the parent sends them to the exec'd child;
/// 2. with [`ChildPlan::catch_signals`], every catchable signal (the
///    parent-death one too) gets [`on_signal`] (kept at `SIG_IGN` if the
///    parent ignores it and it is not listed for `SIG_DFL`); `execve`
///    makes each of those handlers `SIG_DFL`. The mask stays full until
///    [`release_signals`], just before `execve`;
/// 3. otherwise the listed signals go back to `SIG_DFL`, and on the legacy
///    clone path (no `CLONE_CLEAR_SIGHAND`) every caught signal too, and
///    the mask becomes the plan's (empty by default).
///
/// Signals 32 and 33 (glibc's internal ones) are handled like any other:
/// the spawning thread blocked them too (see [`super::signals`]).
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn set_signals(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    let record = p.catch_signals && p.group == GroupAction::Inherit;
    // SAFETY: forwarded from our caller.
    unsafe { discard_all_pending(p, record) }?;
    let catch = catching_action();
    for n in 1..=64u32 {
        let bit = 1u64 << (n - 1);
        if n == libc::SIGKILL as u32 || n == libc::SIGSTOP as u32 {
            continue;
        }
        let to_default = p.default_signals & bit != 0;
        if p.catch_signals {
            let mut old = action(0);
            // SAFETY: `catch` is readable and `old` writable.
            check(unsafe { sigaction(n, &catch, &mut old) }, Stage::Signals)?;
            if old.handler == libc::SIG_IGN && !to_default {
                // SAFETY: a readable action.
                let r = unsafe { sigaction(n, &action(libc::SIG_IGN), core::ptr::null_mut()) };
                check(r, Stage::Signals)?;
            }
            continue;
        }
        let reset = to_default || (p.reset_all_handlers && caught(n));
        if reset {
            // SAFETY: a readable action.
            let r = unsafe { sigaction(n, &action(libc::SIG_DFL), core::ptr::null_mut()) };
            check(r, Stage::Signals)?;
        }
    }
    if p.catch_signals {
        return Ok(());
    }
    set_mask(p)
}

/// The mask becomes the plan's (the shared raw call of [`super::raw`]).
fn set_mask(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    set_signal_mask(p.signal_mask)
        .map(drop)
        .map_err(|r| (Stage::Signals, (r as i32).wrapping_neg()))
}

/// Discards every pending signal; with `record`, first adds them to the
/// [`SpawnBlock`]'s `caught` set.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn discard_all_pending(p: &ChildPlan<'_>, record: bool) -> Result<(), (Stage, i32)> {
    let mut pending: u64 = 0;
    // SAFETY: writes the kernel's 8-byte pending set into `pending`.
    let r = unsafe {
        sc!(
            libc::SYS_rt_sigpending,
            &mut pending as *mut u64,
            KERNEL_SIGSET_SIZE
        )
    };
    check(r, Stage::Signals)?;
    if pending == 0 {
        return Ok(());
    }
    if record {
        // SAFETY: `block` is valid for writes; atomics need no exclusive access.
        unsafe { &*p.block }
            .caught
            .fetch_or(pending, Ordering::Relaxed);
    }
    for n in 1..=64u32 {
        if pending & (1u64 << (n - 1)) != 0
            && n != libc::SIGKILL as u32
            && n != libc::SIGSTOP as u32
        {
            // SAFETY: signal number in range; no pointers kept.
            unsafe { discard_pending(n) }?;
        }
    }
    Ok(())
}

/// With [`ChildPlan::catch_signals`], just before `execve` (and the
/// caller's `pre_exec` closures): every signal that arrived during the
/// steps is still pending (the mask was full); each is recorded for the
/// parent to send to the exec'd child, and discarded, so that the child
/// does not spend its time in [`on_signal`] for a queue of real-time
/// signals. Then, if the parent died meanwhile (its death signal was one
/// of those), the child stops; else the mask becomes the plan's. From
/// then until `execve`, [`on_signal`] records what arrives.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn release_signals(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if !p.catch_signals {
        return Ok(());
    }
    // SAFETY: forwarded from our caller.
    unsafe { discard_all_pending(p, true) }?;
    // SAFETY: no arguments.
    if p.pdeathsig != 0 && unsafe { sc!(libc::SYS_getppid) } as i32 != p.expected_ppid {
        return Err((Stage::ParentDeath, libc::ESRCH));
    }
    set_mask(p)
}

/// Drops the pending instances of signal `n`: `SIG_IGN`, then the
/// disposition back.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn discard_pending(n: u32) -> Result<(), (Stage, i32)> {
    let mut old = action(0);
    // SAFETY: a readable action and a writable `old`.
    let r = unsafe { sigaction(n, &action(libc::SIG_IGN), &mut old) };
    check(r, Stage::Signals)?;
    // SAFETY: `old` was filled in by the kernel.
    let r = unsafe { sigaction(n, &old, core::ptr::null_mut()) };
    check(r, Stage::Signals).map(drop)
}

/// Whether signal `n` has a handler (the legacy clone inherits the
/// parent's).
fn caught(n: u32) -> bool {
    let mut old = action(0);
    // SAFETY: `old` is writable.
    let r = unsafe { sigaction(n, core::ptr::null(), &mut old) };
    r == 0 && old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN
}

/// `SA_RESTORER`: the kernel returns from a handler through
/// `sa_restorer` (x86_64 has no other way back).
#[cfg(target_arch = "x86_64")]
const SA_RESTORER: u64 = 0x0400_0000;

/// [`on_signal`] with every signal blocked while it runs (no nesting, so
/// one signal frame at most on the child's stack), `SA_RESTART` (an
/// interrupted call is restarted where the kernel can), and on x86_64 the
/// `rt_sigreturn` trampoline [`restore_rt`]. Elsewhere (aarch64, riscv64)
/// the kernel returns through the vdso's trampoline.
fn catching_action() -> KernelSigaction {
    let handler: unsafe extern "C" fn(i32, *mut libc::siginfo_t, *mut core::ffi::c_void) =
        on_signal;
    let flags = (libc::SA_SIGINFO | libc::SA_RESTART) as u64;
    #[cfg(target_arch = "x86_64")]
    let (flags, restorer) = (flags | SA_RESTORER, restore_rt as *const () as usize);
    #[cfg(not(target_arch = "x86_64"))]
    let restorer = 0;
    KernelSigaction {
        handler: handler as usize,
        flags,
        restorer,
        mask: !0,
    }
}

/// Signals the kernel raises for a fault of the instruction just run.
const FAULTS: [i32; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The handler of [`ChildPlan::catch_signals`]: a signal from outside
/// is recorded in the [`SpawnBlock`] (the parent sends it to the exec'd
/// child), unless the child's parent is gone while a parent-death signal
/// is armed: then the child exits (its parent cannot be told anything).
/// A fault of the child itself (`si_code > 0` on a fault
/// signal: the kernel raised it; a `kill` has `si_code <= 0`) must not
/// be swallowed, or the faulting instruction would run again for ever:
/// the signal goes back to `SIG_DFL` and is raised again, so the child
/// dies of it as it would have without this handler.
///
/// # Safety
///
/// Called by the kernel only, with `info` pointing at the signal's
/// `siginfo_t`.
unsafe extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, _: *mut core::ffi::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO).
    let code = unsafe { (*info).si_code };
    if code > 0 && FAULTS.contains(&sig) {
        // SAFETY: raw syscalls on this thread; the re-raised signal stays
        // pending (all are blocked here) until the handler returns.
        #[allow(clippy::multiple_unsafe_ops_per_block)]
        unsafe {
            sigaction(sig as u32, &action(libc::SIG_DFL), core::ptr::null_mut());
            sc!(
                libc::SYS_tgkill,
                sc!(libc::SYS_getpid),
                sc!(libc::SYS_gettid),
                sig
            );
        }
        return;
    }
    // SAFETY: the handler runs on the child's stack (see `handler_block`),
    // whose spawn block is valid for the child's lifetime.
    let block = unsafe { &*handler_block() };
    let spawner = block.spawner.load(Ordering::Relaxed);
    // SAFETY: no arguments.
    if spawner != 0 && unsafe { sc!(libc::SYS_getppid) } as i32 != spawner {
        loop {
            // SAFETY: exit_group takes an int and never returns.
            unsafe { sc!(libc::SYS_exit_group, 127) };
        }
    }
    if (1..=64).contains(&sig) {
        block.caught.fetch_or(1u64 << (sig - 1), Ordering::Relaxed);
    }
    if sig >= 32 {
        // A real-time signal queues: a flood of one would keep the child
        // in this handler, one instance per call, and never let it reach
        // `execve`. Recorded once is enough: the queued ones are dropped.
        // SAFETY: signal number in range; no pointers kept.
        let _ = unsafe { discard_pending(sig as u32) };
    }
}

/// The [`SpawnBlock`] of the child running [`on_signal`]. On x86_64 every
/// method runs the child on its arena's stack, whose size is a power of
/// two and whose start is aligned to it, with the block just above it
/// (see [`super::clone`]): the handler's own frame is on that stack (no
/// `SA_ONSTACK`), so rounding its address up gives the block. This holds
/// for concurrent spawns from several threads of one process, which share
/// memory. Elsewhere the child is fork-style, on a private copy of the
/// parent's stack and memory: [`child_main`] stores the block's address in
/// its own copy of [`FORK_CHILD_BLOCK`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn handler_block() -> *const SpawnBlock {
    let here = 0u8;
    let sp = core::ptr::addr_of!(here) as usize;
    ((sp & !(super::clone::STACK_SIZE - 1)) + super::clone::STACK_SIZE) as *const SpawnBlock
}

#[cfg(not(target_arch = "x86_64"))]
fn handler_block() -> *const SpawnBlock {
    FORK_CHILD_BLOCK.load(Ordering::Relaxed)
}

/// See [`handler_block`]: written by the fork-style child in its own copy.
#[cfg(not(target_arch = "x86_64"))]
static FORK_CHILD_BLOCK: core::sync::atomic::AtomicPtr<SpawnBlock> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    /// `rt_sigreturn(2)`, where [`on_signal`] returns to (defined below).
    /// Never called from Rust: only its address is used.
    fn childfd_restore_rt();
}

#[cfg(target_arch = "x86_64")]
use childfd_restore_rt as restore_rt;

// The `sa_restorer` of [`catching_action`]: the handler returns here with
// the stack pointer on the kernel's signal frame, which `rt_sigreturn`
// (15) restores. In assembly because no compiled prologue may move the
// stack pointer first. Weak: a second copy of this crate in one program
// brings the same bytes.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.childfd_restore_rt,\"ax\",@progbits",
    ".weak childfd_restore_rt",
    ".hidden childfd_restore_rt",
    ".type childfd_restore_rt,@function",
    ".p2align 4",
    "childfd_restore_rt:",
    "mov eax, 15",
    "syscall",
    "ud2",
    ".size childfd_restore_rt, . - childfd_restore_rt",
    ".popsection",
);

/// Process attributes, after the fds (the controlling terminal is the new
/// stdin) and before the credentials (raising a limit or the priority may
/// need privileges the uid change drops).
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn set_attributes(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    let a = &p.attributes;
    if a.controlling_tty {
        // SAFETY: integer arguments on the child's own fd 0.
        let r = unsafe { sc!(libc::SYS_ioctl, 0, libc::TIOCSCTTY, 0) };
        check(r, Stage::Attributes)?;
    }
    for (resource, limit) in a.rlimits {
        // SAFETY: `limit` is the plan's {soft, hard} pair, the layout of
        // `struct rlimit64`; no old value is asked for.
        let r = unsafe { sc!(libc::SYS_prlimit64, 0, *resource, limit.as_ptr(), 0) };
        check(r, Stage::Attributes)?;
    }
    if a.umask >= 0 {
        // SAFETY: integer argument; umask cannot fail.
        unsafe { sc!(libc::SYS_umask, a.umask) };
    }
    if let Some(nice) = a.nice {
        // SAFETY: integer arguments on the child itself.
        let r = unsafe { sc!(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, nice) };
        check(r, Stage::Attributes)?;
    }
    if a.no_new_privs {
        // SAFETY: integer arguments.
        let r = unsafe { sc!(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0) };
        check(r, Stage::Attributes)?;
    }
    Ok(())
}

/// The caller's `pre_exec` closures, in order (see the module docs): an
/// error stops with its OS error (`EINVAL` if it has none), a panic with
/// `ENOTRECOVERABLE`.
///
/// # Safety
///
/// As for [`child_main`], and `pre_exec` is null or points to the hooks in
/// this child's own copy of the parent's memory.
unsafe fn run_pre_exec(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if p.pre_exec.is_null() {
        return Ok(());
    }
    // SAFETY: fork-style child: the hooks are our private copy (see above).
    let hooks = unsafe { &mut *p.pre_exec };
    for hook in hooks.iter_mut() {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *hook)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((Stage::PreExec, e.raw_os_error().unwrap_or(libc::EINVAL))),
            Err(_) => return Err((Stage::PreExec, libc::ENOTRECOVERABLE)),
        }
    }
    Ok(())
}

/// `Command::exec`: the child's steps run in the calling process, which
/// `execve` then replaces. Blocks every signal first (as a spawn does
/// around the clone), so the steps run as they do in a child; restores
/// the mask if they fail. Returns only on failure, with the stage and the
/// errno.
///
/// The plan must come from the spawn preparation (`command::plan`), which
/// keeps every pointer valid for as long as the plan lives.
pub(crate) fn exec_here(plan: &mut ChildPlan<'_>) -> (Stage, i32) {
    let old = match set_signal_mask(!0) {
        Ok(old) => old,
        Err(r) => return (Stage::Signals, (r as i32).wrapping_neg()),
    };
    if plan.inherit_signal_mask {
        plan.signal_mask = old;
    }
    // SAFETY: the plan's pointers are valid (see above); the steps act on
    // this process, which is what `exec` asks for.
    let Err(failed) = unsafe { run(plan) };
    let _ = set_signal_mask(old);
    failed
}

/// Credentials: groups first, uid last (after it we may lack the right to
/// change the others).
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn set_credentials(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if let Some(groups) = p.groups {
        // SAFETY: the plan's group list is valid for reads.
        let r = unsafe { sc!(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
        check(r, Stage::Credentials)?;
    } else if p.drop_groups {
        // Best effort, as std does: an unprivileged caller cannot.
        // SAFETY: an empty group list.
        let r = unsafe { sc!(libc::SYS_setgroups, 0, 0) };
        if r < 0 && r != -(libc::EPERM as isize) {
            check(r, Stage::Credentials)?;
        }
    }
    if let Some(gid) = p.gid {
        // SAFETY: integer argument.
        check(unsafe { sc!(libc::SYS_setgid, gid) }, Stage::Credentials)?;
    }
    if let Some(uid) = p.uid {
        // SAFETY: integer argument.
        check(unsafe { sc!(libc::SYS_setuid, uid) }, Stage::Credentials)?;
    }
    Ok(())
}

/// Parent-death signal, after the credentials (changing them clears it),
/// then makes sure the parent did not die before it was armed.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn arm_parent_death(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if p.pdeathsig != 0 {
        // SAFETY: integer arguments.
        let r = unsafe { sc!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, p.pdeathsig) };
        check(r, Stage::ParentDeath)?;
        // SAFETY: no arguments.
        if unsafe { sc!(libc::SYS_getppid) } as i32 != p.expected_ppid {
            return Err((Stage::ParentDeath, libc::ESRCH));
        }
    }
    Ok(())
}

/// Working directory.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn change_dir(p: &ChildPlan<'_>) -> Result<(), (Stage, i32)> {
    if !p.cwd.is_null() {
        // SAFETY: `cwd` is a NUL-terminated string of the plan.
        check(unsafe { sc!(libc::SYS_chdir, p.cwd) }, Stage::Chdir)?;
    }
    Ok(())
}

/// How often `execve` is retried on `ETXTBSY`, sleeping 1, 2, 4, ... ms in
/// between (127 ms in all): another thread's child may hold a script's
/// write fd for a moment after the thread that wrote it closed it (it was
/// cloned while the fd was open and keeps its copy until its own exec).
const TXTBSY_RETRIES: u32 = 7;

/// `execve` over the candidates with execvp's rules: a missing or unusable
/// entry tries the next; EACCES is remembered and wins over a later
/// ENOENT; ETXTBSY is retried a few times (see [`TXTBSY_RETRIES`]); any
/// other error stops the search.
///
/// # Safety
///
/// As for [`child_main`].
unsafe fn exec(p: &ChildPlan<'_>) -> Result<Never, (Stage, i32)> {
    // The mark that the child reached `execve`: a child that dies before
    // it (killed, or a `pre_exec` closure that crashed) leaves neither it
    // nor an errno, and the parent reports that with the step it died in.
    // SAFETY: forwarded from our caller.
    unsafe { reach(p, Stage::Exec) };
    let mut saw_eacces = false;
    let mut last = libc::ENOENT;
    for &path in p.candidates {
        let mut busy_retries = 0;
        let e = loop {
            // SAFETY: path, argv and envp are NUL-terminated strings and
            // NULL-terminated arrays of the plan.
            let r = unsafe { sc!(libc::SYS_execve, path, p.argv, p.envp) };
            let e = (r as i32).wrapping_neg();
            if e != libc::ETXTBSY || busy_retries == TXTBSY_RETRIES {
                break e;
            }
            let mut pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000 << busy_retries,
            };
            busy_retries += 1;
            // A signal caught by `on_signal` cuts a sleep short: sleep on.
            loop {
                let p: *mut libc::timespec = &mut pause;
                // SAFETY: reads `pause` and writes the time left into it.
                let r = unsafe { sc!(libc::SYS_nanosleep, p, p) };
                if r != -(libc::EINTR as isize) {
                    break;
                }
            }
        };
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

/// The child of [`super::pidfd::probe_open_in_a_copy`]: a fork-style copy
/// (no `CLONE_VM`: its memory is its own) of the probing thread, with that
/// thread's seccomp filters and every signal blocked. It calls
/// `pidfd_open(getpid(), 0)` under those filters and exits with 0 if the
/// call worked, else with its errno; a filter that kills (or traps: the
/// signal is blocked, so the kernel forces its default action) ends it by
/// a signal, which the parent sees. It makes itself non-dumpable and sets
/// `RLIMIT_CORE` to 0 first, so such a death leaves no core dump. Raw
/// system calls only, like [`child_main`], and it never returns.
pub(crate) fn probe_pidfd_open() -> ! {
    let zero = [0u64; 2];
    // SAFETY: integer arguments; affects only this copy.
    let _ = unsafe { sc!(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 0) };
    // SAFETY: reads the two-word `zero` limit; pid 0 is this copy.
    let _ = unsafe {
        sc!(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_CORE,
            zero.as_ptr(),
            core::ptr::null_mut::<u64>()
        )
    };
    // SAFETY: no arguments.
    let pid = unsafe { sc!(libc::SYS_getpid) };
    if super::pidfd::KILL_PROBE_COPIES.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: signals this copy only (a test's stand-in for the OOM
        // killer).
        let _ = unsafe { sc!(libc::SYS_kill, pid, libc::SIGKILL) };
    }
    // SAFETY: integer arguments; the fd it may return is this copy's and
    // goes with it.
    let r = unsafe { sc!(libc::SYS_pidfd_open, pid, 0) };
    let code = if r >= 0 { 0 } else { r.wrapping_neg() & 0xff };
    loop {
        // SAFETY: ends this copy only.
        unsafe { sc!(libc::SYS_exit_group, code) };
    }
}
