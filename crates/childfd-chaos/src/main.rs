//! `childfd-chaos`: childfd's guarantees measured while the host process
//! misbehaves. Run it with `cargo xtask chaos --minutes N [--seed S]`.
//!
//! The process plays three parts, chosen at start:
//!
//! - a tree of the spec language (`CHILDFD_TREE_SPEC`), as the work's
//!   children; each of its processes first logs its open fds;
//! - a decoy (`CHILDFD_CHAOS_DECOY`): a process the harness owns and
//!   never gives to childfd, which must survive everything;
//! - the init (no first argument `driver`), which starts
//! - the driver (`driver ...`): the work (Supervisor, `output()`, plain
//!   `Command::spawn`, `childfd-tokio`, from several threads) and the chaos threads, round
//!   after round, with the checks after each.
//!
//! Options: `--minutes N` or `--seconds N`, `--seed S` (a round's seed
//! reproduces that round's plan), `--only KINDS` / `--skip KINDS` (comma
//! list of `tstp,signals,stops,env,fds,fork,pidreuse,hogs`),
//! `--round-seconds N` (10), `--hogs N` (2), `--tolerance-ms N` (250).
#![deny(unsafe_code)]

mod chaos;
mod checks;
mod config;
mod decoy;
mod driver;
mod init;
mod round;
mod shared;
#[allow(unsafe_code)]
mod sys;
mod work;

use std::process::ExitCode;

fn main() -> ExitCode {
    childfd_testbin::tree::run_if_requested();
    decoy::run_if_requested();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let driver = args.first().is_some_and(|a| a == "driver");
    if driver {
        args.remove(0);
    }
    let cfg = match config::Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("childfd-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    if driver {
        driver::main(cfg)
    } else {
        // The driver gets the seed chosen here, so both print the same.
        let mut pass = args.clone();
        if !pass.iter().any(|a| a == "--seed") {
            pass.extend(["--seed".into(), format!("{:#x}", cfg.seed)]);
        }
        init::main(&cfg, &pass)
    }
}
