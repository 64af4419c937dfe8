//! Shared helpers: start the built `childfd` with a test tag in its
//! environment, wait for it with a bound, read its JSON report.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const BOUND: Duration = Duration::from_secs(30);

/// `childfd ARGS`, not started yet, with the tag exported to its tree.
pub fn command(tag: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_childfd"));
    c.args(args)
        .env("CHILDFD_TEST_TAG", tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A started `childfd` that is killed, with every process of its test tag,
/// if the test fails before it ended: a failed test leaves nothing behind
/// (a leftover would keep every fd it inherited, a lock file's included).
pub struct Running {
    child: Child,
    tag: String,
}

impl Running {
    /// Guards `child`, started with `tag` in its environment.
    pub fn new(tag: &str, child: Child) -> Running {
        Running {
            child,
            tag: tag.to_string(),
        }
    }

    /// The test tag in childfd's environment.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Sends `sig` to childfd itself (it must still exist).
    #[track_caller]
    pub fn signal(&self, sig: i32) {
        assert!(childfd_testbin::kill(self.child.id() as i32, sig));
    }

    /// Waits for childfd, at most [`BOUND`].
    #[track_caller]
    pub fn finish(&mut self) -> ExitStatus {
        wait_bounded(&mut self.child, BOUND)
    }

    /// Reads childfd's stdout until `needle` has appeared (bounded); the
    /// reader, still open.
    #[track_caller]
    pub fn stdout_until(&mut self, needle: &str) -> ChildStdout {
        read_until(self.child.stdout.take().unwrap(), needle).1
    }

    /// Asserts that no process of the tag and no cgroup leaf of childfd's
    /// is left.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        childfd_testbin::assert_no_survivors(&self.tag);
        assert_no_leaf(self.child.id());
    }
}

/// `childfd ARGS` started with the tag, guarded by [`Running`].
#[track_caller]
pub fn start(tag: &str, args: &[&str]) -> Running {
    Running::new(tag, command(tag, args).spawn().unwrap())
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only when the test failed (or left childfd running): the tests
        // check an ended childfd's leftovers themselves.
        if std::thread::panicking() || matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            childfd_testbin::kill_tagged(&self.tag);
        }
    }
}

/// Waits for `c` at most `limit`; kills it (and fails) past that.
#[track_caller]
pub fn wait_bounded(c: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            let _ = c.wait();
            panic!("childfd did not return within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a stream to its end on a thread; the result comes with a bound.
pub fn read_all(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(String::from_utf8_lossy(&v).into_owned());
    });
    rx
}

/// Reads `r` until `needle` has appeared (bounded); returns what was read
/// and the reader.
#[track_caller]
pub fn read_until<R: Read + Send + 'static>(mut r: R, needle: &str) -> (String, R) {
    let (tx, rx) = mpsc::channel();
    let want = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if seen.contains(&want) {
                        break;
                    }
                }
            }
        }
        let _ = tx.send((seen, r));
    });
    let (seen, r) = rx
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{needle:?} never came within {BOUND:?}"));
    assert!(seen.contains(needle), "{needle:?} not in {seen:?}");
    (seen, r)
}

/// The result of a finished `childfd`.
pub struct Ran {
    pub pid: u32,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `childfd ARGS` to the end, bounded.
#[track_caller]
pub fn childfd(tag: &str, args: &[&str]) -> Ran {
    let start = Instant::now();
    let mut c = Running::new(tag, command(tag, args).spawn().unwrap());
    let out = read_all(c.stdout.take().unwrap());
    let err = read_all(c.stderr.take().unwrap());
    let status = wait_bounded(&mut c, BOUND);
    let elapsed = start.elapsed();
    Ran {
        pid: c.id(),
        code: status.code().expect("childfd exited"),
        stdout: out.recv_timeout(BOUND).expect("stdout reader"),
        stderr: err.recv_timeout(BOUND).expect("stderr reader"),
        elapsed,
    }
}

/// Runs `childfd run sh -c SCRIPT` to the end, bounded, where `CHILDFD`
/// in the script stands for the built `childfd` (a shell that runs it
/// again, with redirections of its own).
#[track_caller]
pub fn childfd_in_sh(tag: &str, script: &str) -> Ran {
    let script = script.replace("CHILDFD", env!("CARGO_BIN_EXE_childfd"));
    childfd(tag, &["run", "sh", "-c", &script])
}

/// A JSON report file path unique to this call.
pub fn report_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.json", childfd_testbin::new_tag(name)))
}

/// Reads and removes a JSON report file.
#[track_caller]
pub fn take_report(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    let _ = std::fs::remove_file(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad report {text:?}: {e}"))
}

/// Asserts that `childfd` (pid) left no cgroup leaf behind (removing any
/// it finds, so that a failure does not leak into later tests).
#[track_caller]
pub fn assert_no_leaf(pid: u32) {
    let Some(dir) = childfd_testbin::own_cgroup_dir() else {
        return;
    };
    let left = childfd_testbin::cgroup_leaves_of(&dir, pid);
    for l in &left {
        let _ = std::fs::remove_dir(l);
    }
    assert!(left.is_empty(), "childfd left cgroup leaves: {left:?}");
}

/// The state letter of a process (`R`, `S`, `T`, ...), if it exists.
pub fn state(pid: u32) -> Option<char> {
    childfd_testbin::read_stat(pid as i32).map(|p| p.state)
}

/// Waits (bounded) until `pid` is in state `want`.
#[track_caller]
pub fn wait_state(pid: u32, want: char) {
    assert!(
        childfd_testbin::eventually(BOUND, || state(pid) == Some(want)),
        "pid {pid} never reached state {want} (now {:?})",
        state(pid)
    );
}

/// Waits (bounded) for a process of the tag with this command name; its pid.
#[track_caller]
pub fn wait_comm(tag: &str, comm: &str) -> u32 {
    let mut pid = 0;
    assert!(
        childfd_testbin::eventually(BOUND, || {
            let found = childfd_testbin::tagged(tag)
                .into_iter()
                .find(|p| p.comm == comm);
            pid = found.map_or(0, |p| p.pid as u32);
            pid != 0
        }),
        "no {comm} tagged {tag}"
    );
    pid
}
