//! Process attributes the child sets for itself between `clone` and
//! `execve`, without allocating: the safe builder options for what people
//! otherwise write a `pre_exec` closure for; then `pre_exec` itself and
//! `exec`.

use std::io;

use super::Command;
use crate::containment::Containment;
use crate::error::{InvalidCommand, SpawnError};
use crate::sys::child_exec::Attributes;

/// A resource limit of [`Command::rlimit`] (`RLIMIT_*`, see
/// [getrlimit(2)](https://man7.org/linux/man-pages/man2/getrlimit.2.html)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// `RLIMIT_AS`: address space, bytes.
    AddressSpace,
    /// `RLIMIT_CORE`: core dump size, bytes.
    Core,
    /// `RLIMIT_CPU`: CPU time, seconds (SIGXCPU, then SIGKILL).
    Cpu,
    /// `RLIMIT_DATA`: data segment, bytes.
    Data,
    /// `RLIMIT_FSIZE`: largest file it may write, bytes (SIGXFSZ).
    FileSize,
    /// `RLIMIT_MEMLOCK`: locked memory, bytes.
    MemLock,
    /// `RLIMIT_NICE`: ceiling of the nice value it may raise itself to.
    Nice,
    /// `RLIMIT_NOFILE`: one more than the highest fd number it may open.
    OpenFiles,
    /// `RLIMIT_NPROC`: processes of its real user.
    Processes,
    /// `RLIMIT_RTPRIO`: ceiling of its real-time priority.
    RealtimePriority,
    /// `RLIMIT_STACK`: main thread's stack, bytes.
    Stack,
}

impl Resource {
    fn raw(self) -> u32 {
        match self {
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::MemLock => libc::RLIMIT_MEMLOCK,
            Resource::Nice => libc::RLIMIT_NICE,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::Processes => libc::RLIMIT_NPROC,
            Resource::RealtimePriority => libc::RLIMIT_RTPRIO,
            Resource::Stack => libc::RLIMIT_STACK,
        }
    }
}

/// The builder's process attributes (see [`Attributes`]).
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub rlimits: Vec<(u32, [u64; 2])>,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub no_new_privs: bool,
    pub controlling_tty: bool,
}

impl Setup {
    /// What the child sets, pointing into `self`.
    pub(crate) fn attributes(&self) -> Attributes<'_> {
        Attributes {
            rlimits: &self.rlimits,
            umask: self.umask.map_or(-1, |m| m as i32),
            nice: self.nice,
            no_new_privs: self.no_new_privs,
            controlling_tty: self.controlling_tty,
        }
    }

    /// Checked before anything is created.
    pub(crate) fn invalid(&self, containment: &Containment) -> Option<InvalidCommand> {
        (self.controlling_tty && *containment != Containment::Session)
            .then_some(InvalidCommand::ControllingTerminal)
    }
}

impl Command {
    /// Sets a resource limit of the child: `prlimit64(0, resource, {soft,
    /// hard})` in the child before `execve`; `u64::MAX` is unlimited
    /// (`RLIM_INFINITY`). Raising a hard limit needs `CAP_SYS_RESOURCE`; it
    /// is set before a uid change, so the privileges of the parent apply.
    ///
    /// ```
    /// use childfd::{Command, Resource};
    ///
    /// let out = Command::new("sh").args(["-c", "ulimit -n"]).rlimit(Resource::OpenFiles, 64, 64).output()?;
    /// assert_eq!(out.stdout, b"64\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// A limit the kernel refuses (soft above hard, a raise without the
    /// privilege) fails the spawn at
    /// [`SpawnStage::Attributes`](crate::SpawnStage::Attributes).
    pub fn rlimit(&mut self, resource: Resource, soft: u64, hard: u64) -> &mut Command {
        let raw = resource.raw();
        self.setup.rlimits.retain(|(r, _)| *r != raw);
        self.setup.rlimits.push((raw, [soft, hard]));
        self
    }

    /// Sets the child's file mode creation mask (`umask(2)`), for example
    /// `0o027`.
    pub fn umask(&mut self, mask: u32) -> &mut Command {
        self.setup.umask = Some(mask & 0o777);
        self
    }

    /// Sets the child's nice value, from -20 (favoured) to 19
    /// (`setpriority(PRIO_PROCESS, 0, nice)`). Lowering it below the
    /// parent's needs `CAP_SYS_NICE` (or `RLIMIT_NICE`).
    pub fn nice(&mut self, nice: i32) -> &mut Command {
        self.setup.nice = Some(nice.clamp(-20, 19));
        self
    }

    /// Sets `no_new_privs` in the child (`prctl(PR_SET_NO_NEW_PRIVS)`):
    /// neither it nor its descendants can gain privileges through `execve`
    /// (set-user-ID programs, file capabilities). It cannot be unset.
    pub fn no_new_privs(&mut self, yes: bool) -> &mut Command {
        self.setup.no_new_privs = yes;
        self
    }

    /// Makes the child lead a new session (`setsid()`, as
    /// [`Containment::Session`]) and, with `controlling_terminal`, take
    /// its stdin, which must be a terminal, as the session's controlling
    /// terminal (`ioctl(0, TIOCSCTTY, 0)`): what a terminal emulator or an
    /// `ssh` server does for the shell it starts.
    ///
    /// # Caveats
    ///
    /// A terminal that is already another session's controlling terminal
    /// is refused (`EPERM`) unless the caller has `CAP_SYS_ADMIN`; the
    /// spawn then fails at
    /// [`SpawnStage::Attributes`](crate::SpawnStage::Attributes).
    pub fn setsid(&mut self, controlling_terminal: bool) -> &mut Command {
        self.containment(Containment::Session);
        self.setup.controlling_tty = controlling_terminal;
        self
    }

    /// Runs `f` in the child after every other step (fds, signals,
    /// attributes, credentials, working directory) and before `execve`, as
    /// std's `CommandExt::pre_exec`. An `Err` fails the spawn at
    /// [`SpawnStage::PreExec`](crate::SpawnStage::PreExec) with its OS
    /// error (`EINVAL` if it has none); a panic fails it with
    /// `ENOTRECOVERABLE`. Closures run in the order they were added.
    ///
    /// A command with a `pre_exec` closure is spawned with a fork-style
    /// clone (without `CLONE_VM`), as std does: the child runs on a copy of
    /// the parent's memory, so the closure cannot corrupt the parent. That
    /// copy is what costs: the spawn then grows with the parent's memory
    /// (about 28 ms per GiB resident on the reference machine, against a
    /// flat ~0.1 ms without it). Prefer the builder options ([`rlimit`],
    /// [`umask`], [`nice`], [`no_new_privs`], [`setsid`]), which run in
    /// the fast path.
    ///
    /// The closure sees the signal dispositions the program will get,
    /// except in [`Containment::Inherit`] and [`Containment::JoinGroup`]:
    /// there the child is still in a group others signal, so until
    /// `execve` every catchable signal the parent does not ignore has a
    /// handler that does nothing (a SIGTSTP or SIGINT to the group must
    /// not stop or kill it first); `execve` resets those to `SIG_DFL`. In
    /// every mode a disposition the closure sets wins (`SIG_IGN` survives
    /// `execve`, a handler becomes `SIG_DFL`).
    ///
    /// [`rlimit`]: Command::rlimit
    /// [`umask`]: Command::umask
    /// [`nice`]: Command::nice
    /// [`no_new_privs`]: Command::no_new_privs
    /// [`setsid`]: Command::setsid
    ///
    /// # Safety
    ///
    /// As for std's `pre_exec`: the closure runs in a copy of a possibly
    /// multi-threaded process in which only the spawning thread exists. It
    /// must only do what is async-signal-safe: no allocation, no locks
    /// (another thread may have held one at the clone, and it will never
    /// be released in the child), no I/O through std's buffered handles.
    /// Raw system calls (`libc`) on its own state are fine.
    // Unsafe by contract, as std's; the body itself has no unsafe code.
    #[allow(unsafe_code)]
    pub unsafe fn pre_exec(
        &mut self,
        f: impl FnMut() -> io::Result<()> + Send + Sync + 'static,
    ) -> &mut Command {
        self.pre_exec
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(f));
        self
    }

    /// Whether [`pre_exec`](Command::pre_exec) closures are set: such a
    /// spawn may take as long as they do (for childfd-tokio's spawner,
    /// which never holds other replies across one). Not a stable API.
    #[doc(hidden)]
    pub fn has_pre_exec(&self) -> bool {
        !self
            .pre_exec
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// Replaces the current process with the command, as std's
    /// `CommandExt::exec`: the same preparation as a spawn (fds, process
    /// group or session, signals, attributes, credentials, working
    /// directory, `pre_exec` closures), then `execve`, all in this
    /// process. Returns only on failure. By default the process leads a
    /// new process group, as a spawned child would; use
    /// [`Containment::Inherit`] to keep the current one.
    ///
    /// ```no_run
    /// use childfd::{Command, Containment};
    ///
    /// // A wrapper that ends by becoming the real program.
    /// let err = Command::new("sleep").arg("60").containment(Containment::Inherit).umask(0o077).exec();
    /// eprintln!("could not exec: {err}");
    /// ```
    ///
    /// # Caveats
    ///
    /// A failure after some steps leaves those steps done (fds moved,
    /// signal dispositions reset, group changed), as with std. Cgroup
    /// containment is refused (`Unsupported`): nobody would remove the
    /// leaf afterwards. Other threads keep running until `execve`
    /// succeeds. This process's own signal handlers stay in force until
    /// `execve` (a spawned child that stays in the caller's group swallows
    /// every signal until then): a signal to it before the exec is its own.
    pub fn exec(&mut self) -> SpawnError {
        super::plan::exec_in_place(self)
    }
}
