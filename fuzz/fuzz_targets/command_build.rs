//! Command building from arbitrary bytes (NULs, huge arguments, odd fd
//! numbers, bad environment names): `spawn` must return an error, never
//! panic, and leave no child behind. The program always lies under
//! `/nonexistent/`, so nothing real ever runs.
#![no_main]

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF: program, then tagged fields.
    let mut fields = data.split(|&b| b == 0xFF);
    let program: Vec<u8> = fields.next().unwrap_or(&[]).iter().map(|&b| if b == b'/' { b'_' } else { b }).collect();
    let mut path = b"/nonexistent/".to_vec();
    path.extend_from_slice(&program);
    let mut cmd = childfd::Command::new(std::ffi::OsStr::from_bytes(&path));
    for f in fields {
        let Some((&tag, rest)) = f.split_first() else { continue };
        let text = std::ffi::OsStr::from_bytes(rest);
        match tag % 6 {
            0 => {
                cmd.arg(text);
            }
            1 => {
                let (k, v) = rest.split_at(rest.len() / 2);
                cmd.env(std::ffi::OsStr::from_bytes(k), std::ffi::OsStr::from_bytes(v));
            }
            2 => {
                cmd.env_remove(text);
            }
            3 => {
                cmd.current_dir(text);
            }
            4 => {
                let n = i32::from_le_bytes([rest.first().copied().unwrap_or(0), rest.get(1).copied().unwrap_or(0), 0, 0]) - 100;
                if let Ok(f) = std::fs::File::open("/dev/null") {
                    cmd.fd(n, OwnedFd::from(f));
                }
            }
            _ => {
                cmd.env_clear();
            }
        }
    }
    match cmd.spawn() {
        Ok(child) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spawned {:?}", String::from_utf8_lossy(&path));
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.kind();
        }
    }
});
