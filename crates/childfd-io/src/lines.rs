//! Splitting a byte stream into lines under arbitrary chunking.

/// Longest line delivered whole; a longer one is delivered in pieces of
/// this size, so a child that never writes a newline cannot grow memory.
pub const MAX_LINE: usize = 1 << 20;

/// Accumulates chunks and yields complete lines (without the `\n`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter delivering lines of at most [`MAX_LINE`] bytes.
    pub fn new() -> LineSplitter {
        LineSplitter::with_max(MAX_LINE)
    }

    /// A splitter delivering lines of at most `max` bytes (at least 1).
    pub fn with_max(max: usize) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feeds `chunk`, calling `emit` for each line it completes.
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) if self.partial.len() + i <= self.max => {
                    if self.partial.is_empty() {
                        emit(&chunk[..i]);
                    } else {
                        self.partial.extend_from_slice(&chunk[..i]);
                        emit(&self.partial);
                        self.partial.clear();
                    }
                    chunk = &chunk[i + 1..];
                }
                _ => {
                    // No newline within reach: buffer up to the limit.
                    let room = self.max - self.partial.len();
                    let take = room.min(chunk.len());
                    self.partial.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.partial.len() == self.max {
                        emit(&self.partial);
                        self.partial.clear();
                    }
                }
            }
        }
    }

    /// At end of stream: delivers the partial last line, if any.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::with_max(max);
        for c in chunks {
            s.push(c, &mut |l| out.push(l.to_vec()));
        }
        s.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_split_across_chunks_and_a_final_partial_line() {
        let got = split(100, &[b"a", b"b\nc", b"d\n\ne"]);
        assert_eq!(
            got,
            vec![b"ab".to_vec(), b"cd".to_vec(), b"".to_vec(), b"e".to_vec()]
        );
    }

    #[test]
    fn every_chunking_gives_the_same_lines() {
        let text = b"one\ntwo\n\nthree four\nfive";
        let whole = split(100, &[text]);
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let got = split(100, &[&text[..cut], &text[cut..cut2], &text[cut2..]]);
                assert_eq!(got, whole, "cuts at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn an_endless_line_is_delivered_in_bounded_pieces() {
        let got = split(4, &[b"abcdefghij\nxy"]);
        assert_eq!(
            got,
            vec![
                b"abcd".to_vec(),
                b"efgh".to_vec(),
                b"ij".to_vec(),
                b"xy".to_vec()
            ]
        );
    }
}
