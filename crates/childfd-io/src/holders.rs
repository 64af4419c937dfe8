//! Finding the processes that hold a pipe open, from `/proc/*/fd`.
//!
//! `/proc/<pid>/fd` is the fd table of the process's main thread. A thread
//! that called `unshare(CLONE_FILES)` (or was made by `clone` without
//! `CLONE_FILES`) has a table of its own, seen only in
//! `/proc/<pid>/task/<tid>/fd`, and can hold a pipe's write end that the
//! main thread closed; so can the threads of a process whose main thread
//! has exited. Those tables are read too, but only for processes with more
//! than one thread (the link count of `/proc/<pid>/task`: one `stat` per
//! process) and only for threads whose table is not the main thread's
//! (`kcmp(KCMP_FILES)`, one call per extra thread; on kernels without
//! kcmp, a table whose fd numbers differ from the main thread's).
//!
//! The calling process is searched the same way, but against the calling
//! thread's table instead of the main thread's: that table is ours (it
//! holds the read ends), while another thread of ours that has a table of
//! its own (made by `clone` without `CLONE_FILES`, or after
//! `unshare(CLONE_FILES)` while a child was being spawned) can hold a
//! private copy of a write end, and is named with our pid.
//!
//! # Caveats
//!
//! - Without kcmp(2) (a kernel built without `CONFIG_KCMP`), a thread's
//!   own table with the same fd numbers as the main thread's is taken to
//!   be the same table.
//! - Where kcmp is refused (`EPERM`: no ptrace access to that process),
//!   only its main thread's table is read.
//!
//! See [proc_pid_fd(5)](https://man7.org/linux/man-pages/man5/proc_pid_fd.5.html),
//! [kcmp(2)](https://man7.org/linux/man-pages/man2/kcmp.2.html).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A process holding one of the child's output pipes open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid (informational: it may exit and be reused at any time).
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub name: String,
}

/// The inode of a pipe, as `/proc/<pid>/fd/<n>` shows it: `pipe:[<ino>]`.
pub fn pipe_inode(fd: impl AsFd) -> Option<u64> {
    rustix::fs::fstat(fd).ok().map(|st| st.st_ino)
}

/// Whether fd `fd` of the task at `proc_dir` is open for writing: the
/// access mode in the octal `flags:` line of `/proc/<pid>/fdinfo/<fd>` is
/// `O_WRONLY` or `O_RDWR`. Only a writer keeps a reader from seeing EOF; a
/// process holding just the read end (a fork of the host, say) does not.
/// Unknown (the fd closed meanwhile) counts as not writing.
fn can_write(proc_dir: &std::path::Path, fd: &std::ffi::OsStr) -> bool {
    let Ok(info) = std::fs::read_to_string(proc_dir.join("fdinfo").join(fd)) else {
        return false;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| matches!(flags & 0o3, 0o1 | 0o2))
}

/// Every process (this one only through its threads with an fd table of
/// their own) with an fd open for writing on one of these pipe
/// inodes: the access mode in `/proc/<pid>/fdinfo/<fd>` is `O_WRONLY` or
/// `O_RDWR`. A process holding only the read end keeps no reader waiting.
pub fn find(inodes: &[u64]) -> Vec<Holder> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = p.path();
        let holds = if pid == me {
            // Our table is the calling thread's; only other tables count.
            let caller = rustix::thread::gettid().as_raw_pid() as u32;
            other_tables(&dir, caller)
                .iter()
                .any(|task| table_writes(task, &wanted))
        } else {
            table_writes(&dir, &wanted)
                || other_tables(&dir, pid)
                    .iter()
                    .any(|task| table_writes(task, &wanted))
        };
        if holds {
            let name = std::fs::read_to_string(dir.join("comm")).map(|s| s.trim_end().to_string());
            out.push(Holder {
                pid,
                name: name.unwrap_or_default(),
            });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// Whether the fd table of the task at `dir` (`/proc/<pid>` or
/// `/proc/<pid>/task/<tid>`) has one of the `wanted` pipes open for
/// writing.
fn table_writes(dir: &Path, wanted: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let on_pipe = std::fs::read_link(fd.path())
            .is_ok_and(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()));
        on_pipe && can_write(dir, &fd.file_name())
    })
}

/// The task directories of the process at `dir` whose fd table is not the
/// one of its thread `known` (its main thread, or the caller's own
/// thread). Empty, after one `stat`, for a single-threaded process:
/// `/proc/<pid>/task` has two links plus one per thread.
fn other_tables(dir: &Path, known: u32) -> Vec<PathBuf> {
    let task = dir.join("task");
    if rustix::fs::stat(&task).map_or(true, |st| st.st_nlink <= 3) {
        return Vec::new();
    }
    let Ok(tasks) = std::fs::read_dir(&task) else {
        return Vec::new();
    };
    let mut main_numbers = None;
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse::<u32>().ok()?;
            let own = tid != known
                && match crate::sys::same_fd_table(known, tid) {
                    Ok(same) => !same,
                    // Not allowed to compare (ptrace access, as for a
                    // process init protects): taken as shared, as is the
                    // rule (one table per process).
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => false,
                    // No kcmp in this kernel, or the thread is gone: a
                    // table with other fd numbers than the main thread's.
                    Err(_) => {
                        let main = main_numbers
                            .get_or_insert_with(|| fd_numbers(&task.join(known.to_string())));
                        main.is_none() || fd_numbers(&t.path()) != *main
                    }
                };
            own.then(|| t.path())
        })
        .collect()
}

/// The fd numbers open in the table of the task at `dir`, sorted.
fn fd_numbers(dir: &Path) -> Option<Vec<u32>> {
    let mut v: Vec<u32> = std::fs::read_dir(dir.join("fd"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Some(v)
}
