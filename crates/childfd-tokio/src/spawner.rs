//! The spawner threads: where the async spawns run their clone, so that no
//! runtime worker waits for a child to `execve`.
//!
//! A spawn is `clone3(CLONE_VFORK)`: the spawning thread is suspended
//! until the child has called `execve` (or exited). That is a few dozen
//! microseconds on an idle machine, but the child needs the CPU to get
//! there: under CPU starvation it waits for its turn, and a `pre_exec`
//! closure or a slow file system can hold it longer. A runtime worker held
//! that way runs nothing else: the tasks in its queue and its LIFO slot
//! (which no other worker can steal) wait, deadlines and wait-delays
//! included. So [`spawn`] moves the command to a long-lived spawner thread,
//! which clones, and sends the child back; the awaiting task sleeps
//! meanwhile.
//!
//! Two threads for the whole process, however many children and runtimes
//! (never a thread per child): one child's way to `execve` overlaps
//! another's. A `fork()`ed copy of the process starts its own: the
//! parent's threads do not exist in the copy.
//!
//! # Caveats
//!
//! Children are created by these threads: a child inherits what Linux
//! keeps per thread from them rather than from the task's worker (CPU
//! affinity, the nice value, set by the thread that first spawned). A
//! parent-death signal is tied to them too, and they live as long as the
//! process.
//!
//! Two children slow to reach `execve` (a `pre_exec` closure that blocks,
//! children starved of CPU) delay the spawns queued behind them, though
//! never the runtime's tasks.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use childfd::{Child, Command, SpawnError};
use tokio::sync::oneshot;

/// What the spawner sends back: the command (for the caller to keep) and
/// the spawn's result.
type Reply = (Command, Result<Child, SpawnError>);

struct Job {
    cmd: Command,
    reply: oneshot::Sender<Answer>,
}

/// A reply on its way to its task. Until the task takes it, a spawned
/// child's tree is killed if the reply is dropped: when the send fails
/// (the task is gone) and when the task is dropped after the send but
/// before it polled the reply (the reply is dropped with the channel).
struct Answer(Option<Reply>);

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some((_cmd, Ok(orphan))) = self.0.take() {
            // Nobody will wait for it: a cancelled spawn leaves nothing
            // behind (the dropped child goes to the background reaper).
            let _ = orphan.kill_tree();
        }
    }
}

/// The spawner's queue, with the pid of the process that started it.
static SPAWNER: Mutex<Option<(rustix::process::Pid, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Spawns `cmd` on a spawner thread; resolves when the child has exec'd
/// (or the spawn failed). If the future is dropped first, the spawned
/// child's tree is killed and the child handed to the background reaper.
pub(crate) async fn spawn(cmd: Command) -> Reply {
    let (reply, rx) = oneshot::channel();
    let job = Job { cmd, reply };
    let job = match queue().send(job) {
        Ok(()) => {
            let mut answer = rx.await.expect("a spawner thread answers every job");
            return answer.0.take().expect("an answer is taken once");
        }
        // No thread could be started: spawn here.
        Err(mpsc::SendError(job)) => job,
    };
    let result = job.cmd.spawn();
    (job.cmd, result)
}

/// Spawner threads: two, so that one child's way to `execve` (the
/// spawning thread waits, the child needs a CPU) overlaps another's.
const THREADS: usize = 2;

/// This process's spawner queue, its threads started on first use.
fn queue() -> mpsc::Sender<Job> {
    let pid = rustix::process::getpid();
    let mut slot = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, tx)) = &*slot {
        if *owner == pid {
            return tx.clone();
        }
        // A fork()ed copy: the parent's threads are not here. Its queue is
        // forgotten, not dropped (the parent's state is left alone).
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for _ in 0..THREADS {
        let rx = rx.clone();
        let thread = std::thread::Builder::new()
            .name("childfd-tokio-spawner".into())
            .spawn(move || run(&rx));
        started += usize::from(thread.is_ok());
    }
    drop(rx); // the threads hold the receiver (if any started)
    if let Some(old) = slot.take() {
        std::mem::forget(old);
    }
    if started > 0 {
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
///
/// The spawns of a batch share one copy of the environment
/// ([`childfd::EnvSnapshot`], the most costly step of preparing a spawn),
/// taken once every job of the batch has been received: whatever a task
/// did before queuing its spawn (`std::env::set_var`) is in it.
const BATCH: usize = 8;

fn run(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    let mut done: Vec<(oneshot::Sender<Answer>, Answer)> = Vec::with_capacity(BATCH);
    loop {
        // Waits for a job holding the lock: the other thread waits for the
        // lock meanwhile, and takes the next job.
        let first = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(first) = first else { return };
        jobs.push(first);
        while jobs.len() < BATCH {
            // Locked by the other thread: it waits for an empty queue.
            match rx.try_lock().ok().and_then(|q| q.try_recv().ok()) {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        let env = childfd::EnvSnapshot::capture();
        for Job { cmd, reply } in jobs.drain(..) {
            let result = cmd.spawn_with_env(&env);
            done.push((reply, Answer(Some((cmd, result)))));
        }
        for (reply, answer) in done.drain(..) {
            // A failed send drops the answer, which kills its child.
            let _ = reply.send(answer);
        }
    }
}
