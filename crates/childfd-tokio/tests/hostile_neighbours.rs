//! The rest of the process is busy while jobs spawn: threads rewriting
//! the environment without pause (`set_var`/`remove_var`, which move and
//! free `environ`'s array) and threads opening fds without close-on-exec
//! and `dup2`ing them over numbers of their own. Every job must get
//! exactly its own environment changes and no fd but its stdio, and
//! nothing may be left behind.

mod common;

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use childfd_testbin::{assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::{SLACK, on_both, sh};

const JOBS: u64 = 150;
/// Fd numbers the fd hammer `dup2`s over: its own (the process holds
/// far fewer fds, and the lowest free number is always taken first).
const HAMMER_FDS: std::ops::Range<i32> = 700..716;

/// Rewrites variables of its own until `stop`.
fn env_hammer(stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("CHILDFD_HAMMER_{}", n % 64);
            // SAFETY: every reader of the environment in this process goes
            // through std, which takes its environment lock (childfd
            // copies it with `std::env::vars_os`).
            unsafe { std::env::set_var(&key, "x".repeat((n % 512) as usize)) };
            if n.is_multiple_of(3) {
                // SAFETY: as above.
                unsafe { std::env::remove_var(&key) };
            }
            n += 1;
        }
        for i in 0..64 {
            // SAFETY: as above.
            unsafe { std::env::remove_var(format!("CHILDFD_HAMMER_{i}")) };
        }
    })
}

/// Opens `/dev/null` without close-on-exec and `dup2`s it over
/// [`HAMMER_FDS`] (also without it) until `stop`; closes them at the end.
fn fd_hammer(stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            let null = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY,
                rustix::fs::Mode::empty(),
            )
            .expect("open /dev/null");
            let target = HAMMER_FDS.start + k % HAMMER_FDS.len() as i32;
            // SAFETY: `target` is one of this thread's own numbers (see
            // HAMMER_FDS): nobody else's fd is replaced or closed.
            let mut owned = unsafe { OwnedFd::from_raw_fd(target) };
            rustix::io::dup2(&null, &mut owned).expect("dup2");
            drop(owned); // closes `target`
            drop(null);
            k += 1;
        }
    })
}

/// A job that prints `$CHILDFD_MINE` and the fds it was given.
fn job(i: u64, tag: &str) -> childfd::Command {
    let mut c = sh("echo \"$CHILDFD_MINE\"; exec ls /proc/self/fd", tag);
    c.env("CHILDFD_MINE", format!("job-{i}"));
    c
}

/// `ls /proc/self/fd` of a job: its stdio and the fd `ls` reads the
/// directory with, nothing inherited.
fn check(i: u64, out: &str) {
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(format!("job-{i}").as_str()),
        "job {i}: {out}"
    );
    let fds: Vec<i32> = lines.map(|l| l.parse().expect("an fd number")).collect();
    assert!(
        fds.iter().all(|&fd| fd <= 3),
        "job {i} inherited fds: {fds:?}"
    );
}

#[test]
fn jobs_spawned_beside_environment_and_fd_hammering_get_only_their_own() {
    on_both(|_| async move {
        let tag = new_tag("hostile-neighbours");
        let stop = Arc::new(AtomicBool::new(false));
        let hammers = [env_hammer(stop.clone()), fd_hammer(stop.clone())];
        let mut jobs = JobSet::new(16);
        for i in 0..JOBS {
            jobs.push(job(i, &tag), Options::new());
        }
        let mut reports = HashMap::new();
        while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
            .await
            .expect("jobs hung")
        {
            match ev {
                Event::Started { .. } => {}
                Event::Exited(r) => assert!(reports.insert(r.id, r).is_none(), "reported twice"),
                other => panic!("unexpected {other:?}"),
            }
        }
        for i in 0..20 {
            let out = job(i, &tag)
                .output_async(Options::new())
                .await
                .expect("output");
            check(i, &out.stdout.text());
        }
        stop.store(true, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || hammers.map(|h| h.join().expect("hammer")))
            .await
            .unwrap();
        assert_eq!(reports.len() as u64, JOBS);
        for (i, r) in &reports {
            assert!(r.status.is_some_and(|s| s.success()), "job {i}: {r:?}");
            check(*i, &r.stdout.text());
        }
        tokio::task::spawn_blocking(move || assert_no_survivors(&tag))
            .await
            .unwrap();
    });
}
