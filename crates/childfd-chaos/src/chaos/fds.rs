//! fd churn: opening files with known content (often without
//! `O_CLOEXEC`), dup'ing over and closing them, and `close_range` sweeps.
//!
//! "The fds it owns" means exactly: the low-numbered fds this thread
//! opened itself (kept in its list; the kernel gives them the lowest free
//! numbers, so they take numbers childfd just closed), and every fd
//! number at or above [`Fds::owned_lo`], half the raised `RLIMIT_NOFILE`:
//! the kernel always hands out the lowest free number and the process
//! never holds that many fds, so nothing else in the process ever gets
//! one there. Sweeps are `close_range(owned_lo, ~0)`. The sweep of
//! *everything* above 2, which would also close fds childfd and the Rust
//! runtime hold (epoll, pidfds, pipes of other threads), is done only in
//! a forked copy (see [`fork`](super::fork)).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use childfd_testbin::Rng;

use crate::shared::Shared;
use crate::sys;

/// Files with known content that no child may ever see.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The files.
    pub files: Vec<PathBuf>,
}

impl Secrets {
    /// Writes `n` files `secret-<i>` with known content into `dir`.
    pub fn create(dir: &Path, n: usize) -> std::io::Result<Secrets> {
        let files = (0..n)
            .map(|i| {
                let p = dir.join(format!("secret-{i}"));
                std::fs::write(&p, format!("CHILDFD-CHAOS-SECRET-{i}\n"))?;
                Ok(p)
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Secrets { files })
    }

    /// Opens a random one (`O_CLOEXEC` or not): a raw fd the caller owns.
    pub fn open(&self, r: &mut Rng) -> Option<RawFd> {
        let p = &self.files[r.next(self.files.len() as u64) as usize];
        sys::open_raw(p.to_str()?, r.next(2) == 0)
    }
}

/// The fd thread's state.
#[derive(Debug)]
pub struct Fds {
    /// The lowest fd number the driver owns wholesale.
    pub owned_lo: RawFd,
    low: Vec<RawFd>,
}

const HIGH_SLOTS: i32 = 64;

impl Fds {
    /// Runs the fd churn until the chaos stops; closes all it owns then.
    pub fn run(sh: &Shared, secrets: &Secrets, owned_lo: RawFd, seed: u64) {
        let mut me = Fds {
            owned_lo,
            low: Vec::new(),
        };
        let mut r = Rng(seed);
        while !sh.stop_chaos.load(Ordering::Relaxed) {
            me.step(sh, secrets, &mut r);
            std::thread::sleep(Duration::from_micros(r.next(400)));
        }
        me.low.drain(..).for_each(sys::close);
        sys::close_range(owned_lo as u32, u32::MAX);
    }

    fn step(&mut self, sh: &Shared, secrets: &Secrets, r: &mut Rng) {
        let slot = self.owned_lo + r.next(HIGH_SLOTS as u64) as i32;
        match r.next(7) {
            0 | 1 if self.low.len() < 8 => {
                if let Some(fd) = secrets.open(r) {
                    self.low.push(fd);
                }
            }
            2 if !self.low.is_empty() => {
                let fd = self.low.swap_remove(r.next(self.low.len() as u64) as usize);
                sys::close(fd);
            }
            3 if !self.low.is_empty() => {
                // dup over one of the owned high slots (open or not)
                let fd = self.low[r.next(self.low.len() as u64) as usize];
                sys::dup2(fd, slot);
            }
            4 if !self.low.is_empty() => {
                let fd = self.low[r.next(self.low.len() as u64) as usize];
                if let Some(new) = sys::dup_at_least(fd, slot)
                    && new >= self.owned_lo + HIGH_SLOTS * 2
                {
                    sys::close(new); // keep the owned range compact
                }
            }
            5 if r.next(8) == 0 => {
                sys::close_range(self.owned_lo as u32, u32::MAX);
                Shared::bump(&sh.n.sweeps);
                // reopen files with known content into the swept range
                for _ in 0..4 {
                    if let Some(fd) = secrets.open(r) {
                        let at = self.owned_lo + r.next(HIGH_SLOTS as u64) as i32;
                        sys::dup2(fd, at);
                        sys::close(fd);
                    }
                }
            }
            _ => sys::close(slot),
        }
        Shared::bump(&sh.n.fd_ops);
    }
}
