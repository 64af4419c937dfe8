//! Time from `kill_tree()` to the tree being gone, for a tree of 100
//! processes (`sh` and 99 `sleep`s), in each containment mode.
//!
//! Run: `cargo bench -p childfd-benches --bench tree_kill`
//! (`-- --quick` for 3 rounds instead of 15).

use std::time::{Duration, Instant};

use childfd::{Command, Containment, Stdio};

const TREE: usize = 100;

/// Live members of the tree right now.
fn members(child: &childfd::Child) -> usize {
    match child.cgroup_path() {
        Some(p) => std::fs::read_to_string(p.join("cgroup.procs")).map_or(0, |s| s.lines().count()),
        None => {
            let pgid = child.id() as i32;
            childfd_testbin::processes()
                .iter()
                .filter(|p| p.pgrp == pgid && p.state != 'Z')
                .count()
        }
    }
}

fn one_round(mode: &Containment) -> Duration {
    let script = format!("for i in $(seq {}); do sleep 300 & done; wait", TREE - 1);
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .containment(mode.clone())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tree");
    let built = childfd_testbin::eventually(Duration::from_secs(30), || members(&child) >= TREE);
    assert!(built, "tree of {TREE} not built: {}", members(&child));
    let start = Instant::now();
    child.kill_tree().expect("kill_tree");
    let gone = child
        .wait_tree_deadline(start + Duration::from_secs(30))
        .expect("wait tree");
    let elapsed = start.elapsed();
    assert!(gone, "tree not gone after 30 s");
    elapsed
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 15 };
    let mut modes = vec![
        ("process group", Containment::ProcessGroup),
        ("session", Containment::Session),
    ];
    match Command::new("true")
        .containment(Containment::cgroup())
        .status()
    {
        Ok(_) => modes.push(("cgroup v2", Containment::cgroup())),
        Err(e) => eprintln!("cgroup mode skipped: {e}"),
    }
    println!("kill_tree() until gone, tree of {TREE} processes, {rounds} rounds");
    println!("| mode | median | min | max |");
    println!("|---|---|---|---|");
    for (name, mode) in &modes {
        let mut t: Vec<Duration> = (0..rounds).map(|_| one_round(mode)).collect();
        t.sort();
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.2?} |",
            t[t.len() / 2],
            t[0],
            t[t.len() - 1]
        );
    }
}
