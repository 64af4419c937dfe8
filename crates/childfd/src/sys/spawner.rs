//! A long-lived thread that creates children whose parent-death signal
//! must not fire early.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits,
//! not when the process does (see
//! [PR_SET_PDEATHSIG(2const)](https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html)).
//! A child spawned with a parent-death signal from a short-lived thread
//! would be killed as soon as that thread ends. Such spawns are therefore
//! run on this thread, which lives as long as the process (and a
//! `fork()`ed copy of the process starts its own).

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::fork::PerProcess;

/// A job: a type-erased pointer to the caller's closure. Valid only while
/// the caller waits in [`run_on_spawner`].
struct Job {
    f: *mut (dyn FnMut() + 'static),
    done: SyncSender<()>,
}

// SAFETY: the closure is only called on the spawner thread while the
// calling thread is blocked waiting for `done`; it is never used after.
unsafe impl Send for Job {}

/// One spawner per process: after a `fork()` the copy has none (only the
/// forking thread survives), so it starts its own. `None` until a spawn
/// needs it (and again after a start that failed: the next one retries).
static SPAWNER: PerProcess<Mutex<Option<SyncSender<Job>>>> = PerProcess::new();

/// Starts the spawner thread; fails if no thread can be started (the
/// user's process limit, memory).
fn start() -> io::Result<SyncSender<Job>> {
    let (tx, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(0);
    std::thread::Builder::new()
        .name("childfd-spawner".into())
        .spawn(move || {
            for job in rx {
                // SAFETY: see `Job`: the pointee lives until `done` is sent.
                let f = unsafe { &mut *job.f };
                // A panic is carried back to the caller by `run_on_spawner`.
                let _ = catch_unwind(AssertUnwindSafe(f));
                let _ = job.done.send(());
            }
        })?;
    Ok(tx)
}

/// Whether the calling thread is the process's main thread (its tid is
/// the pid), which ends only with the process.
pub(crate) fn on_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Runs `f` on the spawner thread and returns its result, blocking until
/// it has run.
///
/// # Errors
///
/// If the spawner thread is not running yet and cannot be started; `f`
/// was not called.
pub(crate) fn run_on_spawner<R>(f: impl FnOnce() -> R) -> io::Result<R> {
    let mut f = Some(f);
    let mut result: Option<std::thread::Result<R>> = None;
    let mut call = || {
        if let Some(f) = f.take() {
            result = Some(catch_unwind(AssertUnwindSafe(f)));
        }
    };
    let dyn_call: &mut dyn FnMut() = &mut call;
    // SAFETY: the erased lifetime is never relied on past this function:
    // we block below until the spawner thread has finished calling it.
    let erased: *mut (dyn FnMut() + 'static) =
        unsafe { core::mem::transmute(dyn_call as *mut dyn FnMut()) };
    let (done_tx, done_rx) = sync_channel(1);
    let mut spawner = SPAWNER
        .get(|| Mutex::new(None), |_| {})
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tx = match &mut *spawner {
        Some(tx) => tx,
        empty => empty.insert(start()?),
    };
    let sent = tx.send(Job {
        f: erased,
        done: done_tx,
    });
    drop(spawner);
    if sent.is_ok() {
        // The spawner always answers (it catches panics), so this returns.
        let _ = done_rx.recv();
    } else {
        // The spawner is gone (it never exits, but be safe): run here.
        call();
    }
    match result.expect("spawner ran the job") {
        Ok(r) => Ok(r),
        Err(p) => resume_unwind(p),
    }
}
