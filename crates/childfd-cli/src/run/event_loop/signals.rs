//! childfd's own signals, and job control: what each signal does is in
//! the [parent module's table](super).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use childfd::Signal;

use super::Loop;

impl Loop<'_> {
    /// Handles the signals that arrived since the last call. The order in
    /// which they arrived is lost (they come by number), so a batch holding
    /// SIGCONT is read as "continued last": its SIGTSTP and SIGCHLD (a stop
    /// childfd caused itself, reported while it was stopped) do not stop
    /// childfd again, which would leave it stopped with nobody to continue
    /// it. Terminating signals are handled first.
    pub(super) fn on_signals(&mut self) {
        self.cont_seen.store(false, Ordering::SeqCst);
        let mut pending: Vec<i32> = self.signals.pending().collect();
        let continued = pending.contains(&libc::SIGCONT);
        if continued {
            pending.retain(|&s| s != libc::SIGTSTP && s != libc::SIGCHLD);
        }
        pending.sort_by_key(|&s| match s {
            libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT => 0,
            _ => 1,
        });
        for raw in pending {
            let Some(sig) = Signal::new(raw) else {
                continue;
            };
            let r = match raw {
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT => {
                    self.on_terminating(sig)
                }
                libc::SIGUSR1 | libc::SIGUSR2 => self.child.signal(sig).map_err(|e| e.to_string()),
                libc::SIGWINCH => self.child.signal_tree(sig).map_err(|e| e.to_string()),
                libc::SIGTSTP => self.stop(true),
                libc::SIGCONT => self.resume(),
                libc::SIGCHLD => self.on_child_changed(),
                _ => Ok(()),
            };
            if let Err(e) = r {
                crate::say(format_args!("passing {sig} on failed: {e}"));
            }
        }
    }

    fn on_terminating(&mut self, sig: Signal) -> Result<(), String> {
        self.signal.get_or_insert(sig);
        if self.life.ending() {
            self.life.cancel(&self.child).map_err(|e| e.to_string())
        } else {
            self.life
                .terminate(&self.child, Instant::now(), sig)
                .map_err(|e| e.to_string())
        }
    }

    /// Job control: stop the tree (unless it already stopped itself), give
    /// the terminal back to childfd's group and stop childfd, as a job in
    /// a shell stops; `fg` or `bg` continue childfd, then [`Loop::resume`].
    fn stop(&mut self, stop_tree: bool) -> Result<(), String> {
        if stop_tree {
            self.child
                .signal_tree(Signal::TSTP)
                .map_err(|e| e.to_string())?;
        }
        if let Some(fg) = &mut self.fg {
            fg.take_back();
        }
        if self.cont_seen.load(Ordering::SeqCst) {
            // Continued already (the next batch resumes the tree).
            return Ok(());
        }
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::STOP).map_err(|e| e.to_string())
    }

    fn resume(&mut self) -> Result<(), String> {
        if let Some(fg) = &mut self.fg {
            fg.hand_over();
        }
        self.child
            .signal_tree(Signal::CONT)
            .map_err(|e| e.to_string())
    }

    /// SIGCHLD: with the terminal handed over, a stopped program (Ctrl-Z,
    /// or SIGTTOU) stops childfd too.
    fn on_child_changed(&mut self) -> Result<(), String> {
        if self.fg.is_none() || self.life.status.is_some() {
            return Ok(());
        }
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let opts = WaitIdOptions::STOPPED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        match waitid(WaitId::PidFd(self.child.as_fd()), opts) {
            Ok(Some(st)) if st.stopped() => self.stop(false),
            _ => Ok(()),
        }
    }
}
