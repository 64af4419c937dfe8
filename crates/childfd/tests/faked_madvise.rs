//! childfd's fork check where `madvise` only pretends to work.
//!
//! childfd answers "which process am I?" from a page marked
//! `MADV_WIPEONFORK`, which the kernel zeroes in a forked copy. qemu-user
//! and some sandboxes answer `0` to any `madvise` without doing anything;
//! a seccomp filter returning errno 0 for `madvise` does exactly that
//! here. The page is then never wiped, and a copy made by `fork()` read the
//! parent's pid from it: it took itself for the parent.
//!
//! `harness = false`: the filter must be in force before childfd's first
//! look at the pid in this process, on the thread that spawns.

use std::time::Duration;

use childfd::Command;
use childfd_testbin::{Fork, PAUSE};

fn main() {
    childfd_testbin::seccomp_deny(libc::SYS_madvise, 0);
    assert!(
        madvise_is_faked(),
        "premise: the seccomp filter should make madvise answer 0 to any advice"
    );
    a_forked_copy_under_a_faked_madvise_does_not_take_itself_for_the_parent();
    println!("ok: a_forked_copy_under_a_faked_madvise_does_not_take_itself_for_the_parent");
}

/// Whether `madvise` accepts an advice value that does not exist.
fn madvise_is_faked() -> bool {
    // SAFETY: a fresh private anonymous page; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: the page just made; a bogus advice changes nothing.
    let faked = unsafe { libc::madvise(p, 4096, -1) } == 0;
    // SAFETY: the page just made; nothing refers to it.
    unsafe { libc::munmap(p, 4096) };
    faked
}

/// A copy made by a raw `fork` system call (no `pthread_atfork` handler
/// runs) drops an inherited `kill_on_drop` handle. The copy must see that
/// the child is not its own and leave it running; with the pid cached on a
/// page the faked `madvise` never marked, it killed the parent's child.
fn a_forked_copy_under_a_faked_madvise_does_not_take_itself_for_the_parent() {
    let fds = childfd_testbin::open_fds();
    let child = Command::new(PAUSE).kill_on_drop(true).spawn().unwrap();
    // SAFETY: the process has one thread (harness = false, nothing started
    // one).
    let survived = unsafe { childfd_testbin::a_forked_copy_drops(child, Fork::RawSyscall) };
    assert!(
        survived,
        "the forked copy took itself for the parent (pid cached on a page \
         madvise never marked wipe-on-fork) and killed the parent's child"
    );
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
}
