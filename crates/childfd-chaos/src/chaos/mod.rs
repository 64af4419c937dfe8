//! The chaos driver's threads: each misbehaves in one way until the
//! round's chaos stops.

pub mod fds;
pub mod fork;
pub mod pidreuse;
pub mod signals;

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd_testbin::Rng;

use crate::shared::{Shared, lock};
use crate::sys;

/// Held around every `set_var`/`remove_var` and every `fork()`: a copy
/// forked while another thread holds std's environment write lock would
/// wait on it for ever. (That deadlock is the host's, not childfd's: the
/// chaos avoids it so that every hang it reports is childfd's.)
pub static ENV_FORK: Mutex<()> = Mutex::new(());

/// Changes the environment in a loop: `set_var` of variables of random
/// length, `remove_var`, as a misbehaving host thread does.
pub fn env(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        let key = format!("CHILDFD_CHAOS_ENV_{}", r.next(16));
        {
            let _g = lock(&ENV_FORK);
            if r.next(3) == 0 {
                sys::remove_env(&key);
            } else {
                sys::set_env(&key, &"v".repeat(r.next(4096) as usize));
            }
        }
        Shared::bump(&sh.n.env_changes);
        // Often, but not a busy loop: the load is the hogs' job.
        std::thread::sleep(Duration::from_micros(r.next(400)));
    }
    for i in 0..16 {
        let _g = lock(&ENV_FORK);
        sys::remove_env(&format!("CHILDFD_CHAOS_ENV_{i}"));
    }
}

/// Burns CPU until the chaos stops: spins 10 ms, sleeps 10 ms (half a
/// core per hog). Hogs that never sleep measure the scheduler rather than
/// childfd: two of them on two cores slowed spawns fourfold and put the
/// tree's own exit after SIGTERM seconds late in a trial run.
pub fn hog(sh: &Shared) {
    let mut x = 1u64;
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(10) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
