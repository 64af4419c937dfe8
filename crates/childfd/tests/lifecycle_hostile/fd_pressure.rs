//! Cgroup-mode signalling of a tree with more members than the process
//! may open fds.

use std::time::{Duration, Instant};

use childfd::{Command, Containment, Signal, TreeError};
use childfd_testbin::{assert_no_survivors, eventually, new_tag};

/// Members of the tree: well above the fd limit set below.
const MEMBERS: usize = 150;
/// Free fds left to the process while the tree is signalled.
const FREE_FDS: u64 = 40;

fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let old = lim.rlim_cur;
    lim.rlim_cur = soft;
    // SAFETY: a valid limit, at most the hard one.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    old
}

/// Signalling a cgroup tree opened one pidfd per member and held them all
/// at once: with fewer free fds than members (a tree of thousands, a low
/// `RLIMIT_NOFILE`) the members past the limit were not signalled (and the
/// fds the host's other threads needed were taken meanwhile). With the
/// freeze not confirmed (so no member may be signalled by number), every
/// member must still get the signal.
pub(crate) fn pinning_a_tree_bigger_than_the_fd_limit_leaves_members_unsignalled() {
    childfd::force_fallback::no_cgroup_freeze();
    let tag = new_tag("fd-pressure");
    let script = format!("i=0; while [ $i -lt {MEMBERS} ]; do sleep 60 & i=$((i+1)); done; wait");
    let c = Command::new("sh")
        .args(["-c", &script])
        .env("CHILDFD_TEST_TAG", &tag)
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    let parent = leaf.parent().unwrap().to_path_buf();
    let listed = || {
        std::fs::read_to_string(leaf.join("cgroup.procs"))
            .unwrap()
            .lines()
            .count()
    };
    assert!(
        eventually(super::BOUND, || listed() == MEMBERS + 1
            && childfd_testbin::tagged(&tag)
                .iter()
                .filter(|p| p.comm == "sleep")
                .count()
                == MEMBERS),
        "tree did not start: {} listed",
        listed()
    );
    let open = childfd_testbin::open_fds().len() as u64;
    let old = set_nofile(open + FREE_FDS);
    let r = c.signal_tree(Signal::TERM);
    set_nofile(old);
    let gone = c.wait_tree_deadline(Instant::now() + Duration::from_secs(10));
    let left = childfd_testbin::tagged(&tag).len();
    c.kill_tree().unwrap();
    assert!(c.wait_tree_deadline(Instant::now() + super::BOUND).unwrap());
    c.wait().unwrap();
    drop(c);
    assert_no_survivors(&tag);
    assert!(eventually(super::BOUND, || {
        childfd_testbin::our_cgroup_leaves(&parent).is_empty()
    }));
    r.unwrap();
    assert!(
        matches!(gone, Ok(true)),
        "{left} of {} processes outlived the tree's SIGTERM with {FREE_FDS} free fds: {gone:?}",
        MEMBERS + 1
    );
}

/// Members of the small tree below.
const FEW_MEMBERS: usize = 3;

/// With so few fds free that even one member's pidfd left none to read
/// `cgroup.procs` again, signalling gave up altogether (`TreeError::Os`,
/// EMFILE) although the leader and other members could be reached. Every
/// fd budget from one (with none, not even the members can be listed) to
/// a few must give `Ok` or name the members left
/// out (`TreeError::MembersNotSignalled`).
pub(crate) fn one_free_fd_too_few_gives_up_signalling_the_whole_tree() {
    childfd::force_fallback::no_cgroup_freeze();
    let tag = new_tag("fd-starved");
    let script =
        format!("i=0; while [ $i -lt {FEW_MEMBERS} ]; do sleep 60 & i=$((i+1)); done; wait");
    let c = Command::new("sh")
        .args(["-c", &script])
        .env("CHILDFD_TEST_TAG", &tag)
        .containment(Containment::cgroup())
        .spawn()
        .unwrap();
    let leaf = c.cgroup_path().unwrap().to_path_buf();
    let parent = leaf.parent().unwrap().to_path_buf();
    let listed = || -> Vec<u32> {
        std::fs::read_to_string(leaf.join("cgroup.procs"))
            .unwrap()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    assert!(
        eventually(super::BOUND, || listed().len() == FEW_MEMBERS + 1),
        "tree did not start: {:?}",
        listed()
    );
    let members = listed();
    let mut results = Vec::new();
    for free in 1..8 {
        let old = set_nofile(limit_leaving_free(free));
        // SIGCONT: harmless to the running tree, so it can be sent again.
        let r = c.signal_tree(Signal::CONT);
        set_nofile(old);
        results.push((free, r));
    }
    c.kill_tree().unwrap();
    assert!(c.wait_tree_deadline(Instant::now() + super::BOUND).unwrap());
    c.wait().unwrap();
    drop(c);
    assert_no_survivors(&tag);
    assert!(eventually(super::BOUND, || {
        childfd_testbin::our_cgroup_leaves(&parent).is_empty()
    }));
    for (free, r) in results {
        match r {
            Ok(()) => {}
            Err(TreeError::MembersNotSignalled { members: left, .. }) => assert!(
                left.iter().all(|p| members.contains(p)),
                "{free} free fds: named {left:?}, not all members of {members:?}"
            ),
            Err(e) => panic!("{free} free fds: signal_tree gave up: {e:?}"),
        }
    }
}

/// The lowest fd limit under which exactly `free` fd numbers are unused
/// (fds are allocated lowest first, so gaps below count too).
fn limit_leaving_free(free: u64) -> u64 {
    let open = childfd_testbin::open_fds();
    (0..)
        .find(|&l: &u64| l - open.iter().filter(|&&fd| (fd as u64) < l).count() as u64 == free)
        .unwrap()
}
