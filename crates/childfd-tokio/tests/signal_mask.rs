//! `inherit_signal_mask(true)` hands the *calling* thread's signal mask to
//! the child (as `std::process` and `posix_spawn` do). The async spawns
//! clone on a spawner thread, whose mask is whatever its starter had:
//! the child got that one (here: nothing blocked) instead of its caller's.

mod common;

use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Event, JobSet, Options};
use common::{Flavor, LIBRARY_THREADS, SLACK, WORKERS};

/// SIGUSR1's bit in `/proc/<pid>/status`'s `SigBlk`.
const USR1: u64 = 1 << (libc::SIGUSR1 - 1);

/// Blocks SIGUSR1 in the calling thread.
fn block_usr1() {
    // SAFETY: zeroed is a valid (empty) sigset_t.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: as above; SIGUSR1 is a valid signal.
    unsafe { libc::sigaddset(&mut set, libc::SIGUSR1) };
    // SAFETY: changes only this thread's mask; no old set is asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(r, 0, "pthread_sigmask");
}

/// A runtime whose every thread blocks SIGUSR1 (the current-thread one
/// runs on the calling thread, which blocks it too).
fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    let mut b = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(WORKERS);
            b
        }
    };
    b.on_thread_start(block_usr1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A command printing its `SigBlk` line (not through `sh`, which
/// clears its mask).
fn sigblk(tag: &str, inherit: bool) -> childfd::Command {
    let mut c = childfd::Command::new("grep");
    c.args(["SigBlk", "/proc/self/status"])
        .env("CHILDFD_TEST_TAG", tag)
        .inherit_signal_mask(inherit);
    c
}

fn parse(out: &str) -> u64 {
    let hex = out
        .trim()
        .strip_prefix("SigBlk:")
        .expect("SigBlk line")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex mask")
}

async fn masks(tag: &str, inherit: bool) -> [u64; 3] {
    let out = sigblk(tag, inherit)
        .output_async(Options::new())
        .await
        .expect("output");
    let via_output = parse(&out.stdout.text());
    let mut child = sigblk(tag, inherit);
    child.stdout(childfd::Stdio::piped());
    let mut child = child.spawn_async().await.expect("spawn");
    let mut text = String::new();
    let mut stdout = child.take_stdout().expect("stdout");
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text)
        .await
        .expect("read");
    child.wait().await.expect("wait");
    let via_spawn = parse(&text);
    let mut jobs = JobSet::new(1);
    jobs.push(sigblk(tag, inherit), Options::new());
    let mut via_jobs = None;
    while let Some(ev) = tokio::time::timeout(SLACK, jobs.next())
        .await
        .expect("hung")
    {
        if let Event::Exited(r) = ev {
            via_jobs = Some(parse(&r.stdout.text()));
        }
    }
    [via_output, via_spawn, via_jobs.expect("the job's report")]
}

#[test]
fn a_child_inheriting_the_signal_mask_gets_its_callers_not_the_spawner_threads() {
    common::warm_up();
    // On a thread of its own: the mask of the test's thread stays as it was.
    std::thread::spawn(|| {
        block_usr1();
        for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
            let h = Hygiene::start();
            let tag = new_tag("sigmask");
            let rt = runtime(flavor);
            let (inherited, fresh) =
                rt.block_on(async { (masks(&tag, true).await, masks(&tag, false).await) });
            rt.shutdown_timeout(SLACK);
            for m in inherited {
                assert_eq!(
                    m & USR1,
                    USR1,
                    "{flavor:?}: the caller's mask was not handed on: {inherited:x?}"
                );
            }
            assert_eq!(fresh, [0; 3], "{flavor:?}: without inherit_signal_mask");
            assert_no_survivors(&tag);
            h.finish(LIBRARY_THREADS);
        }
    })
    .join()
    .expect("the test's thread");
}
