//! `terminate` continues a stopped member of the tree before, or together
//! with, its SIGTERM, never after it: sent TERM first, the leader may die
//! of it before the CONT follows, and its group, orphaned with a stopped
//! member, gets SIGHUP + SIGCONT from the kernel; the member dies of the
//! SIGHUP without ever running its TERM handler.
//!
//! In cgroup mode each signal is a pass of its own over the members, which
//! gives the leader the time to die in between; this binary makes that
//! certain (a hook holds each pass, after the leader's signal, until the
//! leader is dead, at most 1 s, with `cgroup.freeze` taken away so that it
//! can die meanwhile): the hooks are process-wide, so the test has its
//! binary to itself.

mod common;

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use childfd::{Containment, EndedBy, SpawnStage};
use childfd_testbin::{assert_no_survivors, eventually, new_tag};
use childfd_tokio::spawn;
use common::{SLACK, on_both, sh};

/// The member: handles TERM (writes it down and exits 0), starts a sleep
/// (the tree's third process), says it is stopping and stops itself, then
/// waits on the sleep (a trap runs during `wait`).
const MEMBER: &str = "trap 'echo got-term >> \"$OUT\"; exit 0' TERM; sleep 300 & \
                      echo stopping >> \"$OUT\"; kill -STOP $$; wait";

/// The leader whose death [`hold_until_the_leader_is_dead`] waits for.
static LEADER: AtomicI32 = AtomicI32::new(0);

fn hold_until_the_leader_is_dead(_: &[i32]) {
    let pid = LEADER.load(Ordering::Relaxed);
    if pid != 0 {
        eventually(Duration::from_secs(1), || !childfd_testbin::alive(pid));
    }
}

/// Whether cgroup mode works here; says so loudly when it does not.
fn cgroups_here() -> bool {
    match childfd::Command::new("true")
        .containment(Containment::cgroup())
        .spawn()
    {
        Ok(c) => {
            let ended = c.wait_timeout(SLACK).unwrap();
            assert!(ended.is_some(), "true did not end");
            true
        }
        Err(e) if e.stage() == SpawnStage::Cgroup => {
            eprintln!("NO WRITABLE CGROUP V2 DIRECTORY HERE: cgroup mode skipped ({e})");
            false
        }
        Err(e) => panic!("spawn: {e}"),
    }
}

#[test]
fn terminate_lets_a_stopped_member_run_its_term_handler_in_an_orphaned_group() {
    if !cgroups_here() {
        return;
    }
    childfd::test_hooks::on_cgroup_members_listed(hold_until_the_leader_is_dead);
    childfd::force_fallback::no_cgroup_freeze();
    on_both(|flavor| async move {
        let tag = new_tag(&format!("stopped-term-{flavor:?}"));
        let out = std::env::temp_dir().join(format!("childfd-tokio-{tag}.out"));
        let mut cmd = sh("sh -c \"$MEMBER\" & wait", &tag);
        cmd.env("MEMBER", MEMBER)
            .env("OUT", &out)
            .containment(Containment::cgroup());
        let child = spawn(&mut cmd).unwrap();
        let stopped = {
            let tag = tag.clone();
            tokio::task::spawn_blocking(move || {
                eventually(SLACK, || {
                    childfd_testbin::tagged(&tag).iter().any(|p| p.state == 'T')
                })
            })
            .await
            .unwrap()
        };
        assert!(stopped, "the member never stopped");
        LEADER.store(child.id() as i32, Ordering::Relaxed);
        let t = child.terminate(SLACK).await;
        LEADER.store(0, Ordering::Relaxed);
        let t = t.unwrap();
        let said = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        assert!(
            said.contains("got-term"),
            "the stopped member never ran its TERM handler (killed by the orphaned \
             group's SIGHUP?): {said:?}, {t:?}"
        );
        assert_eq!(t.ended_by, EndedBy::Term, "{t:?}");
        assert_no_survivors(&tag);
    });
}
