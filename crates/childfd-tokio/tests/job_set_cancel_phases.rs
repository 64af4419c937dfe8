//! `JobSet::cancel` on single jobs in every phase: queued in the set,
//! held at its spawn (a `pre_exec` gate), capturing, in a deadline's
//! grace (TERM ignored), and after its report (a no-op, also for an id
//! never pushed). Each job is reported exactly once, the cancelled ones
//! `Cancelled` (the one in its grace may be reported `TimedOut`: its
//! deadline came first), the others untouched, and nothing is left.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use childfd_testbin::{assert_no_survivors, new_tag};
use childfd_tokio::{Event, JobSet, Options, Outcome};
use common::gate::Gate;
use common::{on_both, sh};

#[test]
fn cancelling_single_jobs_in_every_phase_reports_each_once_and_leaves_nothing() {
    on_both(|flavor| async move {
        let tag = new_tag("cancel-phases");
        let gate = Arc::new(Gate::new());
        let mut jobs = JobSet::new(4);
        let capturing = jobs.push(sh("echo up; sleep 1000 & sleep 1000", &tag), Options::new());
        let in_grace = jobs.push(
            sh("trap '' TERM; echo up; sleep 1000 & sleep 1000", &tag),
            Options::new()
                .deadline(Duration::from_millis(50))
                .grace(Duration::from_secs(600)),
        );
        let held = jobs.push(
            gate.hold(sh("echo up; exec sleep 1000", &tag)),
            Options::new(),
        );
        let bystander = jobs.push(sh("sleep 0.2; echo fine", &tag), Options::new());
        let queued = jobs.push(sh("echo never", &tag), Options::new());
        let later = jobs.push(sh("echo later", &tag), Options::new());
        // Never pushed, and the queued one twice.
        jobs.cancel(later + 100);
        jobs.cancel(queued);
        jobs.cancel(queued);
        let mut reports = HashMap::new();
        let mut started = Vec::new();
        let all = async {
            while let Some(ev) = jobs.next().await {
                match ev {
                    Event::Started { id, .. } => {
                        started.push(id);
                        if started.len() == 3 {
                            // The three that run: capturing, in its grace
                            // (after its deadline), and the bystander.
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            jobs.cancel(capturing);
                            jobs.cancel(in_grace);
                            jobs.cancel(held); // still held at its spawn
                            let g = gate.clone();
                            tokio::task::spawn_blocking(move || {
                                assert!(g.wait_held(), "premise: the spawn was held");
                                g.open();
                            });
                        }
                    }
                    Event::Exited(r) | Event::TimedOut(r) | Event::Cancelled(r) => {
                        let id = r.id;
                        assert!(reports.insert(id, r).is_none(), "job {id} reported twice");
                        jobs.cancel(id); // after its report: nothing
                    }
                    other => panic!("{flavor:?}: unexpected {other:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("jobs hung");
        let outcome = |id| reports[&id].outcome;
        assert_eq!(reports.len(), 6, "{flavor:?}: {reports:?}");
        assert_eq!(outcome(capturing), Outcome::Cancelled, "{flavor:?}");
        assert!(
            matches!(outcome(in_grace), Outcome::Cancelled | Outcome::TimedOut),
            "{flavor:?}"
        );
        assert_eq!(outcome(held), Outcome::Cancelled, "{flavor:?}");
        assert_eq!(
            (outcome(queued), reports[&queued].pid),
            (Outcome::Cancelled, None)
        );
        assert_eq!(reports[&bystander].stdout.text(), "fine\n", "{flavor:?}");
        assert_eq!(reports[&later].stdout.text(), "later\n", "{flavor:?}");
        assert!(
            !started.contains(&queued),
            "{flavor:?}: the cancelled queued job started"
        );
        assert_eq!(
            jobs.summary().cancelled as usize,
            3 + usize::from(outcome(in_grace) == Outcome::Cancelled)
        );
        tokio::task::spawn_blocking(move || assert_no_survivors(&tag))
            .await
            .unwrap();
    });
}
