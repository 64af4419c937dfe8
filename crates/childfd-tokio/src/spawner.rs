//! The spawner thread: where the async spawns run their clone, so that no
//! runtime worker waits for a child to `execve`.
//!
//! A spawn is `clone3(CLONE_VFORK)`: the spawning thread is suspended
//! until the child has called `execve` (or exited). That is a few dozen
//! microseconds on an idle machine, but the child needs the CPU to get
//! there: under CPU starvation it waits for its turn, and a `pre_exec`
//! closure or a slow file system can hold it longer. A runtime worker held
//! that way runs nothing else: the tasks in its queue and its LIFO slot
//! (which no other worker can steal) wait, deadlines and wait-delays
//! included. So [`spawn`] moves the command to one long-lived thread, which
//! clones, and sends the child back; the awaiting task sleeps meanwhile.
//!
//! One thread for the whole process, however many children and runtimes
//! (never a thread per child). A `fork()`ed copy of the process starts its
//! own: the parent's thread does not exist in the copy.
//!
//! # Caveats
//!
//! Children are created by this thread: a child inherits what Linux keeps
//! per thread from it rather than from the task's worker (CPU affinity,
//! the nice value, set by the thread that first spawned). A parent-death
//! signal is tied to it too, and it lives as long as the process.
//!
//! Spawns are serial: a child slow to reach `execve` (a `pre_exec`
//! closure that blocks, a child starved of CPU) delays the spawns queued
//! behind it, though never the runtime's tasks.

use std::sync::Mutex;
use std::sync::mpsc;

use childfd::{Child, Command, SpawnError};
use tokio::sync::oneshot;

/// What the spawner sends back: the command (for the caller to keep) and
/// the spawn's result.
type Reply = (Command, Result<Child, SpawnError>);

struct Job {
    cmd: Command,
    reply: oneshot::Sender<Reply>,
}

/// The spawner's queue, with the pid of the process that started it.
static SPAWNER: Mutex<Option<(rustix::process::Pid, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Spawns `cmd` on the spawner thread; resolves when the child has exec'd
/// (or the spawn failed). If the future is dropped first, the spawned
/// child's tree is killed and the child handed to the background reaper.
pub(crate) async fn spawn(cmd: Command) -> Reply {
    let (reply, rx) = oneshot::channel();
    let job = Job { cmd, reply };
    let job = match queue().send(job) {
        Ok(()) => return rx.await.expect("the spawner thread answers every job"),
        // The thread could not be started: spawn here.
        Err(mpsc::SendError(job)) => job,
    };
    let result = job.cmd.spawn();
    (job.cmd, result)
}

/// This process's spawner queue, started on first use.
fn queue() -> mpsc::Sender<Job> {
    let pid = rustix::process::getpid();
    let mut slot = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, tx)) = &*slot {
        if *owner == pid {
            return tx.clone();
        }
        // A fork()ed copy: the parent's thread is not here. Its queue is
        // forgotten, not dropped (the parent's state is left alone).
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("childfd-tokio-spawner".into())
        .spawn(move || run(rx));
    if let Some(old) = slot.take() {
        std::mem::forget(old);
    }
    if started.is_ok() {
        *slot = Some((pid, tx.clone()));
    }
    tx
}

/// Spawns queued one after the other before their tasks are woken: each
/// wake from this thread can unpark a runtime worker (a futex wake and a
/// context switch on both sides), and workers that sleep while their tasks
/// wait for spawns would pay that per child. Waking the tasks of a few
/// spawns at once lets one worker take them all. Only jobs already queued
/// are batched: an idle spawner answers at once.
const BATCH: usize = 8;

fn run(rx: mpsc::Receiver<Job>) {
    let mut done: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        let mut job = Some(first);
        while let Some(Job { cmd, reply }) = job.take() {
            let result = cmd.spawn();
            done.push((reply, (cmd, result)));
            if done.len() < BATCH {
                job = rx.try_recv().ok();
            }
        }
        for (reply, answer) in done.drain(..) {
            if let Err((_cmd, Ok(orphan))) = reply.send(answer) {
                // Nobody waits for it any more: a cancelled spawn leaves
                // nothing behind.
                let _ = orphan.kill_tree();
            }
        }
    }
}
