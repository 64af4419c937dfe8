//! A child that exits while its spawning thread is inside another spawn
//! must not leave a SIGCHLD queued for the process (with SIGCHLD at its
//! default, ignored): the queued signal wakes another thread (an event
//! loop in `epoll_wait`) only to be discarded, once per child, which cost
//! a program spawning many short jobs a wake-up and two context switches
//! each.
//!
//! The scenario runs in a process of its own (`main` re-runs this binary
//! with `CHILDFD_SIGCHLD_SCENARIO` set), whose threads it controls: the
//! main thread spawns, a watcher thread blocks SIGCHLD and reads it through
//! a `signalfd`, so a SIGCHLD queued for the process can reach nobody else.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use childfd::Command;
use childfd_testbin::{EXIT0, PAUSE};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "a_child_exiting_during_another_spawn_queues_no_sigchld_for_the_process",
        a_child_exiting_during_another_spawn_queues_no_sigchld_for_the_process,
    ),
    (
        "a_sigchld_the_spawning_thread_blocks_is_not_discarded_by_a_spawn",
        a_sigchld_the_spawning_thread_blocks_is_not_discarded_by_a_spawn,
    ),
];

/// Longest the scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// Bound of every wait for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long a SIGCHLD that was queued has to show up on the `signalfd`
/// once the exited child's pidfd is readable (the kernel queues it in the
/// same exit notification, microseconds apart).
const SIGNAL_SLACK: Duration = Duration::from_millis(300);

fn main() {
    childfd_testbin::scenario::main("CHILDFD_SIGCHLD_SCENARIO", SCENARIOS, SCENARIO_LIMIT);
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is writable for two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    (r, w)
}

/// Whether `fd` became readable within `limit`.
#[track_caller]
fn readable_within(fd: BorrowedFd<'_>, limit: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 {
            return r == 1;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
    }
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above.
    unsafe { libc::sigaddset(&mut set, libc::SIGCHLD) };
    set
}

/// The watcher thread: blocks SIGCHLD and opens a `signalfd` for it; once
/// the child spawned second is held in its `pre_exec` step (so the main
/// thread is inside that spawn), kills the first child and waits for its
/// exit; then looks for a SIGCHLD on the `signalfd` and lets the spawn
/// go on. Returns the pid a SIGCHLD came from, if one came.
fn watch(first_pidfd: RawFd, started: OwnedFd, gate: OwnedFd) -> Option<u32> {
    let set = sigchld_set();
    // SAFETY: a valid set; this thread's mask only.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(r, 0, "pthread_sigmask");
    // SAFETY: a valid set; a new fd.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    assert!(sfd >= 0, "signalfd: {}", std::io::Error::last_os_error());
    // SAFETY: signalfd returned a fresh fd nothing else owns.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let release = || {
        // SAFETY: writes one byte from a live buffer.
        let n = unsafe { libc::write(gate.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        assert_eq!(n, 1, "gate write");
    };
    assert!(
        readable_within(started.as_fd(), PATIENCE),
        "the second child never reached its pre_exec step"
    );
    // SAFETY: the pidfd stays open: the main thread keeps its child until
    // this thread is joined.
    let pidfd = unsafe { BorrowedFd::borrow_raw(first_pidfd) };
    let r = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    assert!(r.is_ok(), "pidfd_send_signal: {r:?}");
    assert!(
        readable_within(pidfd, PATIENCE),
        "the first child did not exit"
    );
    let from = readable_within(sfd.as_fd(), SIGNAL_SLACK).then(|| {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe {
            libc::read(
                sfd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        assert_eq!(n, size as isize, "signalfd read");
        info.ssi_pid
    });
    release();
    from
}

/// The first child exits (killed) while the main thread is suspended in
/// the `CLONE_VFORK` clone of a second one (held in its `pre_exec` step).
/// Its SIGCHLD is meant for nobody (SIGCHLD is ignored): it must be
/// dropped when sent, not queued for the process, where it would wake a
/// thread that does not block it (here it would wait for the watcher's
/// `signalfd`).
fn a_child_exiting_during_another_spawn_queues_no_sigchld_for_the_process() {
    // SAFETY: reads the disposition only.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action and a writable old one.
    let r = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) };
    assert_eq!(r, 0);
    assert_eq!(old.sa_sigaction, libc::SIG_DFL, "SIGCHLD starts at SIG_DFL");

    let first = Command::new(PAUSE).spawn().expect("spawn the first child");
    let (started_r, started_w) = pipe();
    let (gate_r, gate_w) = pipe();
    let first_pidfd = first.as_raw_fd();
    let watcher = std::thread::spawn(move || watch(first_pidfd, started_r, gate_w));

    let (sw, gr) = (started_w.as_raw_fd(), gate_r.as_raw_fd());
    let mut second = Command::new(EXIT0);
    let hold = move || {
        let mut byte = 0u8;
        // SAFETY: a raw write on an fd this forked child inherited, from a
        // live buffer.
        let wrote = unsafe { libc::write(sw, b"s".as_ptr().cast(), 1) } == 1;
        // SAFETY: a raw read into a live byte.
        let ok = wrote && unsafe { libc::read(gr, (&mut byte as *mut u8).cast(), 1) } == 1;
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::other("the gate failed"))
        }
    };
    // SAFETY: the closure makes only raw write/read calls.
    unsafe { second.pre_exec(hold) };
    let second = second.spawn().expect("spawn the second child");
    let from = watcher.join().expect("watcher");
    drop((started_w, gate_r));

    let first_status = first.wait().expect("wait for the first child");
    assert_eq!(first_status.signal(), Some(childfd::Signal::KILL));
    assert!(second.wait().expect("wait for the second").success());
    assert_eq!(
        from,
        None,
        "a SIGCHLD (from pid {from:?}, the first child is {}) was queued for the process \
         while its spawning thread was inside another spawn",
        first.id()
    );
    assert!(childfd_testbin::children().is_empty(), "no child left");
}

/// The host's own child (std's, from a thread of the host's) whose exit
/// the host learns from a `signalfd` on SIGCHLD, blocked in every thread.
/// It exits while a childfd spawn holds the main thread (a `pre_exec`
/// step). The spawning thread must not unblock SIGCHLD for the spawn:
/// the kernel would hand the queued signal to it, where `SIG_DFL` drops
/// it, and the host would never hear of its child's exit.
fn a_sigchld_the_spawning_thread_blocks_is_not_discarded_by_a_spawn() {
    let set = sigchld_set();
    // SAFETY: a valid set; this thread's mask (inherited by the watcher).
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(r, 0, "pthread_sigmask");
    // SAFETY: a valid set; a new fd.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    assert!(sfd >= 0, "signalfd: {}", std::io::Error::last_os_error());
    // SAFETY: signalfd returned a fresh fd nothing else owns.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };

    let (started_r, started_w) = pipe();
    let (gate_r, gate_w) = pipe();
    let watcher = std::thread::spawn(move || {
        let mut own = std::process::Command::new(PAUSE)
            .spawn()
            .expect("spawn the host's own child");
        assert!(
            readable_within(started_r.as_fd(), PATIENCE),
            "the childfd child never reached its pre_exec step"
        );
        own.kill().expect("kill the host's own child");
        // Wait (without reaping) until it has exited: its SIGCHLD is sent.
        // SAFETY: all-zero siginfo_t is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT;
        // SAFETY: a valid out-pointer; `own` is this process's unreaped child.
        let r = unsafe { libc::waitid(libc::P_PID, own.id(), &mut info, flags) };
        assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
        // SAFETY: writes one byte from a live buffer.
        let n = unsafe { libc::write(gate_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        assert_eq!(n, 1, "gate write");
        own
    });

    let (sw, gr) = (started_w.as_raw_fd(), gate_r.as_raw_fd());
    let mut cmd = Command::new(PAUSE);
    let hold = move || {
        let mut byte = 0u8;
        // SAFETY: a raw write on an fd this forked child inherited, from a
        // live buffer.
        let wrote = unsafe { libc::write(sw, b"s".as_ptr().cast(), 1) } == 1;
        // SAFETY: a raw read into a live byte.
        let ok = wrote && unsafe { libc::read(gr, (&mut byte as *mut u8).cast(), 1) } == 1;
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::other("the gate failed"))
        }
    };
    // SAFETY: the closure makes only raw write/read calls.
    unsafe { cmd.pre_exec(hold) };
    let spawned = cmd.spawn().expect("spawn the childfd child");
    let mut own = watcher.join().expect("watcher");
    drop((started_w, gate_r));

    let from = readable_within(sfd.as_fd(), SIGNAL_SLACK).then(|| {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe {
            libc::read(
                sfd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        assert_eq!(n, size as isize, "signalfd read");
        info.ssi_pid
    });
    spawned.kill().expect("kill the childfd child");
    let status = spawned.wait().expect("wait for the childfd child");
    assert_eq!(status.signal(), Some(childfd::Signal::KILL));
    let own_pid = own.id();
    let own_status = own.wait().expect("reap the host's own child");
    assert!(own_status.code().is_none(), "killed: {own_status:?}");
    assert_eq!(
        from,
        Some(own_pid),
        "the SIGCHLD of the host's own child (pid {own_pid}), blocked in every thread, \
         never reached its signalfd: a spawn unblocked SIGCHLD and the kernel dropped it there"
    );
    assert!(childfd_testbin::children().is_empty(), "no child left");
}
