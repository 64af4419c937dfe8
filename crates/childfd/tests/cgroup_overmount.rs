//! Cgroup containment when the cgroup2 mount point is mounted over: a
//! subtree bind-mounted over the hierarchy (what a container runtime or a
//! delegation helper does), so `/proc/self/mountinfo` lists two cgroup2
//! mounts at one mount point and only the later one is visible.
//!
//! The scenario runs in its own process (this binary re-run with
//! `CHILDFD_OVERMOUNT_SCENARIO` set), in a private mount namespace made
//! with `unshare(CLONE_NEWNS)`: the bind mount never reaches the rest of
//! the machine and ends with that process. Needs root and a cgroup2 mount;
//! without them it says so and checks nothing else.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use childfd::{Command, Containment};

const ENV: &str = "CHILDFD_OVERMOUNT_SCENARIO";

fn main() {
    if let Ok(dir) = std::env::var(ENV) {
        spawn_through_the_visible_mount(Path::new(&dir));
        println!("ok: cgroup_mounted_over_by_a_subtree_spawns_into_the_visible_mount");
        return;
    }
    cgroup_mounted_over_by_a_subtree_spawns_into_the_visible_mount();
}

/// Issue: with a subtree bind-mounted over the cgroup2 mount point, the
/// mount code took the first cgroup2 line of mountinfo (the hidden mount),
/// so it looked for the process's cgroup at a path that the visible mount
/// does not have, and cgroup spawns failed.
fn cgroup_mounted_over_by_a_subtree_spawns_into_the_visible_mount() {
    if !childfd_testbin::is_root() {
        println!("SKIPPED (loudly): not root; an overmounted cgroup2 needs mount(2)");
        return;
    }
    let Some(own) = childfd_testbin::own_cgroup_dir().filter(|d| d.exists()) else {
        println!("SKIPPED (loudly): no writable cgroup2 hierarchy here");
        return;
    };
    // The subtree to mount over the hierarchy: a fresh cgroup under ours,
    // which the scenario moves itself into.
    let sub = own.join(format!("childfd-overmount-{}", std::process::id()));
    std::fs::create_dir(&sub).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ENV, &sub)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    // The scenario's process has exited: the subtree is empty again.
    let leftovers: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    let removed = childfd_testbin::eventually(Duration::from_secs(10), || {
        std::fs::remove_dir(&sub).is_ok()
    });
    assert!(out.status.success(), "scenario failed: {:?}", out.status);
    assert!(leftovers.is_empty(), "leaves left: {leftovers:?}");
    assert!(removed, "{} could not be removed", sub.display());
}

/// In a private mount namespace: moves into `sub`, bind-mounts `sub` over
/// the cgroup2 mount point, then spawns with cgroup containment and checks
/// the child ran in a new leaf under `sub`, which is then removed.
fn spawn_through_the_visible_mount(sub: &Path) {
    // SAFETY: plain syscall; the process is single-threaded here.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNS) };
    assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
    mount(None, "/", libc::MS_REC | libc::MS_PRIVATE);
    std::fs::write(sub.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    let point = cgroup2_point();
    mount(Some(sub), point.to_str().unwrap(), libc::MS_BIND);
    // Now `point` shows `sub`, and this process's cgroup is its root.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string();

    let child = Command::new("cat")
        .arg("/proc/self/cgroup")
        .stdout(childfd::Stdio::piped())
        .containment(Containment::cgroup())
        .spawn()
        .unwrap_or_else(|e| panic!("cgroup spawn under an overmounted hierarchy: {e}"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs = String::from_utf8_lossy(&out.stdout);
    let theirs = theirs.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let leaf = Path::new(theirs);
    assert_eq!(
        leaf.parent(),
        Some(Path::new(&own)),
        "the child's cgroup {theirs} is not a leaf under ours ({own})"
    );
    // Removed through the visible mount.
    let name = leaf.file_name().unwrap();
    assert!(
        childfd_testbin::eventually(Duration::from_secs(10), || !point.join(name).exists()),
        "leaf {} left behind",
        point.join(name).display()
    );
}

/// The mount point of the (first) cgroup2 mount.
fn cgroup2_point() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .expect("a cgroup2 mount")
}

fn mount(src: Option<&Path>, target: &str, flags: libc::c_ulong) {
    let src = src.map(|s| CString::new(s.to_str().unwrap()).unwrap());
    let target = CString::new(target).unwrap();
    // SAFETY: NUL-terminated strings that outlive the call; no data.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "mount: {}", std::io::Error::last_os_error());
}
