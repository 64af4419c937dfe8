//! Reaping adopted orphans, for programs that are PID 1 (a container's
//! init) or a subreaper (`PR_SET_CHILD_SUBREAPER`).
//!
//! Such a program inherits every orphaned descendant and must reap them,
//! or they stay zombies. The classic loop, `waitpid(-1)`, also takes the
//! statuses of children that a [`Child`](crate::Child) owns. This reaper
//! does not: it lists the process's children (`/proc/self/task/*/children`)
//! and reaps, by pid, only zombies that no live `Child` handle owns. A pid
//! that is an unreaped child of ours cannot be recycled, so reaping it by
//! number is exact.
//!
//! ```no_run
//! // In a container's init:
//! let reaper = childfd::reaper::Reaper::start()?;
//! let status = childfd::Command::new("my-service").spawn()?.wait()?;
//! println!("service: {status}; orphans reaped: {}", reaper.reaped());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Caveats
//!
//! - [`Reaper`] is woken by SIGCHLD through a handler it installs while
//!   SIGCHLD is at its default action (and removes when dropped): a
//!   blocking system call in another thread of the program that is not
//!   restarted after a handler (`poll`, `epoll_wait`, `nanosleep`, see
//!   signal(7)) can then return `EINTR`. With its own SIGCHLD handler
//!   installed first, or with SIGCHLD blocked in every thread, the program
//!   gets the polling reaper instead (an orphan may then stay a zombie for
//!   up to 50 ms), or, in the second case, a scan every 60 s; call
//!   [`reap_orphans`] from its own handler loop to do better.
//! - A pid still registered to a `Child` handle that was leaked
//!   (`mem::forget`) is never reaped by the orphan pass.
//! - Children started by other means (`std::process`, `tokio::process`,
//!   a C library's `fork`) are not registered: once one has exited, the
//!   orphan pass may reap it before its owner waits, whose wait then
//!   fails (`ECHILD`, "no child processes"). Where this reaper runs,
//!   start children with childfd, or have their owners expect that.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ExitStatus;
use crate::sys::checked_pipe::CheckedPipe;
use crate::sys::fork::PerProcess;
use crate::sys::{pidfd, sigchld};

/// Pids of children owned by live `Child` handles (or by the background
/// drop reaper) that have not been reaped by us yet, with how many
/// registrations each has.
///
/// A count, not a set: a child's registration is released only after it
/// was reaped (or taken by another reaper), when its pid may already belong
/// to a new child that registered the same number. Releasing one
/// registration then leaves the new child's in place, so the orphan pass
/// never mistakes it for an orphan. Each `Child` releases its own exactly
/// once.
///
/// One per process ([`PerProcess`]): a `fork()`ed copy starts with an
/// empty registry (its parent's children are not its own), and never
/// waits on a lock that a thread of the parent held when it forked.
static OWNED: PerProcess<Mutex<HashMap<u32, u32>>> = PerProcess::new();
/// Held (shared) by spawns from the clone until the pid is registered, and
/// (exclusive) by an orphan pass, so a new child is never mistaken for an
/// orphan. One per process, like [`OWNED`]: a `fork()` made while another
/// thread ran an orphan pass copies the lock held by a thread that does not
/// exist in the copy, and every spawn there would wait on it for ever.
static GATE: PerProcess<RwLock<()>> = PerProcess::new();

fn owned() -> &'static Mutex<HashMap<u32, u32>> {
    OWNED.get(|| Mutex::new(HashMap::new()), |_| {})
}

fn gate() -> &'static RwLock<()> {
    GATE.get(|| RwLock::new(()), |_| {})
}

pub(crate) fn spawn_gate() -> RwLockReadGuard<'static, ()> {
    gate().read().unwrap_or_else(|e| e.into_inner())
}

/// Holds the gate as an orphan pass does, for tests that fork in the
/// middle of one.
pub(crate) fn orphan_pass_gate() -> RwLockWriteGuard<'static, ()> {
    gate().write().unwrap_or_else(|e| e.into_inner())
}

/// Registers one owner of `pid` (a child just spawned).
pub(crate) fn register(pid: u32) {
    *owned()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(pid)
        .or_insert(0) += 1;
}

/// Releases one registration of `pid` (its child was reaped).
pub(crate) fn unregister(pid: u32) {
    let mut map = owned().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = map.get_mut(&pid) {
        *n -= 1;
        if *n == 0 {
            map.remove(&pid);
        }
    }
}

/// Whether `pid` has a registered owner.
fn is_owned(pid: u32) -> bool {
    owned()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&pid)
}

/// Makes this process the reaper of its orphaned descendants
/// (`prctl(PR_SET_CHILD_SUBREAPER, 1)`); PID 1 is one already.
///
/// # Errors
///
/// From prctl(2).
pub fn become_subreaper() -> io::Result<()> {
    pidfd::set_child_subreaper()
}

/// The process's direct children, by pid.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let mut any = false;
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                any = true;
                out.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        if any {
            return out;
        }
    }
    // Kernels without CONFIG_PROC_CHILDREN: scan every process's parent.
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// Reaps every exited child that no `Child` handle owns; returns their
/// pids and statuses. Never blocks on a running child.
///
/// # Errors
///
/// From waitid(2) (other than "not a zombie yet").
pub fn reap_orphans() -> io::Result<Vec<(u32, ExitStatus)>> {
    let _gate = orphan_pass_gate();
    let mut reaped = Vec::new();
    for pid in children() {
        if is_owned(pid) {
            continue;
        }
        match pidfd::reap_pid_nohang(pid as i32) {
            Ok(Some(raw)) => reaped.push((pid, ExitStatus::from_raw(raw))),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reaped)
}

/// A background thread running [`reap_orphans`] until dropped.
///
/// It sleeps in `poll(2)` until a child of the process exits: while SIGCHLD
/// is at its default action, [`Reaper::start`] installs a handler that
/// only writes to a pipe (see the [module docs](self)), so an idle
/// process costs no wake-up at all. If the program has its own SIGCHLD
/// handler (or a second `Reaper` runs), the thread instead looks for
/// orphans with a growing interval (1 to 50 ms).
///
/// # A host that closes fds it did not open
///
/// The thread's two pipes (the handler's wake-up and its own stop signal)
/// are used only after checking that their numbers still name them
/// (device and inode from fstat(2), and the end's access mode): before
/// each sleep, and by the handler before each write. A program that closes
/// every fd it did not open (`close_range(3, ~0)`) and opens its own files
/// at those numbers never has them written to, read, polled or closed by
/// the reaper. The thread makes new pipes at its next wake-up: the handler,
/// finding its number taken, sends SIGCHLD to the thread instead of
/// writing, so the first child to exit afterwards still wakes it at once.
/// Without our handler (the program's own, or SIGCHLD blocked in the
/// reaper thread), an orphan exiting after the close waits for the next
/// check: at most 50 ms in polling mode, at most 60 s (the safety scan) in
/// handler mode.
///
/// # A program that installs its own SIGCHLD handler later
///
/// Our handler is then gone, and nothing tells the thread. It checks the
/// SIGCHLD action at every wake-up and on a schedule kept by the monotonic
/// clock, however often children wake it meanwhile: 1 s after start,
/// then 2 s, 4 s, … later, at most every 60 s. Once it finds the
/// program's handler, it polls (1 to 50 ms) as if that handler had been
/// there first. So an orphan exiting after the switch waits about as long
/// as the reaper had run before it (1 s for a handler installed at
/// start-up), at most 60 s. A shorter fixed check would cost an idle init
/// wake-ups for ever; the kernel gives no notice of a `sigaction(2)`. While it cannot make a pipe (`EMFILE`), the thread polls
/// with the 1 to 50 ms interval. Dropping the `Reaper` then likewise waits
/// for the thread's next wake-up.
///
/// ```
/// use childfd::Command;
/// use childfd::reaper::Reaper;
///
/// let reaper = Reaper::start()?;
/// // The reaper never takes the status of a child that a `Child` owns.
/// for code in 0..20 {
///     let child = Command::new("sh").args(["-c", &format!("exit {code}")]).spawn()?;
///     assert_eq!(child.wait()?.code(), Some(code));
/// }
/// println!("orphans reaped: {}", reaper.reaped()); // 0 unless this is PID 1 or a subreaper
/// drop(reaper); // stops and joins the thread
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Reaper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the handle and its thread share.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// A pipe that wakes the thread to stop; remade by the thread when its
    /// numbers are not ours any more.
    stop_pipe: Mutex<CheckedPipe>,
    /// The thread's id (0 until it runs), for waking it with a signal.
    tid: AtomicI32,
    reaped: AtomicU64,
}

/// In handler mode, how often (at most) the thread checks that its handler
/// is still installed (the program may have replaced it) and looks for
/// orphans anyway.
const SAFETY_SCAN: Duration = Duration::from_secs(60);
/// The first such check after [`Reaper::start`]; each later one comes
/// twice as long after the one before, up to [`SAFETY_SCAN`], on the
/// monotonic clock: wake-ups in between (children exiting) neither
/// postpone nor stretch the schedule. A program that installs its own
/// SIGCHLD handler right after starting the reaper (the usual order:
/// libraries first) is noticed within about a second, one that does so
/// at time `t` within about `t` (at most 60 s), and an idle process still
/// wakes only about once a minute after the first minute.
const FIRST_CHECK: Duration = Duration::from_secs(1);

impl Reaper {
    /// Starts the thread (named `childfd-orphans`).
    ///
    /// # Errors
    ///
    /// If the thread, its pipes or the SIGCHLD handler cannot be made.
    pub fn start() -> io::Result<Reaper> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_pipe: Mutex::new(CheckedPipe::new()?),
            tid: AtomicI32::new(0),
            reaped: AtomicU64::new(0),
        });
        let handler = match sigchld::install() {
            Ok(h) => h,
            Err(e) => {
                shared.stop_pipe().close(false);
                return Err(e);
            }
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("childfd-orphans".into())
            .spawn(move || run(&s, handler));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                if handler {
                    sigchld::uninstall();
                }
                shared.stop_pipe().close(false);
                return Err(e);
            }
        };
        Ok(Reaper {
            shared,
            thread: Some(thread),
        })
    }

    /// How many orphans this reaper has reaped.
    pub fn reaped(&self) -> u64 {
        self.shared.reaped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn stop_pipe(&self) -> std::sync::MutexGuard<'_, CheckedPipe> {
        self.stop_pipe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stop pipe, made anew if either of its numbers is not ours any
    /// more (the old ends that still check out are closed, the others
    /// forgotten); `None` if a new one cannot be made.
    fn checked_stop(&self) -> Option<CheckedPipe> {
        let mut p = self.stop_pipe();
        if !p.intact() {
            let new = CheckedPipe::new().ok()?;
            core::mem::replace(&mut *p, new).close(false);
        }
        Some(*p)
    }
}

/// The thread: check its pipes, scan, then sleep until SIGCHLD (handler
/// mode) or the next poll interval, until stopped.
fn run(shared: &Shared, mut handler: bool) {
    shared.tid.store(sigchld::thread_id(), Ordering::Release);
    if handler {
        sigchld::set_thread();
    }
    let mut pause = Duration::from_millis(1);
    let mut gap = FIRST_CHECK;
    let mut next_check = Instant::now() + gap;
    while !shared.stop.load(Ordering::Relaxed) {
        let wake = if handler {
            sigchld::checked_wake().ok()
        } else {
            None
        };
        let stop = shared.checked_stop();
        // Drain before scanning: a child exiting after the scan wakes us.
        if let Some(w) = &wake {
            w.drain();
        }
        let n = reap_orphans().map(|v| v.len()).unwrap_or(0);
        shared.reaped.fetch_add(n as u64, Ordering::Relaxed);
        pause = if n > 0 {
            Duration::from_millis(1)
        } else {
            (pause * 2).min(Duration::from_millis(50))
        };
        if shared.stop.load(Ordering::Acquire) {
            // A stop byte may have gone to a stop pipe replaced just now.
            break;
        }
        let trusted = wake.is_some() && stop.is_some();
        let timeout = if trusted {
            next_check.saturating_duration_since(Instant::now())
        } else {
            pause
        };
        // Each end is checked again right before the sleep.
        let fds: Vec<_> = [wake.as_ref(), stop.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| p.reader())
            .collect();
        sleep_on(&fds, timeout);
        let now = Instant::now();
        if now >= next_check {
            gap = (gap * 2).min(SAFETY_SCAN);
            next_check = now + gap;
        }
        // Checked at every wake-up, and so at least at each check above.
        if handler && !sigchld::still_installed() {
            handler = false;
            sigchld::clear_thread();
        }
    }
    if handler {
        sigchld::clear_thread();
        sigchld::uninstall();
    }
}

/// Sleeps in poll(2) until one of `fds` is readable, a signal arrives or
/// `timeout` passes.
fn sleep_on(fds: &[BorrowedFd<'_>], timeout: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    let _ = rustix::event::poll(&mut polled, Some(&ts));
}

impl Drop for Reaper {
    /// Wakes the thread through its stop pipe if that still is ours, else
    /// by SIGCHLD if our handler is installed, else lets it see the stop
    /// flag at its next wake-up (see [`Reaper`]); joins it; closes the
    /// stop pipe's ends that still check out.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if !self.shared.stop_pipe().notify() {
            sigchld::kick(self.shared.tid.load(Ordering::Acquire));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.stop_pipe().close(false);
    }
}
