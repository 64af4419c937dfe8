//! `cargo xtask <task>`: project automation.
//!
//! - `ci`: runs `.ci/run` (formatting, lints, docs, tests, benches compile).
//! - `bench [--quick]`: every way to spawn (raw clone/vfork/fork,
//!   posix_spawn, std, tokio, childfd) in every scenario, one process run;
//!   writes `target/bench/report.{json,md,svg}`.
//! - `tree-kill [--quick]`: the kill-time figures of the README.
//!
//! `stress` and `fuzz` arrive with their issue (7); until then they say
//! so and fail.

use std::process::{Command, ExitCode};

fn run(cmd: &mut Command) -> ExitCode {
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("xtask: {cmd:?} failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask: cannot run {cmd:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => run(Command::new(root.join(".ci/run")).current_dir(&root)),
        Some("tree-kill") => run(Command::new("cargo")
            .args([
                "bench",
                "-p",
                "childfd-benches",
                "--bench",
                "tree_kill",
                "--",
            ])
            .args(&args[1..])
            .current_dir(&root)),
        Some("bench") => run(Command::new("cargo")
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "childfd-benches",
                "--bin",
                "compare",
                "--",
                "--out",
            ])
            .arg(root.join("target/bench"))
            .args(&args[1..])
            .current_dir(&root)),
        Some(task @ ("stress" | "fuzz")) => {
            eprintln!("xtask: `{task}` is not implemented yet (see the open issues)");
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("usage: cargo xtask <ci | bench [--quick] | tree-kill [--quick]>");
            ExitCode::FAILURE
        }
    }
}
