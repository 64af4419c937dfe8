//! The [`Command`] builder, mirroring `std::process::Command`.
//!
//! Strings are checked and converted to C strings as they are added, so a
//! NUL byte or an empty program is reported by [`Command::spawn`] before
//! any process exists, never as a panic.

mod child_setup;
mod env_snapshot;
mod plan;
mod std_compat;
mod stdio;

pub use child_setup::Resource;
pub use env_snapshot::{CallerSignalMask, EnvSnapshot};
pub use stdio::{Stdio, StdioKind};

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::containment::Containment;
use crate::error::{InvalidCommand, SpawnError};
use crate::{Child, Signal};

/// A program to run, with its arguments, environment, working directory,
/// file descriptors and containment.
///
/// ```
/// use childfd::Command;
/// use std::time::Duration;
///
/// let child = Command::new("sh").args(["-c", "exit 3"]).spawn()?;
/// let status = child.wait_timeout(Duration::from_secs(10))?.expect("exited");
/// assert_eq!(status.code(), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Command {
    pub(crate) program: CString,
    /// The program as given, for messages (the C string is empty if invalid).
    pub(crate) program_os: OsString,
    /// argv, including argv[0].
    pub(crate) args: Vec<CString>,
    pub(crate) env: Env,
    pub(crate) cwd: Option<CString>,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    /// Which of stdin, stdout, stderr were set explicitly ([`Command::output`]
    /// keeps those).
    pub(crate) stdio_set: [bool; 3],
    pub(crate) fds: Vec<(i32, OwnedFd)>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) groups: Option<Vec<u32>>,
    pub(crate) pdeathsig: Option<Signal>,
    pub(crate) default_signals: u64,
    pub(crate) inherit_signal_mask: bool,
    pub(crate) containment: Containment,
    /// Process attributes the child sets (`child_setup`).
    pub(crate) setup: child_setup::Setup,
    /// `pre_exec` closures; in a mutex so that `spawn(&self)` can hand the
    /// child a mutable copy (the child runs them in its own memory).
    pub(crate) pre_exec: std::sync::Mutex<crate::sys::child_exec::PreExecHooks>,
    pub(crate) kill_on_drop: bool,
    /// The first invalid input seen by the builder; reported by `spawn`.
    pub(crate) invalid: Option<InvalidCommand>,
}

/// The child's environment as a change to the parent's.
#[derive(Default, Debug)]
pub(crate) struct Env {
    pub clear: bool,
    /// `Some(value)`: set; `None`: removed.
    pub vars: BTreeMap<OsString, Option<OsString>>,
}

impl Command {
    /// A command running `program`, found in `PATH` if it has no `/`
    /// (execvp rules), with `argv[0]` = `program`, the parent's environment,
    /// working directory and stdio, in a new process group.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        let mut invalid = None;
        let program = program.as_ref();
        if program.is_empty() {
            invalid = Some(InvalidCommand::EmptyProgram);
        }
        let program_os = program.to_owned();
        let program = to_cstring(program, || "program".to_string(), &mut invalid);
        Command {
            program_os,
            args: vec![program.clone()],
            program,
            env: Env::default(),
            cwd: None,
            stdin: Stdio::inherit(),
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
            stdio_set: [false; 3],
            fds: Vec::new(),
            uid: None,
            gid: None,
            groups: None,
            pdeathsig: None,
            default_signals: 1 << (libc::SIGPIPE - 1),
            inherit_signal_mask: false,
            containment: Containment::default(),
            setup: child_setup::Setup::default(),
            pre_exec: std::sync::Mutex::new(Vec::new()),
            kill_on_drop: false,
            invalid,
        }
    }

    /// Appends an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        let n = self.args.len();
        let c = to_cstring(arg.as_ref(), || format!("argument {n}"), &mut self.invalid);
        self.args.push(c);
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets `argv[0]` (by default the program as given).
    pub fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.args[0] = to_cstring(
            arg0.as_ref(),
            || "argument 0".to_string(),
            &mut self.invalid,
        );
        self
    }

    /// Sets an environment variable for the child. A `PATH` set here is
    /// also the one the program is searched in.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Command {
        let (key, val) = (key.as_ref(), val.as_ref());
        self.check_env_name(key);
        if val.as_bytes().contains(&0) && self.invalid.is_none() {
            self.invalid = Some(InvalidCommand::NulByte {
                what: format!(
                    "the value of environment variable {}",
                    key.to_string_lossy()
                ),
            });
        }
        self.env.vars.insert(key.to_owned(), Some(val.to_owned()));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.check_env_name(key.as_ref());
        self.env.vars.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.env.clear = true;
        self.env.vars.retain(|_, v| v.is_some());
        self
    }

    /// Sets the child's working directory (`chdir` before `execve`).
    ///
    /// A relative program path (with a `/`) is resolved from this directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        let d = to_cstring(
            dir.as_ref().as_os_str(),
            || "current directory".into(),
            &mut self.invalid,
        );
        self.cwd = Some(d);
        self
    }

    /// The child's standard input.
    pub fn stdin(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stdin = s.into();
        self.stdio_set[0] = true;
        self
    }

    /// The child's standard output.
    pub fn stdout(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stdout = s.into();
        self.stdio_set[1] = true;
        self
    }

    /// The child's standard error; [`Stdio::same_as_stdout`] for `2>&1`.
    pub fn stderr(&mut self, s: impl Into<Stdio>) -> &mut Command {
        self.stderr = s.into();
        self.stdio_set[2] = true;
        self
    }

    /// Passes `fd` to the child as fd number `child_fd` (3 or more). Every
    /// other fd of the parent is closed in the child at exec, whether or
    /// not it was opened with `O_CLOEXEC`.
    pub fn fd(&mut self, child_fd: i32, fd: impl Into<OwnedFd>) -> &mut Command {
        if child_fd < 3 && self.invalid.is_none() {
            self.invalid = Some(InvalidCommand::FdReserved { fd: child_fd });
        }
        if self.fds.iter().any(|(n, _)| *n == child_fd) && self.invalid.is_none() {
            self.invalid = Some(InvalidCommand::FdMappedTwice { fd: child_fd });
        }
        self.fds.push((child_fd, fd.into()));
        self
    }

    /// Runs the child as user `uid` (`setuid` before exec). Unless
    /// [`groups`](Command::groups) is given, supplementary groups are
    /// dropped when permitted.
    pub fn uid(&mut self, uid: u32) -> &mut Command {
        self.uid = Some(uid);
        self
    }

    /// Runs the child as group `gid` (`setgid` before exec).
    pub fn gid(&mut self, gid: u32) -> &mut Command {
        self.gid = Some(gid);
        self
    }

    /// Sets the child's supplementary groups (`setgroups`).
    pub fn groups(&mut self, groups: &[u32]) -> &mut Command {
        self.groups = Some(groups.to_vec());
        self
    }

    /// Sends `sig` to the child when its parent dies
    /// ([`PR_SET_PDEATHSIG`](https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html)).
    ///
    /// # Caveats
    ///
    /// The kernel fires it when the *thread* that spawned the child exits,
    /// not only the process; spawn from a long-lived thread.
    ///
    /// ```
    /// use childfd::{Command, Signal};
    /// use std::time::Duration;
    ///
    /// // A helper that must not outlive this program, even if it is killed.
    /// let helper = Command::new("sleep").arg("300").pdeathsig(Signal::KILL).spawn()?;
    /// assert!(helper.try_wait()?.is_none()); // we are alive, so is it
    /// helper.kill()?;
    /// # helper.wait_timeout(Duration::from_secs(10))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pdeathsig(&mut self, sig: Signal) -> &mut Command {
        self.pdeathsig = Some(sig);
        self
    }

    /// Resets `sig` to its default disposition in the child (SIGPIPE always is).
    pub fn reset_signal(&mut self, sig: Signal) -> &mut Command {
        self.default_signals |= 1u64 << (sig.as_raw() - 1);
        self
    }

    /// Whether the child starts with the spawning thread's signal mask
    /// (`true`) or with every signal unblocked (`false`, the default).
    ///
    /// The default is an empty mask because a blocked signal survives
    /// `execve`: a program started from a thread that blocks SIGTERM or
    /// SIGINT (as signal-handling threads and async runtimes do, to take
    /// them with `sigwait` or a signalfd) would ignore `terminate` and
    /// Ctrl-C, and most programs never unblock what they did not block
    /// themselves. Pass `true` to hand the mask on, as `posix_spawn` does by
    /// default and `std::process::Command` does; the spawning thread's own
    /// mask is never changed by a spawn either way.
    ///
    /// Whatever the mask, a signal that reached the child before it
    /// exec'd is discarded (it was meant for the caller's process group, not
    /// for this child), so none can stop or kill it before `execve`.
    pub fn inherit_signal_mask(&mut self, yes: bool) -> &mut Command {
        self.inherit_signal_mask = yes;
        self
    }

    /// How the child's descendants are grouped so the tree can be signalled
    /// and killed (default: a new process group). See
    /// [`containment`](crate::containment).
    pub fn containment(&mut self, c: Containment) -> &mut Command {
        self.containment = c;
        self
    }

    /// Kills the child when its [`Child`] handle is dropped while it runs.
    pub fn kill_on_drop(&mut self, yes: bool) -> &mut Command {
        self.kill_on_drop = yes;
        self
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program_os
    }

    /// The child's standard input as configured ([`Stdio::inherit`]
    /// unless [`stdin`](Self::stdin) set it).
    pub fn get_stdin(&self) -> &Stdio {
        &self.stdin
    }

    /// The child's standard output as configured.
    pub fn get_stdout(&self) -> &Stdio {
        &self.stdout
    }

    /// The child's standard error as configured.
    pub fn get_stderr(&self) -> &Stdio {
        &self.stderr
    }

    /// The arguments after `argv[0]`.
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args
            .iter()
            .skip(1)
            .map(|a| OsStr::from_bytes(a.as_bytes()))
    }

    /// Creates the child.
    ///
    /// Builds everything the child needs, then `clone3(CLONE_PIDFD |
    /// CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND)` with `exit_signal = 0`
    /// (see [clone(2)](https://man7.org/linux/man-pages/man2/clone.2.html));
    /// returns once the child has called `execve`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Invalid`] for bad input (nothing is created);
    /// [`SpawnError::Os`] naming the failed [`SpawnStage`](crate::SpawnStage)
    /// with the errno's `io::ErrorKind` (a missing program is `NotFound` at
    /// stage `Exec`; a missing directory is [`SpawnError::Chdir`], naming
    /// it). A child that failed has been reaped.
    ///
    /// # What the rest of the process may do meanwhile
    ///
    /// - Signal the caller's process group: a signal that reaches the child
    ///   before it execs was not meant for it and is discarded, so a
    ///   terminal's SIGTSTP or SIGINT can neither stop (and so hang) nor
    ///   kill a spawn. Only SIGKILL and SIGSTOP cannot be discarded; this
    ///   holds for every signal number, glibc's internal 32 and 33 included
    ///   (blocking 33 around the clone delays another thread's `setuid`
    ///   until the child has exec'd). With [`Containment::Inherit`] (and
    ///   [`Containment::JoinGroup`]) the child is a member of the group it
    ///   runs in before it execs: a signal that reaches it then is held and
    ///   sent to it by pidfd right after `execve` (once per signal number),
    ///   so a Ctrl-C during the spawn ends the program as it ends the rest
    ///   of the group. Not kept: a signal sent to the caller's group before
    ///   a `JoinGroup` child joined its group, and one that arrives while
    ///   the spawning process dies of another thread's signal (nobody is
    ///   left to forward it). The parent-death signal sent to the group
    ///   is forwarded the same way; it ends the child before `execve` only
    ///   when the parent is really gone. A child that dies before `execve`
    ///   all the same (SIGKILL from someone who found its pid in `/proc`,
    ///   a crashing `pre_exec` closure) fails the spawn: the child marks
    ///   its shared report just before its first `execve`, and the spawn
    ///   checks the mark. Left: a SIGKILL in the few instructions between
    ///   a failed `execve` and the child's report of it makes that spawn
    ///   look successful (the child is then already dead).
    /// - Change the environment (`std::env::set_var`): the child gets a
    ///   snapshot taken under std's environment lock, never the live
    ///   `environ`.
    /// - `fork()`: the copy spawns with arenas, a background reaper and a
    ///   spawner thread of its own, and leaves the parent's alone.
    /// - Close and reuse any fd number (`close_range(3, ~0)`, say): no fd is
    ///   kept from one spawn to the next; each spawn opens what it needs.
    /// - Write a script and run it while other threads spawn: an `execve`
    ///   failing with `ETXTBSY` (another thread's child still holding the
    ///   script's write fd for a moment) is retried for up to 127 ms.
    pub fn spawn(&self) -> Result<Child, SpawnError> {
        plan::spawn(self, None, None)
    }

    /// Spawns and waits for the child to end; stdio is as configured
    /// (inherited by default).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn), or an `io::Error` from waiting.
    pub fn status(&self) -> std::io::Result<crate::ExitStatus> {
        Ok(self.spawn()?.wait()?)
    }

    pub(crate) fn program_lossy(&self) -> String {
        self.program_os.to_string_lossy().into_owned()
    }

    fn check_env_name(&mut self, key: &OsStr) {
        if self.invalid.is_some() {
            return;
        }
        let b = key.as_bytes();
        if b.contains(&0) {
            self.invalid = Some(InvalidCommand::NulByte {
                what: format!("environment variable name {:?}", key.to_string_lossy()),
            });
        } else if b.is_empty() || b.contains(&b'=') {
            self.invalid = Some(InvalidCommand::EnvName {
                name: key.to_string_lossy().into_owned(),
            });
        }
    }
}

fn to_cstring(
    s: &OsStr,
    what: impl FnOnce() -> String,
    invalid: &mut Option<InvalidCommand>,
) -> CString {
    match CString::new(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => {
            if invalid.is_none() {
                *invalid = Some(InvalidCommand::NulByte { what: what() });
            }
            CString::default()
        }
    }
}

impl From<&std::process::Command> for Command {
    /// Copies program, arguments, environment changes and working directory.
    ///
    /// # Caveats
    ///
    /// `std` exposes no getter for `env_clear`, stdio or `pre_exec`, so
    /// those are not carried over.
    fn from(c: &std::process::Command) -> Command {
        let mut cmd = Command::new(c.get_program());
        cmd.args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(d) = c.get_current_dir() {
            cmd.current_dir(d);
        }
        cmd
    }
}
