//! Driving a supervisor from outside its loop: a [`Handle`] that other
//! threads (a test runner's Ctrl-C thread, a CI agent's cancel task) use
//! to push, cancel and shut down. Every call wakes the loop at once
//! through a `mio::Waker` (an `eventfd` registered in the loop's epoll).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use childfd::Command;

use super::queue::Job;
use super::{JobId, JobOptions, Supervisor};

/// What the loop and its handles share.
pub(super) struct Shared {
    pub(super) waker: Arc<mio::Waker>,
    /// Job ids, for the supervisor and every handle alike.
    pub(super) next_id: AtomicU64,
    mail: Mutex<Vec<Mail>>,
    /// Set by [`Handle::cancel_all`] (atomics only: signal-safe).
    cancel_all: AtomicBool,
    /// Set by [`Handle::shutdown`].
    shutdown: AtomicBool,
    /// Live [`Handle`]s: while there are some, the loop waits for more
    /// jobs instead of ending.
    handles: AtomicUsize,
}

pub(super) enum Mail {
    Push(Box<Job>),
    Cancel(JobId),
}

impl Shared {
    pub(super) fn new(waker: Arc<mio::Waker>) -> Shared {
        Shared {
            waker,
            next_id: AtomicU64::new(0),
            mail: Mutex::new(Vec::new()),
            cancel_all: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        }
    }

    fn mail(&self) -> MutexGuard<'_, Vec<Mail>> {
        // A panic while holding the lock cannot leave the Vec invalid.
        self.mail.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn handles(&self) -> usize {
        self.handles.load(Ordering::Acquire)
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    fn wake(&self) {
        // An eventfd write; it fails only if the loop is gone.
        let _ = self.waker.wake();
    }
}

/// A `Send + Sync + Clone` remote control for a [`Supervisor`], from
/// [`Supervisor::handle`]. Each call wakes the supervisor's loop at once
/// (an `eventfd` write through `mio::Waker`), even while it sleeps in
/// `epoll_wait` until a far deadline.
///
/// While a handle is alive, the supervisor's iterator does not end when
/// it runs out of jobs: it waits for more, until [`shutdown`](Self::shutdown)
/// or until every handle is dropped.
///
/// [`cancel_all`](Self::cancel_all) and [`shutdown`](Self::shutdown) only
/// store to atomics and write to an `eventfd`, so they may be called from
/// a signal handler; [`push`](Self::push) and [`cancel`](Self::cancel) take
/// a lock and may not.
///
/// ```
/// use childfd_io::{Event, JobOptions, Supervisor};
///
/// let mut sup = Supervisor::new(4)?;
/// let handle = sup.handle();
/// let remote = std::thread::spawn(move || {
///     for _ in 0..3 {
///         let mut cmd = childfd::Command::new("sleep");
///         cmd.arg("30");
///         handle.push(cmd, JobOptions::new());
///     }
///     handle.shutdown(); // cancels the sleeps and ends the loop
/// });
/// let cancelled = sup.filter(|ev| matches!(ev, Event::Cancelled(_))).count();
/// assert_eq!(cancelled, 3);
/// remote.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(super) fn new(shared: Arc<Shared>) -> Handle {
        shared.handles.fetch_add(1, Ordering::AcqRel);
        Handle { shared }
    }

    /// Queues `cmd` as [`Supervisor::push`] does and wakes the loop. After
    /// [`shutdown`](Self::shutdown) the job is reported cancelled without
    /// starting.
    pub fn push(&self, cmd: Command, opts: JobOptions) -> JobId {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .mail()
            .push(Mail::Push(Box::new((id, cmd, opts))));
        self.shared.wake();
        id
    }

    /// [`Supervisor::cancel`] from another thread.
    pub fn cancel(&self, id: JobId) {
        self.shared.mail().push(Mail::Cancel(id));
        self.shared.wake();
    }

    /// [`Supervisor::cancel_all`] from another thread: every job queued or
    /// running when the loop wakes is cancelled; later pushes run.
    /// Signal-safe.
    pub fn cancel_all(&self) {
        self.shared.cancel_all.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// Cancels every job and ends the supervisor: jobs pushed afterwards
    /// are reported cancelled without starting, and the iterator ends once
    /// every job's report was returned. Signal-safe.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake();
    }
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The loop may be waiting for this handle's pushes.
            self.shared.wake();
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("shutdown", &self.shared.shutting_down())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A [`Handle`] to push, cancel and shut down from other threads.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// Takes what handles sent: pushes, cancels, cancel-all, shutdown.
    pub(super) fn take_mail(&mut self) {
        let mail = std::mem::take(&mut *self.shared.mail());
        for m in mail {
            match m {
                Mail::Push(job) => {
                    let (id, cmd, opts) = *job;
                    self.enqueue(id, cmd, opts);
                }
                Mail::Cancel(id) => self.cancel(id),
            }
        }
        if self.shared.shutdown.load(Ordering::Acquire) && !self.shut {
            self.shut = true;
            self.cancel_all();
        }
        if self.shared.cancel_all.swap(false, Ordering::AcqRel) {
            self.cancel_all();
        }
    }
}
