//! One-line explanations on stderr of anything unusual about a run.

use std::time::Duration;

use super::{Ended, program_name};
use crate::args::Run;
use crate::report::Outcome;
use crate::say;

/// One-line explanations on stderr of anything unusual.
pub(super) fn diagnose(args: &Run, e: &Ended) {
    let program = program_name(args);
    let holders = e
        .holders
        .iter()
        .map(|h| format!("{} (pid {})", h.name, h.pid))
        .collect::<Vec<_>>()
        .join(", ");
    let first = e.signal.unwrap_or(args.signal);
    let how = match e.ended_by {
        Some(childfd::EndedBy::Term) => format!("{first} ended its tree"),
        Some(childfd::EndedBy::Kill) => "SIGKILL was needed after the grace".to_string(),
        None => "its tree was killed".to_string(),
    };
    let status = e
        .status
        .map_or("unknown status".to_string(), |s| s.to_string());
    match e.outcome {
        Outcome::PipesHeldOpen => say(format_args!(
            "{program} exited ({status}) but its output stayed open, held by {holders}; stopped reading after {} and killed its tree",
            secs(args.wait_delay.unwrap_or_default()),
        )),
        Outcome::TimedOut => say(format_args!(
            "{program} timed out after {}; {how}",
            secs(args.timeout().unwrap_or_default())
        )),
        Outcome::Signalled => say(format_args!(
            "got {}; {how}",
            e.signal.map_or("a signal".into(), |s| s.to_string())
        )),
        Outcome::Error => say(format_args!(
            "{}; killed the tree of {program}",
            e.error.as_deref().unwrap_or("error")
        )),
        _ => {}
    }
    if !e.holders.is_empty() && e.outcome != Outcome::PipesHeldOpen {
        say(format_args!("output still held by {holders}"));
    }
    for (s, name) in e.streams.iter().zip(["stdout", "stderr"]) {
        if s.capped > 0 {
            say(format_args!(
                "{name}: passed {} bytes, dropped {} (--max-output)",
                s.passed, s.capped
            ));
        }
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
