//! The `--json` report: one typed shape for every outcome, spawn failures
//! included, serialised with serde. The schema is in the README's CLI
//! section; [`SCHEMA_VERSION`] changes when a field changes meaning or goes
//! away (new fields may be added within a version).

use crate::own_output::write_bounded;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use childfd::{EndedBy, ExitStatus, Signal};
use serde::Serialize;

/// The version of the report's shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `childfd run` knows at the end.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub program: String,
    pub args: Vec<String>,
    /// The containment used: `cgroup`, `pgroup`, `session` or `none`.
    pub containment: &'static str,
    pub pid: Option<u32>,
    /// RFC 3339, UTC, milliseconds.
    pub started_at: String,
    pub outcome: Outcome,
    pub status: Option<Status>,
    pub exit_code: u8,
    /// With an ended tree: whether the first signal sufficed or SIGKILL was needed.
    pub ended_by: Option<&'static str>,
    /// A signal childfd itself received that ended the run.
    pub signal_received: Option<SignalInfo>,
    pub durations_ms: Durations,
    pub stdout: StreamReport,
    pub stderr: StreamReport,
    /// Processes still holding an output pipe when reading stopped.
    pub holders: Vec<HolderInfo>,
    pub error: Option<ErrorInfo>,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The program exited and its output reached EOF.
    Exited,
    /// `--timeout` passed; the tree was ended.
    TimedOut,
    /// childfd got INT, TERM, HUP or QUIT; the tree was ended.
    Signalled,
    /// childfd's stdout was closed by its reader; the tree was ended.
    BrokenPipe,
    /// The program exited but something kept its output open past the wait-delay.
    PipesHeldOpen,
    /// The program could not be started.
    SpawnFailed,
    /// childfd failed while supervising (the tree was killed).
    Error,
}

/// The program's exit status.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Status {
    /// It exited with a code.
    Exited {
        /// The code.
        code: i32,
    },
    /// A signal killed it.
    Signaled {
        /// The signal number.
        signal: i32,
        /// `SIGTERM`, ...
        name: String,
        /// Whether a core was dumped.
        core_dumped: bool,
    },
}

impl Status {
    pub fn of(s: ExitStatus) -> Option<Status> {
        match (s.code(), s.signal()) {
            (Some(code), _) => Some(Status::Exited { code }),
            (None, Some(sig)) => Some(Status::Signaled {
                signal: sig.as_raw(),
                name: sig.to_string(),
                core_dumped: s.core_dumped(),
            }),
            _ => None,
        }
    }
}

/// A signal, by number and name.
#[derive(Debug, Serialize)]
pub struct SignalInfo {
    pub signal: i32,
    pub name: String,
}

impl From<Signal> for SignalInfo {
    fn from(s: Signal) -> SignalInfo {
        SignalInfo {
            signal: s.as_raw(),
            name: s.to_string(),
        }
    }
}

/// Milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Durations {
    /// From just before the spawn to the end.
    pub total: f64,
    /// From just before the spawn to the program's exit.
    pub until_exit: Option<f64>,
}

/// One output stream.
#[derive(Debug, Serialize)]
pub struct StreamReport {
    /// `pipe` (read and passed through by childfd) or `direct` (the
    /// program wrote to childfd's own stream; no counts).
    pub mode: &'static str,
    /// Bytes the program wrote (pipe mode).
    pub bytes: Option<u64>,
    /// Bytes passed on to childfd's stream.
    pub passed: Option<u64>,
    /// Bytes read but not passed (`--max-output`, a closed reader, or
    /// left in the buffer when the run ended).
    pub dropped: Option<u64>,
}

impl StreamReport {
    pub fn direct() -> StreamReport {
        StreamReport {
            mode: "direct",
            bytes: None,
            passed: None,
            dropped: None,
        }
    }
}

/// A process holding an output pipe.
#[derive(Debug, Serialize)]
pub struct HolderInfo {
    pub pid: u32,
    pub name: String,
}

/// What went wrong (spawn failures and supervision errors).
#[derive(Debug, Serialize)]
pub struct ErrorInfo {
    pub message: String,
    /// The spawn stage (`exec`, `chdir`, `cgroup`, ...), for spawn failures.
    pub stage: Option<String>,
}

/// `term`/`kill`.
pub fn ended_by_name(e: Option<EndedBy>) -> Option<&'static str> {
    e.map(|e| match e {
        EndedBy::Term => "term",
        EndedBy::Kill => "kill",
    })
}

/// Where the report goes.
#[derive(Debug, Default)]
pub struct Destinations {
    pub stderr: bool,
    pub file: Option<PathBuf>,
    pub fd: Option<OwnedFd>,
}

impl Destinations {
    pub fn any(&self) -> bool {
        self.stderr || self.file.is_some() || self.fd.is_some()
    }

    /// Writes the report as one line to each destination. `stderr_open_line`:
    /// the program's stderr passed through ended without a newline, so one
    /// is written first (the report always starts its own line).
    pub fn write(self, r: &Report, stderr_open_line: bool) {
        let Ok(mut line) = serde_json::to_string(r) else {
            return;
        };
        line.push('\n');
        if let Some(path) = self.file {
            // Opening a FIFO nobody reads blocks, as does writing it.
            let text = line.clone();
            crate::own_output::bounded(move || {
                if let Err(e) = std::fs::write(&path, text) {
                    crate::say(format_args!(
                        "cannot write the report to {}: {e}",
                        path.display()
                    ));
                }
            });
        }
        if let Some(fd) = self.fd {
            write_bounded(std::fs::File::from(fd), line.clone().into_bytes());
        }
        if self.stderr {
            let nl = if stderr_open_line { "\n" } else { "" };
            crate::own_output::stderr(format!("{nl}{line}").into_bytes());
        }
    }
}
