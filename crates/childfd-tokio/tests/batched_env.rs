//! Spawns queued together share one copy of the environment, taken once
//! the last of them was received: a variable set before a spawn was
//! queued reaches its child, however the spawns were batched.
//!
//! The only test of its binary: it calls `std::env::set_var`, and every
//! other reader of the environment here goes through std's lock.

use std::future::Future;
use std::task::Poll;

use childfd_tokio::{CommandExt, Options};

const VAR: &str = "CHILDFD_BATCHED_ENV_TEST";

#[test]
fn a_variable_set_before_a_spawn_is_queued_reaches_its_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tag = childfd_testbin::new_tag("env");
    rt.block_on(async {
        let mut queued = Vec::new();
        for i in 0..256u32 {
            // Requests come at varying gaps (0 to 75 µs, a spawn takes
            // about that long), so that batches of every size form, some
            // joined by requests made while their first spawn runs. Pacing
            // only: nothing waits for anything here.
            std::thread::sleep(std::time::Duration::from_micros(u64::from(i % 4) * 25));
            // SAFETY: no other thread reads the environment but through
            // std (the spawner threads' copies take std's lock).
            unsafe { std::env::set_var(VAR, i.to_string()) };
            let mut cmd = childfd::Command::new("sh");
            cmd.args(["-c", &format!("echo ${VAR}")])
                .env("CHILDFD_TEST_TAG", &tag);
            let mut job = Box::pin(async move { cmd.output_async(Options::new()).await });
            // One poll queues the spawn on a spawner thread (on a loaded
            // machine the whole job may even finish within it).
            let mut done = None;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(out) = job.as_mut().poll(cx) {
                    done = Some(out);
                }
                Poll::Ready(())
            })
            .await;
            queued.push((i, done, job));
        }
        for (i, done, job) in queued {
            let out = match done {
                Some(out) => out,
                None => job.await,
            }
            .expect("output");
            let seen: u32 = out.stdout.text().trim().parse().expect("a number");
            assert!(
                seen >= i,
                "spawn {i} was queued after {VAR}={i} was set, its child saw {seen}"
            );
        }
    });
    childfd_testbin::assert_no_survivors(&tag);
}
