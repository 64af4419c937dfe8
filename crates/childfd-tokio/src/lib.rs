//! [`childfd`] children on tokio: the same guarantees, without a thread
//! per child.
//!
//! - [`CommandExt::spawn_async`] turns a [`childfd::Command`] into an
//!   async [`Child`] whose pidfd is registered with tokio's reactor
//!   (`AsyncFd`); the clone runs on two spawner threads per process, so no
//!   worker waits for the child to reach `execve`. `wait().await`
//!   sleeps in the runtime's `epoll_wait` until the kernel says the child
//!   exited. No SIGCHLD handler, no waiter thread, no `waitpid(-1)`: it
//!   coexists with `tokio::process` (and any other reaper) in one process,
//!   and recovers a status another reaper stole (`PIDFD_INFO_EXIT`).
//! - [`Child::terminate`] ends the whole tree gracefully on the runtime's
//!   timer; [`Child::wait_tree`] waits until no member is left.
//! - [`output`] captures stdout and stderr with exactly the semantics of
//!   [`childfd_io::output`] (deadline → terminate the tree, wait-delay →
//!   [`Outcome::PipesHeldOpen`] naming the holders, caps with head and tail,
//!   lines as a [`Stream`](futures_core::Stream), stdin fed without SIGPIPE):
//!   it runs childfd-io's state machine, only the I/O is tokio's.
//! - [`JobSet`] runs many commands with a cap on how many are in flight and
//!   reports them as the [`childfd_io::Supervisor`]'s [`Event`]s.
//!
//! Dropping a [`Child`] never blocks and never leaves a zombie (the core
//! crate's background reaper takes it); with
//! [`kill_on_drop`](childfd::Command::kill_on_drop) its tree is killed
//! first. Dropping an [`output`] future before it finishes kills the
//! child's tree: nothing of a cancelled job is left behind.
//!
//! ```
//! use childfd_tokio::{CommandExt, Options, Outcome};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! // The child exits at once, but its background sleep keeps stdout open.
//! let out = childfd::Command::new("sh")
//!     .args(["-c", "echo hi; sleep 30 &"])
//!     .output_async(Options::new().wait_delay(Duration::from_millis(200)).kill_tree_on_held_pipes(true))
//!     .await?;
//! assert_eq!(out.stdout.text(), "hi\n");
//! assert_eq!(out.outcome, Outcome::PipesHeldOpen);
//! assert!(out.holders.iter().any(|h| h.name == "sleep"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The runtime must have I/O and time enabled (`enable_all`).
//!
//! # Which thread clones the child
//!
//! A child inherits what Linux keeps per thread from the thread that
//! clones it. [`spawn`] clones on the calling thread. [`CommandExt::spawn_async`],
//! [`CommandExt::output_async`] and [`JobSet`] clone on one of two
//! spawner threads per process, unless the calling thread's security
//! state differs from theirs:
//!
//! - **Compared on every spawn:** seccomp filters and `no_new_privs`
//!   (`prctl(PR_GET_SECCOMP)` and `prctl(PR_GET_NO_NEW_PRIVS)`; under
//!   seccomp filters also the filter count of `/proc/thread-self/status`).
//!   When they differ, or cannot be read, the child is cloned on the
//!   calling thread, as [`spawn`] does, and is confined exactly as its
//!   caller. The spawner threads are started by the first caller whose
//!   state is the main thread's, never by a thread that confined itself
//!   further (they would pass its filter to every later child).
//! - **Taken from the caller:** the signal mask, for a command with
//!   [`inherit_signal_mask(true)`](childfd::Command::inherit_signal_mask)
//!   (read when the spawn is queued).
//! - **Not compared, taken from the spawner thread:** namespaces one
//!   thread joined (`setns`) or made (`unshare`), such as its network
//!   or mount namespace; the LSM exec context
//!   (`/proc/thread-self/attr/exec`); CPU affinity, the nice value and
//!   other scheduling attributes. A thread that changed any of these for
//!   its children must spawn with [`spawn`].
//!
//! A `fork()`ed copy of the process starts spawner threads of its own
//! (found without a lock, so a fork while other threads spawn leaves the
//! copy able to spawn). A panic while spawning on a spawner thread is
//! resumed in the task that asked for the spawn; the thread serves on.
#![deny(unsafe_code)] // but in `sys`: tokio's `AsyncFd` registration is `unsafe`
#![deny(missing_docs)]

mod capture_pipe;
mod child;
mod jobs;
mod lines;
mod options;
mod output;
mod spawner;
mod sys;

pub use child::{Child, ChildStderr, ChildStdin, ChildStdout};
pub use childfd_io::{
    Captured, DEFAULT_GRACE, Event, Holder, JobId, Outcome, Output, OutputError, Report, Stream,
    Summary,
};
pub use jobs::JobSet;
pub use lines::{Line, Lines};
pub use options::Options;
pub use output::output;

use std::future::Future;
use std::os::fd::OwnedFd;

/// Spawning or registering an async child failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The core crate could not spawn the child; nothing is running.
    #[error(transparent)]
    Spawn(#[from] childfd::SpawnError),
    /// The child was spawned but its pidfd or pipes could not be registered
    /// with tokio's reactor (no runtime with I/O enabled on this thread?).
    /// The child was handed to the background reaper (and killed with
    /// `kill_on_drop`).
    #[error("registering the child with tokio's reactor failed")]
    Register {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Spawns `cmd` and registers the child with the current tokio runtime,
/// on the calling thread.
///
/// The calling thread is held until the child has called `execve`
/// (`clone3(CLONE_VFORK)`): a few dozen microseconds on an idle machine,
/// as long as the child waits for a CPU on a loaded one. On a runtime
/// worker that delays every task queued behind it, timers included:
/// prefer [`CommandExt::spawn_async`], which clones on a spawner thread,
/// unless the child must inherit per-thread state of the calling thread
/// that the spawner does not compare (see the
/// [crate docs](crate#which-thread-clones-the-child)): namespaces the
/// thread joined, its LSM exec context, CPU affinity or nice value.
///
/// # Errors
///
/// [`SpawnError::Spawn`] as [`childfd::Command::spawn`];
/// [`SpawnError::Register`] outside a runtime with I/O enabled.
pub fn spawn(cmd: &mut childfd::Command) -> Result<Child, SpawnError> {
    check_runtime()?;
    register(cmd.spawn())
}

/// Checked before spawning, so that no child is created for nothing.
fn check_runtime() -> Result<(), SpawnError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(SpawnError::Register {
            source: std::io::Error::other("not inside a tokio runtime"),
        }),
    }
}

fn register(spawned: Result<childfd::Child, childfd::SpawnError>) -> Result<Child, SpawnError> {
    Child::from_child(spawned?).map_err(|source| SpawnError::Register { source })
}

/// Spawns the owned `cmd` on a spawner thread (no runtime worker waits
/// for the child's `execve`) and registers the child with the current
/// runtime; gives the command back.
pub(crate) async fn spawn_owned(
    cmd: childfd::Command,
) -> (childfd::Command, Result<Child, SpawnError>) {
    if let Err(e) = check_runtime() {
        return (cmd, Err(e));
    }
    let (cmd, spawned) = spawner::spawn(cmd).await;
    (cmd, register(spawned))
}

/// [`spawn_owned`] for a capture: the stdout and stderr pipes are given
/// back as plain fds, which the capture reads before they join the
/// reactor (see [`capture_pipe`]).
pub(crate) async fn spawn_owned_for_capture(
    cmd: childfd::Command,
) -> (
    childfd::Command,
    Result<(Child, [Option<OwnedFd>; 2]), SpawnError>,
) {
    if let Err(e) = check_runtime() {
        return (cmd, Err(e));
    }
    let (cmd, spawned) = spawner::spawn(cmd).await;
    let registered = spawned.map_err(SpawnError::from).and_then(|mut core| {
        let plain = [
            core.take_stdout().map(OwnedFd::from),
            core.take_stderr().map(OwnedFd::from),
        ];
        Ok((register(Ok(core))?, plain))
    });
    (cmd, registered)
}

/// Async spawning and capture on [`childfd::Command`].
pub trait CommandExt {
    /// Spawns the child and registers it with the current runtime.
    ///
    /// The clone runs on a spawner thread (two per process, see
    /// [`spawn`] for why): the task sleeps until the child has exec'd,
    /// and the worker runs other tasks meanwhile. A calling thread whose
    /// seccomp filters or `no_new_privs` differ from the spawner
    /// threads' clones itself (see the [crate docs](crate#which-thread-clones-the-child)). The command is moved
    /// there and back; if the future is dropped before it resolves, the
    /// command is left empty (its program `""`) and a child already
    /// created has its tree killed.
    ///
    /// # Errors
    ///
    /// As [`spawn`].
    fn spawn_async(&mut self) -> impl Future<Output = Result<Child, SpawnError>> + Send + '_;

    /// Sets stdout and stderr to pipes (and stdin to a pipe if the options
    /// give input, else `/dev/null`), spawns as
    /// [`spawn_async`](CommandExt::spawn_async), and runs [`output`].
    /// Dropping the future kills the child's tree and hands the child to
    /// the background reaper; so does an error during the capture (the
    /// job is abandoned: nobody could wait for it). On success the child
    /// is left as it is (its tree is not killed).
    fn output_async(
        &mut self,
        opts: Options,
    ) -> impl Future<Output = Result<Output, OutputError>> + Send + '_;
}

impl CommandExt for childfd::Command {
    async fn spawn_async(&mut self) -> Result<Child, SpawnError> {
        let cmd = std::mem::replace(self, childfd::Command::new(""));
        let (cmd, spawned) = spawn_owned(cmd).await;
        *self = cmd;
        spawned
    }

    async fn output_async(&mut self, opts: Options) -> Result<Output, OutputError> {
        opts.limits.validate()?;
        let stdin = if opts.has_input() {
            childfd::Stdio::piped()
        } else {
            childfd::Stdio::null()
        };
        self.stdin(stdin)
            .stdout(childfd::Stdio::piped())
            .stderr(childfd::Stdio::piped());
        let cmd = std::mem::replace(self, childfd::Command::new(""));
        let (cmd, spawned) = spawn_owned_for_capture(cmd).await;
        *self = cmd;
        let (child, plain) = spawned.map_err(spawn_to_output_error)?;
        // Armed from here: a future dropped mid-capture kills the tree.
        let mut guard = KillTreeOnDrop(Some(child));
        let child = guard.0.as_mut().expect("present until the end");
        let result = output::capture(child, plain, opts, None).await;
        if result.is_ok() {
            // Finished: the child is dropped as it is (reaped, or handed
            // to the background reaper), its tree not killed.
            drop(guard.0.take());
        }
        // Failed mid-capture (an I/O or wait error): the job is abandoned,
        // and the guard kills its tree as it drops the child, so nothing
        // of it runs on unwatched.
        drop(guard);
        result
    }
}

/// Owns a child and kills its tree if dropped while still holding it.
struct KillTreeOnDrop(Option<Child>);

impl Drop for KillTreeOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = child.kill_tree();
        }
    }
}

fn spawn_to_output_error(e: SpawnError) -> OutputError {
    match e {
        SpawnError::Spawn(e) => OutputError::Spawn(e),
        SpawnError::Register { source } => OutputError::Io { source },
    }
}
