//! One running job: its [`Slot`] (child, pipe ends, state machine), its
//! registration in the poll, one bounded turn of I/O on each of its
//! streams, and its end (report, release).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use childfd::Child;
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::leftovers;
use super::queue::Spawned;
use super::{Event, JobId, Report, Supervisor};
use crate::holders::Holder;
use crate::lifecycle::{Lifecycle, Step};
use crate::options::Stream;
use crate::pipes::{Drained, Fed, Feeder, Reader, set_nonblocking};
use crate::{Outcome, OutputError};

/// Poll tokens per slot: pidfd, stdout, stderr, stdin.
pub(super) const KINDS: usize = 4;
/// The stream number of stdin in [`Supervisor::io_turn`] (0 and 1 are
/// stdout and stderr).
pub(super) const STDIN: usize = 2;

pub(super) struct Slot {
    pub(super) id: JobId,
    pub(super) tag: Option<Arc<str>>,
    pub(super) generation: u64,
    pub(super) child: Child,
    pub(super) readers: [Reader; 2],
    pub(super) stdin: Option<OwnedFd>,
    pub(super) feeder: Feeder<'static>,
    pub(super) stdin_closed_early: bool,
    pub(super) life: Lifecycle,
    pub(super) spawned: Instant,
    pub(super) scheduled: Option<Instant>,
    pub(super) kill_tree_on_exit: bool,
    /// The pidfd is in the poll (see [`Supervisor::watch_exit`]).
    pub(super) exit_watched: bool,
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
                let mut r = Report::empty(id, opts.tag, Outcome::SpawnFailed);
                r.error = Some(Arc::new(OutputError::Spawn(error)));
                self.report(r);
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
        let pid = child.id();
        self.next_gen += 1;
        let slot = Slot {
            id,
            tag: opts.tag.clone(),
            generation: self.next_gen,
            stdin: child.take_stdin().map(OwnedFd::from),
            feeder: Feeder::new(opts.input.take()),
            stdin_closed_early: false,
            child,
            readers,
            life: Lifecycle::new(started, &opts.limits),
            spawned: started,
            scheduled: None,
            kill_tree_on_exit: opts.kill_tree_on_exit,
            exit_watched: false,
        };
        // The exit matters before the pipes' EOF only with a wait-delay
        // (it starts at the exit), with stdin (closed at the exit) or
        // without pipes; otherwise the pidfd joins the poll later.
        let watch_now = opts.limits.wait_delay.is_some()
            || slot.stdin.is_some()
            || slot.readers.iter().all(|r| r.fd.is_none());
        let registered = self.register(s, &slot);
        self.slots[s] = Some(slot);
        let registered = registered.and_then(|()| {
            if watch_now {
                self.watch_exit(s)?;
            }
            Ok(())
        });
        self.by_id.insert(id, s);
        self.in_flight += 1;
        self.summary.started += 1;
        self.note_in_flight();
        self.out.push_back(Event::Started {
            id,
            pid,
            tag: opts.tag,
        });
        match registered {
            Ok(()) => self.step(s),
            Err(e) => self.fail(s, OutputError::Io { source: e }),
        }
    }

    fn register(&self, s: usize, slot: &Slot) -> io::Result<()> {
        let reg = self.poll.registry();
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
        if let Some(fd) = &slot.stdin {
            // Registering a writable pipe yields a first event: feeding
            // starts from there.
            set_nonblocking(fd)?;
            reg.register(
                &mut SourceFd(&fd.as_raw_fd()),
                Token(s * KINDS + 1 + STDIN),
                Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    /// Puts slot `s`'s pidfd into the poll, once, so that its exit wakes
    /// the loop.
    ///
    /// A job with only pipes to read (no wait-delay, no stdin) is not
    /// done before both reach EOF, and a child's pipes close when it
    /// exits: its pidfd joins the poll only when its pipes are at EOF and
    /// it has not been reaped by then (or when its tree is being ended).
    /// Usually it has, which saves an `epoll_ctl` and an event per job.
    /// Registering a pidfd that is already readable yields an event, so
    /// no exit is missed.
    fn watch_exit(&mut self, s: usize) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return Ok(());
        };
        if slot.exit_watched {
            return Ok(());
        }
        let pidfd = slot.child.as_fd().as_raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&pidfd),
            Token(s * KINDS),
            Interest::READABLE,
        )?;
        slot.exit_watched = true;
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

    /// One bounded turn of I/O on stream `k` of slot `s` (0: stdout,
    /// 1: stderr, [`STDIN`]). Returns whether the stream has work left
    /// for another turn without waiting for an event.
    pub(super) fn io_turn(&mut self, s: usize, k: usize) -> bool {
        if k == STDIN {
            return self.feed(s);
        }
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return false;
        };
        let (id, tag) = (slot.id, &slot.tag);
        let out = &mut self.out;
        let drained = slot.readers[k].drain(
            &mut self.buf,
            &mut |stream, l| {
                out.push_back(Event::Line {
                    id,
                    stream,
                    line: l.to_vec(),
                    tag: tag.clone(),
                })
            },
            &mut |_, _| {},
        );
        match drained {
            // Closing the fd takes it out of the epoll set: no
            // `epoll_ctl(DEL)` needed (see `release`).
            Ok(Drained::Eof(_fd)) => false,
            Ok(Drained::Blocked) => false,
            Ok(Drained::More) => true,
            Err(e) => {
                self.fail(s, OutputError::Io { source: e });
                false
            }
        }
    }

    /// One write to slot `s`'s stdin; closes it when all was written or
    /// the reader is gone.
    fn feed(&mut self, s: usize) -> bool {
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return false;
        };
        let Some(fd) = &slot.stdin else { return false };
        match slot.feeder.feed(fd.as_fd(), &mut self.buf) {
            Ok(Fed::More) => return true,
            Ok(Fed::Blocked) => return false,
            Ok(Fed::Done) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                slot.stdin_closed_early = true;
                slot.feeder.done = true;
            }
            Err(e) => {
                self.fail(s, OutputError::Io { source: e });
                return false;
            }
        }
        self.close_stdin(s);
        false
    }

    /// Closes slot `s`'s stdin (fed, or the child exited: a descendant
    /// that inherited it must not keep us writing).
    fn close_stdin(&mut self, s: usize) {
        let Some(slot) = self.slots.get_mut(s).and_then(|o| o.as_mut()) else {
            return;
        };
        // Dropping the fd closes it, which takes it out of the epoll set.
        if slot.stdin.take().is_some() && !slot.feeder.done {
            slot.stdin_closed_early = true;
        }
    }

    /// Runs the job's state machine; finishes it or schedules its timer.
    pub(super) fn step(&mut self, s: usize) {
        if self.slots[s]
            .as_ref()
            .is_some_and(|sl| sl.life.status.is_some() && sl.stdin.is_some())
        {
            self.close_stdin(s);
        }
        let Some(slot) = self.slots[s].as_ref() else {
            return;
        };
        let pipes_open = slot.readers.iter().any(|r| r.fd.is_some());
        if !slot.exit_watched && slot.life.status.is_none() && (!pipes_open || slot.life.ending()) {
            // Its exit matters now (see `watch_exit`): reaped already, or
            // watched from here on.
            if !pipes_open && !self.poll_exit(s) {
                return;
            }
            if self.slots[s]
                .as_ref()
                .is_some_and(|sl| sl.life.status.is_none())
            {
                if let Err(e) = self.watch_exit(s) {
                    self.fail(s, OutputError::Io { source: e });
                    return;
                }
            }
        }
        let Some(slot) = self.slots[s].as_mut() else {
            return;
        };
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
                // The deadline fired just now: the exit ends the grace.
                if slot.life.ending() && !slot.exit_watched {
                    if let Err(e) = self.watch_exit(s) {
                        self.fail(s, OutputError::Io { source: e });
                    }
                }
            }
            Err(error) => self.fail(s, error),
        }
    }

    /// Something went wrong supervising job `s`: kill its tree, report
    /// what was read so far with the error.
    pub(super) fn fail(&mut self, s: usize, error: OutputError) {
        if let Some(slot) = self.slots[s].as_ref() {
            let _ = slot.child.kill_tree();
            self.finish_with(s, Outcome::Failed, Vec::new(), Some(error));
        }
    }

    /// Removes slot `s` from the loop and returns it.
    ///
    /// The pipe ends are only ours (close-on-exec), so closing them takes
    /// them out of the epoll set and no `epoll_ctl(DEL)` is spent on them
    /// (three system calls per job). The pidfd of a child not reaped yet
    /// is deregistered: it goes on living in the background reaper. Should
    /// a `fork()` elsewhere in the process hold a copy of a closed fd for
    /// a moment, a late event for its token is harmless: every handler
    /// checks the slot's state (a readiness that finds nothing to read or
    /// reap does nothing).
    fn release(&mut self, s: usize) -> Option<Slot> {
        let slot = self.slots[s].take()?;
        if slot.life.status.is_none() && slot.exit_watched {
            let reg = self.poll.registry();
            let _ = reg.deregister(&mut SourceFd(&slot.child.as_fd().as_raw_fd()));
        }
        self.by_id.remove(&slot.id);
        self.free.push(s);
        self.in_flight -= 1;
        Some(slot)
    }

    fn finish(&mut self, s: usize, outcome: Outcome, holders: Vec<Holder>) {
        self.finish_with(s, outcome, holders, None);
    }

    fn finish_with(
        &mut self,
        s: usize,
        mut outcome: Outcome,
        holders: Vec<Holder>,
        error: Option<OutputError>,
    ) {
        let Some(slot) = self.release(s) else { return };
        // Never a blocking wait here: it would hold every other job. A
        // child not reaped yet goes to the background reaper on drop.
        let status = match slot.life.status {
            Some(st) => Some(st),
            None => slot.child.try_wait().ok().flatten(),
        };
        let mut left_behind = 0;
        if slot.kill_tree_on_exit {
            if outcome == Outcome::Exited {
                left_behind = leftovers::count(&slot.child);
                if left_behind > 0 {
                    outcome = Outcome::Leaked;
                }
            }
            let _ = slot.child.kill_tree();
        }
        let [out, err] = slot.readers;
        let report = Report {
            id: slot.id,
            tag: slot.tag,
            pid: Some(slot.child.id()),
            status,
            outcome,
            stdout: out.capture.finish(),
            stderr: err.capture.finish(),
            stdin_written: slot.feeder.written,
            stdin_closed_early: slot.stdin_closed_early,
            holders,
            left_behind,
            ended_by: slot.life.ended_by(),
            error: error.map(Arc::new),
            elapsed: slot.spawned.elapsed(),
        };
        // The child is dropped here: reaped already, or handed to the
        // background reaper if it could not be reaped in time.
        self.report(report);
    }
}
