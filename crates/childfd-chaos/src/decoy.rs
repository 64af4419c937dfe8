//! Decoys: processes the harness starts (by `fork` + `execve`)
//! and never gives to childfd. Each handles every catchable signal and
//! reports each one as a byte on its stdout; at the end of a round every
//! decoy must be alive and have received only the signals the chaos
//! itself sends to the harness's process group (and, for a decoy in a
//! group of its own, none at all). A decoy that got a recycled pid of one
//! of childfd's children (or its group id) catches any signal childfd
//! sends by a stale number.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::sys;

/// The environment variable that makes this program a decoy.
pub const ENV: &str = "CHILDFD_CHAOS_DECOY";

/// The signals the chaos sends to the harness's own process group.
const GROUP_SIGNALS: [i32; 6] = [
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGINT,
    libc::SIGUSR1,
];

/// Runs as a decoy if asked to: handles every catchable signal, says
/// ready, waits for ever.
pub fn run_if_requested() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    sys::report_signals_to(1);
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            sys::handle(sig);
        }
    }
    sys::write_all(1, b"R");
    sys::pause_forever()
}

/// A running decoy.
#[derive(Debug)]
pub struct Decoy {
    out: std::fs::File,
    pidfd: OwnedFd,
    /// Its pid.
    pub pid: i32,
    own_group: bool,
    /// The harness itself sent it a SIGCONT while it started.
    continued: bool,
}

impl Decoy {
    /// Starts a decoy running `exe` (in a process group of its own, or in
    /// the caller's) and waits until its handlers are installed. `None` if
    /// it could not start or a chaos signal killed it while starting.
    pub fn start(exe: &Path, own_group: bool) -> Option<Decoy> {
        use std::os::unix::ffi::OsStrExt;
        let exe = std::ffi::CString::new(exe.as_os_str().as_bytes()).ok()?;
        let env = [std::ffi::CString::new(format!("{ENV}=1")).ok()?];
        let (rd, wr) = std::io::pipe().ok()?;
        let pid = sys::fork_exec(&exe, &env, wr.as_fd(), own_group).ok()?;
        drop(wr);
        let pidfd = sys::pidfd_open(pid)?;
        let mut out = std::fs::File::from(OwnedFd::from(rd));
        // A SIGTSTP sent to the harness's group just after the fork stops
        // it before its handlers are in place: continue it once.
        let mut continued = false;
        if !sys::readable(out.as_fd(), 2000)
            && childfd_testbin::read_stat(pid).is_some_and(|p| p.state == 'T')
        {
            continued = sys::pidfd_signal(pidfd.as_fd(), libc::SIGCONT);
        }
        let mut ready = [0u8; 1];
        if !sys::readable(out.as_fd(), 2000)
            || out.read_exact(&mut ready).is_err()
            || ready[0] != b'R'
        {
            sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
            if sys::readable(pidfd.as_fd(), 5000) {
                sys::waitpid(pid, libc::WNOHANG);
            }
            return None;
        }
        Some(Decoy {
            out,
            pidfd,
            pid,
            own_group,
            continued,
        })
    }

    /// Checks the decoy is alive, not stopped, and got no signal it should
    /// not have; then kills and reaps it. The problem, if any.
    pub fn check_and_end(mut self) -> Option<String> {
        let dead = sys::readable(self.pidfd.as_fd(), 0);
        let stopped = childfd_testbin::read_stat(self.pid).is_some_and(|p| p.state == 'T');
        sys::pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
        sys::readable(self.pidfd.as_fd(), 5000);
        sys::waitpid(self.pid, libc::WNOHANG); // or the orphan reaper took it
        let mut got = Vec::new();
        let _ = self.out.read_to_end(&mut got);
        let allowed: &[i32] = if self.own_group { &[] } else { &GROUP_SIGNALS };
        let wrong: Vec<i32> = got
            .iter()
            .map(|&b| i32::from(b))
            .filter(|s| !allowed.contains(s))
            .filter(|&s| !(self.continued && s == libc::SIGCONT))
            .collect();
        let kind = if self.own_group {
            "decoy (own group)"
        } else {
            "decoy (harness group)"
        };
        if dead {
            Some(format!(
                "{kind} pid {} was killed; signals it saw: {got:?}",
                self.pid
            ))
        } else if stopped {
            Some(format!("{kind} pid {} was stopped", self.pid))
        } else if !wrong.is_empty() {
            Some(format!("{kind} pid {} got signals {wrong:?}", self.pid))
        } else {
            None
        }
    }
}
