//! Finding the processes that hold a pipe open, from `/proc/*/fd`.

use std::os::fd::AsFd;

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

/// Every other process with an fd on one of these pipe inodes.
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
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()))
        });
        if holds {
            let name =
                std::fs::read_to_string(p.path().join("comm")).map(|s| s.trim_end().to_string());
            out.push(Holder {
                pid,
                name: name.unwrap_or_default(),
            });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}
