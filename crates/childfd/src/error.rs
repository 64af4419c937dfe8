//! Errors, one enum per family of operations.

use std::fmt;
use std::io;

/// The step of a spawn that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpawnStage {
    /// Checking the command before anything is created.
    Validate,
    /// Preparing the child's environment and `PATH` candidates.
    Resolve,
    /// Creating pipes or opening `/dev/null`.
    Pipe,
    /// Creating a cgroup for the child.
    Cgroup,
    /// `clone3`/`clone` itself.
    Clone,
    /// `setpgid`/`setsid` in the child.
    ProcessGroup,
    /// Setting up the child's file descriptors.
    Fds,
    /// Resetting signal dispositions and the mask.
    Signals,
    /// Arming the parent-death signal.
    ParentDeath,
    /// Changing uid, gid or groups.
    Credentials,
    /// Changing the working directory.
    Chdir,
    /// `execve`.
    Exec,
    /// Setting resource limits, umask, nice value, `no_new_privs` or the
    /// controlling terminal.
    Attributes,
    /// A [`pre_exec`](crate::Command::pre_exec) closure.
    PreExec,
}

impl fmt::Display for SpawnStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpawnStage::Validate => "validate",
            SpawnStage::Resolve => "resolve",
            SpawnStage::Pipe => "pipe",
            SpawnStage::Cgroup => "cgroup",
            SpawnStage::Clone => "clone",
            SpawnStage::ProcessGroup => "process group",
            SpawnStage::Fds => "fd setup",
            SpawnStage::Signals => "signal setup",
            SpawnStage::ParentDeath => "parent-death signal",
            SpawnStage::Credentials => "credentials",
            SpawnStage::Chdir => "chdir",
            SpawnStage::Exec => "exec",
            SpawnStage::Attributes => "process attributes",
            SpawnStage::PreExec => "pre_exec",
        })
    }
}

/// A command that cannot be run as given; found before any process exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCommand {
    /// The program name is empty.
    #[error("the program name is empty")]
    EmptyProgram,
    /// A string passed to the child contains a NUL byte: the program gets
    /// C strings, which end at the first NUL.
    #[error("{what} contains a NUL byte: the program gets C strings, which end at the first NUL")]
    NulByte {
        /// Which string: `"program"`, `"argument 2"`, `"the value of
        /// environment variable HOME"`, `"environment variable name
        /// \"A\\0B\""`, ...
        what: String,
    },
    /// An environment variable name is empty or contains `=`.
    #[error("{}", env_name_problem(name))]
    EnvName {
        /// The rejected name.
        name: String,
    },
    /// Two fds were mapped onto the same child fd number.
    #[error("child fd {fd} is mapped twice")]
    FdMappedTwice {
        /// The child fd number.
        fd: i32,
    },
    /// A mapping targets 0, 1 or 2 (use `stdin`/`stdout`/`stderr`) or a negative number.
    #[error("child fd {fd} cannot be mapped: use stdin/stdout/stderr for 0-2")]
    FdReserved {
        /// The child fd number.
        fd: i32,
    },
    /// `Stdio::same_as_stdout` was given for something other than stderr.
    #[error("same_as_stdout is only valid for stderr")]
    SameAsStdout,
    /// A controlling terminal was asked for without a new session.
    #[error("a controlling terminal needs a new session: use setsid(true)")]
    ControllingTerminal,
    /// `process_group` was given a negative group id.
    #[error("process group {pgid} is invalid: 0 leads a new group, a positive id joins one")]
    ProcessGroup {
        /// The rejected id.
        pgid: i32,
    },
}

/// Why an environment variable name cannot be passed.
fn env_name_problem(name: &str) -> String {
    if name.is_empty() {
        "an environment variable name is empty: the program would get an entry `=value`".into()
    } else {
        format!(
            "environment variable name {name:?} contains `=`, which ends a name in the \
             environment (`NAME=value`): the program would see another variable"
        )
    }
}

/// Spawning a child failed. No process is left behind: a child that failed
/// after the clone has been reaped.
///
/// # As an `io::Error`
///
/// The conversion to `io::Error` (what `?` does in a function returning
/// `io::Result`, and what [`Command::status`](crate::Command::status) and
/// [`Command::output`](crate::Command::output) return) gives a failed
/// system call's own error, exactly as `std::process::Command` does:
/// `raw_os_error()` is its errno (`Some(2)` for a missing program), `kind()`
/// follows from it, and it prints as `No such file or directory (os
/// error 2)`. An `io::Error` with an OS error number cannot carry anything
/// else, so the program, the stage and the directory stay on this type:
/// keep it (or print it) where you want them. Other failures (bad input,
/// an unsupported request) become an `io::Error` of this error's
/// [`kind`](SpawnError::kind) that wraps it (`get_ref()` downcasts to
/// `SpawnError`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The command is invalid; nothing was created. The message says what
    /// is wrong.
    #[error("invalid command `{program}`: {reason}")]
    Invalid {
        /// The program, lossily converted.
        program: String,
        /// What is wrong.
        #[source]
        reason: InvalidCommand,
    },
    /// A system call failed. The message ends with the OS's reason, as
    /// std's does (`No such file or directory (os error 2)`).
    #[error("cannot spawn `{program}`: {stage} failed: {source}")]
    Os {
        /// The program, lossily converted.
        program: String,
        /// The step that failed.
        stage: SpawnStage,
        /// The error of that step.
        #[source]
        source: io::Error,
    },
    /// The child could not change into its working directory (stage
    /// [`SpawnStage::Chdir`]); the message names the directory.
    #[error("cannot spawn `{program}`: chdir to `{}` failed: {source}", dir.display())]
    Chdir {
        /// The program, lossily converted.
        program: String,
        /// The directory given to [`Command::current_dir`](crate::Command::current_dir).
        dir: std::path::PathBuf,
        /// The error of `chdir`.
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    /// The `io::ErrorKind` of the failure: `NotFound` for a missing program
    /// or directory, `PermissionDenied`, `InvalidInput` for a bad command, ...
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            SpawnError::Invalid { .. } => io::ErrorKind::InvalidInput,
            SpawnError::Os { source, .. } | SpawnError::Chdir { source, .. } => source.kind(),
        }
    }

    /// The failed step.
    pub fn stage(&self) -> SpawnStage {
        match self {
            SpawnError::Invalid { .. } => SpawnStage::Validate,
            SpawnError::Os { stage, .. } => *stage,
            SpawnError::Chdir { .. } => SpawnStage::Chdir,
        }
    }

    /// The program, as given to [`Command::new`](crate::Command::new)
    /// (lossily converted).
    pub fn program(&self) -> &str {
        match self {
            SpawnError::Invalid { program, .. }
            | SpawnError::Os { program, .. }
            | SpawnError::Chdir { program, .. } => program,
        }
    }

    /// The OS error number, if a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SpawnError::Invalid { .. } => None,
            SpawnError::Os { source, .. } | SpawnError::Chdir { source, .. } => {
                source.raw_os_error()
            }
        }
    }
}

impl From<SpawnError> for io::Error {
    /// The failed system call's own error where there is one, else this
    /// error wrapped; see [`SpawnError`]'s "As an `io::Error`".
    fn from(e: SpawnError) -> io::Error {
        match e {
            SpawnError::Os { source, .. } | SpawnError::Chdir { source, .. }
                if source.raw_os_error().is_some() =>
            {
                source
            }
            e => io::Error::new(e.kind(), e),
        }
    }
}

/// Waiting for a child failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Another reaper in this process took the exit status and this kernel
    /// cannot report it afterwards (`PIDFD_INFO_EXIT` needs Linux 6.15).
    /// childfd never substitutes a made-up status.
    #[error(
        "exit status of process {pid} is unavailable: another reaper took it and the kernel cannot report it"
    )]
    StatusUnavailable {
        /// The (former) pid.
        pid: u32,
    },
    /// A system call failed.
    #[error("waiting for process {pid} failed")]
    Os {
        /// The pid.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl From<WaitError> for io::Error {
    fn from(e: WaitError) -> io::Error {
        let kind = match &e {
            WaitError::StatusUnavailable { .. } => io::ErrorKind::Other,
            WaitError::Os { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Sending a signal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("cannot send {signal} to process {pid}")]
pub struct SignalError {
    /// The pid.
    pub pid: u32,
    /// The signal.
    pub signal: crate::Signal,
    /// The error.
    #[source]
    pub source: io::Error,
}

impl From<SignalError> for io::Error {
    fn from(e: SignalError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}
