//! 10,000 short jobs that each print a line, 64 in flight: childfd's
//! `Supervisor` against tokio (a `JoinSet` of
//! `tokio::process::Command::output`, 64 at a time) in the same run, each
//! also as a share of its CPU ceiling (cores × 1e6 / CPU µs per job, the
//! children's included). Then deadline accuracy: 2,000 mixed jobs, one in
//! ten with a deadline that fires; p50/p99 lateness.
//! The jobs are `childfd-testbin`'s static programs (no loader), so the
//! figures show the process layer, not the dynamic linker.
//!
//! Run: `cargo bench -p childfd-benches --bench supervisor`
//! (`-- --quick`: 1,000 jobs, one repetition).

use std::time::Duration;

use childfd_benches::{JobsRun, childfd_echo_jobs, measure_jobs, supervisor_lateness};

const CAP: usize = 64;

fn tokio_run(n: usize, multi_thread: bool) -> JobsRun {
    let rt = childfd_benches::tokio_runtime(multi_thread);
    measure_jobs(n, || {
        childfd_benches::tokio_echo_jobs(&rt, n, CAP);
        None
    })
}

fn median(mut runs: Vec<JobsRun>) -> JobsRun {
    runs.sort_by_key(|r| r.wall);
    runs[runs.len() / 2]
}

fn pct(late: &[Duration], p: f64) -> Duration {
    late[((late.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, reps) = if quick { (1_000, 1) } else { (10_000, 3) };
    let (load1, _, _) = childfd_benches_load();
    println!(
        "{n} jobs printing one line, {CAP} in flight, median of {reps} runs \
         (load average {load1:.1} at start: other work shares the machine)"
    );
    println!(
        "supervisor slot: {} bytes per running job (plus its captured bytes)",
        childfd_io::slot_size()
    );
    type Way = (&'static str, Box<dyn Fn() -> JobsRun>);
    let ways: Vec<Way> = vec![
        (
            "childfd Supervisor",
            Box::new(move || childfd_echo_jobs(n, CAP, None)),
        ),
        (
            "childfd Supervisor, 1 spawning thread",
            Box::new(move || childfd_echo_jobs(n, CAP, Some(1))),
        ),
        (
            "childfd Supervisor, no spawning threads",
            Box::new(move || childfd_echo_jobs(n, CAP, Some(0))),
        ),
        (
            "tokio JoinSet, multi-thread",
            Box::new(move || tokio_run(n, true)),
        ),
        (
            "tokio JoinSet, current-thread",
            Box::new(move || tokio_run(n, false)),
        ),
    ];
    // Interleaved repetitions, so that a change of load hits every way.
    let mut all: Vec<Vec<JobsRun>> = vec![Vec::new(); ways.len()];
    for _ in 0..reps {
        for (i, (_, f)) in ways.iter().enumerate() {
            all[i].push(f());
        }
    }
    let results: Vec<(&str, JobsRun)> = ways
        .iter()
        .zip(all)
        .map(|((name, _), runs)| (*name, median(runs)))
        .collect();
    let tokio = results[3].1;
    println!(
        "| way | jobs/s | ÷ tokio multi-thread | supervising CPU per job | process CPU per job | ÷ tokio | children's CPU per job | CPU ceiling (jobs/s) | share of ceiling |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, r) in &results {
        println!(
            "| {name} | {:.0} | {:.2} | {:.1} µs | {:.1} µs | {:.2} | {:.1} µs | {:.0} | {:.0}% |",
            r.jobs_per_s(),
            r.jobs_per_s() / tokio.jobs_per_s(),
            r.supervisor_cpu.as_secs_f64() * 1e6 / r.n as f64,
            r.process_us(),
            r.process_us() / tokio.process_us(),
            r.children_us(),
            r.ceiling(),
            100.0 * r.jobs_per_s() / r.ceiling(),
        );
    }
    let jobs = if quick { 500 } else { 2_000 };
    let late = supervisor_lateness(jobs, CAP);
    println!(
        "deadline lateness, {jobs} jobs, {CAP} in flight, {} deadlines fired: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= 5 ms)",
        late.len(),
        pct(&late, 0.5).as_secs_f64() * 1e3,
        pct(&late, 0.99).as_secs_f64() * 1e3,
        late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
fn childfd_benches_load() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut f = s.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    (
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
        f.next().unwrap_or(0.0),
    )
}
