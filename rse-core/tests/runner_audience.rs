//! What the runner does for audience destinations (an ad platform's customer list): the
//! identifiers a member is about to be sent with are recorded with the change's intent, so a
//! write whose answer is lost can still be undone by the key's next change or delete; the
//! destination's run hooks; audience figures summed into the report and the run history.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::audience::{Audience, emails};
use common::*;
use rse_core::*;

fn person(id: i64, email: &str) -> Record {
    Record::new(vec![Value::Int(id), Value::String(email.into()), Value::Float(0.5), Value::Timestamp(1_000)])
}

fn segment(w: &World) -> BTreeSet<String> {
    w.source
        .rows()
        .iter()
        .filter_map(|r| match r.get(1) {
            Some(Value::String(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn opts() -> SyncOptions {
    SyncOptions::default()
        .with_batch_rows(5)
        .with_linger(Duration::from_millis(5))
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(1))
}

async fn lost_answers_then_changes(intent_memos: bool) -> (BTreeSet<String>, BTreeSet<String>) {
    let w = World::new((1..=10).map(|i| person(i, &format!("p{i}@example.com"))).collect());
    let audience = Audience::new(intent_memos, emails);
    let sync = w.sync_mode_to(audience.clone(), Mode::Mirror, opts()).await;
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
    assert_eq!(audience.members(), segment(&w));

    // New addresses reach the platform, but every answer is lost: nothing is acknowledged.
    for i in 1..=3 {
        w.source.upsert(person(i, &format!("new{i}@example.com")));
    }
    audience.inner.lock().unwrap().lose_answers = u32::MAX;
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::Failed { .. } | RunStatus::CircuitOpen { .. }), "{report}");
    assert_eq!(report.counts.applied.total(), 0, "{report}");

    // Before the next run, one of them leaves the segment and one changes again.
    audience.inner.lock().unwrap().lose_answers = 0;
    w.source.remove(&key(1));
    w.source.upsert(person(2, "newer2@example.com"));
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    (audience.members(), segment(&w))
}

#[tokio::test]
async fn identifiers_sent_with_a_lost_answer_are_undone_by_the_keys_next_change_and_delete() {
    let (members, segment) = lost_answers_then_changes(true).await;
    assert_eq!(members, segment, "the audience holds exactly the segment");
}

#[tokio::test]
async fn without_intent_memos_a_lost_answer_leaves_members_behind() {
    // What the intent memo is for: the same sequence without it strands the addresses the
    // lost writes added (new1 of a member that left, new2 replaced by newer2).
    let (members, segment) = lost_answers_then_changes(false).await;
    let stranded: BTreeSet<String> = members.difference(&segment).cloned().collect();
    assert_eq!(stranded, BTreeSet::from(["new1@example.com".to_owned(), "new2@example.com".to_owned()]));
}

#[tokio::test]
async fn run_hooks_bracket_each_run_that_writes_and_audience_figures_reach_the_report_and_history() {
    let w = World::new((1..=12).map(|i| person(i, &format!("p{i}@example.com"))).collect());
    let audience = Audience::new(true, emails);
    let sync = w.sync_mode_to(audience.clone(), Mode::Mirror, opts()).await;
    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{first}");
    let figures = first.audience.clone().expect("audience figures in the report");
    assert_eq!((figures.members_added, figures.members_removed), (12, 0));
    let rate = figures.match_rate.clone().expect("the end of run's match rate");
    assert_eq!((rate.matched, rate.received, rate.low_percent), (Some(6), Some(12), 50));
    assert!(first.to_string().contains("audience: 12 members added, 0 removed, match rate 50 %"), "{first}");

    // Nothing to send: no hooks, no figures.
    let idle = sync.run().await.unwrap();
    assert_eq!(idle.audience, None);

    w.source.remove(&key(12));
    w.source.upsert(person(1, "moved@example.com"));
    let third = sync.run().await.unwrap();
    let figures = third.audience.clone().unwrap();
    assert_eq!((figures.members_added, figures.members_removed, figures.identifiers_removed), (1, 2, 2));
    {
        let inner = audience.inner.lock().unwrap();
        assert_eq!(inner.begun, vec![first.run_id, third.run_id], "begin_run once per run that writes");
        assert_eq!(inner.finished, vec![(first.run_id, true), (third.run_id, true)]);
    }
    let history = w.state.runs("customers", 10).await.unwrap();
    let recorded = history.iter().find(|r| r.run_id == third.run_id).unwrap();
    assert_eq!(recorded.audience, third.audience, "the run history keeps the audience figures");
}

#[tokio::test]
async fn a_run_that_leaves_changes_undelivered_tells_the_destination_so() {
    let w = World::new((1..=6).map(|i| person(i, &format!("p{i}@example.com"))).collect());
    let audience = Audience::new(true, emails);
    audience.inner.lock().unwrap().lose_answers = u32::MAX;
    let sync = w.sync_to(audience.clone(), opts()).await;
    let report = sync.run().await.unwrap();
    assert!(!report.status.is_complete(), "{report}");
    assert_eq!(audience.inner.lock().unwrap().finished, vec![(report.run_id, false)]);
}

#[tokio::test]
async fn a_full_resync_that_did_not_complete_is_resumed_by_the_next_run() {
    let w = World::new((1..=8).map(|i| person(i, &format!("p{i}@example.com"))).collect());
    let audience = Audience::new(true, emails);
    let plain = w.sync_mode_to(audience.clone(), Mode::Mirror, opts()).await;
    assert_eq!(plain.run().await.unwrap().status, RunStatus::Succeeded);

    // The full resync fails part way: every answer is lost.
    let full = w.sync_mode_to(audience.clone(), Mode::Mirror, opts().with_full_resync(true)).await;
    audience.inner.lock().unwrap().lose_answers = u32::MAX;
    let cut_short = full.run().await.unwrap();
    assert!(!cut_short.status.is_complete(), "{cut_short}");
    audience.inner.lock().unwrap().lose_answers = 0;

    // The next ordinary run resumes it: every record is sent, not only what changed.
    let resumed = plain.run().await.unwrap();
    assert_eq!(resumed.status, RunStatus::Succeeded, "{resumed}");
    assert!(resumed.full_resync, "{resumed}");
    assert_eq!(resumed.counts.applied.total(), 8, "{resumed}");
    // Once one completed, runs are ordinary again.
    let after = plain.run().await.unwrap();
    assert!(!after.full_resync);
    assert_eq!(after.counts.planned.total(), 0, "{after}");
}

#[tokio::test]
async fn a_validating_dry_run_against_a_destination_that_cannot_check_goes_on_unchecked() {
    let w = World::new((1..=12).map(|i| person(i, &format!("p{i}@example.com"))).collect());
    let audience = Audience::new(true, emails);
    let dry =
        w.sync_mode_to(audience.clone(), Mode::Mirror, opts().with_dry_run(true).with_validate_dry_run(true)).await;
    let report = dry.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.planned.total(), 12, "{report}");
    assert_eq!(report.counts.undelivered, 0, "{report}");
    assert!(audience.members().is_empty(), "nothing written");
    assert!(w.state.snapshot("customers").is_empty(), "nothing committed");
}
