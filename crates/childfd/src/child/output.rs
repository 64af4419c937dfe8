//! `wait_with_output`: std's way to collect a child's output, and the
//! [`Output`] it returns.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::event::{PollFd, PollFlags};

use super::{Child, ChildStderr, ChildStdout};
use crate::ExitStatus;

/// A child's status and everything it wrote to piped stdout and stderr, as
/// std's `Output`; returned by [`Command::output`](crate::Command::output)
/// and [`Child::wait_with_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How the child ended.
    pub status: ExitStatus,
    /// What it wrote to stdout (empty unless stdout was piped).
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (empty unless stderr was piped).
    pub stderr: Vec<u8>,
}

impl From<Output> for std::process::Output {
    fn from(o: Output) -> std::process::Output {
        std::process::Output {
            status: o.status.into(),
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

impl Child {
    /// Closes the child's stdin (if still held), reads its piped stdout and
    /// stderr to end-of-file, both at once (`poll(2)` on the two pipes, so
    /// a child filling one pipe while we read the other never deadlocks),
    /// then [`wait`](Child::wait)s: std's `wait_with_output`.
    ///
    /// ```
    /// use childfd::{Command, Stdio};
    /// use std::io::Write;
    ///
    /// let mut child = Command::new("sh")
    ///     .args(["-c", "tr a-z A-Z; echo done >&2"])
    ///     .stdin(Stdio::piped())
    ///     .stdout(Stdio::piped())
    ///     .stderr(Stdio::piped())
    ///     .spawn()?;
    /// child.stdin.as_mut().expect("piped").write_all(b"shout")?;
    /// let out = child.wait_with_output()?; // closes stdin: `tr` sees EOF
    /// assert_eq!((out.stdout, out.stderr), (b"SHOUT".to_vec(), b"done\n".to_vec()));
    /// assert!(out.status.success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Reading a pipe or waiting failed.
    ///
    /// # Caveats
    ///
    /// As with std, a descendant that inherited the pipes keeps them open
    /// and this waits for it, without bound. `childfd_io::output` bounds
    /// it (wait-delay, deadline) and names the processes holding the pipes.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = read_both(self.stdout.take(), self.stderr.take())?;
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Reads both pipes to EOF, whichever has data first.
fn read_both(out: Option<ChildStdout>, err: Option<ChildStderr>) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    match (out, err) {
        (None, None) => {}
        (Some(mut out), None) => {
            out.read_to_end(&mut o)?;
        }
        (None, Some(mut err)) => {
            err.read_to_end(&mut e)?;
        }
        (Some(mut out), Some(mut err)) => {
            let mut open = [true, true];
            while open[0] || open[1] {
                let ready = poll_readable(out.as_fd(), err.as_fd(), open)?;
                if ready[0] {
                    open[0] = read_some(&mut out, &mut o)?;
                }
                if ready[1] {
                    open[1] = read_some(&mut err, &mut e)?;
                }
            }
        }
    }
    Ok((o, e))
}

/// Which of the still-open pipes can be read without blocking (data, EOF
/// or an error), after `poll(2)` on them.
fn poll_readable(a: BorrowedFd<'_>, b: BorrowedFd<'_>, open: [bool; 2]) -> io::Result<[bool; 2]> {
    let mut fds: Vec<PollFd<'_>> = [a, b]
        .into_iter()
        .zip(open)
        .filter(|(_, o)| *o)
        .map(|(fd, _)| PollFd::from_borrowed_fd(fd, PollFlags::IN))
        .collect();
    loop {
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut ready = fds.iter().map(|f| !f.revents().is_empty());
    Ok(open.map(|o| o && ready.next().unwrap_or(false)))
}

/// One read into `buf`; `Ok(false)` at EOF.
fn read_some(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 32 * 1024];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
