//! Builds the static helper programs (no libc, no loader) with the C
//! compiler every supported machine has, and exposes their paths.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for name in ["exit0", "pause", "echo1", "sleep200"] {
        let src = format!("csrc/{name}.c");
        println!("cargo:rerun-if-changed={src}");
        let bin = out.join(name);
        let status = Command::new(&cc)
            .args(["-static", "-nostdlib", "-O2", "-fno-stack-protector", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
        assert!(status.success(), "building {src} failed");
        println!(
            "cargo:rustc-env=CHILDFD_TESTBIN_{}={}",
            name.to_uppercase(),
            bin.display()
        );
    }
    println!("cargo:rerun-if-env-changed=CC");
}
