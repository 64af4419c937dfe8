//! `cargo run --release -p childfd-benches --bin serial_cpu [ROUNDS]`: the
//! serial static scenario of `compare` (spawn + wait of a static `_exit(0)`
//! child), timed both in wall-clock and in CPU time (parent + reaped
//! children, from `getrusage`), against the raw clone + pidfd limit in
//! the same rounds; childfd both in its default mode and with
//! `Containment::Inherit`. CPU time is what a loaded machine distorts least: on a
//! shared host, wall-clock ratios move by ±30% between runs.

use std::time::{Duration, Instant};

use childfd_benches::{Way, serial};

/// CPU time of this process and its reaped children, in µs.
fn cpu_us() -> f64 {
    let t = |who| {
        // SAFETY: rusage is plain data; getrusage fills it in.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is writable.
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |v: libc::timeval| v.tv_sec as f64 * 1e6 + v.tv_usec as f64;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    t(libc::RUSAGE_SELF) + t(libc::RUSAGE_CHILDREN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spawns and waits for `cmd` `n` times; returns how many ran.
fn childfd_serial(cmd: &childfd::Command, n: usize) -> usize {
    for _ in 0..n {
        assert!(cmd.status().expect("spawn").success());
    }
    n
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let n = 2000;
    let ways = [Way::CloneVmPidfd, Way::Childfd];
    for way in ways {
        serial(way, childfd_testbin::EXIT0, 200, Duration::from_millis(300));
    }
    // A third row: childfd with the child in the caller's process group
    // (`Containment::Inherit`), which catches every signal until exec.
    let mut inherit = childfd::Command::new(childfd_testbin::EXIT0);
    inherit.containment(childfd::Containment::Inherit);
    childfd_serial(&inherit, 200);
    let rows = ways.len() + 1;
    let mut wall = vec![Vec::new(); rows];
    let mut cpu = vec![Vec::new(); rows];
    for _ in 0..rounds {
        for i in 0..rows {
            let (c0, t0) = (cpu_us(), Instant::now());
            let k = match ways.get(i) {
                Some(&way) => serial(way, childfd_testbin::EXIT0, n, Duration::from_secs(10)).0,
                None => childfd_serial(&inherit, n),
            };
            wall[i].push(t0.elapsed().as_secs_f64() * 1e6 / k as f64);
            cpu[i].push((cpu_us() - c0) / k as f64);
        }
    }
    let (lw, lc) = (median(wall[0].clone()), median(cpu[0].clone()));
    for i in 0..rows {
        let label = ways.get(i).map_or(
            "childfd Command::spawn + wait, Containment::Inherit".to_string(),
            |w| w.label().to_string(),
        );
        let (w, c) = (median(wall[i].clone()), median(cpu[i].clone()));
        println!(
            "{label:<66} wall {w:>7.1} µs ({:.2}× limit)  cpu {c:>6.1} µs ({:.2}× limit)",
            w / lw,
            c / lc
        );
    }
}
