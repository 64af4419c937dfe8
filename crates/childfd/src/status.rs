//! How a child ended.

use std::fmt;
use std::os::unix::process::ExitStatusExt;

use crate::Signal;

/// The status of a child that has ended: exited with a code, or killed by a
/// signal (possibly with a core dump).
///
/// Always a status the kernel reported for that very process: from
/// `waitid(P_PIDFD)` or, when another reaper took it first, from
/// `PIDFD_INFO_EXIT`. childfd never makes one up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    /// The wait(2) status word: `code << 8`, or `signal | 0x80 if core`.
    raw: i32,
}

impl ExitStatus {
    pub(crate) fn from_raw(raw: i32) -> ExitStatus {
        ExitStatus { raw }
    }

    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        self.code() == Some(0)
    }

    /// The exit code, if the child exited (rather than being killed).
    pub fn code(&self) -> Option<i32> {
        if self.raw & 0x7f == 0 {
            Some((self.raw >> 8) & 0xff)
        } else {
            None
        }
    }

    /// The signal that killed the child, if any.
    pub fn signal(&self) -> Option<Signal> {
        let sig = self.raw & 0x7f;
        if sig != 0 && sig != 0x7f {
            Signal::new(sig)
        } else {
            None
        }
    }

    /// Whether the child dumped core when killed.
    pub fn core_dumped(&self) -> bool {
        self.signal().is_some() && self.raw & 0x80 != 0
    }

    /// The raw wait(2) status word, as `std::os::unix::process::ExitStatusExt::into_raw`.
    pub fn into_raw(self) -> i32 {
        self.raw
    }

    /// The exit code a shell would report: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code(), self.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s.as_raw(),
            (None, None) => 255,
        }
    }
}

impl fmt::Display for ExitStatus {
    /// Formats like `std::process::ExitStatus`: `exit status: 3`,
    /// `signal: 9 (SIGKILL)`, `signal: 6 (SIGABRT) (core dumped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = self.code() {
            write!(f, "exit status: {c}")
        } else if let Some(s) = self.signal() {
            write!(f, "signal: {}", s.as_raw())?;
            if let Some(n) = s.name() {
                write!(f, " ({n})")?;
            }
            if self.core_dumped() {
                f.write_str(" (core dumped)")?;
            }
            Ok(())
        } else {
            write!(f, "unrecognised wait status: {} {:#x}", self.raw, self.raw)
        }
    }
}

impl fmt::Debug for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExitStatus({self})")
    }
}

impl From<ExitStatus> for std::process::ExitStatus {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitStatus::from_raw(s.raw)
    }
}
