//! Process-wide state that starts afresh in a `fork()`ed copy of the
//! process.
//!
//! After [`fork(2)`] the child process has a copy of our memory, every fd,
//! and only the thread that forked. Anything childfd keeps for the whole
//! process is then wrong in the copy: a `MAP_SHARED` spawn arena is the
//! *same* memory in both processes, an epoll fd is the *same* epoll
//! instance, a helper thread is gone while its channel still looks alive,
//! and a mutex may be held by a thread that no longer exists.
//!
//! [`PerProcess`] holds one instance per process: it remembers the pid that
//! made it, and a caller in another pid (a forked copy) gets a new instance.
//! The copy's view of the old one is left alone (leaked, or tidied up by the
//! caller without blocking and without touching anything the parent shares,
//! such as an epoll instance), so the parent is never disturbed.
//!
//! The pid comes from [`super::env::getpid`]: glibc has not cached it
//! since 2.25, and a raw `fork`/`clone` syscall would bypass
//! `pthread_atfork` handlers, so childfd keeps it in a page the kernel
//! wipes in every forked copy (`MADV_WIPEONFORK`): one load per check,
//! and a copy however made asks the kernel afresh. Where `madvise` only
//! pretends to work (qemu-user, some seccomp profiles) each check is a
//! `getpid` system call instead.
//!
//! [`fork(2)`]: https://man7.org/linux/man-pages/man2/fork.2.html

use std::sync::atomic::{AtomicPtr, Ordering};

struct Slot<T> {
    pid: i32,
    value: T,
}

/// One `T` per process: see the module docs. Lock-free: finding the
/// instance is an atomic load and a pid compare, so a `fork()` while
/// another thread uses it leaves the copy nothing locked.
pub struct PerProcess<T: 'static> {
    current: AtomicPtr<Slot<T>>,
}

impl<T: Send + Sync + 'static> Default for PerProcess<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for PerProcess<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerProcess").finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    /// Empty; the first [`get`](Self::get) makes the instance.
    pub const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The calling process's instance, if made already.
    pub fn peek(&'static self) -> Option<&'static T> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: a published slot is never freed (see `get`).
        let slot = unsafe { p.as_ref() }?;
        (slot.pid == crate::sys::env::getpid()).then_some(&slot.value)
    }

    /// The calling process's instance, made by `init` on first use in this
    /// process. `stale` is given the instance a parent process made before
    /// it forked us (once, by the thread that replaces it), to tidy up what
    /// it safely can; it stays allocated.
    pub fn get(&'static self, init: impl Fn() -> T, stale: impl Fn(&T)) -> &'static T {
        let pid = crate::sys::env::getpid();
        loop {
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: a published slot is never freed.
            if let Some(slot) = unsafe { p.as_ref() } {
                if slot.pid == pid {
                    return &slot.value;
                }
            }
            let new = Box::into_raw(Box::new(Slot { pid, value: init() }));
            match self
                .current
                .compare_exchange(p, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: as above; the old slot stays allocated (other
                    // threads of this process may still read it).
                    if let Some(old) = unsafe { p.as_ref() } {
                        stale(&old.value);
                    }
                    // SAFETY: just published; never freed.
                    return unsafe { &(*new).value };
                }
                // Another thread of this process won: ours was never
                // published, so it is ours to free.
                // SAFETY: `new` came from Box::into_raw above.
                Err(_) => drop(unsafe { Box::from_raw(new) }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instance_within_a_process() {
        static P: PerProcess<u32> = PerProcess::new();
        assert!(P.peek().is_none());
        let a: *const u32 = P.get(|| 7, |_| panic!("not stale"));
        let b: *const u32 = P.get(|| 8, |_| panic!("not stale"));
        assert_eq!(a, b);
        assert_eq!(*P.peek().unwrap(), 7);
    }
}
