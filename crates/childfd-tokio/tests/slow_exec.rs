//! A child slow to reach `execve` must not hold the runtime: the clone
//! (`CLONE_VFORK`) suspends the spawning thread until the child execs, and
//! a worker suspended that way runs no other task, timers included (the
//! chaos soak saw deadlines fire seconds late on a two-worker runtime
//! under CPU load).
//!
//! Each child here is held before `execve` by a `pre_exec` closure that
//! reads one byte from a gate pipe; the byte is written by a sibling task
//! when its short timer fires. So the child can exec only after the
//! sibling's timer has fired: if the spawn held the only thread, the two
//! would wait for each other until the watchdog (a plain thread) opens the
//! gate, and the test fails saying so. Order, not milliseconds.

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use childfd::Command;
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::SLACK;

/// Who opened the gate.
const NOBODY: u8 = 0;
const SIBLING: u8 = 1;
const WATCHDOG: u8 = 2;

/// A gate: the pipe the child's `pre_exec` reads, and who opened it.
struct Gate {
    read: OwnedFd,
    write: OwnedFd,
    opened_by: AtomicU8,
}

impl Gate {
    fn new() -> Arc<Gate> {
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        Arc::new(Gate {
            read,
            write,
            opened_by: AtomicU8::new(NOBODY),
        })
    }

    /// Opens the gate (once) in the name of `who`.
    fn open(&self, who: u8) {
        if self
            .opened_by
            .compare_exchange(NOBODY, who, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            rustix::io::write(&self.write, b"x").expect("write to the gate");
        }
    }

    /// `true`, held before `execve` until the gate opens.
    fn command(&self) -> Command {
        let fd = self.read.as_raw_fd();
        let mut cmd = Command::new("true");
        let hold = move || {
            let mut byte = [0u8; 1];
            // SAFETY: `fd` is the gate's read end, open in the parent for
            // the whole test, so open in this copy of it.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            loop {
                match rustix::io::read(fd, &mut byte) {
                    Err(rustix::io::Errno::INTR) => {}
                    r => return r.map(drop).map_err(Into::into),
                }
            }
        };
        // SAFETY: the closure makes raw read(2) calls on a stack buffer:
        // no allocation, no lock.
        unsafe { cmd.pre_exec(hold) };
        cmd
    }
}

/// How the test spawns the held child.
#[derive(Debug, Clone, Copy)]
enum Way {
    SpawnAsync,
    OutputAsync,
    JobSet,
}

async fn spawn_and_finish(way: Way, mut cmd: Command) {
    match way {
        Way::SpawnAsync => {
            let child = cmd.spawn_async().await.expect("spawn");
            let st = tokio::time::timeout(SLACK, child.wait()).await;
            assert!(st.expect("exit").expect("status").success());
        }
        Way::OutputAsync => {
            let out = cmd.output_async(Options::new()).await.expect("output");
            assert!(out.status.expect("status").success());
        }
        Way::JobSet => {
            let mut jobs = JobSet::new(1);
            jobs.push(cmd, Options::new().deadline(SLACK));
            while let Some(ev) = jobs.next().await {
                if let Event::Exited(r) = ev {
                    assert!(r.status.expect("status").success());
                }
            }
            assert_eq!(jobs.summary().succeeded, 1);
        }
    }
}

/// A single-thread runtime of `flavor`: one thread runs every task.
fn one_thread_runtime(flavor: common::Flavor) -> tokio::runtime::Runtime {
    match flavor {
        common::Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        common::Flavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1);
            b
        }
    }
    .enable_all()
    .build()
    .expect("runtime")
}

#[track_caller]
fn check(way: Way) {
    common::warm_up();
    for flavor in [common::Flavor::CurrentThread, common::Flavor::MultiThread] {
        let h = childfd_testbin::Hygiene::start();
        let gate = Gate::new();
        let rt = one_thread_runtime(flavor);
        // Bounds the test if the runtime's thread is held: opens the gate.
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let dog = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                if watch.recv_timeout(SLACK).is_err() {
                    gate.open(WATCHDOG);
                }
            })
        };
        let cmd = gate.command();
        let sibling_gate = gate.clone();
        rt.block_on(async move {
            // As a spawned task, so that it runs on the worker.
            let body = tokio::spawn(async move {
                let sibling = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    sibling_gate.open(SIBLING);
                });
                spawn_and_finish(way, cmd).await;
                sibling.await.expect("sibling");
            });
            tokio::time::timeout(SLACK * 3, body)
                .await
                .expect("bounded")
                .expect("body");
        });
        let _ = done.send(());
        dog.join().expect("watchdog");
        rt.shutdown_timeout(SLACK);
        assert_eq!(
            gate.opened_by.load(Ordering::SeqCst),
            SIBLING,
            "{way:?} on a {flavor:?} runtime: the sibling task's timer did not fire while \
             the child waited to exec (the watchdog opened the gate after {SLACK:?}): \
             the spawn held the runtime's only thread"
        );
        drop(gate);
        h.finish(common::LIBRARY_THREADS);
    }
}

#[test]
fn a_child_slow_to_exec_does_not_hold_other_tasks_timers_with_spawn_async() {
    check(Way::SpawnAsync);
}

#[test]
fn a_child_slow_to_exec_does_not_hold_other_tasks_timers_with_output_async() {
    check(Way::OutputAsync);
}

#[test]
fn a_child_slow_to_exec_does_not_hold_other_tasks_timers_in_a_job_set() {
    check(Way::JobSet);
}
