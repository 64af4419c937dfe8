//! Forced pid reuse: writes `pid - 1` of a pid childfd just reaped to
//! `/proc/sys/kernel/ns_last_pid` (in the harness's private PID
//! namespace) and starts a decoy, which then usually gets that very pid,
//! and with it the process group id of the reaped tree. A stale signal by
//! number from childfd would hit it.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd_testbin::Rng;

use crate::decoy::Decoy;
use crate::shared::{Shared, lock};

/// Where the next pid of this namespace is chosen.
pub const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// Most decoys of this kind alive in a round.
const MAX_DECOYS: usize = 24;

/// Whether pids can be forced here (root in a PID namespace of our own).
pub fn available() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(NS_LAST_PID)
        .is_ok()
}

/// Aims decoys at recycled pids until the chaos stops.
pub fn run(sh: &Shared, exe: &Path, decoys: &Mutex<Vec<Decoy>>, seed: u64) {
    let mut r = Rng(seed);
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10 + r.next(60)));
        if lock(decoys).len() >= MAX_DECOYS {
            continue;
        }
        let target = {
            let mut v = lock(&sh.reaped_pids);
            if v.is_empty() {
                continue;
            }
            let i = r.next(v.len() as u64) as usize;
            v.swap_remove(i)
        };
        if std::fs::write(NS_LAST_PID, (target - 1).to_string()).is_err() {
            continue;
        }
        Shared::bump(&sh.n.reuse_targets);
        if let Some(d) = Decoy::start(exe, true) {
            Shared::bump(&sh.n.decoys);
            if d.pid == target {
                Shared::bump(&sh.n.reuse_hits);
            }
            lock(decoys).push(d);
        }
    }
}
