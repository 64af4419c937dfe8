//! The queue and the cap: jobs wait here until fewer than `max_in_flight`
//! run, then are spawned on the loop thread or handed to a spawning
//! thread ([`SpawnPool`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
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
/// time, does not spawn while there is a pool.
///
/// Each thread has its own queue, and the loop keeps up to [`DEPTH`] jobs
/// queued on each, so a thread finds its next job waiting when a spawn
/// returns. (One queue shared behind a mutex cost a futex wake per job:
/// the thread holding the lock sleeps in `recv` while the other sleeps on
/// the lock.)
pub(super) struct SpawnPool {
    workers: Vec<Worker>,
    results: mpsc::Receiver<(usize, Spawned)>,
    /// A wake is on its way to the loop: spawning threads do not send
    /// another (one `eventfd` write per batch of results, not per spawn).
    wake_pending: Arc<AtomicBool>,
}

/// Jobs queued on one spawning thread at most (the one it spawns
/// included).
const DEPTH: usize = 4;

/// One spawning thread and its queue.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    /// Jobs handed over and not back yet.
    outstanding: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpawnPool {
    pub(super) fn start(n: usize, waker: &Arc<mio::Waker>) -> io::Result<SpawnPool> {
        let (res_tx, results) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for h in 0..n {
            let (jobs, rx) = mpsc::channel::<Job>();
            let (res_tx, waker) = (res_tx.clone(), waker.clone());
            let pending = wake_pending.clone();
            let thread = std::thread::Builder::new()
                .name(format!("childfd-spawn-{h}"))
                .spawn(move || {
                    for job in rx {
                        if res_tx.send((h, spawn_job(job))).is_err() {
                            return;
                        }
                        if !pending.swap(true, Ordering::AcqRel) {
                            let _ = waker.wake();
                        }
                    }
                })?;
            workers.push(Worker {
                jobs: Some(jobs),
                outstanding: 0,
                thread: Some(thread),
            });
        }
        Ok(SpawnPool {
            workers,
            results,
            wake_pending,
        })
    }

    /// Hands `job` to the spawning thread with the fewest queued; gives
    /// it back if each has [`DEPTH`].
    fn offer(&mut self, job: Job) -> Option<Job> {
        let Some(w) = self.workers.iter_mut().min_by_key(|w| w.outstanding) else {
            return Some(job);
        };
        if w.outstanding >= DEPTH {
            return Some(job);
        }
        let Some(jobs) = w.jobs.as_ref() else {
            return Some(job);
        };
        match jobs.send(job) {
            Ok(()) => {
                w.outstanding += 1;
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
        self.results
            .try_iter()
            .map(|(h, spawned)| {
                self.workers[h].outstanding -= 1;
                spawned
            })
            .collect()
    }
}

impl Drop for SpawnPool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
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
