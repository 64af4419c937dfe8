//! Who keeps a pipe open: only processes that can still write to it.

use std::time::{Duration, Instant};

use childfd::Command;
use childfd_io::{CommandExt, Options, Outcome};
use childfd_testbin::{Hygiene, assert_no_survivors, eventually, new_tag, tagged};

#[test]
fn a_fork_holding_only_the_read_end_is_named_as_a_pipe_holder() {
    let h = Hygiene::start();
    let tag = new_tag("reader");
    let dir = std::env::temp_dir().join(format!("childfd-io-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("sleep.sh"),
        "echo started\nsh -c 'exec sleep 1000' &\n",
    )
    .unwrap();
    // Once the writer (the sleep) runs, the host's output loop holds the
    // read ends: fork the host then, so the fork holds only read ends.
    let fork = {
        let tag = tag.clone();
        std::thread::spawn(move || {
            let writer_up = eventually(Duration::from_secs(20), || {
                tagged(&tag).iter().any(|p| p.comm == "sleep")
            });
            assert!(writer_up, "the sleep never started");
            let pid = childfd_testbin::fork_sleeper(Duration::from_secs(20));
            (pid, Instant::now())
        })
    };
    let out = Command::new("sh")
        .arg(dir.join("sleep.sh"))
        .env("CHILDFD_TEST_TAG", &tag)
        .output_with(
            Options::new()
                .wait_delay(Duration::from_secs(2))
                .kill_tree_on_held_pipes(true),
        )
        .unwrap();
    let returned = Instant::now();
    let (forked, forked_at) = fork.join().unwrap();
    childfd_testbin::kill(forked, libc_sigkill());
    childfd_testbin::waitpid(forked);
    assert!(
        forked_at + Duration::from_millis(500) < returned,
        "the fork came too late to be seen"
    );
    assert_eq!(out.outcome, Outcome::PipesHeldOpen);
    let pids: Vec<u32> = out.holders.iter().map(|h| h.pid).collect();
    assert!(
        out.holders.iter().any(|h| h.name == "sleep"),
        "the writer must be named: {:?}",
        out.holders
    );
    assert!(
        !pids.contains(&(forked as u32)),
        "the fork {forked} holds only the read end, yet was named: {:?}",
        out.holders
    );
    assert_no_survivors(&tag);
    std::fs::remove_dir_all(dir).unwrap();
    h.finish(3);
}

/// SIGKILL's number (Linux, every architecture childfd supports).
fn libc_sigkill() -> i32 {
    9
}

/// Issue: holders were read from `/proc/<pid>/fd` only, the main thread's
/// fd table. A process whose write end lives only in a thread that did
/// `unshare(CLONE_FILES)` (its main thread closed it, or has exited) keeps
/// the reader waiting but was not named.
#[test]
fn a_writer_only_in_a_per_thread_fd_table_is_named_as_a_pipe_holder() {
    let h = Hygiene::start();
    let (r, w) = std::io::pipe().unwrap();
    let ino = childfd_io::engine::pipe_inode(&r).unwrap();
    let alive_leader = thread_table_writer(&r, &w, false);
    let gone_leader = thread_table_writer(&r, &w, true);
    drop(w);
    // Neither process shows the write end in /proc/<pid>/fd ...
    let in_main_table: Vec<_> = [alive_leader, gone_leader]
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy() == format!("pipe:[{ino}]"))
                })
        })
        .collect();
    // ... yet the reader sees no EOF: someone can still write.
    let mut p = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let ready = rustix::event::poll(&mut p, Some(&ts)).unwrap();
    drop(r);
    let holders = childfd_io::engine::find_holders(&[ino]);
    for pid in [alive_leader, gone_leader] {
        childfd_testbin::kill(pid, libc_sigkill());
        childfd_testbin::waitpid(pid);
    }
    assert!(
        in_main_table.is_empty(),
        "{in_main_table:?} still have the write end in their main table"
    );
    assert_eq!(ready, 0, "the reader saw EOF: no writer left");
    let pids: Vec<u32> = holders.iter().map(|h| h.pid).collect();
    assert!(
        pids.contains(&(alive_leader as u32)),
        "a writer in a thread's own fd table (main thread alive) was not named: {holders:?}"
    );
    assert!(
        pids.contains(&(gone_leader as u32)),
        "a writer in a thread's own fd table (main thread exited) was not named: {holders:?}"
    );
    h.finish(3);
}

/// Forks a process in which a second thread unshares its fd table (so it
/// keeps `w`), after which the main thread closes both ends in its own
/// table and,
/// with `leader_exits`, ends itself (the process lives on in the thread).
/// Returns once that is done; the caller kills and reaps it.
fn thread_table_writer(
    r: &std::io::PipeReader,
    w: &std::io::PipeWriter,
    leader_exits: bool,
) -> i32 {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (mut ready_r, ready_w) = std::io::pipe().unwrap();
    let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
    // SAFETY: the copy only makes a thread, closes an fd and sleeps.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut ready = ready_w;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: plain syscall on this thread's own fd table.
            let r = unsafe { libc::unshare(libc::CLONE_FILES) };
            tx.send(r).unwrap();
            // SAFETY: plain syscall; ends when the test kills the process.
            unsafe { libc::pause() };
        });
        let ok = rx.recv() == Ok(0);
        // SAFETY: closes both ends in the main thread's table only.
        unsafe { libc::close(w) };
        // SAFETY: as above.
        unsafe { libc::close(r) };
        let _ = ready.write_all(if ok { b"k" } else { b"e" });
        drop(ready);
        if leader_exits {
            // SAFETY: ends only this (the main) thread.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
        loop {
            // SAFETY: plain syscall.
            unsafe { libc::pause() };
        }
    }
    drop(ready_w);
    let mut b = [0u8; 1];
    ready_r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"k", "unshare(CLONE_FILES) failed in the helper");
    pid
}

/// A thread of the host itself with an fd table of its own
/// (`unshare(CLONE_FILES)` while the pipe was open) keeps a private copy of
/// the write end: the reader waits, and the holder search skipped the host
/// as a whole, so nobody was named.
#[test]
fn a_host_thread_with_a_private_fd_table_holding_the_pipe_is_named_as_a_holder() {
    let h = Hygiene::start();
    let (r, w) = std::io::pipe().unwrap();
    let ino = childfd_io::engine::pipe_inode(&r).unwrap();
    let (unshared_tx, unshared_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: plain syscall on this thread's own fd table.
        let r = unsafe { libc::unshare(libc::CLONE_FILES) };
        unshared_tx.send(r).unwrap();
        // Holds its copy of both ends until told; its table goes with it.
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    assert_eq!(unshared_rx.recv().unwrap(), 0, "unshare(CLONE_FILES)");
    drop(w);
    // Our own table has no write end, yet the reader sees no EOF.
    let mut p = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let ready = rustix::event::poll(&mut p, Some(&ts)).unwrap();
    let holders = childfd_io::engine::find_holders(&[ino]);
    done_tx.send(()).unwrap();
    thread.join().unwrap();
    drop(r);
    assert_eq!(ready, 0, "the reader saw EOF: no writer left");
    assert!(
        holders.iter().any(|h| h.pid == std::process::id()),
        "this process's thread with its own fd table holds the write end, yet was not named: {holders:?}"
    );
    h.finish(3);
}
