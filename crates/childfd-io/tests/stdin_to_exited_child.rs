//! Feeding stdin to a child that exits without reading it: reported as
//! `stdin_closed_early`, and the host gets no SIGPIPE.
//!
//! `harness = false`: the test harness (like every Rust binary) ignores
//! SIGPIPE, which would hide the bug; here SIGPIPE is set back to its
//! default (terminate) first, so a SIGPIPE would kill this test.

use std::time::Duration;

use childfd::Command;
use childfd_io::{CommandExt, Options, Outcome};

fn main() {
    childfd_testbin::default_sigpipe();
    let input = vec![b'x'; 8 << 20];
    for reader in [false, true] {
        let opts = Options::new().deadline(Duration::from_secs(60));
        let opts = if reader {
            opts.stdin_reader(&input[..])
        } else {
            opts.stdin_bytes(&input[..])
        };
        let out = Command::new("true").output_with(opts).unwrap();
        assert_eq!(out.outcome, Outcome::Exited);
        assert!(out.status.unwrap().success());
        assert!(
            out.stdin_closed_early,
            "8 MiB cannot all fit into the pipe of a child that never reads"
        );
        assert!(out.stdin_written < input.len() as u64);
        println!(
            "reader={reader}: wrote {} of {} bytes, closed early, no SIGPIPE",
            out.stdin_written,
            input.len()
        );
    }
    assert!(childfd_testbin::children().is_empty());
}
