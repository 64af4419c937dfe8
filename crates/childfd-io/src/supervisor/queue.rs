//! The queue and the cap: jobs wait here until fewer than `max_in_flight`
//! run, then are spawned on the loop thread or handed to a spawning
//! thread ([`SpawnPool`]).

use std::io;
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
pub(super) struct SpawnPool {
    senders: Vec<mpsc::Sender<Job>>,
    idle: Vec<bool>,
    results: mpsc::Receiver<(usize, Spawned)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SpawnPool {
    pub(super) fn start(n: usize, waker: &Arc<mio::Waker>) -> io::Result<SpawnPool> {
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

impl Supervisor {
    /// Queues a job (or, after a shutdown, reports it cancelled).
    pub(super) fn enqueue(&mut self, id: JobId, cmd: Command, opts: JobOptions) {
        self.summary.queued += 1;
        if self.shut {
            self.report_unstarted(id);
        } else {
            self.queue.push_back((id, cmd, opts));
        }
    }

    /// Starts queued jobs while there is room: hands them to idle
    /// spawning threads, and spawns at most [`SPAWN_BATCH`] on this
    /// thread, so that events are handled between batches (a spawn holds
    /// its thread until the child has exec'd). Returns whether jobs that
    /// could start are left for the next call.
    pub(super) fn fill(&mut self) -> bool {
        let mut here = 0;
        while self.in_flight + self.spawning < self.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                return false;
            };
            let id = job.0;
            let job = match self.pool.as_mut() {
                Some(pool) => match pool.offer(job) {
                    None => {
                        self.spawning_ids.insert(id);
                        self.spawning += 1;
                        self.note_in_flight();
                        continue;
                    }
                    Some(job) => job,
                },
                None => job,
            };
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
        let mut done = Vec::new();
        if let Some(pool) = self.pool.as_mut() {
            while let Ok((h, spawned)) = pool.results.try_recv() {
                pool.idle[h] = true;
                done.push(spawned);
            }
        }
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
