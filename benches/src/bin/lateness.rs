//! Timer lateness of childfd-tokio under CPU load, with the clone on the
//! worker (`childfd_tokio::spawn`, synchronous) against the clone on the
//! spawner thread (`spawn_async`), interleaved in one run:
//! `lateness [SECONDS_PER_ROUND] [ROUNDS] [HOGS]`.
//!
//! As the chaos soak's tokio worker: a two-worker runtime, eight tasks
//! each looping over a capture of a three-process tree with a 100 ms deadline, plus a
//! probe task sleeping 10 ms at a time; `HOGS` busy processes (default 8)
//! compete for the CPUs. Prints, per way, how late the deadlines were
//! reported (elapsed minus deadline), how late the probe's timer woke,
//! and how long one spawn call held its thread at most.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use childfd_tokio::{CommandExt, Options};

#[derive(Default)]
struct Figures {
    deadline_late_ms: Vec<f64>,
    probe_late_ms: Vec<f64>,
    spawn_hold_ms: Vec<f64>,
    /// The longest single poll of each `output` future: how long the
    /// capture itself held its worker at a time (/proc scans, signals).
    output_poll_ms: Vec<f64>,
}

/// Times every poll of the wrapped future; keeps the longest.
struct PollTimer<F> {
    inner: std::pin::Pin<Box<F>>,
    longest: Duration,
}

impl<F: std::future::Future> std::future::Future for PollTimer<F> {
    type Output = (F::Output, Duration);
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let t0 = Instant::now();
        let r = self.inner.as_mut().poll(cx);
        let took = t0.elapsed();
        self.longest = self.longest.max(took);
        r.map(|o| (o, self.longest))
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn round(on_worker: bool, secs: u64, figs: &Arc<Mutex<Figures>>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let figs = figs.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let deadline = Duration::from_millis(100);
                    // A tree: TERM ends all three; the two orphans wait
                    // for init to reap them.
                    let mut cmd = childfd::Command::new("sh");
                    cmd.args(["-c", "sleep 5 & sleep 5 & exec sleep 5"])
                        .stdout(childfd::Stdio::piped())
                        .stderr(childfd::Stdio::piped())
                        .stdin(childfd::Stdio::null());
                    let t0 = Instant::now();
                    let mut child = if on_worker {
                        childfd_tokio::spawn(&mut cmd).unwrap()
                    } else {
                        cmd.spawn_async().await.unwrap()
                    };
                    let held = t0.elapsed();
                    let opts = Options::new()
                        .deadline(deadline)
                        .grace(Duration::from_millis(15));
                    let timed = PollTimer {
                        inner: Box::pin(childfd_tokio::output(&mut child, opts)),
                        longest: Duration::ZERO,
                    };
                    let (out, longest_poll) = timed.await;
                    let out = out.unwrap();
                    let late = out.elapsed.saturating_sub(deadline);
                    let mut f = figs.lock().unwrap();
                    f.deadline_late_ms.push(late.as_secs_f64() * 1e3);
                    f.output_poll_ms.push(longest_poll.as_secs_f64() * 1e3);
                    if on_worker {
                        f.spawn_hold_ms.push(held.as_secs_f64() * 1e3);
                    }
                }
            }));
        }
        let figs = figs.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let t0 = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let late = t0.elapsed().saturating_sub(Duration::from_millis(10));
                figs.lock()
                    .unwrap()
                    .probe_late_ms
                    .push(late.as_secs_f64() * 1e3);
            }
        }));
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let secs = args.first().copied().unwrap_or(5);
    let rounds = args.get(1).copied().unwrap_or(2);
    let hogs = args.get(2).copied().unwrap_or(8);
    let mut hog_procs: Vec<std::process::Child> = (0..hogs)
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("hog")
        })
        .collect();
    let ways = [(true, "spawn on the worker"), (false, "spawn_async")];
    let figs: Vec<Arc<Mutex<Figures>>> = ways.iter().map(|_| Arc::default()).collect();
    for _ in 0..rounds {
        for (i, (on_worker, _)) in ways.iter().enumerate() {
            round(*on_worker, secs, &figs[i]);
        }
    }
    for h in &mut hog_procs {
        let _ = h.kill();
        let _ = h.wait();
    }
    println!("{hogs} CPU hogs, {rounds} rounds of {secs} s per way, 2 workers, 8 capture tasks");
    for ((_, name), f) in ways.iter().zip(figs) {
        let mut f = f.lock().unwrap();
        let n = f.deadline_late_ms.len();
        let (d50, d99, dmax) = (
            pct(&mut f.deadline_late_ms, 0.5),
            pct(&mut f.deadline_late_ms, 0.99),
            pct(&mut f.deadline_late_ms, 1.0),
        );
        let (p50, p99, pmax) = (
            pct(&mut f.probe_late_ms, 0.5),
            pct(&mut f.probe_late_ms, 0.99),
            pct(&mut f.probe_late_ms, 1.0),
        );
        let (o99, omax) = (
            pct(&mut f.output_poll_ms, 0.99),
            pct(&mut f.output_poll_ms, 1.0),
        );
        let (h99, hmax) = (
            pct(&mut f.spawn_hold_ms, 0.99),
            pct(&mut f.spawn_hold_ms, 1.0),
        );
        println!(
            "{name:<20} {n:>5} jobs | deadline late ms p50 {d50:.1} p99 {d99:.1} max {dmax:.1} | \
             probe timer late ms p50 {p50:.1} p99 {p99:.1} max {pmax:.1} | spawn held its thread ms p99 {h99:.1} max {hmax:.1} | \
             longest output poll ms p99 {o99:.1} max {omax:.1}"
        );
    }
}
