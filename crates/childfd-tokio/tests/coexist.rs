//! childfd-tokio and `tokio::process` in one runtime: tokio installs a
//! SIGCHLD handler and reaps its own children with `waitpid(pid)`; ours
//! are waited through their pidfds. Neither may take the other's status.

mod common;

use std::time::Duration;

use childfd::Command;
use childfd_tokio::{CommandExt, Options, Outcome};
use common::{SLACK, on_both};

#[test]
fn tokio_process_and_childfd_tokio_children_in_one_runtime_each_get_their_own_status() {
    on_both(|_| async {
        let recovered = childfd::recovered_statuses();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40u8 {
            // tokio::process, with its SIGCHLD handler and pid reaping.
            tasks.spawn(async move {
                let st = tokio::process::Command::new("sh")
                    .args(["-c", &format!("sleep 0.0{}; exit {}", i % 5, i)])
                    .status()
                    .await
                    .unwrap();
                assert_eq!(st.code(), Some(i as i32), "tokio::process child {i}");
            });
            // childfd-tokio, exiting at the same moments.
            tasks.spawn(async move {
                let code = 100 + i;
                let child = Command::new("sh")
                    .args(["-c", &format!("sleep 0.0{}; exit {}", i % 5, code)])
                    .spawn_async()
                    .await
                    .unwrap();
                let st = tokio::time::timeout(SLACK, child.wait())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(st.code(), Some(code as i32), "childfd child {i}");
            });
            // A tokio::process child dropped unwaited: tokio's orphan queue
            // reaps it by pid, never one of ours.
            if i % 10 == 0 {
                drop(tokio::process::Command::new("true").spawn().unwrap());
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        // Captures too, while tokio reaps around them.
        let tokio_side = tokio::process::Command::new("sh")
            .args(["-c", "echo tokio"])
            .output();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ours; sleep 1000 &"]);
        let ours = cmd.output_async(
            Options::new()
                .wait_delay(Duration::from_millis(100))
                .kill_tree_on_held_pipes(true),
        );
        let (t, o) = tokio::join!(tokio_side, ours);
        assert_eq!(t.unwrap().stdout, b"tokio\n");
        let o = o.unwrap();
        assert_eq!(
            (o.stdout.text().as_str(), o.outcome),
            ("ours\n", Outcome::PipesHeldOpen)
        );
        assert!(o.status.unwrap().success());
        // tokio reaps by pid, so it never took one of our statuses.
        assert_eq!(childfd::recovered_statuses(), recovered);
        // tokio's orphans (dropped above) are reaped at its next SIGCHLD;
        // give it one so that on_both finds no child left.
        let _ = tokio::process::Command::new("true").status().await;
        tokio::task::spawn_blocking(|| {
            childfd_testbin::eventually(SLACK, || childfd_testbin::children().is_empty())
        })
        .await
        .unwrap();
    });
}
