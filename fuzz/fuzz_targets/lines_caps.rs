//! The line splitter and the size caps under arbitrary chunking: whatever
//! the chunk boundaries, the capture keeps exactly the first `head` and
//! last `tail` bytes and counts the rest, and the lines are the input's
//! bytes without newlines, none longer than the limit.
#![no_main]

use childfd_io::fuzzing::Capture;
use childfd_io::lines::LineSplitter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let head = data[0] as usize % 64;
    let tail = data[1] as usize % 64;
    let max_line = 1 + data[2] as usize % 32;
    let seed = data[3];
    let input = &data[4..];

    let mut cap = Capture::new(head, tail);
    let mut split = LineSplitter::with_max(max_line);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    // Chunk sizes from the input itself.
    let mut i = 0;
    let mut k = seed as usize;
    while i < input.len() {
        k = k.wrapping_mul(31).wrapping_add(7);
        let n = 1 + k % 17;
        let chunk = &input[i..(i + n).min(input.len())];
        cap.push(chunk);
        split.push(chunk, &mut |l| lines.push(l.to_vec()));
        i += chunk.len();
    }
    split.finish(&mut |l| lines.push(l.to_vec()));

    let c = cap.finish();
    let len = input.len();
    assert_eq!(c.total, len as u64);
    assert_eq!(c.head, &input[..head.min(len)]);
    let tail_start = len.saturating_sub(tail).max(head.min(len));
    assert_eq!(c.tail, &input[tail_start..]);
    assert_eq!(c.dropped, (len - c.head.len() - c.tail.len()) as u64);

    let newlines = input.iter().filter(|&&b| b == b'\n').count();
    let line_bytes: usize = lines.iter().map(Vec::len).sum();
    assert_eq!(line_bytes + newlines, len);
    assert!(lines.iter().all(|l| l.len() <= max_line && !l.contains(&b'\n')));
    let joined: Vec<u8> = lines.concat();
    let expected: Vec<u8> = input.iter().copied().filter(|&b| b != b'\n').collect();
    assert_eq!(joined, expected);
});
