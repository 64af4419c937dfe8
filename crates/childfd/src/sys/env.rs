//! Facts about the calling process needed to prepare a spawn.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

static CLOSE_RANGE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` works (Linux 5.11),
/// probed once on an empty range of fds so nothing is touched.
pub(crate) fn close_range_cloexec() -> bool {
    match CLOSE_RANGE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // Probe on the highest possible range: no fd is there.
            // SAFETY: marks no fd (the range is empty of open fds).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    u32::MAX - 1,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
            let ok = r == 0;
            CLOSE_RANGE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Forces the `close_range` fallback, as on a kernel before 5.11. Tests only.
pub(crate) fn disable_close_range() {
    CLOSE_RANGE.store(2, Ordering::Relaxed);
}

/// The highest fd number open now (from `/proc/self/fd`), for the
/// fallback that marks fds close-on-exec one by one.
pub(crate) fn highest_open_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .max()
                .unwrap_or(2)
        })
        .unwrap_or(1024)
}

/// How far the no-`close_range` fallback marks fds close-on-exec: well
/// past the highest fd open now (other threads may open more meanwhile),
/// within the soft `RLIMIT_NOFILE` (no fd can be above it).
pub(crate) fn cloexec_fallback_bound() -> i32 {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let soft = soft.min(i32::MAX as u64) as i32;
    highest_open_fd()
        .saturating_add(1024)
        .max(4096)
        .min(soft.saturating_sub(1))
}

/// `getpid()`, answered from memory the kernel wipes in a forked copy.
///
/// The pid is kept in a private anonymous page marked `MADV_WIPEONFORK`
/// ([`madvise(2)`], Linux 4.14): in a child made by any clone without
/// `CLONE_VM` (libc's `fork`, a raw `fork`/`clone` system call that runs
/// no `pthread_atfork` handler, or childfd's own fork-style spawn, the only
/// one that runs `pre_exec` closures) the page reads as zeros, so the
/// first call there asks the kernel again and keeps the answer.
///
/// A process that shares our memory (`CLONE_VM` without `CLONE_THREAD`)
/// shares the page too: it would read our pid, and on a page still zero
/// it would store its own pid where we read ours. childfd's own such
/// children (the `CLONE_VM | CLONE_VFORK` spawn) never call this: the code
/// between their clone and `execve` makes only raw system calls, and
/// `pre_exec` closures, the one place for a caller's code, force the
/// fork-style spawn. A caller's own `CLONE_VM` child must not call into
/// childfd before it execs, as for anything that keeps per-process state.
///
/// # Caveats
///
/// `madvise` can report success without doing anything: qemu-user
/// accepts any advice, and a seccomp filter can answer `0` for the call
/// (`SECCOMP_RET_ERRNO` with errno 0). The page is therefore trusted only
/// if the kernel refuses an advice value that does not exist (`EINVAL`),
/// as BoringSSL checks before it relies on `MADV_WIPEONFORK`. Where the
/// page is not trusted or cannot be made, every call is a real
/// [`getpid(2)`], which no kind of fork can fool.
///
/// This is the fork check of every process-wide registry ([`super::fork`])
/// and of every `Child` drop: one load instead of a system call each.
///
/// [`madvise(2)`]: https://man7.org/linux/man-pages/man2/madvise.2.html
/// [`getpid(2)`]: https://man7.org/linux/man-pages/man2/getpid.2.html
pub(crate) fn getpid() -> i32 {
    let Some(slot) = pid_slot() else {
        return getpid_syscall();
    };
    match slot.load(Ordering::Relaxed) {
        0 => {
            let pid = getpid_syscall();
            slot.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// The `getpid` system call itself.
pub(crate) fn getpid_syscall() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Where [`getpid`] keeps the pid: null until made, [`NO_SLOT`] if it
/// cannot be, else the wipe-on-fork page (never unmapped once published).
static PID_SLOT: AtomicPtr<AtomicI32> = AtomicPtr::new(core::ptr::null_mut());

/// The value of [`PID_SLOT`] when no wipe-on-fork page can be made: an
/// address no mapping returns (it is not page-aligned).
const NO_SLOT: *mut AtomicI32 = core::ptr::dangling_mut::<AtomicI32>().wrapping_add(1);

fn pid_slot() -> Option<&'static AtomicI32> {
    let mut p = PID_SLOT.load(Ordering::Acquire);
    if p.is_null() {
        let made = wipe_on_fork_page().unwrap_or(NO_SLOT);
        p = match PID_SLOT.compare_exchange(
            core::ptr::null_mut(),
            made,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => made,
            Err(theirs) => {
                if made != NO_SLOT {
                    // SAFETY: our own page, never published: nothing
                    // refers to it.
                    unsafe { libc::munmap(made.cast(), SLOT_BYTES) };
                }
                theirs
            }
        };
    }
    if p == NO_SLOT {
        return None;
    }
    // SAFETY: a published page stays mapped for the life of the process
    // (and of its forked copies, which inherit the mapping).
    unsafe { p.as_ref() }
}

/// Length asked for the slot's mapping; the kernel rounds `mmap`,
/// `madvise` and `munmap` lengths up to whole pages.
const SLOT_BYTES: usize = 4096;

/// One private anonymous page the kernel zeroes in a forked child.
fn wipe_on_fork_page() -> Option<*mut AtomicI32> {
    wipe_on_fork_page_with(sys_madvise)
}

/// The signature of [`madvise(2)`](https://man7.org/linux/man-pages/man2/madvise.2.html).
type Madvise = unsafe fn(*mut libc::c_void, usize, libc::c_int) -> libc::c_int;

/// The real `madvise`.
///
/// # Safety
///
/// As [`libc::madvise`]: `addr` and `len` describe a mapping of ours.
unsafe fn sys_madvise(addr: *mut libc::c_void, len: usize, advice: libc::c_int) -> libc::c_int {
    // SAFETY: the caller's contract.
    unsafe { libc::madvise(addr, len, advice) }
}

/// An advice value no kernel defines: a real `madvise` fails with `EINVAL`.
const NO_SUCH_ADVICE: libc::c_int = -1;

/// [`wipe_on_fork_page`] through `madvise`; `None` unless `madvise` is
/// real (it refuses [`NO_SUCH_ADVICE`] with `EINVAL`) and accepts
/// `MADV_WIPEONFORK`.
fn wipe_on_fork_page_with(madvise: Madvise) -> Option<*mut AtomicI32> {
    let size = SLOT_BYTES;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `p` is the mapping just made, of `size` bytes; an invalid
    // advice changes nothing.
    let refuses_nonsense = unsafe { madvise(p, size, NO_SUCH_ADVICE) } == -1
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
    // SAFETY: as above.
    if !refuses_nonsense || unsafe { madvise(p, size, libc::MADV_WIPEONFORK) } != 0 {
        // SAFETY: as above; nothing refers to it yet.
        unsafe { libc::munmap(p, size) };
        return None;
    }
    Some(p.cast())
}

#[cfg(test)]
mod tests {
    /// A `madvise` that answers 0 to everything (qemu-user, a seccomp
    /// filter returning errno 0) is not trusted to mark the page: a page
    /// it "marked" would keep the parent's pid in a forked copy.
    #[test]
    fn a_madvise_that_accepts_any_advice_is_not_trusted_to_wipe() {
        /// # Safety
        ///
        /// Touches nothing.
        unsafe fn accepts_anything(_: *mut libc::c_void, _: usize, _: libc::c_int) -> libc::c_int {
            0
        }
        assert!(super::wipe_on_fork_page_with(accepts_anything).is_none());
        // The real one passes the probe on this kernel (4.14+).
        let real = super::wipe_on_fork_page_with(super::sys_madvise)
            .expect("this kernel refuses MADV_WIPEONFORK or accepts a bogus advice");
        // SAFETY: the page just made; nothing refers to it.
        unsafe { libc::munmap(real.cast(), super::SLOT_BYTES) };
    }

    /// The cached pid is the real one, and a copy made by a raw `fork`
    /// system call (no `pthread_atfork` handler runs) gets its own, not
    /// the parent's.
    #[test]
    fn a_raw_fork_sees_its_own_pid_not_the_cached_one() {
        let parent = super::getpid();
        assert_eq!(parent, super::getpid_syscall());
        // SAFETY: the child makes only a load, a getpid and _exit, all
        // async-signal-safe (the page was made above, so no mmap).
        let child = unsafe { libc::syscall(libc::SYS_fork) };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            let ok = super::getpid() == super::getpid_syscall() && super::getpid() != parent;
            // SAFETY: ends the forked copy at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(child as i32, &mut status, 0) };
        assert_eq!(r, child as i32);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        assert_eq!(super::getpid(), parent);
    }
}
