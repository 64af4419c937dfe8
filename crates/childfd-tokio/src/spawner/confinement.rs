//! What a child inherits from the thread that clones it, as far as it
//! matters for security and can be read cheaply: whether the spawner's
//! threads may clone for a caller.

use rustix::thread::{SecureComputingMode, no_new_privs, secure_computing_mode};

/// A thread's seccomp filters and `no_new_privs` flag, which Linux keeps
/// per thread and a child inherits from the thread that clones it (see
/// [seccomp(2)](https://man7.org/linux/man-pages/man2/seccomp.2.html) and
/// [PR_SET_NO_NEW_PRIVS(2const)](https://man7.org/linux/man-pages/man2/PR_SET_NO_NEW_PRIVS.2const.html)).
///
/// Filters are only ever added, so two threads with the same filter count
/// whose filters come from the same ancestor thread carry the same
/// filters; see the spawner's caveats for when that does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Confinement {
    /// `prctl(PR_GET_SECCOMP)`: 0 none, 1 strict, 2 filters.
    seccomp: u32,
    no_new_privs: bool,
    /// `Seccomp_filters` (Linux 5.9); 0 without filters.
    filters: u32,
}

impl Confinement {
    /// The calling thread's: `prctl(PR_GET_SECCOMP)` and
    /// `prctl(PR_GET_NO_NEW_PRIVS)`, and under seccomp filters also its
    /// filter count from `/proc/thread-self/status`. `None` if any of it
    /// cannot be read (filters on a kernel before 5.9, no `/proc`).
    pub(crate) fn of_this_thread() -> Option<Confinement> {
        let seccomp = match secure_computing_mode().ok()? {
            SecureComputingMode::Disabled => 0,
            SecureComputingMode::Strict => 1,
            SecureComputingMode::Filter => 2,
        };
        let no_new_privs = no_new_privs().ok()?;
        if seccomp == 0 {
            return Some(Confinement {
                seccomp,
                no_new_privs,
                filters: 0,
            });
        }
        let status = read_status("/proc/thread-self/status")?;
        // The two reads agree unless a filter was added in between: then
        // the child gets the newer state, which the count describes.
        Some(Confinement {
            no_new_privs: no_new_privs || status.no_new_privs,
            ..status
        })
    }

    /// The process's main thread's (the thread group leader's), from
    /// `/proc/self/status`: the state a thread of this process has unless
    /// it confined itself further.
    pub(crate) fn of_main_thread() -> Option<Confinement> {
        read_status("/proc/self/status")
    }
}

/// Parses `Seccomp`, `NoNewPrivs` and `Seccomp_filters` of a
/// `/proc/…/status` file.
fn read_status(path: &str) -> Option<Confinement> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let seccomp = field("Seccomp:")?;
    let filters = match field("Seccomp_filters:") {
        Some(n) => n,
        None if seccomp == 0 => 0,
        None => return None, // filters we cannot count
    };
    Some(Confinement {
        seccomp,
        no_new_privs: field("NoNewPrivs:")? != 0,
        filters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_reads_as_the_main_thread_reads_it() {
        // The test harness's threads confine nothing of their own.
        let here = Confinement::of_this_thread().expect("readable");
        let main = Confinement::of_main_thread().expect("readable");
        assert_eq!(here, main);
    }
}
