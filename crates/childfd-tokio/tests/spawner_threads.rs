//! The spawner threads serve every caller: a reply made is never held
//! while the same thread runs a spawn that may wait for that reply's
//! task, and a panic on a spawner thread costs neither the thread nor
//! another job's reply.
//!
//! Children here are held before `execve` by `pre_exec` closures that
//! wait on gates (pipes): each tells when it is held, and is let go by
//! the test, by another task, or by a watchdog thread that bounds the
//! test (the test then fails saying who opened which gate).

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use childfd::Command;
use childfd_testbin::{new_tag, tagged};
use childfd_tokio::CommandExt;
use common::{SLACK, on_both};

/// Who opened a gate.
const NOBODY: u8 = 0;
const TASK: u8 = 1;
const TEST: u8 = 2;
const WATCHDOG: u8 = 3;

/// A child held before `execve` until the gate opens; `held` is readable
/// once the child is waiting.
struct Gate {
    held_rx: OwnedFd,
    held_tx: OwnedFd,
    open_rx: OwnedFd,
    open_tx: OwnedFd,
    opened_by: AtomicU8,
}

impl Gate {
    fn new() -> Arc<Gate> {
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let ((held_rx, held_tx), (open_rx, open_tx)) = (pipe(), pipe());
        Arc::new(Gate {
            held_rx,
            held_tx,
            open_rx,
            open_tx,
            opened_by: AtomicU8::new(NOBODY),
        })
    }

    /// Opens the gate (once) in the name of `who`.
    fn open(&self, who: u8) {
        let first =
            self.opened_by
                .compare_exchange(NOBODY, who, Ordering::SeqCst, Ordering::SeqCst);
        if first.is_ok() {
            rustix::io::write(&self.open_tx, b"x").expect("write to the gate");
        }
    }

    fn opened_by(&self) -> u8 {
        self.opened_by.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until a child is held at this gate.
    async fn wait_held(self: &Arc<Gate>) -> bool {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut fds = [rustix::event::PollFd::new(
                &gate.held_rx,
                rustix::event::PollFlags::IN,
            )];
            let limit = rustix::time::Timespec {
                tv_sec: SLACK.as_secs() as i64,
                tv_nsec: 0,
            };
            rustix::event::poll(&mut fds, Some(&limit)).expect("poll") == 1
        })
        .await
        .expect("poll task")
    }

    /// `sleep 1000` tagged `tag`, held before `execve` until the gate
    /// opens; the closure owns `extra` (dropped with the command).
    fn command<T: Send + Sync + 'static>(&self, tag: &str, extra: T) -> Command {
        let (held, open) = (self.held_tx.as_raw_fd(), self.open_rx.as_raw_fd());
        let mut cmd = Command::new("sleep");
        cmd.arg("1000").env("CHILDFD_TEST_TAG", tag);
        let hold = move || {
            let _owned = &extra;
            // SAFETY: the gate's fd, open in the parent for the whole
            // test, so open in this copy of it.
            let held = unsafe { BorrowedFd::borrow_raw(held) };
            // SAFETY: as above.
            let open = unsafe { BorrowedFd::borrow_raw(open) };
            rustix::io::write(held, b"h")?;
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(open, &mut byte) {
                    Err(rustix::io::Errno::INTR) => {}
                    r => return r.map(drop).map_err(Into::into),
                }
            }
        };
        // SAFETY: the closure makes raw write(2) and read(2) calls on a
        // stack buffer: no allocation, no lock.
        unsafe { cmd.pre_exec(hold) };
        cmd
    }
}

/// Opens `gates` after [`SLACK`] unless `done` is sent first.
fn watchdog(gates: Vec<Arc<Gate>>) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if watch.recv_timeout(SLACK).is_err() {
            for g in &gates {
                g.open(WATCHDOG);
            }
        }
    });
    (done, dog)
}

/// Kills the tagged `sleep`s the test made.
async fn end(tag: &str) {
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || {
        childfd_testbin::kill_tagged(&tag);
        childfd_testbin::assert_no_survivors(&tag);
    })
    .await
    .expect("kill");
}

/// One spawner thread is held by a slow child; the other gets job A (a
/// plain `sleep`) and, queued right behind it, job B whose `pre_exec`
/// waits until A's task has its child. Batching B behind A with A's
/// reply held would leave them waiting for each other.
#[test]
fn a_pre_exec_waiting_for_an_earlier_jobs_task_does_not_deadlock_the_spawner() {
    on_both(|flavor| async move {
        let tag = new_tag("batch");
        let (busy, b_gate) = (Gate::new(), Gate::new());
        let (done, dog) = watchdog(vec![busy.clone(), b_gate.clone()]);
        let mut busy_cmd = busy.command(&tag, ());
        let busy_job = tokio::spawn(async move { busy_cmd.spawn_async().await });
        assert!(busy.wait_held().await, "premise: a spawner thread is held");
        let mut a = Command::new("sleep");
        a.arg("1000").env("CHILDFD_TEST_TAG", &tag);
        let mut b = b_gate.command(&tag, ());
        let a_task = async {
            let child = a.spawn_async().await.expect("spawn A");
            b_gate.open(TASK); // A's task has its child: B may go on
            child
        };
        let (a_child, b_child) = tokio::join!(a_task, b.spawn_async());
        busy.open(TEST);
        let busy_child = busy_job.await.expect("task").expect("spawn");
        let _ = done.send(());
        dog.join().expect("watchdog");
        drop((a_child, b_child.expect("spawn B"), busy_child));
        end(&tag).await;
        assert_eq!(
            b_gate.opened_by(),
            TASK,
            "{flavor:?}: B's pre_exec waited for A's task, which never got its child: the \
             spawner thread held A's reply while it spawned B (the watchdog let B go)"
        );
    });
}

/// Panics when dropped: a capture of a `pre_exec` closure, dropped on
/// the spawner thread with a cancelled job's command.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop dropped (as the test means)");
    }
}

/// A job is cancelled while its child waits before `execve`; its command
/// is dropped on the spawner thread when the reply cannot be sent, and a
/// value its `pre_exec` closure owns panics in `Drop`. Both spawner
/// threads must still serve afterwards (two held children at once).
#[test]
fn a_panic_on_a_spawner_thread_loses_neither_the_thread_nor_later_jobs() {
    on_both(|flavor| async move {
        let tag = new_tag("panic");
        let doomed = Gate::new();
        let mut cmd = doomed.command(&tag, PanicOnDrop);
        let job = tokio::spawn(async move { cmd.spawn_async().await.map(drop) });
        assert!(
            doomed.wait_held().await,
            "premise: the doomed child is held"
        );
        job.abort();
        assert!(job.await.expect_err("aborted").is_cancelled());
        doomed.open(TEST);
        // The spawner finds its task gone: kills the child, drops the
        // command (the panic). Wait until the child is gone.
        let t = tag.clone();
        let gone = tokio::task::spawn_blocking(move || {
            childfd_testbin::eventually(SLACK, || tagged(&t).is_empty())
        });
        assert!(
            gone.await.expect("poll"),
            "the cancelled job's child was not killed"
        );
        // Two children held at once need both spawner threads.
        let gates = [Gate::new(), Gate::new()];
        let (done, dog) = watchdog(gates.to_vec());
        let mut jobs = Vec::new();
        let mut held = Vec::new();
        for g in &gates {
            // One after the other: the second is queued while the first
            // holds a thread.
            let mut cmd = g.command(&tag, ());
            jobs.push(tokio::spawn(async move { cmd.spawn_async().await }));
            held.push(g.wait_held().await);
        }
        for g in &gates {
            g.open(TEST);
        }
        let _ = done.send(());
        dog.join().expect("watchdog");
        let mut children = Vec::new();
        for j in jobs {
            children.push(j.await.expect("a later job's task").expect("spawn"));
        }
        drop(children);
        end(&tag).await;
        assert_eq!(
            held,
            vec![true, true],
            "{flavor:?}: after a panic on a spawner thread, two jobs could not be held at \
             once: the thread died"
        );
    });
}
