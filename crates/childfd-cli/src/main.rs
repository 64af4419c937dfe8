//! `childfd run`: runs a program under childfd and childfd-io, passing its
//! output through, so that it can neither hang the caller (inherited
//! pipes, a runaway child, a slow reader) nor leave its tree behind, however
//! it is ended (timeout, Ctrl-C, a CI agent's SIGTERM, a closed pipe).
//! See `childfd run --help`.
#![deny(unsafe_code)]

mod args;
mod own_output;
mod report;
mod run;
mod sink;
mod sys;
mod term;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Cmd};
use report::Destinations;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let Cmd::Run(run) = cli.cmd;
    let mut dest = Destinations {
        stderr: run.json,
        file: run.json_file.clone(),
        fd: None,
    };
    if let Some(n) = run.json_fd {
        match sys::dup_fd(n) {
            Ok(fd) => dest.fd = Some(fd),
            Err(e) => {
                say(format_args!("--json-fd {n}: {e}"));
                return ExitCode::from(run::OWN_ERROR);
            }
        }
    }
    ExitCode::from(run::run(&run, dest))
}

/// `--help` and `--version` go to stdout with status 0; a usage error is
/// clap's short message (what is wrong, the usage line, a pointer to
/// `--help`) with status 125, as `timeout(1)` uses for its own errors.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            own_output::stderr(e.render().to_string().into_bytes());
            ExitCode::from(run::OWN_ERROR)
        }
    }
}

/// `e` and its chain of sources, `: `-separated, each cause once: an
/// error whose message already ends with its source's (childfd's spawn
/// errors name the OS reason themselves) does not repeat it.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
}

/// A `childfd: ...` line on stderr. Never panics and never blocks for
/// long: a closed or broken stderr only loses the line, a stderr nobody
/// reads holds childfd up for at most [`own_output::OWN_WRITE_BOUND`].
pub fn say(msg: fmt::Arguments<'_>) {
    own_output::stderr(format!("childfd: {msg}\n").into_bytes());
}
