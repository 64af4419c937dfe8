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

/// Whether fd `fd` of the process at `proc_dir` is open for writing: the
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

/// Every other process with an fd open for writing on one of these pipe
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
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            let on_pipe = std::fs::read_link(fd.path())
                .is_ok_and(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()));
            on_pipe && can_write(&p.path(), &fd.file_name())
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
