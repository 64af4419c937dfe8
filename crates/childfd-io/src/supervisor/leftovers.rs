//! Counting what a job left behind: processes of its tree still alive
//! after its child exited (nextest calls them leaks).

use std::time::Instant;

use childfd::Child;

/// How many processes of `child`'s tree are alive (zombies not counted),
/// its exited child aside. The exact and cheap check comes first
/// ([`Child::wait_tree_deadline`] with a deadline of now: a group signal
/// 0 by pidfd, or `cgroup.events`); only if something is left are they
/// counted, from the leaf's `cgroup.procs` or, for a process group, from
/// `/proc/*/stat` (the members pin the group's number, so it cannot name
/// another group meanwhile).
pub(super) fn count(child: &Child) -> usize {
    if child.wait_tree_deadline(Instant::now()).unwrap_or(true) {
        return 0;
    }
    if let Some(leaf) = child.cgroup_path() {
        return std::fs::read_to_string(leaf.join("cgroup.procs"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
    }
    childfd::containment::live_group_members(child.id() as i32).count()
}
