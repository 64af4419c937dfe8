//! Signals at random moments: to the process and its group (job control,
//! window changes, handled SIGINT/SIGUSR1), and SIGSTOP/SIGCONT to random
//! members of the trees.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use childfd_testbin::Rng;

use crate::config::Kind;
use crate::shared::Shared;
use crate::sys;
use crate::work::Round;

/// Sends signals to the process and to its process group until the chaos
/// stops. SIGTSTP/SIGTTIN stop the whole process (every thread): the
/// harness's init, its parent in another group of the same session,
/// continues it after a few milliseconds, as a shell's `fg` would.
pub fn to_self(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    let me = sys::getpid();
    let group = -sys::getpgrp();
    let tstp = sh.cfg.kinds.has(Kind::Tstp);
    let others = sh.cfg.kinds.has(Kind::Signals);
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(2 + r.next(20)));
        // About every 150 ms a stop (continued 1-30 ms later by the init).
        let stop = tstp && r.next(12) == 0;
        let sig = if stop {
            [libc::SIGTSTP, libc::SIGTTIN][r.next(2) as usize]
        } else if others {
            [libc::SIGWINCH, libc::SIGINT, libc::SIGUSR1, libc::SIGCONT][r.next(4) as usize]
        } else {
            continue;
        };
        let (target, counter) = if r.next(2) == 0 {
            (me, &sh.n.sig_self)
        } else {
            (group, &sh.n.sig_group)
        };
        if sys::kill(target, sig) {
            Shared::bump(counter);
        }
    }
}

/// SIGSTOPs random live members of this round's trees (found in `/proc`
/// by the round's tag, signalled through a pidfd opened before the tag is
/// checked, so a recycled pid is never hit) and SIGCONTs each after a
/// random 1-150 ms. Continues every one it stopped before returning.
pub fn stop_members(sh: &Shared, round: &Round, seed: u64) {
    let mut r = Rng(seed);
    let comm = comm_of(&round.exe);
    let me = sys::getpid();
    let mut stopped: Vec<(OwnedFd, Instant)> = Vec::new();
    while !sh.stop_chaos.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20 + r.next(60)));
        let members: Vec<i32> = childfd_testbin::processes()
            .into_iter()
            .filter(|p| p.comm == comm && p.pid != me && p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        for _ in 0..r.next(4) {
            let Some(&pid) = members.get(r.next(members.len() as u64) as usize) else {
                break;
            };
            let Some(fd) = sys::pidfd_open(pid) else {
                continue;
            };
            if tagged(pid, &round.tag) && sys::pidfd_signal(fd.as_fd(), libc::SIGSTOP) {
                Shared::bump(&sh.n.sig_members);
                let at = Instant::now() + Duration::from_millis(1 + r.next(150));
                stopped.push((fd, at));
            }
        }
        stopped.retain(|(fd, at)| {
            let due = Instant::now() >= *at;
            if due && sys::pidfd_signal(fd.as_fd(), libc::SIGCONT) {
                Shared::bump(&sh.n.sig_members);
            }
            !due
        });
    }
    for (fd, _) in stopped {
        sys::pidfd_signal(fd.as_fd(), libc::SIGCONT);
    }
}

/// What `/proc/<pid>/stat` shows as the name of a process running `exe`.
pub fn comm_of(exe: &std::path::Path) -> String {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.chars().take(15).collect()
}

fn tagged(pid: i32, tag: &str) -> bool {
    let needle = format!("CHILDFD_TEST_TAG={tag}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
}
