//! childfd's own lines on stderr (diagnostics, the report): written so that
//! a reader that stopped reading cannot hold childfd up. Each write runs on
//! a short-lived thread and is waited for at most [`OWN_WRITE_BOUND`]; a
//! write still blocked then is abandoned (the process exits right after).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long one of childfd's own writes may block.
pub const OWN_WRITE_BOUND: Duration = Duration::from_secs(1);

/// Set once a write to stderr outlived its bound: later lines are not
/// tried (they would queue behind the blocked one and wait again).
static STDERR_STUCK: AtomicBool = AtomicBool::new(false);

/// Runs `f` (an open and a write that may block), waiting at most
/// [`OWN_WRITE_BOUND`] for it; returns whether it finished.
pub fn bounded(f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("childfd-say".into())
        .spawn(move || {
            crate::sys::block_sigttou_in_this_thread();
            f();
            let _ = tx.send(());
        });
    spawned.is_ok() && rx.recv_timeout(OWN_WRITE_BOUND).is_ok()
}

/// Writes `bytes` with `w`, waiting at most [`OWN_WRITE_BOUND`]. Errors
/// (a closed or broken stream) are ignored: they only lose the line.
pub fn write_bounded<W: Write + Send + 'static>(mut w: W, bytes: Vec<u8>) -> bool {
    bounded(move || {
        let _ = w.write_all(&bytes).and_then(|()| w.flush());
    })
}

/// Writes to childfd's stderr, bounded; nothing once a write there got stuck.
pub fn stderr(bytes: Vec<u8>) {
    if !STDERR_STUCK.load(Ordering::Relaxed) && !write_bounded(std::io::stderr(), bytes) {
        STDERR_STUCK.store(true, Ordering::Relaxed);
    }
}
