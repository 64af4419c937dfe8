//! [`JobSet`]: many children as tokio tasks, with a cap on how many run,
//! reported as the Supervisor's events.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use childfd::{Command, Stdio};
use childfd_io::{Event, JobId, Outcome, OutputError, Report, Summary};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::lines::{LineSink, Msg, Room};
use crate::options::Options;
use crate::output::capture;
use crate::{SpawnError, spawn_owned_for_capture};

/// Many commands on the current runtime, at most `max_in_flight` at once,
/// each captured by [`output`](crate::output)'s state machine; reported as
/// the same [`Event`]s as the [`childfd_io::Supervisor`] (so a test runner
/// can move between the two) through [`next`](JobSet::next) or the
/// [`Stream`](futures_core::Stream) impl.
///
/// Each job is a tokio task: on a multi-thread runtime jobs spawn and read
/// on every worker, and the whole set costs no thread of its own. Jobs
/// start as events are taken: a set nobody polls starts nothing new (the
/// running ones keep running, their deadlines firing). Dropping the set
/// aborts its tasks; each kills its job's tree when the runtime drops it
/// (at its next turn, on the thread that runs it). A runtime that shuts
/// down drops the tasks it runs, killing their trees too: a set that
/// outlives it reports those jobs `Cancelled` (with an error saying why)
/// and runs its queued jobs on the runtime that polls it next.
///
/// Per job, the events are `Started`, then its `Line`s (with
/// [`Options::line_events`]), then one report: `Exited`, `TimedOut`,
/// `PipesHeldOpen`, `Cancelled`, `SpawnFailed` or `Failed` (never
/// `Leaked`, nor `Interrupted`). Jobs carry their [tag](Options::tag).
///
/// ```
/// use childfd_tokio::{Event, JobSet, Options};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let mut jobs = JobSet::new(8);
/// for n in 0..3 {
///     let mut cmd = childfd::Command::new("sh");
///     cmd.args(["-c", &format!("echo {n}")]);
///     jobs.push(cmd, Options::new().deadline(Duration::from_secs(10)));
/// }
/// while let Some(ev) = jobs.next().await {
///     if let Event::Exited(report) = ev {
///         assert_eq!(report.stdout.text(), format!("{}\n", report.id));
///     }
/// }
/// assert_eq!(jobs.summary().succeeded, 3);
/// # });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JobSet {
    max_in_flight: usize,
    next_id: JobId,
    queue: VecDeque<(JobId, Command, Options)>,
    tasks: JoinSet<Report>,
    /// The running jobs, and which task runs which.
    running: HashMap<JobId, Running>,
    job_of_task: HashMap<tokio::task::Id, JobId>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    room: Arc<Room>,
    ready: VecDeque<Event>,
    summary: Summary,
}

impl JobSet {
    /// A set running at most `max_in_flight` (at least 1) children at once.
    pub fn new(max_in_flight: usize) -> JobSet {
        let (tx, rx) = mpsc::unbounded_channel();
        JobSet {
            max_in_flight: max_in_flight.max(1),
            next_id: 0,
            queue: VecDeque::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            job_of_task: HashMap::new(),
            tx,
            rx,
            room: Arc::new(Room::default()),
            ready: VecDeque::new(),
            summary: Summary::default(),
        }
    }

    /// Queues `cmd`; its stdout and stderr are piped (stdin too if `opts`
    /// gives input, else `/dev/null`). Its deadline counts from its start.
    pub fn push(&mut self, cmd: Command, opts: Options) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.summary.queued += 1;
        self.queue.push_back((id, cmd, opts));
        id
    }

    /// Children running now.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Jobs not reported yet (queued or running).
    pub fn len(&self) -> usize {
        self.queue.len() + self.tasks.len()
    }

    /// Whether every job has been reported.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.ready.is_empty()
    }

    /// The counts so far (`supervisor_cpu` stays zero: there is no
    /// supervising thread).
    pub fn summary(&self) -> Summary {
        self.summary.clone()
    }

    /// Cancels a job: a queued one is reported `Cancelled` without
    /// starting; a running one has its tree killed and its pipes drained,
    /// then is reported `Cancelled` (unless it ended first).
    pub fn cancel(&mut self, id: JobId) {
        if let Some(i) = self.queue.iter().position(|(q, ..)| *q == id) {
            if let Some((_, _, opts)) = self.queue.remove(i) {
                self.report(Report::empty(id, opts.tag, Outcome::Cancelled));
            }
        } else if let Some(job) = self.running.get(&id) {
            job.cancel.notify_one(); // kept as a permit if the task is not waiting yet
        }
    }

    /// Cancels every job, queued or running.
    pub fn cancel_all(&mut self) {
        for (id, _, opts) in std::mem::take(&mut self.queue) {
            self.report(Report::empty(id, opts.tag, Outcome::Cancelled));
        }
        for job in self.running.values() {
            job.cancel.notify_one();
        }
    }

    /// The next event; `None` once every job pushed has been reported.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Poll::Ready(Some(ev));
            }
            self.start_queued();
            if let Poll::Ready(Some(msg)) = self.rx.poll_recv(cx) {
                self.take_msg(msg);
                continue;
            }
            match self.tasks.poll_join_next_with_id(cx) {
                Poll::Ready(Some(done)) => {
                    // Its lines were sent before it finished: report them first.
                    while let Ok(msg) = self.rx.try_recv() {
                        self.take_msg(msg);
                    }
                    self.take_finished(done);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn start_queued(&mut self) {
        while self.tasks.len() < self.max_in_flight {
            let Some((id, cmd, mut opts)) = self.queue.pop_front() else {
                return;
            };
            if opts.line_events && opts.lines.is_none() {
                opts.lines = Some(LineSink {
                    id,
                    tag: opts.tag.clone(),
                    tx: self.tx.clone(),
                    room: self.room.clone(),
                });
            }
            let cancel = Arc::new(Notify::new());
            let job = Running {
                cancel: cancel.clone(),
                tag: opts.tag.clone(),
                pid: None,
            };
            let tx = self.tx.clone();
            let task = self.tasks.spawn(run_job(id, cmd, opts, cancel, tx));
            self.running.insert(id, job);
            self.job_of_task.insert(task.id(), id);
            self.summary.max_in_flight = self.summary.max_in_flight.max(self.tasks.len());
        }
    }

    fn take_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Started(id, pid, tag) => {
                self.summary.started += 1;
                if let Some(job) = self.running.get_mut(&id) {
                    job.pid = Some(pid);
                }
                self.ready.push_back(Event::Started { id, pid, tag });
            }
            Msg::Line(id, stream, line, tag) => {
                self.room.took_one();
                self.ready.push_back(Event::Line {
                    id,
                    stream,
                    line,
                    tag,
                });
            }
        }
    }

    fn take_finished(&mut self, done: Result<(tokio::task::Id, Report), tokio::task::JoinError>) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let job = self.job_of_task.remove(&task);
        let job = job.and_then(|id| Some((id, self.running.remove(&id)?)));
        match done {
            Ok((_, report)) => self.report(report),
            // A job task panicked (a bug, or a panic of its spawn):
            // resumed here, as if the job had run inline.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Dropped unfinished by its runtime's shutdown (the set
            // outlived it): the task's drop killed the tree.
            Err(_) => {
                if let Some((id, job)) = job {
                    self.report(job.dropped_by_the_runtime(id));
                }
            }
        }
    }

    /// Counts a finished job's report and queues its event (as the
    /// Supervisor does, by the same code).
    fn report(&mut self, r: Report) {
        let ev = self.summary.record(r);
        self.ready.push_back(ev);
    }
}

/// A job whose task runs.
#[derive(Debug)]
struct Running {
    cancel: Arc<Notify>,
    tag: Option<Arc<str>>,
    pid: Option<u32>,
}

impl Running {
    /// The report of a job whose task was dropped unfinished by the
    /// runtime's shutdown.
    fn dropped_by_the_runtime(self, id: JobId) -> Report {
        let why = "the runtime running the job shut down: its tree was killed";
        Report {
            pid: self.pid,
            error: Some(Arc::new(OutputError::Io {
                source: std::io::Error::other(why),
            })),
            ..Report::empty(id, self.tag, Outcome::Cancelled)
        }
    }
}

impl futures_core::Stream for JobSet {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

/// One job's task: spawn (on a spawner thread), capture, report.
async fn run_job(
    id: JobId,
    mut cmd: Command,
    mut opts: Options,
    cancel: Arc<Notify>,
    tx: mpsc::UnboundedSender<Msg>,
) -> Report {
    let started = Instant::now();
    let tag = opts.tag.take();
    let failed = |outcome, error: OutputError| Report {
        error: Some(Arc::new(error)),
        elapsed: started.elapsed(),
        ..Report::empty(id, tag.clone(), outcome)
    };
    let stdin = if opts.has_input() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, plain) = match spawn_owned_for_capture(cmd).await.1 {
        Ok(c) => c,
        Err(SpawnError::Spawn(e)) => return failed(Outcome::SpawnFailed, OutputError::Spawn(e)),
        Err(SpawnError::Register { source }) => {
            return failed(Outcome::Failed, OutputError::Io { source });
        }
    };
    let pid = child.id();
    let _ = tx.send(Msg::Started(id, pid, tag.clone()));
    match capture(&mut child, plain, opts, Some(&cancel)).await {
        Ok(out) => Report {
            id,
            tag,
            pid: Some(pid),
            status: out.status,
            outcome: out.outcome,
            stdout: out.stdout,
            stderr: out.stderr,
            stdin_written: out.stdin_written,
            stdin_closed_early: out.stdin_closed_early,
            holders: out.holders,
            left_behind: 0,
            ended_by: out.ended_by,
            error: None,
            elapsed: started.elapsed(),
        },
        Err(error) => {
            let _ = child.kill_tree(); // nothing of a failed job lives on
            Report {
                pid: Some(pid),
                ..failed(Outcome::Failed, error)
            }
        }
    }
}
