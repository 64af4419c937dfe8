//! Output capture for [`childfd`] children that never hangs.
//!
//! A child exits, but a grandchild it started inherited stdout and sleeps
//! for an hour: every reader that waits for EOF hangs. [`output`] reads
//! stdout and stderr and feeds stdin from one `mio::Poll` that also watches
//! the child's pidfd, so exit and output are events of one loop (no thread
//! per stream). It stops at the [deadline](Options::deadline) (terminating
//! the tree) or at the [wait-delay](Options::wait_delay) after exit (naming
//! the processes that still hold the pipe), caps what it keeps per stream
//! while still draining, and can stream lines.
//!
//! For many children at once, the [`Supervisor`] runs them all from one
//! such loop, with a cap on children in flight and a timer heap of
//! deadlines.
//!
//! ```
//! use childfd_io::{CommandExt, Options, Outcome};
//! use std::time::Duration;
//!
//! // The child exits at once, but its background sleep keeps stdout open.
//! let out = childfd::Command::new("sh")
//!     .args(["-c", "echo hi; sleep 30 &"])
//!     .output_with(Options::new().wait_delay(Duration::from_millis(200)).kill_tree_on_held_pipes(true))?;
//! assert_eq!(out.stdout.text(), "hi\n");
//! assert_eq!(out.outcome, Outcome::PipesHeldOpen);
//! assert!(out.holders.iter().any(|h| h.name == "sleep"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod capture;
mod holders;
mod lifecycle;
pub mod lines;
mod options;
mod output;
mod pipes;
pub mod supervisor;
mod sys;

pub use capture::Captured;

/// Internals exposed for the fuzz targets (`fuzz/`); not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::capture::Capture;
}
/// The parts [`output`] and the [`Supervisor`] are built from, for the
/// other crates of this workspace that drive children from their own event
/// loop (`childfd-tokio` on tokio's reactor, `childfd-cli`). Not a stable
/// API: it changes with this crate's version, so depend on it with an
/// exact version (`=x.y.z`).
///
/// The split is "the engine decides, the caller does the I/O":
/// [`Lifecycle`](engine::Lifecycle) is the one state machine of a capture
/// (deadline → SIGTERM + SIGCONT to the tree, SIGKILL after the grace;
/// wait-delay after exit → [`Outcome::PipesHeldOpen`] with the holders;
/// cancel → SIGKILL now, then drain). It never blocks and never reads a
/// pipe: call [`poll_exit`](engine::Lifecycle::poll_exit) when the pidfd
/// is readable, [`step`](engine::Lifecycle::step) after every event, and
/// sleep until the instant it returns. Reading goes through
/// [`Capture`](engine::Capture) (caps with head and tail) and
/// [`LineSplitter`](lines::LineSplitter), writing stdin through
/// [`write_no_sigpipe`](engine::write_no_sigpipe).
#[doc(hidden)]
pub mod engine {
    pub use crate::capture::Capture;
    pub use crate::holders::{find as find_holders, pipe_inode};
    pub use crate::lifecycle::{DRAIN_AFTER_KILL, DRAIN_AFTER_TREE_GONE, Lifecycle, Step};
    pub use crate::limits_builder;
    pub use crate::options::Limits;
    pub use crate::sys::write_no_sigpipe;
}
pub use holders::Holder;
pub use options::{DEFAULT_GRACE, Options, Stream};
pub use output::{Outcome, Output, output};
pub use supervisor::{Event, Handle, JobId, JobOptions, Report, Summary, Supervisor, slot_size};

use childfd::{Stdio, StdioKind};

/// Capturing output failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The options contradict each other; nothing was started or read.
    #[error("invalid output options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// Spawning the child failed.
    #[error(transparent)]
    Spawn(#[from] childfd::SpawnError),
    /// Waiting for the child failed.
    #[error(transparent)]
    Wait(#[from] childfd::WaitError),
    /// Signalling or killing the child's tree failed.
    #[error(transparent)]
    Tree(#[from] childfd::TreeError),
    /// Polling, reading or writing a pipe failed.
    #[error("i/o on the child's pipes failed")]
    Io {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// `output_with` on [`childfd::Command`].
pub trait CommandExt {
    /// Spawns the command with its stdout and stderr piped and runs
    /// [`output`] on it. What the caller configured is kept where it fits
    /// capture, as std's `output()` does, and the command is left as it
    /// was:
    ///
    /// - stdin: an explicit setting is kept (a file, `null`, `piped`); the
    ///   default (inherit) becomes `/dev/null`, or a pipe when the options
    ///   give [input](Options::stdin_bytes). Input while stdin is set to
    ///   something else is an error.
    /// - stdout and stderr: the default and `piped` are captured; stderr
    ///   may also be [`same_as_stdout`](childfd::Stdio::same_as_stdout)
    ///   (`2>&1`, captured with stdout). A file, an fd or `null` there
    ///   contradicts capture and is an error.
    ///
    /// ```
    /// use childfd_io::{CommandExt, Options, OutputError};
    /// let mut cmd = childfd::Command::new("echo");
    /// cmd.arg("hi").stdout(childfd::Stdio::null());
    /// let err = cmd.output_with(Options::new()).unwrap_err();
    /// assert!(matches!(err, OutputError::InvalidOptions { .. }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`OutputError::InvalidOptions`] before anything is spawned, as
    /// [`output`], or [`OutputError::Spawn`].
    fn output_with(&mut self, opts: Options<'_>) -> Result<Output, OutputError>;
}

impl CommandExt for childfd::Command {
    fn output_with(&mut self, opts: Options<'_>) -> Result<Output, OutputError> {
        opts.validate()?;
        let bad = |reason| Err(OutputError::InvalidOptions { reason });
        let input = !matches!(opts.input, options::Input::None);
        let stdin = match (self.get_stdin().kind(), input) {
            (StdioKind::Inherit, false) => Some(Stdio::null()),
            (StdioKind::Inherit, true) => Some(Stdio::piped()),
            (StdioKind::Piped, _) | (_, false) => None,
            (_, true) => {
                return bad("input was given, but the command's stdin is set to something else");
            }
        };
        let captured = |k: StdioKind| matches!(k, StdioKind::Inherit | StdioKind::Piped);
        if !captured(self.get_stdout().kind()) {
            return bad("stdout is redirected, so it cannot be captured (leave it or pipe it)");
        }
        let stderr_kind = self.get_stderr().kind();
        if !captured(stderr_kind) && stderr_kind != StdioKind::SameAsStdout {
            return bad(
                "stderr is redirected, so it cannot be captured (leave it, pipe it or send it to stdout)",
            );
        }
        // Only defaults are replaced; they are put back after the spawn.
        let was = [
            self.get_stdin().kind(),
            self.get_stdout().kind(),
            stderr_kind,
        ];
        if let Some(s) = stdin {
            self.stdin(s);
        }
        self.stdout(Stdio::piped());
        if stderr_kind != StdioKind::SameAsStdout {
            self.stderr(Stdio::piped());
        }
        let spawned = self.spawn();
        let restore = |k: StdioKind| {
            if k == StdioKind::Inherit {
                Stdio::inherit()
            } else {
                Stdio::piped()
            }
        };
        if was[0] == StdioKind::Inherit {
            self.stdin(Stdio::inherit());
        }
        self.stdout(restore(was[1]));
        if stderr_kind != StdioKind::SameAsStdout {
            self.stderr(restore(was[2]));
        }
        output(&mut spawned?, opts)
    }
}
