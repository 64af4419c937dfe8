//! Step 4 of a spawn: the clone, with the fallbacks a kernel, an emulator
//! or a seccomp profile may need, each tried once and then kept for the
//! process (see [`crate::sys::clone`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::{Contained, os_err};
use crate::command::Command;
use crate::error::{SpawnError, SpawnStage};
use crate::sys::child_exec::{ChildPlan, Stage};
use crate::sys::clone::{self, CloneOptions, Failure, Spawned};

/// Creates the child (on the long-lived spawner thread if it has a
/// parent-death signal), retrying down the fallback ladder; registers its
/// pid with the orphan reaper before that may run again.
pub(super) fn clone_with_fallbacks(
    cmd: &Command,
    plan: &mut ChildPlan<'_>,
    contained: &Contained,
) -> Result<Spawned, SpawnError> {
    let leaf = contained.leaf();
    // Without CLONE_INTO_CGROUP (the legacy clone, kernels 5.5 and 5.6) the
    // child joins by writing to cgroup.procs.
    let mut procs: Option<OwnedFd> = None;
    let mut opts = CloneOptions {
        cgroup: None,
        // A credential change would mark the parent non-dumpable; pre_exec
        // closures must not run in the parent's memory.
        share_memory: cmd.uid.is_none()
            && cmd.gid.is_none()
            && cmd.groups.is_none()
            && plan.pre_exec.is_null(),
    };
    if let Some(l) = leaf {
        if clone::into_cgroup_allowed() {
            opts.cgroup = Some(l.dir_fd());
        } else {
            join_by_procs(cmd, plan, &mut procs, contained)?;
        }
    }
    // Until the pid is registered as owned, an orphan reaper must not run.
    let gate = crate::reaper::spawn_gate();
    // A parent-death signal fires when the spawning *thread* exits: spawn
    // from a thread that lives as long as the process.
    let on_spawner = cmd.pdeathsig.is_some() && !crate::sys::spawner::on_main_thread();
    let run = |plan: &mut ChildPlan<'_>, opts: &CloneOptions<'_>| {
        if on_spawner {
            // No thread for it (a process limit): the clone's failure.
            crate::sys::spawner::run_on_spawner(|| clone::spawn(plan, opts))
                .unwrap_or_else(|error| Err(clone::Failure { stage: None, error }))
        } else {
            clone::spawn(plan, opts)
        }
    };
    let mut result = run(plan, &opts);
    // An emulator (qemu-user, say) that refuses CLONE_FILES: retry without
    // it, and if that works never use it again in this process.
    if einval(&result) && plan.unshare_fds_below > 0 {
        plan.unshare_fds_below = 0;
        result = run(plan, &opts);
        if cloned(&result) {
            clone::disable_files();
        }
    }
    // Kernels 5.5 and 5.6: clone3 without CLONE_INTO_CGROUP. The child
    // joins its cgroup itself; if that works, so do all later spawns.
    if einval(&result) && opts.cgroup.is_some() {
        join_by_procs(cmd, plan, &mut procs, contained)?;
        opts.cgroup = None;
        result = run(plan, &opts);
        if cloned(&result) {
            clone::disable_into_cgroup();
        }
    }
    // A kernel with clone3 but without our flags: retry once with the
    // legacy clone (the child then joins its cgroup through cgroup.procs).
    if einval(&result) && clone::downgrade_after_einval() {
        // The legacy method keeps to the classic flags (no CLONE_FILES).
        plan.unshare_fds_below = 0;
        if leaf.is_some() && procs.is_none() {
            join_by_procs(cmd, plan, &mut procs, contained)?;
        }
        result = run(plan, &opts);
    }
    // The legacy clone refused CLONE_PIDFD too (seccomp, valgrind): clone
    // without it and open the pidfd afterwards.
    if let Err(f) = &result {
        if f.stage.is_none() && clone::try_pidfd_open_after(&f.error) {
            result = run(plan, &opts);
            clone::keep_pidfd_open(cloned(&result));
        }
    }
    drop(procs);
    if let Ok(s) = &result {
        crate::reaper::register(s.pid as u32);
    }
    drop(gate);
    result.map_err(|f| failure(cmd, f))
}

/// Whether the clone itself worked (the child may still have failed
/// before `execve`, a missing program say): what decides a fallback.
fn cloned(r: &Result<Spawned, Failure>) -> bool {
    !matches!(r, Err(f) if f.stage.is_none())
}

fn einval(r: &Result<Spawned, Failure>) -> bool {
    matches!(r, Err(f) if f.stage.is_none() && f.error.raw_os_error() == Some(libc::EINVAL))
}

/// Opens the leaf's `cgroup.procs` for the child to join through.
fn join_by_procs(
    cmd: &Command,
    plan: &mut ChildPlan<'_>,
    procs: &mut Option<OwnedFd>,
    contained: &Contained,
) -> Result<(), SpawnError> {
    let Some(l) = contained.leaf() else {
        return Ok(());
    };
    let fd = l
        .open_procs()
        .map_err(|e| os_err(cmd, SpawnStage::Cgroup, e))?;
    plan.cgroup_procs_fd = fd.as_raw_fd();
    if plan.unshare_fds_below > 0 {
        plan.unshare_fds_below = plan.unshare_fds_below.max(fd.as_raw_fd() + 1);
    }
    *procs = Some(fd);
    Ok(())
}

/// The error for a failed clone or a child that failed before `execve`.
pub(super) fn failure(cmd: &Command, f: Failure) -> SpawnError {
    let stage = match f.stage {
        None => SpawnStage::Clone,
        Some(Stage::ProcessGroup) => SpawnStage::ProcessGroup,
        Some(Stage::Fds) => SpawnStage::Fds,
        Some(Stage::Signals) => SpawnStage::Signals,
        Some(Stage::ParentDeath) => SpawnStage::ParentDeath,
        Some(Stage::Credentials) => SpawnStage::Credentials,
        Some(Stage::Chdir) => {
            return SpawnError::Chdir {
                program: cmd.program_lossy(),
                dir: cmd.cwd.as_ref().map_or_else(Default::default, |c| {
                    std::ffi::OsStr::from_bytes(c.as_bytes()).into()
                }),
                source: f.error,
            };
        }
        Some(Stage::Exec) => SpawnStage::Exec,
        Some(Stage::Cgroup) => SpawnStage::Cgroup,
        Some(Stage::Attributes) => SpawnStage::Attributes,
        Some(Stage::PreExec) => SpawnStage::PreExec,
    };
    os_err(cmd, stage, f.error)
}
