//! Limits at the ends of their range: `Duration::MAX` means "never", as
//! in childfd-io, not an `Instant` overflow panic inside the capture.

mod common;

use std::time::Duration;

use childfd::{Command, EndedBy, Signal};
use childfd_testbin::{assert_no_survivors, new_tag};
use childfd_tokio::{CommandExt, Options, Outcome};
use common::{on_both, sh};

#[test]
fn a_wait_delay_grace_or_deadline_of_duration_max_never_fires_and_never_panics() {
    on_both(|_| async {
        // The wait-delay starts at the exit, with a pipe still held.
        let tag = new_tag("max-delay");
        let out = sh("echo hi; sleep 0.3 & exit 0", &tag)
            .output_async(
                Options::new()
                    .wait_delay(Duration::MAX)
                    .deadline(Duration::MAX),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.outcome, out.stdout.text()),
            (Outcome::Exited, "hi\n".into())
        );
        assert_no_survivors(&tag);

        // The grace starts at the deadline; SIGTERM ends the child.
        let out = Command::new("sleep")
            .arg("1000")
            .output_async(
                Options::new()
                    .deadline(Duration::from_millis(50))
                    .grace(Duration::MAX),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.outcome, out.ended_by),
            (Outcome::TimedOut, Some(EndedBy::Term))
        );
        assert_eq!(out.status.unwrap().signal(), Some(Signal::TERM));
    });
}
