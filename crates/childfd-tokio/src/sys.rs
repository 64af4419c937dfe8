//! The crate's only `unsafe`: registering a child's pidfd with tokio's
//! reactor.
#![allow(unsafe_code)]

use std::io;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers the child's pidfd for readability (the kernel's exit
/// notification) with the current runtime's reactor.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled (as tokio's `AsyncFd`).
pub(crate) fn register_pidfd(child: childfd::Child) -> io::Result<AsyncFd<childfd::Child>> {
    // SAFETY: `AsyncFd::register_with_interest` needs the fd that
    // `as_raw_fd` returns to stay open, and to be the same, for as long as
    // the `AsyncFd` lives. `childfd::Child::as_raw_fd` returns its pidfd,
    // which the `Child` owns from spawn until its own `drop` (nothing else
    // can take or replace it), and the `AsyncFd` owns the `Child`: it
    // deregisters the fd before dropping the `Child`, and this crate never
    // hands out `get_mut` or `into_inner`.
    let registered = unsafe { AsyncFd::register_with_interest(child, Interest::READABLE) };
    registered.map_err(|e| e.into_parts().1)
}
