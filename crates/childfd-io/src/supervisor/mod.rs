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
//! - Memory: a 600-byte slot per running job ([`slot_size`]), plus what
//!   its captures keep (bounded by [`JobOptions::max_bytes`]) and a
//!   pending partial line; the 64 KiB read buffer is shared by all jobs.
//!   In the kernel: a pidfd, two pipes (three with stdin input) and their
//!   epoll registrations.
//! - System calls, per job, when the loop thread also spawns
//!   (`strace -f -c target/release/examples/supervise 1000 0`): in the
//!   parent 20: `clone3`, 2 `rt_sigprocmask` around it, 2 `pipe2`, `open`
//!   (`/dev/null` for stdin), 2 `fcntl` (non-blocking), 2 `epoll_ctl`
//!   (the pipes; closing an fd takes it out of the epoll set), 3 `read`,
//!   `waitid`, 6 `close`, and a quarter of an `epoll_wait`. The pidfd
//!   joins the poll only when the exit matters before the pipes' EOF (a
//!   wait-delay, stdin, no pipes), when the tree is being ended, or when
//!   the pipes are at EOF and the child is not reaped yet (rare: a child's
//!   pipes close as it exits). With spawning threads (the default), the
//!   loop thread makes about 12 of them (3 `read`, 2 `epoll_ctl`, 2 `fcntl`, `waitid`,
//!   3 `close`, a third of an `epoll_wait` and about one `futex` to hand
//!   jobs over), the spawning threads the rest. The fork checks of the
//!   process-wide registries make no system call (the pid is kept in a
//!   page the kernel wipes in a forked copy).
//! - CPU: `cargo bench -p childfd-benches --bench supervisor` prints the
//!   loop thread's and the whole process's CPU per job, the children's,
//!   the CPU ceiling they imply, where the machine's other core time went
//!   (other processes, idle), and the floor: the C limit's own CPU per
//!   spawn (`clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` + `waitid`, no
//!   pipes), about 17 µs. Profiled with `perf record -g` (frame pointers)
//!   on `examples/supervise`, the default's CPU goes:
//!   - spawning threads (about two thirds): `clone3` about 60% (the
//!     kernel's `copy_process`, FPU state copy included, and 14% of it
//!     the vfork wait's sleep and wake-up), the fd plan 13% (2 `pipe2`,
//!     `open`), the snapshot of the environment 6%, allocation 10%, the
//!     hand-back to the loop 2%;
//!   - loop thread (about a third): `epoll_wait` 27% (mostly the sleep
//!     and wake-up of the thread), `close` 22% (releasing the pipes and
//!     the pidfd, their epoll entries with them), registering the pipes
//!     10%, the reap 11%, allocation 12%, reading 6%. No `/proc` scan is
//!     made for a job whose pipes reach EOF (holders are looked up only
//!     after a wait-delay expires, left-behind processes only with
//!     [`JobOptions::kill_tree_on_exit`]).
//!
//!   So the spawn's own cost, which every way pays, is most of it: tokio's
//!   `Command::output` makes the same clone, pipes and reap, and "half of
//!   tokio's CPU per job" is within a few µs of that floor.
//!
//! Spawning keeps its thread suspended until the child has exec'd
//! (`CLONE_VFORK`), which on a loaded machine can take milliseconds: so
//! [`Supervisor::new`] starts one spawning thread per core (at most 4),
//! and the loop thread, which fires the deadlines, never spawns while
//! they exist.
//!
//! # Driving it
//!
//! Iterate (`while let Some(ev) = sup.next()`), or use
//! [`run_controlled`](Supervisor::run_controlled), whose callback can
//! cancel and push as events arrive. From other threads (a Ctrl-C thread,
//! a CI agent's cancel task), a [`Handle`] pushes, cancels and shuts
//! down, waking the loop at once through an `eventfd`;
//! [`stop_on_interrupt`](Supervisor::stop_on_interrupt) makes `next`
//! return when a signal interrupts the wait. Every ending comes with one
//! [`Report`] shape ([`Event::report`]) carrying the job's
//! [tag](JobOptions::tag).
//!
//! # Bounds
//!
//! Every piece of work the loop does between two looks at the clock is
//! bounded, whatever the children, their descendants or the inputs do:
//! without spawning threads at most 4 spawns, one `waitid` per exited
//! child, at most 1 MiB read per stream, one read of a job's input and
//! one write to its stdin; a stream with more waiting is revisited
//! without sleeping. When a deadline is due, the job's exit is looked up
//! and its pipes read before its tree is terminated, so a child that
//! exited first is reported exited, never timed out. The loop never
//! blocks in a wait for a child (one not reaped yet when its report is
//! due goes to the background reaper).
//!
//! # Caveats
//!
//! Naming pipe holders after a wait-delay and counting what a job
//! [left behind](JobOptions::kill_tree_on_exit) in a process group read
//! `/proc`, which takes milliseconds with thousands of processes; it
//! happens only for the jobs concerned. A reader given to
//! [`JobOptions::stdin_reader`] is called on the loop thread and should
//! not block for long.
//!
//! # Parts
//!
//! - `job`: [`JobOptions`], what a caller asks of one job;
//! - `queue`: the queue, the cap and the spawning threads;
//! - `timers`: the heap of deadlines and other wakes;
//! - `job_io`: one running job's slot, its fds in the poll, its end;
//! - `leftovers`: counting the processes a job left behind;
//! - `handle`: [`Handle`], driving the loop from other threads;
//! - `events`: [`Event`], [`Report`], [`Summary`];
//! - this file: the [`Supervisor`] itself and its loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use childfd::Command;
use mio::{Events, Poll, Token};

use crate::OutputError;
use crate::pipes::CHUNK;

mod events;
mod handle;
mod job;
mod job_io;
mod leftovers;
mod queue;
mod timers;

pub use events::{Event, Report, Summary};
pub use handle::Handle;
use handle::Shared;
pub use job::{JobId, JobOptions};
use job_io::{KINDS, Slot};
use queue::{Job, SpawnPool};
use timers::Timers;

/// The token of the waker that spawning threads and handles use.
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
    next_gen: u64,
    cpu_start: Duration,
    /// Spawns handed to the pool and not yet back (their processes exist).
    spawning: usize,
    pool: Option<SpawnPool>,
    /// Streams whose last bounded read turn left data: `(slot, stream,
    /// generation)`; the next `epoll_wait` does not sleep.
    ready: Vec<(usize, usize, u64)>,
    /// Jobs handed to a spawning thread and not back yet.
    spawning_ids: HashSet<JobId>,
    /// Of those, the ones cancelled meanwhile.
    doomed: HashSet<JobId>,
    /// Mailbox and waker shared with [`Handle`]s.
    shared: Arc<Shared>,
    /// A shutdown was taken from the mailbox: no new job starts.
    shut: bool,
    /// `epoll_wait` interrupted by a signal: return [`Event::Interrupted`].
    stop_on_interrupt: bool,
    /// Scratch for [`turn`](Self::turn): the tokens of its events.
    tokens: Vec<usize>,
    /// Scratch for [`turn`](Self::turn): the slots it touched.
    touched: Vec<usize>,
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
        Supervisor::with_spawn_threads(max_in_flight, cores.min(4))
    }

    /// Like [`new`](Supervisor::new), with `threads` threads that spawn
    /// the children, so that the loop thread is never suspended in a
    /// spawn (`CLONE_VFORK` holds the spawning thread until the child has
    /// exec'd) while a deadline is due. With 0, the loop thread spawns,
    /// at most 4 between two looks at its events. `new` uses one per
    /// core, at most 4.
    ///
    /// # Errors
    ///
    /// If the epoll instance or a thread cannot be created.
    pub fn with_spawn_threads(max_in_flight: usize, threads: usize) -> io::Result<Supervisor> {
        let poll = Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
        let pool = if threads > 0 {
            Some(SpawnPool::start(threads, &waker)?)
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
            next_gen: 0,
            cpu_start: thread_cpu(),
            spawning: 0,
            pool,
            ready: Vec::new(),
            spawning_ids: HashSet::new(),
            doomed: HashSet::new(),
            shared: Arc::new(Shared::new(waker)),
            shut: false,
            stop_on_interrupt: false,
            tokens: Vec::new(),
            touched: Vec::new(),
        })
    }

    /// Queues `cmd`; it starts when fewer than `max_in_flight` run.
    /// Its stdout and stderr are replaced by pipes (or `/dev/null` with
    /// [`JobOptions::discard_output`]) and its stdin by a pipe fed with
    /// the job's [input](JobOptions::stdin_bytes), or `/dev/null`.
    pub fn push(&mut self, cmd: Command, opts: JobOptions) -> JobId {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.enqueue(id, cmd, opts);
        id
    }

    /// With `yes`, a signal that interrupts the loop's `epoll_wait`
    /// (`EINTR`: a handler installed without `SA_RESTART` does not matter,
    /// `epoll_wait` is never restarted) makes [`next`](Iterator::next)
    /// return [`Event::Interrupted`] at once, so that the caller can look
    /// at the flag its handler set. Off by default (the loop goes on).
    pub fn stop_on_interrupt(&mut self, yes: bool) {
        self.stop_on_interrupt = yes;
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
            if let Some((_, _, opts)) = self.queue.remove(pos) {
                self.report_unstarted(id, opts.tag);
            }
            return;
        }
        if self.spawning_ids.contains(&id) {
            // Being spawned on another thread: cancelled once installed.
            self.doomed.insert(id);
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
        let queued: Vec<_> = self
            .queue
            .drain(..)
            .map(|(id, _, opts)| (id, opts.tag))
            .collect();
        for (id, tag) in queued {
            self.report_unstarted(id, tag);
        }
        let running: Vec<JobId> = self
            .by_id
            .keys()
            .chain(self.spawning_ids.iter())
            .copied()
            .collect();
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

    /// Whether nothing is left to do: no job queued, spawning or running,
    /// and no handle that could push more (or a shutdown).
    fn finished(&self) -> bool {
        self.queue.is_empty()
            && self.in_flight == 0
            && self.spawning == 0
            && (self.shut || self.shared.handles() == 0)
    }

    /// One `epoll_wait` (not sleeping if `busy`, else until an event or the
    /// earliest timer) and the handling of what it returned. Every piece
    /// of work in it is bounded: one `waitid` per exited child, at most
    /// [`READS_PER_TURN`](crate::pipes::READS_PER_TURN) reads per stream,
    /// so a deadline is never held up by a busy job.
    fn turn(&mut self, busy: bool) -> io::Result<()> {
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            let slots = &self.slots;
            let next = self.timers.next(|t, s, generation| {
                slots
                    .get(s)
                    .and_then(|o| o.as_ref())
                    .is_some_and(|sl| sl.generation == generation && sl.scheduled == Some(t))
            });
            next.map(|t| t.saturating_duration_since(Instant::now()))
        };
        self.poll.poll(&mut self.events, timeout)?;
        // Scratch lists kept across turns: no allocation per turn.
        let mut touched = std::mem::take(&mut self.touched);
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.extend(self.events.iter().map(|e| e.token().0));
        let mut woken = false;
        for token in tokens.drain(..) {
            if token == WAKE.0 {
                woken = true;
                continue;
            }
            let (s, kind) = (token / KINDS, token % KINDS);
            if kind == 0 {
                if self.poll_exit(s) {
                    touched.push(s);
                }
            } else if let Some(slot) = self.slots.get(s).and_then(|o| o.as_ref()) {
                self.ready.push((s, kind - 1, slot.generation));
            }
        }
        if woken {
            self.collect_spawned();
            self.take_mail();
        }
        self.drain_ready(&mut touched);
        self.fire_timers(&mut touched);
        touched.sort_unstable();
        touched.dedup();
        for s in touched.drain(..) {
            self.step(s);
        }
        self.touched = touched;
        self.tokens = tokens;
        Ok(())
    }

    /// One bounded read turn for each stream with data waiting; those
    /// with more left stay in `ready`.
    fn drain_ready(&mut self, touched: &mut Vec<usize>) {
        if self.ready.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.ready);
        batch.sort_unstable();
        batch.dedup();
        for (s, k, generation) in batch {
            let live = self
                .slots
                .get(s)
                .and_then(|o| o.as_ref())
                .is_some_and(|sl| sl.generation == generation);
            if !live {
                continue;
            }
            if self.io_turn(s, k) {
                self.ready.push((s, k, generation));
            }
            touched.push(s);
        }
    }

    /// Due timers: before its state machine decides (deadline: terminate),
    /// a job's exit is looked up and its pipes read, so that a child that
    /// exited before its deadline is reported exited even if its pidfd
    /// event has not been seen yet.
    fn fire_timers(&mut self, touched: &mut Vec<usize>) {
        let now = Instant::now();
        while let Some((t, s)) = self.timers.pop_due(now) {
            let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
                continue;
            };
            if slot.scheduled != Some(t) {
                continue;
            }
            slot.scheduled = None;
            let generation = slot.generation;
            // Exit first: the kernel closes a child's fds before its exit
            // becomes visible, so pipes read after see its EOF.
            if !self.poll_exit(s) {
                continue;
            }
            for k in 0..2 {
                if self.io_turn(s, k) {
                    self.ready.push((s, k, generation));
                }
            }
            touched.push(s);
        }
    }

    /// Ends every running job after the loop itself failed.
    fn fail_all(&mut self, error: &io::Error) {
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

impl Iterator for Supervisor {
    type Item = Event;

    /// The next event, running the loop as needed; `None` once every job
    /// has ended and its events were returned (and no [`Handle`] can push
    /// more: see [`Handle::shutdown`]).
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.out.pop_front() {
                return Some(ev);
            }
            self.take_mail();
            let more = self.fill();
            if self.out.is_empty() && self.finished() {
                return None;
            }
            let busy = more || !self.ready.is_empty() || !self.out.is_empty();
            match self.turn(busy) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if self.stop_on_interrupt {
                        return Some(Event::Interrupted);
                    }
                }
                Err(e) => self.fail_all(&e),
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
