//! Parsing `childfd run [FLAGS] -- PROGRAM ARGS…`.

use std::ffi::OsString;
use std::time::Duration;

/// How to contain the program's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contain {
    Pgroup,
    Session,
    Cgroup,
    None,
}

impl Contain {
    pub fn name(self) -> &'static str {
        match self {
            Contain::Pgroup => "pgroup",
            Contain::Session => "session",
            Contain::Cgroup => "cgroup",
            Contain::None => "none",
        }
    }
}

/// A parsed `run` command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub wait_delay: Option<Duration>,
    pub contain: Contain,
    pub max_output: Option<u64>,
    pub json: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Run(Run),
    Help,
}

pub const USAGE: &str = "\
usage: childfd run [--timeout D] [--grace D] [--wait-delay D]
                   [--contain pgroup|session|cgroup|none] [--max-output N] [--json]
                   -- PROGRAM [ARGS...]

Runs PROGRAM, passing its stdout and stderr through, and exits with its
exit code (128+N if killed by signal N).

  --timeout D      terminate the program's tree after D (SIGTERM, then SIGKILL
                   after the grace); exit 124
  --grace D        time between SIGTERM and SIGKILL (default 1s)
  --wait-delay D   after the program exits, read its output at most D longer;
                   if something still holds the pipes, name it and kill the tree
  --contain MODE   process tree containment (default pgroup)
  --max-output N   pass at most N bytes per stream through (K, M, G suffixes);
                   the rest is read, counted and dropped
  --json           print a JSON report as the last line on stderr

Durations: 500ms, 2s, 1m, 1h. Exit codes: the program's; 124 timeout;
125 childfd's own error; 126 cannot execute; 127 not found.
";

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 500ms, 2s, 1m)");
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Parses `65536`, `64K`, `1M`, `2G`.
pub fn size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (use e.g. 65536, 64K, 1M)");
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cmd, String> {
    let mut args = args.into_iter();
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("run") => {}
        Some("-h" | "--help" | "help") => return Ok(Cmd::Help),
        Some(other) => return Err(format!("unknown command {other:?} (expected `run`)")),
        None => return Err("missing command (expected `run`)".into()),
    }
    let mut run = Run {
        timeout: None,
        grace: Duration::from_secs(1),
        wait_delay: None,
        contain: Contain::Pgroup,
        max_output: None,
        json: false,
        program: OsString::new(),
        args: Vec::new(),
    };
    loop {
        let Some(arg) = args.next() else {
            return Err("missing `-- PROGRAM`".into());
        };
        let Some(flag) = arg.to_str() else {
            return Err(format!("invalid flag {arg:?}"));
        };
        if flag == "--" {
            break;
        }
        if flag == "-h" || flag == "--help" {
            return Ok(Cmd::Help);
        }
        if flag == "--json" {
            run.json = true;
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name {
            "--timeout" => run.timeout = Some(duration(&value()?)?),
            "--grace" => run.grace = duration(&value()?)?,
            "--wait-delay" => run.wait_delay = Some(duration(&value()?)?),
            "--max-output" => run.max_output = Some(size(&value()?)?),
            "--contain" => {
                run.contain = match value()?.as_str() {
                    "pgroup" => Contain::Pgroup,
                    "session" => Contain::Session,
                    "cgroup" => Contain::Cgroup,
                    "none" => Contain::None,
                    other => {
                        return Err(format!(
                            "invalid --contain {other:?} (pgroup, session, cgroup or none)"
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown flag {name:?}")),
        }
    }
    run.program = args.next().ok_or("missing PROGRAM after `--`")?;
    run.args = args.collect();
    Ok(Cmd::Run(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cmd, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(
            duration("5").is_err()
                && duration("s").is_err()
                && duration("2x").is_err()
                && duration("-1s").is_err()
        );
        assert_eq!(size("64K"), Ok(65536));
        assert_eq!(size("100"), Ok(100));
        assert!(size("x").is_err() && size("99999999999999G").is_err());
    }

    #[test]
    fn flags_before_the_separator_and_the_program_after() {
        let Ok(Cmd::Run(r)) = p(&[
            "run",
            "--timeout",
            "1s",
            "--wait-delay=500ms",
            "--json",
            "--",
            "sh",
            "-c",
            "x",
        ]) else {
            panic!()
        };
        assert_eq!(r.timeout, Some(Duration::from_secs(1)));
        assert_eq!(r.wait_delay, Some(Duration::from_millis(500)));
        assert!(r.json);
        assert_eq!(r.program, "sh");
        assert_eq!(r.args, vec![OsString::from("-c"), OsString::from("x")]);
        // Flags after `--` belong to the program.
        let Ok(Cmd::Run(r)) = p(&["run", "--", "ls", "--timeout"]) else {
            panic!()
        };
        assert_eq!(r.args, vec![OsString::from("--timeout")]);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(
            p(&["run", "--timeout", "soon", "--", "x"])
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(
            p(&["run", "--contain", "jail", "--", "x"])
                .unwrap_err()
                .contains("--contain")
        );
        assert!(
            p(&["run", "--frobnicate", "--", "x"])
                .unwrap_err()
                .contains("unknown flag")
        );
        assert!(
            p(&["run", "--timeout"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(p(&["run", "--"]).unwrap_err().contains("missing PROGRAM"));
        assert!(p(&["run", "true"]).unwrap_err().contains("unknown flag"));
        assert!(p(&["walk"]).unwrap_err().contains("unknown command"));
        assert_eq!(p(&["--help"]), Ok(Cmd::Help));
    }
}
