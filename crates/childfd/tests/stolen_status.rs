//! Exit statuses stolen by another reaper in the same process are
//! recovered, never replaced by a made-up status.
//!
//! Both tests change process-wide state (a `waitpid(-1)` loop, SIGCHLD
//! disposition), so they live in their own test binary and run one at a
//! time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use childfd::Command;
use childfd_testbin::Hygiene;

const BOUND: Duration = Duration::from_secs(30);

fn spawn_and_check_codes(rounds: usize) {
    for i in 0..rounds {
        let n = (i * 7 % 256) as i32;
        let c = Command::new("sh")
            .args(["-c", &format!("exit {n}")])
            .spawn()
            .unwrap();
        let s = c.wait_timeout(BOUND).unwrap().expect("sh should exit");
        assert_eq!(s.code(), Some(n), "round {i}: wanted exit {n}, got {s}");
    }
}

#[test]
fn a_pid1_style_waitpid_loop_cannot_steal_our_exit_statuses() {
    let h = Hygiene::start();
    let stop = AtomicBool::new(false);
    let stolen = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if childfd_testbin::reap_any_nohang().is_some() {
                    stolen.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::yield_now();
                }
            }
        });
        spawn_and_check_codes(1000);
        stop.store(true, Ordering::Relaxed);
    });
    let stolen = stolen.load(Ordering::Relaxed);
    eprintln!("the foreign reaper took {stolen} of 1000 children first");
    assert!(
        stolen > 0,
        "the foreign reaper never won a race: the recovery path was not exercised"
    );
    h.finish(1);
}

#[test]
fn sigchld_ignored_auto_reaping_cannot_steal_our_exit_statuses() {
    let h = Hygiene::start();
    let ignored = childfd_testbin::SigchldIgnored::new();
    spawn_and_check_codes(1000);
    drop(ignored);
    h.finish(1);
}
