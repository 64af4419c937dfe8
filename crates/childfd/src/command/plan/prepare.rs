//! Step 1 of a spawn: argv, the environment and the `PATH` candidates, as
//! the NUL-terminated strings and NULL-terminated arrays `execve` takes.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use crate::command::Command;

/// `PATH` when none is set, as glibc's execvp.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// What `execve` gets. The pointers point into the owned buffers, which
/// are never changed after construction.
pub(super) struct Exec {
    pub argv: Vec<*const libc::c_char>,
    /// `KEY=VALUE\0` strings back to back; `envp` points into it.
    _env: Vec<u8>,
    pub envp: Vec<*const libc::c_char>,
    _candidates: Vec<CString>,
    pub candidates: Vec<*const libc::c_char>,
}

impl Exec {
    pub(super) fn new(cmd: &Command) -> Exec {
        let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(cmd.args.len() + 1);
        argv.extend(cmd.args.iter().map(|a| a.as_ptr()));
        argv.push(ptr::null());
        let vars = environment(cmd);
        let candidates = candidates(cmd, &vars);
        let (env, envp) = env_block(&vars);
        Exec {
            argv,
            _env: env,
            envp,
            candidates: candidates.iter().map(|c| c.as_ptr()).collect(),
            _candidates: candidates,
        }
    }
}

/// The child's environment: a snapshot of ours with the command's changes.
///
/// The snapshot comes from [`std::env::vars_os`], which copies `environ`
/// under std's environment lock: the live array may be freed at any moment
/// by another thread's `std::env::set_var`, so the child never reads it.
fn environment(cmd: &Command) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = if cmd.env.clear {
        Vec::new()
    } else {
        std::env::vars_os().collect()
    };
    if cmd.env.vars.is_empty() {
        return vars;
    }
    // Later entries of the same name win, as the removals and sets do.
    let mut merged: BTreeMap<OsString, OsString> = vars.drain(..).collect();
    for (k, v) in &cmd.env.vars {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    merged.into_iter().collect()
}

/// `KEY=VALUE\0` strings in one buffer, and the NULL-terminated array of
/// pointers to them. Inherited entries cannot hold NULs; ours were checked.
fn env_block(vars: &[(OsString, OsString)]) -> (Vec<u8>, Vec<*const libc::c_char>) {
    let len = vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut starts = Vec::with_capacity(vars.len());
    for (k, v) in vars {
        starts.push(buf.len());
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
        buf.push(0);
    }
    let mut envp: Vec<*const libc::c_char> = starts
        .iter()
        // Inside the buffer, which is never reallocated after this point.
        .map(|&s| buf.as_ptr().wrapping_add(s).cast())
        .collect();
    envp.push(ptr::null());
    (buf, envp)
}

/// The paths `execve` tries, in order: the program itself if it contains
/// a `/`, else each `PATH` entry joined with it (an empty entry is the
/// current directory). The `PATH` is the child's (its first entry, as
/// `getenv` finds it).
fn candidates(cmd: &Command, vars: &[(OsString, OsString)]) -> Vec<CString> {
    let prog = cmd.program.as_bytes();
    if prog.contains(&b'/') {
        return vec![cmd.program.clone()];
    }
    let path = vars
        .iter()
        .find(|(k, _)| k == OsStr::new("PATH"))
        .map_or(DEFAULT_PATH, |(_, v)| v.as_bytes());
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
