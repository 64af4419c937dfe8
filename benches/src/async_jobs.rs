//! The async scenario: N short jobs with output capture, all in flight at
//! once, childfd-tokio against `tokio::process` on both runtimes, in one
//! process run. Per way: jobs/s, CPU per job, peak threads, peak RSS.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{JobsRun, measure_jobs, peak_rss_kib, reset_peak_rss, rss_kib};

/// One way to run the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncWay {
    /// `childfd_tokio::CommandExt::output_async`, in a `JoinSet`.
    ChildfdTokio {
        /// Multi-thread runtime (else current-thread).
        multi_thread: bool,
    },
    /// `tokio::process::Command::output`, in a `JoinSet`.
    TokioProcess {
        /// Multi-thread runtime (else current-thread).
        multi_thread: bool,
    },
}

impl AsyncWay {
    /// Every way, in report order.
    pub const ALL: [AsyncWay; 4] = [
        AsyncWay::ChildfdTokio { multi_thread: true },
        AsyncWay::TokioProcess { multi_thread: true },
        AsyncWay::ChildfdTokio {
            multi_thread: false,
        },
        AsyncWay::TokioProcess {
            multi_thread: false,
        },
    ];

    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            AsyncWay::ChildfdTokio { multi_thread: true } => "childfd-tokio, multi-thread",
            AsyncWay::ChildfdTokio { .. } => "childfd-tokio, current-thread",
            AsyncWay::TokioProcess { multi_thread: true } => "tokio::process, multi-thread",
            AsyncWay::TokioProcess { .. } => "tokio::process, current-thread",
        }
    }

    fn multi_thread(self) -> bool {
        match self {
            AsyncWay::ChildfdTokio { multi_thread } | AsyncWay::TokioProcess { multi_thread } => {
                multi_thread
            }
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct AsyncRun {
    /// Wall time and CPU.
    pub run: JobsRun,
    /// Most threads of the process during the run (the sampler excluded).
    pub peak_threads: usize,
    /// Peak resident memory during the run, above the resident size
    /// before it (KiB; `None` if the peak could not be reset).
    pub peak_rss_kib: Option<u64>,
}

/// Runs `n` jobs of `childfd-testbin`'s `echo1` (prints one line) at once
/// on a fresh runtime, each capturing stdout and stderr, checking the
/// output of every one.
pub fn run(way: AsyncWay, n: usize) -> AsyncRun {
    let rt = crate::tokio_runtime(way.multi_thread());
    rt.block_on(async { tokio::task::yield_now().await }); // workers up
    let stop = Arc::new(AtomicBool::new(false));
    // The sampler's own CPU (it reads /proc every millisecond): taken out
    // of the run's process CPU, which is the way's alone.
    let sampler_ns = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, sampler_ns) = (stop.clone(), sampler_ns.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(childfd_testbin::thread_count());
                let cpu = crate::clock_cpu(rustix::time::ClockId::ThreadCPUTime);
                sampler_ns.store(cpu.as_nanos() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            peak.saturating_sub(1) // not the sampler itself
        })
    };
    let rss0 = rss_kib();
    let reset = reset_peak_rss();
    let cap = Arc::new(tokio::sync::Semaphore::new(max_in_flight(n)));
    let sampled_before = sampler_ns.load(Ordering::Relaxed);
    let mut run = measure_jobs(n, || {
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let permit = cap.clone().acquire_owned();
                match way {
                    AsyncWay::ChildfdTokio { .. } => set.spawn(async move {
                        let _p = permit.await;
                        childfd_job().await
                    }),
                    AsyncWay::TokioProcess { .. } => set.spawn(async move {
                        let _p = permit.await;
                        tokio_job().await
                    }),
                };
            }
            while let Some(r) = set.join_next().await {
                r.expect("job");
            }
        });
        None
    });
    let sampler_cpu = sampler_ns.load(Ordering::Relaxed) - sampled_before;
    run.process_cpu = run
        .process_cpu
        .saturating_sub(Duration::from_nanos(sampler_cpu));
    run.supervisor_cpu = run.process_cpu;
    let peak_rss = reset.then(|| peak_rss_kib().saturating_sub(rss0));
    stop.store(true, Ordering::Relaxed);
    let peak_threads = sampler.join().expect("sampler");
    drop(rt);
    AsyncRun {
        run,
        peak_threads,
        peak_rss_kib: peak_rss,
    }
}

/// Jobs in flight at once: all of them, unless the fd limit (three fds
/// per child: pidfd or pid reaper, stdout, stderr) cannot hold them; the
/// same cap for every way.
pub fn max_in_flight(n: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let by_fds = (limit.saturating_sub(512) / 4).max(64);
    n.min(usize::try_from(by_fds).unwrap_or(usize::MAX))
}

async fn childfd_job() {
    use childfd_tokio::CommandExt;
    let o = childfd::Command::new(childfd_testbin::ECHO1)
        .output_async(childfd_tokio::Options::new().max_bytes(4096))
        .await
        .expect("childfd-tokio job");
    assert!(o.status.is_some_and(|s| s.success()) && o.stdout.head == b"line\n");
}

async fn tokio_job() {
    let o = tokio::process::Command::new(childfd_testbin::ECHO1)
        .output()
        .await
        .expect("tokio job");
    assert!(o.status.success() && o.stdout == b"line\n");
}

/// Every way at every size, repetitions interleaved across the ways (so
/// drifts of the machine hit all alike); the run with the median jobs/s
/// is kept.
///
/// Each size starts with one unmeasured run of every way: the first run
/// in the process would otherwise pay alone for what later ones reuse
/// (the heap grown to hold the jobs in flight, first-touch page faults
/// included; each library's threads and one-time probes), and the way
/// that happens to come first would carry it (in a `--quick` run, one
/// repetition, that was childfd-tokio's multi-thread run: peak RSS 5.6 MiB
/// above the start against tokio's 0.0 right after it).
pub fn scenario(sizes: &[usize], reps: usize) -> Vec<(usize, AsyncWay, AsyncRun)> {
    let mut out = Vec::new();
    for &n in sizes {
        for way in AsyncWay::ALL {
            run(way, n);
        }
        let mut runs: Vec<Vec<AsyncRun>> = vec![Vec::new(); AsyncWay::ALL.len()];
        for _ in 0..reps {
            for (i, way) in AsyncWay::ALL.iter().enumerate() {
                runs[i].push(run(*way, n));
            }
        }
        for (way, mut rs) in AsyncWay::ALL.iter().zip(runs) {
            rs.sort_by(|a, b| a.run.jobs_per_s().total_cmp(&b.run.jobs_per_s()));
            out.push((n, *way, rs[rs.len() / 2]));
        }
    }
    out
}

/// childfd-tokio's run against tokio's of the same size and runtime.
fn vs_tokio(
    figs: &[(usize, AsyncWay, AsyncRun)],
    n: usize,
    multi_thread: bool,
) -> Option<(AsyncRun, AsyncRun)> {
    let find = |w: AsyncWay| {
        figs.iter()
            .find(|(k, way, _)| *k == n && *way == w)
            .map(|f| f.2)
    };
    Some((
        find(AsyncWay::ChildfdTokio { multi_thread })?,
        find(AsyncWay::TokioProcess { multi_thread })?,
    ))
}

/// The figures as JSON.
pub fn json(figs: &[(usize, AsyncWay, AsyncRun)]) -> Value {
    json!(
        figs.iter()
            .map(|(n, way, r)| {
                let base = vs_tokio(figs, *n, way.multi_thread()).map(|p| p.1);
                json!({
                    "jobs": n,
                    "max_in_flight": max_in_flight(*n),
                    "way": way.label(),
                    "jobs_per_s": r.run.jobs_per_s(),
                    "process_cpu_us_per_job": r.run.process_us(),
                    "children_cpu_us_per_job": r.run.children_us(),
                    "peak_threads": r.peak_threads,
                    "peak_rss_kib": r.peak_rss_kib,
                    "jobs_per_s_to_tokio": base.map(|t| r.run.jobs_per_s() / t.run.jobs_per_s()),
                    "cpu_to_tokio": base.map(|t| r.run.process_us() / t.run.process_us()),
                })
            })
            .collect::<Vec<_>>()
    )
}

/// `(target, measured, pass)`: at every size, per runtime, childfd-tokio
/// ≥ 1.0× tokio's jobs/s at ≤ 0.6× its CPU per job.
pub fn targets(figs: &[(usize, AsyncWay, AsyncRun)]) -> Vec<(String, String, bool)> {
    let mut sizes: Vec<usize> = figs.iter().map(|f| f.0).collect();
    sizes.dedup();
    let mut t = Vec::new();
    for (n, multi) in sizes.into_iter().flat_map(|n| [(n, true), (n, false)]) {
        let Some((c, k)) = vs_tokio(figs, n, multi) else {
            continue;
        };
        let rt = if multi {
            "multi-thread"
        } else {
            "current-thread"
        };
        let speed = c.run.jobs_per_s() / k.run.jobs_per_s();
        let cpu = c.run.process_us() / k.run.process_us();
        t.push((
            format!("childfd-tokio ({rt}, {n} jobs): ≥ 1.0× tokio::process's jobs/s"),
            format!("{speed:.2}×"),
            speed >= 1.0,
        ));
        t.push((
            format!("childfd-tokio ({rt}, {n} jobs): ≤ 0.6× tokio::process's CPU per job"),
            format!("{cpu:.2}×"),
            cpu <= 0.6,
        ));
    }
    t
}

/// The report's section (markdown).
pub fn markdown(figs: &[(usize, AsyncWay, AsyncRun)]) -> String {
    let mut md = String::from(
        "\n## Async: short jobs with output capture, all in flight at once\n\nEach job runs `echo1` (static, prints one line) and captures stdout and stderr; every job is a task of one `JoinSet`, started at once (up to `max in flight`: the fd limit allows three fds per child). CPU is this process's per job, the thread-count sampler's own taken out (the children's is alike for every way). Peak threads counts every thread of the process (runtime workers, blocking pool, background reaper); peak RSS is above the size before the run. Ratios are to `tokio::process` on the same runtime and size.\n\n| jobs | max in flight | way | jobs/s | × tokio | CPU per job | × tokio | peak threads | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (n, way, r) in figs {
        let base = vs_tokio(figs, *n, way.multi_thread()).map(|p| p.1);
        let ratio = |x: f64| base.map_or("-".to_string(), |_| format!("{x:.2}"));
        let (speed, cpu) = base.map_or((f64::NAN, f64::NAN), |t| {
            (
                r.run.jobs_per_s() / t.run.jobs_per_s(),
                r.run.process_us() / t.run.process_us(),
            )
        });
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {:.0} | {} | {:.1} µs | {} | {} | {} |",
            max_in_flight(*n),
            way.label(),
            r.run.jobs_per_s(),
            ratio(speed),
            r.run.process_us(),
            ratio(cpu),
            r.peak_threads,
            r.peak_rss_kib
                .map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        );
    }
    md
}
