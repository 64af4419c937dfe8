//! Spawns a few commands and prints what happened.
use childfd::{Command, Stdio};
use std::io::Read;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("method: {:?}", childfd::spawn_method());
    let s = Command::new("sh").args(["-c", "exit 7"]).status()?;
    println!("sh exit 7 -> {s}");
    let mut c = Command::new("echo").arg("hi there").stdout(Stdio::piped()).spawn()?;
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out)?;
    println!("echo -> {:?} {}", out, c.wait()?);
    let c = Command::new("sleep").arg("10").spawn()?;
    println!("sleep try_wait {:?}", c.try_wait()?);
    c.kill()?;
    println!("sleep after kill {:?}", c.wait_timeout(Duration::from_secs(5))?);
    println!("kill again: {:?}", c.kill());
    for p in ["/no/such", "nosuchprog-xyz", "/etc/passwd"] {
        let e = Command::new(p).spawn().unwrap_err();
        println!("{p}: {e} / {:?} / {:?}", e.kind(), std::error::Error::source(&e).map(|s| s.to_string()));
    }
    let e = Command::new("true").current_dir("/nonexistent").spawn().unwrap_err();
    println!("chdir: {e} {:?}", e.kind());
    let e = Command::new("tr\0ue").spawn().unwrap_err();
    println!("nul: {e}: {}", std::error::Error::source(&e).unwrap());
    Ok(())
}
