//! The `pidfd_open` probe: a thread with seccomp filters tries the call in
//! a throwaway copy of itself (a filter may kill the caller) and remembers
//! the answer until its filters change.

use std::time::Duration;

/// A probe copy that died of something other than its filters (here a
/// `SIGKILL`, as from the OOM killer) was taken for a refusal and
/// remembered: the thread never used `pidfd_open` again until its filters
/// changed, although they allow it.
#[test]
fn a_probe_copy_killed_by_sigkill_is_not_remembered_as_a_refusal() {
    let fds = childfd_testbin::open_fds();
    let answers = std::thread::spawn(|| {
        // Any filter makes the thread probe; this one allows pidfd_open.
        childfd_testbin::seccomp_deny(libc::SYS_vhangup, libc::EPERM);
        childfd::test_hooks::kill_pidfd_probe_copies(true);
        let killed = childfd::test_hooks::pidfd_open_allowed();
        childfd::test_hooks::kill_pidfd_probe_copies(false);
        (killed, childfd::test_hooks::pidfd_open_allowed())
    })
    .join()
    .unwrap();
    assert_eq!(
        answers,
        (false, true),
        "(while copies are killed, after): a killed copy's answer was remembered"
    );
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
}
