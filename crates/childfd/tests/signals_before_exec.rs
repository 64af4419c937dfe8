//! No signal the caller did not send to the child itself may stop or kill
//! a child before it has exec'd, whatever its number: glibc's internal
//! signals (32, 33) and the parent-death signal included.
//!
//! Each scenario runs in its own process, in its own process group (`main`
//! re-runs this binary with `CHILDFD_SIGNALS_SCENARIO` set), so a signal
//! flood to "the caller's group" never reaches cargo. A scenario that does
//! not finish within its bound is killed with its group and fails.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use childfd::{Command, Containment, Signal, SpawnStage};
use childfd_testbin::{EXIT0, PAUSE};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "glibc_internal_signals_32_33_never_kill_a_child_before_exec",
        glibc_internal_signals_32_33_never_kill_a_child_before_exec,
    ),
    (
        "stop_signal_as_parent_death_signal_never_hangs_a_spawn_in_callers_group",
        stop_signal_as_parent_death_signal_never_hangs_a_spawn_in_callers_group,
    ),
    (
        "parent_death_signal_flood_never_makes_a_missing_program_look_spawned",
        parent_death_signal_flood_never_makes_a_missing_program_look_spawned,
    ),
    (
        "a_child_killed_before_exec_is_never_reported_spawned",
        a_child_killed_before_exec_is_never_reported_spawned,
    ),
    (
        "ctrl_c_while_an_inherit_child_is_spawned_reaches_the_child_after_exec",
        ctrl_c_while_an_inherit_child_is_spawned_reaches_the_child_after_exec,
    ),
    (
        "a_child_killed_before_exec_is_reported_at_its_stage_not_as_a_failed_clone",
        a_child_killed_before_exec_is_reported_at_its_stage_not_as_a_failed_clone,
    ),
];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    if std::env::var_os("CHILDFD_SIGNALS_CTRLC_HOST").is_some() {
        ctrl_c_host();
    }
    childfd_testbin::scenario::main("CHILDFD_SIGNALS_SCENARIO", SCENARIOS, SCENARIO_LIMIT);
}

/// The kernel's `struct sigaction` (x86_64, aarch64, riscv64 layout).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

extern "C" fn ignore(_: libc::c_int) {}

/// Gives `sig` a handler that does nothing in this (scenario) process, so
/// it survives the signals it floods its own group with. Through the raw
/// system call: glibc's `sigaction` refuses its internal signals 32 and
/// 33. The `sa_restorer` is glibc's, read back from a `SIGUSR2` handler
/// installed through glibc.
fn install_noop_handler(sig: i32) {
    // SAFETY: a handler that touches nothing; the structs are plain data
    // of the kernel's layout and size.
    #[allow(clippy::multiple_unsafe_ops_per_block)]
    unsafe {
        libc::signal(libc::SIGUSR2, ignore as *const () as usize);
        let mut model: KernelSigaction = std::mem::zeroed();
        let r = libc::syscall(
            libc::SYS_rt_sigaction,
            libc::SIGUSR2,
            std::ptr::null::<KernelSigaction>(),
            &mut model,
            8,
        );
        assert_eq!(r, 0);
        let act = KernelSigaction {
            handler: ignore as *const () as usize,
            flags: model.flags | libc::SA_RESTART as u64,
            restorer: model.restorer,
            mask: 0,
        };
        let r = libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act,
            std::ptr::null_mut::<KernelSigaction>(),
            8,
        );
        assert_eq!(r, 0, "rt_sigaction({sig})");
    }
}

/// Floods this scenario's own process group with `signals` (after giving
/// each a no-op handler here) until the returned flag is set; the thread
/// returns how many it sent.
fn flood_own_group(signals: &'static [i32]) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    for &sig in signals {
        install_noop_handler(sig);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for &sig in signals {
                    // SAFETY: signals our own process group (this scenario's).
                    unsafe { libc::kill(0, sig) };
                    sent += 1;
                }
            }
            sent
        })
    };
    (stop, flood)
}

/// Waits for `c` (at most 30 s) and reaps it. `Ok(None)`: it exited 0;
/// `Ok(Some(sig))`: it was killed by `sig` after it had exec'd `program`
/// (its zombie bears the program's name); `Err`: anything else.
fn died_after_exec(c: &childfd::Child, program: &str) -> Result<Option<i32>, String> {
    let mut pfd = libc::pollfd {
        fd: c.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // The flood interrupts poll (EINTR): poll again, 30 s in all.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if r != -1 || left.is_zero() {
            break r;
        }
    };
    if r != 1 {
        let _ = c.kill();
        let _ = c.wait();
        return Err(format!("still running after 30 s (poll {r})"));
    }
    // Before reaping: the zombie's name says whether it had exec'd.
    let comm = childfd_testbin::read_stat(c.id() as i32).map(|p| p.comm);
    let st = c.wait().map_err(|e| e.to_string())?;
    if st.success() {
        return Ok(None);
    }
    let name = std::path::Path::new(program)
        .file_name()
        .unwrap()
        .to_string_lossy();
    let execd = comm
        .as_deref()
        .is_some_and(|n| !n.is_empty() && name.starts_with(n));
    match st.signal() {
        Some(sig) if execd => Ok(Some(sig.as_raw())),
        _ => Err(format!("ended with {st} as {comm:?}, before exec")),
    }
}

/// Issue: the spawning thread blocked "every" signal with `sigfillset` and
/// `pthread_sigmask`, which leave out glibc's internal signals 32 and 33;
/// the child inherited them unblocked and, its handlers reset, died of one
/// sent to the caller's group before `execve`: a missing program was
/// reported spawned and `true` died of signal 32. Default mode: the child
/// leaves the group before it unblocks anything, so every `true` exits 0.
/// `Inherit` mode: the child stays in the group, so `true` may die of the
/// flood after exec, never before.
fn glibc_internal_signals_32_33_never_kill_a_child_before_exec() {
    const FLOOD: &[i32] = &[32, 33];
    let (stop, flood) = flood_own_group(FLOOD);
    let mut wrong = Vec::new();
    let mut after_exec = 0;
    for inherit in [false, true] {
        let mode = if inherit { "Inherit" } else { "default" };
        let mut missing = Command::new("/nonexistent/childfd-missing");
        let mut exit0 = Command::new(EXIT0);
        if inherit {
            missing.containment(Containment::Inherit);
            exit0.containment(Containment::Inherit);
        }
        for i in 0..1000 {
            match missing.spawn() {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => wrong.push(format!("{mode} {i}: missing gave {e}")),
                Ok(c) => {
                    let st = c.wait();
                    wrong.push(format!("{mode} {i}: missing program spawned, then {st:?}"));
                }
            }
            match exit0.spawn() {
                Ok(c) => match died_after_exec(&c, EXIT0) {
                    Ok(None) => {}
                    Ok(Some(sig)) if inherit && FLOOD.contains(&sig) => after_exec += 1,
                    Ok(Some(sig)) => wrong.push(format!("{mode} {i}: exit0 died of signal {sig}")),
                    Err(e) => wrong.push(format!("{mode} {i}: exit0: {e}")),
                },
                Err(e) => wrong.push(format!("{mode} {i}: exit0 failed: {e}")),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong spawns, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!(
        "  4,000 spawns beside {sent} signals 32/33 to the caller's group: every missing \
         program NotFound, no child killed before exec ({after_exec} in Inherit mode after it)"
    );
}

/// The two ways a child stays reachable by signals to the caller's group:
/// `Inherit`, and joining the caller's own (existing) group.
fn callers_group_commands(program: &str) -> [Command; 2] {
    let mut inherit = Command::new(program);
    inherit.containment(Containment::Inherit);
    let mut join = Command::new(program);
    // SAFETY: getpgrp cannot fail.
    let own = unsafe { libc::getpgrp() } as u32;
    join.containment(Containment::JoinGroup(own));
    [inherit, join]
}

/// Runs `f` on a thread; panics if it does not finish within `limit`
/// (the scenario then ends, and its group is killed).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => {
            let stuck = childfd_testbin::children();
            panic!("{what} did not finish within {limit:?}; children then: {stuck:?}");
        }
    }
}

#[track_caller]
fn assert_none_wrong(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{} wrong spawns, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Issue: a child that stays in the caller's group until `execve` kept
/// its parent-death signal at `SIG_DFL`; with a stop signal as the
/// parent-death signal, one sent to the group stopped the `CLONE_VFORK`
/// child and `spawn` hung for ever.
fn stop_signal_as_parent_death_signal_never_hangs_a_spawn_in_callers_group() {
    const FLOOD: &[i32] = &[libc::SIGTSTP];
    let (stop, flood) = flood_own_group(FLOOD);
    let wrong = bounded(
        "1,000 spawns with pdeathsig SIGTSTP under a SIGTSTP flood",
        Duration::from_secs(60),
        || {
            let mut cmds = callers_group_commands(EXIT0);
            for c in &mut cmds {
                c.pdeathsig(Signal::new(libc::SIGTSTP).unwrap());
            }
            let mut wrong = Vec::new();
            for i in 0..1000 {
                match cmds[i % 2].spawn() {
                    Ok(c) => {
                        // A SIGTSTP after exec may stop the program.
                        let _ = c.kill();
                        let st = c.wait_timeout(Duration::from_secs(30)).unwrap();
                        if !st.is_some_and(|s| s.success() || s.signal().is_some()) {
                            wrong.push(format!("{i}: child ended with {st:?}"));
                        }
                    }
                    Err(e) => wrong.push(format!("{i}: {e}")),
                }
            }
            wrong
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_none_wrong(&wrong);
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!("  1,000 spawns with pdeathsig SIGTSTP beside {sent} SIGTSTP, none hung");
}

/// Issue: in the caller's group, a parent-death signal of SIGTERM or
/// SIGHUP sent to the group killed the child before `execve`: a missing
/// program was reported spawned, and `true` died before it was `true`.
fn parent_death_signal_flood_never_makes_a_missing_program_look_spawned() {
    const FLOOD: &[i32] = &[libc::SIGTERM, libc::SIGHUP];
    let (stop, flood) = flood_own_group(FLOOD);
    let (wrong, after_exec) = bounded(
        "2,000 spawns with a parent-death signal under a flood of it",
        Duration::from_secs(90),
        || {
            let mut wrong = Vec::new();
            let mut after_exec = 0;
            for (i, sig) in [libc::SIGTERM, libc::SIGHUP]
                .into_iter()
                .cycle()
                .take(1000)
                .enumerate()
            {
                let sig = Signal::new(sig).unwrap();
                let mut missing = callers_group_commands("/nonexistent/childfd-missing");
                let mut exit0 = callers_group_commands(EXIT0);
                missing[i % 2].pdeathsig(sig);
                exit0[i % 2].pdeathsig(sig);
                match missing[i % 2].spawn() {
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => wrong.push(format!("{i}: missing gave {e}")),
                    Ok(c) => {
                        let st = c.wait();
                        wrong.push(format!("{i}: missing program spawned, then {st:?}"));
                    }
                }
                match exit0[i % 2].spawn() {
                    Ok(c) => match died_after_exec(&c, EXIT0) {
                        Ok(None) => {}
                        Ok(Some(sig)) if FLOOD.contains(&sig) => after_exec += 1,
                        Ok(Some(sig)) => wrong.push(format!("{i}: exit0 died of signal {sig}")),
                        Err(e) => wrong.push(format!("{i}: exit0: {e}")),
                    },
                    Err(e) => wrong.push(format!("{i}: exit0 failed: {e}")),
                }
            }
            (wrong, after_exec)
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_none_wrong(&wrong);
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!(
        "  2,000 spawns with pdeathsig SIGTERM/SIGHUP beside {sent} of them: every missing \
         program NotFound, no child killed before exec ({after_exec} after it)"
    );
}

/// The host of the Ctrl-C scenario (this binary with
/// `CHILDFD_SIGNALS_CTRLC_HOST`), in a process group of its own with
/// SIGINT at its default: spawns `pause` in `Inherit` mode, and the
/// child's `pre_exec` closure sends SIGINT to the group, as a terminal's
/// Ctrl-C would while the spawn is under way. Never returns normally: the
/// SIGINT ends it.
fn ctrl_c_host() -> ! {
    // SIGINT at its default whatever this test was started with (a
    // non-interactive shell starts background jobs with SIGINT ignored,
    // and an ignored SIGINT is inherited by the host and the child).
    // SAFETY: sets a disposition to SIG_DFL; no handler involved.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let mut cmd = Command::new(PAUSE);
    cmd.containment(Containment::Inherit);
    let ctrl_c = || {
        // SAFETY: kill is async-signal-safe; it signals our own group.
        unsafe { libc::kill(0, libc::SIGINT) };
        Ok(())
    };
    // SAFETY: the closure only calls kill.
    unsafe { cmd.pre_exec(ctrl_c) };
    let child = cmd.spawn();
    // Only reached if the SIGINT did not end this host.
    println!(
        "host survived its Ctrl-C: spawn gave {:?}",
        child.as_ref().map(|c| c.id())
    );
    std::process::exit(3);
}

/// Issue: in `Inherit` mode, a Ctrl-C (SIGINT to the caller's group) that
/// arrived while the child was being spawned was swallowed by the child's
/// catching handler: the host died of it, but the child exec'd and ran on
/// as an orphan (with std, it dies with the group). It must reach the
/// program after `execve`, as if it had arrived just after.
fn ctrl_c_while_an_inherit_child_is_spawned_reaches_the_child_after_exec() {
    // The host's child, orphaned when the host dies, comes to us.
    childfd::reaper::become_subreaper().unwrap();
    let host = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CHILDFD_SIGNALS_CTRLC_HOST", "1")
        .env_remove("CHILDFD_SIGNALS_SCENARIO")
        .process_group(0)
        .spawn()
        .unwrap();
    let host_pid = host.id() as i32;
    std::mem::forget(host); // reaped below with the orphan
    let mut ended: Vec<(i32, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waits for any child of this process, without blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid > 0 {
            let how = if libc::WIFSIGNALED(status) {
                format!("signal {}", libc::WTERMSIG(status))
            } else {
                format!("exit {}", libc::WEXITSTATUS(status))
            };
            ended.push((pid, how));
            continue;
        }
        if pid < 0 {
            break; // no child left
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = childfd_testbin::children();
    for p in &left {
        childfd_testbin::kill(p.pid, libc::SIGKILL);
    }
    // SAFETY: reaps what was just killed (bounded: SIGKILL cannot be held).
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::__WALL) } > 0 {}
    assert!(
        left.is_empty(),
        "still running after the Ctrl-C: {left:?}; ended: {ended:?}"
    );
    let sigint = format!("signal {}", libc::SIGINT);
    assert!(
        ended
            .iter()
            .any(|(p, how)| *p == host_pid && *how == sigint),
        "the host did not die of its SIGINT: {ended:?}"
    );
    assert!(
        ended
            .iter()
            .any(|(p, how)| *p != host_pid && *how == sigint),
        "the child did not die of the SIGINT: {ended:?}"
    );
    println!("  the Ctrl-C during the spawn ended the host and, after exec, the child: {ended:?}");
}

/// Issue: a child that died before `execve` of a signal it cannot catch
/// (SIGKILL; here sent by its own `pre_exec` closure, as anyone who found
/// its pid could) left no error behind, and the spawn reported it spawned.
fn a_child_killed_before_exec_is_never_reported_spawned() {
    for mode in [Containment::ProcessGroup, Containment::Inherit] {
        let mut cmd = Command::new(EXIT0);
        cmd.containment(mode.clone());
        let die = || {
            // The fork-style child's own pid (getpid is async-signal-safe).
            let me = std::process::id() as i32;
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(me, libc::SIGKILL) };
            Ok(())
        };
        // SAFETY: the closure only calls getpid and kill.
        unsafe { cmd.pre_exec(die) };
        match cmd.spawn() {
            Ok(c) => {
                let st = c.wait();
                panic!("{mode:?}: a child killed before exec was reported spawned, then {st:?}");
            }
            Err(e) => println!("  {mode:?}: {e}"),
        }
    }
    assert!(childfd_testbin::children().is_empty());
}

/// Issue: a child that died of a signal in its `pre_exec` step was
/// reported as `clone failed: the child died before execve (wait status
/// Ok(Some(9)))`: the clone had worked, and the stage and the reason were
/// hidden. The error names the step the child died in and how it ended.
fn a_child_killed_before_exec_is_reported_at_its_stage_not_as_a_failed_clone() {
    for mode in [Containment::ProcessGroup, Containment::Inherit] {
        let mut cmd = Command::new(EXIT0);
        cmd.containment(mode.clone());
        let die = || {
            // SAFETY: kill is async-signal-safe; the pid is the child's own.
            unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL) };
            Ok(())
        };
        // SAFETY: the closure only calls getpid and kill, both
        // async-signal-safe.
        unsafe { cmd.pre_exec(die) };
        let e = match cmd.spawn() {
            Ok(c) => panic!("{mode:?}: reported spawned, then {:?}", c.wait()),
            Err(e) => e,
        };
        let text = e.to_string();
        println!("  {mode:?}: {text}");
        assert_eq!(e.stage(), SpawnStage::PreExec, "{mode:?}: {text}");
        assert!(!text.contains("clone failed"), "{mode:?}: {text}");
        assert!(text.contains("pre_exec failed"), "{mode:?}: {text}");
        assert!(text.contains("SIGKILL"), "{mode:?}: {text}");
    }
    assert!(childfd_testbin::children().is_empty());
}
