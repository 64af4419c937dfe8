//! What a `fork()`ed copy of a process that uses childfd may and may not
//! do to the parent's children.
//!
//! A `fork()` made while another thread runs an orphan pass
//! ([`childfd::reaper::reap_orphans`], what a container init's
//! [`Reaper`](childfd::reaper::Reaper) thread does all the time) must not
//! leave the copy unable to spawn.
//!
//! The pass holds a process-wide lock that spawns take too. `fork()` copies
//! the lock in its held state, and the thread that would release it does
//! not exist in the copy: before the lock became per-process, every spawn
//! in the copy waited on it for ever (found by `cargo xtask chaos --only
//! fork`). The copy here arms `alarm(2)`, so a hang ends it with SIGALRM
//! and fails the test instead of hanging it.

use std::sync::mpsc;
use std::time::Duration;

use childfd::{Command, Containment};
use childfd_testbin::{EXIT0, Fork, PAUSE};

fn main() {
    // First: it needs the process's first spawn (the one that probes the
    // spawn method).
    fork_during_the_first_spawns_method_probe_leaves_the_copy_able_to_spawn();
    println!("ok: fork_during_the_first_spawns_method_probe_leaves_the_copy_able_to_spawn");
    fork_during_an_orphan_pass_leaves_the_copy_able_to_spawn();
    println!("ok: fork_during_an_orphan_pass_leaves_the_copy_able_to_spawn");
    a_forked_copy_dropping_an_inherited_handle_kills_the_parents_child();
    println!("ok: a_forked_copy_dropping_an_inherited_handle_kills_the_parents_child");
    fork_while_the_cgroup_mounts_are_held_leaves_the_copy_able_to_spawn_in_a_cgroup();
}

/// A copy made by `fork()` holds a copy of every `Child` handle. When the
/// copy dropped one made with `kill_on_drop(true)` (a library forking and
/// then returning normally, running destructors), it killed the parent's
/// child, which it can signal through the inherited pidfd. The child is
/// the parent's: the copy's drop must close its own fds and nothing more.
fn a_forked_copy_dropping_an_inherited_handle_kills_the_parents_child() {
    let fds = childfd_testbin::open_fds();
    let child = Command::new(PAUSE).kill_on_drop(true).spawn().unwrap();
    // SAFETY: harness = false, and the threads the scenario before started
    // have ended; a copy hung on a lock one held would end at its alarm and
    // fail the test.
    let survived = unsafe { childfd_testbin::a_forked_copy_drops(child, Fork::Libc) };
    assert!(
        survived,
        "the forked copy's drop of an inherited handle ended the parent's child"
    );
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
}

fn fork_during_an_orphan_pass_leaves_the_copy_able_to_spawn() {
    let fds = childfd_testbin::open_fds();
    // Every lock of the spawn path made and used once.
    assert!(Command::new(EXIT0).status().unwrap().success());

    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let pass = childfd::hold_orphan_pass();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(pass);
    });
    held_rx.recv().unwrap();

    let (_, status) = spawn_in_a_forked_copy(|| Command::new(EXIT0).status());
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_the_copy_spawned(status, "the orphan pass lock held when it forked");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked copy could not spawn (status {status:#x}), see its output"
    );

    // The parent still spawns (the pass is over), and nothing is left.
    assert!(Command::new(EXIT0).status().unwrap().success());
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
}

/// The table of cgroup2 mounts was a lock that a thread updating it held
/// while it read `/proc/self/mountinfo` (on the first cgroup spawn, after
/// every failed parent resolution, on a stale leaf path). A `fork()` in
/// that window left the copy's lock held by a thread it does not have:
/// every cgroup spawn in the copy waited for ever. The hook holds the
/// table from another thread across the fork, as such a thread would.
fn fork_while_the_cgroup_mounts_are_held_leaves_the_copy_able_to_spawn_in_a_cgroup() {
    let Some(own) = childfd_testbin::own_cgroup_dir().filter(|d| d.exists()) else {
        println!("SKIPPED (loudly): no cgroup2 hierarchy here");
        return;
    };
    let name = "fork_while_the_cgroup_mounts_are_held_leaves_the_copy_able_to_spawn_in_a_cgroup";
    let cgroup = || {
        Command::new(EXIT0)
            .containment(Containment::cgroup())
            .status()
    };
    match cgroup() {
        Ok(s) => assert!(s.success(), "cgroup spawn in the parent: {s}"),
        Err(e) => {
            println!("SKIPPED (loudly): cgroup spawns fail here: {e}");
            return;
        }
    }
    let fds = childfd_testbin::open_fds();
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let table = childfd::test_hooks::hold_cgroup_mounts();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(table);
    });
    held_rx.recv().unwrap();

    let (pid, status) = spawn_in_a_forked_copy(cgroup);
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_the_copy_spawned(status, "the cgroup mounts table held when it forked");
    assert!(cgroup().unwrap().success());
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
    assert_eq!(
        childfd_testbin::cgroup_leaves_of(&own, pid as u32),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        childfd_testbin::our_cgroup_leaves(&own),
        Vec::<std::path::PathBuf>::new()
    );
    println!("ok: {name}");
}

/// The spawn method was probed once per process inside a `OnceLock`'s
/// initialisation. A `fork()` by another thread while the first spawn was
/// in that probe left the copy's `OnceLock` in its running state, with no
/// thread to finish it: every spawn in the copy waited for ever. The hook
/// holds the first spawn inside the probe across the fork.
fn fork_during_the_first_spawns_method_probe_leaves_the_copy_able_to_spawn() {
    let fds = childfd_testbin::open_fds();
    childfd::test_hooks::hold_spawn_method_probe(true);
    let first = std::thread::spawn(|| Command::new(EXIT0).status());
    assert!(
        childfd_testbin::eventually(Duration::from_secs(20), || {
            childfd::test_hooks::spawn_method_probe_held()
        }),
        "premise: the first spawn should be held in the method probe"
    );
    let (_, status) = spawn_in_a_forked_copy(|| {
        // The holding thread does not exist here: the copy's probe runs.
        childfd::test_hooks::hold_spawn_method_probe(false);
        Command::new(EXIT0).status()
    });
    childfd::test_hooks::hold_spawn_method_probe(false);
    let first = first.join().unwrap();
    assert_the_copy_spawned(
        status,
        "the spawn-method probe another thread was in when it forked",
    );
    assert!(first.unwrap().success(), "the held first spawn failed");
    assert!(childfd_testbin::children().is_empty());
    assert_eq!(childfd_testbin::leaked_fds_since(&fds), Vec::<i32>::new());
}

/// Forks a copy of this process that arms `alarm(20)` (a hang ends it with
/// SIGALRM instead of hanging the test), runs `spawn` and exits 0 if the
/// child it ran succeeded (else 1 or 2, saying why); returns the copy's pid
/// and wait status.
fn spawn_in_a_forked_copy(
    spawn: impl FnOnce() -> std::io::Result<childfd::ExitStatus>,
) -> (i32, i32) {
    // SAFETY: the copy runs ordinary Rust code, as a library forking a
    // threaded program would (glibc's fork keeps malloc usable in it),
    // bounded by its alarm.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm(2) has no memory effects; SIGALRM's default
        // action ends the copy if the spawn hangs.
        unsafe { libc::alarm(20) };
        let code = match spawn() {
            Ok(s) if s.success() => 0,
            Ok(s) => {
                println!("copy: spawn ran but the child exited with {s}");
                1
            }
            Err(e) => {
                println!("copy: spawn failed: {e}");
                2
            }
        };
        // SAFETY: ends the copy without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // The copy is bounded by its alarm, so this wait is too.
    (pid, childfd_testbin::waitpid(pid))
}

/// The copy of [`spawn_in_a_forked_copy`] neither hung on `held` (what
/// another thread held when it forked) nor failed to spawn.
fn assert_the_copy_spawned(status: i32, held: &str) {
    assert!(
        !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM),
        "the forked copy's spawn hung on {held}"
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked copy could not spawn (status {status:#x}), see its output"
    );
}
