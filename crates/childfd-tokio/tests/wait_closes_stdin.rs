//! `wait` on a child whose piped stdin was never taken: the pipe is
//! closed first (as `std`, `tokio::process` and `childfd::Child::wait`
//! do), so a child that reads its stdin to the end exits instead of
//! waiting for ever for an EOF.

mod common;

use childfd::{Command, Stdio};
use childfd_tokio::spawn;
use common::{SLACK, on_both};

#[test]
fn wait_closes_an_untaken_stdin_so_a_child_reading_to_eof_does_not_hang() {
    on_both(|_| async {
        let child = spawn(
            Command::new("sh")
                .args(["-c", "cat >/dev/null; exit 5"])
                .stdin(Stdio::piped()),
        )
        .unwrap();
        let st = tokio::time::timeout(SLACK, child.wait()).await;
        let st = st.expect("wait closed stdin: cat saw EOF");
        assert_eq!(st.unwrap().code(), Some(5));

        // Through terminate's and wait_tree's waits too.
        let child = spawn(
            Command::new("sh")
                .args(["-c", "cat >/dev/null; exit 6"])
                .stdin(Stdio::piped()),
        )
        .unwrap();
        let st = tokio::time::timeout(SLACK, child.wait_tree()).await;
        assert_eq!(st.expect("no hang").unwrap().code(), Some(6));
    });
}
