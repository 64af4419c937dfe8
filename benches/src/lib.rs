//! The ways to spawn a child that `cargo xtask bench` compares, and the
//! measurements it makes of each. The raw ways are C (`csrc/`), linked
//! in, so every figure comes from the same process run.

use std::ffi::CString;
use std::time::{Duration, Instant};

pub mod async_jobs;

mod ffi {
    use std::ffi::c_char;
    unsafe extern "C" {
        pub fn cb_clone_vm_pidfd(path: *const c_char, n: i32) -> i32;
        pub fn cb_clone_files_pidfd(path: *const c_char, n: i32) -> i32;
        pub fn cb_vfork(path: *const c_char, n: i32) -> i32;
        pub fn cb_fork(path: *const c_char, n: i32) -> i32;
        pub fn cb_posix_spawn(path: *const c_char, n: i32) -> i32;
        pub fn cb_inflight(way: i32, path: *const c_char, k: i32) -> i32;
    }
}

/// A way to spawn and wait for a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// C: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` + `waitid(P_PIDFD)`,
    /// the kernel's limit for a pidfd spawn. Every ratio is to this.
    CloneVmPidfd,
    /// C: the same with `CLONE_FILES`, the child first unsharing fds 0-2
    /// only (`close_range(3, ~0, CLOSE_RANGE_UNSHARE)`): the limit without
    /// the copy of the parent's fd table, as childfd spawns.
    CloneFilesPidfd,
    /// C: `vfork` + `execve` + `waitpid` (no pidfd).
    Vfork,
    /// C: `fork` + `execve` + `waitpid`.
    Fork,
    /// C: glibc `posix_spawn` + `waitpid`.
    PosixSpawn,
    /// childfd: `Command::spawn` + `Child::wait`.
    Childfd,
    /// `std::process::Command::status`.
    Std,
    /// `tokio::process::Command::status`, current-thread runtime.
    TokioCurrentThread,
    /// `tokio::process::Command::status` in a multi-thread runtime.
    TokioMultiThread,
}

impl Way {
    /// Every way, the limit first.
    pub const ALL: [Way; 9] = [
        Way::CloneVmPidfd,
        Way::CloneFilesPidfd,
        Way::Vfork,
        Way::Fork,
        Way::PosixSpawn,
        Way::Childfd,
        Way::Std,
        Way::TokioCurrentThread,
        Way::TokioMultiThread,
    ];

    /// Short stable name (report keys).
    pub fn key(self) -> &'static str {
        match self {
            Way::CloneVmPidfd => "clone_vm_pidfd",
            Way::CloneFilesPidfd => "clone_files_pidfd",
            Way::Vfork => "vfork",
            Way::Fork => "fork",
            Way::PosixSpawn => "posix_spawn",
            Way::Childfd => "childfd",
            Way::Std => "std",
            Way::TokioCurrentThread => "tokio_current_thread",
            Way::TokioMultiThread => "tokio_multi_thread",
        }
    }

    /// Human name.
    pub fn label(self) -> &'static str {
        match self {
            Way::CloneVmPidfd => "C clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + waitid (the limit)",
            Way::CloneFilesPidfd => "C the same + CLONE_FILES, child unshares fds 0-2 only",
            Way::Vfork => "C vfork + execve + waitpid",
            Way::Fork => "C fork + execve + waitpid",
            Way::PosixSpawn => "C posix_spawn + waitpid",
            Way::Childfd => "childfd Command::spawn + wait",
            Way::Std => "std Command::status",
            Way::TokioCurrentThread => "tokio Command::status, current-thread",
            Way::TokioMultiThread => "tokio Command::status, multi-thread",
        }
    }

    /// Whether it copies the parent's page tables (cost grows with memory).
    pub fn fork_style(self) -> bool {
        self == Way::Fork
    }
}

fn c_path(p: &str) -> CString {
    CString::new(p).expect("no NUL in path")
}

fn check(r: i32, what: &str) {
    assert!(
        r == 0,
        "{what} failed: {}",
        std::io::Error::from_raw_os_error(-r)
    );
}

fn tokio_rt(way: Way) -> Option<tokio::runtime::Runtime> {
    match way {
        Way::TokioCurrentThread => Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        Way::TokioMultiThread => Some(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        _ => None,
    }
}

/// Spawns and waits for `path` serially, one spawn at a time, until `n`
/// spawns or `budget` (at least 3 spawns); returns (spawns, time).
pub fn serial(way: Way, path: &str, n: usize, budget: Duration) -> (usize, Duration) {
    let rt = tokio_rt(way);
    let cpath = c_path(path);
    let cmd = childfd::Command::new(path);
    let mut std_cmd = std::process::Command::new(path);
    let start = Instant::now();
    let mut done = 0;
    // Batches of 1 keep the budget honest for slow ways (fork at 4 GiB).
    while done < n && (done < 3 || start.elapsed() < budget) {
        match way {
            // SAFETY: a valid C string; the C function only reads it.
            Way::CloneVmPidfd => check(
                unsafe { ffi::cb_clone_vm_pidfd(cpath.as_ptr(), 1) },
                "clone",
            ),
            // SAFETY: as above.
            Way::CloneFilesPidfd => check(
                unsafe { ffi::cb_clone_files_pidfd(cpath.as_ptr(), 1) },
                "clone files",
            ),
            // SAFETY: as above.
            Way::Vfork => check(unsafe { ffi::cb_vfork(cpath.as_ptr(), 1) }, "vfork"),
            // SAFETY: as above.
            Way::Fork => check(unsafe { ffi::cb_fork(cpath.as_ptr(), 1) }, "fork"),
            // SAFETY: as above.
            Way::PosixSpawn => check(
                unsafe { ffi::cb_posix_spawn(cpath.as_ptr(), 1) },
                "posix_spawn",
            ),
            Way::Childfd => assert!(cmd.spawn().unwrap().wait().unwrap().success()),
            Way::Std => assert!(std_cmd.status().unwrap().success()),
            Way::TokioCurrentThread | Way::TokioMultiThread => {
                let rt = rt.as_ref().expect("runtime");
                let s = rt
                    .block_on(async { tokio::process::Command::new(path).status().await })
                    .unwrap();
                assert!(s.success());
            }
        }
        done += 1;
    }
    (done, start.elapsed())
}

/// Spawns `k` children of `path` (each sleeping), then reaps them all as
/// they exit; returns the wall time.
pub fn inflight(way: Way, path: &str, k: usize) -> Duration {
    let cpath = c_path(path);
    let start = Instant::now();
    match way {
        Way::CloneVmPidfd | Way::CloneFilesPidfd | Way::Vfork | Way::Fork | Way::PosixSpawn => {
            let code = match way {
                Way::CloneVmPidfd => 0,
                Way::Vfork => 1,
                Way::Fork => 2,
                Way::CloneFilesPidfd => 4,
                _ => 3,
            };
            // SAFETY: a valid C string; the C function only reads it.
            check(
                unsafe { ffi::cb_inflight(code, cpath.as_ptr(), k as i32) },
                "inflight",
            );
        }
        Way::Childfd => {
            let cmd = childfd::Command::new(path);
            let children: Vec<_> = (0..k).map(|_| cmd.spawn().unwrap()).collect();
            for c in &children {
                assert!(c.wait().unwrap().success());
            }
        }
        Way::Std => {
            let mut cmd = std::process::Command::new(path);
            let mut children: Vec<_> = (0..k).map(|_| cmd.spawn().unwrap()).collect();
            for c in &mut children {
                assert!(c.wait().unwrap().success());
            }
        }
        Way::TokioCurrentThread | Way::TokioMultiThread => {
            let rt = tokio_rt(way).expect("runtime");
            let start_rt = Instant::now();
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..k {
                    let mut c = tokio::process::Command::new(path).spawn().unwrap();
                    set.spawn(async move { c.wait().await });
                }
                while let Some(r) = set.join_next().await {
                    assert!(r.unwrap().unwrap().success());
                }
            });
            return start_rt.elapsed();
        }
    }
    start.elapsed()
}

/// Spawns from `threads` threads at once, `n` serial spawns each (or the
/// budget); returns spawns per second over all threads.
pub fn throughput(way: Way, path: &str, threads: usize, n: usize, budget: Duration) -> f64 {
    let barrier = std::sync::Barrier::new(threads);
    let start = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    serial(way, path, n, budget).0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// Peak resident memory of this process since the last reset (KiB), and a
/// reset of that peak to the current size (`/proc/self/clear_refs`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Resets the peak resident size to the current one; false if not allowed.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Current resident memory (KiB).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A `kB` field of `/proc/self/status` (0 if it cannot be read).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A tokio runtime: multi-thread or current-thread.
pub fn tokio_runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Runs `n` jobs of `childfd-testbin`'s `echo1` on `rt`, `cap` at a time,
/// as a `JoinSet` of `tokio::process::Command::output` (the Supervisor
/// comparison), checking each one's output.
pub fn tokio_echo_jobs(rt: &tokio::runtime::Runtime, n: usize, cap: usize) {
    async fn job() {
        let o = tokio::process::Command::new(childfd_testbin::ECHO1)
            .output()
            .await
            .unwrap();
        assert!(o.status.success() && o.stdout == b"line\n");
    }
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut launched = 0;
        while launched < cap.min(n) {
            set.spawn(job());
            launched += 1;
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
            if launched < n {
                set.spawn(job());
                launched += 1;
            }
        }
    });
}

/// CPU time of a clock (`clock_gettime`).
pub fn clock_cpu(clock: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU of this process's reaped children (`getrusage(RUSAGE_CHILDREN)`).
pub fn children_cpu() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One many-jobs run: wall time and CPU, ours and the children's.
#[derive(Debug, Clone, Copy)]
pub struct JobsRun {
    /// Jobs run.
    pub n: usize,
    /// Wall time of the run.
    pub wall: Duration,
    /// CPU of the supervising thread (whole process for tokio).
    pub supervisor_cpu: Duration,
    /// CPU of this process.
    pub process_cpu: Duration,
    /// CPU of the children (exec, run, exit), reaped during the run.
    pub children_cpu: Duration,
    /// What every core of the machine did during the run
    /// (`/proc/stat`): ours, other processes', idle.
    pub machine: MachineCpu,
    /// Context switches of this process's threads during the run
    /// (`getrusage`: voluntary, a thread went to sleep, plus involuntary).
    pub switches: u64,
}

/// Time of all the machine's cores together, from `/proc/stat`
/// (`USER_HZ` ticks, so 10 ms resolution per core).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    /// Busy (user, nice, system, irq, softirq).
    pub busy: Duration,
    /// Idle or waiting for I/O.
    pub idle: Duration,
    /// Taken by the hypervisor for other guests.
    pub steal: Duration,
}

impl MachineCpu {
    /// The counters since boot.
    pub fn now() -> MachineCpu {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let f: Vec<u64> = s
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let d = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
        MachineCpu {
            busy: d(at(0) + at(1) + at(2) + at(5) + at(6)),
            idle: d(at(3) + at(4)),
            steal: d(at(7)),
        }
    }

    /// The counters between `earlier` and `self`.
    pub fn since(&self, earlier: &MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    /// All the cores' time.
    pub fn total(&self) -> Duration {
        self.busy + self.idle + self.steal
    }
}

impl JobsRun {
    /// Jobs per second.
    pub fn jobs_per_s(&self) -> f64 {
        self.n as f64 / self.wall.as_secs_f64()
    }

    /// µs per job of this process's CPU.
    pub fn process_us(&self) -> f64 {
        self.process_cpu.as_secs_f64() * 1e6 / self.n as f64
    }

    /// Context switches of this process per job: each is a thread that
    /// slept (the vfork wait, `epoll_wait`, a hand-over between threads)
    /// and was woken, or was preempted.
    pub fn switches_per_job(&self) -> f64 {
        self.switches as f64 / self.n as f64
    }

    /// µs per job of the children's CPU.
    pub fn children_us(&self) -> f64 {
        self.children_cpu.as_secs_f64() * 1e6 / self.n as f64
    }

    /// µs per job of the supervising thread's CPU (the whole process
    /// where there is no such thread).
    pub fn supervisor_us(&self) -> f64 {
        self.supervisor_cpu.as_secs_f64() * 1e6 / self.n as f64
    }

    /// The CPU ceiling: jobs/s if every core did nothing but this run's
    /// work per job (ours and the child's): cores × 1e6 / CPU µs per job.
    pub fn ceiling(&self) -> f64 {
        cores() * 1e6 / (self.process_us() + self.children_us())
    }

    /// Shares of the machine's core time during the run (each 0–1):
    /// `(this run: us and our children, other processes, idle, steal)`.
    /// The first is this run's share of its ceiling; the others are what
    /// kept it from 100%.
    pub fn shares(&self) -> (f64, f64, f64, f64) {
        let total = self.machine.total().as_secs_f64().max(1e-9);
        let ours = (self.process_cpu + self.children_cpu).as_secs_f64();
        let others = self.machine.busy.as_secs_f64() - ours;
        (
            ours / total,
            others.max(0.0) / total,
            self.machine.idle.as_secs_f64() / total,
            self.machine.steal.as_secs_f64() / total,
        )
    }
}

/// Cores this process may run on.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// The floor of a spawn's cost to the spawning process: `n` serial
/// spawns and reaps of the static `_exit(0)` child by the limit way (C
/// `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` + `waitid`: no pipes, no
/// loop, no allocation), measured like a jobs run.
pub fn limit_floor(n: usize) -> JobsRun {
    measure_jobs(n, || {
        let (done, _) = serial(Way::CloneVmPidfd, childfd_testbin::EXIT0, n, Duration::MAX);
        assert_eq!(done, n);
        None
    })
}

/// Measures `f` (which runs `n` jobs and returns the supervising CPU).
pub fn measure_jobs(n: usize, f: impl FnOnce() -> Option<Duration>) -> JobsRun {
    use rustix::time::ClockId;
    let (m0, p0, c0, s0, t0) = (
        MachineCpu::now(),
        clock_cpu(ClockId::ProcessCPUTime),
        children_cpu(),
        context_switches(),
        Instant::now(),
    );
    let sup = f();
    let wall = t0.elapsed();
    let switches = context_switches().saturating_sub(s0);
    let process_cpu = clock_cpu(ClockId::ProcessCPUTime) - p0;
    let children_cpu = children_cpu() - c0;
    JobsRun {
        n,
        wall,
        supervisor_cpu: sup.unwrap_or(process_cpu),
        process_cpu,
        children_cpu,
        machine: MachineCpu::now().since(&m0),
        switches,
    }
}

/// Context switches of every thread of this process so far, exited ones
/// included ([`getrusage(2)`](https://man7.org/linux/man-pages/man2/getrusage.2.html)
/// `RUSAGE_SELF`: `ru_nvcsw + ru_nivcsw`).
pub fn context_switches() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills it in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable for the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    (u.ru_nvcsw + u.ru_nivcsw).max(0) as u64
}

/// `n` jobs of `echo1` under a childfd `Supervisor` with `cap` in flight
/// and `threads` spawning threads (`None`: the default).
pub fn childfd_echo_jobs(n: usize, cap: usize, threads: Option<usize>) -> JobsRun {
    use childfd_io::{Event, JobOptions, Supervisor};
    measure_jobs(n, || {
        let mut sup = match threads {
            None => Supervisor::new(cap).unwrap(),
            Some(t) => Supervisor::with_spawn_threads(cap, t).unwrap(),
        };
        for _ in 0..n {
            sup.push(
                childfd::Command::new(childfd_testbin::ECHO1),
                JobOptions::new().max_bytes(4096),
            );
        }
        let mut done = 0;
        let summary = sup.run(|ev| match ev {
            Event::Exited(r) => {
                assert!(r.status.unwrap().success() && r.stdout.head == b"line\n");
                done += 1;
            }
            Event::Started { .. } => {}
            other => panic!("{other:?}"),
        });
        assert_eq!(done, n);
        Some(summary.supervisor_cpu)
    })
}

/// Deadline accuracy of a loaded Supervisor: `n` jobs, `cap` in flight;
/// one in ten waits for a signal and has a deadline of 20–300 ms (the
/// rest print a line or sleep 200 ms, without deadline). Returns the
/// lateness of each fired deadline: the job's report time minus its
/// deadline (both from the spawn), so it includes SIGTERM, the child's
/// exit and the loop noticing it.
pub fn supervisor_lateness(n: usize, cap: usize) -> Vec<Duration> {
    use childfd_io::{JobOptions, Outcome, Supervisor};
    let mut sup = Supervisor::new(cap).unwrap();
    let mut deadlines = std::collections::HashMap::new();
    let mut x: u64 = 0x5eed_1a7e;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (cmd, deadline) = if i % 10 == 0 {
            let d = Duration::from_millis(20 + x % 281);
            (childfd_testbin::PAUSE, Some(d))
        } else if i % 2 == 0 {
            (childfd_testbin::SLEEP200, None)
        } else {
            (childfd_testbin::ECHO1, None)
        };
        let opts = match deadline {
            Some(d) => JobOptions::new().deadline(d),
            None => JobOptions::new(),
        };
        let id = sup.push(childfd::Command::new(cmd), opts);
        if let Some(d) = deadline {
            deadlines.insert(id, d);
        }
    }
    let mut late = Vec::new();
    for ev in sup.by_ref() {
        let Some(r) = ev.into_report() else { continue };
        match r.outcome {
            Outcome::TimedOut => late.push(r.elapsed.saturating_sub(deadlines[&r.id])),
            Outcome::Exited => {}
            other => panic!("{other:?} {r:?}"),
        }
    }
    late.sort();
    late
}
