//! Who keeps a pipe open: only processes that can still write to it.

use std::time::{Duration, Instant};

use childfd::Command;
use childfd_io::{CommandExt, Options, Outcome};
use childfd_testbin::{Hygiene, assert_no_survivors, eventually, new_tag, tagged};

#[test]
fn a_fork_holding_only_the_read_end_is_named_as_a_pipe_holder() {
    let h = Hygiene::start();
    let tag = new_tag("reader");
    let dir = std::env::temp_dir().join(format!("childfd-io-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("sleep.sh"),
        "echo started\nsh -c 'exec sleep 1000' &\n",
    )
    .unwrap();
    // Once the writer (the sleep) runs, the host's output loop holds the
    // read ends: fork the host then, so the fork holds only read ends.
    let fork = {
        let tag = tag.clone();
        std::thread::spawn(move || {
            let writer_up = eventually(Duration::from_secs(20), || {
                tagged(&tag).iter().any(|p| p.comm == "sleep")
            });
            assert!(writer_up, "the sleep never started");
            let pid = childfd_testbin::fork_sleeper(Duration::from_secs(20));
            (pid, Instant::now())
        })
    };
    let out = Command::new("sh")
        .arg(dir.join("sleep.sh"))
        .env("CHILDFD_TEST_TAG", &tag)
        .output_with(
            Options::new()
                .wait_delay(Duration::from_secs(2))
                .kill_tree_on_held_pipes(true),
        )
        .unwrap();
    let returned = Instant::now();
    let (forked, forked_at) = fork.join().unwrap();
    childfd_testbin::kill(forked, libc_sigkill());
    childfd_testbin::waitpid(forked);
    assert!(
        forked_at + Duration::from_millis(500) < returned,
        "the fork came too late to be seen"
    );
    assert_eq!(out.outcome, Outcome::PipesHeldOpen);
    let pids: Vec<u32> = out.holders.iter().map(|h| h.pid).collect();
    assert!(
        out.holders.iter().any(|h| h.name == "sleep"),
        "the writer must be named: {:?}",
        out.holders
    );
    assert!(
        !pids.contains(&(forked as u32)),
        "the fork {forked} holds only the read end, yet was named: {:?}",
        out.holders
    );
    assert_no_survivors(&tag);
    std::fs::remove_dir_all(dir).unwrap();
    h.finish(3);
}

/// SIGKILL's number (Linux, every architecture childfd supports).
fn libc_sigkill() -> i32 {
    9
}
