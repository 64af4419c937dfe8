//! childfd in a real terminal session: a pseudo-terminal made the
//! controlling terminal of a new session (`setsid --ctty`) in which childfd
//! runs in the foreground, as under an interactive shell.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use childfd_testbin::{assert_no_survivors, new_tag, wait_tagged};
use common::*;
use rustix::event::{PollFd, PollFlags, poll};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// The master side of a pty, and childfd running on its slave side as
/// the session's foreground job. A failed test leaves nothing behind:
/// childfd and its tree are killed ([`Running`]) before the master closes.
struct Session {
    childfd: Running,
    master: OwnedFd,
    seen: String,
}

impl Session {
    fn start(tag: &str, args: &[&str]) -> Session {
        Session::start_with(tag, args, false)
    }

    fn start_with(tag: &str, args: &[&str], tostop: bool) -> Session {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        if tostop {
            use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
            let mut t = tcgetattr(&slave).unwrap();
            t.local_modes |= LocalModes::TOSTOP;
            tcsetattr(&slave, OptionalActions::Now, &t).unwrap();
        }
        // setsid(1) -c: a new session whose controlling terminal is fd 0,
        // with its process group in the terminal's foreground; it then
        // execs childfd (no fork: std's child is no group leader).
        let childfd = Command::new("setsid")
            .arg("-c")
            .arg(env!("CARGO_BIN_EXE_childfd"))
            .args(args)
            .env("CHILDFD_TEST_TAG", tag)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK).unwrap();
        Session {
            childfd: Running::new(tag, childfd),
            master,
            seen: String::new(),
        }
    }

    /// The program's shell, once childfd has started it (bounded).
    #[track_caller]
    fn program(&self) -> u32 {
        wait_tagged(self.childfd.tag(), 2)
            .into_iter()
            .find(|p| p.comm == "sh")
            .expect("the program")
            .pid as u32
    }

    /// Waits for childfd's exit code `code` (bounded), then checks that
    /// nothing of its tree and no cgroup leaf is left.
    #[track_caller]
    fn assert_ends_with(&mut self, code: i32) {
        assert_eq!(self.wait(), code, "{:?}", self.seen);
        self.childfd.assert_nothing_left();
    }

    /// Reads the terminal until `needle` appears (bounded).
    #[track_caller]
    fn expect(&mut self, needle: &str) {
        let end = Instant::now() + BOUND;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            assert!(Instant::now() < end, "{needle:?} not in {:?}", self.seen);
            let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
            let _ = poll(
                &mut fds,
                Some(&rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                }),
            );
            match rustix::io::read(&self.master, &mut buf) {
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                // EIO: the slave side is closed (the session ended).
                Err(e) => panic!("{needle:?} not in {:?} ({e})", self.seen),
            }
        }
    }

    fn type_(&mut self, s: &str) {
        let mut f = std::fs::File::from(self.master.as_fd().try_clone_to_owned().unwrap());
        f.write_all(s.as_bytes()).unwrap();
    }

    #[track_caller]
    fn wait(&mut self) -> i32 {
        // Keep the master drained so the session never blocks on output.
        let end = Instant::now() + BOUND;
        loop {
            if let Some(s) = self.childfd.try_wait().unwrap() {
                return s.code().expect("childfd exited");
            }
            assert!(
                Instant::now() < end,
                "childfd did not return: {:?}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            if let Ok(n) = (&std::fs::File::from(self.master.try_clone().unwrap())).read(&mut buf) {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

const READS_A_LINE: &str = "if [ -t 0 ] && [ -t 1 ]; then echo tty-yes; else echo tty-no; fi; \
     read line; echo \"got:$line\"";

#[test]
fn a_program_that_reads_the_terminal_gets_it_and_sees_a_tty() {
    let tag = new_tag("cli-tty");
    let mut s = Session::start(&tag, &["run", "--timeout", "60", "sh", "-c", READS_A_LINE]);
    // Before: the program was in a background group, stopped by SIGTTIN
    // on its first read, and childfd waited for ever.
    s.expect("tty-yes");
    s.type_("hello\n");
    s.expect("got:hello");
    s.assert_ends_with(0);
}

#[test]
fn ctrl_z_stops_program_and_childfd_and_cont_resumes_both() {
    let tag = new_tag("cli-ctrlz");
    let mut s = Session::start(&tag, &["run", "sh", "-c", READS_A_LINE]);
    s.expect("tty-yes");
    let pid = s.childfd.id();
    let sh = s.program();
    // Ctrl-Z: the terminal stops the foreground group (the program's);
    // childfd notices, takes the terminal back and stops too, as a job.
    // A Ctrl-Z typed in the instant between the hand-over and the SIGCONT
    // that undoes an early SIGTTIN is lost (see childfd's term module), so
    // it is typed again if nothing stopped (bounded).
    let stopped = (0..20).any(|_| {
        s.type_("\x1a");
        childfd_testbin::eventually(Duration::from_millis(500), || state(sh) == Some('T'))
    });
    assert!(stopped, "Ctrl-Z never stopped the program");
    wait_state(pid, 'T');
    // `fg`: continue childfd, which gives the program the terminal again.
    assert!(childfd_testbin::kill(pid as i32, libc::SIGCONT));
    assert!(
        childfd_testbin::eventually(BOUND, || state(sh) != Some('T')),
        "the program was not continued"
    );
    s.type_("again\n");
    s.expect("got:again");
    s.assert_ends_with(0);
}

#[test]
fn tstp_to_childfd_holding_a_terminal_stops_both_and_one_cont_resumes_both() {
    let tag = new_tag("cli-tstp-tty");
    let mut s = Session::start(&tag, &["run", "sh", "-c", READS_A_LINE]);
    s.expect("tty-yes");
    let pid = s.childfd.id();
    let sh = s.program();
    // `kill -TSTP childfd`: childfd stops the tree, then itself; the
    // program's stop is reported (SIGCHLD) while childfd is stopped, in
    // the same batch as the SIGCONT that continues it, and must not stop
    // it a second time.
    assert!(childfd_testbin::kill(pid as i32, libc::SIGTSTP));
    wait_state(sh, 'T');
    wait_state(pid, 'T');
    assert!(childfd_testbin::kill(pid as i32, libc::SIGCONT));
    assert!(
        childfd_testbin::eventually(BOUND, || state(sh) != Some('T') && state(pid) != Some('T')),
        "not continued: childfd {:?}, program {:?}",
        state(pid),
        state(sh)
    );
    s.type_("again\n");
    s.expect("got:again");
    s.assert_ends_with(0);
}

#[test]
fn ctrl_c_in_the_terminal_ends_the_program_and_childfd_reports_130() {
    let tag = new_tag("cli-ctrlc");
    let mut s = Session::start(&tag, &["run", "sh", "-c", "echo ready; sleep 300 & wait"]);
    s.expect("ready");
    s.type_("\x03");
    s.assert_ends_with(130);
}

#[test]
fn no_foreground_keeps_the_program_off_the_terminal() {
    let tag = new_tag("cli-nofg");
    let mut s = Session::start(
        &tag,
        &[
            "run",
            "--no-foreground",
            "--timeout",
            "1",
            "sh",
            "-c",
            READS_A_LINE,
        ],
    );
    s.expect("tty-yes");
    // Its read stops it (SIGTTIN); the timeout still ends it.
    assert_eq!(s.wait(), 124, "{:?}", s.seen);
    assert_no_survivors(&tag);
}

#[test]
fn piped_output_reaches_a_tostop_terminal_the_program_holds() {
    let tag = new_tag("cli-tostop");
    // --max-output needs the pipe: childfd writes the program's output to
    // the terminal from the background while the program holds it; with
    // `stty tostop` that must not stop childfd (SIGTTOU).
    let mut s = Session::start_with(
        &tag,
        &[
            "run",
            "--max-output",
            "1M",
            "sh",
            "-c",
            "echo tty-out; sleep 0.2; echo tty-end",
        ],
        true,
    );
    s.expect("tty-end");
    s.assert_ends_with(0);
}
