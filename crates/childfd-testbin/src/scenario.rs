//! The `main` of a `harness = false` test binary whose scenarios each need
//! a process of their own (a `fork`, a `close_range`, a signal flood to
//! "the caller's group" must stay inside the scenario).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// With `env` set (by the re-run below), runs the scenario it names here
/// and prints `ok: NAME`. Otherwise re-runs this binary for every scenario
/// whose name contains one of the command line's non-flag arguments (all
/// without any), each in a process of its own bounded by `limit`, and
/// panics naming those that failed.
pub fn main(env: &str, scenarios: &[(&str, fn())], limit: Duration) {
    if let Ok(name) = std::env::var(env) {
        let (_, f) = scenarios
            .iter()
            .find(|(n, _)| *n == name)
            .expect("known scenario");
        f();
        println!("ok: {name}");
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, _) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if !run_one(env, name, limit) {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

/// Re-runs this binary with `env=name`, in a new process group, for at
/// most `limit`; kills the group afterwards whatever happened, prints the
/// scenario's output (and why it failed). True if it passed.
fn run_one(env: &str, name: &str, limit: Duration) -> bool {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(env, name)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // One thread per pipe: a scenario that fills its stderr pipe before
    // closing stdout must not block on us.
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read_all(Box::new(out)), read_all(Box::new(err)));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever happened, nothing of the scenario's group survives it.
    crate::kill(-pgid, libc::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let text = out.join().unwrap() + &err.join().unwrap();
    print!("{text}");
    match status {
        Some(s) if s.success() => true,
        Some(s) => {
            println!("FAILED {name}: {s}");
            false
        }
        None => {
            println!("FAILED {name}: still running after {limit:?} (hung), killed");
            false
        }
    }
}
