//! Cgroup-mode signalling of a tree's members under a seccomp filter, as
//! in a container with the default profile of its runtime.

use std::time::{Duration, Instant};

use childfd::{Child, Command, Containment, EndedBy, Signal, TreeError};
use childfd_testbin::{assert_no_survivors, eventually, new_tag, read_stat};

/// How long members may take to die of a signal they were sent.
const SIGNALLED_BOUND: Duration = Duration::from_secs(10);

/// `sh -c '(sleep 60 &); exec sleep 60'` in cgroup mode, tagged `tag`: the
/// leader (`sleep` after the exec) and an orphaned `sleep` member, both
/// running. The member's pid.
fn tree_with_an_orphaned_member(tag: &str) -> (Child, i32) {
    let c = Command::new("sh")
        .args(["-c", "(sleep 60 &); exec sleep 60"])
        .env("CHILDFD_TEST_TAG", tag)
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    let listed = || -> Vec<i32> {
        std::fs::read_to_string(leaf.join("cgroup.procs"))
            .unwrap()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    let leader = c.id() as i32;
    let mut member = None;
    assert!(
        eventually(super::BOUND, || {
            let l = listed();
            member = l.iter().copied().find(|&p| p != leader);
            l.len() == 2
                && read_stat(leader).is_some_and(|p| p.comm == "sleep")
                && member
                    .and_then(read_stat)
                    .is_some_and(|p| p.comm == "sleep")
        }),
        "tree did not start: {:?}",
        listed()
    );
    (c, member.unwrap())
}

/// Ends the tree whatever happened and checks nothing is left.
fn end(c: Child, tag: &str) {
    let parent = c.cgroup_path().unwrap().parent().unwrap().to_path_buf();
    c.kill_tree().unwrap();
    assert!(c.wait_tree_deadline(Instant::now() + super::BOUND).unwrap());
    c.wait().unwrap();
    drop(c);
    assert_no_survivors(tag);
    assert!(eventually(super::BOUND, || {
        childfd_testbin::our_cgroup_leaves(&parent).is_empty()
    }));
}

/// A seccomp filter that allows `pidfd_open` (most container profiles) made
/// childfd give up pidfds altogether; with the freeze not confirmed, the
/// members other than the leader were then skipped without a word:
/// `signal_tree(TERM)` returned Ok and the orphaned member lived on.
pub(crate) fn unfrozen_members_skipped_under_a_filter_that_allows_pidfd_open() {
    childfd::force_fallback::no_cgroup_freeze();
    // Refuses only acct(2): a profile under which pidfd_open is allowed.
    childfd_testbin::seccomp_deny(libc::SYS_acct, libc::EPERM);
    let tag = new_tag("seccomp-allows");
    let (c, member) = tree_with_an_orphaned_member(&tag);
    c.signal_tree(Signal::TERM).unwrap();
    let member_gone = eventually(SIGNALLED_BOUND, || read_stat(member).is_none());
    let leader = c.wait_timeout(SIGNALLED_BOUND).unwrap();
    end(c, &tag);
    assert_eq!(leader.and_then(|s| s.signal()), Some(Signal::TERM));
    assert!(
        member_gone,
        "the member {member} did not get the tree's SIGTERM under a filter that allows pidfd_open"
    );
}

/// With `pidfd_open` refused by the filter (`EPERM`) and the freeze not
/// confirmed, members other than the leader cannot be signalled safely;
/// they were skipped and `signal_tree` returned Ok. It must name them.
/// `terminate` still ends them (its SIGKILL is `cgroup.kill`).
pub(crate) fn unfrozen_members_skipped_silently_when_seccomp_refuses_pidfd_open() {
    childfd::force_fallback::no_cgroup_freeze();
    childfd_testbin::seccomp_deny(libc::SYS_pidfd_open, libc::EPERM);
    let tag = new_tag("seccomp-refuses");
    let (c, member) = tree_with_an_orphaned_member(&tag);
    let r = c.signal_tree(Signal::TERM);
    let leader = c.wait_timeout(SIGNALLED_BOUND).unwrap();
    let member_alive = childfd_testbin::alive(member);
    end(c, &tag);
    match r {
        Err(TreeError::MembersNotSignalled { pid: _, members }) => {
            assert_eq!(members, vec![member as u32], "named members");
        }
        other => panic!("signal_tree with member {member} left out returned {other:?}"),
    }
    assert_eq!(leader.and_then(|s| s.signal()), Some(Signal::TERM));
    assert!(member_alive, "the member was signalled by pid after all");

    let tag = new_tag("seccomp-refuses-terminate");
    let (c, _) = tree_with_an_orphaned_member(&tag);
    let t = c.terminate(Duration::from_millis(300)).unwrap();
    assert_eq!(t.ended_by, EndedBy::Kill);
    drop(c);
    assert_no_survivors(&tag);
}
