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
    let mut floors = Vec::new();
    for _ in 0..reps {
        for (i, (_, f)) in ways.iter().enumerate() {
            all[i].push(f());
        }
        floors.push(childfd_benches::limit_floor(n / 5));
    }
    floors.sort_by(|a, b| a.process_us().total_cmp(&b.process_us()));
    let floor = floors[floors.len() / 2];
    let results: Vec<(&str, JobsRun)> = ways
        .iter()
        .zip(all)
        .map(|((name, _), runs)| (*name, median(runs)))
        .collect();
    let tokio = results[3].1;
    println!(
        "| way | jobs/s | ÷ tokio multi-thread | loop thread CPU per job | process CPU per job | ÷ tokio | children's CPU per job | CPU ceiling (jobs/s) | share of ceiling | other processes | idle | steal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in &results {
        let (ours, others, idle, steal) = r.shares();
        println!(
            "| {name} | {:.0} | {:.2} | {:.1} µs | {:.1} µs | {:.2} | {:.1} µs | {:.0} | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
            r.jobs_per_s(),
            r.jobs_per_s() / tokio.jobs_per_s(),
            r.supervisor_us(),
            r.process_us(),
            r.process_us() / tokio.process_us(),
            r.children_us(),
            r.ceiling(),
            100.0 * ours,
            100.0 * others,
            100.0 * idle,
            100.0 * steal,
        );
    }
    println!(
        "(share of ceiling + other processes + idle + steal = the machine's core time during the run, from /proc/stat; \
         the share is this run's CPU, ours and the children's, over all of it)"
    );
    what_stands_between(&results[0].1, &tokio, &floor);
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

/// The default Supervisor's run against the goals (≥ 1.2× tokio's jobs/s,
/// ≤ 0.5× its CPU per job, ≥ 85% of the ceiling), and per job what lies
/// between each measured figure and its goal.
fn what_stands_between(sup: &JobsRun, tokio: &JobsRun, floor: &JobsRun) {
    let (ours, others, idle, steal) = sup.shares();
    let goal_cpu = 0.5 * tokio.process_us();
    let spawners = sup.process_us() - sup.supervisor_us();
    println!("what stands between the default Supervisor and its goals:");
    println!(
        "- jobs/s: {:.2}× tokio multi-thread (goal >= 1.2×)",
        sup.jobs_per_s() / tokio.jobs_per_s()
    );
    println!(
        "- CPU per job: {:.1} µs = loop thread {:.1} + spawning threads {:.1}; \
         goal <= 0.5× tokio's {:.1} = {goal_cpu:.1} µs. The floor of a spawn to its parent \
         (C clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + waitid of a static child, serial, \
         no pipes: {} spawns) is {:.1} µs, so the goal leaves {:.1} µs per job for the pipes, \
         the loop and the capture, which take {:.1} µs",
        sup.process_us(),
        sup.supervisor_us(),
        spawners,
        tokio.process_us(),
        floor.n,
        floor.process_us(),
        goal_cpu - floor.process_us(),
        sup.process_us() - floor.process_us(),
    );
    println!(
        "- context switches per job (a thread slept and was woken, or was preempted; the \
         kernel's switch is the largest single item of a profile on a VM): {:.1}, tokio \
         multi-thread {:.1}, the floor {:.1} (the vfork wait)",
        sup.switches_per_job(),
        tokio.switches_per_job(),
        floor.switches_per_job(),
    );
    println!(
        "- share of the CPU ceiling: {:.0}% (goal >= 85%); the machine's other {:.0}% went to \
         other processes {:.0}%, idle {:.0}%, steal {:.0}%: of the core time other processes \
         left, this run used {:.0}%",
        100.0 * ours,
        100.0 * (1.0 - ours),
        100.0 * others,
        100.0 * idle,
        100.0 * steal,
        100.0 * ours / (ours + idle).max(1e-9),
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
