//! `childfd run`: spawn, supervise in one loop, end the tree, report.
//!
//! The loop ([`event_loop`]) watches, in one `mio::Poll`: the program's
//! pidfd, its stdout/stderr pipes (when piped), the pass-through writers'
//! wake-ups and childfd's own signals. What to do when (deadline, grace,
//! wait-delay, held pipes) is decided by
//! [`childfd_io::Lifecycle`], shared with `childfd_io::output`.

mod diagnose;
mod event_loop;

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use childfd::{Child, Command, Containment, Signal, SpawnError, SpawnStage, Stdio};

use crate::args::{Contain, Run};
use crate::report::{self, Destinations, Durations, ErrorInfo, Outcome, Report, StreamReport};
use crate::say;
use crate::term::{self, Foreground};

/// Exit codes, as `timeout(1)` and shells use them.
pub const TIMED_OUT: u8 = 124;
pub const OWN_ERROR: u8 = 125;
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;
const BROKEN_PIPE: u8 = 128 + 13;

/// The signals childfd handles (see [`event_loop`] for what each does).
pub const HANDLED: [i32; 10] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGCONT,
    libc::SIGCHLD,
];

/// How long leftovers of the tree (members that closed their output) may
/// take to die after the final SIGKILL before childfd gives up waiting.
const FINAL_KILL_WAIT: Duration = Duration::from_secs(5);

/// Runs the command line's program; returns the exit code.
pub fn run(args: &Run, dest: Destinations) -> u8 {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    // Before the spawn, so that a signal arriving during it is not lost.
    let signals = match signal_hook_mio::v1_0::Signals::new(HANDLED) {
        Ok(s) => s,
        Err(e) => {
            say(format_args!("cannot install signal handlers: {e}"));
            return OWN_ERROR;
        }
    };
    let pipe = [
        needs_pipe(args, std::io::stdout().is_terminal()),
        needs_pipe(args, std::io::stderr().is_terminal()),
    ];
    let (child, containment) = match spawn(args, pipe) {
        Ok(c) => c,
        Err(e) => return spawn_failed(args, &e, started_at, t0, dest),
    };
    let fg = match (args.no_foreground, containment) {
        (false, "cgroup" | "pgroup") => give_terminal(&child),
        _ => None,
    };
    let ended = event_loop::supervise(args, child, fg, signals, t0);
    let code = exit_code(args, &ended);
    diagnose::diagnose(args, &ended);
    if dest.any() {
        let mut r = base_report(args, containment, started_at, t0);
        r.pid = Some(ended.pid);
        r.outcome = ended.outcome;
        r.status = ended.status.and_then(report::Status::of);
        r.exit_code = code;
        r.ended_by = report::ended_by_name(ended.ended_by);
        r.signal_received = ended.signal.map(Into::into);
        r.durations_ms.until_exit = ended.exited_at.map(|e| ms(e - t0));
        r.stdout = ended.streams[0].report();
        r.stderr = ended.streams[1].report();
        r.holders = ended
            .holders
            .iter()
            .map(|h| report::HolderInfo {
                pid: h.pid,
                name: h.name.clone(),
            })
            .collect();
        r.error = ended.error.as_ref().map(|m| ErrorInfo {
            message: m.clone(),
            stage: None,
        });
        dest.write(&r, ended.streams[1].open_line());
    }
    code
}

/// Whether a stream must be read by childfd rather than inherited.
fn needs_pipe(args: &Run, is_tty: bool) -> bool {
    !is_tty || args.pipe || args.max_output.is_some() || args.wait_delay.is_some()
}

fn spawn(args: &Run, pipe: [bool; 2]) -> Result<(Child, &'static str), SpawnError> {
    let stdio = |p: bool| if p { Stdio::piped() } else { Stdio::inherit() };
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(stdio(pipe[0]))
        .stderr(stdio(pipe[1]))
        // If childfd is SIGKILLed, the kernel kills the program.
        .pdeathsig(Signal::KILL)
        .kill_on_drop(true);
    let (mode, name) = match args.contain {
        Contain::Auto | Contain::Cgroup => (Containment::cgroup(), "cgroup"),
        Contain::Pgroup => (Containment::ProcessGroup, "pgroup"),
        Contain::Session => (Containment::Session, "session"),
        Contain::None => (Containment::Inherit, "none"),
    };
    match cmd.containment(mode).spawn() {
        // No writable cgroup v2 directory: `auto` falls back to a group.
        Err(e) if args.contain == Contain::Auto && e.stage() == SpawnStage::Cgroup => cmd
            .containment(Containment::ProcessGroup)
            .spawn()
            .map(|c| (c, "pgroup")),
        r => r.map(|c| (c, name)),
    }
}

/// Hands the terminal to the program's group when childfd has it; the
/// program may have been stopped by a terminal read before that
/// (SIGTTIN), so it is continued.
fn give_terminal(child: &Child) -> Option<Foreground> {
    let fg = Foreground::give(term::foreground_tty()?, child.id())?;
    let _ = child.signal_tree(Signal::CONT);
    Some(fg)
}

fn spawn_failed(
    args: &Run,
    e: &SpawnError,
    started_at: SystemTime,
    t0: Instant,
    dest: Destinations,
) -> u8 {
    let code = match (e.stage(), e.kind()) {
        (SpawnStage::Exec, std::io::ErrorKind::NotFound) => NOT_FOUND,
        (SpawnStage::Exec | SpawnStage::Chdir, _) => CANNOT_EXECUTE,
        _ => OWN_ERROR,
    };
    let message = crate::describe(e);
    say(format_args!("{message}"));
    let containment = match args.contain {
        Contain::Auto | Contain::Cgroup => "cgroup",
        Contain::Pgroup => "pgroup",
        Contain::Session => "session",
        Contain::None => "none",
    };
    let mut r = base_report(args, containment, started_at, t0);
    r.outcome = Outcome::SpawnFailed;
    r.exit_code = code;
    r.error = Some(ErrorInfo {
        message,
        stage: Some(e.stage().to_string()),
    });
    dest.write(&r, false);
    code
}

/// A report with what is known before the spawn; the rest is `null`.
fn base_report(
    args: &Run,
    containment: &'static str,
    started_at: SystemTime,
    t0: Instant,
) -> Report {
    let piped = || StreamReport {
        mode: "pipe",
        bytes: None,
        passed: None,
        dropped: None,
    };
    Report {
        schema_version: report::SCHEMA_VERSION,
        program: program_name(args),
        args: arg_strings(args),
        containment,
        pid: None,
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        outcome: Outcome::Error,
        status: None,
        exit_code: OWN_ERROR,
        ended_by: None,
        signal_received: None,
        durations_ms: Durations {
            total: ms(t0.elapsed()),
            until_exit: None,
        },
        stdout: piped(),
        stderr: piped(),
        holders: Vec::new(),
        error: None,
    }
}

/// How the run ended, as the loop saw it.
#[derive(Debug)]
pub struct Ended {
    pub pid: u32,
    pub outcome: Outcome,
    pub status: Option<childfd::ExitStatus>,
    pub ended_by: Option<childfd::EndedBy>,
    pub signal: Option<Signal>,
    pub exited_at: Option<Instant>,
    pub streams: [StreamCount; 2],
    pub holders: Vec<childfd_io::Holder>,
    pub error: Option<String>,
}

/// Bytes of one stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamCount {
    pub piped: bool,
    /// Read from the program.
    pub total: u64,
    /// Written to childfd's stream.
    pub passed: u64,
    /// Not passed because of --max-output.
    pub capped: u64,
    /// The last byte passed (to start the report on a new line).
    pub last: Option<u8>,
}

impl StreamCount {
    fn report(&self) -> StreamReport {
        if !self.piped {
            return StreamReport::direct();
        }
        StreamReport {
            mode: "pipe",
            bytes: Some(self.total),
            passed: Some(self.passed),
            dropped: Some(self.total - self.passed),
        }
    }

    fn open_line(&self) -> bool {
        self.last.is_some_and(|b| b != b'\n')
    }
}

fn exit_code(args: &Run, e: &Ended) -> u8 {
    let own = |e: &Ended| {
        e.status
            .map_or(OWN_ERROR, |s| s.shell_code().clamp(0, 255) as u8)
    };
    match e.outcome {
        Outcome::TimedOut if args.preserve_status => own(e),
        Outcome::TimedOut => TIMED_OUT,
        Outcome::Signalled => e.signal.map_or(OWN_ERROR, |s| (128 + s.as_raw()) as u8),
        Outcome::BrokenPipe => BROKEN_PIPE,
        Outcome::Error | Outcome::SpawnFailed => OWN_ERROR,
        Outcome::Exited | Outcome::PipesHeldOpen => own(e),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn program_name(args: &Run) -> String {
    args.command[0].to_string_lossy().into_owned()
}

fn arg_strings(args: &Run) -> Vec<String> {
    args.command[1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Kills what is left of the tree (members that closed their output, or
/// everything after an error) and waits, bounded, until it is gone, so that
/// dropping the handle also removes a cgroup leaf (a background clean-up
/// would die with this process).
fn finish_tree(child: Child) {
    let _ = child.kill_tree();
    let _ = child.wait_tree_deadline(Instant::now() + FINAL_KILL_WAIT);
    drop(child);
}
