//! A program that is PID 1 (in a new PID namespace) or a subreaper runs
//! the orphan reaper while it spawns `sh -c 'sleep .1 & exit 3'` 1,000
//! times: every status is 3, every orphaned `sleep` is reaped, and the
//! reaper never takes the status of a child a `Child` handle owns (no
//! status had to be recovered from the kernel).
//!
//! Each mode runs in a helper process (this binary re-run with
//! `CHILDFD_PID1_MODE`): `unshare -p -f --mount-proc` makes it PID 1.

use std::time::Duration;

use childfd::Command;

const SPAWNS: usize = 1000;

fn scenario(mode: &str) {
    if mode == "pid1" {
        assert_eq!(std::process::id(), 1, "not PID 1 in the new namespace");
    } else {
        childfd::reaper::become_subreaper().unwrap();
    }
    let reaper = childfd::reaper::Reaper::start().unwrap();
    for i in 0..SPAWNS {
        let c = Command::new("sh")
            .args(["-c", "sleep .1 & exit 3"])
            .spawn()
            .unwrap();
        let s = c
            .wait_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("sh exits");
        assert_eq!(s.code(), Some(3), "spawn {i}: {s}");
    }
    let all_reaped = childfd_testbin::eventually(Duration::from_secs(20), || {
        childfd_testbin::children().is_empty() && reaper.reaped() >= SPAWNS as u64
    });
    assert!(
        all_reaped,
        "{mode}: orphans left: {:?}, reaped {}",
        childfd_testbin::children(),
        reaper.reaped()
    );
    assert_eq!(
        reaper.reaped(),
        SPAWNS as u64,
        "{mode}: every orphaned sleep, and nothing else"
    );
    assert_eq!(
        childfd::recovered_statuses(),
        0,
        "{mode}: the reaper took an owned child's status"
    );
    println!(
        "{mode}: {SPAWNS} statuses right, {} orphans reaped, none stolen",
        reaper.reaped()
    );
}

fn main() {
    if let Ok(mode) = std::env::var("CHILDFD_PID1_MODE") {
        scenario(&mode);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .env("CHILDFD_PID1_MODE", "subreaper")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "subreaper: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&exe)
        .env("CHILDFD_PID1_MODE", "pid1")
        .output();
    match unshare {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) if !childfd_testbin::is_root() => {
            eprintln!(
                "WARNING: cannot make a PID namespace here ({}); only the subreaper mode was tested",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out) => panic!(
            "pid1: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "WARNING: `unshare` (util-linux) is not installed ({e}); only the subreaper mode was tested"
        ),
    }
}
