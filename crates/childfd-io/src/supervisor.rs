//! Many children from one loop: the [`Supervisor`].
//!
//! One `mio::Poll` owns every running child's pidfd and pipe ends; a queue
//! holds the jobs not started yet, and at most `max_in_flight` run at
//! once. Deadlines, grace periods and wait-delays live in one binary heap
//! of timers, so the loop sleeps in `epoll_wait` until the next event or
//! the earliest timer: while all children sleep, the supervising thread
//! sleeps too. Each job runs the same state machine as
//! [`output`](crate::output) (deadline → terminate the tree, wait-delay →
//! name the pipe holders).
//!
//! # Cost per child
//!
//! Measured on the reference machine (2 vCPUs, Linux 6.18):
//!
//! - Memory: a 480-byte slot per running job
//!   ([`slot_size`]), plus what its captures keep
//!   (bounded by [`JobOptions::max_bytes`]) and a pending partial line; the
//!   64 KiB read buffer is shared by all jobs. In the kernel: a pidfd, two
//!   pipes and three epoll registrations.
//! - System calls on the supervising thread: 24 per job of the `supervise`
//!   example (`strace -c`, README): `clone3`, 2 `rt_sigprocmask` around it,
//!   2 `pipe2`, `open` (`/dev/null` for stdin), 2 `fcntl` (non-blocking),
//!   6 `epoll_ctl`, 3 `read`, `waitid`, 6 `close`. `epoll_wait` is shared:
//!   16 calls for 1,000 jobs.
//! - CPU: about 54 µs per job on the supervising thread, spawn included.
//!
//! Spawning keeps its thread suspended until the child has exec'd
//! (`CLONE_VFORK`), so [`Supervisor::new`] adds one spawning thread per
//! core beyond the first (at most 3) that spawns while the loop runs.
//!
//! # Caveats
//!
//! Jobs get no stdin (it is `/dev/null`). Cancellation from inside the
//! [`run`](Supervisor::run) callback is not possible; iterate with
//! `while let Some(ev) = sup.next()` to cancel while running.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use childfd::{Child, Command, EndedBy, ExitStatus, SpawnError, Stdio};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::capture::Captured;
use crate::holders::Holder;
use crate::lifecycle::{Lifecycle, Step};
use crate::options::{Limits, Stream, limits_builder};
use crate::pipes::{CHUNK, Reader, set_nonblocking};
use crate::{Outcome, OutputError};

/// Identifies a job of a [`Supervisor`], in the order they were pushed.
pub type JobId = u64;

/// Per-job options: deadline, grace, wait-delay, what to keep of output.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub(crate) limits: Limits,
    lines: bool,
    capture: bool,
    kill_tree_on_exit: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions::new()
    }
}

impl JobOptions {
    /// No deadline, no wait-delay, all output kept, no line events.
    pub fn new() -> JobOptions {
        JobOptions {
            limits: Limits::default(),
            lines: false,
            capture: true,
            kill_tree_on_exit: false,
        }
    }

    limits_builder!();

    /// Deliver each line as an [`Event::Line`] as it arrives.
    pub fn lines(mut self, yes: bool) -> Self {
        self.lines = yes;
        self
    }

    /// When the job ends, however it ends, kill whatever is left of its
    /// tree (descendants that closed their output and live on, stopped
    /// ones included): nothing of the job outlives its report.
    pub fn kill_tree_on_exit(mut self, yes: bool) -> Self {
        self.kill_tree_on_exit = yes;
        self
    }

    /// Send the job's stdout and stderr to `/dev/null` instead of pipes.
    pub fn discard_output(mut self) -> Self {
        self.capture = false;
        self
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// The job.
    pub id: JobId,
    /// Its child's pid (`None` if it was cancelled before it started).
    pub pid: Option<u32>,
    /// The child's status, if it ended.
    pub status: Option<ExitStatus>,
    /// Why the job ended.
    pub outcome: Outcome,
    /// What was kept of stdout.
    pub stdout: Captured,
    /// What was kept of stderr.
    pub stderr: Captured,
    /// Processes holding a pipe when reading stopped.
    pub holders: Vec<Holder>,
    /// After a deadline: TERM or KILL.
    pub ended_by: Option<EndedBy>,
    /// Time from spawn to this report.
    pub elapsed: Duration,
}

/// What a [`Supervisor`] reports, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The job's child was spawned.
    Started {
        /// The job.
        id: JobId,
        /// Its pid.
        pid: u32,
    },
    /// A line of output (with [`JobOptions::lines`]).
    Line {
        /// The job.
        id: JobId,
        /// Which stream.
        stream: Stream,
        /// The line, without `\n`.
        line: Vec<u8>,
    },
    /// The child exited and its pipes reached EOF.
    Exited(Report),
    /// The deadline fired and the tree was terminated.
    TimedOut(Report),
    /// The child exited but its pipes were still held after the wait-delay.
    PipesHeldOpen(Report),
    /// The job was cancelled (its tree killed, its output drained).
    Cancelled(Report),
    /// The job's child could not be spawned.
    SpawnFailed {
        /// The job.
        id: JobId,
        /// Why.
        error: SpawnError,
    },
    /// Supervising the job failed unexpectedly (its tree was killed).
    Failed {
        /// The job.
        id: JobId,
        /// Why.
        error: OutputError,
    },
}

impl Event {
    /// The job the event is about.
    pub fn id(&self) -> JobId {
        match self {
            Event::Started { id, .. }
            | Event::Line { id, .. }
            | Event::SpawnFailed { id, .. }
            | Event::Failed { id, .. } => *id,
            Event::Exited(r)
            | Event::TimedOut(r)
            | Event::PipesHeldOpen(r)
            | Event::Cancelled(r) => r.id,
        }
    }
}

/// Counts over a supervisor's life.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Jobs pushed.
    pub queued: u64,
    /// Children spawned.
    pub started: u64,
    /// Exited with code 0.
    pub succeeded: u64,
    /// Exited with another code or by a signal (not timed out).
    pub failed: u64,
    /// Deadline fired.
    pub timed_out: u64,
    /// Pipes still held after the wait-delay.
    pub pipes_held: u64,
    /// Cancelled (started or not).
    pub cancelled: u64,
    /// Could not be spawned.
    pub spawn_failed: u64,
    /// Supervision failed unexpectedly.
    pub errors: u64,
    /// The most children that were in flight at once.
    pub max_in_flight: usize,
    /// CPU time of the supervising thread (`CLOCK_THREAD_CPUTIME_ID`).
    pub supervisor_cpu: Duration,
}

struct Slot {
    id: JobId,
    generation: u64,
    child: Child,
    readers: [Reader; 2],
    life: Lifecycle,
    spawned: Instant,
    scheduled: Option<Instant>,
    kill_tree_on_exit: bool,
}

/// Runs many children from one loop; see the [module docs](crate::supervisor).
///
/// ```
/// use childfd_io::{Event, JobOptions, Supervisor};
/// use std::time::Duration;
///
/// let mut sup = Supervisor::new(8)?;
/// for i in 0..20 {
///     let mut cmd = childfd::Command::new("sh");
///     cmd.args(["-c", &format!("echo job {i}; exit {}", i % 3)]);
///     sup.push(cmd, JobOptions::new().deadline(Duration::from_secs(30)));
/// }
/// let mut exited = 0;
/// while let Some(ev) = sup.next() {
///     if let Event::Exited(r) = ev {
///         assert_eq!(r.stdout.text(), format!("job {}\n", r.id));
///         assert_eq!(r.status.unwrap().code(), Some((r.id % 3) as i32));
///         exited += 1;
///     }
/// }
/// assert_eq!(exited, 20);
/// assert!(sup.summary().max_in_flight <= 8);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Supervisor {
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
    max_in_flight: usize,
    queue: VecDeque<(JobId, Command, JobOptions)>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    in_flight: usize,
    by_id: HashMap<JobId, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    out: VecDeque<Event>,
    summary: Summary,
    next_id: JobId,
    next_gen: u64,
    cpu_start: Duration,
    /// Spawns handed to the pool and not yet back (their processes exist).
    spawning: usize,
    pool: Option<SpawnPool>,
}

const KINDS: usize = 3; // pidfd, stdout, stderr
/// The token of the waker the spawning threads use.
const WAKE: Token = Token(usize::MAX);

type Job = (JobId, Command, JobOptions);

/// A job whose spawn was attempted.
struct Spawned {
    id: JobId,
    opts: JobOptions,
    started: Instant,
    result: Result<Child, SpawnError>,
}

/// Spawns one job. Runs on the loop thread or a spawning thread.
fn spawn_job((id, mut cmd, opts): Job) -> Spawned {
    let (out, err) = if opts.capture {
        (Stdio::piped(), Stdio::piped())
    } else {
        (Stdio::null(), Stdio::null())
    };
    // Taken before the spawn: the child may run (and this thread be
    // preempted) before `spawn` returns, and `elapsed` and the deadline
    // must cover the child's whole life.
    let started = Instant::now();
    let result = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn();
    Spawned {
        id,
        opts,
        started,
        result,
    }
}

/// Threads that spawn jobs while the loop thread spawns others and handles
/// events: a spawn keeps its thread suspended until the child has exec'd
/// (`CLONE_VFORK`), so one thread alone cannot use a second core.
struct SpawnPool {
    senders: Vec<mpsc::Sender<Job>>,
    idle: Vec<bool>,
    results: mpsc::Receiver<(usize, Spawned)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SpawnPool {
    fn start(n: usize, registry: &mio::Registry) -> io::Result<SpawnPool> {
        let waker = Arc::new(mio::Waker::new(registry, WAKE)?);
        let (res_tx, results) = mpsc::channel();
        let mut pool = SpawnPool {
            senders: Vec::new(),
            idle: Vec::new(),
            results,
            threads: Vec::new(),
        };
        for h in 0..n {
            let (tx, rx) = mpsc::channel::<Job>();
            let (res_tx, waker) = (res_tx.clone(), waker.clone());
            let t = std::thread::Builder::new()
                .name(format!("childfd-spawn-{h}"))
                .spawn(move || {
                    for job in rx {
                        if res_tx.send((h, spawn_job(job))).is_err() {
                            return;
                        }
                        let _ = waker.wake();
                    }
                })?;
            pool.senders.push(tx);
            pool.idle.push(true);
            pool.threads.push(t);
        }
        Ok(pool)
    }

    /// Hands `job` to an idle spawning thread; gives it back if none is.
    fn offer(&mut self, job: Job) -> Option<Job> {
        let Some(h) = self.idle.iter().position(|&i| i) else {
            return Some(job);
        };
        match self.senders[h].send(job) {
            Ok(()) => {
                self.idle[h] = false;
                None
            }
            Err(mpsc::SendError(job)) => Some(job),
        }
    }
}

impl Drop for SpawnPool {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Supervisor {
    /// A supervisor running at most `max_in_flight` children at once (at
    /// least 1).
    ///
    /// # Errors
    ///
    /// If the epoll instance cannot be created.
    pub fn new(max_in_flight: usize) -> io::Result<Supervisor> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Supervisor::with_spawn_threads(max_in_flight, cores.saturating_sub(1).min(3))
    }

    /// Like [`new`](Supervisor::new), with `threads` extra threads that
    /// spawn children in parallel with the loop thread (0: the loop
    /// thread spawns alone). `new` uses one per core beyond the first, at
    /// most 3.
    ///
    /// # Errors
    ///
    /// If the epoll instance or a thread cannot be created.
    pub fn with_spawn_threads(max_in_flight: usize, threads: usize) -> io::Result<Supervisor> {
        let poll = Poll::new()?;
        let pool = if threads > 0 {
            Some(SpawnPool::start(threads, poll.registry())?)
        } else {
            None
        };
        Ok(Supervisor {
            poll,
            events: Events::with_capacity(256),
            buf: vec![0; CHUNK],
            max_in_flight: max_in_flight.max(1),
            queue: VecDeque::new(),
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            by_id: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            summary: Summary::default(),
            next_id: 0,
            next_gen: 0,
            cpu_start: thread_cpu(),
            spawning: 0,
            pool,
        })
    }

    /// Queues `cmd`; it starts when fewer than `max_in_flight` run.
    /// Its stdout and stderr are replaced by pipes (or `/dev/null` with
    /// [`JobOptions::discard_output`]) and its stdin by `/dev/null`.
    pub fn push(&mut self, cmd: Command, opts: JobOptions) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.summary.queued += 1;
        self.queue.push_back((id, cmd, opts));
        id
    }

    /// Children running now (including those being spawned).
    pub fn in_flight(&self) -> usize {
        self.in_flight + self.spawning
    }

    /// The counts so far.
    pub fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        s.supervisor_cpu = thread_cpu().saturating_sub(self.cpu_start);
        s
    }

    /// Cancels job `id`: a queued job is dropped, a running one has its
    /// tree killed and its output drained; either way an
    /// [`Event::Cancelled`] follows. Unknown or finished ids are ignored.
    pub fn cancel(&mut self, id: JobId) {
        if let Some(pos) = self.queue.iter().position(|(q, _, _)| *q == id) {
            self.queue.remove(pos);
            self.report_unstarted(id);
            return;
        }
        if let Some(&s) = self.by_id.get(&id) {
            let result = match self.slots[s].as_mut() {
                Some(slot) => slot.life.cancel(&slot.child),
                None => Ok(()),
            };
            match result {
                Ok(()) => self.step(s),
                Err(error) => self.fail(s, error),
            }
        }
    }

    /// Cancels every job, queued and running.
    pub fn cancel_all(&mut self) {
        let queued: Vec<JobId> = self.queue.drain(..).map(|(id, _, _)| id).collect();
        for id in queued {
            self.report_unstarted(id);
        }
        let running: Vec<JobId> = self.by_id.keys().copied().collect();
        for id in running {
            self.cancel(id);
        }
    }

    /// Runs until every job has ended, calling `f` with each event; returns
    /// the summary.
    pub fn run(&mut self, mut f: impl FnMut(Event)) -> Summary {
        self.run_controlled(|_, ev| f(ev))
    }

    /// As [`run`](Self::run), but `f` also gets the supervisor, so that a
    /// callback loop can [`cancel`](Self::cancel), [`cancel_all`](Self::cancel_all)
    /// or [`push`](Self::push) more jobs as events arrive.
    ///
    /// ```
    /// # use childfd_io::{Event, JobOptions, Supervisor};
    /// let mut sup = Supervisor::new(4)?;
    /// for _ in 0..8 {
    ///     let mut cmd = childfd::Command::new("sleep");
    ///     cmd.arg("30");
    ///     sup.push(cmd, JobOptions::new());
    /// }
    /// // Give up on everything as soon as the first job has started.
    /// let summary = sup.run_controlled(|sup, ev| {
    ///     if let Event::Started { .. } = ev {
    ///         sup.cancel_all();
    ///     }
    /// });
    /// assert_eq!(summary.cancelled, 8);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run_controlled(&mut self, mut f: impl FnMut(&mut Supervisor, Event)) -> Summary {
        while let Some(ev) = self.next() {
            f(self, ev);
        }
        self.summary()
    }

    fn report_unstarted(&mut self, id: JobId) {
        self.summary.cancelled += 1;
        self.out.push_back(Event::Cancelled(Report {
            id,
            pid: None,
            status: None,
            outcome: Outcome::Cancelled,
            stdout: Captured::default(),
            stderr: Captured::default(),
            holders: Vec::new(),
            ended_by: None,
            elapsed: Duration::ZERO,
        }));
    }

    /// Starts queued jobs while there is room: hands them to idle
    /// spawning threads first, then spawns on this thread.
    fn fill(&mut self) {
        while self.in_flight + self.spawning < self.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            let job = match self.pool.as_mut() {
                Some(pool) => match pool.offer(job) {
                    None => {
                        self.spawning += 1;
                        self.note_in_flight();
                        continue;
                    }
                    Some(job) => job,
                },
                None => job,
            };
            let spawned = spawn_job(job);
            self.install(spawned);
        }
    }

    fn note_in_flight(&mut self) {
        self.summary.max_in_flight = self
            .summary
            .max_in_flight
            .max(self.in_flight + self.spawning);
    }

    /// Takes back what the spawning threads finished.
    fn collect_spawned(&mut self) {
        let mut done = Vec::new();
        if let Some(pool) = self.pool.as_mut() {
            while let Ok((h, spawned)) = pool.results.try_recv() {
                pool.idle[h] = true;
                done.push(spawned);
            }
        }
        for spawned in done {
            self.spawning -= 1;
            self.install(spawned);
        }
    }

    /// Puts a spawned job into the loop (or reports its spawn failure).
    fn install(
        &mut self,
        Spawned {
            id,
            opts,
            started,
            result,
        }: Spawned,
    ) {
        let mut child = match result {
            Ok(c) => c,
            Err(error) => {
                self.summary.spawn_failed += 1;
                self.out.push_back(Event::SpawnFailed { id, error });
                return;
            }
        };
        let s = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let readers = [
            Reader::new(
                child.take_stdout().map(OwnedFd::from),
                Stream::Stdout,
                opts.limits.head,
                opts.limits.tail,
                opts.lines,
            ),
            Reader::new(
                child.take_stderr().map(OwnedFd::from),
                Stream::Stderr,
                opts.limits.head,
                opts.limits.tail,
                opts.lines,
            ),
        ];
        let life = Lifecycle::new(started, &opts.limits);
        let pid = child.id();
        self.next_gen += 1;
        let slot = Slot {
            id,
            generation: self.next_gen,
            child,
            readers,
            life,
            spawned: started,
            scheduled: None,
            kill_tree_on_exit: opts.kill_tree_on_exit,
        };
        let registered = self.register(s, &slot);
        self.slots[s] = Some(slot);
        self.by_id.insert(id, s);
        self.in_flight += 1;
        self.summary.started += 1;
        self.note_in_flight();
        self.out.push_back(Event::Started { id, pid });
        match registered {
            Ok(()) => self.step(s),
            Err(e) => self.fail(s, OutputError::Io { source: e }),
        }
    }

    fn register(&self, s: usize, slot: &Slot) -> io::Result<()> {
        let reg = self.poll.registry();
        let pidfd = slot.child.as_fd().as_raw_fd();
        reg.register(&mut SourceFd(&pidfd), Token(s * KINDS), Interest::READABLE)?;
        for (k, r) in slot.readers.iter().enumerate() {
            if let Some(fd) = &r.fd {
                set_nonblocking(fd)?;
                reg.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(s * KINDS + 1 + k),
                    Interest::READABLE,
                )?;
            }
        }
        Ok(())
    }

    /// Runs the job's state machine; finishes it or schedules its timer.
    fn step(&mut self, s: usize) {
        let Some(slot) = self.slots[s].as_mut() else {
            return;
        };
        let pipes_open = slot.readers.iter().any(|r| r.fd.is_some());
        let readers = &slot.readers;
        let inodes = || readers.iter().filter_map(Reader::open_inode).collect();
        match slot
            .life
            .step(&slot.child, Instant::now(), pipes_open, &inodes)
        {
            Ok(Step::Done(outcome, holders)) => self.finish(s, outcome, holders),
            Ok(Step::Wait(wake)) => {
                if wake != slot.scheduled {
                    slot.scheduled = wake;
                    if let Some(t) = wake {
                        self.timers.push(Reverse((t, s, slot.generation)));
                    }
                }
            }
            Err(error) => self.fail(s, error),
        }
    }

    /// Something went wrong supervising job `s`: kill its tree, report.
    fn fail(&mut self, s: usize, error: OutputError) {
        if let Some(slot) = self.slots[s].as_ref() {
            let _ = slot.child.kill_tree();
            let id = slot.id;
            self.release(s);
            self.summary.errors += 1;
            self.out.push_back(Event::Failed { id, error });
        }
    }

    /// Removes slot `s` from the loop and returns it.
    fn release(&mut self, s: usize) -> Option<Slot> {
        let slot = self.slots[s].take()?;
        let reg = self.poll.registry();
        let _ = reg.deregister(&mut SourceFd(&slot.child.as_fd().as_raw_fd()));
        for r in &slot.readers {
            if let Some(fd) = &r.fd {
                let _ = reg.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
        self.by_id.remove(&slot.id);
        self.free.push(s);
        self.in_flight -= 1;
        Some(slot)
    }

    fn finish(&mut self, s: usize, outcome: Outcome, holders: Vec<Holder>) {
        let Some(slot) = self.release(s) else { return };
        let mut status = slot.life.status;
        if status.is_none() {
            status = slot
                .child
                .wait_timeout(Duration::from_millis(100))
                .ok()
                .flatten();
        }
        let ended_by = slot.life.ended_by();
        if slot.kill_tree_on_exit {
            let _ = slot.child.kill_tree();
        }
        let [out, err] = slot.readers;
        let report = Report {
            id: slot.id,
            pid: Some(slot.child.id()),
            status,
            outcome,
            stdout: out.capture.finish(),
            stderr: err.capture.finish(),
            holders,
            ended_by,
            elapsed: slot.spawned.elapsed(),
        };
        // The child is dropped here: reaped already, or handed to the
        // background reaper if it could not be reaped in time.
        let event = match outcome {
            Outcome::Exited => {
                if status.is_some_and(|s| s.success()) {
                    self.summary.succeeded += 1;
                } else {
                    self.summary.failed += 1;
                }
                Event::Exited(report)
            }
            Outcome::TimedOut => {
                self.summary.timed_out += 1;
                Event::TimedOut(report)
            }
            Outcome::PipesHeldOpen => {
                self.summary.pipes_held += 1;
                Event::PipesHeldOpen(report)
            }
            Outcome::Cancelled => {
                self.summary.cancelled += 1;
                Event::Cancelled(report)
            }
        };
        self.out.push_back(event);
    }

    /// One wait in `epoll_wait` (until an event or the earliest timer) and
    /// the handling of what it returned.
    fn turn(&mut self) -> io::Result<()> {
        // Drop timers of finished jobs or superseded wakes from the top.
        while let Some(Reverse((t, s, generation))) = self.timers.peek().copied() {
            let live = self
                .slots
                .get(s)
                .and_then(|o| o.as_ref())
                .is_some_and(|sl| sl.generation == generation && sl.scheduled == Some(t));
            if live {
                break;
            }
            self.timers.pop();
        }
        let timeout = self
            .timers
            .peek()
            .map(|Reverse((t, _, _))| t.saturating_duration_since(Instant::now()));
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut touched: Vec<usize> = Vec::new();
        let tokens: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for token in tokens {
            if token == WAKE.0 {
                self.collect_spawned();
                continue;
            }
            let (s, kind) = (token / KINDS, token % KINDS);
            let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
                continue;
            };
            if kind == 0 {
                if let Err(e) = slot.life.poll_exit(&slot.child) {
                    self.fail(s, e);
                    continue;
                }
            } else {
                let id = slot.id;
                let mut lines: Vec<(Stream, Vec<u8>)> = Vec::new();
                let drained = slot.readers[kind - 1].drain(
                    &mut self.buf,
                    &mut |st, l| lines.push((st, l.to_vec())),
                    &mut |_, _| {},
                );
                self.out
                    .extend(lines.into_iter().map(|(stream, line)| Event::Line {
                        id,
                        stream,
                        line,
                    }));
                match drained {
                    Ok(Some(fd)) => {
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&fd.as_raw_fd()));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.fail(s, OutputError::Io { source: e });
                        continue;
                    }
                }
            }
            if !touched.contains(&s) {
                touched.push(s);
            }
        }
        let now = Instant::now();
        while let Some(Reverse((t, s, _))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) {
                if slot.scheduled == Some(t) {
                    slot.scheduled = None;
                    if !touched.contains(&s) {
                        touched.push(s);
                    }
                }
            }
        }
        for s in touched {
            self.step(s);
        }
        Ok(())
    }
}

impl Iterator for Supervisor {
    type Item = Event;

    /// The next event, running the loop as needed; `None` once every job
    /// has ended and its events were returned.
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.out.pop_front() {
                return Some(ev);
            }
            self.fill();
            if !self.out.is_empty() {
                continue;
            }
            if self.in_flight == 0 && self.spawning == 0 {
                if self.queue.is_empty() {
                    return None;
                }
                continue;
            }
            if let Err(error) = self.turn() {
                // The loop itself failed: end every running job.
                let ids: Vec<usize> = (0..self.slots.len())
                    .filter(|&s| self.slots[s].is_some())
                    .collect();
                for s in ids {
                    self.fail(
                        s,
                        OutputError::Io {
                            source: io::Error::new(error.kind(), error.to_string()),
                        },
                    );
                }
            }
        }
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// Bytes of one running job's slot, not counting what its captures hold.
#[doc(hidden)]
pub fn slot_size() -> usize {
    std::mem::size_of::<Slot>()
}
