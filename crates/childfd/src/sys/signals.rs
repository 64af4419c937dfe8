//! The spawning thread's signal mask around the clone.

use super::raw::set_signal_mask;

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
/// [`rt_sigprocmask(2)`]: https://man7.org/linux/man-pages/man2/rt_sigprocmask.2.html
pub(crate) struct BlockAll {
    old: u64,
}

impl BlockAll {
    pub(crate) fn new() -> BlockAll {
        let old = set_signal_mask(!0);
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
