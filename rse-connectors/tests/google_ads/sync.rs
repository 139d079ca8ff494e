//! Full syncs into the contract server's list: the list holds exactly the segment's
//! identifiers after every run; refusals keep Google's reason and are retried; a lost answer
//! makes no second job; consent, full refresh, the daily allowance, a list not
//! allowlisted, and the match rate.

use std::time::Duration;

use rse_connectors::google::ads::GoogleAdsDestination;
use rse_core::memory::MemoryStateStore;
use rse_core::*;

use super::common::*;
use crate::google_ads_server::{Endpoint, Fault, GoogleAds, Op, Status, USER_LIST_ID};

fn audience(report: &SyncReport) -> AudienceReport {
    report.audience.clone().unwrap_or_else(|| panic!("no audience figures: {report}"))
}

/// Every job's operations are of one kind, and a batch's removes finished before its adds
/// started (jobs run one at a time, in creation order).
fn assert_jobs_well_formed(ga: &GoogleAds) {
    for job in ga.jobs() {
        let creates = job.ops.iter().filter(|op| matches!(op, Op::Create { .. })).count();
        let removes = job.ops.iter().filter(|op| matches!(op, Op::Remove { .. })).count();
        assert!(creates == 0 || removes == 0, "job {} mixed create and remove", job.id);
    }
}

#[tokio::test]
async fn the_list_holds_exactly_the_segment_s_identifiers_after_every_run() {
    let ga = GoogleAds::start().await;
    let mut segment = members(1..=300);
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    assert_eq!(audience(&report).members_added, 300);

    // New e-mail addresses for ten members, one member's address changes, five leave,
    // five join.
    for m in segment.iter_mut().take(10) {
        m.email = Some(format!("renamed{}@example.org", m.id));
    }
    segment[11].address = Some(("Ada".into(), "Byron".into(), "gb".into(), "SW1A 1AA".into()));
    segment.retain(|m| !(50..55).contains(&m.id));
    segment.extend(members(301..=305));
    world.set(&segment);
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment), "old e-mail addresses removed, new ones added");
    let figures = audience(&report);
    assert_eq!((figures.members_added, figures.members_removed), (16, 16), "{figures:?}");
    // Each run made its jobs, each SUCCEEDED; none was created twice.
    assert!(ga.jobs().iter().all(|j| j.status == Status::Success));
    assert_jobs_well_formed(&ga);

    // Nothing changed: nothing is sent.
    let jobs = ga.jobs().len();
    let report = world.run().await;
    assert_eq!(report.counts.planned.total(), 0, "{report}");
    assert_eq!(ga.jobs().len(), jobs);
    ga.assert_no_violations();
}

#[tokio::test]
async fn members_google_refuses_keep_its_reason_and_go_once_the_data_is_fixed() {
    let ga = GoogleAds::start().await;
    let mut segment = members(1..=40);
    for m in segment.iter_mut().filter(|m| m.id % 10 == 0) {
        m.mobile_id = Some("not-a-device-id".to_owned());
    }
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!((report.counts.applied.insert, report.counts.rejected.insert), (36, 4), "{report}");
    let rejections = world.state.rejections("audience");
    assert_eq!(rejections.len(), 4);
    for r in &rejections {
        assert!(r.reason.contains("INVALID_MOBILE_ID_FORMAT") && r.reason.contains("mobile_id"), "{}", r.reason);
        assert!(!r.reason.contains("not-a-device"), "a value in a reason: {}", r.reason);
    }
    let figures = audience(&report);
    assert_eq!(figures.platform_reasons.get("INVALID_MOBILE_ID_FORMAT"), Some(&4), "{figures:?}");
    let accepted: Vec<Member> = segment.iter().filter(|m| m.id % 10 != 0).cloned().collect();
    assert_eq!(held(&ga), expected(&accepted));

    // The same rows are refused again on the next run; fixed, they go.
    let report = world.run().await;
    assert_eq!(report.counts.rejected.total(), 4, "{report}");
    for m in segment.iter_mut().filter(|m| m.id % 10 == 0) {
        m.mobile_id = Some(format!("6D92078A-8246-4BA4-AE5B-7610486100{:02}", m.id));
    }
    world.set(&segment);
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_lost_answer_is_recognised_by_the_job_s_external_id() {
    for endpoint in [Endpoint::Create, Endpoint::AddOperations, Endpoint::Run] {
        let ga = GoogleAds::start().await;
        let segment = members(1..=50);
        let world = World::new(&segment, destination(&ga), options()).await;
        ga.inject(endpoint, Fault::LoseAck, 1);
        let report = world.run().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{endpoint:?}: {report}");
        assert_eq!(held(&ga), expected(&segment), "{endpoint:?}");
        let jobs = ga.jobs();
        assert_eq!(jobs.len(), 1, "{endpoint:?}: the batch's job was found again, not made twice");
        assert_eq!(jobs[0].status, Status::Success);
        assert_eq!(ga.lock().faults_answered, 1);
        ga.assert_no_violations();
    }
}

#[tokio::test]
async fn a_failed_job_is_sent_again_in_a_new_job() {
    let ga = GoogleAds::start().await;
    ga.fail_next_jobs(1);
    let segment = members(1..=20);
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    let statuses: Vec<Status> = ga.jobs().iter().map(|j| j.status).collect();
    assert_eq!(statuses, vec![Status::Failed, Status::Success]);
    ga.assert_no_violations();
}

#[tokio::test]
async fn members_without_consent_are_not_sent_and_are_counted() {
    let ga = GoogleAds::start().await;
    let mut segment = members(1..=30);
    for m in segment.iter_mut().filter(|m| m.id % 5 == 0) {
        m.consent = Some(false);
    }
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(audience(&report).withheld_no_consent, 6, "{report}");
    assert_eq!(held(&ga), expected(&segment), "withheld members are not in the list");
    let sent = ga.lock().bodies.clone();
    let consents: Vec<&serde_json::Value> = sent
        .iter()
        .filter(|(path, _)| path.ends_with(":addOperations"))
        .flat_map(|(_, body)| body["operations"].as_array().unwrap().iter())
        .map(|op| &op["create"]["consent"])
        .collect();
    assert_eq!(consents.len(), 24);
    assert!(consents.iter().all(|c| c["adUserData"] == "GRANTED"), "each member carries its consent");

    // A member withdrawing consent is removed.
    segment[0].consent = Some(false);
    world.set(&segment);
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    assert_eq!(audience(&report).members_removed, 1);
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_full_refresh_replaces_the_list_with_the_segment() {
    let ga = GoogleAds::start().await;
    // Someone else put members in the list.
    ga.lock()
        .jobs
        .lists
        .get_mut(USER_LIST_ID)
        .unwrap()
        .members
        .extend(["email:stray".to_owned(), "phone:stray".to_owned()]);
    let segment = members(1..=120);
    let state = MemoryStateStore::new();
    let source = rse_core::memory::MemorySource::new(schema(), records(&segment));
    let refresh = |full: bool| {
        let destination = GoogleAdsDestination::new(config(&ga).with_replace_on_full_resync(true)).unwrap();
        SyncJob::builder("audience")
            .source(source.clone())
            .destination(destination)
            .state(state.clone())
            .mode(Mode::Mirror)
            .options(options().with_full_resync(full))
    };
    let report = refresh(false).build().await.unwrap().run().await.unwrap();
    assert!(!audience(&report).replaced, "only a full resync replaces");
    assert!(held(&ga).contains("email:stray"));
    let report = refresh(true).build().await.unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(audience(&report).replaced, "{report}");
    assert_eq!(held(&ga), expected(&segment), "the strays are gone, the segment is whole");
    let with_remove_all: Vec<_> = ga.jobs().into_iter().filter(|j| j.ops.first() == Some(&Op::RemoveAll)).collect();
    assert_eq!(with_remove_all.len(), 1, "one removeAll, first in the run's first adds' job");
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_spent_daily_allowance_ends_the_run_cleanly_and_the_next_day_resumes() {
    let ga = GoogleAds::start().await;
    ga.set_daily_operations(Some(250));
    let segment = members(1..=400);
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    let RunStatus::QuotaExhausted { reason, .. } = &report.status else { panic!("{report}") };
    assert!(reason.contains("RESOURCE_EXHAUSTED") && reason.contains("daily"), "{reason}");
    assert_eq!(report.counts.applied.insert, 200, "two batches of 100 went: {report}");
    assert_eq!(report.counts.undelivered, 200, "{report}");
    assert_eq!(held(&ga).len(), expected(&segment[..200]).len());
    ga.new_day();
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 200, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_short_term_rate_limit_is_waited_out() {
    let ga = GoogleAds::start().await;
    ga.set_rate(Some((6, Duration::from_millis(300))), Duration::from_millis(300));
    let segment = members(1..=300);
    let world = World::new(&segment, destination(&ga), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(ga.refused().1 > 0, "the rate was hit");
    assert_eq!(held(&ga), expected(&segment));
    ga.assert_no_violations();
}

#[tokio::test]
async fn an_account_not_allowlisted_is_told_to_use_data_manager() {
    let ga = GoogleAds::start().await;
    ga.set_not_allowlisted(true);
    let world = World::new(&members(1..=10), destination(&ga), options()).await;
    let report = world.run().await;
    let RunStatus::Failed { reason, .. } = &report.status else { panic!("{report}") };
    assert!(
        reason.contains("CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE") && reason.contains("Data Manager"),
        "{reason}"
    );
    assert_eq!(report.counts.undelivered, 10, "{report}");
    ga.assert_no_violations();
}

#[tokio::test]
async fn the_match_rate_comes_from_the_job() {
    let ga = GoogleAds::start().await;
    let segment = members(1..=100);
    // Google knows a quarter of the members by their e-mail address.
    ga.set_known_users(
        segment
            .iter()
            .filter(|m| m.id % 4 == 0)
            .map(|m| format!("email:{}", sha(&m.email.as_ref().unwrap().trim().to_lowercase()))),
    );
    let world = World::new(&segment, destination(&ga), options().with_batch_rows(1_000)).await;
    let report = world.run().await;
    let rate = audience(&report).match_rate.unwrap_or_else(|| panic!("no match rate: {report}"));
    assert_eq!((rate.low_percent, rate.high_percent, rate.settled), (20, 30, true), "{rate}");
    assert!(report.to_string().contains("20–30 %"), "{report}");
    ga.assert_no_violations();
}

#[tokio::test]
async fn check_reads_the_list_and_writes_nothing() {
    let ga = GoogleAds::start().await;
    destination(&ga).check().await.unwrap();
    let wrong = GoogleAdsDestination::new(config(&ga).with_name("x")).unwrap();
    wrong.check().await.unwrap();
    let mut other = config(&ga);
    other.user_list = "424242".into();
    let e = GoogleAdsDestination::new(other).unwrap().check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Fatal { .. }) && e.to_string().contains("`user_list`"), "{e}");
    let mut bad_token = config(&ga);
    bad_token.developer_token = "nope".into();
    let e = GoogleAdsDestination::new(bad_token).unwrap().check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Unauthorized { .. }) && e.to_string().contains("developer_token"), "{e}");
    assert!(ga.jobs().is_empty());
    assert_eq!(ga.calls("search"), 3, "a refused token is answered before the search is counted");
    ga.assert_no_violations();
}

#[tokio::test]
async fn a_job_s_operations_go_in_requests_of_at_most_identifiers_per_request() {
    let ga = GoogleAds::start().await;
    // The server refuses (and records) a request over 25 identifiers.
    ga.set_identifiers_per_request(25);
    let segment = members(1..=100);
    let identifiers: usize = segment.iter().map(|m| m.keys().len()).sum();
    let destination = GoogleAdsDestination::new(config(&ga).with_identifiers_per_request(25)).unwrap();
    let world = World::new(&segment, destination, options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    let jobs = ga.jobs();
    assert_eq!(jobs.len(), 1, "one job for the batch");
    assert!(ga.calls("addOperations") as usize >= identifiers.div_ceil(25), "{identifiers} identifiers");
    ga.assert_no_violations();
}

#[tokio::test]
async fn consent_stated_for_the_list_goes_with_every_job() {
    let ga = GoogleAds::start().await;
    let consent = rse_connectors::google::RequestConsent::granted();
    let destination = GoogleAdsDestination::new(config(&ga).with_consent(consent)).unwrap();
    let segment = members(1..=150);
    let world = World::new(&segment, destination, options()).await;
    assert_eq!(world.run().await.status, RunStatus::Succeeded);
    assert_eq!(held(&ga), expected(&segment));
    let creates: Vec<serde_json::Value> =
        ga.lock().bodies.iter().filter(|(path, _)| path.ends_with(":create")).map(|(_, b)| b.clone()).collect();
    assert_eq!(creates.len(), 2);
    for body in creates {
        assert_eq!(
            body["job"]["customerMatchUserListMetadata"]["consent"],
            serde_json::json!({"adUserData": "GRANTED", "adPersonalization": "GRANTED"})
        );
    }
    ga.assert_no_violations();
}

#[tokio::test]
async fn an_interrupted_full_refresh_is_completed_by_the_next_full_resync() {
    let ga = GoogleAds::start().await;
    ga.lock().jobs.lists.get_mut(USER_LIST_ID).unwrap().members.insert("email:stray".to_owned());
    let segment = members(1..=300);
    let state = MemoryStateStore::new();
    let source = rse_core::memory::MemorySource::new(schema(), records(&segment));
    let full_resync = || {
        let destination = GoogleAdsDestination::new(config(&ga).with_replace_on_full_resync(true)).unwrap();
        SyncJob::builder("audience")
            .source(source.clone())
            .destination(destination)
            .state(state.clone())
            .mode(Mode::Mirror)
            .options(options().with_full_resync(true))
    };
    // The day's operations run out after two of three batches: the list is emptied and
    // holds only what went.
    ga.set_daily_operations(Some(250));
    let report = full_resync().build().await.unwrap().run().await.unwrap();
    assert!(matches!(report.status, RunStatus::QuotaExhausted { .. }), "{report}");
    assert!(audience(&report).replaced);
    assert_eq!(held(&ga), expected(&segment[..200]), "partial until a full resync completes");
    // Meanwhile someone adds to the list; the next full resync empties it again, and sends
    // every member again: a day with room for that.
    ga.lock().jobs.lists.get_mut(USER_LIST_ID).unwrap().members.insert("email:stray2".to_owned());
    ga.set_daily_operations(Some(400));
    ga.new_day();
    let report = full_resync().build().await.unwrap().run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(held(&ga), expected(&segment));
    ga.assert_no_violations();
}
