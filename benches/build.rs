//! Compiles the C baselines (`csrc/baselines.c`) into a static library
//! the benches link, so raw clone/vfork/fork/posix_spawn are measured in
//! the same process run as childfd, std and tokio.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let obj = out.join("baselines.o");
    let ok = Command::new(&cc)
        .args(["-O2", "-fPIC", "-c", "csrc/baselines.c", "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(ok.success(), "compiling csrc/baselines.c failed");
    let lib = out.join("libbaselines.a");
    let _ = std::fs::remove_file(&lib);
    let ok = Command::new("ar")
        .arg("rcs")
        .arg(&lib)
        .arg(&obj)
        .status()
        .expect("cannot run `ar`");
    assert!(ok.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=baselines");
    println!("cargo:rerun-if-changed=csrc/baselines.c");
    println!("cargo:rerun-if-env-changed=CC");
}
