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
//! The thread looks for orphans with a growing interval (1 to 50 ms) rather
//! than on SIGCHLD, which would need the signal blocked in every thread of
//! the process; an orphan may stay a zombie for up to 50 ms.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ExitStatus;
use crate::sys::pidfd;

/// Pids of children owned by live `Child` handles (or by the background
/// drop reaper) that have not been reaped by us yet.
static OWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
/// Held (shared) by spawns from the clone until the pid is registered, and
/// (exclusive) by an orphan pass, so a new child is never mistaken for an
/// orphan.
static GATE: RwLock<()> = RwLock::new(());

pub(crate) fn spawn_gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn register(pid: u32) {
    OWNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(pid);
}

pub(crate) fn unregister(pid: u32) {
    if let Some(set) = OWNED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        set.remove(&pid);
    }
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
    let _gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    let owned: HashSet<u32> = OWNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    let mut reaped = Vec::new();
    for pid in children() {
        if owned.contains(&pid) {
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
#[derive(Debug)]
pub struct Reaper {
    stop: Arc<AtomicBool>,
    reaped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the thread (named `childfd-orphans`).
    ///
    /// # Errors
    ///
    /// If the thread cannot be created.
    pub fn start() -> io::Result<Reaper> {
        let stop = Arc::new(AtomicBool::new(false));
        let reaped = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), reaped.clone());
        let thread = std::thread::Builder::new()
            .name("childfd-orphans".into())
            .spawn(move || {
                let mut pause = Duration::from_millis(1);
                while !s.load(Ordering::Relaxed) {
                    let n = reap_orphans().map(|v| v.len()).unwrap_or(0);
                    r.fetch_add(n as u64, Ordering::Relaxed);
                    pause = if n > 0 {
                        Duration::from_millis(1)
                    } else {
                        (pause * 2).min(Duration::from_millis(50))
                    };
                    std::thread::park_timeout(pause);
                }
            })?;
        Ok(Reaper {
            stop,
            reaped,
            thread: Some(thread),
        })
    }

    /// How many orphans this reaper has reaped.
    pub fn reaped(&self) -> u64 {
        self.reaped.load(Ordering::Relaxed)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
