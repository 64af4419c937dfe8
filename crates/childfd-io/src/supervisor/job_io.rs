//! One running job: its [`Slot`] (child, pipe readers, state machine), its
//! registration in the poll, the handling of its readiness events, and
//! its end (report, release).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use childfd::Child;
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::queue::Spawned;
use super::{Event, JobId, Report, Supervisor};
use crate::holders::Holder;
use crate::lifecycle::{Lifecycle, Step};
use crate::options::Stream;
use crate::pipes::{Drained, Reader, set_nonblocking};
use crate::{Outcome, OutputError};

/// Poll tokens per slot: pidfd, stdout, stderr.
pub(super) const KINDS: usize = 3;

pub(super) struct Slot {
    pub(super) id: JobId,
    pub(super) generation: u64,
    pub(super) child: Child,
    pub(super) readers: [Reader; 2],
    pub(super) life: Lifecycle,
    pub(super) spawned: Instant,
    pub(super) scheduled: Option<Instant>,
    pub(super) kill_tree_on_exit: bool,
}

impl Supervisor {
    /// Puts a spawned job into the loop (or reports its spawn failure).
    pub(super) fn install(
        &mut self,
        Spawned {
            id,
            opts,
            started,
            result,
        }: Spawned,
    ) {
        let mut child = match result {
            Ok(c) => c,
            Err(error) => {
                self.summary.spawn_failed += 1;
                self.out.push_back(Event::SpawnFailed { id, error });
                return;
            }
        };
        let s = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let reader = |fd: Option<OwnedFd>, stream| {
            Reader::new(fd, stream, opts.limits.head, opts.limits.tail, opts.lines)
        };
        let readers = [
            reader(child.take_stdout().map(OwnedFd::from), Stream::Stdout),
            reader(child.take_stderr().map(OwnedFd::from), Stream::Stderr),
        ];
        let life = Lifecycle::new(started, &opts.limits);
        let pid = child.id();
        self.next_gen += 1;
        let slot = Slot {
            id,
            generation: self.next_gen,
            child,
            readers,
            life,
            spawned: started,
            scheduled: None,
            kill_tree_on_exit: opts.kill_tree_on_exit,
        };
        let registered = self.register(s, &slot);
        self.slots[s] = Some(slot);
        self.by_id.insert(id, s);
        self.in_flight += 1;
        self.summary.started += 1;
        self.note_in_flight();
        self.out.push_back(Event::Started { id, pid });
        match registered {
            Ok(()) => self.step(s),
            Err(e) => self.fail(s, OutputError::Io { source: e }),
        }
    }

    fn register(&self, s: usize, slot: &Slot) -> io::Result<()> {
        let reg = self.poll.registry();
        let pidfd = slot.child.as_fd().as_raw_fd();
        reg.register(&mut SourceFd(&pidfd), Token(s * KINDS), Interest::READABLE)?;
        for (k, r) in slot.readers.iter().enumerate() {
            if let Some(fd) = &r.fd {
                set_nonblocking(fd)?;
                reg.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    Token(s * KINDS + 1 + k),
                    Interest::READABLE,
                )?;
            }
        }
        Ok(())
    }

    /// The pidfd of slot `s` was readable (or a timer is due): reap if
    /// exited. Returns whether the slot is still there.
    pub(super) fn poll_exit(&mut self, s: usize) -> bool {
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return false;
        };
        match slot.life.poll_exit(&slot.child) {
            Ok(()) => true,
            Err(e) => {
                self.fail(s, e);
                false
            }
        }
    }

    /// One bounded read turn on stream `k` (0: stdout, 1: stderr) of slot
    /// `s`. Returns whether the stream has data left for another turn.
    pub(super) fn drain(&mut self, s: usize, k: usize) -> bool {
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return false;
        };
        let id = slot.id;
        let mut lines: Vec<(Stream, Vec<u8>)> = Vec::new();
        let drained = slot.readers[k].drain(
            &mut self.buf,
            &mut |st, l| lines.push((st, l.to_vec())),
            &mut |_, _| {},
        );
        self.out.extend(
            lines
                .into_iter()
                .map(|(stream, line)| Event::Line { id, stream, line }),
        );
        match drained {
            Ok(Drained::Eof(fd)) => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
                false
            }
            Ok(Drained::Blocked) => false,
            Ok(Drained::More) => true,
            Err(e) => {
                self.fail(s, OutputError::Io { source: e });
                false
            }
        }
    }

    /// Runs the job's state machine; finishes it or schedules its timer.
    pub(super) fn step(&mut self, s: usize) {
        let Some(slot) = self.slots[s].as_mut() else {
            return;
        };
        let pipes_open = slot.readers.iter().any(|r| r.fd.is_some());
        let readers = &slot.readers;
        let inodes = || readers.iter().filter_map(Reader::open_inode).collect();
        match slot
            .life
            .step(&slot.child, Instant::now(), pipes_open, &inodes)
        {
            Ok(Step::Done(outcome, holders)) => self.finish(s, outcome, holders),
            Ok(Step::Wait(wake)) => {
                if wake != slot.scheduled {
                    slot.scheduled = wake;
                    if let Some(t) = wake {
                        self.timers.schedule(t, s, slot.generation);
                    }
                }
            }
            Err(error) => self.fail(s, error),
        }
    }

    /// Something went wrong supervising job `s`: kill its tree, report.
    pub(super) fn fail(&mut self, s: usize, error: OutputError) {
        if let Some(slot) = self.slots[s].as_ref() {
            let _ = slot.child.kill_tree();
            let id = slot.id;
            self.release(s);
            self.summary.errors += 1;
            self.out.push_back(Event::Failed { id, error });
        }
    }

    /// Removes slot `s` from the loop and returns it.
    fn release(&mut self, s: usize) -> Option<Slot> {
        let slot = self.slots[s].take()?;
        let reg = self.poll.registry();
        let _ = reg.deregister(&mut SourceFd(&slot.child.as_fd().as_raw_fd()));
        for r in &slot.readers {
            if let Some(fd) = &r.fd {
                let _ = reg.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
        }
        self.by_id.remove(&slot.id);
        self.free.push(s);
        self.in_flight -= 1;
        Some(slot)
    }

    fn finish(&mut self, s: usize, outcome: Outcome, holders: Vec<Holder>) {
        let Some(slot) = self.release(s) else { return };
        // Never a blocking wait here: it would hold every other job. A
        // child not reaped yet goes to the background reaper on drop.
        let status = match slot.life.status {
            Some(st) => Some(st),
            None => slot.child.try_wait().ok().flatten(),
        };
        let ended_by = slot.life.ended_by();
        if slot.kill_tree_on_exit {
            let _ = slot.child.kill_tree();
        }
        let [out, err] = slot.readers;
        let report = Report {
            id: slot.id,
            pid: Some(slot.child.id()),
            status,
            outcome,
            stdout: out.capture.finish(),
            stderr: err.capture.finish(),
            holders,
            ended_by,
            elapsed: slot.spawned.elapsed(),
        };
        // The child is dropped here: reaped already, or handed to the
        // background reaper if it could not be reaped in time.
        self.report(outcome, report);
    }
}
