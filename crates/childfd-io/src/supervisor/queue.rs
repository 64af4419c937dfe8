//! The queue and the cap: jobs wait here until fewer than `max_in_flight`
//! run, then are spawned on the loop thread or handed to a spawning
//! thread ([`SpawnPool`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use childfd::{Child, Command, SpawnError, Stdio};

use super::{JobId, JobOptions, Supervisor};

/// Spawns the loop thread does between two looks at its events.
const SPAWN_BATCH: usize = 4;

/// A job waiting to be spawned.
pub(super) type Job = (JobId, Command, JobOptions);

/// A job whose spawn was attempted.
pub(super) struct Spawned {
    pub(super) id: JobId,
    pub(super) opts: JobOptions,
    pub(super) started: Instant,
    pub(super) result: Result<Child, SpawnError>,
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
    let stdin = if opts.input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let result = cmd.stdin(stdin).stdout(out).stderr(err).spawn();
    Spawned {
        id,
        opts,
        started,
        result,
    }
}

/// Threads that spawn jobs for the loop: a spawn keeps its thread
/// suspended until the child has exec'd (`CLONE_VFORK`), which under load
/// can take milliseconds; the loop thread, which must fire deadlines on
/// time, does not spawn while there is a pool. Each thread has a job
/// queued behind the one it spawns, so it never waits for the loop.
pub(super) struct SpawnPool {
    jobs: Option<mpsc::Sender<Job>>,
    /// Jobs handed over and not back yet.
    outstanding: usize,
    /// At most this many outstanding.
    depth: usize,
    results: mpsc::Receiver<Spawned>,
    /// A wake is on its way to the loop: spawning threads do not send
    /// another (one `eventfd` write per batch of results, not per spawn).
    wake_pending: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SpawnPool {
    pub(super) fn start(n: usize, waker: &Arc<mio::Waker>) -> io::Result<SpawnPool> {
        let (res_tx, results) = mpsc::channel();
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let wake_pending = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for h in 0..n {
            let (res_tx, waker, rx) = (res_tx.clone(), waker.clone(), rx.clone());
            let pending = wake_pending.clone();
            let t = std::thread::Builder::new()
                .name(format!("childfd-spawn-{h}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if res_tx.send(spawn_job(job)).is_err() {
                            return;
                        }
                        if !pending.swap(true, Ordering::AcqRel) {
                            let _ = waker.wake();
                        }
                    }
                })?;
            threads.push(t);
        }
        Ok(SpawnPool {
            jobs: Some(jobs),
            outstanding: 0,
            depth: 4 * n,
            results,
            wake_pending,
            threads,
        })
    }

    /// Hands `job` to the spawning threads; gives it back if they have
    /// enough queued.
    fn offer(&mut self, job: Job) -> Option<Job> {
        if self.outstanding >= self.depth {
            return Some(job);
        }
        let jobs = self.jobs.as_ref()?;
        match jobs.send(job) {
            Ok(()) => {
                self.outstanding += 1;
                None
            }
            Err(mpsc::SendError(job)) => Some(job),
        }
    }

    /// The spawns finished since the last call.
    fn collect(&mut self) -> Vec<Spawned> {
        // Cleared first: a result sent after this is either taken below or
        // comes with a new wake.
        self.wake_pending.store(false, Ordering::Release);
        let done: Vec<Spawned> = self.results.try_iter().collect();
        self.outstanding -= done.len();
        done
    }
}

impl Drop for SpawnPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Supervisor {
    /// Queues a job (or, after a shutdown, reports it cancelled).
    pub(super) fn enqueue(&mut self, id: JobId, cmd: Command, opts: JobOptions) {
        self.summary.queued += 1;
        if self.shut {
            self.report_unstarted(id, opts.tag.clone());
        } else {
            self.queue.push_back((id, cmd, opts));
        }
    }

    /// Starts queued jobs while there is room: hands them to the
    /// spawning threads, or without a pool spawns at most [`SPAWN_BATCH`]
    /// on this thread, so that events are handled between batches (a
    /// spawn holds its thread until the child has exec'd). Returns whether
    /// jobs that could start are left for the next call.
    pub(super) fn fill(&mut self) -> bool {
        let mut here = 0;
        while self.in_flight + self.spawning < self.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                return false;
            };
            let id = job.0;
            if let Some(pool) = self.pool.as_mut() {
                match pool.offer(job) {
                    None => {
                        self.spawning_ids.insert(id);
                        self.spawning += 1;
                        self.note_in_flight();
                    }
                    Some(job) => {
                        // Enough queued there; more when results come back.
                        self.queue.push_front(job);
                        return false;
                    }
                }
                continue;
            }
            if here == SPAWN_BATCH {
                self.queue.push_front(job);
                return true;
            }
            here += 1;
            let spawned = spawn_job(job);
            self.install(spawned);
        }
        false
    }

    pub(super) fn note_in_flight(&mut self) {
        self.summary.max_in_flight = self
            .summary
            .max_in_flight
            .max(self.in_flight + self.spawning);
    }

    /// Takes back what the spawning threads finished.
    pub(super) fn collect_spawned(&mut self) {
        let done = match self.pool.as_mut() {
            Some(pool) => pool.collect(),
            None => return,
        };
        for spawned in done {
            self.spawning -= 1;
            let id = spawned.id;
            self.spawning_ids.remove(&id);
            self.install(spawned);
            if self.doomed.remove(&id) {
                self.cancel(id);
            }
        }
    }
}
