//! Every `unsafe` operation of the crate lives below this module.
//!
//! - [`raw`]: errno-free raw syscalls for the post-clone child;
//! - [`child_exec`]: the post-clone child code and its restrictions;
//! - [`clone`]: clone3/clone trampolines, the child's stack, method probing;
//! - [`pidfd`]: waitid, `PIDFD_INFO_EXIT`, pidfd_send_signal, poll;
//! - [`signals`]: the spawning thread's signal mask, and the library threads' one;
//! - [`sigpipe`]: writes that return `EPIPE` without raising SIGPIPE;
//! - [`sigchld`]: the orphan reaper's SIGCHLD wake-up;
//! - [`checked_pipe`]: a pipe used only while its numbers still name it;
//! - [`env`]: fd-table facts and the pid;
//! - [`fork`]: process-wide state that starts afresh after `fork()`;
//! - [`spawner`]: the long-lived thread for parent-death-signal spawns.
#![allow(unsafe_code)]

pub(crate) mod checked_pipe;
pub(crate) mod child_exec;
pub(crate) mod clone;
pub(crate) mod env;
pub(crate) mod fork;
pub(crate) mod pidfd;
pub(crate) mod raw;
pub(crate) mod sigchld;
pub(crate) mod signals;
pub(crate) mod sigpipe;
pub(crate) mod spawner;
