//! The parts of [`Command`] that exist for parity with
//! `std::process::Command`: `output`, the getters, `process_group`, and a
//! `Debug` that reads like a command line.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Command, Stdio};
use crate::Output;
use crate::containment::Containment;
use crate::error::InvalidCommand;

impl Command {
    /// Runs the command to completion and collects its output, as std's
    /// `output`: stdout and stderr are piped and read both at once, stdin
    /// is `/dev/null`, unless [`stdin`](Command::stdin),
    /// [`stdout`](Command::stdout) or [`stderr`](Command::stderr) was set
    /// explicitly (a piped stdin is closed at once). The command's own
    /// settings are unchanged afterwards.
    ///
    /// ```
    /// use childfd::Command;
    ///
    /// let out = Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).output()?;
    /// assert_eq!(out.status.code(), Some(3));
    /// assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn) (converted to `io::Error`), or reading
    /// or waiting failed.
    ///
    /// # Caveats
    ///
    /// As with std, a descendant that inherited the pipes keeps this
    /// waiting until it closes them; `childfd_io`'s `output_with` bounds
    /// that.
    pub fn output(&mut self) -> io::Result<Output> {
        let defaults = [Stdio::null, Stdio::piped, Stdio::piped];
        for (n, default) in defaults.into_iter().enumerate() {
            if !self.stdio_set[n] {
                *self.stdio_mut(n) = default();
            }
        }
        let spawned = self.spawn();
        for n in 0..3 {
            if !self.stdio_set[n] {
                *self.stdio_mut(n) = Stdio::inherit();
            }
        }
        spawned?.wait_with_output()
    }

    fn stdio_mut(&mut self, n: usize) -> &mut Stdio {
        match n {
            0 => &mut self.stdin,
            1 => &mut self.stdout,
            _ => &mut self.stderr,
        }
    }

    /// The environment changes made with [`env`](Command::env) (`Some`)
    /// and [`env_remove`](Command::env_remove) (`None`), by name. After
    /// [`env_clear`](Command::env_clear), only the variables set since.
    ///
    /// ```
    /// use childfd::Command;
    /// use std::ffi::OsStr;
    ///
    /// let mut cmd = Command::new("make");
    /// cmd.env("CC", "clang").env_remove("CFLAGS");
    /// let envs: Vec<_> = cmd.get_envs().collect();
    /// assert_eq!(envs, [(OsStr::new("CC"), Some(OsStr::new("clang"))), (OsStr::new("CFLAGS"), None)]);
    /// ```
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env
            .vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// The working directory set with [`current_dir`](Command::current_dir).
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd
            .as_ref()
            .map(|c| Path::new(OsStr::from_bytes(c.as_bytes())))
    }

    /// std's `process_group`: `0` makes the child lead a new process group
    /// (the default containment, [`Containment::ProcessGroup`]); another
    /// number makes it join that existing group
    /// ([`Containment::JoinGroup`]).
    ///
    /// ```
    /// use childfd::Command;
    ///
    /// let leader = Command::new("sleep").arg("60").process_group(0).spawn()?;
    /// let member = Command::new("sleep").arg("60").process_group(leader.id() as i32).spawn()?;
    /// leader.kill_tree()?; // the whole group: the member too
    /// assert!(member.wait()?.signal().is_some());
    /// # leader.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A negative number is reported by [`spawn`](Command::spawn) as
    /// invalid input.
    pub fn process_group(&mut self, pgroup: i32) -> &mut Command {
        match u32::try_from(pgroup) {
            Ok(0) => self.containment(Containment::ProcessGroup),
            Ok(pgid) => self.containment(Containment::JoinGroup(pgid)),
            Err(_) => {
                if self.invalid.is_none() {
                    self.invalid = Some(InvalidCommand::ProcessGroup { pgid: pgroup });
                }
                self
            }
        }
    }
}

impl fmt::Debug for Command {
    /// Like std's: a shell-like command line, with the working directory
    /// and environment changes in front (`cd "/src" && env -u X CC="clang"
    /// "make" "-j8"`). `{:#?}` shows the fields instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Command")
                .field("program", &self.program_os)
                .field("args", &self.get_args().collect::<Vec<_>>())
                .field("env", &self.env)
                .field("cwd", &self.get_current_dir())
                .field("stdin", &self.stdin)
                .field("stdout", &self.stdout)
                .field("stderr", &self.stderr)
                .field("containment", &self.containment)
                .finish_non_exhaustive();
        }
        if let Some(dir) = self.get_current_dir() {
            write!(f, "cd {:?} && ", dir.as_os_str())?;
        }
        if self.env.clear {
            f.write_str("env -i ")?;
        } else {
            let mut removed = self.get_envs().filter(|(_, v)| v.is_none()).peekable();
            if removed.peek().is_some() {
                f.write_str("env ")?;
            }
            for (k, _) in removed {
                write!(f, "-u {} ", k.to_string_lossy())?;
            }
        }
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                write!(f, "{}={v:?} ", k.to_string_lossy())?;
            }
        }
        let arg0 = OsStr::from_bytes(self.args[0].as_bytes());
        if arg0 != self.program_os {
            write!(f, "[{:?}] ", self.program_os)?;
        }
        write!(f, "{arg0:?}")?;
        for a in self.get_args() {
            write!(f, " {a:?}")?;
        }
        Ok(())
    }
}
