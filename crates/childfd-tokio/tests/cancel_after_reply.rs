//! A spawn whose task is dropped after the spawner thread sent the reply
//! but before the task polled it: the reply (and the child in it) is
//! dropped with the channel, and the child must be killed and reaped, not
//! left running.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use childfd::Command;
use childfd_tokio::CommandExt;

/// Our children (any state, zombies included) whose command line has
/// `marker`, from `/proc`.
fn our_children_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(me) && String::from_utf8_lossy(&cmdline).contains(marker)
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            eprintln!("gave up waiting for: {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_spawn_dropped_after_its_reply_was_sent_leaves_no_child_running() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _in_runtime = rt.enter();
    let marker = format!("{}.{}", 300 + std::process::id() % 100, std::process::id());
    let mut cmd = Command::new("sleep");
    cmd.arg(&marker);
    {
        let mut spawn = pin!(cmd.spawn_async());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            spawn.as_mut().poll(&mut cx).is_pending(),
            "premise: the first poll only queues the spawn"
        );
        // The child runs `sleep` once the spawner thread's clone returned;
        // the thread sends the reply right after. The future is never polled
        // again, so the reply waits in the channel when the future is dropped.
        assert!(
            wait_until("the child to exec sleep", || !our_children_with(&marker)
                .is_empty()),
            "the spawn never ran"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let gone = wait_until(
        "the cancelled spawn's child to be killed and reaped",
        || our_children_with(&marker).is_empty(),
    );
    if !gone {
        for pid in our_children_with(&marker) {
            // Our own child, by pid (it is unreaped, so the pid is still its own).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    assert!(
        gone,
        "a spawn dropped after its reply was sent left its child running"
    );
}
