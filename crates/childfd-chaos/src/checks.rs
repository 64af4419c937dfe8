//! The end-of-round checks: no survivor, no zombie, no leaked fd, no
//! cgroup leaf, no tree process that held an fd it was not given.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use childfd_testbin::tree::parse_fd_report;

use crate::shared::Shared;
use crate::work::Round;

/// What a round's checks compare with.
#[derive(Debug)]
pub struct Baseline {
    /// The driver's fds before the first round.
    pub fds: BTreeSet<i32>,
    /// fds at or above this belong to the chaos (see `chaos::fds`).
    pub owned_lo: i32,
    /// Where childfd makes cgroup leaves.
    pub cgroup_dir: Option<std::path::PathBuf>,
    /// The directory of the files no child may see.
    pub secrets: std::path::PathBuf,
}

/// Runs every check of the round, recording violations.
pub fn after_round(sh: &Shared, round: &Round, base: &Baseline) {
    survivors(sh, &round.tag);
    zombies(sh);
    fds(sh, base);
    leaves(sh, base);
    fd_log(sh, &round.fd_log, &base.secrets);
}

fn survivors(sh: &Shared, tag: &str) {
    let gone = childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::tagged(tag).is_empty()
    });
    if !gone {
        let left = childfd_testbin::tagged(tag);
        sh.violation(format!(
            "{} tree processes survived the round: {left:?}",
            left.len()
        ));
        childfd_testbin::kill_tagged(tag);
    }
}

fn zombies(sh: &Shared) {
    let clear = childfd_testbin::eventually(Duration::from_secs(10), || {
        let _ = childfd::reaper::reap_orphans();
        childfd_testbin::children().is_empty() && childfd::pending_reaps() == 0
    });
    if !clear {
        let left = childfd_testbin::children();
        sh.violation(format!(
            "children left after the round (zombies or unreaped): {left:?}, pending reaps {}",
            childfd::pending_reaps()
        ));
        for p in &left {
            crate::sys::kill(p.pid, libc::SIGKILL);
            crate::sys::waitpid(p.pid, 0);
        }
    }
}

fn fds(sh: &Shared, base: &Baseline) {
    let leaked = || -> Vec<i32> {
        childfd_testbin::leaked_fds_since(&base.fds)
            .into_iter()
            .filter(|&fd| fd < base.owned_lo)
            .collect()
    };
    if !childfd_testbin::eventually(Duration::from_secs(5), || leaked().is_empty()) {
        let desc: Vec<(i32, String)> = childfd_testbin::describe_fds()
            .into_iter()
            .filter(|(fd, _)| leaked().contains(fd))
            .collect();
        sh.violation(format!("leaked fds: {desc:?}"));
    }
}

fn leaves(sh: &Shared, base: &Baseline) {
    let Some(dir) = &base.cgroup_dir else { return };
    let ours = || -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("childfd-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !childfd_testbin::eventually(Duration::from_secs(5), || ours().is_empty()) {
        sh.violation(format!(
            "cgroup leaves left in {}: {:?}",
            dir.display(),
            ours()
        ));
        for n in ours() {
            let _ = std::fs::remove_dir(dir.join(n));
        }
    }
}

/// Every tree process listed its fds first thing: only 0, 1 and 2, and
/// none of them one of the files the chaos opened.
fn fd_log(sh: &Shared, log: &Path, secrets: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let secret = secrets.to_string_lossy();
    // A process killed while it wrote its line leaves it cut short (and
    // the next line glued to it): judge every complete `pid=` record.
    let records = text
        .lines()
        .flat_map(|l| l.split("pid=").filter(|r| !r.is_empty()))
        .map(|r| format!("pid={}", r.trim_end_matches('\t')));
    for line in records {
        let Some(rep) = parse_fd_report(&line).or_else(|| parse_cut_short(&line)) else {
            sh.violation(format!("unreadable fd report `{line}`"));
            continue;
        };
        Shared::bump(&sh.n.fd_reports);
        let foreign: Vec<&(i32, String)> = rep
            .fds
            .iter()
            .filter(|(fd, target)| *fd > 2 || target.contains(&*secret))
            .collect();
        if !foreign.is_empty() {
            sh.violation(format!(
                "tree process {} held fds it was not given: {foreign:?}",
                rep.pid
            ));
        }
    }
    let _ = std::fs::remove_file(log);
}

/// A record whose last entry was cut short: the complete entries.
fn parse_cut_short(line: &str) -> Option<childfd_testbin::tree::FdReport> {
    let (head, _) = line.rsplit_once('\t')?;
    parse_fd_report(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn fd_reports_with_a_foreign_fd_or_a_secret_are_violations() {
        let dir = std::env::temp_dir().join(format!("chaos-checks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("fds.log");
        let secrets = dir.join("secrets");
        let lines = [
            "pid=10\t0=/dev/null\t1=pipe:[5]\t2=pipe:[6]".to_string(),
            "pid=11\t0=/dev/null\t1=pipe:[5]\t2=pipe:[6]\t3=/etc/passwd".to_string(),
            format!(
                "pid=12\t0=/dev/null\t1={}/secret-1\t2=pipe:[6]",
                secrets.display()
            ),
            // killed mid-write, the next record glued on
            "pid=13\t0=/dev/null\t1=pipe:[5]\t2pid=14\t0=/dev/null\t1=pipe:[5]\t2=pipe:[6]".into(),
        ];
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let sh = Shared::new(Config::parse(&[]).unwrap());
        fd_log(&sh, &log, &secrets);
        let v = crate::shared::lock(&sh.violations);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].what.contains("tree process 11") && v[0].what.contains("/etc/passwd"));
        assert!(v[1].what.contains("tree process 12"));
        assert_eq!(
            sh.n.fd_reports.load(std::sync::atomic::Ordering::Relaxed),
            5
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
