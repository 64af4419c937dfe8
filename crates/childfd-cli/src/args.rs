//! The command line, with `clap` derive: `childfd run [OPTIONS] [--] PROGRAM [ARGS]...`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use childfd::Signal;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs a program so that it can neither hang its reader nor leave anything behind.
#[derive(Debug, Parser)]
#[command(
    name = "childfd",
    version,
    propagate_version = true,
    arg_required_else_help = false
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run PROGRAM, pass its output through, exit with its exit code.
    #[command(after_help = AFTER_HELP)]
    Run(Run),
}

const AFTER_HELP: &str = "\
Exit codes: the program's own; 128+N if it was killed by signal N; 124 if
--timeout passed (even if SIGKILL was needed; see --preserve-status); 128+N if childfd itself got signal N (INT, TERM, HUP,
QUIT: the program's tree is ended first); 141 if childfd's stdout was
closed by its reader; 125 childfd's own error (bad option, ...); 126
PROGRAM cannot be executed; 127 PROGRAM not found.

Output: a stream that is a terminal goes straight to the terminal (the
program sees a tty) unless a flag needs a pipe: --max-output,
--wait-delay, --pipe. Otherwise it is read and passed through by childfd
(never blocking its loop: deadlines and signals hold while the reader
of childfd's output is slow or stopped).

Terminal: when stdin is a terminal and childfd is in its foreground
process group, the program's group gets the terminal for its lifetime
(Ctrl-C, Ctrl-Z and reads reach it as in a shell; stopping it stops
childfd, `fg` continues both). --no-foreground keeps it in the
background.

Durations: bare seconds (5, 1.5) or with a unit (500ms, 2s, 1m, 1h, 1d,
1h30m, 2min); --timeout 0 means no limit.";

/// How to contain the program's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Contain {
    /// A fresh cgroup leaf where a writable cgroup v2 directory exists (catches
    /// `setsid` escapees), else a process group.
    Auto,
    /// A fresh cgroup v2 leaf; fail if none can be made.
    Cgroup,
    /// A new process group.
    Pgroup,
    /// A new session (no controlling terminal).
    Session,
    /// Childfd's own process group; only the program itself is signalled.
    None,
}

/// `childfd run`'s options.
#[derive(Debug, Clone, Args)]
pub struct Run {
    /// End the program's tree after this long: the --signal, then SIGKILL
    /// after --kill-after; exit 124. 0 means no limit.
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// On timeout, exit with the program's status (128+N for the signal
    /// that ended it) instead of 124, as `timeout --preserve-status`.
    #[arg(long)]
    pub preserve_status: bool,

    /// The first signal sent to the tree when --timeout passes (name or number).
    #[arg(long, short = 's', value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub signal: Signal,

    /// Time between the first signal and SIGKILL.
    #[arg(
        long = "kill-after",
        short = 'k',
        visible_alias = "grace",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = parse_duration
    )]
    pub grace: Duration,

    /// After the program exits, read its output at most this long more; if
    /// something still holds the pipes, name it and kill the tree. Needs the pipe.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_delay: Option<Duration>,

    /// How to contain the program's process tree.
    #[arg(long, value_enum, default_value_t = Contain::Auto, value_name = "MODE")]
    pub contain: Contain,

    /// Pass at most this many bytes of each stream (K, M, G suffixes); the
    /// rest is read, counted and dropped. Needs the pipe.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_output: Option<u64>,

    /// Read the program's output through a pipe even where it could go
    /// straight to a terminal (for byte counts in the report).
    #[arg(long)]
    pub pipe: bool,

    /// When childfd's stdout is closed by its reader, keep the program
    /// running and discard its output instead of ending it (exit 141).
    #[arg(long)]
    pub keep_draining: bool,

    /// Keep the program in the background even when childfd has the terminal.
    #[arg(long, conflicts_with = "foreground")]
    pub no_foreground: bool,

    /// Give the program the terminal (the default where possible; accepted
    /// for timeout(1) compatibility).
    #[arg(long)]
    pub foreground: bool,

    /// Print a JSON report on stderr, on a line of its own, at the end.
    #[arg(long)]
    pub json: bool,

    /// Write the JSON report to this file (stderr stays for people).
    #[arg(long, value_name = "PATH")]
    pub json_file: Option<PathBuf>,

    /// Write the JSON report to this open file descriptor.
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(1..))]
    pub json_fd: Option<i32>,

    /// The program and its arguments (`--` before them is optional).
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

impl Run {
    /// The time limit, if any (`--timeout 0` is none).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.filter(|t| !t.is_zero())
    }
}

/// A duration: bare seconds as `timeout(1)` takes them (`5`, `1.5`, or
/// with a one-letter unit `1.5m`), else a systemd-style span read by
/// `humantime` (`500ms`, `1h30m`, `2min`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1.0),
        Some((i, 'm')) => (&s[..i], 60.0),
        Some((i, 'h')) => (&s[..i], 3600.0),
        Some((i, 'd')) => (&s[..i], 86400.0),
        _ => (s, 1.0),
    };
    let simple = !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if let (true, Ok(n)) = (simple, num.parse::<f64>()) {
        return Duration::try_from_secs_f64(n * mult).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5, 1.5, 500ms, 2s, 1h30m)"))
}

/// A byte count: `65536`, `64K`, `1M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| "expected a byte count such as 65536, 64K, 1M".to_string())
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (`15`).
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let bad = || "unknown signal (examples: TERM, INT, KILL, 9)".to_string();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::new(n).ok_or_else(bad);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    (1..=64)
        .filter_map(Signal::new)
        .find(|sig| sig.name().and_then(|n| n.strip_prefix("SIG")) == Some(name))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Run, clap::Error> {
        let argv = ["childfd", "run"].iter().chain(args).map(OsString::from);
        Cli::try_parse_from(argv).map(|c| match c.cmd {
            Cmd::Run(r) => r,
        })
    }

    #[test]
    fn durations_read_bare_seconds_units_and_spans() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("5"), Duration::from_secs(5));
        assert_eq!(d("1.5"), Duration::from_millis(1500));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("2min"), Duration::from_secs(120));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        for bad in ["", "s", "soon", "-1", "2x", "1..5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timeout_zero_means_no_limit() {
        assert_eq!(run(&["--timeout", "0", "true"]).unwrap().timeout(), None);
        assert_eq!(
            run(&["--timeout", "5", "true"]).unwrap().timeout(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("x").is_err() && parse_size("99999999999999G").is_err());
        for s in ["TERM", "SIGTERM", "term", "15"] {
            assert_eq!(parse_signal(s), Ok(Signal::TERM));
        }
        assert!(parse_signal("NOPE").is_err() && parse_signal("0").is_err());
    }

    #[test]
    fn the_separator_is_optional_and_program_flags_stay_the_programs() {
        let r = run(&["-k", "2", "sleep", "1"]).unwrap();
        assert_eq!(r.command, ["sleep", "1"]);
        assert_eq!(r.grace, Duration::from_secs(2));
        let r = run(&["--grace=500ms", "--", "ls", "--timeout"]).unwrap();
        assert_eq!(r.command, ["ls", "--timeout"]);
        assert_eq!(r.grace, Duration::from_millis(500));
        let r = run(&["--json", "sh", "-c", "x", "--json"]).unwrap();
        assert!(r.json);
        assert_eq!(r.command, ["sh", "-c", "x", "--json"]);
        assert_eq!(r.contain, Contain::Auto);
    }
}
