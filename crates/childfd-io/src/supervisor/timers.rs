//! The timer heap: one entry per scheduled wake of a job (deadline, grace,
//! wait-delay, tree check). Entries are never removed early; a stale one
//! (the job finished or rescheduled) is recognised and skipped when it
//! reaches the top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Wakes ordered by time: `(when, slot, generation of the slot's job)`.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Wake slot `s` (holding job generation `generation`) at `at`.
    pub(super) fn schedule(&mut self, at: Instant, s: usize, generation: u64) {
        self.heap.push(Reverse((at, s, generation)));
    }

    /// The earliest live wake; stale entries (`live` says no) on top are
    /// dropped on the way.
    pub(super) fn next(&mut self, live: impl Fn(Instant, usize, u64) -> bool) -> Option<Instant> {
        while let Some(Reverse((t, s, generation))) = self.heap.peek().copied() {
            if live(t, s, generation) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one wake due at `now` or before: `(when, slot)`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        let Reverse((t, s, _)) = self.heap.peek().copied()?;
        if t > now {
            return None;
        }
        self.heap.pop();
        Some((t, s))
    }
}
