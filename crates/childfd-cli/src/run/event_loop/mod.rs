//! The one loop of `childfd run`: the program's pidfd and pipes, the
//! pass-through writers and childfd's signals, in one `mio::Poll`.
//!
//! Signals childfd gets:
//!
//! | signal | what childfd does |
//! |---|---|
//! | INT, TERM, HUP, QUIT | passes it to the tree with SIGCONT, SIGKILL after `--kill-after`; a second one: SIGKILL now. Exit 128+N |
//! | USR1, USR2 | passes it to the program (not its descendants: their default is to die) |
//! | WINCH | passes it to the tree (ignored by default) |
//! | TSTP | stops the tree (SIGTSTP), takes the terminal back, stops itself |
//! | CONT | gives the terminal back to the program if childfd has it, continues the tree |
//! | CHLD | if the program holding the terminal stopped (Ctrl-Z), takes the terminal back and stops itself, as a shell's job would |
//!
//! Output is read only while the pass-through buffer has room (or freely,
//! dropping, once the tree is being ended or the reader is gone); every
//! step of the loop is bounded, so deadlines and signals always fire.

mod finish;
mod signals;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use childfd::{Child, Signal};
use childfd_io::engine::{Lifecycle, Limits, Step};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use super::{Ended, StreamCount, finish_tree};
use crate::args::Run;
use crate::report::Outcome;
use crate::sink::Sink;
use crate::term::{Foreground, stdio};

const PIDFD: Token = Token(0);
const PIPES: [Token; 2] = [Token(1), Token(2)];
const SIGNALS: Token = Token(3);
const WAKER: Token = Token(4);

const CHUNK: usize = 64 * 1024;
/// Reads per stream per turn of the loop: a program writing faster than
/// childfd reads cannot keep the loop from its deadlines and signals.
const READS_PER_TURN: usize = 8;

/// One output pipe of the program.
struct Pipe {
    fd: OwnedFd,
    /// Edge-triggered: set on a readable event, cleared on EAGAIN.
    readable: bool,
}

struct Loop<'a> {
    args: &'a Run,
    poll: Poll,
    child: Child,
    life: Lifecycle,
    pipes: [Option<Pipe>; 2],
    sinks: [Option<Sink>; 2],
    counts: [StreamCount; 2],
    signals: Signals,
    /// Set by every SIGCONT (cleared before each batch of signals is
    /// read): a SIGCONT that comes after childfd decided to stop itself
    /// cancels that stop, or childfd would stop with nobody left to
    /// continue it.
    cont_seen: Arc<AtomicBool>,
    fg: Option<Foreground>,
    /// The first terminating signal childfd got.
    signal: Option<Signal>,
    /// childfd's stdout was closed by its reader.
    broken: bool,
    buf: Vec<u8>,
    /// Just before the spawn: the deadline counts from here.
    t0: Instant,
    /// Held for the loop's whole life: a writer thread that exits drops
    /// its clone, and closing the last one would take a wake-up it had
    /// just posted out of the poll before the loop saw it.
    waker: Option<Arc<Waker>>,
}

/// Supervises `child` until it and its output are done and its tree is
/// gone, however that comes about.
pub fn supervise(
    args: &Run,
    mut child: Child,
    fg: Option<Foreground>,
    signals: Signals,
    t0: Instant,
) -> Ended {
    let pid = child.id();
    let fds = [
        child.take_stdout().map(OwnedFd::from),
        child.take_stderr().map(OwnedFd::from),
    ];
    let limits = Limits {
        deadline: args.timeout(),
        grace: args.grace,
        wait_delay: args.wait_delay,
        kill_tree_on_held_pipes: true,
        ..Limits::default()
    };
    let life = Lifecycle::new(t0, &limits).first_signal(args.signal);
    let mut counts = [StreamCount::default(); 2];
    for (c, fd) in counts.iter_mut().zip(&fds) {
        c.piped = fd.is_some();
    }
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => return failed(pid, child, counts, &e),
    };
    let mut lp = Loop {
        args,
        poll,
        child,
        life,
        pipes: [None, None],
        sinks: [None, None],
        counts,
        signals,
        cont_seen: Arc::new(AtomicBool::new(false)),
        fg,
        signal: None,
        broken: false,
        buf: vec![0; CHUNK],
        t0,
        waker: None,
    };
    if let Err(e) = lp.register(fds) {
        return failed(pid, lp.child, lp.counts, &e);
    }
    let result = lp.run();
    lp.end(pid, result)
}

fn failed(pid: u32, child: Child, counts: [StreamCount; 2], e: &dyn std::fmt::Display) -> Ended {
    finish_tree(child);
    Ended {
        pid,
        outcome: Outcome::Error,
        status: None,
        ended_by: None,
        signal: None,
        exited_at: None,
        streams: counts,
        holders: Vec::new(),
        error: Some(e.to_string()),
    }
}

type Done = (childfd_io::Outcome, Vec<childfd_io::Holder>);

impl Loop<'_> {
    fn register(&mut self, fds: [Option<OwnedFd>; 2]) -> io::Result<()> {
        let reg = self.poll.registry();
        reg.register(
            &mut SourceFd(&self.child.as_fd().as_raw_fd()),
            PIDFD,
            Interest::READABLE,
        )?;
        reg.register(&mut self.signals, SIGNALS, Interest::READABLE)?;
        signal_hook::flag::register(libc::SIGCONT, self.cont_seen.clone())?;
        let waker = Arc::new(Waker::new(reg, WAKER)?);
        self.waker = Some(waker.clone());
        let targets = [stdio::stdout(), stdio::stderr()];
        for (i, fd) in fds.into_iter().enumerate() {
            let Some(fd) = fd else { continue };
            rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
            reg.register(&mut SourceFd(&fd.as_raw_fd()), PIPES[i], Interest::READABLE)?;
            let w = waker.clone();
            self.sinks[i] = Some(Sink::start(targets[i], move || {
                let _ = w.wake();
            })?);
            self.pipes[i] = Some(Pipe { fd, readable: true });
        }
        Ok(())
    }

    /// Runs until the lifecycle says the capture is done.
    fn run(&mut self) -> Result<Done, String> {
        let mut events = Events::with_capacity(16);
        self.life.poll_exit(&self.child).map_err(err)?;
        loop {
            let busy = self.pump().map_err(|e| e.to_string())?;
            self.check_sinks().map_err(err)?;
            let pipes_open = self.pipes.iter().any(Option::is_some);
            let inodes = || {
                self.pipes
                    .iter()
                    .flatten()
                    .filter_map(|p| rustix::fs::fstat(&p.fd).ok().map(|s| s.st_ino))
                    .collect()
            };
            let wake = match self
                .life
                .step(&self.child, Instant::now(), pipes_open, &inodes)
                .map_err(err)?
            {
                Step::Done(outcome, holders) => return Ok((outcome, holders)),
                Step::Wait(w) => w,
            };
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                wake.map(|w| w.saturating_duration_since(Instant::now()))
            };
            self.wait(&mut events, timeout).map_err(|e| e.to_string())?;
        }
    }

    /// One `poll`, then the events.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            match ev.token() {
                PIDFD => self.life.poll_exit(&self.child).map_err(io::Error::other)?,
                SIGNALS => self.on_signals(),
                t => {
                    if let Some(i) = PIPES.iter().position(|p| *p == t) {
                        if let Some(p) = &mut self.pipes[i] {
                            p.readable = true;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether output is read without waiting for room (and dropped when
    /// there is none): once the tree is being ended, or nobody reads.
    fn draining(&self, i: usize) -> bool {
        self.life.ending() || self.sinks[i].as_ref().is_none_or(|s| s.error().is_some())
    }

    /// Reads what the pass-through has room for; returns whether a pipe
    /// is still readable with room (the loop then polls without waiting).
    fn pump(&mut self) -> io::Result<bool> {
        let mut busy = false;
        for i in 0..2 {
            for _ in 0..READS_PER_TURN {
                let drain = self.draining(i);
                let room = match (&self.sinks[i], drain) {
                    (_, true) | (None, _) => CHUNK,
                    (Some(s), false) => s.room().min(CHUNK),
                };
                let Some(p) = &mut self.pipes[i] else { break };
                if !p.readable || room == 0 {
                    break;
                }
                match rustix::io::read(&p.fd, &mut self.buf[..room]) {
                    Ok(0) => {
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&p.fd.as_raw_fd()));
                        self.pipes[i] = None;
                    }
                    Ok(n) => self.deliver(i, n),
                    Err(rustix::io::Errno::AGAIN) => p.readable = false,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            busy |= self.pipes[i].as_ref().is_some_and(|p| p.readable)
                && (self.draining(i) || self.sinks[i].as_ref().is_some_and(|s| s.room() > 0));
        }
        Ok(busy)
    }

    /// Passes `buf[..n]` of stream `i` on, within `--max-output`.
    fn deliver(&mut self, i: usize, n: usize) {
        let c = &mut self.counts[i];
        c.total += n as u64;
        let limit = self.args.max_output.unwrap_or(u64::MAX);
        let allowed = limit.saturating_sub(c.total - n as u64 - c.capped);
        let pass = (n as u64).min(allowed) as usize;
        c.capped += (n - pass) as u64;
        if let Some(s) = &self.sinks[i] {
            // In draining mode what does not fit is dropped (counted at the end).
            s.push(&self.buf[..pass]);
        }
    }

    /// A reader that left childfd's stdout ends the run like SIGPIPE ends
    /// a pipeline (unless `--keep-draining`); stderr's is ignored.
    fn check_sinks(&mut self) -> Result<(), childfd_io::OutputError> {
        if self.sink_broken() && !self.broken {
            self.broken = true;
            if !self.args.keep_draining {
                self.life
                    .terminate(&self.child, Instant::now(), self.args.signal)?;
            }
        }
        Ok(())
    }
}

fn err(e: childfd_io::OutputError) -> String {
    crate::describe(&e)
}
