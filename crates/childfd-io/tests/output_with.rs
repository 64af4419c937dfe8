//! `output_with` keeps what the caller configured where it fits capture,
//! rejects what contradicts it before spawning, and leaves the command as
//! it was.

use std::io::Write;

use childfd::{Command, Stdio, StdioKind};
use childfd_io::{CommandExt, Options, OutputError};
use childfd_testbin::{Hygiene, new_tag};

fn temp_file(tag: &str, name: &str, content: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("childfd-io-{tag}-{name}"));
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content)
        .unwrap();
    p
}

#[track_caller]
fn kinds(cmd: &Command) -> [StdioKind; 3] {
    [
        cmd.get_stdin().kind(),
        cmd.get_stdout().kind(),
        cmd.get_stderr().kind(),
    ]
}

#[test]
fn output_with_keeps_an_explicit_stdin_file() {
    let h = Hygiene::start();
    let tag = new_tag("owstdin");
    let path = temp_file(&tag, "in", b"from the file\n");
    let mut cmd = Command::new("cat");
    cmd.stdin(std::fs::File::open(&path).unwrap());
    let out = cmd.output_with(Options::new()).unwrap();
    assert_eq!(out.stdout.text(), "from the file\n", "{out:?}");
    // The command still reads the file (its fd is kept for more spawns).
    assert_eq!(
        kinds(&cmd),
        [StdioKind::Fd, StdioKind::Inherit, StdioKind::Inherit]
    );
    std::fs::remove_file(path).unwrap();
    drop(cmd);
    h.finish(1);
}

#[test]
fn output_with_rejects_a_redirected_stdout_and_leaves_the_command_unchanged() {
    let h = Hygiene::start();
    let tag = new_tag("owstdout");
    let path = temp_file(&tag, "out", b"");
    let mut cmd = Command::new("echo");
    cmd.arg("hi").stdout(std::fs::File::create(&path).unwrap());
    let err = cmd.output_with(Options::new()).unwrap_err();
    assert!(matches!(err, OutputError::InvalidOptions { .. }), "{err}");
    assert!(err.to_string().contains("stdout"), "{err}");
    assert_eq!(
        kinds(&cmd),
        [StdioKind::Inherit, StdioKind::Fd, StdioKind::Inherit]
    );
    // Nothing ran: the file is still empty.
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    drop(cmd);

    let mut cmd = Command::new("echo");
    cmd.stderr(Stdio::null());
    let err = cmd.output_with(Options::new()).unwrap_err();
    assert!(err.to_string().contains("stderr"), "{err}");

    let mut cmd = Command::new("cat");
    cmd.stdin(Stdio::null());
    let err = cmd
        .output_with(Options::new().stdin_bytes(&b"x"[..]))
        .unwrap_err();
    assert!(err.to_string().contains("stdin"), "{err}");
    std::fs::remove_file(path).unwrap();
    h.finish(1);
}

#[test]
fn output_with_captures_stderr_sent_to_stdout_and_restores_defaults() {
    let h = Hygiene::start();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo out; echo err >&2"])
        .stderr(Stdio::same_as_stdout());
    let out = cmd.output_with(Options::new()).unwrap();
    assert_eq!(out.stdout.text(), "out\nerr\n");
    assert_eq!(out.stderr.total, 0);
    assert_eq!(
        kinds(&cmd),
        [
            StdioKind::Inherit,
            StdioKind::Inherit,
            StdioKind::SameAsStdout
        ]
    );
    // Defaults: stdin is /dev/null, not the test's stdin.
    let mut cmd = Command::new("cat");
    let out = cmd.output_with(Options::new()).unwrap();
    assert_eq!(out.stdout.total, 0);
    assert_eq!(kinds(&cmd), [StdioKind::Inherit; 3]);
    h.finish(1);
}
