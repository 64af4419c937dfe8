//! The chaos driver: sets the process up as a misbehaving host would be
//! (a subreaper with an orphan reaper, handlers for SIGINT and SIGUSR1,
//! fds near the top of its table), runs rounds until the time is up, and
//! prints the summary.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use childfd::{Command, Containment};

use crate::chaos::fds::Secrets;
use crate::checks::Baseline;
use crate::config::{Config, next_seed};
use crate::round::{self, Setup};
use crate::shared::{Shared, lock, percentiles};
use crate::sys;
use crate::work::Round;

/// Runs the driver; exit code 0 only if no violation was seen.
pub fn main(cfg: Config) -> ExitCode {
    sys::set_pdeathsig(libc::SIGKILL);
    for sig in [libc::SIGINT, libc::SIGUSR1] {
        sys::handle(sig);
    }
    sys::set_subreaper();
    let reaper = match childfd::reaper::Reaper::start() {
        Ok(r) => r,
        Err(e) => return fail(format!("orphan reaper: {e}")),
    };
    let setup = match setup() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let sh: &'static Shared = Box::leak(Box::new(Shared::new(cfg)));
    println!(
        "chaos: seed {:#x}, {:?}, rounds of {:?}, kinds {}, hogs {}, tolerance {:?}; pid reuse {}, cgroups {}",
        sh.cfg.seed,
        sh.cfg.duration,
        sh.cfg.round,
        sh.cfg.kinds,
        sh.cfg.hogs,
        sh.cfg.tolerance,
        if setup.pid_reuse {
            "forced via ns_last_pid"
        } else {
            "NOT AVAILABLE (no private PID namespace)"
        },
        if setup.round.cgroup_ok {
            "yes"
        } else {
            "NOT AVAILABLE"
        },
    );
    let start = Instant::now();
    let mut seed = sh.cfg.seed;
    let mut n = 0;
    while start.elapsed() + sh.cfg.round / 2 < sh.cfg.duration || n == 0 {
        round::run(sh, &setup, n, seed);
        n += 1;
        seed = next_seed(seed);
    }
    let orphans = reaper.reaped();
    drop(reaper);
    let _ = std::fs::remove_dir_all(&setup.round.scratch);
    println!("chaos: orphans reaped by the harness's orphan reaper: {orphans}");
    summary(sh, start.elapsed())
}

fn fail(e: String) -> ExitCode {
    eprintln!("chaos: cannot start: {e}");
    ExitCode::FAILURE
}

fn setup() -> Result<Setup, String> {
    let nofile = sys::raise_nofile();
    if nofile < 2048 {
        return Err(format!("RLIMIT_NOFILE is {nofile}; need 2048"));
    }
    let owned_lo = (nofile / 2).min(1 << 20) as i32;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let scratch = std::env::temp_dir().join(format!(
        "childfd-chaos-{}-{}",
        sys::getpid(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let secrets_dir = scratch.join("secrets");
    std::fs::create_dir_all(&secrets_dir).map_err(|e| e.to_string())?;
    let secrets = Secrets::create(&secrets_dir, 8).map_err(|e| e.to_string())?;
    let cgroup_ok = Command::new(childfd_testbin::EXIT0)
        .containment(Containment::cgroup())
        .status()
        .is_ok();
    // tokio's signal driver opens a socket pair once per process, the
    // first time a runtime is built: let that happen before the baseline.
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    );
    let base = Baseline {
        fds: childfd_testbin::open_fds(),
        owned_lo,
        cgroup_dir: childfd_testbin::own_cgroup_dir(),
        secrets: secrets_dir,
    };
    Ok(Setup {
        base,
        secrets,
        pid_reuse: crate::chaos::pidreuse::available(),
        round: Round {
            n: 0,
            seed: 0,
            tag: String::new(),
            fd_log: scratch.join("fds.log"),
            exe,
            cgroup_ok,
            scratch,
        },
    })
}

/// Prints the summary; the exit code (failure on any violation).
pub fn summary(sh: &Shared, took: Duration) -> ExitCode {
    let n = &sh.n;
    let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let spawns = g(&n.sup_spawns)
        + g(&n.output_spawns)
        + g(&n.plain_spawns)
        + g(&n.tokio_spawns)
        + g(&n.forked_spawns);
    let handled: u64 = [libc::SIGINT, libc::SIGUSR1]
        .iter()
        .map(|&s| sys::HANDLED[s as usize].load(Ordering::Relaxed))
        .sum();
    let violations = lock(&sh.violations).len();
    println!(
        "chaos: {} rounds in {took:.0?} (seed {:#x}, kinds {}): {spawns} spawns (Supervisor {}, output() {}, Command::spawn {}, childfd-tokio {}, in forked copies {}), {} processes; \
         signals sent {} (to the process {}, to its group {}, SIGSTOP/SIGCONT to tree members {}; handled SIGINT/SIGUSR1 {handled}); \
         forks {}; env changes {}; fd ops {} (sweeps {}); pid reuse: {} of {} aimed decoys got the reaped pid; decoys {}; \
         signals to reaped children's handles {}; fd reports checked {}; \
         timed out and SIGKILLed but not reaped within the drain bound (no status, as documented) {}",
        g(&n.rounds),
        sh.cfg.seed,
        sh.cfg.kinds,
        g(&n.sup_spawns),
        g(&n.output_spawns),
        g(&n.plain_spawns),
        g(&n.tokio_spawns),
        g(&n.forked_spawns),
        g(&n.processes),
        g(&n.sig_self) + g(&n.sig_group) + g(&n.sig_members),
        g(&n.sig_self),
        g(&n.sig_group),
        g(&n.sig_members),
        g(&n.forks),
        g(&n.env_changes),
        g(&n.fd_ops),
        g(&n.sweeps),
        g(&n.reuse_hits),
        g(&n.reuse_targets),
        g(&n.decoys),
        g(&n.stale_ops),
        g(&n.fd_reports),
        g(&n.killed_unreaped),
    );
    println!(
        "chaos: deadline lateness (report after the deadline) {}; wait-delay lateness (report after exit + wait-delay) {}; \
         allowed past the documented bound: {:?} + the machine's delay meanwhile; the machine's delay (a 5 ms sleep's oversleep) {}; load average {}",
        percentiles(&lock(&sh.deadline_late)),
        percentiles(&lock(&sh.wait_delay_late)),
        sh.cfg.tolerance,
        percentiles(&lock(&sh.probe_late)),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    println!("chaos: violations {violations}");
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
