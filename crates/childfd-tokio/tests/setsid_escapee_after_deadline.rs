//! After a deadline, a `setsid` escapee holding stdout: in process-group
//! mode SIGTERM ends the group (not the escapee), the capture stops
//! shortly after the group is gone without waiting out the grace, and
//! names the escapee; in cgroup mode the escapee is a member and dies.

mod common;

use std::time::Duration;

use childfd::{Containment, EndedBy, SpawnStage, Stdio};
use childfd_testbin::{
    assert_no_survivors, kill_tagged, new_tag, our_cgroup_leaves, own_cgroup_dir, tagged,
};
use childfd_tokio::{CommandExt, Options, Outcome, output, spawn};
use common::{SLACK, on_both, sh, wait_tagged};

const SCRIPT: &str = "setsid sleep 1000 & echo started; trap '' TERM; sleep 1000";

/// Whether cgroup mode works here; says so loudly when it does not.
fn cgroups_here() -> bool {
    match childfd::Command::new("true")
        .containment(Containment::cgroup())
        .spawn()
    {
        Ok(c) => c.wait_timeout(SLACK).expect("wait").is_some(),
        Err(e) if e.stage() == SpawnStage::Cgroup => {
            eprintln!("NO WRITABLE CGROUP V2 DIRECTORY HERE: process groups only ({e})");
            false
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

#[test]
fn a_setsid_escapee_holding_stdout_after_the_deadline_neither_hangs_nor_costs_the_grace() {
    on_both(|_| async {
        let tag = new_tag("escapee-pgroup");
        let mut child = spawn(
            sh(SCRIPT, &tag)
                .containment(Containment::ProcessGroup)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        wait_tagged(&tag, 3).await;
        // TERM is ignored by sh: the grace ends with SIGKILL to the group;
        // then only the escapee holds the pipe, briefly drained.
        let opts = Options::new()
            .deadline(Duration::from_millis(100))
            .grace(Duration::from_millis(200));
        let out = tokio::time::timeout(SLACK, output(&mut child, opts))
            .await
            .expect("bounded")
            .unwrap();
        let left = tagged(&tag);
        kill_tagged(&tag); // the escapee: a process group cannot reach it
        assert_eq!(
            (out.outcome, out.ended_by),
            (Outcome::TimedOut, Some(EndedBy::Kill)),
            "{out:?}"
        );
        assert_eq!(out.stdout.text(), "started\n");
        assert!(out.holders.iter().any(|h| h.name == "sleep"), "{out:?}");
        assert_eq!(
            left.len(),
            1,
            "only the escapee outlives the group: {left:?}"
        );
        drop(child);
        assert_no_survivors(&tag);
    });
}

#[test]
fn a_setsid_escapee_in_a_cgroup_leaf_dies_with_the_tree_at_the_deadline() {
    if !cgroups_here() {
        return;
    }
    let dir = own_cgroup_dir().expect("cgroup dir");
    on_both(move |_| {
        let dir = dir.clone();
        async move {
            let tag = new_tag("escapee-cgroup");
            let opts = Options::new()
                .deadline(Duration::from_millis(200))
                .grace(Duration::from_millis(200));
            let out = sh(SCRIPT, &tag)
                .containment(Containment::cgroup())
                .output_async(opts)
                .await
                .unwrap();
            assert_eq!(
                (out.outcome, out.ended_by),
                (Outcome::TimedOut, Some(EndedBy::Kill)),
                "{out:?}"
            );
            assert_eq!(out.stdout.text(), "started\n");
            assert!(
                out.holders.is_empty(),
                "the escapee died with the leaf: {out:?}"
            );
            assert_no_survivors(&tag);
            assert!(
                childfd_testbin::eventually(SLACK, || our_cgroup_leaves(&dir).is_empty()),
                "leaves left: {:?}",
                our_cgroup_leaves(&dir)
            );
        }
    });
}
