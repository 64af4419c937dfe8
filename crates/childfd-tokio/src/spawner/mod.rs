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
//! parent's threads do not exist in the copy. Finding this process's
//! threads takes no lock (the core crate's per-process slot: one atomic
//! load and a pid compare), so a `fork()` by one thread while others
//! spawn cannot leave the copy a lock held by a thread it does not have.
//!
//! # What a child inherits, and from which thread
//!
//! Linux keeps some state per thread, and a child inherits the state of
//! the thread that clones it. [`spawn`] compares the calling thread's
//! seccomp filters and `no_new_privs` flag with the spawner threads' (two
//! `prctl` calls per spawn; under seccomp filters also the filter count
//! from `/proc/thread-self/status`, about as costly as a file read). When
//! they differ (a thread that installed a filter or set `no_new_privs`
//! after the spawner threads were started, or the spawner threads were
//! started by such a thread) the child is cloned on the calling thread
//! instead, as [`crate::spawn`] does, so that it is confined exactly as
//! its caller is. Likewise when the state cannot be read.
//!
//! The spawner threads are started by the first caller whose state is
//! the main thread's (the process's baseline, read once from
//! `/proc/self/status`), never by a thread that confined itself further:
//! they inherit their starter's state for the life of the process.
//!
//! The signal mask a child of `inherit_signal_mask(true)` starts with is
//! the caller's, read when the spawn is queued and handed to the core
//! crate with the job ([`childfd::CallerSignalMask`]), not the spawner
//! thread's.
//!
//! Other per-thread state is **not** compared, and a child of
//! `spawn_async`, `output_async` or a `JobSet` has the spawner thread's:
//! namespaces joined with `setns` or made with `unshare` by one thread
//! (network, mount, …), the LSM exec context (`/proc/thread-self/attr/exec`),
//! CPU affinity, the nice value and other scheduling attributes. A thread
//! that changed any of these for its children must use [`crate::spawn`]
//! (which clones on the calling thread). Filters added to every thread
//! at once (`SECCOMP_FILTER_FLAG_TSYNC`) reach the spawner threads too;
//! callers then differ from the state recorded at their start and spawn
//! on their own threads. Two threads with the same number of filters
//! are taken to carry the same ones: only wrong if two threads added
//! different filters to the same baseline and one of them could start
//! the spawner threads, which the baseline rule above prevents unless the
//! main thread itself added its filter after creating them.
//!
//! # Batching
//!
//! A thread that finds more jobs queued spawns up to [`BATCH`] of them
//! before waking their tasks together (see there). A reply is never held
//! across a spawn that is known or likely to be slow: before a command
//! with `pre_exec` closures (which may wait for anything, even for an
//! earlier child's task), and once the batch has run for more than
//! [`HOLD_AT_MOST`] (the machine is slow now, so the next spawn may be),
//! the replies so far are sent first. A command with `pre_exec` closures
//! is the last of its batch: the jobs queued behind it are left to the
//! other thread.
//!
//! # Panics
//!
//! A panic while spawning (the core crate's, or a user's `Drop` run when
//! a cancelled job's command is dropped here) is caught: the replies
//! already made are still sent (or their children killed), the thread
//! goes on serving, and a panic in a job's own spawn is resumed in that
//! job's task, as if it had spawned inline.
//!
//! # Caveats
//!
//! Where not one spawner thread can be started (the user's process limit
//! is reached, or memory is short), the spawn runs on the caller's
//! thread, and the next spawn tries to start them again.
//!
//! A parent-death signal is tied to the thread that clones (the core
//! crate moves such spawns to a thread of its own that lives as long as
//! the process). Two children slow to reach `execve` (a `pre_exec`
//! closure that blocks, children starved of CPU) delay the spawns queued
//! behind them, though never the runtime's tasks.

mod confinement;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use childfd::{Child, Command, SpawnError};
use tokio::sync::oneshot;

use confinement::Confinement;

/// What the caller gets back: the command (for the caller to keep) and
/// the spawn's result.
type Reply = (Command, Result<Child, SpawnError>);
/// What a spawner thread sends: as [`Reply`], with a panic of the spawn
/// carried to the caller's task.
type Answered = (Command, std::thread::Result<Result<Child, SpawnError>>);

struct Job {
    cmd: Command,
    /// The caller's signal mask, for a child that inherits it.
    mask: Option<childfd::CallerSignalMask>,
    reply: oneshot::Sender<Answer>,
}

/// A reply on its way to its task. Until the task takes it, a spawned
/// child's tree is killed if the reply is dropped: when the send fails
/// (the task is gone) and when the task is dropped after the send but
/// before it polled the reply (the reply is dropped with the channel).
struct Answer(Option<Answered>);

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some((_cmd, Ok(Ok(orphan)))) = self.0.take() {
            // Nobody will wait for it: a cancelled spawn leaves nothing
            // behind (the dropped child goes to the background reaper).
            let _ = orphan.kill_tree();
        }
    }
}

/// Spawns `cmd` on a spawner thread when the calling thread's confinement
/// is theirs (see the module docs), else here; resolves when the child
/// has exec'd (or the spawn failed). If the future is dropped first, the
/// spawned child's tree is killed and the child handed to the background
/// reaper.
pub(crate) async fn spawn(cmd: Command) -> Reply {
    let Some(queue) = queue_for_this_thread() else {
        let result = cmd.spawn();
        return (cmd, result);
    };
    let (reply, rx) = oneshot::channel();
    // The child is cloned on another thread, but its mask is this one's.
    let mask = cmd
        .inherits_signal_mask()
        .then(childfd::CallerSignalMask::of_this_thread);
    let job = match queue.send(Job { cmd, mask, reply }) {
        Ok(()) => {
            // `run` sends every answer, panics included (`Pending`).
            let mut answer = rx.await.expect("a spawner thread answers every job");
            let (cmd, spawned) = answer.0.take().expect("an answer is taken once");
            match spawned {
                Ok(result) => return (cmd, result),
                Err(panic) => resume_unwind(panic),
            }
        }
        // The threads are gone: spawn here.
        Err(mpsc::SendError(job)) => job,
    };
    let result = job.cmd.spawn();
    (job.cmd, result)
}

/// Spawner threads: two, so that one child's way to `execve` (the
/// spawning thread waits, the child needs a CPU) overlaps another's.
const THREADS: usize = 2;

/// This process's spawner threads.
struct Spawners {
    /// Their queue.
    queue: mpsc::Sender<Job>,
    /// What their children inherit from them.
    confinement: Confinement,
}

/// Per process: the spawner threads once started, and the main thread's
/// confinement (who may start them).
#[derive(Default)]
struct Process {
    spawners: OnceLock<Spawners>,
    /// Held while starting them, so that callers arriving meanwhile wait
    /// for the threads instead of starting more. Per process like the
    /// rest: a `fork()` while it is held leaves the copy a fresh one.
    starting: Mutex<()>,
    baseline: OnceLock<Option<Confinement>>,
}

/// Lock-free to find (an atomic load and a pid compare), so that a
/// `fork()` in the middle of another thread's spawn leaves the copy
/// nothing locked: the copy gets a fresh `Process`, the parent's is left
/// alone.
static PROCESS: childfd::PerProcess<Process> = childfd::PerProcess::new();

/// The queue of spawner threads whose children are confined as the
/// calling thread's would be, starting them if this thread may; `None`
/// if the child must be cloned here.
fn queue_for_this_thread() -> Option<&'static mpsc::Sender<Job>> {
    let here = Confinement::of_this_thread()?;
    let process = PROCESS.get(Process::default, |_| {});
    let spawners = match process.spawners.get() {
        Some(started) => started,
        None => {
            let baseline = process.baseline.get_or_init(Confinement::of_main_thread);
            if *baseline != Some(here) {
                return None; // confined further than the process: not from here
            }
            let _one = process
                .starting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match process.spawners.get() {
                Some(started) => started,
                // No thread could be started (a process or memory limit,
                // maybe only for a moment): this spawn runs here, and the
                // next one tries again.
                None => {
                    let started = start(here)?;
                    process.spawners.get_or_init(|| started)
                }
            }
        }
    };
    if spawners.confinement != here {
        return None;
    }
    Some(&spawners.queue)
}

/// Starts the spawner threads from this thread, whose `confinement`
/// they inherit; `None` if not one could be started.
fn start(confinement: Confinement) -> Option<Spawners> {
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
    (started > 0).then_some(Spawners {
        queue: tx,
        confinement,
    })
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

/// How long a batch may run while holding replies already made: past
/// it, they are sent before the next spawn. A millisecond, tokio's timer
/// resolution: a static child's spawn takes 60 to 90 µs on a two-core
/// machine, so 100 µs cut every batch after two spawns and gave up most
/// of batching's saving (`cargo xtask bench --async --quick`, three runs
/// each: CPU per job 0.64× tokio's on a current-thread runtime against
/// 0.50–0.59× with a millisecond).
const HOLD_AT_MOST: Duration = Duration::from_millis(1);

fn run(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    let mut pending = Pending::default();
    loop {
        // Waits for a job holding the lock: the other thread waits for the
        // lock meanwhile, and takes the next job.
        let first = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(first) = first else { return };
        let mut last = first.cmd.has_pre_exec();
        jobs.push(first);
        // A job with `pre_exec` closures ends the batch: the jobs queued
        // behind it go to the other thread rather than wait for it.
        while jobs.len() < BATCH && !last {
            // Locked by the other thread: it waits for an empty queue.
            match rx.try_lock().ok().and_then(|q| q.try_recv().ok()) {
                Some(job) => {
                    last = job.cmd.has_pre_exec();
                    jobs.push(job);
                }
                None => break,
            }
        }
        // Nothing here is expected to panic; if it did, each job spawns
        // with its own copy of the environment.
        let env = catch_unwind(childfd::EnvSnapshot::capture).ok();
        for Job { cmd, mask, reply } in jobs.drain(..) {
            pending.before_spawn(&cmd);
            // The core crate's spawn panics only on a broken invariant:
            // the panic goes to the job's task, this thread goes on.
            let spawned = catch_unwind(AssertUnwindSafe(|| cmd.spawn_for(env.as_ref(), mask)));
            pending.replies.push((reply, Answer(Some((cmd, spawned)))));
        }
        pending.send();
    }
}

/// Replies made but not sent yet; sent when dropped too (a panic that
/// escaped would otherwise lose them, and their tasks would wait for
/// ever).
#[derive(Default)]
struct Pending {
    replies: Vec<(oneshot::Sender<Answer>, Answer)>,
    /// When the first of them started spawning.
    since: Option<Instant>,
}

impl Pending {
    /// Sends the replies held so far if the next spawn must not wait for
    /// them: it has `pre_exec` closures, or the batch has taken longer
    /// than [`HOLD_AT_MOST`]. One clock read per spawn.
    fn before_spawn(&mut self, cmd: &Command) {
        let now = Instant::now();
        let held_long = self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) > HOLD_AT_MOST);
        if !self.replies.is_empty() && (held_long || cmd.has_pre_exec()) {
            self.send();
        }
        if self.replies.is_empty() {
            self.since = Some(now);
        }
    }

    fn send(&mut self) {
        for (reply, answer) in self.replies.drain(..) {
            if let Err(answer) = reply.send(answer) {
                // The task is gone: dropping the answer kills its child
                // and drops its command, whose closures' captures run
                // the user's `Drop` here. A panic there must not cost
                // the other replies or this thread.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(answer)));
            }
        }
        self.since = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.send();
    }
}
