//! Preparing a spawn in the parent: every allocation, lookup and fd the
//! child will use is made here, before the clone.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::ptr;

use rustix::pipe::PipeFlags;

use super::Command;
use super::parking::{self, Parked};
use super::stdio::Kind;
use crate::child::{Child, ChildStderr, ChildStdin, ChildStdout};
use crate::containment::cgroup::{self, Leaf};
use crate::containment::{Containment, Tree};
use crate::error::{SpawnError, SpawnStage};
use crate::sys::child_exec::{ChildPlan, FdAction, GroupAction, Stage};
use crate::sys::clone::{self, CloneOptions};
use crate::sys::env;

/// `PATH` when none is set, as glibc's execvp.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

pub(super) fn spawn(cmd: &Command) -> Result<Child, SpawnError> {
    let program = || cmd.program_lossy();
    if let Some(reason) = &cmd.invalid {
        return Err(SpawnError::Invalid {
            program: program(),
            reason: reason.clone(),
        });
    }
    let os_err = |stage, source| SpawnError::Os {
        program: program(),
        stage,
        source,
    };

    // argv and envp.
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(cmd.args.len() + 1);
    argv.extend(cmd.args.iter().map(|a| a.as_ptr()));
    argv.push(ptr::null());
    let env_strings = build_env(cmd);
    let envp_vec: Option<Vec<*const libc::c_char>> = env_strings.as_ref().map(|v| {
        let mut p: Vec<_> = v.iter().map(|s| s.as_ptr()).collect();
        p.push(ptr::null());
        p
    });
    let envp = match &envp_vec {
        Some(v) => v.as_ptr(),
        None => env::environ(),
    };

    // PATH candidates.
    let candidates = candidates(cmd);
    let candidate_ptrs: Vec<*const libc::c_char> = candidates.iter().map(|c| c.as_ptr()).collect();

    // Stdio: parent ends kept, child ends closed once the child has exec'd.
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let mut actions: Vec<FdAction> = Vec::with_capacity(3 + cmd.fds.len());
    // With close_range (5.11+) the child shares our fd table (CLONE_FILES)
    // and unshares only the bottom of it, unless this spawn names an fd by
    // path (`/proc/self/fd/N` as the program or directory: the child needs
    // all of them until execve) or clone refused CLONE_FILES before. Then
    // sources above parking::LOW are duplicated into low slots, so that the
    // bottom it copies holds every fd it uses (see `parking`).
    let use_close_range = env::close_range_cloexec();
    let share_files = use_close_range && clone::files_allowed() && !names_fd_by_path(cmd);
    let mut parked = Parked::new(share_files);
    let (mut p_in, mut p_out, mut p_err) = (None, None, None);
    let mut stderr_to_stdout = false;
    for (n, s) in [(0, &cmd.stdin), (1, &cmd.stdout), (2, &cmd.stderr)] {
        match &s.0 {
            Kind::Inherit => {}
            Kind::Null => {
                let null = parking::null().map_err(|e| os_err(SpawnStage::Pipe, e.into()))?;
                let src = parked.park(null);
                actions.push(FdAction { src, dst: n });
            }
            Kind::Piped => {
                let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
                    .map_err(|e| os_err(SpawnStage::Pipe, e.into()))?;
                let (mine, theirs) = if n == 0 { (w, r) } else { (r, w) };
                actions.push(FdAction {
                    src: parked.park(theirs.as_fd()),
                    dst: n,
                });
                child_ends.push(theirs);
                match n {
                    0 => p_in = Some(mine),
                    1 => p_out = Some(mine),
                    _ => p_err = Some(mine),
                }
            }
            Kind::Fd(fd) => actions.push(FdAction {
                src: parked.park(fd.as_fd()),
                dst: n,
            }),
            Kind::SameAsStdout => {
                if n != 2 {
                    return Err(SpawnError::Invalid {
                        program: program(),
                        reason: crate::error::InvalidCommand::SameAsStdout,
                    });
                }
                stderr_to_stdout = true;
            }
        }
    }
    for (dst, fd) in &cmd.fds {
        actions.push(FdAction {
            src: parked.park(fd.as_fd()),
            dst: *dst,
        });
    }
    // If some source fd is also some other action's target, dup2 in order
    // could overwrite it before use: then the child first moves every
    // source above all targets.
    let conflict = actions.iter().enumerate().any(|(i, a)| {
        actions
            .iter()
            .enumerate()
            .any(|(j, b)| i != j && a.src == b.dst)
    });
    let shuffle_min = conflict.then(|| actions.iter().map(|a| a.dst).max().unwrap_or(2).max(2) + 1);
    let mut scratch = vec![-1i32; if conflict { actions.len() } else { 0 }];

    // Containment: the child's group or session, or a fresh cgroup leaf
    // (removed again if the spawn fails).
    let (group, leaf) = match &cmd.containment {
        Containment::ProcessGroup => (GroupAction::NewGroup, None),
        Containment::Session => (GroupAction::NewSession, None),
        Containment::Inherit => (GroupAction::Inherit, None),
        Containment::Cgroup(parent) => {
            let dir = cgroup::resolve_parent(parent).map_err(|e| os_err(SpawnStage::Cgroup, e))?;
            let leaf = Leaf::create(&dir).map_err(|e| os_err(SpawnStage::Cgroup, e))?;
            (GroupAction::NewGroup, Some(RemoveOnError(Some(leaf))))
        }
    };
    let leaf_ref = leaf.as_ref().and_then(|l| l.0.as_ref());
    // Without CLONE_INTO_CGROUP (the legacy clone, kernels 5.5 and 5.6) the
    // child joins by writing to cgroup.procs.
    let into_cgroup = clone::into_cgroup_allowed();
    let procs_fd = match leaf_ref {
        Some(l) if !into_cgroup => Some(l.open_procs().map_err(|e| os_err(SpawnStage::Cgroup, e))?),
        _ => None,
    };
    let procs_raw = procs_fd.as_ref().map_or(-1, |f| f.as_raw_fd());
    // The child unshares the fds below this bound: every fd it uses.
    let unshare_fds_below = if share_files {
        actions
            .iter()
            .flat_map(|a| [a.src, a.dst])
            .chain([2, procs_raw])
            .max()
            .unwrap_or(2)
            .checked_add(1)
            .unwrap_or(0)
    } else {
        0
    };
    let mut plan = ChildPlan {
        cgroup_procs_fd: procs_raw,
        unshare_fds_below,
        candidates: &candidate_ptrs,
        argv: argv.as_ptr(),
        envp,
        group,
        fd_actions: &actions,
        shuffle_min,
        shuffle_scratch: scratch.as_mut_ptr(),
        stderr_to_stdout,
        use_close_range,
        cloexec_fallback_max: if use_close_range {
            0
        } else {
            env::cloexec_fallback_bound()
        },
        reset_all_handlers: false,
        default_signals: cmd.default_signals,
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
        block: ptr::null(),
    };
    let mut procs_fd = procs_fd;
    let mut opts = CloneOptions {
        cgroup: leaf_ref.filter(|_| into_cgroup).map(|l| l.dir_fd()),
        share_memory: cmd.uid.is_none() && cmd.gid.is_none() && cmd.groups.is_none(),
    };
    // Until the pid is registered as owned, an orphan reaper must not run.
    let gate = crate::reaper::spawn_gate();
    // A parent-death signal fires when the spawning *thread* exits: spawn
    // from a thread that lives as long as the process.
    let on_spawner = cmd.pdeathsig.is_some() && !crate::sys::spawner::on_main_thread();
    let run = |plan: &mut ChildPlan<'_>, opts: &CloneOptions<'_>| {
        if on_spawner {
            crate::sys::spawner::run_on_spawner(|| clone::spawn(plan, opts))
        } else {
            clone::spawn(plan, opts)
        }
    };
    let mut result = run(&mut plan, &opts);
    let einval = |r: &Result<_, clone::Failure>| matches!(r, Err(f) if f.stage.is_none() && f.error.raw_os_error() == Some(libc::EINVAL));
    // An emulator (qemu-user, say) that refuses CLONE_FILES: retry without
    // it, and if that works never use it again in this process.
    if einval(&result) && plan.unshare_fds_below > 0 {
        plan.unshare_fds_below = 0;
        result = run(&mut plan, &opts);
        if result.is_ok() {
            clone::disable_files();
        }
    }
    // Kernels 5.5 and 5.6: clone3 without CLONE_INTO_CGROUP. The child
    // joins its cgroup itself; if that works, so do all later spawns.
    if einval(&result) && opts.cgroup.is_some() {
        if let Some(l) = leaf_ref {
            let fd = l.open_procs().map_err(|e| os_err(SpawnStage::Cgroup, e))?;
            plan.cgroup_procs_fd = fd.as_raw_fd();
            if plan.unshare_fds_below > 0 {
                plan.unshare_fds_below = plan.unshare_fds_below.max(fd.as_raw_fd() + 1);
            }
            procs_fd = Some(fd);
        }
        opts.cgroup = None;
        result = run(&mut plan, &opts);
        if result.is_ok() {
            clone::disable_into_cgroup();
        }
    }
    // A kernel with clone3 but without our flags: retry once with the
    // legacy clone (the child then joins its cgroup through cgroup.procs).
    if einval(&result) && clone::downgrade_after_einval() {
        // The legacy method keeps to the classic flags (no CLONE_FILES).
        plan.unshare_fds_below = 0;
        if let (Some(l), None) = (leaf_ref, &procs_fd) {
            let fd = l.open_procs().map_err(|e| os_err(SpawnStage::Cgroup, e))?;
            plan.cgroup_procs_fd = fd.as_raw_fd();
            procs_fd = Some(fd);
        }
        result = run(&mut plan, &opts);
    }
    drop(procs_fd);
    if let Ok(s) = &result {
        crate::reaper::register(s.pid as u32);
    }
    drop(gate);
    let spawned = result.map_err(|f| {
        let stage = match f.stage {
            None => SpawnStage::Clone,
            Some(Stage::ProcessGroup) => SpawnStage::ProcessGroup,
            Some(Stage::Fds) => SpawnStage::Fds,
            Some(Stage::Signals) => SpawnStage::Signals,
            Some(Stage::ParentDeath) => SpawnStage::ParentDeath,
            Some(Stage::Credentials) => SpawnStage::Credentials,
            Some(Stage::Chdir) => SpawnStage::Chdir,
            Some(Stage::Exec) => SpawnStage::Exec,
            Some(Stage::Cgroup) => SpawnStage::Cgroup,
        };
        os_err(stage, f.error)
    })?;
    // The child has exec'd: our slots and its pipe ends can go.
    drop(parked);
    drop(child_ends);
    let tree = match (&cmd.containment, leaf) {
        (_, Some(mut l)) => Tree::Cgroup(l.0.take().expect("leaf present")),
        (Containment::Inherit, None) => Tree::Single,
        (_, None) => Tree::Group,
    };
    Ok(Child::new(
        spawned.pidfd,
        spawned.pid as u32,
        p_in.map(ChildStdin::from_fd),
        p_out.map(ChildStdout::from_fd),
        p_err.map(ChildStderr::from_fd),
        cmd.kill_on_drop,
        tree,
    ))
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

/// A new cgroup leaf that is removed unless taken (spawn succeeded).
struct RemoveOnError(Option<Leaf>);

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(l) = &self.0 {
            l.try_remove();
        }
    }
}

/// The child's environment as `KEY=VALUE` strings, or `None` to pass the
/// parent's `environ` unchanged.
fn build_env(cmd: &Command) -> Option<Vec<CString>> {
    if !cmd.env.clear && cmd.env.vars.is_empty() {
        return None;
    }
    let mut merged: std::collections::BTreeMap<OsString, OsString> = if cmd.env.clear {
        Default::default()
    } else {
        std::env::vars_os().collect()
    };
    for (k, v) in &cmd.env.vars {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    Some(
        merged
            .into_iter()
            .filter_map(|(k, v)| {
                let mut b = k.into_vec();
                b.push(b'=');
                b.extend_from_slice(v.as_bytes());
                // Inherited entries cannot hold NULs; ours were checked.
                CString::new(b).ok()
            })
            .collect(),
    )
}

/// The paths `execve` tries, in order: the program itself if it contains
/// a `/`, else each `PATH` entry joined with it (an empty entry is the
/// current directory). The `PATH` is the child's if the command sets it.
fn candidates(cmd: &Command) -> Vec<CString> {
    let prog = cmd.program.as_bytes();
    if prog.contains(&b'/') {
        return vec![cmd.program.clone()];
    }
    let from_cmd = cmd.env.vars.get(OsStr::new("PATH"));
    let path: Vec<u8> = match from_cmd {
        Some(Some(p)) => p.as_bytes().to_vec(),
        Some(None) => DEFAULT_PATH.to_vec(),
        None if cmd.env.clear => DEFAULT_PATH.to_vec(),
        None => std::env::var_os("PATH").map_or_else(|| DEFAULT_PATH.to_vec(), |p| p.into_vec()),
    };
    path.split(|&b| b == b':')
        .filter_map(|dir| {
            let mut full = Vec::with_capacity(dir.len() + 1 + prog.len());
            if dir.is_empty() {
                full.extend_from_slice(b"./");
            } else {
                full.extend_from_slice(dir);
                full.push(b'/');
            }
            full.extend_from_slice(prog);
            CString::new(full).ok()
        })
        .collect()
}
