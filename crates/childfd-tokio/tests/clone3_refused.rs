//! A process whose every thread (the spawner threads too) runs under a
//! seccomp filter refusing `clone3` with ENOSYS, as container profiles do
//! (glibc's own thread and process creation fall back only on ENOSYS, so
//! EPERM leaves a process that cannot start a thread at all): jobs must
//! still spawn (the core crate falls back to `clone`/`fork`) and leave
//! nothing behind.

mod common;

use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::rerun::{is_copy_for, rerun};
use common::{Flavor, LIBRARY_THREADS, SLACK, runtime, sh};

/// Re-runs `test` in a copy started under the filter (installed before
/// `execve`, so every thread of the copy has it).
fn under_filter(test: &str) {
    rerun(test, &[], Duration::from_secs(120), |c| {
        let deny = move || {
            childfd_testbin::seccomp_deny(libc::SYS_clone3, libc::ENOSYS);
            Ok(())
        };
        // SAFETY: glibc's allocator (the filter is built in a `Vec`) is
        // usable after `fork`; nothing else is locked here.
        unsafe { c.pre_exec(deny) };
    });
}

/// In the copy: jobs, a plain spawn and a capture all run.
fn spawns_run() {
    common::warm_up();
    let refused = childfd::Command::new("true").spawn();
    assert!(
        refused.is_ok(),
        "premise: inline spawns fall back: {refused:?}"
    );
    drop(refused);
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        let tag = new_tag("clone3");
        let rt = runtime(flavor);
        rt.block_on(async {
            let mut jobs = JobSet::new(8);
            for i in 0..30 {
                jobs.push(sh(&format!("echo {i}"), &tag), Options::new());
            }
            let mut done = 0;
            while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
                .await
                .expect("hung")
            {
                match ev {
                    Event::Started { .. } => {}
                    Event::Exited(r) => {
                        assert_eq!(r.stdout.text(), format!("{}\n", r.id));
                        done += 1;
                    }
                    other => panic!("{flavor:?}: {other:?}"),
                }
            }
            assert_eq!(done, 30);
            let child = sh("exit 7", &tag).spawn_async().await.expect("spawn_async");
            assert_eq!(child.wait().await.expect("wait").code(), Some(7));
        });
        rt.shutdown_timeout(SLACK);
        assert_no_survivors(&tag);
        h.finish(LIBRARY_THREADS);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(
        status.contains("Seccomp:\t2"),
        "premise: the copy runs under the filter"
    );
}

const TEST: &str = "jobs_spawn_where_every_thread_gets_enosys_from_clone3";

#[test]
fn jobs_spawn_where_every_thread_gets_enosys_from_clone3() {
    if is_copy_for(TEST) {
        return spawns_run();
    }
    under_filter(TEST);
}
