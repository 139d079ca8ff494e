//! Full syncs into the contract server: after every run the list holds exactly the
//! segment's identifiers (e-mail changes, deletes, consent, full refresh, lost answers),
//! quotas end or pace a run, tokens are refreshed, and Google's processing figures reach
//! the report and the run history.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use rse_connectors::GoogleDataManagerDestination;
use rse_connectors::google::datamanager::SCOPE;
use rse_connectors::saas::{OAuthRefreshConfig, SaasAuthConfig};
use rse_core::*;

use super::common::*;
use crate::datamanager_server::{DataManager, Fault, LIST_ID, QuotaKind};
use crate::oauth_server::{CLIENT_ID, CLIENT_SECRET, OAuthServer, REFRESH_TOKEN};

fn audience(dm: &DataManager) -> BTreeSet<String> {
    dm.audience(LIST_ID)
}

#[tokio::test]
async fn an_email_change_moves_the_member_to_its_new_hash_after_every_run() {
    let dm = DataManager::start().await;
    let world = World::new(members(1..=60, 0), config(&dm));
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    let figures = report.audience.clone().unwrap();
    assert_eq!((figures.members_added, figures.members_removed), (60, 0));
    assert_eq!(figures.identifiers_added, 60 + 20, "60 e-mail addresses and 20 phone numbers");

    // Ten members change their address: the old hash leaves, the new one arrives.
    for id in 1..=10 {
        world.source.upsert(member(id, 1));
    }
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    assert!(!audience(&dm).contains(&email_key(&email(1, 0))));
    let figures = report.audience.unwrap();
    assert_eq!((figures.members_added, figures.members_removed, figures.identifiers_removed), (10, 10, 10));

    // They change again, and ten rows leave the segment.
    for id in 1..=10 {
        world.source.upsert(member(id, 2));
    }
    for id in 51..=60 {
        world.source.remove(&key(id));
    }
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    // Removals went before additions, each request of one data type.
    let log = dm.log();
    let writes: Vec<&str> = log.iter().map(|l| l.endpoint).filter(|e| *e != "retrieve").collect();
    assert_eq!(writes.last(), Some(&"ingest"));
    let nothing = world.run().await;
    assert_eq!(nothing.counts.planned.total(), 0);
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_member_without_consent_is_not_sent_and_is_counted() {
    let dm = DataManager::start().await;
    let rows: Vec<Record> = (1..=20).map(|id| member_with(id, 0, id % 2 == 0)).collect();
    let world = World::new(rows, config(&dm));
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    assert_eq!(audience(&dm).iter().filter(|k| k.starts_with("email:")).count(), 10);
    assert_eq!(report.audience.as_ref().unwrap().withheld_no_consent, 10);
    assert_eq!(dm.denied_consent(), 0, "nothing without consent reached Google");
    let sent = dm.bodies("ingest");
    let consent = &sent[0]["audienceMembers"][0]["consent"];
    assert_eq!(consent["adUserData"], "CONSENT_GRANTED", "each member carries its consent: {}", sent[0]);

    // Member 2 withdraws consent: what it had leaves the list.
    world.source.upsert(member_with(2, 0, false));
    let report = world.run().await;
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    assert!(!audience(&dm).contains(&email_key(&email(2, 0))));
    let figures = report.audience.unwrap();
    assert_eq!((figures.withheld_no_consent, figures.members_removed), (1, 1));
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_full_refresh_replaces_the_list_with_the_segment() {
    let dm = DataManager::start().await;
    // Members someone else added long ago.
    let stray = [email_key("stray@example.com"), email_key("other@example.com")];
    {
        let mut s = dm.lock();
        let list = s.lists.get_mut(LIST_ID).unwrap();
        for k in &stray {
            list.members.insert(k.clone(), SystemTime::now() - Duration::from_secs(3600));
        }
    }
    let world = World::new(members(1..=30, 0), config(&dm).with_replace_on_full_resync(true));
    let report = world.run().await;
    assert!(!report.audience.unwrap().replaced, "an incremental run replaces nothing");
    let with_stray: BTreeSet<String> = expected(&world.source.rows()).into_iter().chain(stray.clone()).collect();
    assert_eq!(audience(&dm), with_stray);

    // Without replace_on_full_resync a full resync only sends everything again.
    let plain = World { source: world.source.clone(), state: world.state.clone(), config: config(&dm) };
    let report = plain.run_with(options().with_full_resync(true)).await;
    assert_eq!(report.counts.planned.total(), 30);
    assert!(!report.audience.unwrap().replaced);
    assert_eq!(audience(&dm), with_stray);

    let report = world.run_with(options().with_full_resync(true)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(report.audience.unwrap().replaced);
    assert_eq!(audience(&dm), expected(&world.source.rows()), "exactly the segment");
    assert_eq!(dm.accepted("removeAll"), 1);
    dm.assert_no_violations();
}

#[tokio::test]
async fn the_daily_quota_ends_the_run_and_the_next_day_completes_it() {
    let dm = DataManager::start().await;
    dm.set_per_day(Some(3));
    let world = World::new(members(1..=600, 0), config(&dm).with_max_members_per_request(100));
    let report = world.run_with(options().with_batch_rows(100)).await;
    assert!(matches!(report.status, RunStatus::QuotaExhausted { .. }), "{report}");
    assert_eq!(dm.refused(QuotaKind::PerDay), 1, "the run stops at the first refusal");
    let held = audience(&dm).len();
    assert!(held > 0 && held < expected(&world.source.rows()).len(), "{held}");

    dm.new_day();
    dm.set_per_day(None);
    let report = world.run_with(options().with_batch_rows(100)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn requests_are_paced_to_the_minute_quota_and_a_429_is_waited_out() {
    let dm = DataManager::start().await;
    // The per-minute quota, scaled down: 5 requests per rolling second, and the destination
    // paced to 4 a second (240 a minute).
    dm.set_per_minute(Some(5));
    dm.set_quota_window(Duration::from_secs(1));
    let config = config(&dm).with_max_members_per_request(50).with_requests_per_minute(240);
    let world = World::new(members(1..=500, 0), config.clone());
    let report = world.run_with(options().with_batch_rows(50)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(dm.refused(QuotaKind::PerMinute), 0, "paced below the quota");
    assert!(dm.max_in_window(Duration::from_secs(1)) <= 5);
    assert_eq!(audience(&dm), expected(&world.source.rows()));

    // A project whose quota others use up: 429s, waited out as Google's RetryInfo says.
    dm.set_per_minute(Some(2));
    dm.set_retry_info(Some(Duration::from_millis(300)));
    for id in 1..=500 {
        world.source.upsert(member(id, 1));
    }
    let report = world.run_with(options().with_batch_rows(50)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(dm.refused(QuotaKind::PerMinute) > 0);
    assert!(report.rate_limit_waits > 0, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn an_upload_whose_answer_is_lost_is_still_removed_later() {
    let dm = DataManager::start().await;
    // Every ingest lands, but its answer is lost, until the run gives up.
    dm.inject(Fault::LoseAck, 1_000);
    let world = World::new(members(1..=20, 0), config(&dm));
    let failed = world.job(options().with_max_attempts(2).with_initial_backoff(Duration::from_millis(5))).await;
    let report = failed.run().await;
    assert!(!report.as_ref().is_ok_and(|r| r.status.is_complete()), "{report:?}");
    assert_eq!(audience(&dm), expected(&world.source.rows()), "Google holds the members although no answer came");
    dm.lock().faults.clear();

    // The members change their addresses before any answer was acknowledged: the old hashes
    // still leave, from the identifiers recorded before the lost write.
    for id in 1..=20 {
        world.source.upsert(member(id, 1));
    }
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_member_google_refuses_by_name_is_rejected_and_the_others_are_added() {
    let dm = DataManager::start().await;
    dm.refuse_identifier(&email_key(&email(7, 0)), "INVALID_FORMAT");
    let world = World::new(members(1..=20, 0), config(&dm));
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!(report.rejections.len(), 1);
    let reason = &report.rejections[0].reason;
    assert!(
        reason.ends_with("refused the member (ingest): INVALID_FORMAT at user_data.user_identifiers[0]"),
        "{reason}"
    );
    assert!(!reason.to_lowercase().contains("user7"), "no value in a reason: {reason}");
    let others: Vec<Record> = world.source.rows().into_iter().filter(|r| r.values[0] != Value::Int(7)).collect();
    assert_eq!(audience(&dm), expected(&others));

    // Google takes it later: the refused change is sent again.
    dm.lock().refused.clear();
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_refusal_that_names_no_member_is_bisected_by_the_runner() {
    let dm = DataManager::start().await;
    dm.inject(Fault::Unlocated, 1);
    let world = World::new(members(1..=40, 0), config(&dm));
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(dm.lock().faults_answered, 1);
    assert!(dm.accepted("ingest") >= 2, "the batch went again in halves: {:?}", dm.log());
    assert_eq!(audience(&dm), expected(&world.source.rows()));
    dm.assert_no_violations();
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_the_run_completes() {
    let oauth = OAuthServer::start().await;
    let dm = DataManager::start().await;
    let tokens = oauth.inner.clone();
    dm.trust(move |token| {
        let s = tokens.lock().unwrap();
        s.tokens.get(token).is_some_and(|(_, expiry)| expiry.is_none_or(|e| tokio::time::Instant::now() < e))
    });
    let refresh = OAuthRefreshConfig::new(oauth.token_url(), CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN).with_scope(SCOPE);
    let mut config = config(&dm);
    config.auth = SaasAuthConfig::from(refresh);
    let world = World::new(members(1..=20, 0), config);
    assert_eq!(world.run().await.status, RunStatus::Succeeded);
    assert_eq!(oauth.lock().forms[0].get("scope").map(String::as_str), Some(SCOPE));

    // Google forgets every token it issued (revoked, or expired early).
    oauth.revoke_access_tokens();
    for id in 1..=5 {
        world.source.upsert(member(id, 1));
    }
    let before = oauth.lock().token_requests;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(oauth.lock().token_requests > before, "a new token was fetched");
    assert_eq!(audience(&dm), expected(&world.source.rows()));

    // A refresh token Google refuses ends the run as unauthorized, nothing lost.
    oauth.revoke_access_tokens();
    oauth.lock().refuse_always = Some((400, r#"{"error":"invalid_grant"}"#.to_owned()));
    world.source.upsert(member(6, 1));
    let report = world.job(options()).await.run().await;
    let unauthorized = match &report {
        Ok(r) => matches!(&r.status, RunStatus::Failed { .. }),
        Err(e) => e.to_string().contains("credentials") || e.to_string().contains("token"),
    };
    assert!(unauthorized, "{report:?}");
    dm.assert_no_violations();
}

#[tokio::test]
async fn google_processing_figures_reach_the_report_and_the_run_history() {
    let dm = DataManager::start().await;
    dm.set_processing_polls(2);
    // 12 of the 20 members' e-mail addresses are Google users (60 %); one member is
    // dropped in processing.
    dm.add_known_users((1..=12).map(|id| email_key(&email(id, 0))));
    dm.fail_in_processing(&email_key(&email(20, 0)));
    let world = World::new(members(1..=20, 0), config(&dm));
    let report = world.run().await;
    let figures = report.audience.clone().unwrap();
    let rate = figures.match_rate.clone().expect("a match rate");
    assert_eq!((rate.low_percent, rate.high_percent, rate.settled), (51, 60, true), "{rate}");
    assert_eq!(figures.platform_invalid, 1);
    assert_eq!(figures.platform_reasons.get("PROCESSING_ERROR_REASON_INVALID_FORMAT"), Some(&1));
    assert!(figures.notes.iter().any(|n| n.contains("never which members")), "{:?}", figures.notes);
    assert!(dm.calls("retrieve") >= 3, "polled past PROCESSING");

    let history = world.state.runs("audience", 1).await.unwrap();
    assert_eq!(history[0].audience.as_ref().and_then(|a| a.match_rate.clone()), Some(rate));
    dm.assert_no_violations();
}

#[tokio::test]
async fn status_reads_refused_for_their_quota_are_waited_out() {
    let dm = DataManager::start().await;
    // Two status reads a second; three uploads, each PROCESSING at its first read.
    dm.set_read_quota(Some(2), Duration::from_secs(1), Some(Duration::from_millis(200)));
    dm.add_known_users((1..=300).map(|id| email_key(&email(id, 0))));
    let config = config(&dm)
        .with_max_members_per_request(100)
        .with_status_wait(Duration::from_secs(30), Duration::from_millis(10));
    let world = World::new(members(1..=300, 0), config);
    let report = world.run_with(options().with_batch_rows(100)).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(dm.lock().reads.refused.values().sum::<u64>() > 0, "the read quota was hit");
    let rate = report.audience.unwrap().match_rate.expect("a match rate");
    assert_eq!((rate.low_percent, rate.high_percent, rate.settled), (91, 100, true), "{rate}");
    dm.assert_no_violations();
}

#[tokio::test]
async fn check_validates_a_synthetic_member_without_adding_it() {
    let dm = DataManager::start().await;
    destination(&dm).check().await.unwrap();
    let log = dm.log();
    assert_eq!((log.len(), log[0].validate_only, log[0].status), (1, true, 200));
    assert!(audience(&dm).is_empty());

    let mut wrong_list = config(&dm);
    wrong_list.user_list_id = "404".into();
    let error = GoogleDataManagerDestination::new(wrong_list).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains("INVALID_USER_LIST_ID") && error.contains("user_list_id"), "{error}");

    let mut other_account = config(&dm);
    other_account.operating_account.account_id = "5555555555".into();
    let error = GoogleDataManagerDestination::new(other_account).unwrap().check().await.unwrap_err();
    assert!(matches!(error, DestinationError::Unauthorized { .. }), "{error}");
    assert!(error.to_string().contains("5555555555"), "{error}");

    let error = GoogleDataManagerDestination::new(config(&dm).with_terms_of_service_accepted(false)).unwrap_err();
    assert!(error.to_string().contains("terms_of_service_accepted"), "{error}");
    dm.assert_no_violations();
}

#[tokio::test]
async fn a_validating_dry_run_has_google_check_every_request_and_applies_nothing() {
    let dm = DataManager::start().await;
    dm.refuse_identifier(&email_key(&email(7, 0)), "INVALID_FORMAT");
    let world = World::new(members(1..=20, 0), config(&dm));
    let dry = world.job(options().with_dry_run(true).with_validate_dry_run(true)).await;
    let report = dry.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert!(report.dry_run);
    assert_eq!(report.counts.rejected.total(), 1, "the member Google would refuse: {report}");
    assert!(report.rejections[0].reason.contains("INVALID_FORMAT"), "{:?}", report.rejections);
    let log = dm.log();
    assert!(!log.is_empty() && log.iter().all(|l| l.endpoint == "ingest" && l.validate_only), "{log:?}");
    assert!(audience(&dm).is_empty(), "a checked request applies nothing");
    assert!(world.state.snapshot("audience").is_empty(), "a dry run commits nothing");

    // The real run after it sends the whole segment; the refused member stays refused.
    let report = world.run().await;
    assert_eq!(report.counts.planned.total(), 20, "{report}");
    assert_eq!(report.counts.rejected.total(), 1, "{report}");
    dm.assert_no_violations();
}
