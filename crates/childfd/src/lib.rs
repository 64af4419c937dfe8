//! Spawn and supervise Linux child processes that cannot be lost, stolen,
//! leaked or hung on.
//!
//! - [`Command`] builds a child like `std::process::Command`, plus fd
//!   mapping, credentials, parent-death signal and containment.
//! - [`Command::spawn`] creates it with `clone3(CLONE_PIDFD | CLONE_VM |
//!   CLONE_VFORK | CLONE_CLEAR_SIGHAND)` and `exit_signal = 0`: the cost of
//!   a spawn does not grow with the parent's memory, and the pidfd exists
//!   from the first instant.
//! - [`Child`] waits (`poll` + `waitid(P_PIDFD)`), recovers a status another
//!   reaper stole (`PIDFD_INFO_EXIT`), signals through the pidfd, and never
//!   leaves a zombie when dropped.
//! - [`containment`] signals, kills and terminates whole process trees
//!   (process group, session or cgroup v2), and [`reaper`] reaps adopted
//!   orphans for PID 1 and subreapers without stealing owned statuses.
//!
//! ```
//! use childfd::{Command, Stdio};
//! use std::io::Read;
//! use std::time::Duration;
//!
//! let mut child = Command::new("echo").arg("hello").stdout(Stdio::piped()).spawn()?;
//! let mut out = String::new();
//! child.take_stdout().expect("piped").read_to_string(&mut out)?;
//! let status = child.wait_timeout(Duration::from_secs(10))?.expect("exited");
//! assert!(status.success());
//! assert_eq!(out, "hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Kernel requirements
//!
//! Linux 5.4 or later. Newer features are probed once at run time:
//! `clone3` (5.3; refused by some seccomp profiles, then legacy `clone`
//! is used), `close_range` (5.11; else fds are marked close-on-exec one by
//! one), `PIDFD_INFO_EXIT` (6.15; else a stolen status is reported as
//! [`WaitError::StatusUnavailable`], never made up).
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("childfd supports 64-bit Linux only (the child uses the 32-bit-id syscalls)");

mod child;
mod command;
pub mod containment;
mod error;
pub mod reaper;
mod signal;
mod status;
mod sys;

pub use child::{
    Child, ChildStderr, ChildStdin, ChildStdout, Output, StdinSlot, pending_reaps,
    recovered_statuses,
};
#[doc(hidden)]
pub use command::CallerSignalMask;
pub use command::{Command, EnvSnapshot, Resource, Stdio, StdioKind};
pub use containment::{CgroupParent, Containment, EndedBy, Termination, TreeError};
pub use error::{InvalidCommand, SignalError, SpawnError, SpawnStage, WaitError};
pub use signal::{ParseSignalError, Signal};
pub use status::ExitStatus;
pub use sys::clone::Method as SpawnMethod;

/// How this process creates children (probed once; see [`SpawnMethod`]).
pub fn spawn_method() -> SpawnMethod {
    sys::clone::method()
}

/// The fds childfd keeps open for the whole process, for leak checks in
/// tests: none (spawns make every fd a child uses for that spawn only).
#[doc(hidden)]
pub fn reserved_fds() -> Vec<std::os::fd::RawFd> {
    Vec::new()
}

/// Holds the orphan reaper's spawn gate exclusively, as an orphan pass
/// ([`reaper::reap_orphans`]) does, until the guard is dropped: for tests
/// that `fork()` in the middle of a pass. Not for production use.
#[doc(hidden)]
pub fn hold_orphan_pass() -> impl Drop {
    reaper::orphan_pass_gate()
}

/// One value per process, made afresh in a `fork()`ed copy (lock-free):
/// for childfd's sibling crates' process-wide state. Not a stable API.
#[doc(hidden)]
pub use sys::fork::PerProcess;

/// Hooks that let tests act at a chosen point inside the library.
/// Process-wide; not for production use.
#[doc(hidden)]
pub mod test_hooks {
    /// Runs `hook` with the member pids each time a cgroup tree's members
    /// were read for signalling, before any of them is reached: a test can
    /// kill, reap and recycle a pid in that window. Set once per process.
    pub fn on_cgroup_members_listed(hook: fn(&[i32])) {
        crate::containment::cgroup::subtree::set_listed_hook(hook);
    }

    /// Holds the table of cgroup2 mounts as a thread updating it does,
    /// until the guard is dropped: for tests that `fork()` while another
    /// thread has it.
    pub fn hold_cgroup_mounts() -> impl Drop {
        crate::containment::cgroup::mount::hold_table()
    }

    /// Makes every later `pidfd_open` probe copy (see
    /// [`pidfd_open_allowed`]) die of `SIGKILL` before it tries the call,
    /// as if the OOM killer had picked it; `false` stops that.
    pub fn kill_pidfd_probe_copies(on: bool) {
        crate::sys::pidfd::kill_probe_copies(on);
    }

    /// Whether the calling thread may call `pidfd_open`, as cgroup tree
    /// signalling decides it (probed in a copy of the thread if it has
    /// seccomp filters, and remembered until they change).
    pub fn pidfd_open_allowed() -> bool {
        crate::sys::pidfd::open_allowed()
    }

    /// `true`: the next probe of this process's spawn method (made by its
    /// first spawn) waits inside the probe until `false` is set; for tests
    /// that `fork()` while another thread is in it.
    pub fn hold_spawn_method_probe(on: bool) {
        crate::sys::clone::hold_probe(on);
    }

    /// Whether a probe is waiting in [`hold_spawn_method_probe`]'s hold.
    pub fn spawn_method_probe_held() -> bool {
        crate::sys::clone::probe_holding()
    }
}

/// Switches that force the fallbacks for older kernels, so that tests can
/// check them on a new one. Process-wide and irreversible; not for
/// production use.
#[doc(hidden)]
pub mod force_fallback {
    /// Behave as a kernel without `PIDFD_INFO_EXIT` (before 6.15).
    pub fn no_pidfd_exit_info() {
        crate::sys::pidfd::disable_exit_info();
    }

    /// Behave as a kernel without `close_range(CLOSE_RANGE_CLOEXEC)` (before 5.11).
    pub fn no_close_range() {
        crate::sys::env::disable_close_range();
    }

    /// Behave as a kernel without `PIDFD_SIGNAL_PROCESS_GROUP` (before 6.9).
    pub fn no_pidfd_group_signal() {
        crate::sys::pidfd::disable_group_signal();
    }

    /// Behave as a kernel without `CLONE_INTO_CGROUP` (5.5 and 5.6).
    pub fn no_clone_into_cgroup() {
        crate::sys::clone::disable_into_cgroup();
    }

    /// Behave as a kernel without `cgroup.kill` (before 5.14).
    pub fn no_cgroup_kill() {
        crate::containment::cgroup::disable_cgroup_kill();
    }

    /// Behave as a cgroup whose `cgroup.freeze` cannot be written (so
    /// signalling a cgroup tree cannot confirm it frozen).
    pub fn no_cgroup_freeze() {
        crate::containment::cgroup::subtree::disable_freeze();
    }

    /// Behave as a kernel whose pidfds all share one inode (before 6.9):
    /// the drop reaper then checks its pidfds by the pid in
    /// `/proc/self/fdinfo`.
    pub fn no_pidfs_inodes() {
        crate::child::disable_pidfs();
    }
}
