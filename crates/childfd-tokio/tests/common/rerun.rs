//! Running one test of this binary again in a process of its own (a
//! process-wide limit, a signal disposition, a PID namespace), bounded
//! in time, its group killed afterwards whatever happened.

use std::os::unix::process::CommandExt;
use std::time::Duration;

/// Set in the copy: the test runs its scenario instead of re-running.
pub const ROLE: &str = "CHILDFD_TOKIO_TEST_ROLE";

/// Whether this process is the copy re-run for `test`.
pub fn is_copy_for(test: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == test)
}

/// Re-runs this binary's test `test` (with [`ROLE`] set) behind `wrap`
/// (a program and its arguments, such as `unshare -p -f --mount-proc`;
/// none if empty), changed by `setup`; at most `limit`. Panics with the
/// copy's output unless it passed.
#[track_caller]
pub fn rerun(
    test: &str,
    wrap: &[&str],
    limit: Duration,
    setup: impl FnOnce(&mut std::process::Command),
) {
    // One copy at a time: copies running as one user count each other's
    // processes against their limits.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = match wrap.split_first() {
        Some((prog, args)) => {
            let mut c = std::process::Command::new(prog);
            c.args(args).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let log =
        std::env::temp_dir().join(format!("childfd-tokio-rerun-{}-{test}", std::process::id()));
    let file = std::fs::File::create(&log).expect("log file");
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, test)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file);
    setup(&mut cmd);
    let mut child = cmd.spawn().expect("re-run the test binary");
    let pgid = child.id() as i32;
    let mut status = None;
    let done = childfd_testbin::eventually(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    // Whatever happened, nothing of the copy's group survives it.
    childfd_testbin::kill(-pgid, libc::SIGKILL);
    if !done {
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        done,
        "{test}: the copy did not finish within {limit:?}:\n{text}"
    );
    let status = status.expect("finished");
    eprintln!("{test}, in a copy:\n{text}");
    assert!(
        status.success() && text.contains("1 passed"),
        "{test}: the copy failed ({status}):\n{text}"
    );
}
