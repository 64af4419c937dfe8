//! Where the cgroup v2 hierarchy is mounted, and how directories map to
//! cgroup paths.
//!
//! A cgroup2 mount need not show the whole hierarchy: a container or a
//! bind mount can mount a subtree, which `/proc/self/mountinfo` shows as
//! the mount's root (field 4, say `/user.slice/job`). A cgroup path as
//! `/proc/<pid>/cgroup` prints it (`0::/user.slice/job/x`) is then the
//! directory `<mount point>/x`. Both files print paths relative to the
//! reader's cgroup namespace, so they agree with each other.
//!
//! Only a mount that is visible counts. Mounting over a mount point (a
//! subtree bind-mounted over the cgroup2 mount, a second cgroup2 mount at
//! the same place) hides what was there, but mountinfo still lists it,
//! earlier. A mount is visible if `statx(point, STATX_MNT_ID)` names it;
//! on kernels without `STATX_MNT_ID` (before 5.8), if no mount was made on
//! top of it at the same point (a line whose parent is it). A mount made
//! on a directory *below* a mount point hides that directory only: a
//! cgroup path is mapped only through a mount that still shows it there.
//! Mounts are read at the first use, and read again when what they gave
//! does not hold any more ([`reload`]: the directory they map to is not in
//! a cgroup2 file system, after a cgroup2 mount was unmounted, or mounted
//! again elsewhere).
//!
//! See [proc_pid_mountinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html)
//! and [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::fork::PerProcess;

/// One cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Mount id (mountinfo field 1).
    pub(crate) id: u64,
    /// The mount it was mounted on (field 2).
    pub(crate) parent: u64,
    /// The cgroup path shown at the mount point (mountinfo field 4).
    pub(crate) root: PathBuf,
    /// Where it is mounted (field 5).
    pub(crate) point: PathBuf,
}

/// Every visible cgroup2 mount of this process, from
/// `/proc/self/mountinfo`, as last read.
pub(crate) fn mounts() -> Arc<Vec<Mount>> {
    if let Some(m) = table().as_ref() {
        return m.clone();
    }
    let fresh = Arc::new(read_mounts());
    table().get_or_insert(fresh).clone()
}

/// Reads `/proc/self/mountinfo` again; true if the visible cgroup2 mounts
/// changed since the last read.
pub(crate) fn reload() -> bool {
    let fresh = read_mounts();
    let mut slot = table();
    let changed = slot.as_deref().is_none_or(|old| *old != fresh);
    *slot = Some(Arc::new(fresh));
    changed
}

/// The mounts as last read, one table per process ([`PerProcess`]): a
/// `fork()`ed copy starts with an empty one of its own, so it never waits
/// on a lock that a thread of the parent held when it forked (that thread
/// does not exist in the copy). The lock is held only to copy or replace
/// the `Arc`, never while mountinfo is read.
static MOUNTS: PerProcess<Mutex<Option<Arc<Vec<Mount>>>>> = PerProcess::new();

fn table() -> MutexGuard<'static, Option<Arc<Vec<Mount>>>> {
    MOUNTS
        .get(|| Mutex::new(None), |_| {})
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Holds this process's mounts table as an update does, until the guard
/// is dropped (see [`crate::test_hooks::hold_cgroup_mounts`]).
pub(crate) fn hold_table() -> impl Drop {
    table()
}

fn read_mounts() -> Vec<Mount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let all = parse_mountinfo(&info);
    let covered = covered_ids(&info);
    all.into_iter()
        .filter(|m| match mount_id_at(&m.point) {
            Some(id) => id == m.id,
            None => !covered.contains(&m.id),
        })
        .collect()
}

/// `statx(path, STATX_MNT_ID)`: the id of the mount that `path` shows, if
/// the kernel reports it (5.8+).
fn mount_id_at(path: &Path) -> Option<u64> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID).ok()?;
    (StatxFlags::from_bits_retain(st.stx_mask) & StatxFlags::MNT_ID == StatxFlags::MNT_ID)
        .then_some(st.stx_mnt_id)
}

/// Ids of the mounts (of any type) that another mount covers: it was made
/// at the same mount point with them as its parent.
pub(crate) fn covered_ids(info: &str) -> Vec<u64> {
    let lines: Vec<(u64, u64, &str)> = info
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            Some((id, parent, f.nth(2)?))
        })
        .collect();
    lines
        .iter()
        .filter(|(id, _, point)| {
            lines
                .iter()
                .any(|(_, parent, p)| parent == id && p == point)
        })
        .map(|(id, _, _)| *id)
        .collect()
}

/// The cgroup2 mounts listed in a mountinfo text, in order (hidden ones
/// too).
pub(crate) fn parse_mountinfo(info: &str) -> Vec<Mount> {
    info.lines()
        .filter_map(|line| {
            // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let mut f = left.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            let root = f.nth(1)?;
            let point = f.next()?;
            Some(Mount {
                id,
                parent,
                root: PathBuf::from(unescape_mountinfo(root)),
                point: PathBuf::from(unescape_mountinfo(point)),
            })
        })
        .collect()
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup path `cg` (absolute, as in `/proc/<pid>/cgroup`)
/// through the first mount whose root contains it and that still shows it
/// there (see [`shows`]); `None` if no visible directory is that cgroup.
pub(crate) fn dir_of(mounts: &[Mount], cg: &Path) -> Option<PathBuf> {
    mounts.iter().find_map(|m| {
        let rel = cg.strip_prefix(&m.root).ok()?;
        let dir = m.point.join(rel);
        shows(mounts, m, &dir, cg).then_some(dir)
    })
}

/// Whether `dir` (`cg` mapped through mount `m`) is that cgroup: no other
/// mount covers it. Something mounted on a directory *below* `m`'s mount
/// point (a bind mount of another subtree, a tmpfs) hides what `m` has
/// there; mountinfo lists that mount, but `dir` then shows its contents.
/// Checked by `statx(STATX_MNT_ID)` naming `m` (5.8+); before that, by
/// the cgroup path that the innermost cgroup2 mount gives `dir`.
fn shows(mounts: &[Mount], m: &Mount, dir: &Path, cg: &Path) -> bool {
    match mount_id_at(dir) {
        Some(id) => id == m.id,
        None => cgroup_path_of(mounts, dir).as_deref() == Some(cg),
    }
}

/// The cgroup path (as `/proc/<pid>/cgroup` prints it) of directory `dir`,
/// if `dir` is inside a cgroup2 mount (the innermost mount point wins).
pub(crate) fn cgroup_path_of(mounts: &[Mount], dir: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| Some((m, dir.strip_prefix(&m.point).ok()?)))
        .max_by_key(|(m, _)| m.point.components().count())
        .map(|(m, rel)| {
            if rel.as_os_str().is_empty() {
                m.root.clone()
            } else {
                m.root.join(rel)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(root: &str, point: &str) -> Mount {
        Mount {
            id: 0,
            parent: 0,
            root: root.into(),
            point: point.into(),
        }
    }

    #[test]
    fn mountinfo_parsing_finds_cgroup2_mounts_roots_and_unescapes_spaces() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    52 41 0:38 /job\\040a /mnt/with\\040space rw shared:5 - cgroup2 none rw\n";
        let ms = parse_mountinfo(info);
        let short: Vec<_> = ms.iter().map(|m| (m.id, m.parent)).collect();
        assert_eq!(short, [(41, 31), (52, 41)]);
        let ms: Vec<_> = ms
            .into_iter()
            .map(|m| Mount {
                id: 0,
                parent: 0,
                ..m
            })
            .collect();
        assert_eq!(
            ms,
            vec![
                mount("/", "/sys/fs/cgroup/unified"),
                mount("/job a", "/mnt/with space")
            ]
        );
        assert!(parse_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n").is_empty());
    }

    #[test]
    fn a_mount_made_over_another_at_the_same_point_covers_it() {
        // 41: the hierarchy; 60: a subtree bind-mounted over it; 61: a
        // third cgroup2 mount stacked on that; 70: a mount below, not over.
        let info = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    60 41 0:38 /job /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    61 60 0:38 / /sys/fs/cgroup/unified rw - cgroup2 none rw\n\
                    70 61 0:40 / /sys/fs/cgroup/unified/x rw - tmpfs none rw\n";
        assert_eq!(covered_ids(info), [41, 60]);
    }

    #[test]
    fn a_cgroup_hidden_by_a_bind_mount_below_the_mount_point_has_no_directory() {
        // /a/b bind-mounted onto /x below the hierarchy's mount point: /x
        // and what is below it are hidden, /a/b shows at two places.
        let ms = [
            mount("/", "/cg-test-none"),
            mount("/a/b", "/cg-test-none/x"),
        ];
        assert_eq!(dir_of(&ms, Path::new("/x")), None);
        assert_eq!(dir_of(&ms, Path::new("/x/y")), None);
        assert_eq!(
            dir_of(&ms, Path::new("/a/b/c")),
            Some(PathBuf::from("/cg-test-none/a/b/c"))
        );
        assert_eq!(
            cgroup_path_of(&ms, Path::new("/cg-test-none/x/c")),
            Some(PathBuf::from("/a/b/c"))
        );
    }

    #[test]
    fn paths_map_through_the_mount_root_of_a_bind_mounted_subtree() {
        let ms = [mount("/user.slice/job", "/mnt/cg")];
        assert_eq!(
            dir_of(&ms, Path::new("/user.slice/job/x")),
            Some(PathBuf::from("/mnt/cg/x"))
        );
        assert_eq!(dir_of(&ms, Path::new("/other")), None);
        assert_eq!(
            cgroup_path_of(&ms, Path::new("/mnt/cg/x/childfd-1")),
            Some(PathBuf::from("/user.slice/job/x/childfd-1"))
        );
        assert_eq!(
            cgroup_path_of(&ms, Path::new("/mnt/cg")),
            Some(PathBuf::from("/user.slice/job"))
        );
        assert_eq!(cgroup_path_of(&ms, Path::new("/sys/fs/cgroup")), None);
        let whole = [mount("/", "/sys/fs/cgroup")];
        assert_eq!(
            cgroup_path_of(&whole, Path::new("/sys/fs/cgroup/a/b")),
            Some(PathBuf::from("/a/b"))
        );
    }
}
