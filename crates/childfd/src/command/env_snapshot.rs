//! One copy of the environment for several spawns made together.

use std::ffi::{OsStr, OsString};

use crate::{Child, Command, SpawnError};

/// This process's environment, copied once under std's environment lock
/// ([`std::env::vars_os`]), for several spawns made back to back: each
/// [`Command::spawn_with_env`] passes it (with the command's own changes)
/// instead of copying the environment again.
///
/// The copy is most of what preparing a spawn costs (two allocations per
/// variable inside std; no std interface reads the environment under its
/// lock more cheaply, and no copy can be cached soundly: see
/// [`Command::spawn`]). A snapshot shares one copy between spawns that are
/// made together anyway, such as a batch of queued requests.
///
/// # Caveats
///
/// A spawn sees the environment as it was when the snapshot was taken: a
/// change made after it (`std::env::set_var`) is not passed. Take the
/// snapshot after every spawn request it serves was made (for a queue,
/// after the last of them was received), so that whatever happened before
/// a request is in it.
#[derive(Debug, Clone)]
pub struct EnvSnapshot {
    vars: Vec<(OsString, OsString)>,
}

impl EnvSnapshot {
    /// Copies the environment now ([`std::env::vars_os`]).
    pub fn capture() -> EnvSnapshot {
        EnvSnapshot {
            vars: std::env::vars_os().collect(),
        }
    }

    /// The variables, in `environ`'s order.
    pub(crate) fn vars(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

impl Command {
    /// [`spawn`](Command::spawn), inheriting `env` instead of a copy of the
    /// environment taken now (see [`EnvSnapshot`]); the command's own
    /// [`env`](Command::env), [`env_remove`](Command::env_remove) and
    /// [`env_clear`](Command::env_clear) apply on top as usual.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn).
    pub fn spawn_with_env(&self, env: &EnvSnapshot) -> Result<Child, SpawnError> {
        super::plan::spawn(self, Some(env), None)
    }
}

/// The calling thread's signal mask, taken for a spawn another thread
/// makes on its behalf (childfd-tokio's spawner): a child of
/// [`inherit_signal_mask(true)`](Command::inherit_signal_mask) gets it
/// instead of the spawning thread's. Not a stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerSignalMask(pub(crate) u64);

impl CallerSignalMask {
    /// The calling thread's mask now.
    pub fn of_this_thread() -> CallerSignalMask {
        CallerSignalMask(crate::sys::raw::signal_mask())
    }
}

impl Command {
    /// Whether the child is to start with the spawning thread's signal
    /// mask ([`inherit_signal_mask`](Command::inherit_signal_mask)). Not a
    /// stable API.
    #[doc(hidden)]
    pub fn inherits_signal_mask(&self) -> bool {
        self.inherit_signal_mask
    }

    /// [`spawn`](Command::spawn) made for another thread: inheriting
    /// `env` if given (see [`spawn_with_env`](Command::spawn_with_env)),
    /// and handing on `mask` if given instead of the spawning thread's
    /// mask. Not a stable API.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn).
    #[doc(hidden)]
    pub fn spawn_for(
        &self,
        env: Option<&EnvSnapshot>,
        mask: Option<CallerSignalMask>,
    ) -> Result<Child, SpawnError> {
        super::plan::spawn(self, env, mask)
    }
}
