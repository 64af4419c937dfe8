//! The async child: a [`childfd::Child`] whose pidfd is registered with
//! tokio's reactor.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use childfd::{EndedBy, ExitStatus, Signal, SignalError, Termination, TreeError, WaitError};
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use crate::sys::Pidfd;

/// The write end of the child's stdin pipe, as a tokio `AsyncWrite`.
/// Dropping it gives the child EOF. A write after the child closed its end
/// fails with `EPIPE` (and raises SIGPIPE unless it is ignored, as it is
/// in Rust programs; [`output`](crate::output) never raises it).
pub type ChildStdin = pipe::Sender;
/// The read end of the child's stdout pipe, as a tokio `AsyncRead`.
pub type ChildStdout = pipe::Receiver;
/// The read end of the child's stderr pipe, as a tokio `AsyncRead`.
pub type ChildStderr = pipe::Receiver;

/// How long to wait for a SIGKILLed tree to disappear before giving up
/// (as the core crate's `terminate`).
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// Back-off bounds while a readable pidfd cannot be reaped yet (a zombie a
/// debugger still holds) and while re-checking a tree (a process group has
/// no exit notification).
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const TREE_PAUSE: Duration = Duration::from_millis(20);
const REAP_PAUSE: Duration = Duration::from_millis(100);

/// A child process on tokio: its pidfd is registered with the runtime's
/// reactor when something first waits for its exit, so waiting costs no
/// thread and no signal handler (and a capture that sees the child exit
/// by the end of its output never registers it).
///
/// Everything but taking the pipes takes `&self`: one task can await
/// [`wait`](Child::wait) while another calls [`kill`](Child::kill). Every
/// future is cancel-safe: dropping it loses nothing, and awaiting again
/// continues (the status is cached once reaped).
///
/// A `Child` may outlive the runtime that spawned it or first waited for
/// it: the next wait, on another runtime, registers the pidfd with that
/// one, and an [`output`](crate::output) started there moves the pipes it
/// reads there too (pipes taken with [`take_stdout`](Child::take_stdout)
/// and the like are tokio's own types, bound to the runtime they were made
/// on, as is a capture future: polling one on another runtime fails).
///
/// Dropping a `Child` never blocks and never leaves a zombie: the pidfd is
/// deregistered (if it was registered) and handed to the core crate's
/// background reaper. With
/// [`kill_on_drop`](childfd::Command::kill_on_drop) the tree is killed
/// first.
///
/// ```
/// use childfd_tokio::CommandExt;
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let child = childfd::Command::new("sh").args(["-c", "sleep 60 & sleep 60"]).spawn_async().await?;
/// // SIGTERM + SIGCONT to the whole tree, SIGKILL after 2 s if needed.
/// let t = child.terminate(Duration::from_secs(2)).await?;
/// assert_eq!(t.status.signal(), Some(childfd::Signal::TERM));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Child {
    /// The pidfd on the reactor of the runtime that last waited for it,
    /// from the first wait on (see [`Child::exit_fd`]). Declared before
    /// `inner`: dropped (deregistered) before the core child closes it;
    /// other references live only in futures that borrow the `Child`.
    exit: Mutex<Option<Arc<AsyncFd<Pidfd>>>>,
    /// Owns the core child, and so its pidfd.
    inner: childfd::Child,
    /// Behind a lock so that [`wait`](Child::wait), taking `&self`, can
    /// close it (as `std`, `tokio::process` and the core crate do).
    stdin: Mutex<Option<ChildStdin>>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

impl Child {
    /// Registers a child spawned with [`childfd::Command::spawn`] with the
    /// current runtime, converting its piped stdio to tokio pipes. Its
    /// pidfd joins the reactor when something first waits for the exit.
    ///
    /// # Errors
    ///
    /// If registration fails; the child is then dropped (handed to the
    /// background reaper, killed with `kill_on_drop`).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled (as tokio's `AsyncFd`),
    /// here for its pipes, at the first wait for its pidfd.
    pub fn from_child(mut child: childfd::Child) -> io::Result<Child> {
        let stdin = child.take_stdin().map(OwnedFd::from);
        let stdout = child.take_stdout().map(OwnedFd::from);
        let stderr = child.take_stderr().map(OwnedFd::from);
        // The core crate made these pipes (`pipe2(O_CLOEXEC)`): one
        // `fcntl` makes each non-blocking, no type check needed.
        Ok(Child {
            stdin: Mutex::new(
                stdin
                    .map(|fd| pipe::Sender::from_owned_fd_unchecked(nonblocking(fd)?))
                    .transpose()?,
            ),
            stdout: stdout
                .map(|fd| pipe::Receiver::from_owned_fd_unchecked(nonblocking(fd)?))
                .transpose()?,
            stderr: stderr
                .map(|fd| pipe::Receiver::from_owned_fd_unchecked(nonblocking(fd)?))
                .transpose()?,
            exit: Mutex::new(None),
            inner: child,
        })
    }

    /// The core child, for everything this type does not wrap (its
    /// containment's cgroup path, blocking waits).
    pub fn inner(&self) -> &childfd::Child {
        &self.inner
    }

    /// The pidfd on the reactor, registered with the current runtime now
    /// if not yet, or if it is still the registration `gone`, whose
    /// runtime was shut down: a `Child` may outlive the runtime that first
    /// waited for it (a wait under a timeout, then the runtime dropped),
    /// and must not be left unwaitable.
    fn exit_fd(&self, gone: Option<&Arc<AsyncFd<Pidfd>>>) -> io::Result<Arc<AsyncFd<Pidfd>>> {
        let mut exit = self.exit.lock().unwrap_or_else(PoisonError::into_inner);
        match &*exit {
            Some(fd) if !gone.is_some_and(|g| Arc::ptr_eq(g, fd)) => return Ok(fd.clone()),
            _ => {}
        }
        // A shut-down runtime's registration is in its own epoll set, not
        // in the current runtime's: registering again cannot collide.
        let fd = Arc::new(crate::sys::register_pidfd(&self.inner)?);
        *exit = Some(fd.clone());
        Ok(fd)
    }

    /// Waits until the pidfd is readable (the child exited), on the
    /// current runtime's reactor. A registration whose runtime was shut
    /// down (its readiness fails, and only then) is replaced once.
    async fn exit_readable(&self) -> io::Result<()> {
        let exit = self.exit_fd(None)?;
        match exit.readable().await {
            Ok(_ready) => return Ok(()),
            Err(_runtime_gone) => {}
        }
        let exit = self.exit_fd(Some(&exit))?;
        exit.readable().await.map(drop)
    }

    /// The child's pid, for display and logs only (see
    /// [`childfd::Child::id`]).
    pub fn id(&self) -> u32 {
        self.inner().id()
    }

    /// Takes the parent's end of the stdin pipe (with `Stdio::piped()`).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Takes the parent's end of the stdout pipe (with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the parent's end of the stderr pipe (with `Stdio::piped()`).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// Waits for the child to exit and returns its status. Closes the
    /// stdin pipe first if it was not taken (as `std`, `tokio::process`
    /// and [`childfd::Child::wait`]): a child reading its stdin to the end
    /// would otherwise wait for an EOF that never comes.
    ///
    /// Sleeps until the pidfd is readable (the kernel's exit notification,
    /// [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)),
    /// then reaps with `waitid(P_PIDFD, WEXITED | __WALL)`; a status another
    /// reaper took first is recovered from `PIDFD_INFO_EXIT`. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`childfd::Child::wait`].
    pub async fn wait(&self) -> Result<ExitStatus, WaitError> {
        drop(
            self.stdin
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut pause = FIRST_PAUSE;
        loop {
            if let Some(status) = self.inner().try_wait()? {
                return Ok(status);
            }
            // A pidfd turns readable at exit and stays so: readiness is
            // never cleared, so a second pass does not wait for an edge.
            self.exit_readable().await.map_err(|e| self.os(e))?;
            if let Some(status) = self.inner().try_wait()? {
                return Ok(status);
            }
            // Exited but not reapable yet (a debugger holds the zombie, or
            // another thread is reaping right now): back off.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REAP_PAUSE);
        }
    }

    /// The status if the child has exited, without waiting.
    ///
    /// # Errors
    ///
    /// As [`childfd::Child::try_wait`].
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, WaitError> {
        self.inner().try_wait()
    }

    /// Sends `sig` to the child through its pidfd (`pidfd_send_signal(2)`);
    /// nothing once it has been reaped.
    ///
    /// # Errors
    ///
    /// As [`childfd::Child::signal`].
    pub fn signal(&self, sig: Signal) -> Result<(), SignalError> {
        self.inner().signal(sig)
    }

    /// Sends SIGKILL to the child (not its descendants).
    ///
    /// # Errors
    ///
    /// As [`signal`](Child::signal).
    pub fn kill(&self) -> Result<(), SignalError> {
        self.inner().kill()
    }

    /// Sends `sig` to the child's whole tree, as its containment allows
    /// (see [`childfd::Child::signal_tree`]).
    ///
    /// # Errors
    ///
    /// As [`childfd::Child::signal_tree`].
    pub fn signal_tree(&self, sig: Signal) -> Result<(), TreeError> {
        self.inner().signal_tree(sig)
    }

    /// SIGKILL to the whole tree (`cgroup.kill` in cgroup mode).
    ///
    /// # Errors
    ///
    /// As [`signal_tree`](Child::signal_tree).
    pub fn kill_tree(&self) -> Result<(), TreeError> {
        self.inner().kill_tree()
    }

    /// Waits until the child has exited and every member of its tree has
    /// ended; returns the child's status. Reaps the child. The tree is
    /// re-checked with a growing interval (1 to 20 ms) on the runtime's
    /// timer: a process group has no exit notification. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`childfd::Child::wait_tree_deadline`].
    pub async fn wait_tree(&self) -> Result<ExitStatus, TreeError> {
        let status = self.wait().await?;
        let mut pause = FIRST_PAUSE;
        // With the leader reaped, a check against "now" never blocks.
        while !self.inner().wait_tree_deadline(Instant::now())? {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(TREE_PAUSE);
        }
        Ok(status)
    }

    /// Ends the tree gracefully: SIGCONT then SIGTERM to the tree (stopped
    /// members must see the TERM), up to `grace` on the runtime's timer for
    /// the child and every member to end, then SIGKILL to the tree. Reaps
    /// the child. As [`childfd::Child::terminate`], without blocking a
    /// thread. Dropping the future leaves the signals sent; awaiting again
    /// sends SIGTERM again and restarts the grace.
    ///
    /// # Errors
    ///
    /// [`TreeError::Survivors`] if members outlive SIGKILL for 10 s; others
    /// as [`signal_tree`](Child::signal_tree).
    pub async fn terminate(&self, grace: Duration) -> Result<Termination, TreeError> {
        // CONT first: sent after the TERM, it could come too late for a
        // stopped member once the leader died of the TERM (its orphaned
        // group gets SIGHUP + SIGCONT, and the SIGHUP ends a member that
        // handles TERM before it sees it).
        for s in [Signal::CONT, Signal::TERM] {
            match self.signal_tree(s) {
                // Members that could not be signalled safely: the kill at
                // the end of the grace reaches them.
                Ok(()) | Err(TreeError::MembersNotSignalled { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let ended_by = match tokio::time::timeout(grace, self.wait_tree()).await {
            Ok(gone) => {
                gone?;
                EndedBy::Term
            }
            Err(_elapsed) => {
                self.kill_tree()?;
                match tokio::time::timeout(KILL_PATIENCE, self.wait_tree()).await {
                    Ok(gone) => {
                        gone?;
                        EndedBy::Kill
                    }
                    Err(_elapsed) => {
                        return Err(TreeError::Survivors {
                            pid: self.id(),
                            waited: KILL_PATIENCE,
                        });
                    }
                }
            }
        };
        let status = self.wait().await?;
        Ok(Termination { status, ended_by })
    }

    /// Waits for the pidfd to be readable without reaping (for the output
    /// loop, which reaps through the shared state machine).
    pub(crate) async fn exited(&self) -> io::Result<()> {
        self.exit_readable().await
    }

    fn os(&self, source: io::Error) -> WaitError {
        WaitError::Os {
            pid: self.id(),
            source,
        }
    }
}

/// `O_NONBLOCK` on a pipe end the core crate created with
/// `pipe2(O_CLOEXEC)` (no other status flag, so no `F_GETFL` is needed;
/// close-on-exec is a descriptor flag and unaffected).
fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
    Ok(fd)
}

impl AsFd for Child {
    /// The child's pidfd.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner().as_fd()
    }
}

impl AsRawFd for Child {
    /// The child's pidfd (readable once the child has exited). Valid while
    /// the `Child` lives; do not close it.
    fn as_raw_fd(&self) -> RawFd {
        self.inner().as_raw_fd()
    }
}
