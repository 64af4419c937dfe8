//! Spawning inside a host that does what real programs do: signals to its
//! process group, threads changing the environment, `fork()`, closing and
//! reusing fd numbers, threads writing scripts and running them.
//!
//! Each scenario runs in its own process, in its own process group
//! (`main` re-runs this binary with `CHILDFD_HOSTILE_SCENARIO` set), so a
//! signal flood to "the caller's group" never reaches cargo, and a fork or
//! `close_range` stays inside the scenario. A scenario that does not finish
//! within its bound is killed with its group and fails.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use childfd::{Command, Containment, SpawnStage, Stdio};
use childfd_testbin::{EXIT0, SLEEP200};

const SCENARIOS: &[(&str, fn())] = &[
    (
        "stop_signal_flood_to_callers_group_never_hangs_or_stops_a_spawn",
        stop_signal_flood_to_callers_group_never_hangs_or_stops_a_spawn,
    ),
    (
        "stop_signal_flood_never_hangs_a_spawn_that_stays_in_callers_group",
        stop_signal_flood_never_hangs_a_spawn_that_stays_in_callers_group,
    ),
    (
        "int_hup_flood_never_kills_a_spawn_that_stays_in_callers_group_before_exec",
        int_hup_flood_never_kills_a_spawn_that_stays_in_callers_group_before_exec,
    ),
    (
        "set_var_in_another_thread_never_fails_a_spawn",
        set_var_in_another_thread_never_fails_a_spawn,
    ),
    (
        "fork_after_spawning_leaves_both_processes_spawning_correctly",
        fork_after_spawning_leaves_both_processes_spawning_correctly,
    ),
    (
        "closed_and_reused_fd_numbers_are_never_handed_to_a_child",
        closed_and_reused_fd_numbers_are_never_handed_to_a_child,
    ),
    (
        "script_written_then_run_while_threads_spawn_never_fails_with_etxtbsy",
        script_written_then_run_while_threads_spawn_never_fails_with_etxtbsy,
    ),
    (
        "spawn_errors_name_the_os_reason_and_the_directory",
        spawn_errors_name_the_os_reason_and_the_directory,
    ),
    (
        "signal_mask_is_empty_by_default_and_inherited_on_request",
        signal_mask_is_empty_by_default_and_inherited_on_request,
    ),
];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    childfd_testbin::scenario::main("CHILDFD_HOSTILE_SCENARIO", SCENARIOS, SCENARIO_LIMIT);
}

/// Spawns `EXIT0` and checks it exited 0.
#[track_caller]
fn spawn_exit0(cmd: &Command) {
    let c = cmd.spawn().unwrap();
    let st = c
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("exited");
    assert!(st.success(), "child ended with {st}");
}

/// Kills (SIGKILL, then SIGCONT) and reaps every child of this process:
/// the clean-up of a scenario that found a stuck child.
fn kill_own_children() {
    for p in childfd_testbin::children() {
        childfd_testbin::kill(p.pid, libc::SIGKILL);
        childfd_testbin::kill(p.pid, libc::SIGCONT);
    }
}

/// A handler that does nothing, so the scenario process survives the
/// signals it floods its own group with, while a child (whose handlers
/// are reset to `SIG_DFL`) would stop or die of them.
extern "C" fn ignore(_: libc::c_int) {}

fn install_noop_handler(sig: i32) {
    childfd_testbin::install_handler(sig, ignore);
}

/// Runs `f` on a thread; panics if it does not finish within `limit`
/// (after killing this process's children, so the test ends).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => {
            let stuck = childfd_testbin::children();
            kill_own_children();
            panic!("{what} did not finish within {limit:?}; children then: {stuck:?}");
        }
    }
}

/// Issue: a SIGTSTP sent to the caller's group between the clone and the
/// child's `setpgid` stayed pending and stopped the child as soon as it
/// emptied its mask; `CLONE_VFORK` then held `spawn` for ever. A SIGINT or
/// SIGHUP to the group likewise killed the child before it exec'd.
fn stop_signal_flood_to_callers_group_never_hangs_or_stops_a_spawn() {
    const FLOOD: &[i32] = &[
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGWINCH,
        libc::SIGINT,
        libc::SIGHUP,
    ];
    let (stop, flood) = flood_own_group(FLOOD);
    let spawned = bounded(
        "1,000 spawns under a signal flood",
        Duration::from_secs(60),
        || {
            let cmd = Command::new(EXIT0);
            for _ in 0..1000 {
                spawn_exit0(&cmd);
            }
            1000
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(spawned, 1000);
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!(
        "  1,000 spawns, {sent} signals to the caller's group, none stopped or killed a child"
    );
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

/// Issue: in `Inherit` mode (and when joining an existing group) the child
/// stays in the caller's group until `execve`; the fix for the default mode
/// (discarding signals pending before the mask is set) does not cover a
/// SIGTSTP that arrives after it. It stopped the `CLONE_VFORK` child and
/// `spawn` hung for ever. A stop signal arriving after the exec may stop
/// the program (job control for the caller's group): each child is
/// killed before it is waited for.
fn stop_signal_flood_never_hangs_a_spawn_that_stays_in_callers_group() {
    const FLOOD: &[i32] = &[libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
    let (stop, flood) = flood_own_group(FLOOD);
    let wrong = bounded(
        "1,000 spawns in the caller's group under a stop-signal flood",
        Duration::from_secs(60),
        || {
            let cmds = callers_group_commands(EXIT0);
            let mut wrong = Vec::new();
            for i in 0..1000 {
                match cmds[i % 2].spawn() {
                    Ok(c) => {
                        c.kill().unwrap();
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
    assert!(
        wrong.is_empty(),
        "{} wrong spawns, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!("  1,000 spawns in the caller's group beside {sent} stop signals, none hung");
}

/// Issue: in `Inherit` mode a SIGINT or SIGHUP to the caller's group killed
/// the child before `execve`: a missing program was reported spawned (the
/// child died before it could report the error), and `true` died of a
/// signal it got before it was `true`. A signal that arrives after the
/// exec may kill the program, as it would any member of the group; the
/// dead child's name (`comm`, kept by the zombie) tells which happened.
fn int_hup_flood_never_kills_a_spawn_that_stays_in_callers_group_before_exec() {
    const FLOOD: &[i32] = &[libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
    let (stop, flood) = flood_own_group(FLOOD);
    let (wrong, after_exec) = bounded(
        "1,000 spawns in the caller's group under a SIGINT/SIGHUP flood",
        Duration::from_secs(60),
        || {
            let missing = callers_group_commands("/nonexistent/childfd-missing");
            let exit0 = callers_group_commands(EXIT0);
            let mut wrong = Vec::new();
            let mut after_exec = 0;
            for i in 0..1000 {
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
    assert!(
        wrong.is_empty(),
        "{} wrong spawns, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(sent > 1000, "the flood sent only {sent} signals");
    assert!(childfd_testbin::children().is_empty());
    println!(
        "  2,000 spawns in the caller's group beside {sent} signals: every missing program \
         NotFound, no child killed before exec ({after_exec} killed after it)"
    );
}

/// Waits for `c` (at most 30 s) and reaps it. `Ok(None)`: it exited 0;
/// `Ok(Some(sig))`: it was killed by `sig` after it had exec'd `program`
/// (its zombie bears the program's name); `Err`: anything else.
fn died_after_exec(c: &childfd::Child, program: &str) -> Result<Option<i32>, String> {
    use std::os::fd::AsFd;
    let mut pfd = libc::pollfd {
        fd: c.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, 30_000) };
    if r != 1 {
        kill_own_children();
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

/// Issue: the child's envp was the live `environ`, which another thread's
/// `set_var` reallocates and frees: spawns failed at stage Exec (EFAULT).
fn set_var_in_another_thread_never_fails_a_spawn() {
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Enough distinct names that the array keeps growing
                // (glibc reallocates it), then shrinks again.
                let name = format!("CHILDFD_HAMMER_{}", i % 200);
                // SAFETY: this scenario's point: another thread changes the
                // environment while spawns read it; childfd reads it only
                // through std, under std's environment lock.
                unsafe { std::env::set_var(&name, "x".repeat((i % 50) as usize)) };
                if i.is_multiple_of(3) {
                    // SAFETY: as above.
                    unsafe { std::env::remove_var(&name) };
                }
                i += 1;
            }
            i
        })
    };
    let failures = bounded(
        "2,000 spawns beside set_var",
        Duration::from_secs(90),
        || {
            let inherit = Command::new(EXIT0);
            let mut changed = Command::new(EXIT0);
            changed.env("CHILDFD_OWN", "1");
            let mut failures = Vec::new();
            for i in 0..2000 {
                let cmd = if i % 2 == 0 { &inherit } else { &changed };
                match cmd.spawn() {
                    Ok(c) => {
                        let st = c.wait().unwrap();
                        if !st.success() {
                            failures.push(format!("spawn {i}: child ended with {st}"));
                        }
                    }
                    Err(e) => failures.push(format!("spawn {i}: {e}")),
                }
            }
            failures
        },
    );
    stop.store(true, Ordering::Relaxed);
    let changes = hammer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 2,000 spawns failed ({changes} env changes), first: {:?}",
        failures.len(),
        failures.first()
    );
    println!("  2,000 spawns beside {changes} env changes, none failed");
}

/// Spawns `true` and a missing program `n` times each and checks every
/// result; returns a description of each wrong one.
fn spawn_and_check(n: usize) -> Vec<String> {
    let ok = Command::new(EXIT0);
    let missing = Command::new("/nonexistent/childfd-missing");
    let mut wrong = Vec::new();
    for i in 0..n {
        match ok.spawn() {
            Ok(c) => match c.wait_timeout(Duration::from_secs(30)) {
                Ok(Some(st)) if st.success() => {}
                other => wrong.push(format!("{i}: exit0 gave {other:?}")),
            },
            Err(e) => wrong.push(format!("{i}: exit0 failed: {e}")),
        }
        match missing.spawn() {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => wrong.push(format!("{i}: missing gave {e}")),
            Ok(c) => {
                let _ = c.wait();
                wrong.push(format!("{i}: missing program spawned"));
            }
        }
    }
    wrong
}

/// A pdeathsig spawn from a thread that is not the main thread (it goes
/// through the spawner thread); true if it completed in time.
fn pdeathsig_spawn_from_a_thread(limit: Duration) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = Command::new(EXIT0)
            .pdeathsig(childfd::Signal::KILL)
            .spawn()
            .map(|c| c.wait().map(|s| s.success()));
        let _ = tx.send(matches!(r, Ok(Ok(true))));
    });
    rx.recv_timeout(limit).unwrap_or(false)
}

/// CPU time (ticks) used so far by this process's thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
        }
    }
    None
}

/// Issue: after a `fork()` the two processes shared the `MAP_SHARED` spawn
/// arenas (spawns reported "not found" for `true` and success for missing
/// programs), the drop reaper's epoll (the copy's dropped children stayed
/// zombies, the parent's reaper thread spun) and a dead spawner thread (a
/// pdeathsig spawn hung in the copy).
fn fork_after_spawning_leaves_both_processes_spawning_correctly() {
    // Every process-wide resource in use before the fork.
    assert!(spawn_and_check(20).is_empty());
    drop(Command::new(SLEEP200).spawn().unwrap()); // starts the drop reaper
    assert!(pdeathsig_spawn_from_a_thread(Duration::from_secs(30)));
    // Keeps the parent's reaper thread busy through the fork and after.
    drop(Command::new("sleep").arg("3").spawn().unwrap());
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let (mut go_r, mut go_w) = std::io::pipe().unwrap();

    // SAFETY: the copy runs ordinary Rust code, which is what this test
    // is about (a library forking a threaded program); glibc's fork keeps
    // malloc usable in it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            forked_copy(&mut ready_w, &mut go_r)
        }))
        .unwrap_or(70);
        // SAFETY: ends the copy without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop((ready_w, go_r));
    let wrong = spawn_and_check(500);
    assert!(wrong.is_empty(), "parent, while the copy spawns: {wrong:?}");
    let mut b = [0u8; 1];
    let got = bounded(
        "the copy's first half",
        Duration::from_secs(60),
        move || ready_r.read(&mut b).map(|n| n == 1).unwrap_or(false),
    );
    // While the copy lives, with its own dropped children adopted and
    // reaped, the parent's reaper thread must stay idle.
    let before = thread_ticks("childfd-reaper").expect("reaper thread");
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let spun = thread_ticks("childfd-reaper").unwrap() - before;
    go_w.write_all(b"g").unwrap();
    let status = bounded(
        "the forked copy to exit",
        Duration::from_secs(60),
        move || childfd_testbin::waitpid(pid),
    );
    assert!(got, "the copy never reported");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked copy failed (status {status:#x}), see its output"
    );
    assert!(
        spun < 10,
        "the parent's reaper thread used {spun} ticks in 0.5 s (spinning)"
    );
    assert!(
        spawn_and_check(20).is_empty(),
        "parent after the copy exited"
    );
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    }));
    println!("  both processes spawned correctly; parent's reaper used {spun} ticks");
}

/// The forked copy's half: spawns alongside the parent, drops running
/// children and checks they are reaped, spawns with pdeathsig from a
/// thread. Returns its exit code.
fn forked_copy(ready: &mut std::io::PipeWriter, go: &mut std::io::PipeReader) -> i32 {
    let mut code = 0;
    let wrong = spawn_and_check(500);
    if !wrong.is_empty() {
        println!(
            "forked copy: {} wrong spawns, first {:?}",
            wrong.len(),
            wrong[0]
        );
        code = 1;
    }
    for _ in 0..3 {
        drop(Command::new(SLEEP200).spawn().unwrap());
    }
    let reaped = childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd_testbin::children().is_empty()
    });
    if !reaped {
        println!(
            "forked copy: dropped children not reaped: {:?}",
            childfd_testbin::children()
        );
        code = 2;
    }
    if !pdeathsig_spawn_from_a_thread(Duration::from_secs(10)) {
        println!("forked copy: a pdeathsig spawn from a thread hung or failed");
        code = 3;
    }
    let _ = std::io::stdout().flush();
    let _ = ready.write_all(b"r");
    let mut b = [0u8; 1];
    let _ = go.read(&mut b);
    kill_own_children();
    code
}

/// Issue: childfd kept `/dev/null` at fd 3 and parking slots at 4-6 for
/// the life of the process. After the host closed every fd from 3 up and
/// opened its own files there, `Stdio::null()` gave the child the host's
/// secret file, and a spawn overwrote the host's fd 4 (its log). The
/// background reaper's epoll fd, kept for good too, was likewise gone (a
/// child dropped afterwards stayed a zombie).
fn closed_and_reused_fd_numbers_are_never_handed_to_a_child() {
    let dir = std::env::temp_dir().join(format!("childfd-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "SECRET").unwrap();
    let run_cat = |stdin: Stdio| {
        let mut c = Command::new("cat")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        drop(c.take_stdin());
        let mut s = String::new();
        c.take_stdout().unwrap().read_to_string(&mut s).unwrap();
        assert!(c.wait().unwrap().success());
        s
    };
    // Spawns of every kind first, so that any fd childfd would keep for
    // the process exists: a null stream, then pipes above fd 64.
    assert_eq!(run_cat(Stdio::null()), "");
    let filler: Vec<_> = (0..80)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    assert_eq!(run_cat(Stdio::piped()), "");
    drop(filler);
    // A dropped running child, reaped in the background.
    drop(Command::new(SLEEP200).spawn().unwrap());
    assert!(childfd_testbin::eventually(Duration::from_secs(10), || {
        childfd::pending_reaps() == 0 && thread_ticks("childfd-reaper").is_none()
    }));
    // The host: close everything from 3 up, then open its own files.
    // SAFETY: this scenario process owns every fd from 3 up and no other
    // thread of it uses one now.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    assert_eq!(r, 0);
    let secret = std::fs::File::open(dir.join("secret")).unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let (secret_fd, log_fd) = (secret.as_raw_fd(), log.as_raw_fd());
    assert_eq!((secret_fd, log_fd), (3, 4));
    assert_eq!(
        run_cat(Stdio::null()),
        "",
        "Stdio::null() gave the child fd {secret_fd}"
    );
    // Pipes above fd 64 again, then spawns with piped streams.
    let filler: Vec<_> = (0..80).map(|_| secret.try_clone().unwrap()).collect();
    assert_eq!(run_cat(Stdio::null()), "");
    let mut c = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.take_stdin().unwrap().write_all(b"through").unwrap();
    let mut s = String::new();
    c.take_stdout().unwrap().read_to_string(&mut s).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(s, "through");
    drop(filler);
    // The background reaper must not use an fd number it had before.
    drop(Command::new(SLEEP200).spawn().unwrap());
    assert!(
        childfd_testbin::eventually(Duration::from_secs(10), || {
            childfd_testbin::children().is_empty()
        }),
        "a dropped child was not reaped: {:?}",
        childfd_testbin::children()
    );
    let target = std::fs::read_link(format!("/proc/self/fd/{log_fd}")).unwrap();
    assert_eq!(
        target,
        dir.join("log"),
        "the host's fd {log_fd} was replaced"
    );
    let target = std::fs::read_link(format!("/proc/self/fd/{secret_fd}")).unwrap();
    assert_eq!(
        target,
        dir.join("secret"),
        "the host's fd {secret_fd} was replaced"
    );
    drop((secret, log));
    std::fs::remove_dir_all(&dir).unwrap();
    println!("  after close_range(3, ~0), no reused fd number reached a child or was overwritten");
}

/// Issue: with many threads spawning, a script written by one thread and
/// run at once failed with ETXTBSY: another thread's child, cloned while
/// the script was open for writing, held the write fd until its own exec.
fn script_written_then_run_while_threads_spawn_never_fails_with_etxtbsy() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir().join(format!("childfd-txt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let busy = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (dir, busy, other) = (dir.clone(), busy.clone(), other.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    let path = dir.join(format!("s-{t}-{i}"));
                    {
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o755)
                            .open(&path)
                            .unwrap();
                        f.write_all(b"#!/bin/sh\nexit 0\n").unwrap();
                    }
                    let r = Command::new(&path)
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .spawn();
                    match r {
                        Ok(c) => assert!(c.wait().unwrap().success()),
                        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            println!("unexpected: {e}");
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = std::fs::remove_file(&path);
                }
            })
        })
        .collect();
    bounded("1,600 script runs", Duration::from_secs(100), move || {
        for t in threads {
            t.join().unwrap();
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
    let (busy, other) = (busy.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    assert_eq!(
        (busy, other),
        (0, 0),
        "{busy} of 1,600 runs failed with ETXTBSY"
    );
    println!("  1,600 scripts written and run at once by 4 threads, no ETXTBSY");
}

/// Issue: `format!("{e}")` of a missing program said only "exec failed",
/// where std gives the OS's reason; a failed chdir did not name the
/// directory.
fn spawn_errors_name_the_os_reason_and_the_directory() {
    let e = Command::new("/nonexistent/prog").spawn().unwrap_err();
    let reason = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    let shown = e.to_string();
    assert!(shown.contains(&reason), "{shown:?} lacks {reason:?}");
    assert!(shown.contains("/nonexistent/prog"), "{shown:?}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), ErrorKind::NotFound);
    assert!(io.to_string().contains(&reason), "{io}");

    let e = Command::new(EXIT0)
        .current_dir("/nonexistent/dir")
        .spawn()
        .unwrap_err();
    assert_eq!(e.stage(), SpawnStage::Chdir);
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    let shown = e.to_string();
    assert!(
        shown.contains("/nonexistent/dir") && shown.contains(&reason),
        "{shown:?}"
    );
    println!("  {shown}");
}

/// The blocked-signal set (`SigBlk`) a child execs with, as printed by
/// `/proc/self/status`.
fn child_sigblk(cmd: &mut Command) -> u64 {
    let mut c = cmd
        .args(["SigBlk", "/proc/self/status"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s = String::new();
    c.take_stdout().unwrap().read_to_string(&mut s).unwrap();
    assert!(c.wait().unwrap().success());
    u64::from_str_radix(s.trim().trim_start_matches("SigBlk:").trim(), 16).unwrap()
}

/// The child's signal mask: empty unless asked to inherit the spawning
/// thread's.
fn signal_mask_is_empty_by_default_and_inherited_on_request() {
    // SAFETY: blocks SIGUSR1 in this thread only; sets are plain data.
    #[allow(clippy::multiple_unsafe_ops_per_block)]
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    assert_eq!(child_sigblk(&mut Command::new("grep")), 0);
    let inherited = child_sigblk(Command::new("grep").inherit_signal_mask(true));
    assert_eq!(inherited, usr1, "inherited mask {inherited:#x}");
    // The spawning thread's mask is unchanged.
    // SAFETY: reads this thread's mask.
    #[allow(clippy::multiple_unsafe_ops_per_block)]
    let still = unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        libc::sigismember(&old, libc::SIGUSR1)
    };
    assert_eq!(still, 1);
    println!("  default mask empty; inherited mask {inherited:#x}");
}
