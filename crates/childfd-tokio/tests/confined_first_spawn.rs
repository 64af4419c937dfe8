//! The spawner threads inherit the state of the thread that starts them,
//! for the life of the process. If the first thread to spawn has a
//! seccomp filter and `no_new_privs`, the threads must not be started
//! from it: every later child of every thread would carry its filter.
//!
//! One test in its own binary: it needs a process in which nothing has
//! spawned yet.

mod common;

use childfd_testbin::{Hygiene, seccomp_deny};
use common::confinement::{WAYS, child_confinement, this_thread};
use common::{Flavor, LIBRARY_THREADS, runtime};

#[test]
fn a_confined_thread_that_spawns_first_does_not_confine_later_children() {
    // What tokio and the core crate create once per process (not the
    // spawner threads: `common::warm_up` would start them from here).
    runtime(Flavor::CurrentThread).block_on(async {});
    drop(childfd::Command::new("true").spawn().expect("spawn"));
    assert!(childfd_testbin::eventually(common::SLACK, || {
        childfd::pending_reaps() == 0
    }));
    let h = Hygiene::start();
    let unconfined = this_thread();
    // The first spawns of the process, from a confined thread.
    std::thread::spawn(|| {
        seccomp_deny(libc::SYS_acct, libc::EPERM);
        let confined = this_thread();
        runtime(Flavor::CurrentThread).block_on(async {
            for way in WAYS {
                assert_eq!(child_confinement(way).await, confined, "{way:?}");
            }
        });
    })
    .join()
    .expect("confined thread");
    // Then unconfined threads: their children must be unconfined.
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let rt = runtime(flavor);
        rt.block_on(async {
            tokio::spawn(async move {
                assert_eq!(this_thread(), unconfined, "premise: an unconfined thread");
                for way in WAYS {
                    assert_eq!(
                        child_confinement(way).await,
                        unconfined,
                        "{way:?} on a {flavor:?} runtime: a child of an unconfined thread \
                         carries the filter of the thread that spawned first"
                    );
                }
            })
            .await
        })
        .expect("check");
        rt.shutdown_timeout(common::SLACK);
    }
    h.finish(LIBRARY_THREADS);
}
