//! Runs N short jobs (each prints one line) through a `Supervisor` and
//! prints the summary and the slot size. Used for the per-job syscall
//! count in the README:
//!
//! ```text
//! cargo build --release -p childfd-io --example supervise
//! strace -c target/release/examples/supervise 1000 0
//! ```
//!
//! Arguments: number of jobs (default 1000), spawning threads (default:
//! one per extra core), jobs in flight (default 64).

use childfd_io::{Event, JobOptions, Supervisor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(1000);
    let cap = args.get(2).copied().unwrap_or(64);
    let mut sup = match args.get(1) {
        Some(&t) => Supervisor::with_spawn_threads(cap, t)?,
        None => Supervisor::new(cap)?,
    };
    for _ in 0..n {
        sup.push(
            childfd::Command::new(childfd_testbin::ECHO1),
            JobOptions::new(),
        );
    }
    let start = std::time::Instant::now();
    let summary = sup.run(|ev| {
        if let Event::Exited(r) = &ev {
            assert_eq!(r.stdout.head, b"line\n");
        }
    });
    let wall = start.elapsed();
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let cpu = std::time::Duration::new(cpu.tv_sec as u64, cpu.tv_nsec as u32);
    let per_job = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{n} jobs: {:.0} jobs/s, process CPU {:.1} µs/job (loop thread {:.1})",
        n as f64 / wall.as_secs_f64(),
        per_job(cpu),
        per_job(summary.supervisor_cpu),
    );
    println!("{n} jobs in {wall:?}: {summary:?}");
    println!("slot: {} bytes per running job", childfd_io::slot_size());
    Ok(())
}
