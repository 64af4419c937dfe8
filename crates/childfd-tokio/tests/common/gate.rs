//! A child held before `execve` (a `pre_exec` closure reading a pipe)
//! until the test lets it go.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use childfd::Command;

use super::SLACK;

/// A pipe a child's `pre_exec` reads one byte from before `execve`, and
/// one it writes to once it waits there.
pub struct Gate {
    held: (OwnedFd, OwnedFd),
    open: (OwnedFd, OwnedFd),
}

impl Gate {
    pub fn new() -> Gate {
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        Gate {
            held: pipe(),
            open: pipe(),
        }
    }

    /// `cmd`, held before `execve` until the gate opens.
    pub fn hold(&self, mut cmd: Command) -> Command {
        let (held, open) = (self.held.1.as_raw_fd(), self.open.0.as_raw_fd());
        let wait = move || {
            // SAFETY: the gate's fd, open in the parent until the test
            // ends, so open in this copy of it.
            let held = unsafe { BorrowedFd::borrow_raw(held) };
            // SAFETY: as above.
            let open = unsafe { BorrowedFd::borrow_raw(open) };
            rustix::io::write(held, b"h")?;
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(open, &mut byte) {
                    Err(rustix::io::Errno::INTR) => {}
                    r => return r.map(drop).map_err(Into::into),
                }
            }
        };
        // SAFETY: raw read(2) and write(2) on a stack buffer: no
        // allocation, no lock.
        unsafe { cmd.pre_exec(wait) };
        cmd
    }

    /// Waits (bounded) until a child waits at the gate.
    pub fn wait_held(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.held.0,
            rustix::event::PollFlags::IN,
        )];
        let limit = rustix::time::Timespec {
            tv_sec: SLACK.as_secs() as i64,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&limit)).expect("poll") == 1
    }

    pub fn open(&self) {
        rustix::io::write(&self.open.1, b"x").expect("write to the gate");
    }
}
