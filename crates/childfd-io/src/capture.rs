//! Keeping a bounded part of a stream: the first `head` bytes and the last
//! `tail` bytes, counting the rest. Memory never exceeds `head + tail`.

use std::collections::VecDeque;

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes (all of them when nothing was dropped).
    pub head: Vec<u8>,
    /// The last bytes, if a tail was asked for and bytes were dropped
    /// between `head` and `tail`.
    pub tail: Vec<u8>,
    /// Bytes the child wrote in all.
    pub total: u64,
    /// Bytes read and counted but not kept (`total - head - tail`).
    pub dropped: u64,
}

impl Captured {
    /// Head and tail joined (with nothing between them to mark the gap).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend_from_slice(&self.tail);
        v
    }

    /// `bytes()` as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// The running capture of one stream: keeps the first `head` and the last
/// `tail` bytes pushed, counts the rest. Public for the fuzz targets.
#[derive(Debug)]
pub struct Capture {
    head_limit: usize,
    tail_limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Capture {
    /// A capture keeping `head_limit` first and `tail_limit` last bytes
    /// (`head_limit = usize::MAX` keeps everything).
    pub fn new(head_limit: usize, tail_limit: usize) -> Capture {
        Capture {
            head_limit,
            tail_limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.head_limit.saturating_sub(self.head.len());
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        data = &data[take..];
        if data.is_empty() || self.tail_limit == 0 {
            return;
        }
        if data.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_limit..]);
        } else {
            let excess = (self.tail.len() + data.len()).saturating_sub(self.tail_limit);
            self.tail.drain(..excess);
            self.tail.extend(data);
        }
    }

    /// What was kept, and the counts.
    pub fn finish(self) -> Captured {
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let kept = (self.head.len() + tail.len()) as u64;
        Captured {
            dropped: self.total - kept,
            head: self.head,
            tail,
            total: self.total,
        }
    }

    /// Bytes held now (for the bounded-memory guarantee).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(head: usize, tail: usize, chunks: &[&[u8]]) -> Captured {
        let mut c = Capture::new(head, tail);
        for ch in chunks {
            c.push(ch);
            assert!(c.held() <= head.saturating_add(tail));
        }
        c.finish()
    }

    #[test]
    fn unlimited_keeps_everything() {
        let c = run(usize::MAX, 0, &[b"abc", b"", b"def"]);
        assert_eq!(
            (c.head.as_slice(), c.total, c.dropped),
            (&b"abcdef"[..], 6, 0)
        );
    }

    #[test]
    fn head_only_counts_what_it_drops() {
        let c = run(4, 0, &[b"abc", b"defgh"]);
        assert_eq!(
            (c.head.as_slice(), c.tail.len(), c.total, c.dropped),
            (&b"abcd"[..], 0, 8, 4)
        );
    }

    #[test]
    fn head_and_tail_keep_both_ends_across_chunks() {
        let c = run(2, 3, &[b"a", b"bcd", b"ef", b"g", b"hijkl", b"m"]);
        assert_eq!(c.head, b"ab");
        assert_eq!(c.tail, b"klm");
        assert_eq!((c.total, c.dropped), (13, 8));
        assert_eq!(c.text(), "abklm");
    }

    #[test]
    fn a_chunk_longer_than_the_tail_keeps_its_end() {
        let c = run(0, 3, &[b"xy", b"0123456789"]);
        assert_eq!(
            (c.head.len(), c.tail.as_slice(), c.dropped),
            (0, &b"789"[..], 9)
        );
    }
}
