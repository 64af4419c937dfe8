//! Running one test body on both runtimes, each time checking that it
//! left nothing behind.
#![allow(dead_code)]

pub mod confinement;
pub mod gate;
pub mod rerun;

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use childfd_testbin::Hygiene;

/// `sh -c SCRIPT` with `tag` in its environment (found by
/// [`childfd_testbin::tagged`], escapees included), not started.
pub fn sh(script: &str, tag: &str) -> childfd::Command {
    let mut c = childfd::Command::new("sh");
    c.args(["-c", script]).env("CHILDFD_TEST_TAG", tag);
    c
}

/// [`childfd_testbin::wait_tagged`] off the runtime's threads (it polls
/// with sleeps, bounded).
pub async fn wait_tagged(tag: &str, n: usize) -> Vec<childfd_testbin::Proc> {
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || childfd_testbin::wait_tagged(&tag, n))
        .await
        .unwrap()
}

/// The library's own threads a test may find afterwards: the core
/// crate's background reaper and childfd-tokio's two spawner threads
/// (fixed, however many children).
pub const LIBRARY_THREADS: usize = 3;

/// Generous: only a hang exceeds it.
pub const SLACK: Duration = Duration::from_secs(10);
/// Bound of a whole test body on one runtime.
const BODY_LIMIT: Duration = Duration::from_secs(90);

/// The runtimes every behaviour is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

/// Worker threads of the multi-thread runtime.
pub const WORKERS: usize = 2;

pub fn runtime(flavor: Flavor) -> tokio::runtime::Runtime {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(WORKERS);
            b
        }
    }
    .enable_all()
    .build()
    .expect("runtime")
}

/// Process-wide state that tokio and childfd create once and keep (the
/// signal driver's pipe of tokio::process, the background reaper's epoll,
/// childfd-tokio's spawner threads),
/// created before any test measures fds.
pub fn warm_up() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let rt = runtime(Flavor::CurrentThread);
        rt.block_on(async {
            let st = tokio::process::Command::new("true").status().await;
            assert!(st.expect("tokio::process works").success());
            // Starts childfd-tokio's spawner threads (two per process).
            use childfd_tokio::CommandExt;
            let child = childfd::Command::new("true").spawn_async().await;
            let st = child.expect("spawn_async works").wait().await;
            assert!(st.expect("status").success());
        });
        drop(childfd::Command::new("true").spawn().expect("spawn"));
        assert!(childfd_testbin::eventually(
            SLACK,
            || childfd::pending_reaps() == 0
        ));
    });
}

/// Runs `body` on a current-thread and then on a multi-thread runtime (as
/// a spawned task, so it moves between workers), each time with a fresh
/// runtime, bounded in time, and checks afterwards: no child (zombie or
/// running) left, no fd leaked, at most the library's fixed threads.
#[track_caller]
pub fn on_both<F, Fut>(body: F)
where
    F: Fn(Flavor) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    warm_up();
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let h = Hygiene::start();
        let rt = runtime(flavor);
        let fut = body(flavor);
        // A body that blocks a runtime thread escapes the timeout below:
        // a watchdog ends the process instead of letting it hang.
        let (finished, watch) = std::sync::mpsc::channel::<()>();
        let dog = std::thread::spawn(move || {
            // Disconnected (the body panicked) is not a hang.
            let timeout = std::sync::mpsc::RecvTimeoutError::Timeout;
            if watch.recv_timeout(BODY_LIMIT + SLACK) == Err(timeout) {
                eprintln!("{flavor:?}: the test body blocked its runtime; aborting");
                std::process::abort();
            }
        });
        let done = rt.block_on(async move {
            let task = tokio::spawn(fut);
            tokio::time::timeout(BODY_LIMIT, task).await
        });
        match done {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
            Err(_) => panic!("{flavor:?}: the test body hung"),
        }
        rt.shutdown_timeout(SLACK);
        let _ = finished.send(());
        dog.join().expect("watchdog");
        h.finish(LIBRARY_THREADS);
    }
}

/// A file a child waits for before it goes on.
pub struct Gate(std::path::PathBuf);

impl Gate {
    pub fn new(tag: &str) -> Gate {
        Gate(std::env::temp_dir().join(format!("childfd-tokio-gate-{tag}")))
    }

    /// `rest`, run once the gate is open.
    pub fn then(&self, rest: &str) -> String {
        let p = self.0.display();
        format!("while [ ! -e '{p}' ]; do sleep 0.01; done; {rest}")
    }

    pub fn open(&self) {
        std::fs::write(&self.0, b"").unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
