//! A process tree described by a compact spec, for stress tests and
//! fuzzing.
//!
//! A spec is a comma-separated list of directives for one process:
//!
//! | directive | meaning |
//! |---|---|
//! | `o=N`, `e=N` | write N bytes to stdout / stderr |
//! | `s=MS` | sleep MS milliseconds |
//! | `x=CODE` | exit with CODE (default 0) |
//! | `k=SIG` | end by raising signal SIG (instead of exiting) |
//! | `setsid` | start a new session first |
//! | `ignterm` | ignore SIGTERM (inherited by its children) |
//! | `stop` | stop itself (SIGSTOP) before sleeping |
//! | `close` | close its stdout and stderr before sleeping (stop holding the pipes) |
//! | `c(SPEC)` | fork a child running SPEC (repeatable) |
//!
//! Order of execution: setsid, ignterm, children, writes, close, stop,
//! sleep, exit or signal. Example: `o=10,c(s=100,o=5),c(setsid,s=300),x=3`.
//!
//! Limits, so a spec always describes a small, finite tree: depth 5, 8
//! children per node, 64 nodes, 1 MiB per stream, 60 s of sleep.

use std::fmt;

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// Bytes written to stdout.
    pub out: u32,
    /// Bytes written to stderr.
    pub err: u32,
    /// Milliseconds slept.
    pub sleep_ms: u32,
    /// Exit code (when `signal` is `None`).
    pub code: u8,
    /// Signal raised on itself at the end.
    pub signal: Option<i32>,
    /// `setsid()` first.
    pub setsid: bool,
    /// SIGTERM ignored.
    pub ignore_term: bool,
    /// SIGSTOP on itself before sleeping.
    pub stop: bool,
    /// Closes stdout and stderr before sleeping.
    pub close: bool,
    /// Child processes.
    pub children: Vec<Node>,
}

/// Why a spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Byte offset in the spec.
    pub at: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad tree spec at byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for SpecError {}

const MAX_DEPTH: usize = 5;
const MAX_CHILDREN: usize = 8;
const MAX_NODES: usize = 64;
const MAX_BYTES: u32 = 1 << 20;
const MAX_SLEEP_MS: u32 = 60_000;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    nodes: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, SpecError> {
        Err(SpecError {
            at: self.i,
            what: what.into(),
        })
    }

    fn number(&mut self, max: u32, name: &str) -> Result<u32, SpecError> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return self.err(format!("{name} needs a number"));
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match text.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(SpecError {
                at: start,
                what: format!("{name}={text} is out of range (0..={max})"),
            }),
        }
    }

    fn node(&mut self, depth: usize) -> Result<Node, SpecError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.err(format!("more than {MAX_NODES} processes"));
        }
        let mut n = Node::default();
        loop {
            if self.i >= self.s.len() || self.s[self.i] == b')' {
                return Ok(n);
            }
            let rest = &self.s[self.i..];
            let word_len = rest
                .iter()
                .position(|&b| !b.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let word = std::str::from_utf8(&rest[..word_len]).unwrap_or("");
            let start = self.i;
            self.i += word_len;
            let eq = self.i < self.s.len() && self.s[self.i] == b'=';
            match (word, eq) {
                ("o" | "e" | "s" | "x" | "k", true) => {
                    self.i += 1;
                    match word {
                        "o" => n.out = self.number(MAX_BYTES, "o")?,
                        "e" => n.err = self.number(MAX_BYTES, "e")?,
                        "s" => n.sleep_ms = self.number(MAX_SLEEP_MS, "s")?,
                        "x" => n.code = self.number(255, "x")? as u8,
                        _ => {
                            let sig = self.number(64, "k")?;
                            if sig == 0 {
                                return self.err("k=0 is not a signal");
                            }
                            n.signal = Some(sig as i32);
                        }
                    }
                }
                ("setsid", false) => n.setsid = true,
                ("ignterm", false) => n.ignore_term = true,
                ("stop", false) => n.stop = true,
                ("close", false) => n.close = true,
                ("c", false) if self.i < self.s.len() && self.s[self.i] == b'(' => {
                    if depth + 1 > MAX_DEPTH {
                        return self.err(format!("deeper than {MAX_DEPTH} levels"));
                    }
                    if n.children.len() == MAX_CHILDREN {
                        return self.err(format!("more than {MAX_CHILDREN} children"));
                    }
                    self.i += 1;
                    let child = self.node(depth + 1)?;
                    if self.i >= self.s.len() || self.s[self.i] != b')' {
                        return self.err("missing `)`");
                    }
                    self.i += 1;
                    n.children.push(child);
                }
                ("", _) => return self.err(format!("unexpected {:?}", self.s[self.i] as char)),
                (w, _) => {
                    return Err(SpecError {
                        at: start,
                        what: format!("unknown directive `{w}`"),
                    });
                }
            }
            if self.i < self.s.len() && self.s[self.i] == b',' {
                self.i += 1;
                if self.i >= self.s.len() || self.s[self.i] == b')' {
                    return self.err("empty directive after `,`");
                }
            } else if self.i < self.s.len() && self.s[self.i] != b')' {
                return self.err("expected `,` between directives");
            }
        }
    }
}

/// Parses a spec.
///
/// # Errors
///
/// [`SpecError`] with the byte offset and what is wrong.
pub fn parse(spec: &str) -> Result<Node, SpecError> {
    let mut p = Parser {
        s: spec.as_bytes(),
        i: 0,
        nodes: 0,
    };
    let n = p.node(0)?;
    if p.i != p.s.len() {
        return p.err("unbalanced `)`");
    }
    Ok(n)
}

impl fmt::Display for Node {
    /// The spec of this node (parses back to an equal node).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.setsid {
            parts.push("setsid".into());
        }
        if self.ignore_term {
            parts.push("ignterm".into());
        }
        for c in &self.children {
            parts.push(format!("c({c})"));
        }
        if self.out > 0 {
            parts.push(format!("o={}", self.out));
        }
        if self.err > 0 {
            parts.push(format!("e={}", self.err));
        }
        if self.close {
            parts.push("close".into());
        }
        if self.stop {
            parts.push("stop".into());
        }
        if self.sleep_ms > 0 {
            parts.push(format!("s={}", self.sleep_ms));
        }
        if let Some(s) = self.signal {
            parts.push(format!("k={s}"));
        }
        // Printed even with a signal (which wins at run time), so that a
        // spec always prints back to an equal tree (found by fuzzing).
        if self.code != 0 {
            parts.push(format!("x={}", self.code));
        }
        f.write_str(&parts.join(","))
    }
}

impl Node {
    /// Processes in the tree.
    pub fn count(&self) -> usize {
        1 + self.children.iter().map(Node::count).sum::<usize>()
    }

    /// Bytes the whole tree writes to stdout.
    pub fn total_out(&self) -> u64 {
        self.out as u64 + self.children.iter().map(Node::total_out).sum::<u64>()
    }

    /// Whether some process of the tree stops itself.
    pub fn any_stop(&self) -> bool {
        self.stop || self.children.iter().any(Node::any_stop)
    }
}

/// A random tree of at most `depth` levels below the root, with short
/// sleeps, small outputs, some codes and signals, some SIGTERM-ignoring,
/// self-stopping or pipe-closing processes, and (with `escapes`) some that
/// leave the session with `setsid`. A tree with a `stop` needs a deadline
/// (or someone's SIGCONT) to end.
pub fn random(r: &mut crate::Rng, depth: u32, escapes: bool) -> Node {
    let mut n = Node {
        out: r.next(200) as u32,
        err: r.next(50) as u32,
        sleep_ms: if r.next(4) == 0 { r.next(60) as u32 } else { 0 },
        code: r.next(3) as u8,
        signal: if r.next(10) == 0 {
            Some([15, 9, 10][r.next(3) as usize])
        } else {
            None
        },
        setsid: escapes && depth < 3 && r.next(8) == 0,
        ignore_term: r.next(12) == 0,
        stop: r.next(40) == 0,
        close: r.next(8) == 0,
        children: Vec::new(),
    };
    if depth > 0 {
        for _ in 0..r.next(3) {
            n.children.push(random(r, depth - 1, escapes));
        }
    }
    n
}

/// The environment variable that puts a test binary into tree mode.
pub const ENV: &str = "CHILDFD_TREE_SPEC";

/// With tree mode: the path of a log to which every process of the tree
/// appends, first thing, one line listing its open fds and what each one
/// is (`readlink /proc/self/fd/N`), so a test can check that no process
/// ever held an fd it was not given. See [`parse_fd_report`].
pub const FD_LOG_ENV: &str = "CHILDFD_TREE_FD_LOG";

static FD_LOG: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// One line of the fd log: a process and its open fds with their targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdReport {
    /// The reporting process.
    pub pid: i32,
    /// `(fd, readlink target)`, by fd number.
    pub fds: Vec<(i32, String)>,
}

/// Parses a line of the fd log (`pid=N\tFD=TARGET\t...`).
pub fn parse_fd_report(line: &str) -> Option<FdReport> {
    let mut parts = line.split('\t');
    let pid = parts.next()?.strip_prefix("pid=")?.parse().ok()?;
    let fds = parts
        .map(|p| {
            let (fd, target) = p.split_once('=')?;
            Some((fd.parse().ok()?, target.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(FdReport { pid, fds })
}

/// Appends this process's [`FdReport`] line to the fd log, if one is set.
/// Lists the fds before opening the log, so the log's own fd is not in it.
fn report_fds() {
    let Some(log) = FD_LOG.get() else { return };
    let listing = std::path::PathBuf::from(format!("/proc/{}/fd", std::process::id()));
    let mut line = format!("pid={}", std::process::id());
    let mut fds: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let target = std::fs::read_link(e.path()).ok()?;
                    if target == listing {
                        return None;
                    }
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    Some((fd, target.display().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    for (fd, target) in fds {
        line.push_str(&format!("\t{fd}={}", target.replace(['\t', '\n'], " ")));
    }
    line.push('\n');
    unsafe {
        let fd = libc::open(
            log.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            // One write with O_APPEND: lines of concurrent writers never mix.
            libc::write(fd, line.as_ptr().cast(), line.len());
            libc::close(fd);
        }
    }
}

/// If `CHILDFD_TREE_SPEC` is set, becomes the root of that tree and never
/// returns. Call first thing in `main` of a test binary (while it has a
/// single thread: the tree is built with `fork`).
pub fn run_if_requested() {
    let Ok(spec) = std::env::var(ENV) else { return };
    if let Some(log) = std::env::var_os(FD_LOG_ENV) {
        use std::os::unix::ffi::OsStringExt;
        if let Ok(c) = std::ffi::CString::new(log.into_vec()) {
            let _ = FD_LOG.set(c);
        }
    }
    match parse(&spec) {
        Ok(node) => run(&node),
        Err(e) => {
            eprintln!("{e}");
            // SAFETY-free FFI below is in `run`; here a plain exit.
            std::process::exit(125);
        }
    }
}

fn write_n(fd: i32, n: u32) {
    let buf = [b'x'; 4096];
    let mut left = n as usize;
    while left > 0 {
        let k = left.min(buf.len());
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), k) };
        if r <= 0 {
            return; // the reader is gone: stop writing, like most programs
        }
        left -= r as usize;
    }
}

/// Runs `node` in this process (forking its children) and exits.
pub fn run(node: &Node) -> ! {
    report_fds();
    unsafe {
        if node.setsid {
            libc::setsid();
        }
        if node.ignore_term {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
        for c in &node.children {
            if libc::fork() == 0 {
                run(c);
            }
        }
        write_n(1, node.out);
        write_n(2, node.err);
        if node.close {
            libc::close(1);
            libc::close(2);
        }
        if node.stop {
            libc::raise(libc::SIGSTOP);
        }
        if node.sleep_ms > 0 {
            let ts = libc::timespec {
                tv_sec: (node.sleep_ms / 1000) as i64,
                tv_nsec: (node.sleep_ms % 1000) as i64 * 1_000_000,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
        if let Some(sig) = node.signal {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        libc::_exit(node.code as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "",
            "o=10",
            "o=10,c(s=100,o=5),c(setsid,s=300),x=3",
            "ignterm,c(c(c(k=15))),stop,s=1",
            "close,k=9",
        ] {
            let n = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(parse(&n.to_string()).unwrap(), n, "{s} -> {n}");
        }
        assert_eq!(parse("o=10,c(s=1),x=3").unwrap().count(), 2);
    }

    #[test]
    fn fd_reports_parse_back() {
        let r = parse_fd_report("pid=42\t0=/dev/null\t1=pipe:[7]\t2=pipe:[8]").unwrap();
        assert_eq!(r.pid, 42);
        assert_eq!(r.fds[1], (1, "pipe:[7]".to_string()));
        assert_eq!(r.fds.len(), 3);
        assert!(parse_fd_report("pid=x\t0=a").is_none());
        assert!(parse_fd_report("0=a").is_none());
    }

    #[test]
    fn bad_specs_are_rejected_with_a_position() {
        for (s, at, what) in [
            ("o=", 2, "needs a number"),
            ("o=99999999", 2, "out of range"),
            ("x=256", 2, "out of range"),
            ("k=0", 3, "not a signal"),
            ("frob", 0, "unknown directive"),
            ("c(o=1", 5, "missing `)`"),
            ("o=1)", 3, "unbalanced"),
            ("o=1,", 4, "empty directive"),
            ("o=1 x=2", 3, "expected `,`"),
            ("c(c(c(c(c(c()))))))", 11, "deeper than 5"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.what.contains(what), "{s}: {e}");
            assert_eq!(e.at, at, "{s}: {e}");
        }
        let many = ["c()"; 9].join(",");
        assert!(
            parse(&many)
                .unwrap_err()
                .what
                .contains("more than 8 children")
        );
    }
}
