//! Creating the child: `clone3(CLONE_PIDFD | CLONE_VM | CLONE_VFORK |
//! CLONE_CLEAR_SIGHAND)` with `exit_signal = 0`, on a dedicated stack.
//!
//! The child runs [`child_main`] on its own stack (mapped here, with a
//! guard page) inside the parent's address space, until it calls `execve`
//! or exits; `CLONE_VFORK` keeps the spawning thread suspended until then,
//! so the parent reads the child's report from the [`SpawnBlock`] with no
//! pipe and no extra syscall. All signals are blocked in the spawning
//! thread around the clone, so no parent signal handler can run on the
//! child's side of the shared memory; all but SIGCHLD where the child
//! starts with its handlers reset (see [`super::signals::BlockAll::new`]).
//!
//! # Methods and fallbacks
//!
//! Probed once per process and cached ([`method`]):
//!
//! | method | when | cost |
//! |---|---|---|
//! | [`Method::Clone3Vm`] | x86_64, `clone3` available | the kernel limit |
//! | [`Method::CloneVm`] | x86_64, `clone3` refused (`ENOSYS`, or `EPERM` from a seccomp filter) | same; resets caught signal handlers by hand |
//! | [`Method::Clone3Fork`] | other architectures, or forced | copies the page tables, like `fork` |
//!
//! Where `close_range` exists (5.11+) every method adds `CLONE_FILES`: the
//! child starts on the parent's fd table and copies only its bottom (see
//! [`super::child_exec::ChildPlan::unshare_fds_below`]), instead of the
//! kernel copying, and `execve` then dropping, every fd of the parent. Not
//! on the legacy `clone` method, which is what runs where `clone3` is
//! refused (old kernels, seccomp profiles, valgrind, which also aborts on
//! `CLONE_FILES` with `CLONE_VFORK`); not when `CHILDFD_SPAWN_METHOD` forces
//! a method; not after a clone with it failed with `EINVAL` (an emulator);
//! and not for a spawn that names one of our fds by path
//! (`/proc/self/fd/N` as program or directory).
//!
//! A spawn that changes uid, gid or groups never shares memory with the
//! parent, whatever the method: the credential change would otherwise mark
//! the parent's memory descriptor non-dumpable.
//!
//! Where the legacy `clone` refuses `CLONE_PIDFD` as well (a seccomp
//! profile that filters on clone's flags, valgrind), the first refusal
//! (`EINVAL`, `EPERM` or `ENOSYS`) switches the process to cloning without
//! it and opening the pidfd with `pidfd_open(2)` as soon as `CLONE_VFORK`
//! lets the parent go on (see [`open_after_clone`]); spawning never fails
//! with the refusal's error while that works.
//!
//! After a `fork()` of the process, the copy gets arenas of its own (see
//! [`super::fork`]); the probed facts above hold for it unchanged.
//!
//! On kernels 5.3 and 5.4, `clone3` exists but lacks `CLONE_CLEAR_SIGHAND`;
//! its `EINVAL` on the first spawn switches the process to legacy `clone`.
//!
//! The environment variable `CHILDFD_SPAWN_METHOD` (`clone3-vm`, `clone-vm`,
//! `clone3-fork`), read once, forces a method: useful under tools that
//! cannot follow `CLONE_VM` children, and used by the fallback tests. It
//! also turns `CLONE_FILES` off.
//!
//! # Caveats
//!
//! The fork-style method is correct but its cost grows with the parent's
//! memory (about 28 ms per GiB resident, measured on the reference machine).

use core::ffi::c_long;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::child_exec::{ChildPlan, SpawnBlock, Stage, child_main};
use super::fork::PerProcess;

/// How children are created; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `clone3` with `CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND`.
    Clone3Vm,
    /// Legacy `clone` with `CLONE_VM | CLONE_VFORK | CLONE_PIDFD`.
    CloneVm,
    /// `clone3` with `CLONE_VFORK | CLONE_PIDFD` but without `CLONE_VM`.
    Clone3Fork,
}

impl Method {
    /// Whether the child shares the parent's memory.
    pub(crate) fn shares_memory(self) -> bool {
        !matches!(self, Method::Clone3Fork)
    }
}

/// The method's code (see `encode`), or `UNKNOWN` until first probed.
/// Plain atomics, not a `OnceLock`: a `fork()` by another thread while one
/// was being initialised would leave the copy's in its running state, and
/// every spawn in the copy would wait for it for ever. Racing first uses
/// each probe (cheap and idempotent) and the first store wins.
static METHOD: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = u8::MAX;
/// Set once a `clone3` spawn has succeeded: from then on an `EINVAL` is
/// about the arguments, not about flags this kernel lacks.
static CLONE3_WORKED: AtomicBool = AtomicBool::new(false);

fn encode(m: Method) -> u8 {
    match m {
        Method::Clone3Vm => 0,
        Method::CloneVm => 1,
        Method::Clone3Fork => 2,
    }
}

/// The spawn method of this process: probed at first use, then cached.
pub fn method() -> Method {
    let mut code = METHOD.load(Ordering::Relaxed);
    if code == UNKNOWN {
        let probed = encode(probe());
        code = match METHOD.compare_exchange(UNKNOWN, probed, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => probed,
            Err(stored) => stored,
        };
    }
    match code {
        0 => Method::Clone3Vm,
        1 => Method::CloneVm,
        _ => Method::Clone3Fork,
    }
}

/// `clone3` exists (5.3) but rejected our flags with `EINVAL` before ever
/// succeeding: `CLONE_CLEAR_SIGHAND` needs 5.5 and `CLONE_INTO_CGROUP` 5.7.
/// Switches this process to the legacy `clone` method; true if it did.
pub(crate) fn downgrade_after_einval() -> bool {
    if method() != Method::Clone3Vm || CLONE3_WORKED.load(Ordering::Relaxed) {
        return false;
    }
    METHOD.store(encode(Method::CloneVm), Ordering::Relaxed);
    true
}

/// Cleared when `CLONE_FILES` must not be used: a method is forced by
/// `CHILDFD_SPAWN_METHOD` (tools such as valgrind accept only the classic
/// flag sets), or a clone with it failed with `EINVAL` (an emulator).
/// `FILES_*` (an atomic, not a `OnceLock`, for the reason given at
/// `METHOD`).
static FILES: AtomicU8 = AtomicU8::new(FILES_UNKNOWN);
const FILES_UNKNOWN: u8 = 0;
const FILES_ALLOWED: u8 = 1;
const FILES_DISABLED: u8 = 2;

/// Whether spawns may clone with `CLONE_FILES` (see the module docs).
pub(crate) fn files_allowed() -> bool {
    if method() == Method::CloneVm {
        return false;
    }
    let mut state = FILES.load(Ordering::Relaxed);
    if state == FILES_UNKNOWN {
        let first = if std::env::var_os("CHILDFD_SPAWN_METHOD").is_none() {
            FILES_ALLOWED
        } else {
            FILES_DISABLED
        };
        // A `disable_files` in between wins over this first look.
        state = match FILES.compare_exchange(
            FILES_UNKNOWN,
            first,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => first,
            Err(stored) => stored,
        };
    }
    state == FILES_ALLOWED
}

/// Stops using `CLONE_FILES` in this process.
pub(crate) fn disable_files() {
    FILES.store(FILES_DISABLED, Ordering::Relaxed);
}

/// Set when the legacy `clone` refused `CLONE_PIDFD` as well (a seccomp
/// profile, valgrind): the child is then created without it and its pidfd
/// opened with `pidfd_open` once the clone has returned.
static PIDFD_OPEN: AtomicBool = AtomicBool::new(false);

/// After the legacy `clone` failed (`EINVAL`, `EPERM` or `ENOSYS`): switch
/// to creating children without `CLONE_PIDFD` and opening their pidfd
/// afterwards. True if that is a change worth a retry; the caller calls
/// [`keep_pidfd_open`] with the retry's outcome.
pub(crate) fn try_pidfd_open_after(error: &io::Error) -> bool {
    let refused = matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::EPERM | libc::ENOSYS)
    );
    refused && method() == Method::CloneVm && !PIDFD_OPEN.swap(true, Ordering::Relaxed)
}

/// Keeps the `pidfd_open` fallback if the retry with it worked.
pub(crate) fn keep_pidfd_open(worked: bool) {
    if !worked {
        PIDFD_OPEN.store(false, Ordering::Relaxed);
    }
}

/// Cleared when `CLONE_INTO_CGROUP` is refused (kernels 5.5 and 5.6 have
/// `clone3` but not this flag): the child then joins its cgroup itself,
/// by writing to `cgroup.procs`, as on the legacy method.
static INTO_CGROUP: AtomicBool = AtomicBool::new(true);

/// Whether `clone3` may place the child with `CLONE_INTO_CGROUP`.
pub(crate) fn into_cgroup_allowed() -> bool {
    method() != Method::CloneVm && INTO_CGROUP.load(Ordering::Relaxed)
}

/// Stops using `CLONE_INTO_CGROUP` in this process.
pub(crate) fn disable_into_cgroup() {
    INTO_CGROUP.store(false, Ordering::Relaxed);
}

fn probe() -> Method {
    hold_probe_if_asked();
    let forced = std::env::var("CHILDFD_SPAWN_METHOD").ok();
    match forced.as_deref() {
        Some("clone3-vm") => return Method::Clone3Vm,
        Some("clone-vm") => return Method::CloneVm,
        Some("clone3-fork") => return Method::Clone3Fork,
        _ => {}
    }
    let clone3 = clone3_available();
    if cfg!(target_arch = "x86_64") {
        if clone3 {
            Method::Clone3Vm
        } else {
            Method::CloneVm
        }
    } else {
        Method::Clone3Fork
    }
}

/// Probes `clone3` without creating anything: with a NULL argument of size
/// 0 a kernel that has it answers `EINVAL`; `ENOSYS` (old kernel or a
/// container's seccomp profile) and `EPERM` (seccomp) mean refused.
fn clone3_available() -> bool {
    // SAFETY: clone3 with size 0 is rejected by the kernel before it reads
    // the (null) argument or creates anything.
    let r = unsafe { super::raw::sc!(libc::SYS_clone3, 0, 0) };
    !(r == -(libc::ENOSYS as isize) || r == -(libc::EPERM as isize))
}

/// The `clone3` argument structure (`struct clone_args`, version 2).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

const PAGE: usize = 4096;
/// Usable stack of the child. The child code needs a few hundred bytes;
/// this leaves room for unoptimised builds, for `pre_exec` closures on the
/// fork-style method, and for one signal frame of the child's catching
/// handler (no nesting: it blocks every signal while it runs), whose
/// `xsave` area is 1-3 KiB (AVX-512), about 11 KiB with AMX tiles in use.
/// A power of two: the stack starts at a multiple of it, so the child's
/// signal handler finds the spawn block from its own stack address.
pub(crate) const STACK_SIZE: usize = 64 * 1024;

/// A shared anonymous mapping: `[guard page][stack ...][spawn block page]`.
///
/// Shared (`MAP_SHARED`) so that the child's report reaches the parent
/// whether or not the child shares our memory: on the fork-style method,
/// and under tools that run a `CLONE_VM | CLONE_VFORK` clone as a plain
/// fork (valgrind does), the child writes to the same pages.
struct Arena {
    base: *mut u8,
    len: usize,
}

// SAFETY: the arena is plain memory owned by whoever holds the value.
unsafe impl Send for Arena {}

impl Arena {
    /// Maps a new arena, its stack aligned to [`STACK_SIZE`]: maps that
    /// much more and unmaps the excess on both sides.
    fn new() -> io::Result<Arena> {
        let len = PAGE + STACK_SIZE + PAGE;
        let wide = len + STACK_SIZE;
        // SAFETY: anonymous mapping with no address hint.
        let wide_base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                wide,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if wide_base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = (wide_base as usize + PAGE).next_multiple_of(STACK_SIZE);
        let base = (stack - PAGE) as *mut libc::c_void;
        let head = base as usize - wide_base as usize;
        let tail = wide - head - len;
        // SAFETY: both ranges lie inside the mapping just created, outside
        // the arena; page-aligned (the head is a multiple of PAGE).
        #[allow(clippy::multiple_unsafe_ops_per_block)]
        unsafe {
            if head > 0 {
                libc::munmap(wide_base, head);
            }
            if tail > 0 {
                libc::munmap(base.cast::<u8>().add(len).cast(), tail);
            }
        }
        let arena = Arena {
            base: base.cast(),
            len,
        };
        // SAFETY: the first page lies inside the mapping just created.
        if unsafe { libc::mprotect(base, PAGE, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(arena)
    }

    /// Highest address of the stack (16-byte aligned).
    fn stack_top(&self) -> *mut u8 {
        // SAFETY: within the mapping.
        unsafe { self.base.add(PAGE + STACK_SIZE) }
    }

    fn stack_bottom(&self) -> *mut u8 {
        // SAFETY: within the mapping.
        unsafe { self.base.add(PAGE) }
    }

    fn block(&self) -> &SpawnBlock {
        // SAFETY: the last page is readable, writable, page-aligned and only
        // used for the block; all-zero bytes are a valid SpawnBlock.
        unsafe { &*(self.stack_top() as *const SpawnBlock) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and no child runs on it any more.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Arenas kept for reuse: one per concurrently spawning thread, at most.
/// One pool per process: after a `fork()` the copy's arenas would be the
/// very memory the parent's children report into (`MAP_SHARED`).
static POOL: PerProcess<Mutex<Vec<Arena>>> = PerProcess::new();
const POOL_MAX: usize = 16;

fn pool() -> &'static Mutex<Vec<Arena>> {
    POOL.get(
        || Mutex::new(Vec::new()),
        // In a forked copy: unmap our view of the parent's arenas (the
        // parent keeps its own), unless a thread that did not survive the
        // fork held the lock.
        |stale| {
            if let Ok(mut v) = stale.try_lock() {
                v.clear();
            }
        },
    )
}

fn take_arena(pool: &Mutex<Vec<Arena>>) -> io::Result<Arena> {
    if let Some(a) = pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        return Ok(a);
    }
    Arena::new()
}

/// Back to the pool: the child that used it has exec'd or exited
/// (`CLONE_VFORK`), so nothing runs on it any more.
fn give_back(pool: &Mutex<Vec<Arena>>, arena: Arena) {
    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL_MAX {
        pool.push(arena);
    }
}

/// A created child: its pidfd and pid.
pub(crate) struct Spawned {
    pub pidfd: OwnedFd,
    pub pid: i32,
}

/// Why a spawn failed: the stage and errno.
pub(crate) struct Failure {
    pub stage: Option<Stage>,
    pub error: io::Error,
}

/// Options of the clone itself (not of the child's steps).
pub(crate) struct CloneOptions<'a> {
    /// Place the child into this cgroup (`CLONE_INTO_CGROUP`).
    pub cgroup: Option<std::os::fd::BorrowedFd<'a>>,
    /// Whether the child may share the parent's memory (`CLONE_VM`). Not
    /// when it changes credentials: `setuid`/`setgid` in the child would
    /// make the shared memory descriptor, the parent's, non-dumpable.
    pub share_memory: bool,
}

/// Creates the child and runs `plan` in it.
///
/// On success the child has called `execve`. On failure in the child, the
/// failed child has been reaped before this returns.
///
/// `plan.block`, `plan.reset_all_handlers` and `plan.signal_mask` are
/// filled in here.
pub(crate) fn spawn(plan: &mut ChildPlan<'_>, opts: &CloneOptions<'_>) -> Result<Spawned, Failure> {
    let method = method();
    let share_vm = method.shares_memory() && opts.share_memory;
    let pool = pool();
    let arena = take_arena(pool).map_err(|error| Failure { stage: None, error })?;
    let block = arena.block();
    block.errno.store(0, Ordering::Relaxed);
    block.stage.store(0, Ordering::Relaxed);
    block.caught.store(0, Ordering::Relaxed);
    let spawner = if plan.catch_signals && plan.pdeathsig != 0 {
        plan.expected_ppid
    } else {
        0
    };
    block.spawner.store(spawner, Ordering::Relaxed);
    plan.block = block;
    plan.reset_all_handlers = method == Method::CloneVm;

    let result = {
        // The legacy clone keeps the parent's handlers in the child: only
        // with CLONE_CLEAR_SIGHAND may SIGCHLD stay unblocked (see there).
        let except = if method == Method::CloneVm {
            0
        } else {
            super::signals::SIGCHLD_BIT
        };
        let mask = super::signals::BlockAll::new(except);
        plan.signal_mask = if plan.inherit_signal_mask {
            plan.caller_signal_mask.unwrap_or(mask.previous())
        } else {
            0
        };
        let result = match method {
            Method::Clone3Vm | Method::Clone3Fork => clone3(plan, &arena, opts, share_vm),
            Method::CloneVm => legacy_clone(plan, &arena, share_vm),
        };
        // Before the mask is restored: a signal that reached both the
        // child and us (a Ctrl-C) may end us as soon as it is unblocked.
        if let Ok(spawned) = &result {
            if plan.catch_signals && block.errno.load(Ordering::Acquire) == 0 {
                forward_caught(spawned, block.caught.load(Ordering::Relaxed));
            }
        }
        result
    };
    if result.is_ok() && method != Method::CloneVm {
        CLONE3_WORKED.store(true, Ordering::Relaxed);
    }
    let errno = block.errno.load(Ordering::Acquire);
    let stage = Stage::from_u32(block.stage.load(Ordering::Relaxed));
    give_back(pool, arena);

    let spawned = result.map_err(|error| Failure { stage: None, error })?;
    if errno != 0 {
        // The child failed before exec and has exited (CLONE_VFORK resumed
        // us at its exit). Reap it now so no zombie is left; exit_signal is
        // 0, hence __WALL.
        let _ = super::pidfd::wait(
            std::os::fd::AsFd::as_fd(&spawned.pidfd),
            super::pidfd::Block::Yes,
        );
        return Err(Failure {
            stage,
            error: io::Error::from_raw_os_error(errno),
        });
    }
    if stage != Some(Stage::Exec) {
        // Released without an error and without the mark set just before
        // `execve`: the child died before it (SIGKILL, a crashing
        // `pre_exec` closure), in the step it last marked. Never report
        // it spawned.
        let how = super::pidfd::wait(
            std::os::fd::AsFd::as_fd(&spawned.pidfd),
            super::pidfd::Block::Yes,
        );
        return Err(died_before_exec(stage, how));
    }
    Ok(spawned)
}

/// The failure of a child that died during one of its steps (`stage`, the
/// last it marked), with how it ended
/// as the reason: `signal: 9 (SIGKILL)`.
fn died_before_exec(stage: Option<Stage>, how: io::Result<Option<i32>>) -> Failure {
    let reason = match how {
        Ok(Some(raw)) => crate::ExitStatus::from_raw(raw).to_string(),
        Ok(None) => "no status".to_owned(),
        Err(e) => format!("status unavailable: {e}"),
    };
    Failure {
        // `None` (reported as the clone stage) only if the child died in
        // the trampoline, before it marked its first step.
        stage,
        error: io::Error::other(format!("the child died before execve ({reason})")),
    }
}

/// Sends the exec'd child each signal it caught before `execve` (see
/// [`super::child_exec::SpawnBlock::caught`]), by pidfd: it gets them as
/// if they had arrived just after the exec. A failure (the child already
/// died) is of no consequence.
fn forward_caught(spawned: &Spawned, caught: u64) {
    let mut rest = caught;
    while rest != 0 {
        let sig = rest.trailing_zeros() as i32 + 1;
        rest &= rest - 1;
        let fd = std::os::fd::AsFd::as_fd(&spawned.pidfd);
        if let Err(e) = super::pidfd::send_signal(fd, sig, 0) {
            // Refused by a seccomp profile: by number, which is still the
            // child's (nobody can have reaped it yet).
            if super::pidfd::signal_refused(&e) {
                super::pidfd::kill_by_number(spawned.pid, sig);
            }
        }
    }
}

fn clone3(
    plan: &ChildPlan<'_>,
    arena: &Arena,
    opts: &CloneOptions<'_>,
    share_vm: bool,
) -> io::Result<Spawned> {
    let mut pidfd: i32 = -1;
    let mut flags = libc::CLONE_PIDFD as u64 | libc::CLONE_VFORK as u64 | CLONE_CLEAR_SIGHAND;
    if share_vm {
        flags |= libc::CLONE_VM as u64;
    }
    if plan.unshare_fds_below > 0 {
        flags |= libc::CLONE_FILES as u64;
    }
    let mut args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: 0,
        stack: arena.stack_bottom() as u64,
        stack_size: STACK_SIZE as u64,
        ..CloneArgs::default()
    };
    if let Some(cg) = opts.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = std::os::fd::AsRawFd::as_raw_fd(&cg) as u64;
    }
    // SAFETY: `args` is a valid clone_args; the child runs child_main on the
    // arena's stack with `plan`, which outlives the call (we are suspended
    // by CLONE_VFORK until the child execs or exits).
    let r = unsafe {
        clone_trampoline(
            libc::SYS_clone3,
            [
                &mut args as *mut CloneArgs as usize,
                core::mem::size_of::<CloneArgs>(),
                0,
                0,
                0,
            ],
            plan,
        )
    };
    finish(r, pidfd)
}

/// Legacy `clone`. It cannot use `CLONE_INTO_CGROUP`: the child joins its
/// cgroup itself through `plan.cgroup_procs_fd` before it execs.
fn legacy_clone(plan: &ChildPlan<'_>, arena: &Arena, share_vm: bool) -> io::Result<Spawned> {
    let mut pidfd: i32 = -1;
    let open_pidfd = PIDFD_OPEN.load(Ordering::Relaxed);
    // exit_signal = 0 is the low byte of the flags.
    let mut flags = libc::CLONE_VFORK as usize;
    if !open_pidfd {
        flags |= libc::CLONE_PIDFD as usize;
    }
    if share_vm {
        flags |= libc::CLONE_VM as usize;
    }
    if plan.unshare_fds_below > 0 {
        flags |= libc::CLONE_FILES as usize;
    }
    // x86_64 argument order: flags, stack, parent_tid, child_tid, tls; with
    // CLONE_PIDFD the pidfd is written through `parent_tid`.
    // SAFETY: as in clone3; the stack pointer is the top of the arena stack.
    let r = unsafe {
        clone_trampoline(
            libc::SYS_clone,
            [
                flags,
                arena.stack_top() as usize,
                &mut pidfd as *mut i32 as usize,
                0,
                0,
            ],
            plan,
        )
    };
    if open_pidfd && r > 0 {
        return open_after_clone(r as i32);
    }
    finish(r, pidfd)
}

/// The pidfd of a child created without `CLONE_PIDFD` ([`pidfd_open(2)`]),
/// opened once `CLONE_VFORK` has let us go on: the child has exec'd, or
/// failed and waits as a zombie that only a `__WALL` wait sees
/// (`exit_signal` is 0), so its pid cannot have been reused.
///
/// # Caveats
///
/// A child that exec'd, exited and was reaped by a foreign reaper
/// (`waitpid(-1)`) before this call makes it fail with `ESRCH`; the number
/// cannot be reused that fast (the kernel allocates pids cyclically).
///
/// [`pidfd_open(2)`]: https://man7.org/linux/man-pages/man2/pidfd_open.2.html
fn open_after_clone(pid: i32) -> io::Result<Spawned> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    };
    match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(pidfd) => Ok(Spawned { pidfd, pid }),
        Err(e) => {
            // Our unreaped child (exec'd or failed): end and reap it by
            // pid, as nothing can own it without a pidfd.
            // SAFETY: a signal to our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: siginfo_t is plain data; all-zero is valid.
            let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
            // SAFETY: `info` is writable; reaps our own child.
            unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as u32,
                    &mut info,
                    libc::WEXITED | libc::__WALL,
                )
            };
            Err(e.into())
        }
    }
}

fn finish(r: isize, pidfd: i32) -> io::Result<Spawned> {
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-(r as i32)));
    }
    // SAFETY: the kernel returned a new pidfd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Spawned {
        pidfd,
        pid: r as i32,
    })
}

/// Runs a clone-family syscall; in the child, calls [`child_main`] on the
/// new stack and never comes back. Returns the syscall's result in the parent.
///
/// # Safety
///
/// `args` must be valid for `nr` and, if they request a new stack, that
/// stack must be mapped, writable, 16-byte aligned at its top and unused.
/// `plan` must stay valid until the child execs or exits (`CLONE_VFORK`).
#[cfg(target_arch = "x86_64")]
unsafe fn clone_trampoline(nr: c_long, args: [usize; 5], plan: &ChildPlan<'_>) -> isize {
    let ret: isize;
    let entry: unsafe extern "C" fn(*const ChildPlan<'_>) -> ! = child_main;
    // SAFETY: in the parent this is a plain syscall (rcx and r11 clobbered).
    // In the child (rax == 0) the kernel has switched rsp to the top of the
    // new stack: clear the frame pointer, pass `plan` in rdi and call the
    // entry, which never returns (`ud2` is unreachable). r12/r13 are
    // preserved across `syscall`, so the child still has them.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r12") plan as *const ChildPlan<'_>,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Fork-style version for architectures without a trampoline: only valid
/// without `CLONE_VM` (the child returns through copied frames of its own).
///
/// # Safety
///
/// As for the x86_64 version; `args` must not request `CLONE_VM`.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_trampoline(nr: c_long, args: [usize; 5], plan: &ChildPlan<'_>) -> isize {
    // The child continues on a private copy of this stack, so the arena's
    // stack is not used: clear it from clone_args.
    // SAFETY: args[0] points to a live CloneArgs (only clone3 reaches here).
    unsafe {
        let ca = args[0] as *mut CloneArgs;
        (*ca).stack = 0;
        (*ca).stack_size = 0;
    }
    // SAFETY: forwarded from the caller.
    let r = unsafe { super::raw::syscall6(nr, [args[0], args[1], args[2], args[3], args[4], 0]) };
    if r == 0 {
        // SAFETY: we are the fork-style child with a private copy of `plan`.
        unsafe { child_main(plan) }
    }
    r
}

/// `test_hooks::hold_spawn_method_probe`: 0 off, 1 armed (the next probe
/// holds), 2 a probe is holding.
static HOLD_PROBE: AtomicU8 = AtomicU8::new(0);

/// Arms (`true`) or releases (`false`) the probe hold.
pub(crate) fn hold_probe(on: bool) {
    HOLD_PROBE.store(u8::from(on), Ordering::SeqCst);
}

/// Whether a probe is holding now.
pub(crate) fn probe_holding() -> bool {
    HOLD_PROBE.load(Ordering::SeqCst) == 2
}

fn hold_probe_if_asked() {
    if HOLD_PROBE
        .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        while HOLD_PROBE.load(Ordering::SeqCst) == 2 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    /// The child's stack holds the largest signal frame this CPU needs
    /// (`AT_MINSIGSTKSZ`, reported since Linux 5.14 on x86_64; glibc's
    /// constant otherwise) several times over.
    #[test]
    fn child_stack_holds_a_signal_frame_with_room_to_spare() {
        // SAFETY: getauxval only reads the auxiliary vector.
        let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
        let frame = if frame == 0 { libc::SIGSTKSZ } else { frame };
        assert!(
            frame * 4 <= super::STACK_SIZE,
            "signal frame {frame} bytes against a {} byte stack",
            super::STACK_SIZE
        );
    }
}
