//! Signal numbers, their names, and parsing them.

use std::fmt;
use std::str::FromStr;

/// A valid Linux signal number (1 to 64).
///
/// ```
/// use childfd::Signal;
/// assert_eq!(Signal::TERM.as_raw(), 15);
/// assert_eq!(Signal::new(9), Some(Signal::KILL));
/// assert_eq!(Signal::new(0), None);
/// assert_eq!(Signal::KILL.to_string(), "SIGKILL");
/// assert_eq!("TERM".parse::<Signal>()?, Signal::TERM);
/// assert_eq!("sigterm".parse::<Signal>()?, Signal::TERM);
/// assert_eq!("15".parse::<Signal>()?, Signal::TERM);
/// assert!("SIGNOPE".parse::<Signal>().is_err());
/// # Ok::<(), childfd::ParseSignalError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident = $val:ident, $doc:literal;)*) => {
        impl Signal {
            $(#[doc = $doc] pub const $name: Signal = Signal(libc::$val);)*
        }
        fn name_of(n: i32) -> Option<&'static str> {
            $(if n == libc::$val { return Some(stringify!($val)); })*
            None
        }
        /// The number of a signal name without its `SIG` prefix, in capitals.
        fn number_of(name: &str) -> Option<i32> {
            $(if stringify!($val)[3..] == *name { return Some(libc::$val); })*
            None
        }
    };
}

signals! {
    HUP = SIGHUP, "Hangup.";
    INT = SIGINT, "Interrupt (Ctrl-C).";
    QUIT = SIGQUIT, "Quit, with core dump.";
    ILL = SIGILL, "Illegal instruction.";
    TRAP = SIGTRAP, "Trace trap.";
    ABRT = SIGABRT, "Abort.";
    BUS = SIGBUS, "Bus error.";
    FPE = SIGFPE, "Arithmetic error.";
    KILL = SIGKILL, "Kill (cannot be caught or ignored).";
    USR1 = SIGUSR1, "User-defined 1.";
    SEGV = SIGSEGV, "Invalid memory access.";
    USR2 = SIGUSR2, "User-defined 2.";
    PIPE = SIGPIPE, "Write to a pipe with no reader.";
    ALRM = SIGALRM, "Alarm clock.";
    TERM = SIGTERM, "Termination request.";
    CHLD = SIGCHLD, "Child status changed.";
    CONT = SIGCONT, "Continue if stopped.";
    STOP = SIGSTOP, "Stop (cannot be caught or ignored).";
    TSTP = SIGTSTP, "Terminal stop (Ctrl-Z).";
    TTIN = SIGTTIN, "Background read from terminal.";
    TTOU = SIGTTOU, "Background write to terminal.";
    URG = SIGURG, "Urgent data on socket.";
    XCPU = SIGXCPU, "CPU time limit exceeded.";
    XFSZ = SIGXFSZ, "File size limit exceeded.";
    VTALRM = SIGVTALRM, "Virtual alarm clock.";
    PROF = SIGPROF, "Profiling timer expired.";
    WINCH = SIGWINCH, "Window size changed.";
    IO = SIGIO, "I/O possible.";
    PWR = SIGPWR, "Power failure.";
    SYS = SIGSYS, "Bad system call.";
    STKFLT = SIGSTKFLT, "Coprocessor stack fault (unused on Linux).";
}

impl Signal {
    /// The signal with number `n`, if `1 <= n <= 64`.
    pub const fn new(n: i32) -> Option<Signal> {
        if n >= 1 && n <= 64 {
            Some(Signal(n))
        } else {
            None
        }
    }

    /// The signal number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The conventional name (`"SIGTERM"`), or `None` for real-time signals.
    pub fn name(self) -> Option<&'static str> {
        name_of(self.0)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signal({}", self.0)?;
        if let Some(n) = self.name() {
            write!(f, " {n}")?;
        }
        f.write_str(")")
    }
}

/// A string that names no signal; from [`Signal`]'s `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}: expected a name such as TERM or SIGTERM, or a number from 1 to 64")]
pub struct ParseSignalError(String);

impl From<ParseSignalError> for std::io::Error {
    fn from(e: ParseSignalError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// Parses a name with or without `SIG`, in any case (`TERM`, `SIGTERM`,
    /// `sigterm`), a number (`15`, or `signal 40` as [`Display`](fmt::Display)
    /// prints one without a name), or a real-time signal as `kill -l`
    /// prints it (`RTMIN+3`, `SIGRTMAX-1`).
    fn from_str(s: &str) -> Result<Signal, ParseSignalError> {
        let err = || ParseSignalError(s.to_string());
        // A number, alone or as Display prints a real-time signal.
        if let Ok(n) = s.strip_prefix("signal ").unwrap_or(s).parse::<i32>() {
            return Signal::new(n).ok_or_else(err);
        }
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let n = match name {
            "IOT" => Some(libc::SIGIOT),
            "POLL" => Some(libc::SIGPOLL),
            "CLD" => Some(libc::SIGCHLD),
            _ => number_of(name).or_else(|| realtime(name)),
        };
        n.and_then(Signal::new).ok_or_else(err)
    }
}

/// `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n`, within the real-time range.
fn realtime(name: &str) -> Option<i32> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |rest: &str| -> Option<i32> {
        match rest {
            "" => Some(0),
            _ => rest.parse::<u8>().ok().map(i32::from),
        }
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        min + offset(rest.strip_prefix('+').unwrap_or(rest))?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        max - offset(rest.strip_prefix('-').unwrap_or(rest))?
    } else {
        return None;
    };
    (min..=max).contains(&n).then_some(n)
}
