//! `cargo xtask bench [--quick] [--serial] [--async]`: every way to spawn, every scenario, one
//! process run; writes `target/bench/report.{json,md,svg}` (`--serial`: the serial
//! scenarios, the environment snapshot's cost, the cost of `Inherit` against the
//! default containment, and piped spawns with 10,000 fds
//! open, printed, no files; `--async`: childfd-tokio against tokio::process,
//! printed, no files).
//!
//! Every figure is also given as a ratio to the raw
//! `clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD)` + `waitid` baseline of the same
//! run and scenario (costs: way ÷ limit, so 1.00 is the limit and higher
//! is slower).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use childfd_benches::{Way, inflight, peak_rss_kib, reset_peak_rss, rss_kib, serial, throughput};
use serde_json::{Value, json};

/// One figure of the async scenario: jobs, way, run.
type AsyncFig = (
    usize,
    childfd_benches::async_jobs::AsyncWay,
    childfd_benches::async_jobs::AsyncRun,
);

struct Cfg {
    quick: bool,
    out: PathBuf,
    reps: usize,
    n_static: usize,
    n_dynamic: usize,
    budget: Duration,
    rss_gib: Vec<u64>,
    inflight: Vec<usize>,
    supervisor_jobs: usize,
    /// Sizes of the async scenario, and its repetitions.
    async_jobs: Vec<usize>,
    async_reps: usize,
}

/// One measured figure: a cost in µs (per spawn or per child), or a
/// throughput in spawns per second.
#[derive(Clone)]
struct Fig {
    scenario: String,
    way: Way,
    value: f64,
    unit: &'static str,
    extra: Value,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// µs per serial spawn for every way: repetitions interleaved round-robin
/// across the ways (so drifts of the machine hit all alike), medians.
fn us_per_spawn_all(path: &str, n: impl Fn(Way) -> usize, cfg: &Cfg) -> Vec<(Way, f64)> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Way::ALL.len()];
    for _ in 0..cfg.reps {
        for (i, way) in Way::ALL.iter().enumerate() {
            let (k, t) = serial(*way, path, n(*way), cfg.budget);
            samples[i].push(t.as_secs_f64() * 1e6 / k as f64);
        }
    }
    Way::ALL
        .iter()
        .copied()
        .zip(samples.into_iter().map(median))
        .collect()
}

fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

fn host() -> Value {
    let u = rustix::system::uname();
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib >> 20);
    json!({
        "hostname": u.nodename().to_string_lossy(),
        "kernel": u.release().to_string_lossy(),
        "machine": u.machine().to_string_lossy(),
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "git_revision": rev,
    })
}

/// Memory kept resident in this process to measure spawn cost against
/// parent size (every page touched, so it is really resident).
fn ballast(gib: u64) -> Vec<u8> {
    let len = (gib << 30) as usize;
    let mut v = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    v
}

/// The Supervisor scenario: every way's run (throughput, CPU, ceiling)
/// and the Supervisor's deadline lateness under load.
struct SupervisorFigs {
    rows: Vec<(String, childfd_benches::JobsRun)>,
    /// Lateness of fired deadlines, sorted; and how many jobs ran.
    late: Vec<Duration>,
    late_jobs: usize,
}

impl SupervisorFigs {
    fn late_ms(&self, p: f64) -> f64 {
        let l = &self.late;
        if l.is_empty() {
            return f64::NAN;
        }
        l[((l.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
    }

    fn json(&self) -> Value {
        let tokio = self.rows.get(1).map(|r| r.1);
        json!({
            "ways": self.rows.iter().map(|(n, r)| json!({
                "way": n,
                "jobs_per_s": r.jobs_per_s(),
                "process_cpu_us_per_job": r.process_us(),
                "children_cpu_us_per_job": r.children_us(),
                "cpu_ceiling_jobs_per_s": r.ceiling(),
                "share_of_ceiling": r.jobs_per_s() / r.ceiling(),
                "jobs_per_s_to_tokio_multi_thread": tokio.map(|t| r.jobs_per_s() / t.jobs_per_s()),
                "cpu_to_tokio_multi_thread": tokio.map(|t| r.process_us() / t.process_us()),
            })).collect::<Vec<_>>(),
            "deadline_lateness": {
                "jobs": self.late_jobs, "fired": self.late.len(),
                "p50_ms": self.late_ms(0.5), "p99_ms": self.late_ms(0.99), "max_ms": self.late_ms(1.0),
            },
        })
    }

    fn targets(&self) -> Vec<Target> {
        let (Some((_, c)), Some((_, t))) = (self.rows.first(), self.rows.get(1)) else {
            return Vec::new();
        };
        let p99 = self.late_ms(0.99);
        vec![
            Target {
                name: "Supervisor: ≥ 1.2× tokio's jobs/s".into(),
                measured: format!("{:.2}×", c.jobs_per_s() / t.jobs_per_s()),
                pass: Some(c.jobs_per_s() / t.jobs_per_s() >= 1.2),
            },
            Target {
                name: "Supervisor: ≤ 0.5× tokio's CPU per job".into(),
                measured: format!("{:.2}×", c.process_us() / t.process_us()),
                pass: Some(c.process_us() / t.process_us() <= 0.5),
            },
            Target {
                name: "Supervisor: ≥ 85% of its CPU ceiling".into(),
                measured: format!(
                    "{:.0}% of {:.0} jobs/s",
                    100.0 * c.jobs_per_s() / c.ceiling(),
                    c.ceiling()
                ),
                pass: Some(c.jobs_per_s() / c.ceiling() >= 0.85),
            },
            Target {
                name: format!(
                    "Supervisor: deadline lateness p99 ≤ 5 ms at {} jobs",
                    self.late_jobs
                ),
                measured: format!("p50 {:.2} ms, p99 {p99:.2} ms", self.late_ms(0.5)),
                pass: Some(p99 <= 5.0),
            },
        ]
    }
}

fn supervisor_scenario(cfg: &Cfg) -> SupervisorFigs {
    let n = cfg.supervisor_jobs;
    let mut rows = Vec::new();
    rows.push((
        "childfd Supervisor".to_string(),
        childfd_benches::childfd_echo_jobs(n, 64, None),
    ));
    for (name, multi) in [
        ("tokio JoinSet, multi-thread", true),
        ("tokio JoinSet, current-thread", false),
    ] {
        let rt = childfd_benches::tokio_runtime(multi);
        let run = childfd_benches::measure_jobs(n, || {
            childfd_benches::tokio_echo_jobs(&rt, n, 64);
            None
        });
        rows.push((name.to_string(), run));
    }
    let late_jobs = if cfg.quick { 500 } else { 2_000 };
    SupervisorFigs {
        rows,
        late: childfd_benches::supervisor_lateness(late_jobs, 64),
        late_jobs,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let serial_only = args.iter().any(|a| a == "--serial");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from);
    let cfg = if quick {
        Cfg {
            quick,
            out,
            reps: 1,
            n_static: 300,
            n_dynamic: 60,
            budget: Duration::from_millis(300),
            rss_gib: vec![0, 1],
            inflight: vec![100, 1000],
            supervisor_jobs: 1000,
            async_jobs: vec![1000],
            async_reps: 1,
        }
    } else {
        Cfg {
            quick,
            out,
            reps: 5,
            n_static: 3000,
            n_dynamic: 500,
            budget: Duration::from_secs(2),
            rss_gib: vec![0, 1, 4],
            inflight: vec![100, 1000, 10_000],
            supervisor_jobs: 10_000,
            async_jobs: vec![1000, 10_000],
            async_reps: 3,
        }
    };
    raise_fd_limit();
    if args.iter().any(|a| a == "--async") {
        // `--async`: only the async scenario, printed; no report files.
        let asy = childfd_benches::async_jobs::scenario(&cfg.async_jobs, cfg.async_reps);
        println!("{}", childfd_benches::async_jobs::markdown(&asy));
        for (name, measured, pass) in childfd_benches::async_jobs::targets(&asy) {
            println!(
                "{name}: {measured} ({})",
                if pass { "pass" } else { "short" }
            );
        }
        return;
    }
    let started = Instant::now();
    let host = host();
    eprintln!(
        "bench: {} mode, host {}",
        if quick { "quick" } else { "full" },
        host
    );
    let mut figs: Vec<Fig> = Vec::new();
    let push = |figs: &mut Vec<Fig>,
                scenario: &str,
                way: Way,
                value: f64,
                unit: &'static str,
                extra: Value| {
        eprintln!("  {scenario:<28} {:<58} {value:>12.1} {unit}", way.label());
        figs.push(Fig {
            scenario: scenario.to_string(),
            way,
            value,
            unit,
            extra,
        });
    };

    // 0. Warm-up: every way a little, so none pays for a cold start.
    for way in Way::ALL {
        serial(way, childfd_testbin::EXIT0, 200, Duration::from_millis(300));
    }

    // 1. Serial spawn + wait: static child, then /bin/true.
    for (scenario, path, n) in [
        ("serial static", childfd_testbin::EXIT0, cfg.n_static),
        ("serial /bin/true", "/bin/true", cfg.n_dynamic),
    ] {
        for (way, us) in us_per_spawn_all(path, |_| n, &cfg) {
            push(&mut figs, scenario, way, us, "µs/spawn", Value::Null);
        }
    }
    if serial_only {
        // `--serial`: only the serial scenarios, each way as a ratio to
        // the limit of the same run; no report files.
        for (scenario, way, us) in serial_extras(&cfg) {
            push(&mut figs, &scenario, way, us, "µs/spawn", Value::Null);
        }
        for f in &figs {
            let l = limit(&figs, &f.scenario).unwrap_or(f64::NAN);
            eprintln!(
                "  {:<20} {:<58} {:>8.1} µs  {:>5.2}× limit",
                f.scenario,
                f.way.label(),
                f.value,
                f.value / l
            );
        }
        return;
    }

    // 2. Parent resident memory.
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut have = 0;
    for &gib in &cfg.rss_gib {
        held.push(ballast(gib - have));
        have = gib;
        let scenario = format!("parent RSS {gib} GiB");
        let n = |way: Way| {
            if way.fork_style() && gib > 0 {
                20
            } else {
                cfg.n_static / 3
            }
        };
        for (way, us) in us_per_spawn_all(childfd_testbin::EXIT0, n, &cfg) {
            push(
                &mut figs,
                &scenario,
                way,
                us,
                "µs/spawn",
                json!({ "rss_kib": rss_kib() }),
            );
        }
    }
    drop(held);

    // 3. One and two spawning threads.
    for threads in [1, 2] {
        let scenario = format!(
            "{threads} spawning thread{}",
            if threads > 1 { "s" } else { "" }
        );
        for way in Way::ALL {
            let tput = throughput(
                way,
                childfd_testbin::EXIT0,
                threads,
                cfg.n_static,
                cfg.budget,
            );
            push(&mut figs, &scenario, way, tput, "spawns/s", Value::Null);
        }
    }

    // 4. Many children in flight (each sleeping 200 ms), reaped as they exit.
    //    One run of 10,000 is a single sample that a noisy moment can spoil:
    //    INFLIGHT_RUNS rounds over all the ways (so drifts hit all alike),
    //    the median of each way reported. Peak memory is from the first round.
    for &k in &cfg.inflight {
        let scenario = format!("{k} in flight");
        let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); Way::ALL.len()];
        let mut peak_per_child = vec![f64::NAN; Way::ALL.len()];
        for round in 0..INFLIGHT_RUNS {
            for (i, &way) in Way::ALL.iter().enumerate() {
                let base_rss = rss_kib();
                let reset = round == 0 && reset_peak_rss();
                walls[i].push(inflight(way, childfd_testbin::SLEEP200, k));
                if reset {
                    peak_per_child[i] =
                        (peak_rss_kib().saturating_sub(base_rss) * 1024) as f64 / k as f64;
                }
            }
        }
        for (i, &way) in Way::ALL.iter().enumerate() {
            let runs = &mut walls[i];
            runs.sort();
            let wall = runs[runs.len() / 2];
            let above = wall.saturating_sub(Duration::from_millis(200));
            push(
                &mut figs,
                &scenario,
                way,
                above.as_secs_f64() * 1e6 / k as f64,
                "µs/child above the sleep",
                json!({
                    "wall_ms": wall.as_secs_f64() * 1e3,
                    "wall_ms_runs": runs.iter().map(|w| w.as_secs_f64() * 1e3).collect::<Vec<_>>(),
                    "peak_bytes_per_child": peak_per_child[i],
                }),
            );
        }
    }

    // 5. The Supervisor scenario.
    let sup = supervisor_scenario(&cfg);
    for (name, r) in &sup.rows {
        eprintln!(
            "  supervisor {name:<40} {:>10.0} jobs/s  {:>6.1} µs CPU/job",
            r.jobs_per_s(),
            r.process_us()
        );
    }

    // 6. The async scenario: childfd-tokio against tokio::process.
    let asy = childfd_benches::async_jobs::scenario(&cfg.async_jobs, cfg.async_reps);
    for (n, way, r) in &asy {
        eprintln!(
            "  async {n:>6} {:<32} {:>10.0} jobs/s  {:>6.1} µs CPU/job  {:>3} threads",
            way.label(),
            r.run.jobs_per_s(),
            r.run.process_us(),
            r.peak_threads
        );
    }

    write_report(&cfg, &host, &figs, &sup, &asy, started.elapsed());
}

/// Runs of each in-flight measurement; the median is reported.
const INFLIGHT_RUNS: usize = 3;

/// `--serial` only. (1) What a spawn's environment snapshot costs, as
/// its own scenario with the serial limit measured again beside it: as
/// childfd takes it (`std::env::vars_os` under std's lock, streamed into
/// one `KEY=VALUE\0` buffer and one pointer array), as it took it before
/// (the pairs collected first, then copied, with a third array of
/// offsets), and `std::env::vars_os` alone, the floor: no std interface
/// copies the environment under its lock more cheaply. Timed in the
/// thread's CPU time, medians of 5 runs per repetition.
/// (2) Spawns with piped stdout (read to EOF, then waited) while the
/// process holds 10,000 more fds, against both C limits with those fds.
fn serial_extras(cfg: &Cfg) -> Vec<(String, Way, f64)> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let n = cfg.n_static;
    let mut out = Vec::new();
    let vars = std::env::vars_os().count();
    let streamed = || {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut ptrs: Vec<usize> = Vec::with_capacity(64);
        for (k, val) in std::env::vars_os() {
            ptrs.push(buf.len());
            buf.extend_from_slice(k.as_bytes());
            buf.push(b'=');
            buf.extend_from_slice(val.as_bytes());
            buf.push(0);
        }
        std::hint::black_box((&buf, &ptrs));
    };
    let collected = || {
        let v: Vec<_> = std::env::vars_os().collect();
        let mut buf: Vec<u8> =
            Vec::with_capacity(v.iter().map(|(k, x)| k.len() + x.len() + 2).sum());
        let mut starts = Vec::with_capacity(v.len());
        for (k, val) in &v {
            starts.push(buf.len());
            buf.extend_from_slice(k.as_bytes());
            buf.push(b'=');
            buf.extend_from_slice(val.as_bytes());
            buf.push(0);
        }
        let ptrs: Vec<*const u8> = starts
            .iter()
            .map(|&s| buf.as_ptr().wrapping_add(s))
            .collect();
        std::hint::black_box((&buf, &ptrs));
    };
    let alone = || {
        std::hint::black_box(std::env::vars_os().count());
    };
    let ways: [(&str, &dyn Fn()); 3] = [
        ("", &streamed),
        (", collected first", &collected),
        (", std::env::vars_os alone", &alone),
    ];
    // In this thread's CPU time: a few µs of pure computation, which a
    // loaded machine's preemptions would swamp in wall-clock time.
    let (mut snap, mut lim) = (vec![Vec::new(); ways.len()], Vec::new());
    for _ in 0..cfg.reps {
        for _ in 0..5 {
            for (i, (_, f)) in ways.iter().enumerate() {
                let start = thread_cpu_us();
                for _ in 0..n {
                    f();
                }
                snap[i].push((thread_cpu_us() - start) / n as f64);
            }
        }
        let (k, t) = serial(Way::CloneVmPidfd, childfd_testbin::EXIT0, n, cfg.budget);
        lim.push(t.as_secs_f64() * 1e6 / k as f64);
    }
    let lim = median(lim);
    for ((label, _), s) in ways.iter().zip(snap) {
        let scenario = format!("env snapshot ({vars} vars){label}");
        out.push((scenario.clone(), Way::CloneVmPidfd, lim));
        out.push((scenario, Way::Childfd, median(s)));
    }
    out.extend(containment_costs(cfg));

    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let held: Vec<_> = (0..10_000)
        .map(|_| null.try_clone().expect("dup"))
        .collect();
    let scenario = "10,000 fds open, stdout piped".to_string();
    let cmd = {
        let mut c = childfd::Command::new(childfd_testbin::EXIT0);
        c.stdout(childfd::Stdio::piped());
        c
    };
    let mut std_cmd = std::process::Command::new(childfd_testbin::EXIT0);
    std_cmd.stdout(std::process::Stdio::piped());
    let ways = [
        Way::CloneVmPidfd,
        Way::CloneFilesPidfd,
        Way::Childfd,
        Way::Std,
    ];
    let mut samples = vec![Vec::new(); ways.len()];
    for _ in 0..cfg.reps {
        for (i, &way) in ways.iter().enumerate() {
            let start = Instant::now();
            let mut k = 0;
            while k < n && (k < 3 || start.elapsed() < cfg.budget) {
                match way {
                    Way::Childfd => {
                        let mut c = cmd.spawn().expect("spawn");
                        let mut sink = Vec::new();
                        c.take_stdout()
                            .expect("piped")
                            .read_to_end(&mut sink)
                            .expect("read");
                        assert!(c.wait().expect("wait").success());
                    }
                    Way::Std => assert!(std_cmd.output().expect("output").status.success()),
                    _ => {
                        serial(way, childfd_testbin::EXIT0, 1, cfg.budget);
                    }
                }
                k += 1;
            }
            samples[i].push(start.elapsed().as_secs_f64() * 1e6 / k as f64);
        }
    }
    drop(held);
    for (way, s) in ways.into_iter().zip(samples) {
        out.push((scenario.clone(), way, median(s)));
    }
    out
}

/// CPU time of the calling thread, in µs (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_us() -> f64 {
    // SAFETY: timespec is plain data; clock_gettime fills it in.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// `--serial` only: a childfd spawn in its default mode (a new process
/// group) against one that stays in the caller's group (`Inherit`: the
/// child catches every signal until it execs), each beside the limit.
fn containment_costs(cfg: &Cfg) -> Vec<(String, Way, f64)> {
    use childfd::{Command, Containment};
    let group = Command::new(childfd_testbin::EXIT0);
    let mut inherit = Command::new(childfd_testbin::EXIT0);
    inherit.containment(Containment::Inherit);
    let time = |cmd: &Command| {
        let start = Instant::now();
        let mut k = 0;
        while k < cfg.n_static && (k < 3 || start.elapsed() < cfg.budget) {
            assert!(cmd.status().expect("spawn").success());
            k += 1;
        }
        start.elapsed().as_secs_f64() * 1e6 / k as f64
    };
    let (mut lim, mut g, mut i) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.reps {
        let (k, t) = serial(
            Way::CloneVmPidfd,
            childfd_testbin::EXIT0,
            cfg.n_static,
            cfg.budget,
        );
        lim.push(t.as_secs_f64() * 1e6 / k as f64);
        g.push(time(&group));
        i.push(time(&inherit));
    }
    let lim = median(lim);
    vec![
        ("containment new group".into(), Way::CloneVmPidfd, lim),
        ("containment new group".into(), Way::Childfd, median(g)),
        ("containment Inherit".into(), Way::CloneVmPidfd, lim),
        ("containment Inherit".into(), Way::Childfd, median(i)),
    ]
}

/// The limit's figure in the same scenario.
fn limit(figs: &[Fig], scenario: &str) -> Option<f64> {
    figs.iter()
        .find(|f| f.scenario == scenario && f.way == Way::CloneVmPidfd)
        .map(|f| f.value)
}

fn get(figs: &[Fig], scenario: &str, way: Way) -> Option<f64> {
    figs.iter()
        .find(|f| f.scenario == scenario && f.way == way)
        .map(|f| f.value)
}

/// Cost ratio to the limit (throughputs are inverted so that 1.00 is the
/// limit and higher is slower).
fn ratio(f: &Fig, figs: &[Fig]) -> Option<f64> {
    let l = limit(figs, &f.scenario)?;
    if f.unit == "spawns/s" {
        Some(l / f.value)
    } else {
        Some(f.value / l)
    }
}

struct Target {
    name: String,
    measured: String,
    pass: Option<bool>,
}

fn targets(cfg: &Cfg, figs: &[Fig]) -> Vec<Target> {
    let mut t = Vec::new();
    let s = "serial static";
    if let (Some(c), Some(l), Some(st)) = (
        get(figs, s, Way::Childfd),
        get(figs, s, Way::CloneVmPidfd),
        get(figs, s, Way::Std),
    ) {
        t.push(Target {
            name: "serial static: childfd within 1.05× the limit".into(),
            measured: format!("{:.2}×", c / l),
            pass: Some(c / l <= 1.05),
        });
        t.push(Target {
            name: "serial static: childfd at least 1.25× as fast as std".into(),
            measured: format!("{:.2}×", st / c),
            pass: Some(st / c >= 1.25),
        });
    }
    let big = *cfg.rss_gib.last().unwrap_or(&0);
    if let (Some(z), Some(b)) = (
        get(figs, "parent RSS 0 GiB", Way::Childfd),
        get(figs, &format!("parent RSS {big} GiB"), Way::Childfd),
    ) {
        let name = format!(
            "childfd at 4 GiB parent RSS within 1.15× its 0 GiB cost{}",
            if big != 4 {
                " (quick: measured at 1 GiB)"
            } else {
                ""
            }
        );
        t.push(Target {
            name,
            measured: format!("{:.2}× ({big} GiB)", b / z),
            pass: Some(b / z <= 1.15),
        });
    }
    if let (Some(one), Some(two)) = (
        get(figs, "1 spawning thread", Way::Childfd),
        get(figs, "2 spawning threads", Way::Childfd),
    ) {
        t.push(Target {
            name: "childfd: 2 threads at least 1.7× one thread's throughput".into(),
            measured: format!("{:.2}×", two / one),
            pass: Some(two / one >= 1.7),
        });
    }
    let k = *cfg.inflight.last().unwrap_or(&0);
    if let (Some(per), Some(ser)) = (
        get(figs, &format!("{k} in flight"), Way::Childfd),
        get(figs, s, Way::Childfd),
    ) {
        let name = format!(
            "childfd, {k} in flight: time above the sleep per child within 1.2× serial spawn+wait{}",
            if k != 10_000 {
                " (quick: 10,000 not run)"
            } else {
                ""
            }
        );
        t.push(Target {
            name,
            measured: format!("{:.2}× ({per:.1} µs vs {ser:.1} µs)", per / ser),
            pass: Some(per / ser <= 1.2),
        });
    }
    t
}

fn write_report(
    cfg: &Cfg,
    host: &Value,
    figs: &[Fig],
    sup: &SupervisorFigs,
    asy: &[AsyncFig],
    took: Duration,
) {
    std::fs::create_dir_all(&cfg.out).expect("create report dir");
    let mut targets = targets(cfg, figs);
    targets.extend(sup.targets());
    targets.extend(childfd_benches::async_jobs::targets(asy).into_iter().map(
        |(name, measured, pass)| Target {
            name,
            measured,
            pass: Some(pass),
        },
    ));
    let json = json!({
        "host": host,
        "mode": if cfg.quick { "quick" } else { "full" },
        "took_s": took.as_secs_f64(),
        "limit": Way::CloneVmPidfd.key(),
        "figures": figs.iter().map(|f| json!({
            "scenario": f.scenario, "way": f.way.key(), "label": f.way.label(),
            "value": f.value, "unit": f.unit, "ratio_to_limit": ratio(f, figs), "extra": f.extra,
        })).collect::<Vec<_>>(),
        "supervisor": sup.json(),
        "async": childfd_benches::async_jobs::json(asy),
        "targets": targets.iter().map(|t| json!({ "target": t.name, "measured": t.measured, "pass": t.pass })).collect::<Vec<_>>(),
    });
    std::fs::write(
        cfg.out.join("report.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# childfd spawn benchmark ({} mode)\n",
        if cfg.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        md,
        "Host `{}`: {} × {}, {} GiB, Linux {}, git `{}`; took {:.0} s. Ratios are costs relative to the raw `clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD)` + `waitid` limit of the same run and scenario (1.00 = the limit, higher = slower). Every way execs the same program with no arguments and this process's environment.\n",
        host["hostname"].as_str().unwrap_or(""),
        host["cpus"],
        host["cpu_model"].as_str().unwrap_or(""),
        host["memory_gib"],
        host["kernel"].as_str().unwrap_or(""),
        host["git_revision"].as_str().unwrap_or(""),
        took.as_secs_f64()
    );
    let _ = writeln!(md, "## Targets\n\n| target | measured | |\n|---|---|---|");
    for t in &targets {
        let v = match t.pass {
            Some(true) => "pass",
            Some(false) => "**short**",
            None => "n/a",
        };
        let _ = writeln!(md, "| {} | {} | {v} |", t.name, t.measured);
    }
    let mut scenarios: Vec<&str> = Vec::new();
    for f in figs {
        if !scenarios.contains(&f.scenario.as_str()) {
            scenarios.push(&f.scenario);
        }
    }
    for sc in scenarios {
        let unit = figs
            .iter()
            .find(|f| f.scenario == sc)
            .map_or("", |f| f.unit);
        let _ = writeln!(
            md,
            "\n## {sc}\n\n| way | {unit} | × limit | |\n|---|---|---|---|"
        );
        for f in figs.iter().filter(|f| f.scenario == sc) {
            let extra = match f.extra.get("peak_bytes_per_child").and_then(Value::as_f64) {
                Some(b) if b.is_finite() => format!("peak +{:.0} bytes/child", b),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {extra} |",
                f.way.label().replace('|', "\\|"),
                f.value,
                ratio(f, figs).map_or("-".into(), |r| format!("{r:.2}"))
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Supervisor: {} one-line jobs, 64 in flight\n\nThe CPU ceiling is cores × 1e6 / (this process's + the children's CPU µs per job): the jobs/s if the cores did nothing else. Load from other work on the machine lowers every share alike.\n\n| way | jobs/s | process CPU per job | children's CPU per job | CPU ceiling | share of ceiling |\n|---|---|---|---|---|---|",
        cfg.supervisor_jobs
    );
    for (n, r) in &sup.rows {
        let _ = writeln!(
            md,
            "| {n} | {:.0} | {:.1} µs | {:.1} µs | {:.0} jobs/s | {:.0}% |",
            r.jobs_per_s(),
            r.process_us(),
            r.children_us(),
            r.ceiling(),
            100.0 * r.jobs_per_s() / r.ceiling()
        );
    }
    let _ = writeln!(
        md,
        "\nDeadline lateness ({} jobs, 64 in flight, {} deadlines fired; report time minus deadline): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms.",
        sup.late_jobs,
        sup.late.len(),
        sup.late_ms(0.5),
        sup.late_ms(0.99),
        sup.late_ms(1.0)
    );
    md.push_str(&childfd_benches::async_jobs::markdown(asy));
    std::fs::write(cfg.out.join("report.md"), &md).unwrap();
    std::fs::write(cfg.out.join("report.svg"), svg(cfg, figs)).unwrap();
    println!("{md}");
    eprintln!("wrote {}/report.{{json,md,svg}}", cfg.out.display());
}

const COLORS: [&str; Way::ALL.len()] = [
    "#222222", "#7f7f7f", "#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b",
    "#e377c2",
];

/// Two panels: latency against parent memory (log scale) per way, and
/// serial throughput per way.
fn svg(cfg: &Cfg, figs: &[Fig]) -> String {
    let (w, h) = (980.0, 490.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    // Panel 1: µs per spawn vs parent RSS, log y.
    let (x0, y0, pw, ph) = (60.0, 40.0, 380.0, 300.0);
    let _ = write!(
        s,
        r#"<text x="{x0}" y="24" font-size="13">spawn + wait (µs, log scale) against parent resident memory</text>"#
    );
    let sizes = &cfg.rss_gib;
    let vals: Vec<f64> = figs
        .iter()
        .filter(|f| f.scenario.starts_with("parent RSS"))
        .map(|f| f.value)
        .collect();
    let (lo, hi) = (
        vals.iter().cloned().fold(f64::MAX, f64::min).max(1.0),
        vals.iter().cloned().fold(1.0, f64::max),
    );
    let (llo, lhi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let ypos = |v: f64| y0 + ph - (v.max(1.0).log10() - llo) / (lhi - llo) * ph;
    let xpos = |i: usize| {
        x0 + if sizes.len() > 1 {
            i as f64 * pw / (sizes.len() - 1) as f64
        } else {
            pw / 2.0
        }
    };
    let _ = write!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    let mut d = llo;
    while d <= lhi {
        let y = ypos(10f64.powf(d));
        let _ = write!(
            s,
            r##"<line x1="{x0}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            x0 + pw,
            x0 - 4.0,
            y + 4.0,
            10f64.powf(d)
        );
        d += 1.0;
    }
    for (i, g) in sizes.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{g} GiB</text>"#,
            xpos(i),
            y0 + ph + 16.0
        );
    }
    for (wi, way) in Way::ALL.iter().enumerate() {
        let pts: Vec<String> = sizes
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                get(figs, &format!("parent RSS {g} GiB"), *way)
                    .map(|v| format!("{:.1},{:.1}", xpos(i), ypos(v)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            COLORS[wi]
        );
    }
    // Panel 2: serial static throughput bars.
    let (bx, by, bw) = (560.0, 40.0, 300.0);
    let _ = write!(
        s,
        r#"<text x="{bx}" y="24" font-size="13">serial spawn + wait of a static child (spawns/s)</text>"#
    );
    let tput: Vec<(Way, f64)> = Way::ALL
        .iter()
        .filter_map(|w| get(figs, "serial static", *w).map(|us| (*w, 1e6 / us)))
        .collect();
    let max = tput.iter().map(|t| t.1).fold(1.0, f64::max);
    for (i, (way, v)) in tput.iter().enumerate() {
        let y = by + 10.0 + i as f64 * 32.0;
        let wi = Way::ALL.iter().position(|w| w == way).unwrap_or(0);
        let len = v / max * bw;
        let _ = write!(
            s,
            r#"<rect x="{bx}" y="{y}" width="{len:.1}" height="20" fill="{}"/><text x="{}" y="{}">{:.0}</text>"#,
            COLORS[wi],
            bx + len + 4.0,
            y + 14.0,
            v
        );
    }
    // Legend.
    for (wi, way) in Way::ALL.iter().enumerate() {
        let y = h - 84.0 + (wi / 2) as f64 * 16.0;
        let x = 60.0 + (wi % 2) as f64 * 460.0;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 9.0,
            COLORS[wi],
            x + 14.0,
            way.label().replace('<', "&lt;")
        );
    }
    s.push_str("</svg>\n");
    s
}
