//! Jobs started against exhausted limits, each in a copy of this test
//! process (the limits are process-wide): no fd left (`RLIMIT_NOFILE`),
//! no process slot left for the user (`RLIMIT_NPROC`, as an unprivileged
//! user: root is exempt). Each job is reported once, a job that could not
//! start says why, nothing is leaked, and once the limit is lifted jobs
//! run again.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};
use childfd_tokio::{Event, JobSet, Options, Outcome, Report};
use common::rerun::{is_copy_for, rerun};
use common::{Flavor, LIBRARY_THREADS, SLACK, runtime, sh};

const COPY_LIMIT: Duration = Duration::from_secs(120);

/// Runs `n` jobs (`script`) at once; their reports by id.
async fn run_jobs(n: usize, script: &str, tag: &str) -> HashMap<u64, Report> {
    let mut jobs = JobSet::new(n);
    for _ in 0..n {
        jobs.push(
            sh(script, tag),
            Options::new().deadline(Duration::from_secs(60)),
        );
    }
    let mut reports = HashMap::new();
    while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
        .await
        .expect("jobs hung")
    {
        let r = match ev {
            Event::Started { .. } => continue,
            Event::Exited(r) | Event::SpawnFailed(r) | Event::Failed(r) => r,
            other => panic!("unexpected {other:?}"),
        };
        assert!(reports.insert(r.id, r).is_none(), "a job reported twice");
    }
    assert_eq!(reports.len(), n);
    reports
}

/// The outcomes of `reports`, counted; each failure must say `why`.
fn tally(reports: &HashMap<u64, Report>, why: &str) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for r in reports.values() {
        match r.outcome {
            Outcome::Exited => {
                assert!(r.status.is_some_and(|s| s.success()), "{r:?}");
                assert_eq!(r.stdout.text(), "ran\n");
                ok += 1;
            }
            _ => {
                let e = r.error.as_ref().expect("a failure says why");
                let text = format!("{e} / {:?}", e);
                assert!(text.contains(why), "expected {why:?}, got {text}");
                refused += 1;
            }
        }
    }
    (ok, refused)
}

/// With the limit set by `limit` (and lifted by `lift`), jobs are
/// refused, then run again.
fn exhaust(limit: impl Fn(), lift: impl Fn(), why: &str) {
    common::warm_up();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        let rt = runtime(flavor);
        let tag = new_tag("limits");
        rt.block_on(async {
            limit();
            let tight = run_jobs(40, "echo ran; exec sleep 0.5", &tag).await;
            lift();
            let (ok, refused) = tally(&tight, why);
            eprintln!("{flavor:?}: {ok} ran, {refused} refused");
            assert!(
                refused > 0,
                "{flavor:?}: premise: the limit refused some jobs ({ok} ran)"
            );
            let later = run_jobs(40, "echo ran", &tag).await;
            assert_eq!(
                tally(&later, why),
                (40, 0),
                "{flavor:?}: after the limit was lifted"
            );
        });
        rt.shutdown_timeout(SLACK);
        assert_no_survivors(&tag);
        h.finish(LIBRARY_THREADS);
    }
}

fn set_limit(res: rustix::process::Resource, soft: Option<u64>) {
    let mut l = rustix::process::getrlimit(res);
    l.current = soft;
    rustix::process::setrlimit(res, l).expect("setrlimit");
}

/// Fd numbers left to the jobs: a few spawns each.
const FREE_FDS: usize = 16;

const NOFILE: &str =
    "jobs_against_an_exhausted_fd_limit_are_refused_leak_nothing_and_run_again_later";

#[test]
fn jobs_against_an_exhausted_fd_limit_are_refused_leak_nothing_and_run_again_later() {
    if !is_copy_for(NOFILE) {
        return rerun(NOFILE, &[], COPY_LIMIT, |_| {});
    }
    let nofile = rustix::process::Resource::Nofile;
    let soft = rustix::process::getrlimit(nofile).current;
    exhaust(
        || {
            // 16 free fd numbers below the limit (fds above it stay open).
            let open = childfd_testbin::open_fds();
            let free = (0..).filter(|n| !open.contains(n));
            let limit = free.take(FREE_FDS).last().expect("free numbers") + 1;
            set_limit(nofile, Some(limit as u64));
        },
        || set_limit(nofile, soft),
        "Too many open files",
    );
}

const NPROC: &str =
    "jobs_against_an_exhausted_process_limit_are_refused_leak_nothing_and_run_again_later";
/// `nobody`: root is exempt from `RLIMIT_NPROC`.
const UNPRIVILEGED: u32 = 65534;

#[test]
fn jobs_against_an_exhausted_process_limit_are_refused_leak_nothing_and_run_again_later() {
    if !is_copy_for(NPROC) {
        if !childfd_testbin::is_root() {
            eprintln!("NOT ROOT: cannot run a copy as another user, RLIMIT_NPROC not tested");
            return;
        }
        return rerun(NPROC, &[], COPY_LIMIT, |c| {
            std::os::unix::process::CommandExt::uid(c, UNPRIVILEGED);
            std::os::unix::process::CommandExt::gid(c, UNPRIVILEGED);
        });
    }
    let nproc = rustix::process::Resource::Nproc;
    let soft = rustix::process::getrlimit(nproc).current;
    exhaust(
        || set_limit(nproc, Some(tasks_of_this_user() + 4)),
        || set_limit(nproc, soft),
        "Resource temporarily unavailable",
    );
}

/// Threads of every process of this process's user (what `RLIMIT_NPROC`
/// counts).
fn tasks_of_this_user() -> u64 {
    let uid = rustix::process::getuid().as_raw();
    childfd_testbin::processes()
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{}/status", p.pid)).ok())
        .filter(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        })
        .filter_map(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

const FIRST: &str = "a_process_limit_hit_by_the_first_spawn_leaves_no_spawner_threads_for_good";

/// The first `spawn_async` of the process starts the spawner threads; the
/// user's process limit is reached right then (a transient `EAGAIN`).
/// Once the limit is lifted, spawns must run on spawner threads again,
/// not on the caller's runtime worker for the rest of the process.
#[test]
fn a_process_limit_hit_by_the_first_spawn_leaves_no_spawner_threads_for_good() {
    if !is_copy_for(FIRST) {
        if !childfd_testbin::is_root() {
            eprintln!("NOT ROOT: cannot run a copy as another user, RLIMIT_NPROC not tested");
            return;
        }
        return rerun(FIRST, &[], COPY_LIMIT, |c| {
            std::os::unix::process::CommandExt::uid(c, UNPRIVILEGED);
            std::os::unix::process::CommandExt::gid(c, UNPRIVILEGED);
        });
    }
    use childfd_tokio::CommandExt;
    let nproc = rustix::process::Resource::Nproc;
    let soft = rustix::process::getrlimit(nproc).current;
    let spawners = || {
        // Thread names are cut to 15 bytes.
        let names = childfd_testbin::thread_names();
        names
            .iter()
            .filter(|n| n.starts_with("childfd-tokio-s"))
            .count()
    };
    assert_eq!(spawners(), 0, "premise: no spawn yet in this process");
    let rt = runtime(Flavor::CurrentThread);
    rt.block_on(async {
        set_limit(nproc, Some(tasks_of_this_user()));
        let refused = childfd::Command::new("true").spawn_async().await;
        set_limit(nproc, soft);
        let e = refused.expect_err("premise: no process may start");
        assert!(format!("{e:?}").contains("WouldBlock"), "{e:?}");
        let child = childfd::Command::new("true")
            .spawn_async()
            .await
            .expect("spawn");
        assert!(child.wait().await.expect("status").success());
    });
    assert_eq!(
        spawners(),
        2,
        "after a refused start, spawns run on the caller's thread for good: {:?}",
        childfd_testbin::thread_names()
    );
}

const PDEATHSIG: &str =
    "a_parent_death_signal_job_against_an_exhausted_process_limit_panics_the_job_set";

/// A job with a parent-death signal is spawned from the core crate's own
/// long-lived thread, started at the first such spawn. Against a reached
/// process limit, that start fails: the job must be refused (EAGAIN), not
/// panic (the panic is resumed in the task polling the `JobSet`, which
/// loses every other job with it), and once the limit is lifted such
/// jobs must run.
#[test]
fn a_parent_death_signal_job_against_an_exhausted_process_limit_panics_the_job_set() {
    if !is_copy_for(PDEATHSIG) {
        if !childfd_testbin::is_root() {
            eprintln!("NOT ROOT: cannot run a copy as another user, RLIMIT_NPROC not tested");
            return;
        }
        return rerun(PDEATHSIG, &[], COPY_LIMIT, |c| {
            std::os::unix::process::CommandExt::uid(c, UNPRIVILEGED);
            std::os::unix::process::CommandExt::gid(c, UNPRIVILEGED);
        });
    }
    let nproc = rustix::process::Resource::Nproc;
    let soft = rustix::process::getrlimit(nproc).current;
    let job = || {
        let mut c = sh("echo ran", "pdeathsig");
        c.pdeathsig(childfd::Signal::KILL);
        c
    };
    let rt = runtime(Flavor::CurrentThread);
    rt.block_on(async {
        let mut jobs = JobSet::new(2);
        set_limit(nproc, Some(tasks_of_this_user()));
        jobs.push(job(), Options::new());
        // On a task of its own, so that a panic is caught.
        let refused = tokio::spawn(async move {
            let r = next_report(&mut jobs).await;
            (jobs, r)
        })
        .await;
        set_limit(nproc, soft);
        let (mut jobs, r) = refused.expect("the job set panicked");
        assert_eq!(r.outcome, Outcome::SpawnFailed, "{r:?}");
        let e = format!("{:?}", r.error.expect("why"));
        assert!(e.contains("WouldBlock"), "{e}");
        jobs.push(job(), Options::new());
        let r = next_report(&mut jobs).await;
        assert_eq!(
            (r.outcome, r.stdout.text()),
            (Outcome::Exited, "ran\n".to_string()),
            "{r:?}"
        );
    });
}

/// The next job's report.
async fn next_report(jobs: &mut JobSet) -> Report {
    loop {
        match tokio::time::timeout(SLACK, jobs.next())
            .await
            .expect("hung")
        {
            Some(Event::Started { .. }) => {}
            Some(Event::Exited(r) | Event::SpawnFailed(r) | Event::Failed(r)) => return r,
            other => panic!("unexpected {other:?}"),
        }
    }
}
