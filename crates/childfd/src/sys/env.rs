//! Facts about the calling process needed to prepare a spawn.

use std::sync::atomic::{AtomicU8, Ordering};

static CLOSE_RANGE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no

/// Whether `close_range(.., CLOSE_RANGE_CLOEXEC)` works (Linux 5.11),
/// probed once on an empty range of fds so nothing is touched.
pub(crate) fn close_range_cloexec() -> bool {
    match CLOSE_RANGE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // Probe on the highest possible range: no fd is there.
            // SAFETY: marks no fd (the range is empty of open fds).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    u32::MAX - 1,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
            let ok = r == 0;
            CLOSE_RANGE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Forces the `close_range` fallback, as on a kernel before 5.11. Tests only.
pub(crate) fn disable_close_range() {
    CLOSE_RANGE.store(2, Ordering::Relaxed);
}

/// The highest fd number open now (from `/proc/self/fd`), for the
/// fallback that marks fds close-on-exec one by one.
pub(crate) fn highest_open_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .max()
                .unwrap_or(2)
        })
        .unwrap_or(1024)
}

/// How far the no-`close_range` fallback marks fds close-on-exec: well
/// past the highest fd open now (other threads may open more meanwhile),
/// within the soft `RLIMIT_NOFILE` (no fd can be above it).
pub(crate) fn cloexec_fallback_bound() -> i32 {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let soft = soft.min(i32::MAX as u64) as i32;
    highest_open_fd()
        .saturating_add(1024)
        .max(4096)
        .min(soft.saturating_sub(1))
}

/// `getpid()`.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}
