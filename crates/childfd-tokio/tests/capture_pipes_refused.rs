//! Where `preadv2(RWF_NOWAIT)` is refused (`EOPNOTSUPP`, as kernels whose
//! pipes lack `FMODE_NOWAIT` answer; here a seccomp filter), a capture
//! registers its pipes at once and reads everything through the reactor.
//! A binary of its own: the refusal is remembered for the whole process.

mod common;

use childfd_tokio::{CommandExt, Options, Outcome};
use common::{on_both, sh};

#[test]
fn a_capture_where_nowait_reads_are_refused_registers_its_pipes_and_reads_all() {
    // On this thread and the threads it starts (the runtimes' workers).
    childfd_testbin::seccomp_deny(libc::SYS_preadv2, libc::EOPNOTSUPP);
    on_both(|_| async {
        let tag = childfd_testbin::new_tag("refused");
        for script in [
            "echo out; echo err >&2",
            "sleep 0.2; echo out; echo err >&2",
        ] {
            let out = sh(script, &tag).output_async(Options::new()).await.unwrap();
            assert_eq!(out.outcome, Outcome::Exited, "{script}: {out:?}");
            assert_eq!(out.stdout.text(), "out\n", "{script}");
            assert_eq!(out.stderr.text(), "err\n", "{script}");
        }
        childfd_testbin::assert_no_survivors(&tag);
    });
}
