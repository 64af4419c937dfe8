//! `childfd run`: runs a program under childfd and childfd-io, passing its
//! output through, so that it can neither hang the caller (inherited
//! pipes, a runaway child) nor leave its tree behind. See `childfd --help`.

mod args;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use args::{Cmd, Contain, Run, USAGE};
use childfd::{Command, Containment, EndedBy, SpawnStage};
use childfd_io::{Options, Outcome, Output, OutputError, Stream};
use serde_json::{Value, json};

/// Exit codes, as `timeout(1)` and shells use them.
const TIMED_OUT: u8 = 124;
const OWN_ERROR: u8 = 125;
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Cmd::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Cmd::Run(run)) => ExitCode::from(run_program(&run)),
        Err(msg) => {
            eprintln!("childfd: {msg}\n\n{USAGE}");
            ExitCode::from(OWN_ERROR)
        }
    }
}

/// Bytes passed through and dropped, per stream.
#[derive(Default)]
struct Passed {
    passed: [u64; 2],
    dropped: [u64; 2],
}

fn run_program(run: &Run) -> u8 {
    let program = run.program.to_string_lossy().into_owned();
    let mut cmd = Command::new(&run.program);
    cmd.args(&run.args).containment(match run.contain {
        Contain::Pgroup => Containment::ProcessGroup,
        Contain::Session => Containment::Session,
        Contain::Cgroup => Containment::cgroup(),
        Contain::None => Containment::Inherit,
    });
    cmd.stdin(childfd::Stdio::inherit())
        .stdout(childfd::Stdio::piped())
        .stderr(childfd::Stdio::piped())
        .kill_on_drop(true);
    let t0 = std::time::Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = match (e.stage(), e.kind()) {
                (SpawnStage::Exec, std::io::ErrorKind::NotFound) => NOT_FOUND,
                (SpawnStage::Exec | SpawnStage::Chdir, _) => CANNOT_EXECUTE,
                _ => OWN_ERROR,
            };
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            eprintln!("childfd: {e}{cause}");
            if run.json {
                report_json(&json!({
                    "program": program,
                    "error": format!("{e}{cause}"),
                    "stage": e.stage().to_string(),
                    "exit_code": code,
                }));
            }
            return code;
        }
    };

    let limit = run.max_output.unwrap_or(u64::MAX);
    let mut passed = Passed::default();
    let mut opts = Options::new()
        .grace(run.grace)
        .max_bytes(0) // nothing kept: output is passed through, and counted
        .kill_tree_on_held_pipes(true)
        .on_output(|stream, chunk| {
            let i = match stream {
                Stream::Stdout => 0,
                _ => 1,
            };
            let room = limit.saturating_sub(passed.passed[i]);
            let n = (chunk.len() as u64).min(room) as usize;
            passed.passed[i] += n as u64;
            passed.dropped[i] += (chunk.len() - n) as u64;
            if n > 0 {
                // Our own stdout may be closed (`childfd run ... | head`):
                // keep draining the child regardless.
                let _ = match stream {
                    Stream::Stdout => std::io::stdout()
                        .lock()
                        .write_all(&chunk[..n])
                        .and_then(|()| std::io::stdout().flush()),
                    _ => std::io::stderr().lock().write_all(&chunk[..n]),
                };
            }
        });
    if let Some(t) = run.timeout {
        opts = opts.deadline(t);
    }
    if let Some(d) = run.wait_delay {
        opts = opts.wait_delay(d);
    }
    let out = match childfd_io::output(&mut child, opts) {
        Ok(out) => out,
        Err(e) => {
            eprintln!(
                "childfd: {e}{}",
                std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            );
            if let OutputError::InvalidOptions { .. } = e {
                return OWN_ERROR;
            }
            let _ = child.kill_tree();
            return OWN_ERROR;
        }
    };
    let code = exit_code(&out);
    // Leave nothing behind: kill whatever of the tree is left (daemons
    // that closed their output), and wait, bounded, until it is gone, so
    // that dropping the handle also removes a cgroup leaf (a background
    // cleanup would die with this process).
    let _ = child.kill_tree();
    let _ = child.wait_tree_deadline(std::time::Instant::now() + Duration::from_secs(5));
    drop(child);
    diagnose(&program, run, &out, &passed);
    if run.json {
        // From before the spawn, as a user timing the command would.
        let total = t0.elapsed();
        let until_exit = out
            .exited_after
            .map(|e| e + (total.saturating_sub(out.elapsed)));
        report_json(&report(
            &program, run, &out, &passed, code, total, until_exit,
        ));
    }
    code
}

fn exit_code(out: &Output) -> u8 {
    if out.outcome == Outcome::TimedOut {
        return TIMED_OUT;
    }
    match out.status {
        Some(s) => s.shell_code().clamp(0, 255) as u8,
        None => OWN_ERROR,
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One-line explanations on stderr of anything unusual.
fn diagnose(program: &str, run: &Run, out: &Output, passed: &Passed) {
    let holders = || {
        out.holders
            .iter()
            .map(|h| format!("{} (pid {})", h.name, h.pid))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match out.outcome {
        Outcome::PipesHeldOpen => eprintln!(
            "childfd: {program} exited ({}) but its output stayed open, held by {}; stopped reading after {} and killed its tree",
            out.status
                .map_or("unknown status".into(), |s| s.to_string()),
            holders(),
            secs(run.wait_delay.unwrap_or_default()),
        ),
        Outcome::TimedOut => {
            let how = match out.ended_by {
                Some(EndedBy::Term) => "SIGTERM ended the tree",
                Some(EndedBy::Kill) => "SIGKILL was needed after the grace",
                None => "tree ended",
            };
            eprintln!(
                "childfd: {program} timed out after {}; {how}",
                secs(run.timeout.unwrap_or_default())
            );
            if !out.holders.is_empty() {
                eprintln!("childfd: output still held by {}", holders());
            }
        }
        _ => {}
    }
    for (i, name) in ["stdout", "stderr"].iter().enumerate() {
        if passed.dropped[i] > 0 {
            eprintln!(
                "childfd: {name}: passed {} bytes, dropped {} (--max-output)",
                passed.passed[i], passed.dropped[i]
            );
        }
    }
}

fn report(
    program: &str,
    run: &Run,
    out: &Output,
    passed: &Passed,
    code: u8,
    total: Duration,
    until_exit: Option<Duration>,
) -> Value {
    let status = match out.status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => json!({ "code": c }),
            (None, Some(sig)) => {
                json!({ "signal": sig.as_raw(), "name": sig.to_string(), "core_dumped": s.core_dumped() })
            }
            _ => Value::Null,
        },
        None => Value::Null,
    };
    let stream = |i: usize, c: &childfd_io::Captured| json!({ "bytes": c.total, "passed": passed.passed[i], "dropped": passed.dropped[i] });
    json!({
        "program": program,
        "args": run.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "containment": run.contain.name(),
        "status": status,
        "outcome": match out.outcome {
            Outcome::Exited => "exited",
            Outcome::TimedOut => "timed_out",
            Outcome::PipesHeldOpen => "pipes_held_open",
            _ => "other",
        },
        "exit_code": code,
        "ended_by": match out.ended_by {
            Some(EndedBy::Term) => json!("term"),
            Some(EndedBy::Kill) => json!("kill"),
            None => Value::Null,
        },
        "tree_killed": out.outcome != Outcome::Exited,
        "durations_ms": {
            "total": total.as_secs_f64() * 1e3,
            "until_exit": until_exit.map(|d| d.as_secs_f64() * 1e3),
        },
        "stdout": stream(0, &out.stdout),
        "stderr": stream(1, &out.stderr),
        "holders": out.holders.iter().map(|h| json!({ "pid": h.pid, "name": h.name })).collect::<Vec<_>>(),
    })
}

fn report_json(v: &Value) {
    eprintln!("{v}");
}
