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
//! `while let Some(ev) = sup.next()` to cancel while running.//!
//! # Parts
//!
//! - `job`: [`JobOptions`], what a caller asks of one job;
//! - `queue`: the queue, the cap and the spawning threads;
//! - `timers`: the heap of deadlines and other wakes;
//! - `job_io`: one running job's slot, its fds in the poll, its end;
//! - `events`: [`Event`], [`Report`], [`Summary`];
//! - this file: the [`Supervisor`] itself and its loop.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use childfd::Command;
use mio::{Events, Poll, Token};

use crate::OutputError;
use crate::pipes::CHUNK;

mod events;
mod job;
mod job_io;
mod queue;
mod timers;

pub use events::{Event, Report, Summary};
pub use job::{JobId, JobOptions};
use job_io::{KINDS, Slot};
use queue::{Job, SpawnPool};
use timers::Timers;

/// The token of the waker the spawning threads use.
const WAKE: Token = Token(usize::MAX);

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
    queue: VecDeque<Job>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    in_flight: usize,
    by_id: HashMap<JobId, usize>,
    timers: Timers,
    out: VecDeque<Event>,
    summary: Summary,
    next_id: JobId,
    next_gen: u64,
    cpu_start: Duration,
    /// Spawns handed to the pool and not yet back (their processes exist).
    spawning: usize,
    pool: Option<SpawnPool>,
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
            timers: Timers::default(),
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

    /// One wait in `epoll_wait` (until an event or the earliest timer) and
    /// the handling of what it returned.
    fn turn(&mut self) -> io::Result<()> {
        let slots = &self.slots;
        let next = self.timers.next(|t, s, generation| {
            slots
                .get(s)
                .and_then(|o| o.as_ref())
                .is_some_and(|sl| sl.generation == generation && sl.scheduled == Some(t))
        });
        let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
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
            if self.on_ready(s, kind) && !touched.contains(&s) {
                touched.push(s);
            }
        }
        let now = Instant::now();
        while let Some((t, s)) = self.timers.pop_due(now) {
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
