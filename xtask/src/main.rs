//! `cargo xtask <task>`: project automation.
//!
//! - `ci`: runs `.ci/run` (formatting, lints, docs, tests, benches compile).
//! - `bench [--quick]`: every way to spawn (raw clone/vfork/fork,
//!   posix_spawn, std, tokio, childfd) in every scenario, one process run;
//!   writes `target/bench/report.{json,md,svg}`.
//! - `tree-kill [--quick]`: the kill-time figures of the README.
//!
//! - `stress [--minutes N]`: the proptest stress suite (random trees ×
//!   operation sequences), repeated with fresh seeds for N minutes
//!   (default: one CI-sized round).
//! - `fuzz [--seconds N]`: each cargo-fuzz target for N seconds (default
//!   30), installing cargo-fuzz if needed; stable toolchain with
//!   `RUSTC_BOOTSTRAP=1`.
//! - `soak [--spawns N]`: N random trees (default 100,000) through a
//!   Supervisor with random deadlines, then counts zombies, leaked fds and
//!   survivors.
//! - `chaos [--minutes N] [--seed S] [--only K,..] [--skip K,..]`: the
//!   chaos soak (`crates/childfd-chaos`): every guarantee checked while
//!   the host process misbehaves; built in release and run as PID 1 of a
//!   private PID namespace (`unshare --pid --fork --mount-proc`, root) in
//!   a session of its own, so its signals never reach cargo or the shell.

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

/// `cargo test --release -q -p childfd-io --test <name>`, from the root.
fn io_test(root: &std::path::Path, name: &str) -> Command {
    let mut c = Command::new("cargo");
    c.args([
        "test",
        "--release",
        "-q",
        "-p",
        "childfd-io",
        "--test",
        name,
    ])
    .current_dir(root);
    c
}

/// The value after `name` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
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
        Some("stress") => {
            let minutes = flag(&args, "--minutes").unwrap_or_else(|| "0".into());
            let mut c = io_test(&root, "stress");
            if minutes != "0" {
                c.env("CHILDFD_STRESS_MINUTES", &minutes)
                    .env("CHILDFD_STRESS_CASES", "64");
            }
            run(&mut c)
        }
        Some("soak") => {
            let spawns = flag(&args, "--spawns").unwrap_or_else(|| "100000".into());
            run(io_test(&root, "soak").env("CHILDFD_SOAK_SPAWNS", spawns))
        }
        Some("chaos") => chaos(&root, &args[1..]),
        Some("fuzz") => {
            let seconds = flag(&args, "--seconds").unwrap_or_else(|| "30".into());
            let have = Command::new("cargo")
                .args(["fuzz", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !have
                && run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
                    != ExitCode::SUCCESS
            {
                return ExitCode::FAILURE;
            }
            for target in ["tree_spec", "lines_caps", "command_build"] {
                let code = run(Command::new("cargo")
                    .args([
                        "fuzz",
                        "run",
                        "-O",
                        target,
                        &format!("corpus/{target}"),
                        "--",
                        &format!("-max_total_time={seconds}"),
                    ])
                    .env("RUSTC_BOOTSTRAP", "1")
                    .current_dir(root.join("fuzz")));
                if code != ExitCode::SUCCESS {
                    eprintln!("xtask: fuzz target {target} failed; see fuzz/artifacts/{target}/");
                    return code;
                }
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | bench [--quick] | tree-kill [--quick] | stress [--minutes N] | fuzz [--seconds N] | soak [--spawns N] | chaos [--minutes N] [--seed S] [--only K,..] [--skip K,..]>"
            );
            ExitCode::FAILURE
        }
    }
}

/// Builds the chaos harness in release and runs it in a private PID
/// namespace if this machine allows one (it says loudly if not, and runs
/// without forced pid reuse).
fn chaos(root: &std::path::Path, args: &[String]) -> ExitCode {
    let built = run(Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "childfd-chaos"])
        .current_dir(root));
    if built != ExitCode::SUCCESS {
        return built;
    }
    let exe = root.join("target/release/childfd-chaos");
    let ns = ["--pid", "--fork", "--mount-proc", "--kill-child"];
    let have_ns = Command::new("unshare")
        .args(ns)
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_ns {
        run(Command::new("unshare").args(ns).arg(&exe).args(args))
    } else {
        eprintln!(
            "xtask: no private PID namespace here (`unshare --pid` failed): pid reuse cannot be forced"
        );
        run(Command::new(&exe).args(args))
    }
}
