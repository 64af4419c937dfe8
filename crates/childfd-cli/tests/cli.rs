//! The built `childfd` binary: each exit-code rule and each of the three
//! failures from the README, checking that nothing is left running.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag};
use common::childfd;

#[test]
fn the_exit_code_is_the_programs_own() {
    let tag = new_tag("cli-code");
    for n in [0, 1, 3, 42, 255] {
        let r = childfd(
            &tag,
            &[
                "run",
                "--",
                "sh",
                "-c",
                &format!("echo out; echo err >&2; exit {n}"),
            ],
        );
        assert_eq!(r.code, n, "{}", r.stderr);
        assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    }
    assert_no_survivors(&tag);
}

#[test]
fn a_program_killed_by_signal_n_gives_128_plus_n() {
    let tag = new_tag("cli-signal");
    for (sig, code) in [("TERM", 143), ("KILL", 137), ("INT", 130)] {
        let r = childfd(&tag, &["run", "--", "sh", "-c", &format!("kill -{sig} $$")]);
        assert_eq!(r.code, code, "{sig}: {}", r.stderr);
    }
    assert_no_survivors(&tag);
}

#[test]
fn a_timeout_gives_124_and_leaves_no_sleep_behind() {
    let tag = new_tag("cli-timeout");
    let r = childfd(
        &tag,
        &[
            "run",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            "sleep 300; true",
        ],
    );
    assert_eq!(r.code, 124, "{}", r.stderr);
    assert!(
        r.elapsed < Duration::from_secs(1) + Duration::from_secs(10),
        "{:?}",
        r.elapsed
    );
    assert!(r.stderr.contains("timed out after 1.0s"), "{}", r.stderr);
    assert_no_survivors(&tag);
}

#[test]
fn a_grandchild_holding_the_pipe_cannot_hang_the_command() {
    let tag = new_tag("cli-held");
    let r = childfd(
        &tag,
        &[
            "run",
            "--wait-delay",
            "1s",
            "--",
            "sh",
            "-c",
            "sleep 30 & echo hi",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "hi\n");
    assert!(
        r.elapsed < Duration::from_secs(1) + Duration::from_secs(10),
        "{:?}",
        r.elapsed
    );
    assert!(
        r.stderr.contains("held by sleep (pid "),
        "the holder is named: {}",
        r.stderr
    );
    assert_no_survivors(&tag);
}

#[test]
fn a_missing_program_gives_127_and_one_line() {
    let tag = new_tag("cli-missing");
    let r = childfd(&tag, &["run", "--", "/no/such/program"]);
    assert_eq!(r.code, 127);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("/no/such/program") && r.stderr.contains("No such file"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("No such file").count(),
        1,
        "the OS reason is named once: {}",
        r.stderr
    );
}

#[test]
fn a_program_that_cannot_be_executed_gives_126() {
    let tag = new_tag("cli-noexec");
    let file = std::env::temp_dir().join(format!("childfd-cli-noexec-{}", std::process::id()));
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = childfd(&tag, &["run", "--", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(r.code, 126, "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
}

#[test]
fn json_reports_status_outcome_durations_bytes_and_holders() {
    let tag = new_tag("cli-json");
    let r = childfd(
        &tag,
        &[
            "run",
            "--json",
            "--wait-delay",
            "300ms",
            "--",
            "sh",
            "-c",
            "printf abc; sleep 30 & exit 5",
        ],
    );
    assert_eq!(r.code, 5, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(r.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"]["code"], 5);
    assert_eq!(report["outcome"], "pipes_held_open");
    assert_eq!(report["exit_code"], 5);
    assert_eq!(report["stdout"]["bytes"], 3);
    assert_eq!(report["stdout"]["passed"], 3);
    assert_eq!(report["holders"][0]["name"], "sleep");
    assert_eq!(report["schema_version"], 1);
    assert!(report["durations_ms"]["total"].as_f64().unwrap() >= 300.0);
    assert!(report["durations_ms"]["until_exit"].as_f64().is_some());
    assert_no_survivors(&tag);
    // A spawn failure is reported too.
    let r = childfd(&tag, &["run", "--json", "--", "/no/such/program"]);
    let report: serde_json::Value = serde_json::from_str(r.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            report["exit_code"].as_u64(),
            report["error"]["stage"].as_str()
        ),
        (Some(127), Some("exec"))
    );
    assert_eq!(report["outcome"], "spawn_failed");
    // One shape for every outcome: the same keys as a run's report.
    let ran: serde_json::Value = serde_json::from_str(
        childfd(&tag, &["run", "--json", "true"])
            .stderr
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&report), keys(&ran));
}

#[test]
fn max_output_passes_the_first_bytes_and_counts_the_rest() {
    let tag = new_tag("cli-max");
    let r = childfd(
        &tag,
        &[
            "run",
            "--max-output",
            "1K",
            "--",
            "sh",
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' x",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.len(), 1024);
    assert!(
        r.stderr.contains("passed 1024 bytes, dropped 98976"),
        "{}",
        r.stderr
    );
}

#[test]
fn cgroup_containment_kills_a_setsid_escapee_and_removes_its_cgroup() {
    // Five times: removing the leaf before exit races with the killed
    // members' exit, and a single run can miss a leak.
    for _ in 0..5 {
        let tag = new_tag("cli-cgroup");
        let script = "setsid sleep 30 & echo x";
        let r = childfd(
            &tag,
            &[
                "run",
                "--contain",
                "cgroup",
                "--wait-delay",
                "100ms",
                "--",
                "sh",
                "-c",
                script,
            ],
        );
        if r.code == 125 && r.stderr.contains("cgroup") {
            eprintln!("WARNING: no writable cgroup v2 here: {}", r.stderr);
            return;
        }
        assert_eq!((r.code, r.stdout.as_str()), (0, "x\n"), "{}", r.stderr);
        assert!(r.stderr.contains("held by sleep"), "{}", r.stderr);
        assert_no_survivors(&tag);
        // The program's cgroup leaf was removed before childfd exited.
        let dir = childfd_testbin::own_cgroup_dir().expect("cgroup v2");
        let left = childfd_testbin::cgroup_leaves_of(&dir, r.pid);
        for l in &left {
            let _ = std::fs::remove_dir(l);
        }
        assert!(left.is_empty(), "childfd left cgroup leaves: {left:?}");
    }
}
