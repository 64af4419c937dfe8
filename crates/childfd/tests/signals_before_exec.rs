//! No signal the caller did not send to the child itself may stop or kill
//! a child before it has exec'd, whatever its number: glibc's internal
//! signals (32, 33) and the parent-death signal included.
//!
//! Each scenario runs in its own process, in its own process group (`main`
//! re-runs this binary with `CHILDFD_SIGNALS_SCENARIO` set), so a signal
//! flood to "the caller's group" never reaches cargo. A scenario that does
//! not finish within its bound is killed with its group and fails.

use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use childfd::{Command, Containment};
use childfd_testbin::EXIT0;

const SCENARIOS: &[(&str, fn())] = &[(
    "glibc_internal_signals_32_33_never_kill_a_child_before_exec",
    glibc_internal_signals_32_33_never_kill_a_child_before_exec,
)];

/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    if let Ok(name) = std::env::var("CHILDFD_SIGNALS_SCENARIO") {
        let (_, f) = SCENARIOS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("known scenario");
        f();
        println!("ok: {name}");
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, _) in SCENARIOS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if !run_scenario(name) {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

/// Runs one scenario in a new process group; kills the group if it
/// overruns. True if it passed.
fn run_scenario(name: &str) -> bool {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("CHILDFD_SIGNALS_SCENARIO", name)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = std::thread::spawn(move || {
        let (mut a, mut b) = (String::new(), String::new());
        let _ = out.read_to_string(&mut a);
        let _ = err.read_to_string(&mut b);
        a + &b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > SCENARIO_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever happened, nothing of the scenario's group survives it.
    childfd_testbin::kill(-pgid, libc::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let text = readers.join().unwrap();
    print!("{text}");
    match status {
        Some(s) if s.success() => true,
        Some(s) => {
            println!("FAILED {name}: {s}");
            false
        }
        None => {
            println!("FAILED {name}: still running after {SCENARIO_LIMIT:?} (hung), killed");
            false
        }
    }
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
fn glibc_internal_signals_32_33_never_kill_a_child_before_exec() {
    const FLOOD: &[i32] = &[32, 33];
    let (stop, flood) = flood_own_group(FLOOD);
    let mut wrong = Vec::new();
    let mut after_exec = 0;
    for inherit in [false] {
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
        "  2,000 spawns beside {sent} signals 32/33 to the caller's group: every missing \
         program NotFound, no child killed before exec ({after_exec} in Inherit mode after it)"
    );
}
