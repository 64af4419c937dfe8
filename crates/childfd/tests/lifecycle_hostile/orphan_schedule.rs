//! The orphan `Reaper`'s check that its SIGCHLD handler is still
//! installed, in a process whose children keep exiting.

use std::time::{Duration, Instant};

use childfd::Command;
use childfd_testbin::eventually;

/// How long the traffic runs before the program replaces the handler.
const TRAFFIC: Duration = Duration::from_secs(3);
/// The orphan must be reaped within this of its exit: the reaper's checks
/// come at 1, 3 and 7 s after its start, far below the 60 s scan.
const REAP_BOUND: Duration = Duration::from_secs(10);

/// The program's own SIGCHLD handler (does nothing).
extern "C" fn program_sigchld(_: libc::c_int) {}

/// A subreaper starts the orphan `Reaper`; its children exit every few
/// milliseconds for 3 s (each exit wakes the reaper through its handler);
/// then the program installs its own SIGCHLD handler, and an orphan exits.
/// The reaper doubled its check gap at every wake-up, not every check,
/// so after a few exits it next looked at the handler only after 60 s:
/// the orphan stayed a zombie that long. It must be reaped within about
/// as long as the reaper had run (its checks follow the clock).
pub(crate) fn handler_check_backs_off_on_every_wake_up_under_steady_traffic() {
    childfd::reaper::become_subreaper().unwrap();
    let reaper = childfd::reaper::Reaper::start().unwrap();
    let started = Instant::now();
    let mut exits = 0;
    while started.elapsed() < TRAFFIC {
        let c = Command::new(childfd_testbin::EXIT0).spawn().unwrap();
        assert!(c.wait_timeout(REAP_BOUND).unwrap().unwrap().success());
        exits += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    childfd_testbin::install_handler(libc::SIGCHLD, program_sigchld);
    let sh = Command::new("sh")
        .args(["-c", "sleep 0.1 & exit 0"])
        .spawn()
        .unwrap();
    assert!(sh.wait_timeout(REAP_BOUND).unwrap().unwrap().success());
    let replaced = Instant::now();
    let reaped = eventually(REAP_BOUND, || reaper.reaped() >= 1);
    let took = replaced.elapsed();
    drop(reaper);
    childfd_testbin::default_handler(libc::SIGCHLD);
    // The orphan, if the reaper did not take it.
    while childfd_testbin::reap_any_nohang().is_some() {}
    assert!(
        reaped,
        "after {exits} child exits in {TRAFFIC:?}, the orphan was not reaped within {REAP_BOUND:?} of the program replacing SIGCHLD's handler"
    );
    println!("{exits} exits, then the orphan was reaped {took:?} after the handler was replaced");
}
