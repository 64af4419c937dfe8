//! The work run under chaos: random trees through the Supervisor,
//! `output()`, plain `Command::spawn` and `childfd-tokio`, each result
//! checked against the tree's spec.

pub mod asynch;
pub mod limits;
pub mod output;
pub mod plain;
pub mod supervisor;

use std::path::PathBuf;

use childfd::{Command, Containment, ExitStatus};
use childfd_testbin::Rng;
use childfd_testbin::tree::{self, Node};

use crate::shared::Shared;

/// What every job of a round shares.
#[derive(Debug, Clone)]
pub struct Round {
    /// The round number.
    pub n: u64,
    /// Seed of the round.
    pub seed: u64,
    /// `CHILDFD_TEST_TAG` of every tree of the round.
    pub tag: String,
    /// The fd log every tree process appends to.
    pub fd_log: PathBuf,
    /// This program (trees run as it).
    pub exe: PathBuf,
    /// Whether cgroup containment works here.
    pub cgroup_ok: bool,
    /// Where plain spawns' stdout files go.
    pub scratch: PathBuf,
}

impl Round {
    /// A command running `node`, tagged, logging its fds.
    pub fn command(&self, node: &Node, containment: Containment) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env(tree::ENV, node.to_string())
            .env(tree::FD_LOG_ENV, &self.fd_log)
            .env("CHILDFD_TEST_TAG", &self.tag)
            .containment(containment);
        cmd
    }

    /// A random containment and a random tree it can hold: `setsid`
    /// escapees only where containment catches them (cgroup), self-stops
    /// only if `stops`.
    pub fn random_tree(&self, r: &mut Rng, stops: bool) -> (Node, Containment, &'static str) {
        let mode = r.next(if self.cgroup_ok { 3 } else { 2 });
        let mut node = tree::random(r, 2, mode == 2);
        if !stops {
            unstop(&mut node);
        }
        let (c, name) = match mode {
            0 => (Containment::ProcessGroup, "pgroup"),
            1 => (Containment::Session, "session"),
            _ => (Containment::cgroup(), "cgroup"),
        };
        (node, c, name)
    }
}

fn unstop(n: &mut Node) {
    n.stop = false;
    n.children.iter_mut().for_each(unstop);
}

/// The status the tree's root ends with by itself.
pub fn own_status(node: &Node) -> (Option<i32>, Option<i32>) {
    match node.signal {
        Some(s) => (None, Some(s)),
        None => (Some(i32::from(node.code)), None),
    }
}

/// Checks `status` is the tree's own, or (with `killed`) one of the
/// signals childfd ends trees with (SIGTERM, SIGKILL).
pub fn check_status(sh: &Shared, what: &str, node: &Node, status: ExitStatus, killed: bool) {
    let got = (status.code(), status.signal().map(|s| s.as_raw()));
    let own = own_status(node);
    let by_us = killed && matches!(got, (None, Some(9 | 15)));
    if got != own && !by_us {
        sh.violation(format!(
            "{what}: status {status} is not the tree's own ({}) for spec `{node}`",
            describe(own)
        ));
    }
}

fn describe(s: (Option<i32>, Option<i32>)) -> String {
    match s {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => "nothing".into(),
    }
}
