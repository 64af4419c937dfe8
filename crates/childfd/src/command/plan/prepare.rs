//! Step 1 of a spawn: argv, the environment and the `PATH` candidates, as
//! the NUL-terminated strings and NULL-terminated arrays `execve` takes.
//!
//! The environment and the candidates are each one buffer of strings
//! back to back plus one array of pointers into it: two allocations each,
//! whatever the number of variables or `PATH` entries.

use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::command::Command;
use crate::command::EnvSnapshot;

/// `PATH` when none is set, as glibc's execvp.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// What `execve` gets. The pointers point into the owned buffers, which
/// are never changed after construction.
pub(super) struct Exec {
    pub argv: Vec<*const libc::c_char>,
    /// `KEY=VALUE\0` strings back to back; `envp` points into it.
    _env: Vec<u8>,
    pub envp: Vec<*const libc::c_char>,
    /// `path\0` strings back to back; `candidates` points into it.
    _candidates: Vec<u8>,
    pub candidates: Vec<*const libc::c_char>,
}

impl Exec {
    /// `snapshot`: the environment to inherit, else a copy taken now.
    pub(super) fn new(cmd: &Command, snapshot: Option<&EnvSnapshot>) -> Exec {
        let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(cmd.args.len() + 1);
        argv.extend(cmd.args.iter().map(|a| a.as_ptr()));
        argv.push(ptr::null());
        let env = environment(cmd, snapshot);
        let path = env
            .path
            .map_or(DEFAULT_PATH, |(s, e)| &env.buf.strings[s..e]);
        let cands = candidates(cmd.program.as_bytes(), path);
        Exec {
            argv,
            envp: env.buf.ptrs,
            _env: env.buf.strings,
            candidates: cands.ptrs,
            _candidates: cands.strings,
        }
    }
}

/// NUL-terminated strings back to back, and an array of pointers to each
/// (NULL-terminated for `execve`'s arrays).
struct Strings {
    strings: Vec<u8>,
    ptrs: Vec<*const libc::c_char>,
}

impl Strings {
    fn with_capacity(bytes: usize, count: usize) -> Strings {
        Strings {
            strings: Vec::with_capacity(bytes),
            ptrs: Vec::with_capacity(count + 1),
        }
    }

    /// Appends the concatenation of `parts` and a NUL. Until
    /// [`finish`](Self::finish), `ptrs` holds offsets, not pointers: the
    /// buffer may still move.
    fn push(&mut self, parts: &[&[u8]]) {
        self.ptrs
            .push(ptr::null::<libc::c_char>().wrapping_add(self.strings.len()));
        for p in parts {
            self.strings.extend_from_slice(p);
        }
        self.strings.push(0);
    }

    /// Turns the offsets into pointers into the (now final) buffer, and
    /// ends the array with NULL if asked.
    fn finish(&mut self, null_terminated: bool) {
        let base = self.strings.as_ptr();
        for p in &mut self.ptrs {
            *p = base.wrapping_add(*p as usize).cast();
        }
        if null_terminated {
            self.ptrs.push(ptr::null());
        }
    }
}

/// The child's environment: `buf`, and where the value of its first `PATH`
/// lies in it.
struct Environment {
    buf: Strings,
    path: Option<(usize, usize)>,
}

/// Size of the last environment built, so the next one is allocated at
/// once at its final size (environments rarely change).
static LAST_BYTES: AtomicUsize = AtomicUsize::new(4096);
static LAST_COUNT: AtomicUsize = AtomicUsize::new(64);

/// The child's environment: a snapshot of ours with the command's changes,
/// written straight into one `KEY=VALUE\0` buffer.
///
/// The snapshot comes from [`std::env::vars_os`], which copies `environ`
/// under std's environment lock: the live array may be freed at any moment
/// by another thread's `std::env::set_var`, so the child never reads it.
/// That copy (two small allocations per variable, inside std) is most of
/// what this step costs; no std interface takes the environment under its
/// lock more cheaply. Nor can the copy be cached and reused while the
/// environment looks unchanged: nothing read outside std's lock (the
/// `environ` pointer, its entries' pointers or lengths) proves it
/// unchanged (glibc's `setenv` frees the array it grows, `unsetenv`
/// shifts entries in place, a `putenv` string can change in place), and
/// std runs no caller code under the lock. A caller spawning several
/// commands together can share one copy ([`EnvSnapshot`]).
fn environment(cmd: &Command, snapshot: Option<&EnvSnapshot>) -> Environment {
    let changes = &cmd.env.vars;
    let mut env = Environment {
        buf: Strings::with_capacity(
            LAST_BYTES.load(Ordering::Relaxed),
            LAST_COUNT.load(Ordering::Relaxed) + changes.len(),
        ),
        path: None,
    };
    let add = |env: &mut Environment, key: &[u8], value: &[u8]| {
        if key == b"PATH" && env.path.is_none() {
            let start = env.buf.strings.len() + key.len() + 1;
            env.path = Some((start, start + value.len()));
        }
        env.buf.push(&[key, b"=", value]);
    };
    // A variable the command sets or removes is not inherited.
    let mut inherit = |k: &std::ffi::OsStr, v: &std::ffi::OsStr| {
        if changes.is_empty() || !changes.contains_key(k) {
            add(&mut env, k.as_bytes(), v.as_bytes());
        }
    };
    match snapshot {
        _ if cmd.env.clear => {}
        Some(s) => s.vars().for_each(|(k, v)| inherit(k, v)),
        None => std::env::vars_os().for_each(|(k, v)| inherit(&k, &v)),
    }
    for (k, v) in changes {
        if let Some(v) = v {
            add(&mut env, k.as_bytes(), v.as_bytes());
        }
    }
    LAST_BYTES.store(env.buf.strings.len(), Ordering::Relaxed);
    LAST_COUNT.store(env.buf.ptrs.len(), Ordering::Relaxed);
    env.buf.finish(true);
    env
}

/// The paths `execve` tries, in order: the program itself if it contains
/// a `/`, else each `PATH` entry joined with it (an empty entry is the
/// current directory). The `PATH` is the child's (its first entry, as
/// `getenv` finds it). The program has no NUL (checked by the builder);
/// an entry with one is skipped.
fn candidates(prog: &[u8], path: &[u8]) -> Strings {
    if prog.contains(&b'/') {
        let mut c = Strings::with_capacity(prog.len() + 1, 1);
        c.push(&[prog]);
        c.finish(false);
        return c;
    }
    let entries = path.split(|&b| b == b':').filter(|d| !d.contains(&0));
    let bytes = path.len() + entries.clone().count() * (prog.len() + 3);
    let mut c = Strings::with_capacity(bytes, entries.clone().count());
    for dir in entries {
        if dir.is_empty() {
            c.push(&[b"./", prog]);
        } else {
            c.push(&[dir, b"/", prog]);
        }
    }
    c.finish(false);
    c
}
