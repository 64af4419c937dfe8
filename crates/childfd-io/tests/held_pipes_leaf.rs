//! A capture that kills the tree for holding its pipes open
//! (`kill_tree_on_held_pipes`) in cgroup mode leaves no cgroup leaf behind,
//! even in a program that exits right after.
//!
//! `output` used to return as soon as it had written `cgroup.kill`, while
//! the killed members were still exiting. Dropping the `Child` then could
//! not remove the leaf (still populated) and handed it to the background
//! reaper; a program that exited right after (the README's build-job
//! runner, run as a doctest in every CI run) left an empty
//! `childfd-<pid>-0-*` directory behind for good.
//!
//! The holder of the pipe is this binary again, with 256 MiB of memory
//! touched: after SIGKILL the kernel frees that memory before the cgroup
//! counts as empty, so a killed tree takes a while to go, every time.

use std::time::{Duration, Instant};

use childfd::{Command, Containment, SpawnStage, Stdio};
use childfd_io::{CommandExt, Options, Outcome, OutputError, output};
use childfd_testbin::{assert_no_survivors, new_tag};

/// Makes this binary the holder (see the module docs); its value is the
/// file the holder creates once it is ready.
const HOLDER: &str = "CHILDFD_TEST_HOLDER";
/// Makes this binary the program that exits right after its capture.
const EXIT_RIGHT_AFTER: &str = "CHILDFD_TEST_EXIT_RIGHT_AFTER";
/// After the child's exit (the holder is ready by then).
const WAIT_DELAY: Duration = Duration::from_millis(200);

/// The holder: touch 256 MiB, say so, create the `ready` file, wait to be
/// killed.
fn be_the_holder(ready: &std::ffi::OsStr) -> ! {
    let mut v = vec![0u8; 256 << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
    println!("holder ready");
    std::fs::write(ready, "").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(300));
    }
}

/// `sh`, which starts the holder (inheriting its stdout) and exits once it
/// is ready (bounded: 30 s).
fn child_command(tag: &str) -> Command {
    let ready = std::env::temp_dir().join(format!("{tag}.ready"));
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "\"$0\" --exact a_tree_killed_for_holding_its_pipes_is_gone_when_output_returns \
         --nocapture --test-threads=1 &
         i=0; while [ ! -e \"$CHILDFD_TEST_HOLDER\" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
         rm -f \"$CHILDFD_TEST_HOLDER\"",
    ])
    .arg(std::env::current_exe().unwrap())
    .env(HOLDER, ready)
    .env_remove(EXIT_RIGHT_AFTER)
    .env("CHILDFD_TEST_TAG", tag)
    .containment(Containment::cgroup())
    .stdout(Stdio::piped());
    c
}

fn options() -> Options<'static> {
    Options::new()
        .wait_delay(WAIT_DELAY)
        .kill_tree_on_held_pipes(true)
}

/// Whether cgroup mode works here; says so loudly when it does not.
fn cgroups_here() -> bool {
    match Command::new("true")
        .containment(Containment::cgroup())
        .spawn()
    {
        Ok(c) => {
            let ended = c.wait_timeout(Duration::from_secs(30)).unwrap();
            assert!(ended.is_some(), "true did not end within 30 s");
            true
        }
        Err(e) if e.stage() == SpawnStage::Cgroup => {
            eprintln!(
                "NO WRITABLE CGROUP V2 DIRECTORY HERE: cgroup-mode leaf checks skipped ({e})"
            );
            false
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

/// Removes a leaf this test made (bounded), so a failure leaks nothing.
fn remove(leaf: &std::path::Path) {
    childfd_testbin::eventually(Duration::from_secs(10), || {
        std::fs::remove_dir(leaf).is_ok() || !leaf.exists()
    });
}

#[test]
fn a_tree_killed_for_holding_its_pipes_is_gone_when_output_returns() {
    if let Some(ready) = std::env::var_os(HOLDER) {
        be_the_holder(&ready);
    }
    if !cgroups_here() {
        return;
    }
    let tag = new_tag("io-held-leaf");
    let mut child = child_command(&tag).spawn().unwrap();
    let leaf = child.cgroup_path().expect("cgroup mode").to_owned();
    let out = output(&mut child, options()).unwrap();
    // Looked at before anything else: the tree must be gone already.
    let gone_at_return = child.wait_tree_deadline(Instant::now()).unwrap();
    drop(child);
    let leaf_left = leaf.exists();
    assert_no_survivors(&tag);
    if leaf_left {
        remove(&leaf);
    }
    assert_eq!(out.outcome, Outcome::PipesHeldOpen, "{out:?}");
    assert!(
        out.stdout.text().contains("holder ready"),
        "premise: the holder was ready before the kill: {out:?}"
    );
    assert!(!out.holders.is_empty(), "{out:?}");
    assert!(
        gone_at_return,
        "output returned while the killed tree was still exiting"
    );
    assert!(
        !leaf_left,
        "dropping the Child right after output left {}",
        leaf.display()
    );
}

#[test]
fn a_program_exiting_right_after_a_held_pipes_kill_leaves_no_empty_leaf() {
    if std::env::var_os(EXIT_RIGHT_AFTER).is_some() {
        // The program: capture, drop, exit (this test harness ends now).
        let tag = std::env::var("CHILDFD_TEST_TAG").unwrap();
        match child_command(&tag).output_with(options()) {
            Ok(o) => assert_eq!(o.outcome, Outcome::PipesHeldOpen, "{o:?}"),
            Err(OutputError::Spawn(e)) if e.stage() == SpawnStage::Cgroup => {}
            Err(e) => panic!("{e}"),
        }
        return;
    }
    if !cgroups_here() {
        return;
    }
    let dir = childfd_testbin::own_cgroup_dir().expect("cgroup dir");
    let tag = new_tag("io-held-exit");
    let mut program = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_program_exiting_right_after_a_held_pipes_kill_leaves_no_empty_leaf",
            "--test-threads=1",
        ])
        .env(EXIT_RIGHT_AFTER, "1")
        .env("CHILDFD_TEST_TAG", &tag)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = program.id();
    let mut status = None;
    let ended = childfd_testbin::eventually(Duration::from_secs(60), || {
        status = program.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        let _ = program.kill();
        let _ = program.wait();
    }
    let left = childfd_testbin::cgroup_leaves_of(&dir, pid);
    assert_no_survivors(&tag);
    for l in &left {
        remove(l);
    }
    let status = status.expect("the program ended within 60 s");
    assert!(status.success(), "the program failed: {status}");
    assert!(left.is_empty(), "the exited program left {left:?}");
}
