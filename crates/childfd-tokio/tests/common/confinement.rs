//! A thread's and a child's seccomp filters and `no_new_privs`, as
//! `/proc/…/status` shows them.

use childfd::Command;
use childfd_tokio::{CommandExt, Event, JobSet, Options};

use super::SLACK;

/// What a child inherits from the thread that clones it, as far as these
/// tests check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confined {
    /// `Seccomp_filters` (Linux 5.9; else `Seccomp`, the mode).
    pub filters: u32,
    pub no_new_privs: bool,
}

fn parse(status: &str) -> Confined {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<u32>().expect("a number"))
    };
    Confined {
        filters: field("Seccomp_filters:")
            .or_else(|| field("Seccomp:"))
            .expect("Seccomp in status"),
        no_new_privs: field("NoNewPrivs:").expect("NoNewPrivs in status") != 0,
    }
}

/// The calling thread's.
pub fn this_thread() -> Confined {
    parse(&std::fs::read_to_string("/proc/thread-self/status").expect("status"))
}

/// The async ways to spawn.
#[derive(Debug, Clone, Copy)]
pub enum Way {
    SpawnAsync,
    OutputAsync,
    JobSet,
}

pub const WAYS: [Way; 3] = [Way::SpawnAsync, Way::OutputAsync, Way::JobSet];

/// A child's, spawned `way` from the calling task: it prints its own
/// `/proc/self/status`.
pub async fn child_confinement(way: Way) -> Confined {
    let mut cmd = Command::new("cat");
    cmd.arg("/proc/self/status");
    let text = match way {
        Way::SpawnAsync => {
            use tokio::io::AsyncReadExt;
            cmd.stdout(childfd::Stdio::piped());
            let mut child = cmd.spawn_async().await.expect("spawn");
            let mut out = String::new();
            let mut stdout = child.take_stdout().expect("piped");
            let read = stdout.read_to_string(&mut out);
            tokio::time::timeout(SLACK, read)
                .await
                .expect("bounded")
                .expect("read");
            let st = tokio::time::timeout(SLACK, child.wait())
                .await
                .expect("bounded");
            assert!(st.expect("status").success());
            out
        }
        Way::OutputAsync => {
            let out = cmd.output_async(Options::new()).await.expect("output");
            assert!(out.status.expect("status").success());
            out.stdout.text().to_string()
        }
        Way::JobSet => {
            let mut jobs = JobSet::new(1);
            jobs.push(cmd, Options::new().deadline(SLACK));
            let mut text = None;
            while let Some(ev) = jobs.next().await {
                if let Event::Exited(r) = ev {
                    assert!(r.status.expect("status").success());
                    text = Some(r.stdout.text().to_string());
                }
            }
            text.expect("the job exited")
        }
    };
    parse(&text)
}
