//! The parent-death signal fires when the parent *process* dies, also for
//! a child spawned from a short-lived thread and for one that changes uid
//! (which clears the signal if it is armed before the change).
//!
//! Each case runs in a helper process (this binary re-run with
//! `CHILDFD_PDEATHSIG_CASE`) that spawns a `pause` child, prints its pid
//! and exits; the child must then die.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use childfd::{Command, Signal};

fn main() {
    if let Ok(case) = std::env::var("CHILDFD_PDEATHSIG_CASE") {
        let uid = case == "uid";
        let spawn = move || {
            let mut cmd = Command::new(childfd_testbin::PAUSE);
            cmd.pdeathsig(Signal::KILL);
            if uid {
                cmd.uid(65534).gid(65534);
            }
            cmd.spawn().unwrap()
        };
        // Spawned from a thread that ends at once.
        let child = std::thread::spawn(spawn).join().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "died with its spawning thread"
        );
        println!("{}", child.id());
        std::mem::forget(child); // the process exits now; the kernel does the rest
        std::process::exit(0);
    }
    // The helper's child is orphaned when the helper dies: as a subreaper
    // this process adopts it and reaps it (no zombie left for init).
    childfd::reaper::become_subreaper().unwrap();
    let mut cases = vec!["thread"];
    if childfd_testbin::is_root() {
        cases.push("uid");
    } else {
        eprintln!("WARNING: not root; the uid case is not tested");
    }
    for case in cases {
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .env("CHILDFD_PDEATHSIG_CASE", case)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(helper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(helper.wait().unwrap().success(), "{case}: helper failed");
        let pid: i32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{case}: no pid in {line:?}"));
        let died =
            childfd_testbin::eventually(Duration::from_secs(10), || !childfd_testbin::alive(pid));
        if !died {
            childfd_testbin::kill(pid, libc::SIGKILL);
            panic!("{case}: child {pid} survived its parent's death");
        }
        println!("pdeathsig {case}: child {pid} died with its parent");
    }
    let reaped = childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd::reaper::reap_orphans().unwrap();
        childfd_testbin::children().is_empty()
    });
    assert!(reaped, "orphans left: {:?}", childfd_testbin::children());
}
