//! A spawn, in the parent, as named steps: every allocation, lookup and fd
//! the child will use is made before the clone.
//!
//! 1. [`prepare`]: argv, a snapshot of the environment, `PATH` candidates;
//! 2. [`fds`]: the child's fds, made for this spawn;
//! 3. [`contain`]: its process group, session or fresh cgroup leaf;
//! 4. [`launch`]: the clone, down the fallback ladder;
//! 5. [`into_child`]: the [`Child`] handle.
//!
//! The child's side of the clone is [`crate::sys::child_exec`].

mod fds;
mod launch;
mod prepare;

use std::io;
use std::ptr;
use std::sync::PoisonError;

use super::Command;
use super::{CallerSignalMask, EnvSnapshot};
use crate::child::{Child, ChildStderr, ChildStdin, ChildStdout};
use crate::containment::cgroup::{self, Leaf};
use crate::containment::{Containment, Tree};
use crate::error::{SpawnError, SpawnStage};
use crate::sys::child_exec::{self, ChildPlan, GroupAction, PreExecHooks};
use crate::sys::clone::{self, Spawned};
use crate::sys::env;

/// Bad input, found before anything is created.
fn check_valid(cmd: &Command) -> Result<(), SpawnError> {
    let reason = cmd
        .invalid
        .clone()
        .or_else(|| cmd.setup.invalid(&cmd.containment));
    match reason {
        Some(reason) => Err(SpawnError::Invalid {
            program: cmd.program_lossy(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The closures for the child, or null if there are none (then the child
/// may share our memory).
fn hooks_ptr(hooks: &mut PreExecHooks) -> *mut PreExecHooks {
    if hooks.is_empty() {
        ptr::null_mut()
    } else {
        hooks
    }
}

/// `env`: the environment to inherit, else a copy taken now; `mask`: the
/// signal mask to hand on (with `inherit_signal_mask`), else this
/// thread's.
pub(super) fn spawn(
    cmd: &Command,
    env: Option<&EnvSnapshot>,
    mask: Option<CallerSignalMask>,
) -> Result<Child, SpawnError> {
    check_valid(cmd)?;
    // Held until the child has exec'd: the child runs its own copy.
    let mut hooks = cmd.pre_exec.lock().unwrap_or_else(PoisonError::into_inner);
    let exec = prepare::Exec::new(cmd, env);
    let use_close_range = env::close_range_cloexec();
    // With close_range (5.11+) the child shares our fd table (CLONE_FILES)
    // and unshares only the bottom of it, unless this spawn names an fd by
    // path (`/proc/self/fd/N` as the program or directory: the child needs
    // all of them until execve) or clone refused CLONE_FILES before.
    // A pre_exec closure may use any of our fds: the child copies them all.
    let share_files =
        use_close_range && clone::files_allowed() && !names_fd_by_path(cmd) && hooks.is_empty();
    let mut fds = fds::FdPlan::new(cmd, share_files)?;
    let contained = contain(cmd)?;
    let mut plan = child_plan(cmd, &exec, &mut fds, use_close_range, share_files);
    plan.caller_signal_mask = mask.map(|m| m.0);
    plan.group = contained.group;
    // Still in a group others signal until execve: no signal may stop or
    // kill the child before it (see `child_exec`).
    plan.catch_signals = matches!(contained.group, GroupAction::Inherit | GroupAction::Join(_));
    plan.pre_exec = hooks_ptr(&mut hooks);
    let spawned = launch::clone_with_fallbacks(cmd, &mut plan, &contained)?;
    Ok(into_child(cmd, spawned, fds, contained))
}

/// [`Command::exec`]: the spawn's preparation and `execve`, run in this
/// process (no clone, no fd sharing). Returns only on failure.
pub(super) fn exec_in_place(cmd: &Command) -> SpawnError {
    if let Err(e) = check_valid(cmd) {
        return e;
    }
    if matches!(cmd.containment, Containment::Cgroup(_)) {
        let why = "exec cannot move this process into a cgroup leaf that nobody would remove";
        return os_err(
            cmd,
            SpawnStage::Cgroup,
            io::Error::new(io::ErrorKind::Unsupported, why),
        );
    }
    let mut hooks = cmd.pre_exec.lock().unwrap_or_else(PoisonError::into_inner);
    let exec = prepare::Exec::new(cmd, None);
    let mut fds = match fds::FdPlan::new(cmd, false) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let contained = match contain(cmd) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut plan = child_plan(cmd, &exec, &mut fds, env::close_range_cloexec(), false);
    plan.group = contained.group;
    plan.pre_exec = hooks_ptr(&mut hooks);
    // The parent-death signal is relative to this process's own parent.
    plan.expected_ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let (stage, errno) = child_exec::exec_here(&mut plan);
    launch::failure(
        cmd,
        clone::Failure {
            stage: Some(stage),
            error: io::Error::from_raw_os_error(errno),
        },
    )
}

/// A spawn failure of `cmd` at `stage`.
pub(super) fn os_err(cmd: &Command, stage: SpawnStage, source: io::Error) -> SpawnError {
    SpawnError::Os {
        program: cmd.program_lossy(),
        stage,
        source,
    }
}

/// Step 3: how the child is contained; a fresh cgroup leaf is removed
/// again unless the spawn succeeds.
pub(super) struct Contained {
    group: GroupAction,
    leaf: Option<Leaf>,
}

impl Contained {
    fn leaf(&self) -> Option<&Leaf> {
        self.leaf.as_ref()
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        if let Some(l) = &self.leaf {
            l.try_remove();
        }
    }
}

fn contain(cmd: &Command) -> Result<Contained, SpawnError> {
    let group = match &cmd.containment {
        Containment::ProcessGroup | Containment::Cgroup(_) => GroupAction::NewGroup,
        Containment::Session => GroupAction::NewSession,
        Containment::Inherit => GroupAction::Inherit,
        Containment::JoinGroup(pgid) => GroupAction::Join(*pgid as i32),
    };
    let leaf = match &cmd.containment {
        Containment::Cgroup(parent) => {
            let dir =
                cgroup::resolve_parent(parent).map_err(|e| os_err(cmd, SpawnStage::Cgroup, e))?;
            Some(Leaf::create(&dir).map_err(|e| os_err(cmd, SpawnStage::Cgroup, e))?)
        }
        _ => None,
    };
    Ok(Contained { group, leaf })
}

/// Everything the child does, pointing into `exec` and `fds`.
fn child_plan<'a>(
    cmd: &'a Command,
    exec: &'a prepare::Exec,
    fds: &'a mut fds::FdPlan,
    use_close_range: bool,
    share_files: bool,
) -> ChildPlan<'a> {
    ChildPlan {
        cgroup_procs_fd: -1,
        unshare_fds_below: if share_files { fds.unshare_bound(2) } else { 0 },
        candidates: &exec.candidates,
        argv: exec.argv.as_ptr(),
        envp: exec.envp.as_ptr(),
        group: GroupAction::Inherit,
        fd_actions: &fds.actions,
        shuffle_min: fds.shuffle_min,
        shuffle_scratch: fds.scratch.as_mut_ptr(),
        stderr_to_stdout: fds.stderr_to_stdout,
        use_close_range,
        cloexec_fallback_max: if use_close_range {
            0
        } else {
            env::cloexec_fallback_bound()
        },
        reset_all_handlers: false,
        catch_signals: false,
        default_signals: cmd.default_signals,
        inherit_signal_mask: cmd.inherit_signal_mask,
        signal_mask: 0,
        caller_signal_mask: None,
        pdeathsig: cmd.pdeathsig.map_or(0, |s| s.as_raw()),
        expected_ppid: if cmd.pdeathsig.is_some() {
            env::getpid()
        } else {
            0
        },
        groups: cmd.groups.as_deref(),
        drop_groups: cmd.uid.is_some() && cmd.groups.is_none(),
        gid: cmd.gid,
        uid: cmd.uid,
        cwd: cmd.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        attributes: cmd.setup.attributes(),
        pre_exec: ptr::null_mut(),
        block: ptr::null(),
    }
}

/// Step 5: the child has exec'd; the fds made for it are closed and the
/// handle owns its pidfd, pipe ends and containment.
fn into_child(
    cmd: &Command,
    spawned: Spawned,
    fds: fds::FdPlan,
    mut contained: Contained,
) -> Child {
    let [p_in, p_out, p_err] = fds.finish();
    let tree = match (contained.leaf.take(), &cmd.containment) {
        (Some(leaf), _) => Tree::Cgroup(leaf),
        (None, Containment::Inherit | Containment::JoinGroup(_)) => Tree::Single,
        (None, _) => Tree::Group,
    };
    Child::new(
        spawned.pidfd,
        spawned.pid as u32,
        p_in.map(ChildStdin::from_fd),
        p_out.map(ChildStdout::from_fd),
        p_err.map(ChildStderr::from_fd),
        cmd.kill_on_drop,
        tree,
    )
}

/// Whether the program (any PATH candidate) or the working directory is
/// an fd of ours named by path, such as `/proc/self/fd/7` (`fexecve` of a
/// memfd): the child then needs our whole fd table until `execve`.
fn names_fd_by_path(cmd: &Command) -> bool {
    let is_fd_path = |p: &[u8]| {
        p.starts_with(b"/dev/fd/")
            || p.strip_prefix(b"/proc/").is_some_and(|rest| {
                rest.starts_with(b"self/fd/")
                    || rest.starts_with(b"thread-self/fd/")
                    || rest.starts_with(format!("{}/fd/", std::process::id()).as_bytes())
            })
    };
    is_fd_path(cmd.program.as_bytes()) || cmd.cwd.as_ref().is_some_and(|c| is_fd_path(c.as_bytes()))
}
