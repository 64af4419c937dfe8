//! A capture reads its output pipes before they join the reactor (a short
//! job has often written everything and exited by then): output already
//! there, output that comes later, and more than a pipe holds all arrive
//! whole, and waiting for late output does not spin.

mod common;

use std::time::Duration;

use childfd_tokio::{CommandExt, Options, Outcome};
use common::{Flavor, on_both, sh};

#[test]
fn output_written_before_the_capture_looks_is_read_whole() {
    on_both(|_| async {
        let tag = childfd_testbin::new_tag("early");
        // Many jobs at once: most have exited before their capture starts.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let mut cmd = sh(&format!("echo out{i}; echo err{i} >&2"), &tag);
            set.spawn(async move { (i, cmd.output_async(Options::new()).await) });
        }
        while let Some(r) = set.join_next().await {
            let (i, out) = r.unwrap();
            let out = out.unwrap();
            assert_eq!(out.outcome, Outcome::Exited, "{out:?}");
            assert_eq!(out.stdout.text(), format!("out{i}\n"));
            assert_eq!(out.stderr.text(), format!("err{i}\n"));
            assert!(out.status.unwrap().success());
        }
        childfd_testbin::assert_no_survivors(&tag);
    });
}

#[test]
fn output_that_comes_after_a_pause_is_awaited_without_spinning() {
    on_both(|flavor| async move {
        let tag = childfd_testbin::new_tag("late");
        let cpu = || rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let before = cpu();
        let out = sh("sleep 1; echo late; echo err >&2", &tag)
            .output_async(Options::new())
            .await
            .unwrap();
        let after = cpu();
        assert_eq!(out.stdout.text(), "late\n");
        assert_eq!(out.stderr.text(), "err\n");
        assert!(out.status.unwrap().success());
        if flavor == Flavor::CurrentThread {
            // The whole capture ran on this thread: a pipe polled in a
            // loop instead of waited for would burn most of the second.
            let used = Duration::new((after.tv_sec - before.tv_sec) as u64, 0)
                + Duration::from_nanos(after.tv_nsec as u64)
                - Duration::from_nanos(before.tv_nsec as u64);
            assert!(used < Duration::from_millis(300), "capture CPU {used:?}");
        }
        childfd_testbin::assert_no_survivors(&tag);
    });
}

#[test]
fn more_output_than_a_pipe_holds_is_read_whole() {
    on_both(|_| async {
        let tag = childfd_testbin::new_tag("big");
        let out = sh("head -c 1000000 /dev/zero; echo done >&2", &tag)
            .output_async(Options::new().max_bytes(4096))
            .await
            .unwrap();
        assert_eq!(out.stdout.total, 1_000_000, "{out:?}");
        assert_eq!(out.stderr.text(), "done\n");
        assert!(out.status.unwrap().success());
        childfd_testbin::assert_no_survivors(&tag);
    });
}
