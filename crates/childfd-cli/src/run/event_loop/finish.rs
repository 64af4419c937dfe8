//! The end of a run: flush the pass-through (bounded), classify the
//! outcome, kill what is left of the tree.

use std::time::{Duration, Instant};

use mio::Events;

use super::{Done, Loop};
use crate::report::Outcome;
use crate::run::{Ended, finish_tree};
use crate::sink::Sink;

/// After the tree was ended (timeout, signal, broken pipe), how long
/// buffered output may still take to reach childfd's reader.
const FLUSH_AFTER_END: Duration = Duration::from_millis(250);

impl Loop<'_> {
    /// After the lifecycle is done: flush the pass-through (bounded),
    /// kill what is left of the tree, and say how it ended.
    pub(super) fn end(mut self, pid: u32, result: Result<Done, String>) -> Ended {
        let (outcome, holders, error) = match result {
            Ok((o, h)) => (o, h, None),
            Err(e) => (childfd_io::Outcome::Cancelled, Vec::new(), Some(e)),
        };
        let mut outcome = self.classify(outcome, error.is_some());
        for s in self.sinks.iter().flatten() {
            s.close();
        }
        let flushed = self.flush(outcome);
        if matches!(outcome, Outcome::Exited | Outcome::PipesHeldOpen) {
            // What happened while flushing the output of a program that
            // had ended by itself.
            if flushed == Flushed::DeadlinePassed {
                outcome = Outcome::TimedOut;
            } else if flushed == Flushed::Signalled {
                outcome = Outcome::Signalled;
            } else if self.sink_broken() && !self.args.keep_draining {
                outcome = Outcome::BrokenPipe;
            }
        }
        let mut status = self.life.status;
        if status.is_none() {
            status = self
                .child
                .wait_timeout(Duration::from_millis(100))
                .ok()
                .flatten();
        }
        let ended_by = self.life.ended_by();
        let exited_at = self.life.exited_at;
        self.fg.take();
        for (c, s) in self.counts.iter_mut().zip(&self.sinks) {
            if let Some(s) = s {
                (c.passed, _, c.last) = s.counts();
            }
        }
        finish_tree(self.child);
        Ended {
            pid,
            outcome,
            status,
            ended_by,
            signal: self.signal,
            exited_at,
            streams: self.counts,
            holders,
            error,
        }
    }

    fn classify(&self, o: childfd_io::Outcome, failed: bool) -> Outcome {
        if failed {
            Outcome::Error
        } else if self.signal.is_some() {
            Outcome::Signalled
        } else if self.broken && !self.args.keep_draining {
            Outcome::BrokenPipe
        } else {
            match o {
                childfd_io::Outcome::Exited => Outcome::Exited,
                childfd_io::Outcome::PipesHeldOpen => Outcome::PipesHeldOpen,
                _ => Outcome::TimedOut,
            }
        }
    }

    /// Waits for the pass-through to write what it holds: for a program
    /// that exited normally, until the deadline (if any) or a terminating
    /// signal; after the tree was ended, [`FLUSH_AFTER_END`] at most.
    fn flush(&mut self, outcome: Outcome) -> Flushed {
        let limit = match outcome {
            Outcome::Exited | Outcome::PipesHeldOpen => {
                self.args.timeout().and_then(|t| self.t0.checked_add(t))
            }
            _ => Some(Instant::now() + FLUSH_AFTER_END),
        };
        let mut events = Events::with_capacity(16);
        loop {
            if self.sinks.iter().flatten().all(Sink::flushed) {
                return Flushed::Done;
            }
            if self.signal.is_some() {
                return Flushed::Signalled;
            }
            let now = Instant::now();
            if limit.is_some_and(|l| now >= l) {
                return match outcome {
                    Outcome::Exited | Outcome::PipesHeldOpen => Flushed::DeadlinePassed,
                    _ => Flushed::Done,
                };
            }
            let timeout = limit.map(|l| l - now);
            if self.wait(&mut events, timeout).is_err() {
                return Flushed::Done;
            }
            if self.sink_broken() {
                return Flushed::Done;
            }
        }
    }
}

impl Loop<'_> {
    pub(super) fn sink_broken(&self) -> bool {
        self.sinks[0].as_ref().and_then(Sink::error).is_some()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    Done,
    DeadlinePassed,
    Signalled,
}
