//! Failure #4 of DESIGN.md, live: another reaper in the same process (a
//! PID-1 style `waitpid(-1)` loop) races every spawn for the exit status.
//!
//! `std::process::Command` loses most of them (ECHILD); childfd gets every
//! one right, recovering the stolen ones from the kernel
//! (`PIDFD_INFO_EXIT`). Then 1,000 handles of running children are dropped
//! and the zombie count is checked.
//!
//! Run: `cargo run --release -p childfd --example stolen_status`

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("spawn method: {:?}", childfd::spawn_method());
    println!(
        "running `sh -c 'exit N'` {ROUNDS} times per library while a thread loops waitpid(-1, WNOHANG)"
    );
    let stop = AtomicBool::new(false);
    let stolen = AtomicUsize::new(0);
    let (mut std_ok, mut std_err, mut std_wrong, mut ours_ok) = (0, 0, 0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let mut st = 0;
                // SAFETY: waitpid with a valid out-pointer; reaping any child
                // is exactly the misbehaviour this example demonstrates.
                if unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {
                    stolen.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::yield_now();
                }
            }
        });
        for i in 0..ROUNDS {
            let n = (i % 200) as i32 + 1;
            let script = format!("exit {n}");
            match std::process::Command::new("sh")
                .args(["-c", &script])
                .status()
            {
                Ok(s) if s.code() == Some(n) => std_ok += 1,
                Ok(_) => std_wrong += 1,
                Err(_) => std_err += 1,
            }
            let child = childfd::Command::new("sh").args(["-c", &script]).spawn()?;
            match child.wait_timeout(Duration::from_secs(10))? {
                Some(s) if s.code() == Some(n) => ours_ok += 1,
                other => println!("  childfd round {i}: wanted {n}, got {other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    println!(
        "  std::process::Command: {std_ok} right, {std_err} errors (status stolen), {std_wrong} wrong codes"
    );
    println!(
        "  childfd::Command:      {ours_ok} right of {ROUNDS} (the other thread reaped {} children of both first)",
        stolen.load(Ordering::Relaxed)
    );

    println!("dropping 1000 handles of children that are still running...");
    let start = Instant::now();
    for _ in 0..1000 {
        drop(childfd::Command::new("sleep").arg("0.05").spawn()?);
    }
    println!("  dropped in {:?} (drop never blocks)", start.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    let zombies = loop {
        let z = zombie_children();
        if (z == 0 && childfd::pending_reaps() == 0) || Instant::now() > deadline {
            break z;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("  zombies left once they exited: {zombies}");
    if ours_ok != ROUNDS || zombies != 0 {
        return Err("childfd lost a status or left a zombie".into());
    }
    Ok(())
}

/// Children of this process in state Z, from /proc.
fn zombie_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| {
            let after = s.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&me.as_str())
        })
        .count()
}
