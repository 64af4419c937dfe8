//! A child in its own process group (the default containment) that reads
//! the host's controlling terminal: the kernel stops it (SIGTTIN, a
//! background job), so it never exits by itself; a deadline must still end
//! it (TERM + CONT), and the host must not be stopped. The host here is
//! this test binary re-run as a session leader on a fresh pseudo-terminal.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use childfd::{Command, EndedBy, Signal, Stdio};
use childfd_testbin::{eventually, read_stat};
use childfd_tokio::{Options, Outcome, output, spawn};
use common::SLACK;

const SCENARIO: &str = "CHILDFD_TOKIO_PTY_SCENARIO";
const NAME: &str =
    "a_background_child_reading_the_terminal_is_stopped_and_a_deadline_still_ends_it";

/// A pseudo-terminal: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: out-pointers to two ints; no name, termios or winsize.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned a fresh fd that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: as above.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    (master, slave)
}

/// In the re-run host: the controlling terminal is stdin.
fn scenario() {
    let rt = common::runtime(common::Flavor::CurrentThread);
    rt.block_on(async {
        // stdin inherited: the terminal. A new process group: background.
        let mut child = spawn(
            Command::new("sh")
                .args(["-c", "read x; echo never"])
                .stdin(Stdio::inherit())
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let pid = child.id() as i32;
        assert!(
            eventually(SLACK, || read_stat(pid).is_some_and(|p| p.state == 'T')),
            "the background read should stop the child (SIGTTIN)"
        );
        let opts = Options::new()
            .deadline(Duration::from_millis(100))
            .grace(SLACK);
        let out = tokio::time::timeout(SLACK, output(&mut child, opts))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (out.outcome, out.ended_by),
            (Outcome::TimedOut, Some(EndedBy::Term)),
            "{out:?}"
        );
        assert_eq!(out.status.unwrap().signal(), Some(Signal::TERM));
        assert!(out.stdout.bytes().is_empty());
    });
}

#[test]
fn a_background_child_reading_the_terminal_is_stopped_and_a_deadline_still_ends_it() {
    if std::env::var_os(SCENARIO).is_some() {
        return scenario();
    }
    let (master, slave) = openpty();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap());
    host.args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, "1")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    let become_session_leader = || {
        // SAFETY: setsid takes no pointer; async-signal-safe.
        if unsafe { libc::setsid() } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: TIOCSCTTY on fd 0 (the pty) with an integer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure makes only async-signal-safe calls (setsid and
    // ioctl): the re-run host becomes a session leader with the pty as its
    // controlling terminal.
    unsafe {
        host.pre_exec(become_session_leader);
    }
    let mut host = {
        // The command holds copies of the terminal until dropped: the
        // reader below sees EOF only once the host's are the last.
        let h = host.spawn().unwrap();
        drop(host);
        h
    };
    drop(slave);
    // Drain the terminal (the host's output) until it is closed.
    let (text_tx, text_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        let _ = text_tx.send(String::from_utf8_lossy(&all).into_owned());
    });
    let ok = eventually(SLACK * 3, || host.try_wait().unwrap().is_some());
    if !ok {
        let _ = host.kill();
    }
    let st = host.wait().unwrap();
    let text = text_rx
        .recv_timeout(SLACK)
        .unwrap_or_else(|_| "(terminal still open)".into());
    assert!(
        ok && st.success(),
        "the host on the pty failed ({st:?}):\n{text}"
    );
}
