//! One way of the async scenario alone, for profiling it
//! (`perf record -g target/release/async_way childfd mt 2000`):
//! `async_way childfd|tokio mt|ct N`; prints jobs/s and CPU per job.

use childfd_benches::async_jobs::{AsyncWay, run};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let multi_thread = args.get(1).is_none_or(|a| a == "mt");
    let way = match args.first().map(String::as_str) {
        Some("tokio") => AsyncWay::TokioProcess { multi_thread },
        _ => AsyncWay::ChildfdTokio { multi_thread },
    };
    let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let r = run(way, n).run;
    println!(
        "{}: {n} jobs, {:.0} jobs/s, process CPU {:.1} µs per job, children's {:.1} µs",
        way.label(),
        r.jobs_per_s(),
        r.process_us(),
        r.children_us()
    );
}
