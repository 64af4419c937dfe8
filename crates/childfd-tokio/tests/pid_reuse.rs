//! A job's pid taken by an unrelated process (forced with
//! `/proc/sys/kernel/ns_last_pid` as PID 1 of a PID namespace of our
//! own): after the job was reaped by us, and after a foreign reaper took
//! its status (`waitpid(pid)`), nothing we do with the job (kill, signal,
//! tree signals, terminate, wait_tree, drop with `kill_on_drop`, a
//! `JobSet` cancel) may reach the process that now has its number, nor
//! the process group it leads with that number.

mod common;

use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use childfd::{Command, Signal};
use childfd_testbin::{eventually, read_stat};
use childfd_tokio::{Child, CommandExt, Event, JobSet, Options};
use common::SLACK;
use common::rerun::{is_copy_for, rerun};

const TEST: &str = "nothing_done_with_a_gone_job_reaches_the_process_that_took_its_pid";
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

#[test]
fn nothing_done_with_a_gone_job_reaches_the_process_that_took_its_pid() {
    if is_copy_for(TEST) {
        return in_the_namespace();
    }
    if !childfd_testbin::is_root() {
        eprintln!("NOT ROOT: no PID namespace of our own, pid reuse not tested");
        return;
    }
    rerun(
        TEST,
        &["unshare", "-p", "-f", "--mount-proc"],
        Duration::from_secs(120),
        |_| {},
    );
}

/// `sleep 1000` leading its own process group, given pid `pid` (the
/// namespace is ours: nothing else takes pids in it meanwhile).
fn take_pid(pid: i32) -> std::process::Child {
    std::fs::write(NS_LAST_PID, (pid - 1).to_string()).expect("write ns_last_pid");
    let b = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .expect("spawn the pid's new owner");
    assert_eq!(
        b.id() as i32,
        pid,
        "premise: ns_last_pid handed the job's pid on"
    );
    b
}

/// Everything that signals, on a job whose number is someone else's now.
async fn poke(a: &Child) {
    let _ = a.kill();
    let _ = a.signal(Signal::TERM);
    let _ = a.signal_tree(Signal::KILL);
    let _ = a.kill_tree();
    let _ = tokio::time::timeout(SLACK, a.terminate(Duration::from_millis(50))).await;
    let _ = tokio::time::timeout(SLACK, a.wait_tree()).await;
}

/// Asserts that `b` lives, then ends it.
fn still_alive_then_end(mut b: std::process::Child, what: &str) {
    // A signal in flight lands before the next scheduling of `b`.
    std::thread::sleep(Duration::from_millis(50));
    let st = b.try_wait().expect("try_wait");
    let _ = b.kill();
    let _ = b.wait();
    assert_eq!(
        st, None,
        "{what}: the process that took the job's pid was signalled"
    );
}

fn in_the_namespace() {
    assert_eq!(std::process::id(), 1, "not PID 1 of a new namespace");
    let rt = common::runtime(common::Flavor::CurrentThread);
    rt.block_on(async {
        // Reaped by us, then the number goes to `b`.
        let a = spawn_exiting(3).await;
        let p = a.id() as i32;
        assert_eq!(a.wait().await.expect("status").code(), Some(3));
        let b = take_pid(p);
        poke(&a).await;
        drop(a);
        still_alive_then_end(b, "reaped by us");

        // Reaped by a foreign reaper before we looked.
        let a = spawn_exiting(4).await;
        let p = a.id() as i32;
        assert!(eventually(SLACK, || read_stat(p).is_some_and(|s| s.state == 'Z')));
        let raw = childfd_testbin::waitpid(p);
        assert_eq!(
            libc::WEXITSTATUS(raw),
            4,
            "premise: the foreign reaper took it"
        );
        let b = take_pid(p);
        poke(&a).await;
        if let Ok(Ok(st)) = tokio::time::timeout(SLACK, a.wait()).await {
            assert_eq!(st.code(), Some(4), "a stolen status recovered wrong");
        }
        drop(a);
        still_alive_then_end(b, "reaped by a foreign reaper");

        // A JobSet job, reported, then its number reused; cancelling it
        // is a no-op.
        let mut jobs = JobSet::new(1);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 5"]);
        let id = jobs.push(cmd, Options::new());
        let mut pid = None;
        while let Some(ev) = jobs.next().await {
            if let Event::Exited(r) = ev {
                pid = r.pid;
            }
        }
        let b = take_pid(pid.expect("the job's pid") as i32);
        jobs.cancel(id);
        jobs.cancel_all();
        assert!(jobs.next().await.is_none());
        still_alive_then_end(b, "a JobSet job");
    });
    let none_left = eventually(SLACK, || childfd_testbin::children().is_empty());
    assert!(
        none_left,
        "children left: {:?}",
        childfd_testbin::children()
    );
}

async fn spawn_exiting(code: i32) -> Child {
    Command::new("sh")
        .args(["-c", &format!("exit {code}")])
        .kill_on_drop(true)
        .spawn_async()
        .await
        .expect("spawn")
}
