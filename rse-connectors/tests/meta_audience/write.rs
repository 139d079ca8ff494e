//! One write at a time, through the `Destination` methods the runner calls: what Meta
//! answers and what the destination makes of it.

use std::time::Duration;

use rse_core::testing::ChangeBatchBuilder;
use rse_core::*;

use super::common::*;
use crate::meta_server::{AUDIENCE, InvalidRows, Meta};

fn inserts(range: std::ops::RangeInclusive<i64>) -> ChangeBatch {
    range.fold(ChangeBatchBuilder::new(&schema(), "audience"), |b, id| b.change(Op::Insert, person(id))).build()
}

#[tokio::test]
async fn a_call_meta_refuses_whole_is_bisected_to_the_member_it_refuses() {
    let meta = Meta::start().await;
    meta.set_invalid_rows(InvalidRows::Reject);
    meta.refuse("EMAIL", &sha("user4@example.com"));
    let world = World::new(people(1..=8), destination(&meta), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!(report.counts.rejected.total(), 1, "only person 4: {report}");
    let reason = &report.rejections[0].reason;
    assert!(reason.contains("code=100"), "{reason}");
    assert!(!reason.contains(&sha("user4@example.com")) && !reason.contains("user4"), "{reason}");
    let mut others = people(1..=8);
    others.remove(3);
    assert_eq!(meta.audience(AUDIENCE), expected(&others));
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_replace_session_past_its_90_minutes_hands_the_rest_to_users() {
    let meta = Meta::start().await;
    let stranger = format!("EMAIL:{}", sha("stranger@example.com"));
    meta.lock()
        .audiences
        .by_id
        .get_mut(AUDIENCE)
        .unwrap()
        .members
        .insert(("EMAIL".into(), sha("stranger@example.com")));
    let d = rse_connectors::MetaAudienceDestination::new(config(&meta).with_replace_on_full_resync(true)).unwrap();
    let run = RunInfo::new("audience", 7, true, 0);
    d.begin_run(&run).await.unwrap();
    let out = d.write(&inserts(1..=10)).await.unwrap();
    assert!(out.outcomes.iter().all(|o| *o == ChangeOutcome::Applied));
    assert!(meta.audience(AUDIENCE).contains(&stranger), "nothing replaced before the session ends");

    meta.advance(Duration::from_secs(91 * 60));
    assert!(!meta.audience(AUDIENCE).contains(&stranger), "Meta ended the session: replaced with what it had");
    let out = d.write(&inserts(11..=20)).await.unwrap();
    assert!(out.outcomes.iter().all(|o| *o == ChangeOutcome::Applied));
    let report = d.finish_run(&run, &RunEnd::new(true)).await.unwrap();
    let figures = report.audience.unwrap();
    assert!(!figures.replaced);
    assert!(figures.notes.iter().any(|n| n.contains("90 minutes")), "{:?}", figures.notes);
    assert_eq!(meta.audience(AUDIENCE), expected(&people(1..=20)));
    assert_eq!(meta.calls("add"), 2, "the second batch went through /users, then its session was closed");
    meta.assert_no_violations();
}

#[tokio::test]
async fn removals_during_a_replace_need_no_call() {
    let meta = Meta::start().await;
    // Person 9 was sent by an earlier run; its key's memo holds what it was sent with.
    let earlier = destination(&meta).write(&inserts(9..=9)).await.unwrap();
    let memo = earlier.receipt(0).and_then(|r| r.memo.clone()).unwrap();
    assert!(meta.values(AUDIENCE, "EXTERN_ID").contains("C-9"));

    let d = rse_connectors::MetaAudienceDestination::new(config(&meta).with_replace_on_full_resync(true)).unwrap();
    let run = RunInfo::new("audience", 8, true, 0);
    d.begin_run(&run).await.unwrap();
    d.write(&inserts(1..=5)).await.unwrap();
    // Person 9 leaves while the replace runs: whoever is not uploaded goes, no call needed
    // (and /users would be refused).
    let delete =
        ChangeBatchBuilder::new(&schema(), "audience").versioned(Op::Delete, person(9), 1).with_memo(memo).build();
    let out = d.write(&delete).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied]);
    assert_eq!(meta.calls("remove"), 0);
    assert_eq!(out.audience.as_ref().map(|a| a.members_removed), Some(1));
    let report = d.finish_run(&run, &RunEnd::new(true)).await.unwrap();
    assert!(report.audience.unwrap().replaced);
    assert_eq!(meta.audience(AUDIENCE), expected(&people(1..=5)));
    meta.assert_no_violations();
}
