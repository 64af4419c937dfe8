//! Signal numbers.

use std::fmt;

/// A valid Linux signal number (1 to 64).
///
/// ```
/// use childfd::Signal;
/// assert_eq!(Signal::TERM.as_raw(), 15);
/// assert_eq!(Signal::new(9), Some(Signal::KILL));
/// assert_eq!(Signal::new(0), None);
/// assert_eq!(Signal::KILL.to_string(), "SIGKILL");
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
