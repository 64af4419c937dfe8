//! `cargo run --release -p childfd-benches --bin env_copy [SPAWNS]`: what
//! the per-spawn copy of the environment costs a serial spawn + wait of a
//! static `_exit(0)` child with one reused `Command`: `spawn` (a copy taken
//! at each spawn), `spawn_with_env` with a fresh `EnvSnapshot` each time
//! (the same copy, made by the caller), and `spawn_with_env` with one
//! snapshot reused; plus `std::env::vars_os` alone. Three rounds,
//! interleaved, so that the machine's drift hits every way alike.

use std::time::Instant;

use childfd::{Command, EnvSnapshot};

fn per_spawn_us(n: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("SPAWNS: a number"));
    let cmd = Command::new(childfd_testbin::EXIT0);
    let run = |c: &Command, snap: Option<&EnvSnapshot>| {
        let child = match snap {
            Some(s) => c.spawn_with_env(s),
            None => c.spawn(),
        };
        assert!(child.unwrap().wait().unwrap().success());
    };
    let reused = EnvSnapshot::capture();
    println!(
        "{} environment variables, {n} spawns per way and round",
        std::env::vars_os().count()
    );
    for round in 1..=3 {
        let copy = per_spawn_us(n, || {
            let mut bytes = 0;
            std::env::vars_os().for_each(|(k, v)| bytes += k.len() + v.len());
            std::hint::black_box(bytes);
        });
        let spawn = per_spawn_us(n, || run(&cmd, None));
        let fresh = per_spawn_us(n, || run(&cmd, Some(&EnvSnapshot::capture())));
        let kept = per_spawn_us(n, || run(&cmd, Some(&reused)));
        println!(
            "round {round}: vars_os alone {copy:.2} µs; spawn {spawn:.1} µs; \
             spawn_with_env(fresh snapshot) {fresh:.1} µs; spawn_with_env(reused snapshot) {kept:.1} µs"
        );
    }
}
