//! The harness's init: the driver's parent, in a session of its own (so
//! no signal the chaos sends to "its group" reaches cargo or the shell).
//!
//! Normally PID 1 of a private PID namespace (`cargo xtask chaos` starts
//! it with `unshare --pid --fork --mount-proc`): then pids can be forced
//! with `ns_last_pid`, and when it exits the kernel kills whatever is left
//! in the namespace. It puts the run in a cgroup of its own, starts the
//! driver in a process group of its own in its session (a group with a
//! parent outside it in the same session is not orphaned, so SIGTSTP
//! really stops it), continues the driver whenever the chaos stopped it
//! (as a shell's `fg`), and bounds the whole run.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use childfd_testbin::Rng;

use crate::config::Config;
use crate::sys;

/// Runs the init; `args` are passed on to the driver.
pub fn main(cfg: &Config, args: &[String]) -> ExitCode {
    let _ = sys::setsid();
    let pid1 = sys::getpid() == 1;
    if pid1 {
        sys::set_pdeathsig(libc::SIGKILL);
    } else {
        sys::set_subreaper();
    }
    let cg = RunCgroup::enter();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("current_exe: {e}")),
    };
    let driver = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .arg("driver")
            .args(args)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
    };
    let driver = match driver {
        Ok(c) => c.id() as i32,
        Err(e) => return fail(format!("cannot start the driver: {e}")),
    };
    let bound = cfg.duration + cfg.round * 2 + Duration::from_secs(120);
    let code = supervise(driver, cfg.seed, Instant::now() + bound);
    if pid1 {
        sys::kill(-1, libc::SIGKILL);
        while sys::waitpid(-1, 0).is_some() {}
    }
    if let Some(cg) = cg {
        cg.leave();
    }
    code
}

fn fail(e: String) -> ExitCode {
    eprintln!("chaos init: {e}");
    ExitCode::FAILURE
}

/// Waits for the driver, continuing it whenever it is stopped; reaps any
/// orphan that reaches init. The driver's exit code.
///
/// A stop is normally reported by `waitpid(WUNTRACED)`. But a group stop
/// completes (and is reported) only once every thread has stopped, and a
/// thread waiting in a vfork-style spawn for a child that never execs
/// cannot stop: the process then sits half stopped with no report, its
/// watchdog thread stopped too. So a driver seen stopped in `/proc` for
/// half a second is continued as well, which lets its watchdog report
/// the hung spawn.
fn supervise(driver: i32, seed: u64, end: Instant) -> ExitCode {
    let mut r = Rng(seed | 1);
    let (mut continued, mut unreported) = (0u64, 0u64);
    let mut stopped_since: Option<Instant> = None;
    loop {
        if Instant::now() > end {
            eprintln!("chaos init: the driver overran its bound; killing it");
            sys::kill(driver, libc::SIGKILL);
        }
        let Some((pid, st)) = sys::waitpid(-1, libc::WUNTRACED | libc::WNOHANG) else {
            std::thread::sleep(Duration::from_millis(2));
            let stopped = childfd_testbin::read_stat(driver).is_some_and(|p| p.state == 'T');
            let since = *stopped_since.get_or_insert_with(Instant::now);
            if !stopped {
                stopped_since = None;
            } else if since.elapsed() > Duration::from_millis(500) {
                sys::kill(-driver, libc::SIGCONT);
                unreported += 1;
                stopped_since = None;
            }
            continue;
        };
        if pid != driver {
            continue;
        }
        if libc::WIFSTOPPED(st) {
            std::thread::sleep(Duration::from_millis(1 + r.next(30)));
            sys::kill(-driver, libc::SIGCONT);
            continued += 1;
            continue;
        }
        println!(
            "chaos init: continued the stopped driver {continued} times (and {unreported} times when its stop was never reported)"
        );
        if libc::WIFEXITED(st) {
            return ExitCode::from(libc::WEXITSTATUS(st) as u8);
        }
        eprintln!(
            "chaos init: the driver died of signal {}",
            libc::WTERMSIG(st)
        );
        return ExitCode::FAILURE;
    }
}

/// A cgroup of the run's own under init's cgroup, so that the leaves the
/// run creates and leaves behind are its own and are removed at the end.
struct RunCgroup {
    parent: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl RunCgroup {
    fn enter() -> Option<RunCgroup> {
        let parent = childfd_testbin::own_cgroup_dir()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!("chaos-run-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        if std::fs::write(dir.join("cgroup.procs"), "0").is_err() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(RunCgroup { parent, dir })
    }

    fn leave(self) {
        let _ = std::fs::write(self.parent.join("cgroup.procs"), "0");
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        for _ in 0..200 {
            let leaves: Vec<_> = std::fs::read_dir(&self.dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            for l in &leaves {
                let _ = std::fs::remove_dir(l);
            }
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("chaos init: could not remove {}", self.dir.display());
    }
}
