//! 10,000 short jobs that each print a line, 64 in flight: childfd's
//! `Supervisor` against tokio (a `JoinSet` of
//! `tokio::process::Command::output`, 64 at a time) in the same run.
//! The job is `childfd-testbin`'s static `echo1` (no loader), so the
//! figures show the process layer, not the dynamic linker.
//!
//! Run: `cargo bench -p childfd-benches --bench supervisor`
//! (`-- --quick`: 1,000 jobs, one repetition).

use std::time::{Duration, Instant};

use childfd_io::{Event, JobOptions, Supervisor};

const CAP: usize = 64;

fn cpu(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU of reaped children (`getrusage(RUSAGE_CHILDREN)`).
fn children_cpu() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

struct Run {
    wall: Duration,
    /// CPU of the thread(s) doing the supervising.
    supervisor_cpu: Duration,
    /// CPU of the whole process.
    process_cpu: Duration,
}

fn childfd_run(n: usize, spawn_threads: Option<usize>) -> Run {
    let p0 = cpu(rustix::time::ClockId::ProcessCPUTime);
    let start = Instant::now();
    let mut sup = match spawn_threads {
        None => Supervisor::new(CAP).unwrap(),
        Some(t) => Supervisor::with_spawn_threads(CAP, t).unwrap(),
    };
    for _ in 0..n {
        sup.push(
            childfd::Command::new(childfd_testbin::ECHO1),
            JobOptions::new().max_bytes(4096),
        );
    }
    let mut done = 0;
    let summary = sup.run(|ev| match ev {
        Event::Exited(r) => {
            assert!(r.status.unwrap().success() && r.stdout.head == b"line\n");
            done += 1;
        }
        Event::Started { .. } => {}
        other => panic!("{other:?}"),
    });
    assert_eq!(done, n);
    Run {
        wall: start.elapsed(),
        supervisor_cpu: summary.supervisor_cpu,
        process_cpu: cpu(rustix::time::ClockId::ProcessCPUTime) - p0,
    }
}

fn tokio_run(n: usize, multi_thread: bool) -> Run {
    let rt = childfd_benches::tokio_runtime(multi_thread);
    let p0 = cpu(rustix::time::ClockId::ProcessCPUTime);
    let start = Instant::now();
    childfd_benches::tokio_echo_jobs(&rt, n, CAP);
    let wall = start.elapsed();
    let process_cpu = cpu(rustix::time::ClockId::ProcessCPUTime) - p0;
    Run {
        wall,
        supervisor_cpu: process_cpu,
        process_cpu,
    }
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|r| r.wall);
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, reps) = if quick { (1_000, 1) } else { (10_000, 3) };
    println!("{n} jobs printing one line, {CAP} in flight, median of {reps} runs");
    println!(
        "supervisor slot: {} bytes per running job (plus its captured bytes)",
        childfd_io::slot_size()
    );
    let c0 = children_cpu();
    type Way = (&'static str, Box<dyn Fn() -> Run>);
    let ways: Vec<Way> = vec![
        ("childfd Supervisor", Box::new(move || childfd_run(n, None))),
        (
            "childfd Supervisor, no spawning threads",
            Box::new(move || childfd_run(n, Some(0))),
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
    let mut results = Vec::new();
    for (name, f) in &ways {
        let r = median((0..reps).map(|_| f()).collect());
        results.push((*name, r));
    }
    let base = results[0].1.wall;
    let runs = (ways.len() * reps * n) as f64;
    println!(
        "children's own CPU (exec, run, exit), all ways: {:.1} µs per job",
        (children_cpu() - c0).as_secs_f64() * 1e6 / runs
    );
    println!(
        "| way | jobs/s | µs per job | childfd ÷ way (throughput) | supervising CPU per job | process CPU per job |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, r) in &results {
        let per = r.wall.as_secs_f64() * 1e6 / n as f64;
        println!(
            "| {name} | {:.0} | {per:.1} | {:.2} | {:.1} µs | {:.1} µs |",
            n as f64 / r.wall.as_secs_f64(),
            r.wall.as_secs_f64() / base.as_secs_f64(),
            r.supervisor_cpu.as_secs_f64() * 1e6 / n as f64,
            r.process_cpu.as_secs_f64() * 1e6 / n as f64,
        );
    }
}
