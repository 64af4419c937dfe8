//! Every `unsafe` operation of the crate lives below this module.
//!
//! - [`raw`]: errno-free raw syscalls for the post-clone child;
//! - [`child_exec`]: the post-clone child code and its restrictions;
//! - [`clone`]: clone3/clone trampolines, the child's stack, method probing;
//! - [`pidfd`]: waitid, `PIDFD_INFO_EXIT`, pidfd_send_signal, poll;
//! - [`signals`]: the spawning thread's signal mask;
//! - [`env`]: the process environment pointer and fd-table facts;
//! - [`spawner`]: the long-lived thread for parent-death-signal spawns.
#![allow(unsafe_code)]

pub(crate) mod child_exec;
pub(crate) mod clone;
pub(crate) mod env;
pub(crate) mod pidfd;
pub(crate) mod raw;
pub(crate) mod signals;
pub(crate) mod spawner;
