//! Cgroup containment after the cgroup2 file system was unmounted and
//! mounted at another place (in a private mount namespace).

use std::path::{Path, PathBuf};
use std::time::Instant;

use childfd::{Command, Containment};
use childfd_testbin::PAUSE;

/// The cgroup2 mount points in `/proc/self/mountinfo`.
fn cgroup2_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// Spawns a cgroup-mode child, ends it and checks its leaf is gone; the
/// leaf's path, or the spawn error.
fn spawn_and_end() -> Result<PathBuf, String> {
    let c = Command::new(PAUSE)
        .containment(Containment::cgroup())
        .spawn()
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    c.kill_tree().unwrap();
    assert!(c.wait_tree_deadline(Instant::now() + super::BOUND).unwrap());
    c.wait().unwrap();
    drop(c);
    assert!(!leaf.exists(), "leaf left: {}", leaf.display());
    Ok(leaf)
}

/// childfd read the mounts once per process: after the cgroup2 file
/// system was unmounted and mounted at another path, cgroup mode still
/// used the old mount point and every spawn failed. It must read the
/// mounts again and spawn into the new one.
pub(crate) fn cgroupfs_remounted_elsewhere_after_the_mounts_were_read_fails_cgroup_containment() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let cg = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let rel = Path::new(cg.trim_start_matches('/'));
    // Only our own mounts from here on (the namespace is private).
    for _ in 0..10 {
        let points = cgroup2_points();
        if points.is_empty() {
            break;
        }
        for p in points {
            super::sh_ok(&format!("umount -l '{}'", p.display()));
        }
    }
    assert!(cgroup2_points().is_empty(), "cgroup2 still mounted");
    let base = std::env::temp_dir().join(format!("childfd-remount-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    super::sh_ok(&format!("mount -t cgroup2 none '{}'", a.display()));
    let first = spawn_and_end();
    super::sh_ok(&format!(
        "umount '{}' && mount -t cgroup2 none '{}'",
        a.display(),
        b.display()
    ));
    let second = spawn_and_end();
    let left = childfd_testbin::our_cgroup_leaves(&b.join(rel));
    super::sh_ok(&format!("umount '{}'", b.display()));
    std::fs::remove_dir_all(&base).unwrap();
    assert!(left.is_empty(), "leaves left: {left:?}");
    let first = first.unwrap();
    assert!(first.starts_with(&a), "first leaf {}", first.display());
    match second {
        Ok(leaf) => assert!(leaf.starts_with(&b), "second leaf {}", leaf.display()),
        Err(e) => panic!(
            "cgroup mode failed after the remount at {}: {e}",
            b.display()
        ),
    }
}
