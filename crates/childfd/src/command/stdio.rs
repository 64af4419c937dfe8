//! What the child's fd 0, 1 and 2 are connected to.

use std::fmt;
use std::fs::File;
use std::os::fd::OwnedFd;

/// Where one of the child's standard streams comes from or goes to.
///
/// ```
/// use childfd::{Command, Stdio};
/// let out = Command::new("echo").arg("hi").stdout(Stdio::piped()).spawn()?;
/// # let _ = out.wait();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Stdio(pub(crate) Kind);

pub(crate) enum Kind {
    Inherit,
    Null,
    Piped,
    Fd(OwnedFd),
    SameAsStdout,
}

impl Stdio {
    /// The child uses the parent's stream (the default).
    pub fn inherit() -> Stdio {
        Stdio(Kind::Inherit)
    }

    /// The child's stream is `/dev/null`.
    pub fn null() -> Stdio {
        Stdio(Kind::Null)
    }

    /// A new pipe (`pipe2(O_CLOEXEC)`); the parent's end is available as
    /// [`crate::Child::take_stdin`] (or stdout, stderr). The parent's end is
    /// blocking; `childfd-io` makes it non-blocking.
    pub fn piped() -> Stdio {
        Stdio(Kind::Piped)
    }

    /// Only for stderr: the child's stderr is a duplicate of its stdout
    /// (whatever stdout is), like `2>&1`.
    pub fn same_as_stdout() -> Stdio {
        Stdio(Kind::SameAsStdout)
    }
}

/// What a [`Stdio`] connects a stream to, as
/// [`Command::get_stdin`](crate::Command::get_stdin) and friends report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StdioKind {
    /// [`Stdio::inherit`] (the default).
    Inherit,
    /// [`Stdio::null`].
    Null,
    /// [`Stdio::piped`].
    Piped,
    /// An fd or file of the caller's ([`Stdio::from`]).
    Fd,
    /// [`Stdio::same_as_stdout`].
    SameAsStdout,
}

impl Stdio {
    /// What this connects the stream to.
    pub fn kind(&self) -> StdioKind {
        match self.0 {
            Kind::Inherit => StdioKind::Inherit,
            Kind::Null => StdioKind::Null,
            Kind::Piped => StdioKind::Piped,
            Kind::Fd(_) => StdioKind::Fd,
            Kind::SameAsStdout => StdioKind::SameAsStdout,
        }
    }
}

impl Default for Stdio {
    fn default() -> Stdio {
        Stdio::inherit()
    }
}

impl From<OwnedFd> for Stdio {
    /// The child's stream is this fd (duplicated onto 0, 1 or 2); the
    /// command keeps it open for further spawns.
    fn from(fd: OwnedFd) -> Stdio {
        Stdio(Kind::Fd(fd))
    }
}

impl From<File> for Stdio {
    /// The child's stream is this file (for stdout, opened for writing).
    fn from(f: File) -> Stdio {
        Stdio(Kind::Fd(f.into()))
    }
}

/// Pipelines, as with std: another child's pipe end becomes this child's
/// stream.
///
/// ```
/// use childfd::{Command, Stdio};
///
/// let mut producer = Command::new("echo").arg("hello pipeline").stdout(Stdio::piped()).spawn()?;
/// let upper = Command::new("tr")
///     .args(["a-z", "A-Z"])
///     .stdin(producer.stdout.take().expect("piped"))
///     .output()?;
/// assert_eq!(upper.stdout, b"HELLO PIPELINE\n");
/// assert!(producer.wait()?.success());
/// # Ok::<(), std::io::Error>(())
/// ```
macro_rules! from_pipe_end {
    ($($t:ident),*) => {$(
        impl From<crate::$t> for Stdio {
            fn from(p: crate::$t) -> Stdio {
                Stdio(Kind::Fd(p.into()))
            }
        }
    )*};
}
from_pipe_end!(ChildStdin, ChildStdout, ChildStderr);

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Inherit => f.write_str("Stdio::inherit()"),
            Kind::Null => f.write_str("Stdio::null()"),
            Kind::Piped => f.write_str("Stdio::piped()"),
            Kind::Fd(fd) => write!(f, "Stdio::from({fd:?})"),
            Kind::SameAsStdout => f.write_str("Stdio::same_as_stdout()"),
        }
    }
}
