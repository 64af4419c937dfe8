//! A deadline's SIGTERM reaches a member of the tree that was stopped
//! (job control) and handles TERM: the member is continued before, or
//! together with, the TERM, never after it.
//!
//! Sent TERM first, the leader may die of it before the CONT follows; its
//! group is then orphaned with a stopped member, and the kernel sends the
//! whole group SIGHUP + SIGCONT: the member dies of SIGHUP (lower than
//! SIGTERM, it is taken first) without ever running its TERM handler. In
//! cgroup mode each signal is a pass of its own over the members, which
//! gives the leader the time to die in between; this binary makes that
//! certain (a hook holds the first pass until the leader is dead, with
//! `cgroup.freeze` taken away so that it can die meanwhile), so the test
//! sets process-wide hooks and has its binary to itself.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use childfd::{Command, Containment, EndedBy, SpawnStage, Stdio};
use childfd_io::{Options, Outcome};
use childfd_testbin::{Hygiene, assert_no_survivors, new_tag};

/// The member: handles TERM (says so and exits 0), starts a sleep (the
/// tree's third process, there before the deadline), stops itself, then
/// waits on the sleep (a trap runs during `wait`, not during a foreground
/// command).
const MEMBER: &str =
    "trap 'echo got-term; exit 0' TERM; sleep 300 & echo stopping; kill -STOP $$; wait";

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
            eprintln!("NO WRITABLE CGROUP V2 DIRECTORY HERE: cgroup mode skipped ({e})");
            false
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

/// The leader whose death [`hold_until_the_leader_is_dead`] waits for.
static LEADER: AtomicI32 = AtomicI32::new(0);

/// Holds a pass over the cgroup members (after the leader got its signal,
/// before the members get theirs) until the leader is dead, at most 1 s:
/// a TERM kills it (its group is orphaned then), a CONT does not.
fn hold_until_the_leader_is_dead(_: &[i32]) {
    let pid = LEADER.load(Ordering::Relaxed);
    if pid != 0 {
        childfd_testbin::eventually(Duration::from_secs(1), || !childfd_testbin::alive(pid));
    }
}

#[test]
fn a_stopped_member_that_handles_term_is_not_killed_by_an_orphaned_group_sighup() {
    let h = Hygiene::start();
    let mut modes = vec![("pgroup", Containment::ProcessGroup)];
    if cgroups_here() {
        modes.push(("cgroup", Containment::cgroup()));
        childfd::test_hooks::on_cgroup_members_listed(hold_until_the_leader_is_dead);
        childfd::force_fallback::no_cgroup_freeze();
    }
    for (name, mode) in modes {
        let tag = new_tag(&format!("stopped-{name}"));
        let mut child = Command::new("sh")
            .args(["-c", "sh -c \"$MEMBER\" & wait"])
            .env("MEMBER", MEMBER)
            .env("CHILDFD_TEST_TAG", &tag)
            .containment(mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        LEADER.store(child.id() as i32, Ordering::Relaxed);
        let opts = Options::new()
            .deadline(Duration::from_secs(2))
            .grace(Duration::from_secs(10));
        let out = childfd_io::output(&mut child, opts).unwrap();
        LEADER.store(0, Ordering::Relaxed);
        drop(child);
        assert_eq!(out.outcome, Outcome::TimedOut, "{name}: {out:?}");
        assert!(
            out.stdout.text().starts_with("stopping\n"),
            "{name}: the member never ran: {out:?}"
        );
        assert!(
            out.stdout.text().contains("got-term"),
            "{name}: the stopped member never ran its TERM handler (killed by the \
             orphaned group's SIGHUP?): {out:?}"
        );
        assert_eq!(out.ended_by, Some(EndedBy::Term), "{name}: {out:?}");
        assert_no_survivors(&tag);
    }
    h.finish(1);
}
