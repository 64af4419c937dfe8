//! A child inherits the seccomp filters and `no_new_privs` flag of the
//! thread that clones it. `spawn_async`, `output_async` and `JobSet`
//! clone on the library's spawner threads: a thread that confined itself
//! (a filter, `no_new_privs`) must still get children confined as it is,
//! not the spawner threads' unconfined ones.

mod common;

use childfd_testbin::{Hygiene, seccomp_deny};
use common::confinement::{Confined, child_confinement, this_thread};
use common::{Flavor, LIBRARY_THREADS, runtime};

/// Runs `check` on a runtime of `flavor` whose threads all did
/// `confine` first: the current-thread runtime on a thread of its own,
/// the multi-thread one with `confine` at each worker's start (and the
/// check as a task, on a worker).
fn on_confined_runtime(flavor: Flavor, confine: fn()) {
    common::warm_up(); // the spawner threads, started unconfined
    let h = Hygiene::start();
    match flavor {
        Flavor::CurrentThread => std::thread::spawn(move || {
            confine();
            runtime(Flavor::CurrentThread).block_on(check(flavor));
        })
        .join()
        .expect("confined thread"),
        Flavor::MultiThread => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(common::WORKERS)
                .on_thread_start(confine)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async { tokio::spawn(check(flavor)).await })
                .expect("check");
            rt.shutdown_timeout(common::SLACK);
        }
    }
    h.finish(LIBRARY_THREADS);
}

/// Every async way to spawn gives a child confined as the calling thread.
async fn check(flavor: Flavor) {
    let caller = this_thread();
    for way in common::confinement::WAYS {
        let child: Confined = child_confinement(way).await;
        assert_eq!(
            child, caller,
            "{way:?} on a {flavor:?} runtime: the child's confinement is not its caller's \
             thread's (it was cloned by a thread confined otherwise)"
        );
    }
}

fn deny_acct() {
    // A harmless filter: `acct` fails with EPERM (nothing here uses it).
    seccomp_deny(libc::SYS_acct, libc::EPERM);
}

fn set_no_new_privs() {
    rustix::thread::set_no_new_privs(true).expect("PR_SET_NO_NEW_PRIVS");
}

#[test]
fn a_child_of_a_seccomp_confined_thread_is_confined_as_its_thread() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        on_confined_runtime(flavor, deny_acct);
    }
}

#[test]
fn a_child_of_a_no_new_privs_thread_has_no_new_privs() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        on_confined_runtime(flavor, set_no_new_privs);
    }
}
