//! One round: the work and the chaos run together for the round's length;
//! the work drains under chaos; the chaos stops; the checks run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use crate::chaos::{self, fds::Fds, fds::Secrets};
use crate::checks::{self, Baseline};
use crate::config::{Kind, next_seed};
use crate::decoy::Decoy;
use crate::shared::{Shared, lock};
use crate::work::{self, Round};

/// What stays the same across rounds.
#[derive(Debug)]
pub struct Setup {
    /// The checks' baseline.
    pub base: Baseline,
    /// Files no child may see.
    pub secrets: Secrets,
    /// A template for each round (tag, seed and log change).
    pub round: Round,
    /// Whether `ns_last_pid` can be written.
    pub pid_reuse: bool,
}

/// Runs round `n` with `seed`.
pub fn run(sh: &'static Shared, setup: &Setup, n: u64, seed: u64) {
    let mut round = setup.round.clone();
    round.n = n;
    round.seed = seed;
    round.tag = childfd_testbin::new_tag("chaos");
    round.fd_log = round.scratch.join(format!("fds-{n}.log"));
    if let Err(e) = std::fs::write(&round.fd_log, "") {
        return sh.violation(format!("fd log: {e}"));
    }
    sh.round.store(n, Ordering::Relaxed);
    sh.seed.store(seed, Ordering::Relaxed);
    sh.stop_work.store(false, Ordering::Relaxed);
    sh.stop_chaos.store(false, Ordering::Relaxed);
    let decoys = Mutex::new(Vec::new());
    for _ in 0..2 {
        if let Some(d) = Decoy::start(&round.exe, false) {
            Shared::bump(&sh.n.decoys);
            lock(&decoys).push(d);
        }
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| watchdog(sh, &done));
        let work = start_work(s, sh, &round);
        let chaos = start_chaos(s, sh, setup, &round, &decoys);
        let end = Instant::now() + sh.cfg.round;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        sh.stop_work.store(true, Ordering::Relaxed);
        {
            let _op = sh.op(
                "the work's drain at the end of the round",
                Duration::from_secs(60),
            );
            join(sh, work);
        }
        sh.stop_chaos.store(true, Ordering::Relaxed);
        let _op = sh.op("the chaos threads' stop", Duration::from_secs(60));
        join(sh, chaos);
        done.store(true, Ordering::Relaxed);
    });
    // The chaos may have left the process's group stopped members (none
    // of ours) or pending SIGCONTs: make sure nothing stays stopped.
    crate::sys::kill(-crate::sys::getpgrp(), libc::SIGCONT);
    for d in lock(&decoys).drain(..) {
        if let Some(problem) = d.check_and_end() {
            sh.violation(problem);
        }
    }
    checks::after_round(sh, &round, &setup.base);
    Shared::bump(&sh.n.rounds);
}

type Handles<'s> = Vec<(&'static str, ScopedJoinHandle<'s, ()>)>;

fn start_work<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    sh: &'static Shared,
    round: &'s Round,
) -> Handles<'s> {
    let seed = |i: u64| next_seed(round.seed ^ (i << 32));
    let mut v: Handles<'s> = vec![(
        "supervisor",
        s.spawn(move || work::supervisor::run(sh, round, seed(1))),
    )];
    v.push((
        "tokio",
        s.spawn(move || work::asynch::run(sh, round, seed(6))),
    ));
    for i in 0..2 {
        v.push((
            "output",
            s.spawn(move || work::output::run(sh, round, seed(2 + i))),
        ));
        v.push((
            "plain",
            s.spawn(move || work::plain::run(sh, round, seed(4 + i), i as usize)),
        ));
    }
    v
}

fn start_chaos<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    sh: &'s Shared,
    setup: &'s Setup,
    round: &'s Round,
    decoys: &'s Mutex<Vec<Decoy>>,
) -> Handles<'s> {
    let k = sh.cfg.kinds;
    let seed = |i: u64| next_seed(round.seed ^ (i << 40));
    let mut v: Handles<'s> = vec![("probe", s.spawn(move || sh.probe()))];
    if k.has(Kind::Tstp) || k.has(Kind::Signals) {
        v.push((
            "signals",
            s.spawn(move || chaos::signals::to_self(sh, seed(1))),
        ));
    }
    if k.has(Kind::Stops) {
        v.push((
            "stops",
            s.spawn(move || chaos::signals::stop_members(sh, round, seed(2))),
        ));
    }
    if k.has(Kind::Env) {
        v.push(("env", s.spawn(move || chaos::env(sh, seed(3)))));
    }
    if k.has(Kind::Fds) {
        let lo = setup.base.owned_lo;
        v.push((
            "fds",
            s.spawn(move || Fds::run(sh, &setup.secrets, lo, seed(4))),
        ));
    }
    if k.has(Kind::Fork) {
        v.push((
            "fork",
            s.spawn(move || chaos::fork::run(sh, round, &setup.secrets, seed(5))),
        ));
    }
    if k.has(Kind::PidReuse) && setup.pid_reuse {
        let exe = &round.exe;
        v.push((
            "pidreuse",
            s.spawn(move || chaos::pidreuse::run(sh, exe, decoys, seed(6))),
        ));
    }
    if k.has(Kind::Hogs) {
        for _ in 0..sh.cfg.hogs {
            v.push(("hog", s.spawn(move || chaos::hog(sh))));
        }
    }
    v
}

fn join(sh: &Shared, handles: Handles<'_>) {
    for (name, h) in handles {
        if h.join().is_err() {
            sh.violation(format!("the {name} thread panicked"));
        }
    }
}

/// Reports operations past their bound; a hang cannot end by itself, so
/// the run ends here (the harness's init kills what is left).
fn watchdog(sh: &Shared, done: &AtomicBool) {
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let overdue = sh.overdue();
        if overdue.is_empty() {
            continue;
        }
        for (what, t) in &overdue {
            sh.violation(format!("hung: {what} has not returned after {t:.1?}"));
        }
        eprintln!("chaos: state at the hang:\n{}", diagnose());
        crate::driver::summary(sh, Duration::ZERO);
        eprintln!("chaos: ending the run: a hung operation cannot be recovered");
        std::process::exit(1);
    }
}

/// The driver's threads (name, state, kernel wait channel) and its live
/// children (pid, state, group, name): where a hang sits.
fn diagnose() -> String {
    let mut out = String::new();
    let tasks = std::fs::read_dir("/proc/self/task").map(|d| d.flatten().collect::<Vec<_>>());
    for t in tasks.unwrap_or_default() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        out += &format!(
            "  thread {} `{}` state {} in {}\n",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            state.unwrap_or("?"),
            read("wchan").trim()
        );
    }
    for c in childfd_testbin::children()
        .iter()
        .filter(|c| c.state != 'Z')
    {
        let read =
            |f: &str| std::fs::read_to_string(format!("/proc/{}/{f}", c.pid)).unwrap_or_default();
        out += &format!(
            "  child {} state {} group {} `{}` in {}\n",
            c.pid,
            c.state,
            c.pgrp,
            c.comm,
            read("wchan").trim()
        );
        if c.state == 'D' || c.state == 'T' {
            out += &read("stack");
        }
    }
    let stack = std::fs::read_dir("/proc/self/task").map(|d| d.flatten().collect::<Vec<_>>());
    for t in stack.unwrap_or_default() {
        let st = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        if st
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("D")
        {
            out += &format!(
                "  thread {} kernel stack:\n",
                t.file_name().to_string_lossy()
            );
            out += &std::fs::read_to_string(t.path().join("stack")).unwrap_or_default();
        }
    }
    out
}
