//! The spawning thread's signal mask around the clone.

/// Blocks every signal in the calling thread until dropped, then restores
/// the previous mask (`pthread_sigmask(SIG_SETMASK)`).
///
/// Used around the clone so that no signal handler of the parent can run in
/// the child while it shares the parent's memory.
pub(crate) struct BlockAll {
    old: libc::sigset_t,
}

impl BlockAll {
    pub(crate) fn new() -> BlockAll {
        // SAFETY: sigset_t is plain data; all-zero is a valid (empty) set.
        let mut all: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: `all` is a valid, writable sigset_t.
        unsafe { libc::sigfillset(&mut all) };
        // SAFETY: reads `all`, writes `old`; affects only this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
        BlockAll { old }
    }

    /// The mask in force before, as the kernel's 64-bit set (bit `n - 1`
    /// for signal `n`).
    pub(crate) fn previous(&self) -> u64 {
        let mut set = 0u64;
        for sig in 1..=64 {
            // SAFETY: reads a valid sigset_t; out-of-range numbers give -1.
            if unsafe { libc::sigismember(&self.old, sig) } == 1 {
                set |= 1 << (sig - 1);
            }
        }
        set
    }
}

impl Drop for BlockAll {
    fn drop(&mut self) {
        // SAFETY: restores a mask previously returned by the kernel.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, core::ptr::null_mut()) };
    }
}
