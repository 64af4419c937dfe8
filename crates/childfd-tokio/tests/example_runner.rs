//! The `runner` example, run as a user runs it: its built-in demo list must
//! give each outcome the README shows, its exit code must say a test
//! failed, and nothing of any test's tree may outlive it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use childfd_testbin::{assert_no_survivors, new_tag};

/// `target/<profile>/examples/runner`, built by `cargo test` beside this
/// test's own binary (`target/<profile>/deps/`).
fn runner_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = profile_dir.join("examples").join("runner");
    assert!(
        bin.exists(),
        "{} is missing: build the examples (`cargo test -p childfd-tokio` builds them)",
        bin.display()
    );
    bin
}

#[test]
fn runner_example_reports_every_outcome_of_its_demo_list_and_leaves_no_process() {
    let tag = new_tag("runner-example");
    let mut child = std::process::Command::new(runner_binary())
        .args(["-j", "4", "--timeout", "1"])
        .env("CHILDFD_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    // Bounded: the demo takes about 2 s (1 s deadline + 0.5 s grace).
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            assert_no_survivors(&tag);
            panic!("the runner example did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.code(),
        Some(1),
        "a failed test must fail the run:\n{stdout}"
    );
    let line_of = |test: &str| {
        stdout
            .lines()
            .find(|l| l.ends_with(test))
            .unwrap_or_else(|| panic!("no line for {test:?} in:\n{stdout}"))
            .to_string()
    };
    assert!(line_of("  echo ok").starts_with("PASS"), "{stdout}");
    assert!(
        line_of("exit 1").starts_with("FAIL (exit status: 1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| expected 2, got 3"),
        "stderr tail shown:\n{stdout}"
    );
    assert!(
        line_of("  sleep 600").starts_with("TIMEOUT (ended by Term)"),
        "{stdout}"
    );
    assert!(
        line_of("trap '' TERM; sleep 600").starts_with("TIMEOUT (ended by Kill)"),
        "{stdout}"
    );
    let held = line_of("sleep 600 &");
    assert!(
        held.starts_with("HELD (output kept open by sleep ["),
        "{stdout}"
    );
    assert!(
        stdout.contains("5 tests in")
            && stdout.contains("1 passed, 1 failed, 2 timed out, 1 held pipes, 0 not run"),
        "summary:\n{stdout}"
    );
    // The held-pipe test's background `sleep 600` and every other tree
    // member were ended by the runner, not left to init.
    assert_no_survivors(&tag);
}
