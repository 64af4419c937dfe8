//! Serial spawn + wait: childfd against `std::process::Command::status`,
//! with a static `_exit(0)` child (spawn cost alone) and with `/bin/true`
//! (dynamically linked: the loader dominates).
//!
//! Run: `cargo bench -p childfd-benches --bench spawn`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::process::Stdio;
use std::time::Duration;

fn spawn_wait(c: &mut Criterion) {
    for (name, program) in [
        ("static", childfd_testbin::EXIT0),
        ("bin_true", "/bin/true"),
    ] {
        let mut g = c.benchmark_group(format!("spawn_wait/{name}"));
        g.measurement_time(Duration::from_secs(8));
        let cmd = childfd::Command::new(program);
        g.bench_function("childfd", |b| {
            b.iter(|| {
                let s = cmd.spawn().expect("spawn").wait().expect("wait");
                assert!(s.success());
            })
        });
        let mut std_cmd = std::process::Command::new(program);
        std_cmd.stdin(Stdio::inherit());
        g.bench_function("std", |b| {
            b.iter(|| {
                let s = std_cmd.status().expect("status");
                assert!(s.success());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, spawn_wait);
criterion_main!(benches);
