//! A program written with `std::process` idioms compiles and runs against
//! childfd with only the import changed.
//!
//! The program below is one macro body, compiled twice: once after
//! `use std::process::{Command, Stdio}` (plus std's `CommandExt` for
//! `process_group`), once after `use childfd::{Command, Stdio}`. Each run
//! writes a transcript of what it saw; the two must be equal, and the
//! std transcript is checked against known values so that equality is not
//! vacuous. Every wait is bounded: children that could hang run under
//! `timeout(1)`, so a missing behaviour fails instead of hanging.

use childfd::Signal;
use childfd_testbin::Hygiene;

macro_rules! std_style_program {
    () => {
        use std::fs::File;
        use std::io::{self, Read, Write};
        use std::path::Path;

        /// The pgrp field of `/proc/PID/stat`, as printed by the child.
        const PRINT_PGRP: &str = "cut -d' ' -f5 /proc/$$/stat";

        fn text(b: &[u8]) -> String {
            String::from_utf8_lossy(b).into_owned()
        }

        fn missing_program() -> io::Result<()> {
            Command::new("/no/such/program").spawn()?;
            Ok(())
        }

        /// Runs every idiom and returns a transcript of what it saw.
        pub fn run(dir: &Path) -> io::Result<Vec<String>> {
            let mut t = Vec::new();

            // output(): status and both streams as bytes.
            let out = Command::new("sh")
                .args(["-c", "echo out; echo err >&2; exit 3"])
                .output()?;
            t.push(format!(
                "output: {} {:?} {:?} {}",
                out.status,
                text(&out.stdout),
                text(&out.stderr),
                out.status.success()
            ));

            // output() keeps an explicitly configured stdin (a file) and
            // stdout (null); its own default stdin is empty.
            let path = dir.join("input.txt");
            File::create(&path)?.write_all(b"from a file\n")?;
            let out = Command::new("cat").stdin(File::open(&path)?).output()?;
            t.push(format!("stdin from a file: {:?}", text(&out.stdout)));
            let out = Command::new("timeout").args(["10", "cat"]).output()?;
            t.push(format!(
                "default stdin: {} {:?}",
                out.status,
                text(&out.stdout)
            ));
            let out = Command::new("echo")
                .arg("gone")
                .stdout(Stdio::null())
                .output()?;
            t.push(format!("stdout set to null: {:?}", text(&out.stdout)));

            // Statuses: a code, a signal, Display.
            let st = Command::new("sh").args(["-c", "kill -TERM $$"]).status()?;
            t.push(format!(
                "killed: {st} code={:?} success={}",
                st.code(),
                st.success()
            ));

            // A pipeline: one child's stdout is the next one's stdin.
            let mut echo = Command::new("echo")
                .arg("hello pipeline")
                .stdout(Stdio::piped())
                .spawn()?;
            let tr = Command::new("tr")
                .args(["a-z", "A-Z"])
                .stdin(echo.stdout.take().expect("piped"))
                .output()?;
            echo.wait()?;
            t.push(format!("pipeline: {:?}", text(&tr.stdout)));

            // The other way round: a child writes into another's stdin
            // pipe, and a child's stderr feeds another child.
            let mut cat = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut writer = Command::new("echo")
                .arg("into cat")
                .stdout(cat.stdin.take().expect("piped"))
                .spawn()?;
            writer.wait()?;
            let out = cat.wait_with_output()?;
            t.push(format!("stdin pipe as stdout: {:?}", text(&out.stdout)));
            let mut noisy = Command::new("sh")
                .args(["-c", "echo warning >&2"])
                .stderr(Stdio::piped())
                .spawn()?;
            let count = Command::new("wc")
                .arg("-c")
                .stdin(noisy.stderr.take().expect("piped"))
                .output()?;
            noisy.wait()?;
            t.push(format!(
                "stderr pipe as stdin: {}",
                text(&count.stdout).trim()
            ));

            // Getters and Debug.
            let mut cmd = Command::new("prog");
            cmd.arg("a b")
                .arg("say \"hi\"")
                .env("FOO", "1")
                .env_remove("BAR")
                .current_dir("/tmp");
            t.push(format!("debug: {cmd:?}"));
            t.push(format!(
                "getters: {:?} {:?} {:?} {:?}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>(),
                cmd.get_envs().collect::<Vec<_>>(),
                cmd.get_current_dir()
            ));
            let mut cmd = Command::new("prog");
            cmd.env_clear().env("ONLY", "this").arg("x");
            t.push(format!("debug after env_clear: {cmd:?}"));

            // Process groups: lead a new one, and join it.
            // (`timeout --foreground` stays in the group it was started in.)
            let mut leader = Command::new("timeout")
                .args([
                    "--foreground",
                    "10",
                    "sh",
                    "-c",
                    &format!("{PRINT_PGRP}; read _"),
                ])
                .process_group(0)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut line = [0u8; 32];
            let n = leader.stdout.as_mut().expect("piped").read(&mut line)?;
            let leader_pgrp: u32 = text(&line[..n]).trim().parse().expect("a number");
            let member = Command::new("sh")
                .args(["-c", PRINT_PGRP])
                .process_group(leader.id() as i32)
                .output()?;
            let member_pgrp: u32 = text(&member.stdout).trim().parse().expect("a number");
            let leader_status = leader.wait()?; // closes its stdin: `read` fails at EOF
            t.push(format!(
                "groups: leader leads {}, member joined {}, leader {leader_status}",
                leader_pgrp == leader.id(),
                member_pgrp == leader.id()
            ));

            // wait() closes the stdin the handle still holds.
            let mut cat = Command::new("timeout")
                .args(["10", "cat"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?;
            cat.stdin
                .as_mut()
                .expect("piped")
                .write_all(b"some input")?;
            t.push(format!("wait closes stdin: {}", cat.wait()?));

            // A writer thread and wait_with_output, as in std's docs.
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().expect("piped");
            let feeder = std::thread::spawn(move || stdin.write_all(&vec![b'x'; 1 << 20]));
            let out = child.wait_with_output()?;
            feeder.join().expect("no panic")?;
            t.push(format!(
                "1 MiB through cat: {} {}",
                out.stdout.len(),
                out.status
            ));

            // Reading a piped stream in place; try_wait and kill; `?` on
            // spawn errors gives an io::Error with its kind.
            let mut child = Command::new("echo")
                .arg("read me")
                .stdout(Stdio::piped())
                .spawn()?;
            let mut s = String::new();
            child
                .stdout
                .as_mut()
                .expect("piped")
                .read_to_string(&mut s)?;
            child.wait()?;
            t.push(format!("read in place: {s:?}"));
            let mut sleeper = Command::new("sleep").arg("60").spawn()?;
            let running = sleeper.try_wait()?.is_none();
            sleeper.kill()?;
            t.push(format!("kill: running={running} then {}", sleeper.wait()?));
            let err = missing_program().expect_err("no such program");
            t.push(format!("missing program: {:?}", err.kind()));
            Ok(t)
        }
    };
}

mod with_std {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    std_style_program!();
}

mod with_childfd {
    // std needs `mut` for `wait`, `kill` and `try_wait`; childfd's take `&self`.
    #![allow(unused_mut)]
    use childfd::{Command, Stdio};
    std_style_program!();
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("childfd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_std_process_program_runs_unchanged_against_childfd() {
    let h = Hygiene::start();
    let dir = scratch_dir("std-parity");
    let std_seen = with_std::run(&dir).expect("the std run");
    let ours = with_childfd::run(&dir).expect("the childfd run");
    std::fs::remove_dir_all(&dir).unwrap();
    let expected = [
        r#"output: exit status: 3 "out\n" "err\n" false"#,
        r#"stdin from a file: "from a file\n""#,
        r#"default stdin: exit status: 0 """#,
        r#"stdout set to null: """#,
        "killed: signal: 15 (SIGTERM) code=None success=false",
        r#"pipeline: "HELLO PIPELINE\n""#,
        r#"stdin pipe as stdout: "into cat\n""#,
        "stderr pipe as stdin: 8",
        r#"debug: cd "/tmp" && env -u BAR FOO="1" "prog" "a b" "say \"hi\"""#,
        r#"getters: "prog" ["a b", "say \"hi\""] [("BAR", None), ("FOO", Some("1"))] Some("/tmp")"#,
        r#"debug after env_clear: env -i ONLY="this" "prog" "x""#,
        "groups: leader leads true, member joined true, leader exit status: 1",
        "wait closes stdin: exit status: 0",
        "1 MiB through cat: 1048576 exit status: 0",
        r#"read in place: "read me\n""#,
        "kill: running=true then signal: 9 (SIGKILL)",
        "missing program: NotFound",
    ];
    assert_eq!(
        std_seen, expected,
        "std itself behaves as this test assumes"
    );
    assert_eq!(ours, std_seen, "childfd differs from std");
    h.finish(1);
}

#[test]
fn signal_names_parse_and_print_as_kill_l_does() {
    let h = Hygiene::start();
    for (text, want) in [
        ("TERM", libc::SIGTERM),
        ("SIGTERM", libc::SIGTERM),
        ("sigterm", libc::SIGTERM),
        ("Term", libc::SIGTERM),
        ("15", libc::SIGTERM),
        ("KILL", libc::SIGKILL),
        ("HUP", libc::SIGHUP),
        ("SIGUSR1", libc::SIGUSR1),
        ("CHLD", libc::SIGCHLD),
        ("CLD", libc::SIGCHLD),
        ("IOT", libc::SIGABRT),
        ("STKFLT", libc::SIGSTKFLT),
        ("WINCH", libc::SIGWINCH),
        ("64", 64),
        ("RTMIN", libc::SIGRTMIN()),
        ("SIGRTMIN+3", libc::SIGRTMIN() + 3),
        ("RTMAX-1", libc::SIGRTMAX() - 1),
        ("RTMAX", libc::SIGRTMAX()),
    ] {
        let sig: Signal = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(sig.as_raw(), want, "{text}");
    }
    for bad in [
        "",
        "SIG",
        "TERMINATE",
        "0",
        "65",
        "-9",
        "RTMIN+99",
        "RTMAX-99",
        "SIGRTMIN+x",
        " TERM",
    ] {
        let e = bad.parse::<Signal>().expect_err(bad);
        assert!(e.to_string().contains("unknown signal"), "{bad}: {e}");
    }
    // Display is the name, which parses back; real-time ones by number,
    // which parses back too.
    for n in 1..=64 {
        let sig = Signal::new(n).unwrap();
        assert_eq!(sig.to_string().parse::<Signal>().ok(), Some(sig), "{n}");
    }
    assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    assert_eq!(
        Signal::new(libc::SIGRTMIN()).unwrap().to_string(),
        format!("signal {}", libc::SIGRTMIN())
    );
    h.finish(0);
}

#[test]
fn a_signal_named_in_a_string_reaches_the_child() {
    let h = Hygiene::start();
    let run = |name: &str| -> std::io::Result<childfd::ExitStatus> {
        let sig: Signal = name.parse()?; // a bad name is an io::Error too
        let child = childfd::Command::new("sleep").arg("60").spawn()?;
        child.signal(sig)?;
        Ok(child.wait()?)
    };
    assert_eq!(run("USR1").unwrap().signal(), Some(Signal::USR1));
    // TERM, not INT or HUP: a suite started as a background job or under
    // nohup runs with those ignored, and the child inherits that.
    assert_eq!(run("SIGTERM").unwrap().signal(), Some(Signal::TERM));
    let e = run("SIGNOPE").expect_err("no such signal");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    h.finish(0);
}

#[test]
fn output_leaves_the_command_as_configured() {
    let h = Hygiene::start();
    let mut cmd = childfd::Command::new("sh");
    cmd.args(["-c", "echo out"]);
    assert_eq!(cmd.output().unwrap().stdout, b"out\n");
    // Afterwards stdout is inherited again: a spawn's stdout is not a pipe.
    let mut child = cmd.spawn().unwrap();
    assert!(child.stdout.take().is_none());
    assert!(child.wait().unwrap().success());
    drop(child);
    assert!(format!("{cmd:#?}").contains("stdout: Stdio::inherit()"));
    h.finish(0);
}

#[test]
fn a_negative_process_group_is_invalid_input_before_any_process_exists() {
    let h = Hygiene::start();
    let e = childfd::Command::new("true")
        .process_group(-5)
        .spawn()
        .expect_err("invalid");
    assert!(matches!(e, childfd::SpawnError::Invalid { .. }), "{e:?}");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    h.finish(0);
}

#[test]
fn a_joined_process_group_is_signalled_through_its_leader() {
    let h = Hygiene::start();
    let leader = childfd::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let member = childfd::Command::new("sleep")
        .arg("60")
        .process_group(leader.id() as i32)
        .spawn()
        .unwrap();
    // The member's own tree is itself only: its kill_tree leaves the leader.
    member.kill_tree().unwrap();
    assert_eq!(member.wait().unwrap().signal(), Some(Signal::KILL));
    assert!(leader.try_wait().unwrap().is_none(), "the leader was hit");
    leader.kill_tree().unwrap();
    assert_eq!(leader.wait().unwrap().signal(), Some(Signal::KILL));
    drop((leader, member));
    h.finish(0);
}

#[test]
fn joining_a_group_that_does_not_exist_fails_at_the_process_group_stage() {
    let h = Hygiene::start();
    // A pid far above pid_max's default names no group.
    let e = childfd::Command::new("true")
        .process_group(0x3fff_fff0)
        .spawn()
        .expect_err("no such group");
    assert_eq!(e.stage(), childfd::SpawnStage::ProcessGroup, "{e:?}");
    h.finish(0);
}

/// The failures std reports as OS errors, each as (program, directory).
const OS_FAILURES: &[(&str, Option<&str>)] = &[
    ("/no/such/program", None),
    ("no-such-program-on-path", None),
    ("/etc/passwd", None),
    ("/tmp", None),
    ("true", Some("/no/such/dir")),
    ("true", Some("/etc/passwd")),
];

/// Issue: `io::Error::from(SpawnError)` wrapped the error, so its
/// `raw_os_error()` was `None` where std gives the errno (`Some(2)` for a
/// missing program): code ported from std that matched on it broke. The
/// program stays reachable on the `SpawnError` itself.
#[test]
fn spawn_error_as_io_error_keeps_the_os_error_number_as_std_does() {
    let h = Hygiene::start();
    for &(program, dir) in OS_FAILURES {
        let mut ours = childfd::Command::new(program);
        let mut theirs = std::process::Command::new(program);
        if let Some(d) = dir {
            ours.current_dir(d);
            theirs.current_dir(d);
        }
        let std_err = theirs.spawn().expect_err("std spawned it");
        let e = ours.spawn().expect_err("childfd spawned it");
        assert_eq!(e.program(), program);
        assert!(e.to_string().contains(program), "{e}");
        let raw = e.raw_os_error();
        let io: std::io::Error = e.into();
        assert_eq!(
            (io.raw_os_error(), io.kind()),
            (std_err.raw_os_error(), std_err.kind()),
            "{program} in {dir:?}: ours {io:?}, std {std_err:?}"
        );
        assert_eq!(io.raw_os_error(), raw);
        assert_eq!(io.to_string(), std_err.to_string());
        // What `Command::status` returns, as std's `status`.
        let status_err = ours.status().expect_err("ran");
        assert_eq!(status_err.raw_os_error(), std_err.raw_os_error());
    }
    // Bad input has no errno: the io::Error wraps the SpawnError.
    let e = childfd::Command::new("tr\0ue")
        .spawn()
        .expect_err("invalid");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(io.raw_os_error(), None);
    let inner = io
        .get_ref()
        .and_then(|r| r.downcast_ref::<childfd::SpawnError>());
    assert_eq!(inner.map(|e| e.program()), Some("tr\0ue"));
    h.finish(0);
}

/// Issue: a bad environment name or a NUL byte was reported as "invalid
/// command `x`", without saying which string or what was wrong with it.
#[test]
fn invalid_env_name_or_nul_byte_says_which_string_and_why() {
    let h = Hygiene::start();
    let cases: Vec<(childfd::Command, &[&str])> = vec![
        (
            {
                let mut c = childfd::Command::new("true");
                c.env("A=B", "x");
                c
            },
            &["\"A=B\"", "contains `=`", "NAME=value"],
        ),
        (
            {
                let mut c = childfd::Command::new("true");
                c.env_remove("LANG=C");
                c
            },
            &["\"LANG=C\"", "contains `=`"],
        ),
        (
            {
                let mut c = childfd::Command::new("true");
                c.env("", "x");
                c
            },
            &["name is empty"],
        ),
        (
            {
                let mut c = childfd::Command::new("true");
                c.env("KE\0Y", "x");
                c
            },
            &[
                "environment variable name \"KE\\0Y\"",
                "NUL byte",
                "C strings",
            ],
        ),
        (
            {
                let mut c = childfd::Command::new("true");
                c.env("KEY", "va\0lue");
                c
            },
            &["value of environment variable KEY", "NUL byte"],
        ),
        (
            {
                let mut c = childfd::Command::new("true");
                c.arg("ok").arg("b\0d");
                c
            },
            &["argument 2", "NUL byte", "C strings"],
        ),
    ];
    for (cmd, wanted) in &cases {
        let e = cmd.spawn().expect_err("invalid");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let shown = e.to_string();
        assert!(shown.contains("`true`"), "{shown}");
        for w in *wanted {
            assert!(shown.contains(w), "{shown:?} lacks {w:?}");
        }
        // The io::Error says the same.
        let io: std::io::Error = e.into();
        assert_eq!(io.to_string(), shown);
    }
    h.finish(0);
}
