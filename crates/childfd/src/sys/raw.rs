//! Raw system calls that touch neither errno nor thread-local storage.
//!
//! These are the only calls the post-clone child may make (see
//! [`super::child_exec`]): under `CLONE_VM` the child shares the parent's
//! memory and its TLS block, so libc's wrappers, which write `errno` through
//! TLS, could corrupt the spawning thread. Every function returns the
//! kernel's raw result: a non-negative value, or `-errno`.
//!
//! On x86_64 they are `syscall` instructions in `asm!`. Elsewhere they go
//! through `libc::syscall`, which writes `errno`; that is sound there because
//! other architectures spawn fork-style (no `CLONE_VM`, see
//! [`super::clone`]), so the child owns a private copy of its TLS.

use core::ffi::c_long;

/// Performs system call `nr` with up to six arguments.
///
/// # Safety
///
/// The arguments must be valid for system call `nr` (pointers must point to
/// memory of the size and mutability that call expects), and the call must
/// not break an invariant of the Rust program (for example unmapping memory
/// still in use, or closing a file descriptor owned elsewhere).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments are valid for `nr`. The
    // kernel clobbers only rcx and r11 (and rax, the result); no stack use.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Performs system call `nr` with up to six arguments.
///
/// # Safety
///
/// As for the x86_64 version. In addition this version writes `errno`, so it
/// must not run in a child that shares the parent's memory (`CLONE_VM`).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: c_long, a: [usize; 6]) -> isize {
    // SAFETY: forwarded from the caller; libc::syscall takes variadic longs.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        // SAFETY: errno is readable; on these targets the child owns its TLS.
        -(unsafe { *libc::__errno_location() } as isize)
    } else {
        r as isize
    }
}

macro_rules! sc {
    ($nr:expr) => {
        $crate::sys::raw::syscall6($nr, [0, 0, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr) => {
        $crate::sys::raw::syscall6($nr, [$a as usize, 0, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr) => {
        $crate::sys::raw::syscall6($nr, [$a as usize, $b as usize, 0, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr) => {
        $crate::sys::raw::syscall6($nr, [$a as usize, $b as usize, $c as usize, 0, 0, 0])
    };
    ($nr:expr, $a:expr, $b:expr, $c:expr, $d:expr) => {
        $crate::sys::raw::syscall6(
            $nr,
            [$a as usize, $b as usize, $c as usize, $d as usize, 0, 0],
        )
    };
}
pub(crate) use sc;

/// `sigaction` as the kernel's `rt_sigaction` takes it (not libc's layout).
#[repr(C)]
pub(crate) struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: u64,
}

/// Size in bytes of the kernel's signal set (64 signals).
pub(crate) const KERNEL_SIGSET_SIZE: usize = 8;

/// Sets the calling thread's signal mask to `new` (the kernel's 64-bit set,
/// bit `n - 1` for signal `n`) with a raw [`rt_sigprocmask(2)`], and returns
/// the mask it replaces. The raw call covers the whole kernel set, glibc's
/// internal signals 32 and 33 included (libc's wrappers leave them out).
///
/// Safe in the post-clone child ([`super::child_exec`]): one `syscall`
/// instruction, no allocation, no lock, no `errno`. The error is the
/// kernel's `-errno`; the call fails only for a bad `how`, size or pointer,
/// none of which can happen here.
///
/// [`rt_sigprocmask(2)`]: https://man7.org/linux/man-pages/man2/rt_sigprocmask.2.html
#[inline(always)]
pub(crate) fn set_signal_mask(new: u64) -> Result<u64, isize> {
    change_signal_mask(libc::SIG_SETMASK, new)
}

/// Adds `set` to the calling thread's signal mask (`SIG_BLOCK`: a signal
/// blocked before stays blocked) and returns the mask it replaces; as
/// [`set_signal_mask`] otherwise.
pub(crate) fn block_signals(set: u64) -> Result<u64, isize> {
    change_signal_mask(libc::SIG_BLOCK, set)
}

/// `rt_sigprocmask(how, set)`, returning the previous mask.
#[inline(always)]
fn change_signal_mask(how: libc::c_int, new: u64) -> Result<u64, isize> {
    let mut old: u64 = 0;
    // SAFETY: reads `new` and writes `old`, both 8-byte kernel sigsets that
    // live for the whole call; a mask affects only this thread (the kernel
    // leaves SIGKILL and SIGSTOP out).
    let r = unsafe {
        sc!(
            libc::SYS_rt_sigprocmask,
            how,
            &new as *const u64,
            &mut old as *mut u64,
            KERNEL_SIGSET_SIZE
        )
    };
    if r < 0 { Err(r) } else { Ok(old) }
}

/// The calling thread's signal mask ([`rt_sigprocmask(2)`] with no new
/// set), as the kernel's 64-bit set (bit `n - 1` for signal `n`).
///
/// [`rt_sigprocmask(2)`]: https://man7.org/linux/man-pages/man2/rt_sigprocmask.2.html
pub(crate) fn signal_mask() -> u64 {
    let mut old: u64 = 0;
    // SAFETY: no new set (a null pointer: nothing is changed); writes
    // `old`, an 8-byte kernel sigset that lives for the whole call.
    let r = unsafe {
        sc!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            std::ptr::null::<u64>(),
            &mut old as *mut u64,
            KERNEL_SIGSET_SIZE
        )
    };
    // It fails only for a bad size or pointer, neither possible here.
    if r < 0 { 0 } else { old }
}
