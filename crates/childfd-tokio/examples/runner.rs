//! A small parallel test runner on childfd-tokio: each test is a shell
//! command; at most `-j N` run at once, each with a deadline (its whole
//! process tree is terminated when it passes) and a wait-delay (a test
//! whose background processes keep its output open is reported, with
//! their names, instead of hanging the run). Prints one line per test and
//! a summary; exits 1 if any test did not pass.
//!
//! ```sh
//! cargo run -p childfd-tokio --example runner -- -j 4 --timeout 2.5 tests.txt
//! ```
//!
//! `tests.txt` holds one command per line (`#` starts a comment). Without
//! a file, a built-in demo list runs.

use std::time::{Duration, Instant};

use childfd_tokio::{JobSet, Options, Outcome, Report};

const DEMO: &str = "\
# passes
echo ok
# fails with output on stderr
echo 'expected 2, got 3' >&2; exit 1
# hangs: terminated at the deadline
sleep 600
# exits, but a background process keeps stdout open
echo started; sleep 600 &
# ignores SIGTERM: killed after the grace
trap '' TERM; sleep 600
";

struct Args {
    jobs: usize,
    timeout: Duration,
    file: Option<String>,
}

/// `[-j N] [--timeout SECONDS] [FILE]`.
fn parse_args() -> Result<Args, String> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut args, mut it) = (
        Args {
            jobs,
            timeout: Duration::from_secs(1),
            file: None,
        },
        std::env::args().skip(1),
    );
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "-j" => args.jobs = value()?.parse().map_err(|e| format!("-j: {e}"))?,
            "--timeout" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                args.timeout =
                    Duration::try_from_secs_f64(secs).map_err(|e| format!("--timeout: {e}"))?;
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => args.file = Some(a),
        }
    }
    Ok(args)
}

/// Why a finished test did not pass; `None` if it passed.
fn failure(r: &Report) -> Option<String> {
    let status = r.status.map_or("?".into(), |s| s.to_string());
    Some(match r.outcome {
        Outcome::Exited if r.status.is_some_and(|s| s.success()) => return None,
        Outcome::Exited => format!("FAIL ({status})"),
        Outcome::TimedOut => format!(
            "TIMEOUT (ended by {:?})",
            r.ended_by.unwrap_or(childfd::EndedBy::Kill)
        ),
        Outcome::PipesHeldOpen => {
            let by: Vec<String> = r
                .holders
                .iter()
                .map(|h| format!("{} [{}]", h.name, h.pid))
                .collect();
            format!("HELD (output kept open by {})", by.join(", "))
        }
        Outcome::SpawnFailed => format!(
            "NOT RUN ({})",
            r.error.as_ref().map_or(String::new(), |e| e.to_string())
        ),
        other => format!("{other:?}"),
    })
}

/// One line per finished test (and the tail of its stderr if it did not
/// pass); true if it passed.
fn print_result(r: &Report) -> bool {
    let (name, took) = (r.tag.as_deref().unwrap_or("?"), r.elapsed.as_secs_f64());
    let failed = failure(r);
    println!(
        "{:<8} {took:>6.2}s  {name}",
        failed.as_deref().unwrap_or("PASS")
    );
    for line in r
        .stderr
        .text()
        .lines()
        .take(if failed.is_some() { 5 } else { 0 })
    {
        println!("         | {line}");
    }
    failed.is_none()
}

fn die(msg: &str) -> ! {
    eprintln!("runner: {msg}\nusage: runner [-j N] [--timeout SECONDS] [FILE]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| die(&e));
    let text = match &args.file {
        Some(f) => std::fs::read_to_string(f).unwrap_or_else(|e| die(&format!("{f}: {e}"))),
        None => DEMO.to_string(),
    };
    let tests: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();

    let start = Instant::now();
    let mut set = JobSet::new(args.jobs);
    for test in &tests {
        let mut cmd = childfd::Command::new("sh");
        cmd.args(["-c", test]);
        let opts = Options::new()
            .deadline(args.timeout)
            .grace(Duration::from_millis(500))
            .wait_delay(Duration::from_millis(300))
            .kill_tree_on_held_pipes(true)
            .max_bytes(64 << 10)
            .keep_tail(16 << 10)
            .tag(*test);
        set.push(cmd, opts);
    }
    let mut passed = 0;
    while let Some(ev) = set.next().await {
        if let Some(r) = ev.into_report() {
            passed += usize::from(print_result(&r));
        }
    }
    let s = set.summary();
    println!(
        "\n{} tests in {:.2}s (-j {}): {passed} passed, {} failed, {} timed out, {} held pipes, {} not run",
        tests.len(),
        start.elapsed().as_secs_f64(),
        args.jobs,
        s.failed,
        s.timed_out,
        s.pipes_held,
        s.spawn_failed,
    );
    std::process::exit(if passed == tests.len() { 0 } else { 1 });
}
