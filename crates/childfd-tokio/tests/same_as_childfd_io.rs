//! `output` on tokio against `childfd_io::output`, case by case: the issue
//! asks for exactly the same semantics, so every observable field (but
//! timings and pids) must agree, on both runtimes.

mod common;

use std::time::Duration;

use childfd::{Command, Stdio};
use childfd_testbin::{assert_no_survivors, kill_tagged, new_tag};
use childfd_tokio::{Line, Output, Stream, output, spawn};
use common::{SLACK, on_both, sh};

/// One case: a script and the limits both captures get.
#[derive(Clone)]
struct Case {
    name: &'static str,
    script: &'static str,
    input: Option<Vec<u8>>,
    deadline: Option<Duration>,
    grace: Option<Duration>,
    wait_delay: Option<Duration>,
    kill_held: bool,
    head: Option<usize>,
    tail: Option<usize>,
    /// Whether `stdin_written` depends on timing (a child that stops
    /// reading midway): then only `stdin_closed_early` is compared.
    written_varies: bool,
}

impl Case {
    fn new(name: &'static str, script: &'static str) -> Case {
        Case {
            name,
            script,
            input: None,
            deadline: None,
            grace: None,
            wait_delay: None,
            kill_held: false,
            head: None,
            tail: None,
            written_varies: false,
        }
    }
}

fn cases() -> Vec<Case> {
    let ms = Duration::from_millis;
    let mib = |n: usize| vec![b'i'; n << 20];
    vec![
        Case::new("codes", "echo out; echo err >&2; exit 3"),
        Case::new(
            "crlf and a partial last line",
            "printf 'a\\r\\nb\\r\\n\\n\\r\\nlast'",
        ),
        Case::new("no output", "exit 0"),
        Case::new(
            "a line longer than MAX_LINE",
            "head -c 2621440 /dev/zero | tr '\\0' x; printf '\\nend\\n'; printf 'e\\n\\n' >&2",
        ),
        Case {
            head: Some(10),
            ..Case::new("head cap equal to the total", "printf 0123456789")
        },
        Case {
            head: Some(9),
            ..Case::new("head cap one below the total", "printf 0123456789")
        },
        Case {
            head: Some(11),
            ..Case::new("head cap one above the total", "printf 0123456789")
        },
        Case {
            head: Some(4),
            tail: Some(6),
            ..Case::new("head and tail meeting exactly", "printf 0123456789")
        },
        Case {
            head: Some(4),
            tail: Some(7),
            ..Case::new("head and tail overlapping", "printf 0123456789")
        },
        Case {
            head: Some(0),
            tail: Some(1),
            ..Case::new(
                "tail of one byte over many reads",
                "head -c 300000 /dev/zero; printf z",
            )
        },
        Case {
            head: Some(100),
            tail: Some(100),
            ..Case::new(
                "a flood on stderr",
                "yes 0123456789 | head -c 1000000 >&2; echo x",
            )
        },
        Case {
            input: Some(vec![b'c'; 300_000]),
            ..Case::new("stdin fed to cat", "cat")
        },
        Case {
            input: Some(Vec::new()),
            ..Case::new("empty input", "cat; echo eof")
        },
        Case {
            input: Some(mib(1)),
            written_varies: true,
            ..Case::new("stdin closed by the child", "exec 0<&-; echo gone")
        },
        Case {
            input: Some(mib(1)),
            written_varies: true,
            ..Case::new("stdin partly read", "head -c 1000 >/dev/null; echo read")
        },
        Case {
            deadline: Some(ms(200)),
            grace: Some(ms(200)),
            ..Case::new(
                "deadline, TERM ignored",
                "trap '' TERM; echo a; sleep 1000 & sleep 1000",
            )
        },
        Case {
            deadline: Some(ms(200)),
            grace: Some(SLACK),
            ..Case::new("deadline, TERM obeyed", "echo a; sleep 1000 & sleep 1000")
        },
        Case {
            deadline: Some(Duration::ZERO),
            grace: Some(SLACK),
            ..Case::new("zero deadline", "sleep 1000")
        },
        Case {
            wait_delay: Some(ms(200)),
            kill_held: true,
            ..Case::new("held pipes, killed", "echo started; sleep 1000 &")
        },
        Case {
            wait_delay: Some(Duration::ZERO),
            ..Case::new("zero wait-delay", "echo out; echo err >&2")
        },
    ]
}

/// What must agree between the two.
#[derive(Debug, PartialEq)]
struct Seen {
    outcome: childfd_tokio::Outcome,
    status: Option<childfd::ExitStatus>,
    stdout: childfd_tokio::Captured,
    stderr: childfd_tokio::Captured,
    stdin_written: Option<u64>,
    stdin_closed_early: bool,
    holders: Vec<String>,
    ended_by: Option<childfd::EndedBy>,
    /// Per stream: lines from the two pipes interleave as they arrive.
    lines: [Vec<Vec<u8>>; 2],
}

fn seen(case: &Case, out: Output, lines: Vec<(Stream, Vec<u8>)>) -> Seen {
    let mut holders: Vec<String> = out.holders.iter().map(|h| h.name.clone()).collect();
    holders.sort();
    let per = |s: Stream| {
        lines
            .iter()
            .filter(|l| l.0 == s)
            .map(|l| l.1.clone())
            .collect()
    };
    Seen {
        outcome: out.outcome,
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
        stdin_written: (!case.written_varies).then_some(out.stdin_written),
        stdin_closed_early: out.stdin_closed_early,
        holders,
        ended_by: out.ended_by,
        lines: [per(Stream::Stdout), per(Stream::Stderr)],
    }
}

fn command(case: &Case, tag: &str) -> Command {
    let mut cmd = sh(case.script, tag);
    let stdin = if case.input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

macro_rules! limits {
    ($opts:expr, $case:expr) => {{
        let c = $case;
        let mut o = $opts;
        if let Some(d) = c.deadline {
            o = o.deadline(d);
        }
        if let Some(g) = c.grace {
            o = o.grace(g);
        }
        if let Some(w) = c.wait_delay {
            o = o.wait_delay(w);
        }
        if let Some(h) = c.head {
            o = o.max_bytes(h);
        }
        if let Some(t) = c.tail {
            o = o.keep_tail(t);
        }
        o.kill_tree_on_held_pipes(c.kill_held)
    }};
}

fn with_io(case: Case) -> Seen {
    let tag = new_tag("diff-io");
    let mut child = command(&case, &tag).spawn().unwrap();
    let mut lines = Vec::new();
    let mut opts = limits!(childfd_io::Options::new(), &case);
    if let Some(i) = &case.input {
        opts = opts.stdin_bytes(&i[..]);
    }
    let opts = opts.on_line(|s, l| lines.push((s, l.to_vec())));
    let out = childfd_io::output(&mut child, opts).unwrap();
    let _ = child.kill_tree();
    drop(child);
    kill_tagged(&tag);
    seen(&case, out, lines)
}

async fn with_tokio(case: Case) -> Seen {
    let tag = new_tag("diff-tokio");
    let mut child = spawn(&mut command(&case, &tag)).unwrap();
    let mut opts = limits!(childfd_tokio::Options::new(), &case);
    if let Some(i) = &case.input {
        opts = opts.stdin_bytes(i.clone());
    }
    let (opts, mut stream) = opts.lines();
    let capture = output(&mut child, opts);
    let collect = async {
        let mut got = Vec::new();
        while let Some(Line { stream, line }) = stream.next().await {
            got.push((stream, line));
        }
        got
    };
    let (out, lines) = tokio::join!(capture, collect);
    let _ = child.kill_tree();
    drop(child);
    kill_tagged(&tag);
    assert_no_survivors(&tag);
    seen(&case, out.unwrap(), lines)
}

/// The fields that differ, each shortened (a capture can be megabytes).
fn differences(tokio: &Seen, io: &Seen) -> String {
    let short = |v: String| v.chars().take(400).collect::<String>();
    let mut d = Vec::new();
    macro_rules! field {
        ($f:ident) => {
            if tokio.$f != io.$f {
                d.push(format!(
                    "{}: tokio {} / io {}",
                    stringify!($f),
                    short(format!("{:?}", tokio.$f)),
                    short(format!("{:?}", io.$f))
                ));
            }
        };
    }
    field!(outcome);
    field!(status);
    field!(stdout);
    field!(stderr);
    field!(stdin_written);
    field!(stdin_closed_early);
    field!(holders);
    field!(ended_by);
    if tokio.lines != io.lines {
        let count = |s: &Seen| s.lines.iter().map(Vec::len).collect::<Vec<_>>();
        d.push(format!(
            "lines: tokio {:?} / io {:?} per stream",
            count(tokio),
            count(io)
        ));
    }
    d.join("; ")
}

#[test]
fn output_on_tokio_sees_what_childfd_io_output_sees() {
    on_both(|flavor| async move {
        for case in cases() {
            let c = case.clone();
            let io = tokio::task::spawn_blocking(move || with_io(c))
                .await
                .unwrap();
            let tokio = with_tokio(case.clone()).await;
            if tokio != io {
                panic!("{flavor:?}: {}: {}", case.name, differences(&tokio, &io));
            }
        }
    });
}
