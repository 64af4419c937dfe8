//! The controlling terminal: handing the foreground to the program's
//! process group and taking it back
//! ([tcsetpgrp(3)](https://man7.org/linux/man-pages/man3/tcsetpgrp.3.html)),
//! as a shell does for a job.
//!
//! # Caveats
//!
//! The program runs before childfd hands it the terminal; if it read the
//! terminal in that instant it was stopped by SIGTTIN, so the hand-over
//! is followed by SIGCONT to the tree. A Ctrl-Z typed between the two is
//! undone by that SIGCONT (type it again).
//! Only a program that leads its own process group (containment `auto`,
//! `cgroup` or `pgroup`) can be given the terminal; with `session` it has
//! no controlling terminal, with `none` it already shares childfd's group.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::process::{Pid, getpgrp};
use rustix::termios::{tcgetpgrp, tcsetpgrp};

use crate::sys;

/// childfd's terminal while the program holds its foreground.
#[derive(Debug)]
pub struct Foreground {
    tty: BorrowedFd<'static>,
    ours: Pid,
    program: Pid,
    /// Whether the program's group has the foreground now.
    given: bool,
}

/// Stdin, if it is a terminal whose foreground group is childfd's own.
pub fn foreground_tty() -> Option<BorrowedFd<'static>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fd = stdio::stdin();
    (tcgetpgrp(fd).ok()? == getpgrp()).then_some(fd)
}

/// Fds 0, 1 and 2 as borrowed for the whole process.
pub mod stdio {
    use super::*;
    use std::sync::LazyLock;

    static STDIN: LazyLock<std::io::Stdin> = LazyLock::new(std::io::stdin);
    static STDOUT: LazyLock<std::io::Stdout> = LazyLock::new(std::io::stdout);
    static STDERR: LazyLock<std::io::Stderr> = LazyLock::new(std::io::stderr);

    /// Fd 0.
    pub fn stdin() -> BorrowedFd<'static> {
        STDIN.as_fd()
    }
    /// Fd 1.
    pub fn stdout() -> BorrowedFd<'static> {
        STDOUT.as_fd()
    }
    /// Fd 2.
    pub fn stderr() -> BorrowedFd<'static> {
        STDERR.as_fd()
    }
}

impl Foreground {
    /// Gives the terminal `tty` to process group `program`.
    pub fn give(tty: BorrowedFd<'static>, program: u32) -> Option<Foreground> {
        let program = Pid::from_raw(program as i32)?;
        let mut f = Foreground {
            tty,
            ours: getpgrp(),
            program,
            given: false,
        };
        f.hand_over();
        f.given.then_some(f)
    }

    /// Gives the terminal to the program's group again, if childfd has it
    /// (after `fg`). Returns whether it did.
    pub fn hand_over(&mut self) -> bool {
        if tcgetpgrp(self.tty).ok() != Some(self.ours) {
            return false;
        }
        self.given = sys::with_sigttou_blocked(|| tcsetpgrp(self.tty, self.program)).is_ok();
        self.given
    }

    /// Takes the terminal back for childfd's group, if the program's group
    /// has it.
    pub fn take_back(&mut self) {
        if self.given && tcgetpgrp(self.tty).ok() == Some(self.program) {
            let _ = sys::with_sigttou_blocked(|| tcsetpgrp(self.tty, self.ours));
        }
        self.given = false;
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.take_back();
    }
}
