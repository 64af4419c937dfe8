//! Cgroup containment after the cgroup2 file system was unmounted and
//! mounted at another place (in a private mount namespace).

use std::path::{Path, PathBuf};
use std::time::Instant;

use childfd::{Command, Containment};
use childfd_testbin::{PAUSE, eventually};

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

/// A tree that runs while the cgroup2 file system is unmounted (lazily:
/// the leaf's fd keeps it busy) and mounted at another path: childfd
/// reached the leaf by its old path only, so `signal_tree` found no files,
/// took the leaf for removed and returned Ok without signalling anyone,
/// `kill_tree` likewise, and the leaf was never removed. Through the
/// leaf's directory fd and its cgroup path in the mounts read again, the
/// signals must arrive, the tree end and its leaf go.
pub(crate) fn a_tree_running_across_a_cgroupfs_remount_is_taken_for_removed() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let cg = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let rel = Path::new(cg.trim_start_matches('/')).to_path_buf();
    for p in cgroup2_points() {
        super::sh_ok(&format!("umount -l '{}'", p.display()));
    }
    assert!(cgroup2_points().is_empty(), "cgroup2 still mounted");
    let base = std::env::temp_dir().join(format!("childfd-remount-live-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    super::sh_ok(&format!("mount -t cgroup2 none '{}'", a.display()));
    let tag = childfd_testbin::new_tag("remount-live");
    let tree = || {
        Command::new("sh")
            .args(["-c", "sleep 60 & exec sleep 60"])
            .env("CHILDFD_TEST_TAG", &tag)
            .containment(Containment::cgroup())
            .spawn()
            .unwrap()
    };
    let (t1, t2) = (tree(), tree());
    childfd_testbin::wait_tagged(&tag, 4);
    super::sh_ok(&format!(
        "umount -l '{}' && mount -t cgroup2 none '{}'",
        a.display(),
        b.display()
    ));
    let deadline = || Instant::now() + std::time::Duration::from_secs(10);
    let term = t1.signal_tree(childfd::Signal::TERM);
    let t1_gone = t1.wait_tree_deadline(deadline());
    let t1_status = t1.wait_timeout(std::time::Duration::from_secs(10));
    let killed = t2.kill_tree();
    let t2_gone = t2.wait_tree_deadline(deadline());
    let t2_status = t2.wait_timeout(std::time::Duration::from_secs(10));
    drop((t1, t2));
    let survivors = childfd_testbin::tagged(&tag).len();
    childfd_testbin::kill_tagged(&tag);
    while childfd_testbin::reap_any_nohang().is_some() {}
    let parent = b.join(&rel);
    let gone_leaves = eventually(super::BOUND, || {
        childfd_testbin::our_cgroup_leaves(&parent).is_empty()
    });
    let left = childfd_testbin::our_cgroup_leaves(&parent);
    for l in &left {
        let _ = std::fs::remove_dir(l);
    }
    super::sh_ok(&format!("umount '{}'", b.display()));
    std::fs::remove_dir_all(&base).unwrap();
    assert!(term.is_ok(), "signal_tree: {term:?}");
    assert!(
        matches!(t1_gone, Ok(true)),
        "first tree after TERM: {t1_gone:?}"
    );
    let sig = |s: &Result<Option<childfd::ExitStatus>, _>| {
        s.as_ref().ok().and_then(|s| s.and_then(|s| s.signal()))
    };
    assert_eq!(
        sig(&t1_status),
        Some(childfd::Signal::TERM),
        "{t1_status:?}"
    );
    assert!(killed.is_ok(), "kill_tree: {killed:?}");
    assert!(
        matches!(t2_gone, Ok(true)),
        "second tree after kill: {t2_gone:?}"
    );
    assert_eq!(
        sig(&t2_status),
        Some(childfd::Signal::KILL),
        "{t2_status:?}"
    );
    assert_eq!(survivors, 0, "processes of the trees outlived them");
    assert!(gone_leaves, "leaves left under the new mount: {left:?}");
}
