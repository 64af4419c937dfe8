//! The child never allocates between clone and exec.
//!
//! A global allocator kills the calling process with SIGKILL when it runs
//! in a process other than the test's own (a CLONE_VM child shares this
//! allocator but has another pid). Every spawned child must therefore exit
//! normally; one that allocated would be reported as killed.
//!
//! `harness = false`: a single thread, so the control experiment can
//! `fork` safely.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use childfd::{Command, Signal, Stdio};

static PARENT: AtomicI32 = AtomicI32::new(0);

struct Tripwire;

fn check_pid() {
    let parent = PARENT.load(Ordering::Relaxed);
    if parent != 0 {
        // SAFETY: getpid takes no arguments and cannot fail.
        let me = unsafe { libc::syscall(libc::SYS_getpid) } as i32;
        if me != parent {
            // SAFETY: kills the calling process (a child that allocated).
            unsafe { libc::syscall(libc::SYS_kill, me, libc::SIGKILL) };
        }
    }
}

// SAFETY: forwards to the system allocator after a side-effect-free check.
unsafe impl GlobalAlloc for Tripwire {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_pid();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        check_pid();
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        check_pid();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Tripwire = Tripwire;

fn main() {
    PARENT.store(std::process::id() as i32, Ordering::Relaxed);

    // Control: the tripwire does fire in another process that allocates.
    // SAFETY: harness = false, so this process has a single thread.
    let st = unsafe {
        childfd_testbin::in_forked_child(|| {
            std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
        })
    };
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "control: tripwire did not fire ({st:#x})"
    );

    let dir = std::env::temp_dir().join(format!("childfd-noalloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut modes = vec![
        childfd::Containment::ProcessGroup,
        childfd::Containment::Session,
        childfd::Containment::Inherit,
    ];
    match Command::new("true")
        .containment(childfd::Containment::cgroup())
        .status()
    {
        Ok(_) => modes.push(childfd::Containment::cgroup()),
        Err(e) => eprintln!("WARNING: no writable cgroup v2 here ({e}); cgroup mode not covered"),
    }
    for i in 0..300 {
        // Every feature of the child path: PATH search (with misses),
        // env changes, cwd, pipes, /dev/null, fd mapping, stderr-to-stdout,
        // each containment mode, pdeathsig.
        let (map_r, mut map_w) = std::io::pipe().unwrap();
        map_w.write_all(b"m").unwrap();
        drop(map_w);
        let containment = modes[i % modes.len()].clone();
        let mut c = Command::new("sh")
            .args(["-c", "read x <&5; echo \"$x$FOO\""])
            .env("PATH", "/no/such/dir:/usr/local/bin:/usr/bin:/bin")
            .env("FOO", "bar")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::same_as_stdout())
            .fd(5, map_r)
            .containment(containment)
            .pdeathsig(Signal::KILL)
            .spawn()
            .unwrap();
        let mut out = String::new();
        c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        let s = c
            .wait_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("exited");
        assert!(
            s.success(),
            "spawn {i}: child ended with {s} (SIGKILL means it allocated)"
        );
        assert_eq!(out, "mbar\n");
        // And a failing spawn (the error path of the child).
        let e = Command::new("/no/such/program")
            .current_dir(&dir)
            .spawn()
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "spawn {i}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    println!("no_alloc_in_child: 300 spawns and 300 failed spawns, no allocation in any child");
}
