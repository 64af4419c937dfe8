//! State shared by the work, the chaos and the checks of one run:
//! counters, lateness samples, violations and the watchdog's list of
//! operations in progress.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::work::limits::Limits;

/// Event counters of the whole run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rounds completed.
    pub rounds: AtomicU64,
    /// Jobs run through the Supervisor.
    pub sup_spawns: AtomicU64,
    /// Children run through `output()`.
    pub output_spawns: AtomicU64,
    /// Children of plain `Command::spawn`.
    pub plain_spawns: AtomicU64,
    /// Children of `childfd-tokio` tasks.
    pub tokio_spawns: AtomicU64,
    /// Children spawned by forked copies.
    pub forked_spawns: AtomicU64,
    /// Processes in all trees.
    pub processes: AtomicU64,
    /// Signals sent to the process itself.
    pub sig_self: AtomicU64,
    /// Signals sent to the process group.
    pub sig_group: AtomicU64,
    /// SIGSTOP/SIGCONT sent to tree members.
    pub sig_members: AtomicU64,
    /// `fork()`s of the process.
    pub forks: AtomicU64,
    /// `set_var`/`remove_var` calls.
    pub env_changes: AtomicU64,
    /// fd opens, dups and closes.
    pub fd_ops: AtomicU64,
    /// `close_range` sweeps.
    pub sweeps: AtomicU64,
    /// Pids aimed at with `ns_last_pid`.
    pub reuse_targets: AtomicU64,
    /// Decoys that got the recycled pid they aimed at.
    pub reuse_hits: AtomicU64,
    /// Decoys started.
    pub decoys: AtomicU64,
    /// Stale-handle operations (signal/kill after reaping).
    pub stale_ops: AtomicU64,
    /// fd reports of tree processes checked.
    pub fd_reports: AtomicU64,
    /// Timed-out jobs reported after SIGKILL before their child was
    /// reaped (no status: allowed by the documented drain bound).
    pub killed_unreaped: AtomicU64,
}

/// A broken guarantee.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The round's seed.
    pub seed: u64,
    /// The round.
    pub round: u64,
    /// What broke.
    pub what: String,
}

/// Everything shared.
#[derive(Debug)]
pub struct Shared {
    /// The options.
    pub cfg: Config,
    /// Counters.
    pub n: Counters,
    /// Work stops taking new jobs.
    pub stop_work: AtomicBool,
    /// Chaos threads stop.
    pub stop_chaos: AtomicBool,
    /// The current round and its seed.
    pub round: AtomicU64,
    /// The current round's seed.
    pub seed: AtomicU64,
    /// Deadline lateness samples (µs).
    pub deadline_late: Mutex<Vec<u64>>,
    /// Wait-delay lateness samples (µs).
    pub wait_delay_late: Mutex<Vec<u64>>,
    /// Violations so far.
    pub violations: Mutex<Vec<Violation>>,
    ops: Mutex<HashMap<u64, (String, Instant, Duration)>>,
    next_op: AtomicU64,
    /// Recently reaped childfd pids, for forced reuse.
    pub reaped_pids: Mutex<Vec<i32>>,
    /// The probe's oversleeps: `(when it woke, µs late)`.
    probe: Mutex<VecDeque<(Instant, u64)>>,
    /// Every oversleep of the probe (µs), for the summary.
    pub probe_late: Mutex<Vec<u64>>,
}

impl Shared {
    /// Fresh state for a run.
    pub fn new(cfg: Config) -> Shared {
        Shared {
            seed: AtomicU64::new(cfg.seed),
            cfg,
            n: Counters::default(),
            stop_work: AtomicBool::new(false),
            stop_chaos: AtomicBool::new(false),
            round: AtomicU64::new(0),
            deadline_late: Mutex::new(Vec::new()),
            wait_delay_late: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            ops: Mutex::new(HashMap::new()),
            next_op: AtomicU64::new(0),
            reaped_pids: Mutex::new(Vec::new()),
            probe: Mutex::new(VecDeque::new()),
            probe_late: Mutex::new(Vec::new()),
        }
    }

    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records (and prints at once) a violation in the current round.
    pub fn violation(&self, what: impl Into<String>) {
        let v = Violation {
            seed: self.seed.load(Ordering::Relaxed),
            round: self.round.load(Ordering::Relaxed),
            what: what.into(),
        };
        eprintln!(
            "chaos: VIOLATION (round {}, seed {:#x}, kinds {}): {}\n       reproduce: {}",
            v.round,
            v.seed,
            self.cfg.kinds,
            v.what,
            self.cfg.repro(v.seed)
        );
        lock(&self.violations).push(v);
    }

    /// The scheduler probe: a thread of the same priority as the work
    /// that sleeps 5 ms at a time until the chaos stops, recording how
    /// late it woke. Under load (the hogs, and whatever else runs on the
    /// machine) the work is delayed as much: that delay is the machine's,
    /// not childfd's, and is allowed on top of the tolerance.
    pub fn probe(&self) {
        const NAP: Duration = Duration::from_millis(5);
        while !self.stop_chaos.load(Ordering::Relaxed) {
            let t = Instant::now();
            std::thread::sleep(NAP);
            let late = t.elapsed().saturating_sub(NAP).as_micros() as u64;
            lock(&self.probe_late).push(late);
            let mut p = lock(&self.probe);
            if p.len() >= 100_000 {
                p.pop_front();
            }
            p.push_back((Instant::now(), late));
        }
    }

    /// The probe's total oversleep in the last `window`.
    fn machine_delay(&self, window: Duration) -> Duration {
        let now = Instant::now();
        let us: u64 = lock(&self.probe)
            .iter()
            .rev()
            .take_while(|(t, _)| now.duration_since(*t) <= window + Duration::from_millis(5))
            .map(|(_, l)| *l)
            .sum();
        Duration::from_micros(us)
    }

    /// Records how long after its deadline a timed-out job (of workload
    /// `what`) was reported. The library's documented bound is deadline +
    /// grace (the tree has that long to die of SIGTERM before SIGKILL) +
    /// the drain bound (the wait-delay); more than the tolerance plus the
    /// machine's delay (see [`probe`](Shared::probe)) past that bound is a
    /// violation.
    pub fn deadline_late(&self, what: &str, elapsed: Duration, limits: Limits, kill: bool) {
        let Limits {
            deadline,
            grace,
            wait_delay: drain,
        } = limits;
        let late = elapsed.saturating_sub(deadline);
        lock(&self.deadline_late).push(late.as_micros() as u64);
        let bound = deadline + grace + drain;
        let over = elapsed.saturating_sub(bound);
        let machine = self.machine_delay(late);
        if over > self.cfg.tolerance + machine {
            self.violation(format!(
                "{what}: deadline {deadline:?} (grace {grace:?}, ended by {}, wait-delay {drain:?}) reported after {elapsed:.1?}: {over:.1?} past its bound (tolerance {:?} + the machine's delay meanwhile {machine:.1?})",
                if kill { "SIGKILL" } else { "SIGTERM" },
                self.cfg.tolerance
            ));
        }
    }

    /// Records how long after exit + wait-delay a job (of workload `what`)
    /// with held pipes was reported; more than the tolerance (plus the machine's delay) is a
    /// violation.
    pub fn wait_delay_late(&self, what: &str, late: Duration, wait_delay: Duration) {
        lock(&self.wait_delay_late).push(late.as_micros() as u64);
        let machine = self.machine_delay(late + wait_delay);
        if late > self.cfg.tolerance + machine {
            self.violation(format!(
                "{what}: wait-delay {wait_delay:?} held {late:.1?} late (tolerance {:?} + the machine's delay meanwhile {machine:.1?})",
                self.cfg.tolerance
            ));
        }
    }

    /// Remembers a pid childfd reaped, for the pid-reuse chaos.
    pub fn reaped(&self, pid: u32) {
        let mut v = lock(&self.reaped_pids);
        if v.len() >= 64 {
            v.remove(0);
        }
        v.push(pid as i32);
    }

    /// Registers an operation that must end within `bound`; the watchdog
    /// reports it as hung otherwise. Ends when the guard drops.
    pub fn op(&self, what: impl Into<String>, bound: Duration) -> Op<'_> {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        lock(&self.ops).insert(id, (what.into(), Instant::now(), bound));
        Op { shared: self, id }
    }

    /// Operations past their bound: `(what, running for)`.
    pub fn overdue(&self) -> Vec<(String, Duration)> {
        lock(&self.ops)
            .values()
            .filter(|(_, t, b)| t.elapsed() > *b)
            .map(|(w, t, _)| (w.clone(), t.elapsed()))
            .collect()
    }
}

/// An operation watched by the watchdog.
#[derive(Debug)]
pub struct Op<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        lock(&self.shared.ops).remove(&self.id);
    }
}

/// Locks, ignoring poisoning (a panicking worker is reported separately).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `p50/p99/max` of samples in µs, as milliseconds.
pub fn percentiles(samples: &[u64]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        at(0.5),
        at(0.99),
        at(1.0),
        v.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(
            percentiles(&v),
            "p50 51.0 ms, p99 99.0 ms, max 100.0 ms (n=100)"
        );
        assert_eq!(percentiles(&[]), "no samples");
    }
}
