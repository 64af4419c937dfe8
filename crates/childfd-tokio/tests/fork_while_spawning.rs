//! A `fork()` by one thread while others spawn: only the forking thread
//! exists in the copy, and any lock another thread held at that moment
//! stays held there for ever. Finding the process's spawner threads must
//! take no lock the parent's spawns hold, so that the copy can always
//! start its own and spawn.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use childfd::Command;
use childfd_testbin::Hygiene;
use childfd_tokio::CommandExt;
use common::{Flavor, LIBRARY_THREADS, runtime};

/// Forks made while the other threads spawn.
const FORKS: usize = 300;
/// Spawns queued and dropped per real child awaited.
const BURST: usize = 1024;
/// How long a copy may take to spawn, wait and exit.
const COPY_LIMIT: Duration = Duration::from_secs(10);

/// Spawns without pause until `stop`: bursts of spawns queued and
/// dropped at once (each one trip through `spawn_async`'s way to the
/// spawner's queue; the command is invalid, refused by the core crate
/// before any clone, so the spawner threads keep up), each burst followed
/// by a real child awaited (the queue is first in, first out, so the
/// bursts never pile up).
fn hammer(flavor: Flavor, stop: Arc<AtomicBool>) {
    runtime(flavor).block_on(async move {
        let mut cx = Context::from_waker(Waker::noop());
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..BURST {
                let mut cmd = Command::new("");
                let mut queued = pin!(cmd.spawn_async());
                let _ = queued.as_mut().poll(&mut cx);
            }
            let child = Command::new("true").spawn_async().await.expect("spawn");
            assert!(child.wait().await.expect("status").success());
        }
    });
}

/// In the forked copy: a fresh runtime, one child spawned and waited
/// for; the copy's exit status says whether that worked.
fn in_the_copy() -> ! {
    let ok = std::panic::catch_unwind(|| {
        runtime(Flavor::CurrentThread).block_on(async {
            let child = Command::new("true").spawn_async().await.ok()?;
            child.wait().await.ok().filter(|s| s.success())
        })
    });
    let code = if matches!(ok, Ok(Some(_))) { 0 } else { 1 };
    // SAFETY: ends the copy without running the parent's atexit handlers
    // or destructors.
    unsafe { libc::_exit(code) }
}

/// Waits for the copy `pid` up to [`COPY_LIMIT`]; SIGKILLs and reaps it
/// if it hangs. Its exit code, or `None` if it hung.
fn wait_copy(pid: libc::pid_t) -> Option<i32> {
    let end = Instant::now() + COPY_LIMIT;
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our own unreaped child; `status` is a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128
            });
        }
        if Instant::now() >= end {
            // SAFETY: as above: unreaped, so the pid is still the copy's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_copy_forked_while_other_threads_spawn_can_spawn_async() {
    common::warm_up();
    let h = Hygiene::start();
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = [Flavor::CurrentThread, Flavor::MultiThread]
        .into_iter()
        .cycle()
        .take(4)
        .map(|flavor| {
            let stop = stop.clone();
            std::thread::spawn(move || hammer(flavor, stop))
        })
        .collect();
    let (mut hung, mut failed) = (0, 0);
    for _ in 0..FORKS {
        // SAFETY: the copy runs only `in_the_copy`, which ends with
        // `_exit`; what it does in between is what this test checks.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            in_the_copy();
        }
        match wait_copy(pid) {
            None => hung += 1,
            Some(0) => {}
            Some(_) => failed += 1,
        }
        if hung + failed > 0 {
            break; // one is enough (and each hang costs the time limit)
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in hammers {
        t.join().expect("hammer");
    }
    assert_eq!(
        (hung, failed),
        (0, 0),
        "of {FORKS} copies forked while other threads spawned, {hung} hung \
         (killed after {COPY_LIMIT:?}) and {failed} could not spawn"
    );
    h.finish(LIBRARY_THREADS);
}
