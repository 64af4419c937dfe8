//! The crate's only `unsafe`: registering a child's pidfd with tokio's
//! reactor.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A child's pidfd by number, for the reactor. Only [`register_pidfd`]
/// makes one, for a fd that outlives it (see there).
#[derive(Debug)]
pub(crate) struct Pidfd(RawFd);

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers the pidfd of `child` for readability (the kernel's exit
/// notification) with the current runtime's reactor.
///
/// The caller keeps the returned `AsyncFd` (in an `Arc`) in the same
/// struct as `child`, dropped before it, and lends it only to futures that
/// borrow that struct: see the safety comment.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled (as tokio's `AsyncFd`).
pub(crate) fn register_pidfd(child: &childfd::Child) -> io::Result<AsyncFd<Pidfd>> {
    let fd = Pidfd(child.as_raw_fd());
    // SAFETY: `AsyncFd::register_with_interest` needs the fd to stay open,
    // and to be the same, for as long as the `AsyncFd` lives.
    // `childfd::Child::as_raw_fd` returns its pidfd, which the `Child`
    // owns from spawn until its own `drop` (nothing else can take or
    // replace it). The only caller, `crate::child::Child`, owns the core
    // child and keeps this `AsyncFd` in an `Arc` in a field declared
    // before it (dropped, and the fd deregistered, before the core child
    // closes the pidfd); the other clones of that `Arc` live only in
    // futures that borrow the `crate::child::Child`, so they are gone
    // before it can be dropped. Neither is ever moved out.
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    registered.map_err(|e| e.into_parts().1)
}
