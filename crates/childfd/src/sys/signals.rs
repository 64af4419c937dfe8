//! Signal masks: the spawning thread's around the clone, and the one the
//! library's own threads start with.

use super::raw::{block_signals, set_signal_mask};

/// Blocks every signal in the calling thread until dropped, then restores
/// the previous mask exactly.
///
/// Used around the clone so that no signal handler of the parent can run in
/// the child while it shares the parent's memory, and so that no signal can
/// kill the child before it has set its own dispositions.
///
/// The mask is set with a raw [`rt_sigprocmask(2)`] of the whole 64-bit
/// kernel set, not with `sigfillset` + `pthread_sigmask`: glibc leaves its
/// two internal signals (32, thread cancellation, and 33, the `setxid`
/// broadcast) out of both, so the child would inherit them unblocked and,
/// once its handlers are reset to `SIG_DFL`, die of them before `execve`
/// (glibc's own `posix_spawn` blocks them the same way). Blocking signal 33
/// in this thread only delays another thread's `setuid`/`setgid` (which
/// signals every thread and waits for each) until the clone has returned,
/// that is until the child has exec'd or failed.
///
/// Where the child starts with every handler reset (`CLONE_CLEAR_SIGHAND`),
/// SIGCHLD may be left out ([`SIGCHLD_BIT`]): see [`BlockAll::new`].
///
/// [`rt_sigprocmask(2)`]: https://man7.org/linux/man-pages/man2/rt_sigprocmask.2.html
pub(crate) struct BlockAll {
    old: u64,
}

/// SIGCHLD in the kernel's 64-bit set.
pub(crate) const SIGCHLD_BIT: u64 = 1 << (libc::SIGCHLD - 1);

impl BlockAll {
    /// Blocks every signal but those in `except`.
    ///
    /// Leaving SIGCHLD unblocked ([`SIGCHLD_BIT`]) matters to a process
    /// that spawns many short children. The kernel sends the parent a
    /// SIGCHLD when an exec'd child exits, whatever its clone's
    /// `exit_signal`, and drops it at once only if the child's parent
    /// thread, the spawning one, has it at `SIG_DFL` (ignored) *and
    /// unblocked*. A spawning thread that clones back to back spends most
    /// of its time in the `CLONE_VFORK` wait, so with SIGCHLD blocked
    /// there the signal of almost every earlier child that exits is queued
    /// for the process instead, and wakes another thread (an event loop
    /// in `epoll_wait`) just to be discarded: a wake-up and two context
    /// switches per child. Unblocked, it is harmless to the child only
    /// when the child starts with every handler reset
    /// (`CLONE_CLEAR_SIGHAND`): SIGCHLD is then `SIG_DFL` (ignored) or
    /// `SIG_IGN` there, never a parent's handler, until the child's own
    /// steps set its dispositions and mask. The legacy `clone` path keeps
    /// the parent's handlers in the child and must block everything.
    ///
    /// A signal of `except` that the thread blocked already stays blocked
    /// (the new mask is added to the old one, `SIG_BLOCK`): a host that
    /// blocks SIGCHLD in every thread and reads it from a `signalfd` (or
    /// `sigwaitinfo`) would otherwise lose the SIGCHLD of its own children
    /// to a spawn, the kernel handing the queued signal to the one thread
    /// that does not block it, where `SIG_DFL` discards it.
    pub(crate) fn new(except: u64) -> BlockAll {
        let old = block_signals(!except);
        // rt_sigprocmask fails only for a bad `how`, size or pointer.
        debug_assert!(old.is_ok(), "rt_sigprocmask: {old:?}");
        BlockAll {
            old: old.unwrap_or(0),
        }
    }

    /// The mask in force before, as the kernel's 64-bit set (bit `n - 1`
    /// for signal `n`).
    pub(crate) fn previous(&self) -> u64 {
        self.old
    }
}

impl Drop for BlockAll {
    fn drop(&mut self) {
        let _ = set_signal_mask(self.old);
    }
}

/// Runs `f` with every signal the C library lets a thread block blocked in
/// the calling thread ([`pthread_sigmask(3)`] of a [`sigfillset(3)`] set),
/// then restores the previous mask.
///
/// A thread that `f` creates inherits that mask ([`pthread_create(3)`]):
/// the library's long-lived threads start this way, so that no handler of
/// the host ever runs on them and no handled signal interrupts their
/// blocking calls with `EINTR` (a process-directed signal goes to a thread
/// that does not block it; one sent to such a thread by `tgkill` stays
/// pending until the thread ends). The C library's internal signals stay
/// unblocked (libc leaves them out of both calls): a thread that blocked
/// glibc's `setxid` broadcast would make every `setuid(2)` of the process
/// wait for ever.
///
/// [`pthread_sigmask(3)`]: https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html
/// [`sigfillset(3)`]: https://man7.org/linux/man-pages/man3/sigfillset.3.html
/// [`pthread_create(3)`]: https://man7.org/linux/man-pages/man3/pthread_create.3.html
pub(crate) fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: an all-zero sigset_t is a valid (empty) set: plain data.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills a valid set that lives for the call.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: reads `all` and writes `old`, both valid for the call; a
    // mask affects only the calling thread.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
    let out = f();
    if r == 0 {
        // SAFETY: restores the mask read above, from a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    out
}
