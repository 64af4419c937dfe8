//! A `fork()`ed copy that closes every fd above 2 (`close_range(3, ~0)`,
//! what a daemonizing step or a careful library does) and opens files of
//! its own, which take the lowest numbers: childfd must never touch those
//! numbers because of what they were in the parent.
//!
//! Found by `cargo xtask chaos` (fork kind with the fds kind: its copies
//! sweep and reopen before they spawn). Each copy arms `alarm(2)`, so a
//! hang ends it with SIGALRM and fails the test instead of hanging it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use childfd::Command;
use childfd_testbin::{EXIT0, PAUSE};

fn main() {
    a_forked_copy_dropping_a_child_closes_none_of_its_own_fds();
    println!("ok: a_forked_copy_dropping_a_child_closes_none_of_its_own_fds");
    a_forked_copy_gets_no_sigchld_bytes_in_its_own_files();
    println!("ok: a_forked_copy_gets_no_sigchld_bytes_in_its_own_files");
}

/// Forks; the copy runs `copy` with `alarm(20)` armed and exits with its
/// result; returns that exit code.
fn in_a_copy(copy: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the copy runs only `copy` and `_exit`s; the test process has
    // no other thread holding a lock the copy needs (childfd's own locks
    // are per process).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm has no preconditions.
        unsafe { libc::alarm(20) };
        let code = copy();
        // SAFETY: ends the copy without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let status = childfd_testbin::waitpid(pid);
    assert!(
        libc::WIFEXITED(status),
        "the forked copy did not exit (status {status:#x}; SIGALRM = hung)"
    );
    libc::WEXITSTATUS(status)
}

/// `close_range(3, ~0)`.
fn close_all_above_stdio() {
    // SAFETY: closes fds; nothing of this (single-threaded) copy uses them.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    assert_eq!(r, 0, "close_range: {}", std::io::Error::last_os_error());
}

/// Whether `fd` is still the copy's `/dev/null` (not closed, and not
/// closed and reused by something else).
fn is_null(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|p| p.as_os_str() == "/dev/null")
}

/// The parent dropped a running child, so its drop reaper holds that
/// child's pidfd. The copy, after closing everything and filling the low
/// numbers with files of its own, drops a child of its own: childfd then
/// made the copy's reaper afresh and closed "our copies of the parent's
/// adopted fds" by number, which were now the copy's files (or pidfds of
/// the copy's own children, whose waits then failed or hit another fd).
fn a_forked_copy_dropping_a_child_closes_none_of_its_own_fds() {
    let fds = childfd_testbin::open_fds();
    let parents = Command::new(PAUSE).spawn().unwrap();
    let pid = parents.id() as i32;
    drop(parents); // adopted by the drop reaper, which holds its pidfd
    assert!(childfd::pending_reaps() >= 1);
    let highest = *childfd_testbin::open_fds().iter().max().unwrap();

    let code = in_a_copy(|| {
        close_all_above_stdio();
        let mine: Vec<OwnedFd> = (3..=highest)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect();
        let child = match Command::new(PAUSE).spawn() {
            Ok(c) => c,
            Err(_) => return 2,
        };
        let paused = child.id() as i32;
        drop(child); // still running: adopted by the copy's drop reaper
        let closed = mine.iter().filter(|f| !is_null(f.as_raw_fd())).count();
        // Adopted, so not reaped yet: the pid is still that child's.
        childfd_testbin::kill(paused, libc::SIGKILL);
        let reaped =
            childfd_testbin::eventually(Duration::from_secs(10), || childfd::pending_reaps() == 0);
        // Never closed through OwnedFd: a number closed behind our back may
        // be childfd's now (its new reaper's epoll took the lowest free one).
        mine.into_iter().for_each(std::mem::forget);
        match (closed, reaped) {
            (0, true) => 0,
            (0, false) => 3,
            _ => 1,
        }
    });

    childfd_testbin::kill(pid, libc::SIGKILL);
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd::pending_reaps() == 0 && childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
    assert_ne!(code, 2, "the copy could not spawn");
    assert_ne!(
        code, 3,
        "the copy's dropped child was not reaped within 10 s"
    );
    assert_eq!(
        code, 0,
        "dropping a child in a forked copy closed files the copy had opened \
         under the numbers of the parent's adopted pidfds"
    );
}

/// The parent runs the orphan `Reaper`, whose SIGCHLD handler writes to a
/// wake-up fd by number (an eventfd then, a pipe now). The copy inherits
/// the handler; after it closed every fd and put a pipe of its own at that
/// number, each of its children's exits wrote 8 bytes into the copy's pipe.
fn a_forked_copy_gets_no_sigchld_bytes_in_its_own_files() {
    let fds = childfd_testbin::open_fds();
    let reaper = childfd::reaper::Reaper::start().unwrap();
    let before: Vec<RawFd> = childfd_testbin::open_fds().into_iter().collect();
    let eventfds: Vec<RawFd> = childfd_testbin::describe_fds()
        .into_iter()
        .filter(|(fd, what)| {
            (what.contains("eventfd") || what.contains("pipe:")) && before.contains(fd)
        })
        .map(|(fd, _)| fd)
        .collect();
    assert!(
        !eventfds.is_empty(),
        "no wake-up fd found for the SIGCHLD handler"
    );

    let code = in_a_copy(|| {
        close_all_above_stdio();
        let mut ends = [0; 2];
        // SAFETY: a valid array of two ints.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return 2;
        }
        // SAFETY: pipe2 just made it; this copy owns it.
        let rd = unsafe { OwnedFd::from_raw_fd(ends[0]) };
        // SAFETY: as above.
        let wr = unsafe { OwnedFd::from_raw_fd(ends[1]) };
        // The pipe's write end at every number the wake-up fds had.
        let placed: Vec<RawFd> = eventfds
            .iter()
            .filter(|&&n| n != rd.as_raw_fd())
            // SAFETY: dup2 onto numbers this copy closed above.
            .filter(|&&n| unsafe { libc::dup2(wr.as_raw_fd(), n) } == n)
            .copied()
            .collect();
        if placed.is_empty() {
            return 2;
        }
        for _ in 0..3 {
            if !Command::new(EXIT0).status().is_ok_and(|s| s.success()) {
                return 2;
            }
        }
        let mut buf = [0u8; 64];
        // SAFETY: reads into a valid buffer from a pipe we own.
        let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 { 1 } else { 0 }
    });

    drop(reaper);
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    // The wake-up pipe is made once per process and kept (a handler may be
    // about to write to it).
    let leaked: Vec<RawFd> = childfd_testbin::leaked_fds_since(&fds)
        .into_iter()
        .filter(|fd| !eventfds.contains(fd))
        .collect();
    assert_eq!(leaked, Vec::<i32>::new());
    assert_ne!(code, 2, "the copy could not set up or spawn");
    assert_eq!(
        code, 0,
        "the inherited SIGCHLD handler wrote into a pipe the forked copy \
         opened at the number of the parent's wake-up fd"
    );
}
