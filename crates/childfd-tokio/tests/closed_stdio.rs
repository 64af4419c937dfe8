//! A process started with fds 0, 1 and 2 closed (a daemon, a service
//! manager's child): the runtime's epoll, the pipes and the pidfds of
//! the jobs then take those numbers. Every job must still get its own
//! stdin, stdout and stderr, and once everything is dropped, nothing of
//! ours may be left on those numbers (or anywhere).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag, open_fds};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::rerun::{is_copy_for, rerun};
use common::{Flavor, SLACK, runtime, sh};

const TEST: &str = "jobs_of_a_process_started_without_stdio_get_their_own_and_leave_no_fd";

#[test]
fn jobs_of_a_process_started_without_stdio_get_their_own_and_leave_no_fd() {
    if is_copy_for(TEST) {
        return without_stdio();
    }
    rerun(TEST, &[], Duration::from_secs(120), |_| {});
}

/// Fds 0, 1 and 2 closed while `body` runs; panics are reported on a
/// copy of stderr kept elsewhere.
fn without_stdio() {
    common::warm_up();
    let report = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 100).expect("dup");
    let report_fd = report.as_raw_fd();
    std::panic::set_hook(Box::new(move |info| {
        // SAFETY: `report` lives until the end of `without_stdio`, which
        // this hook (removed there) never outlives.
        let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(report_fd) });
        let _ = writeln!(f, "{info}");
    }));
    let before: BTreeSet<i32> = open_fds().into_iter().filter(|&fd| fd > 2).collect();
    for fd in 0..3 {
        // SAFETY: the process's own stdio, closed on purpose; nothing
        // holds them (the test harness writes to them only after the test).
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let result = std::panic::catch_unwind(body);
    // Nothing of ours on 0, 1, 2 (or anywhere else) once all is dropped.
    let left = childfd_testbin::eventually(SLACK, || {
        open_fds().into_iter().collect::<BTreeSet<_>>() == before
    });
    let now = childfd_testbin::describe_fds();
    // Stdio back for the test harness.
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .expect("open");
    for fd in 1..3 {
        // SAFETY: numbers 1 and 2, free (checked above) or about to be
        // replaced for the harness's sake.
        let mut target = std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(fd) });
        rustix::io::dup2(&report, &mut target).expect("dup2");
    }
    let _ = std::panic::take_hook();
    drop((null, report));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(left, "fds left after the jobs: {now:?}");
}

fn body() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let tag = new_tag("closed-stdio");
        let rt = runtime(flavor);
        rt.block_on(async {
            let mut jobs = JobSet::new(8);
            for i in 0..30 {
                let script = "read x; echo \"out $x\"; echo \"err $x\" >&2";
                jobs.push(
                    sh(script, &tag),
                    Options::new().stdin_bytes(format!("{i}\n")),
                );
            }
            let mut done = 0;
            while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
                .await
                .expect("hung")
            {
                match ev {
                    Event::Started { .. } => {}
                    Event::Exited(r) => {
                        assert_eq!(r.stdout.text(), format!("out {}\n", r.id), "{flavor:?}");
                        assert_eq!(r.stderr.text(), format!("err {}\n", r.id), "{flavor:?}");
                        done += 1;
                    }
                    other => panic!("{flavor:?}: {other:?}"),
                }
            }
            assert_eq!(done, 30);
            let mut c = sh("exec cat", &tag);
            let out = c
                .output_async(Options::new().stdin_bytes("through\n"))
                .await
                .expect("output");
            assert_eq!(out.stdout.text(), "through\n");
        });
        rt.shutdown_timeout(SLACK);
        assert_no_survivors(&tag);
    }
}
