//! Full syncs into the contract server: after every run Meta holds exactly the identifiers
//! of the segment's consenting members, whatever happened on the way.

use std::time::Duration;

use rse_connectors::MetaAudienceDestination;
use rse_core::*;

use super::common::*;
use crate::meta_server::{AD_ACCOUNT, AUDIENCE, Fault, Meta, TOKEN};

#[tokio::test]
async fn an_email_change_removes_the_old_hash_and_adds_the_new_one() {
    let meta = Meta::start().await;
    let mut rows = people(1..=60);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    let figures = World::figures(&report);
    assert_eq!((figures.members_added, figures.members_removed), (60, 0));

    // Ten people change their e-mail address, five leave, two join.
    for id in 1..=10 {
        rows[id as usize - 1] = person_with(id, &format!("renamed{id}@example.org"), true);
    }
    rows.retain(|r| !matches!(r.values[0], Value::Int(id) if (51..=55).contains(&id)));
    rows.extend([person(61), person(62)]);
    world.source.set_rows(rows.clone());
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows), "exactly the segment's identifiers");
    let old = format!("EMAIL:{}", sha("user1@example.com"));
    assert!(!meta.audience(AUDIENCE).contains(&old), "the old hash is gone");
    let figures = World::figures(&report);
    assert_eq!(figures.members_added, 12, "the ten renamed and the two new: {figures:?}");
    assert_eq!(figures.members_removed, 15, "the ten old addresses and the five who left: {figures:?}");
    assert_eq!(figures.identifiers_removed, 10 + 5 * 3);

    // Nothing changed: nothing sent.
    let calls = meta.calls("add") + meta.calls("remove");
    let report = world.run().await;
    assert_eq!(report.counts.planned.total(), 0);
    assert_eq!(meta.calls("add") + meta.calls("remove"), calls);
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));

    // Every add carried the run's session, batch_seq from 1.
    let sent = meta.sent();
    let adds: Vec<_> = sent.iter().filter(|s| s.edge == crate::meta_server::Edge::Add).collect();
    assert!(adds.iter().all(|s| s.schema == ["EXTERN_ID", "EMAIL", "PHONE"]), "multi-key rows");
    let first = adds[0].session.as_ref().unwrap();
    assert_eq!(first["batch_seq"], 1);
    let first_run: Vec<&serde_json::Value> =
        adds.iter().map(|s| s.session.as_ref().unwrap()).filter(|s| s["session_id"] == first["session_id"]).collect();
    let seqs: Vec<i64> = first_run.iter().map(|s| s["batch_seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "three batches of 25, then the last row again with last_batch_flag");
    assert!(first_run.iter().take(3).all(|s| s["last_batch_flag"] == false));
    assert_eq!(first_run[3]["last_batch_flag"], true);
    let second = adds.iter().map(|s| &s.session.as_ref().unwrap()["session_id"]).find(|id| **id != first["session_id"]);
    assert!(second.is_some(), "the next run has a session of its own");
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_member_without_consent_is_not_sent_and_is_removed_when_consent_is_withdrawn() {
    let meta = Meta::start().await;
    let mut rows = people(1..=20);
    rows[4] = person_with(5, &email(5), false);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    assert!(!meta.values(AUDIENCE, "EXTERN_ID").contains("C-5"), "withheld");
    assert_eq!(World::figures(&report).withheld_no_consent, 1);

    rows[6] = person_with(7, &email(7), false);
    world.source.set_rows(rows.clone());
    let report = world.run().await;
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    let figures = World::figures(&report);
    assert_eq!((figures.withheld_no_consent, figures.members_removed), (1, 1), "{figures:?}");
    meta.assert_no_violations();
}

#[tokio::test]
async fn rows_meta_drops_are_counted_with_its_reason_and_never_named() {
    let meta = Meta::start().await;
    meta.refuse("EMAIL", &sha("user3@example.com"));
    meta.refuse("EMAIL", &sha("user8@example.com"));
    let rows = people(1..=10);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "Meta's answer is a success: {report}");
    assert_eq!(report.counts.applied.total(), 10, "Meta does not say which rows it dropped");
    let figures = World::figures(&report);
    assert_eq!(figures.platform_invalid, 2);
    assert_eq!(figures.platform_reasons.get("Invalid entry"), Some(&2), "{figures:?}");
    assert!(
        figures.notes.iter().any(|n| n.contains("without a row index") && n.contains("2 rows")),
        "{:?}",
        figures.notes
    );
    let shown = format!("{report} {}", serde_json::to_string(&report).unwrap());
    assert!(!shown.contains(&sha("user3@example.com")), "a sample (a hash of personal data) is never kept");
    assert!(!shown.to_lowercase().contains("user3@"), "nor a value");
    // The run history holds the same figures.
    let history = world.state.runs("audience", 1).await.unwrap();
    assert_eq!(history[0].audience.as_ref().map(|a| a.platform_invalid), Some(2));
    meta.assert_no_violations();
}

#[tokio::test]
async fn throttling_with_code_80003_is_waited_out_and_the_run_completes() {
    let meta = Meta::start().await;
    // Two writes per second: the run's writes outrun it.
    meta.set_buc(AD_ACCOUNT, 6, Duration::from_secs(1), 3);
    let rows = people(1..=100);
    let world = World::new(rows.clone(), destination(&meta), options().with_max_attempts(20)).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(meta.throttles(80003) > 0, "the run was throttled");
    assert!(report.rate_limit_waits > 0, "and waited");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    meta.assert_no_violations();
}

#[tokio::test]
async fn usage_headers_come_back_as_quota_feedback() {
    let meta = Meta::start().await;
    meta.set_buc(AD_ACCOUNT, 1_000, Duration::from_secs(3600), 3);
    let world = World::new(people(1..=50), destination(&meta), options()).await;
    let report = world.run().await;
    let window = report.quota.and_then(|q| q.window).unwrap_or_else(|| panic!("no quota in {report}"));
    assert_eq!(window.limit, Some(100), "Meta reports percentages");
    let used = 100 - window.remaining;
    assert!((1..=10).contains(&used), "{window:?}");
    meta.assert_no_violations();
}

#[tokio::test]
async fn an_hour_long_throttle_ends_the_run_and_the_next_run_resumes() {
    let meta = Meta::start().await;
    // Two writes an hour.
    meta.set_buc(AD_ACCOUNT, 6, Duration::from_secs(3600), 3);
    let rows = people(1..=100);
    let world =
        World::new(rows.clone(), destination(&meta), options().with_max_rate_limit_wait(Duration::from_secs(5))).await;
    let report = world.run().await;
    let RunStatus::RateLimited { retry_after, .. } = report.status else { panic!("{report}") };
    assert!(retry_after >= Duration::from_secs(58 * 60), "Meta's estimated_time_to_regain_access: {retry_after:?}");
    let held = meta.audience(AUDIENCE).len();
    assert!(held > 0 && held < expected(&rows).len(), "what was acknowledged is in: {held}");

    meta.advance(Duration::from_secs(3600));
    meta.set_buc(AD_ACCOUNT, 190_000, Duration::from_secs(3600), 3);
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    meta.assert_no_violations();
}

#[tokio::test]
async fn an_expired_token_ends_the_run_as_unauthorized_and_keeps_every_change() {
    let meta = Meta::start().await;
    let rows = people(1..=100);
    meta.token_uses(TOKEN, 2);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert!(matches!(report.status, RunStatus::Failed { .. }), "{report}");
    assert!(report.to_string().contains("190"), "the code is named: {report}");
    assert!(meta.audience(AUDIENCE).len() < expected(&rows).len());

    meta.add_token(TOKEN);
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows), "nothing was lost");
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_full_refresh_replaces_the_audience_through_usersreplace() {
    let meta = Meta::start().await;
    let rows = people(1..=80);
    let config = config(&meta).with_replace_on_full_resync(true);
    let world = World::new(rows.clone(), MetaAudienceDestination::new(config.clone()).unwrap(), options()).await;
    world.run().await;
    // Someone else's upload, and ten people who left (a full resync plans no deletes): the
    // replace drops them.
    let stranger = ("EMAIL".to_owned(), sha("stranger@example.com"));
    meta.lock().audiences.by_id.get_mut(AUDIENCE).unwrap().members.insert(stranger);
    let rows = people(1..=70);
    world.source.set_rows(rows.clone());
    let job = SyncJob::builder("audience")
        .source(world.source.clone())
        .destination(MetaAudienceDestination::new(config).unwrap())
        .state(world.state.clone())
        .mode(Mode::Mirror)
        .options(options().with_full_resync(true))
        .build()
        .await
        .unwrap();
    let report = job.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows), "exactly the segment");
    assert!(World::figures(&report).replaced, "{:?}", report.audience);
    let state = meta.audience_state(AUDIENCE);
    assert_eq!((state.replaced, state.replacing), (1, None));
    assert!(meta.calls("replace") >= 4, "the members in batches of one session, then its last batch");
    // An ordinary run after it keeps the audience as it is.
    let report = world.run().await;
    assert!(matches!(report.status, RunStatus::Succeeded), "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_full_refresh_cut_short_leaves_what_it_uploaded_and_the_next_run_completes_it() {
    let meta = Meta::start().await;
    let rows = people(1..=80);
    let config = config(&meta).with_replace_on_full_resync(true);
    let destination = MetaAudienceDestination::new(config).unwrap();
    let world = World::new(rows.clone(), destination, options().with_full_resync(true).with_max_attempts(2)).await;
    // The first batch fails for good (both attempts); the others land: the run ends without
    // delivering everything.
    meta.inject(Fault::ServerError, 2);
    let report = world.run().await;
    assert_ne!(report.status, RunStatus::Succeeded, "{report}");
    let figures = World::figures(&report);
    assert!(!figures.replaced);
    assert!(figures.notes.iter().any(|n| n.contains("did not deliver")), "{:?}", figures.notes);
    assert!(meta.audience_state(AUDIENCE).replacing.is_none(), "the replace was closed, not left blocking /users");

    let job = SyncJob::builder("audience")
        .source(world.source.clone())
        .destination(destination_of(&meta))
        .state(world.state.clone())
        .mode(Mode::Mirror)
        .options(options())
        .build()
        .await
        .unwrap();
    let report = job.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    meta.assert_no_violations();
}

fn destination_of(meta: &Meta) -> MetaAudienceDestination {
    destination(meta)
}

#[tokio::test]
async fn the_match_rate_is_read_from_the_runs_session_into_the_report_and_the_history() {
    let meta = Meta::start().await;
    let rows = people(1..=40);
    meta.know((1..=10).map(|id| ("EMAIL", sha(&format!("user{id}@example.com")))));
    let world = World::new(rows, destination(&meta), options()).await;
    let report = world.run().await;
    let rate = World::figures(&report).match_rate.unwrap_or_else(|| panic!("no match rate: {report}"));
    // Meta counts the row re-sent to close the session twice; the report does not.
    assert_eq!((rate.matched, rate.received), (Some(10), Some(40)), "{rate:?}");
    assert_eq!((rate.low_percent, rate.high_percent), (25, 25));
    assert!(rate.settled, "the session finished");
    let history = world.state.runs("audience", 1).await.unwrap();
    assert_eq!(history[0].audience.as_ref().and_then(|a| a.match_rate.clone()), Some(rate));

    // While Meta still processes, the rate is there but not settled.
    meta.set_settle_reads(1);
    world.source.set_rows(people(1..=45));
    let report = world.run().await;
    let rate = World::figures(&report).match_rate.unwrap();
    assert!(!rate.settled, "{rate:?}");
    meta.assert_no_violations();
}

#[tokio::test]
async fn check_reads_the_audience_and_names_what_is_wrong() {
    let meta = Meta::start().await;
    let d = destination(&meta);
    d.check().await.unwrap();
    assert_eq!(meta.calls("add") + meta.calls("remove"), 0, "no write");
    meta.restrict(AUDIENCE, true);
    let e = d.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Fatal { .. }) && e.to_string().contains("Audience Manager"), "{e}");
    meta.restrict(AUDIENCE, false);
    meta.set_not_admin(AD_ACCOUNT);
    let e = d.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Unauthorized { .. }) && e.to_string().contains("admin"), "{e}");
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_restricted_audience_ends_the_run_with_every_change_kept() {
    let meta = Meta::start().await;
    meta.restrict(AUDIENCE, true);
    let rows = people(1..=10);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert!(matches!(&report.status, RunStatus::Failed { reason, .. } if reason.contains("1713230")), "{report}");
    meta.restrict(AUDIENCE, false);
    assert_eq!(world.run().await.status, RunStatus::Succeeded);
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    meta.assert_no_violations();
}

#[tokio::test]
async fn lost_answers_and_server_errors_are_sent_again() {
    let meta = Meta::start().await;
    meta.inject(Fault::LoseAck, 2);
    meta.inject(Fault::ServerError, 2);
    meta.inject(Fault::Throttle(613), 1);
    let rows = people(1..=60);
    let world = World::new(rows.clone(), destination(&meta), options()).await;
    let report = world.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.audience(AUDIENCE), expected(&rows));
    assert_eq!(meta.lock().faults_answered, 5);
    meta.assert_no_violations();
}

#[tokio::test]
async fn a_date_of_birth_goes_as_doby_dobm_and_dobd_and_leaves_with_its_member() {
    use rse_connectors::MetaAudienceConfig;
    use rse_connectors::audience::AudienceFields;
    use rse_core::memory::{MemorySource, MemoryStateStore};

    let meta = Meta::start().await;
    let schema = Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("born", DataType::Date),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc();
    // 1990-07-04 and 1985-12-25, as days since 1970-01-01.
    let row = |id: i64, born: i32| {
        Record::new(vec![Value::Int(id), Value::String(format!("born{id}@example.com")), Value::Date(born)])
    };
    let source = MemorySource::new(schema, vec![row(1, 7_489), row(2, 5_837)]);
    let fields = AudienceFields::new().email("email").date_of_birth("born");
    let config = MetaAudienceConfig::new(AUDIENCE, TOKEN, fields).with_base_url(meta.base_url());
    let job = SyncJob::builder("audience")
        .source(source.clone())
        .destination(MetaAudienceDestination::new(config).unwrap())
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(options())
        .build()
        .await
        .unwrap();
    let report = job.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    // Each part normalised as Meta's table says (YYYY, MM, DD), then hashed.
    assert_eq!(meta.values(AUDIENCE, "DOBY"), [sha("1985"), sha("1990")].into_iter().collect());
    assert_eq!(meta.values(AUDIENCE, "DOBM"), [sha("07"), sha("12")].into_iter().collect());
    assert_eq!(meta.values(AUDIENCE, "DOBD"), [sha("04"), sha("25")].into_iter().collect());
    let sent = meta.sent();
    assert!(sent.iter().all(|s| !s.schema.contains(&"DOB".to_owned())), "no single date key is sent");

    // The second member leaves: its row goes with its date's parts.
    source.set_rows(vec![row(1, 7_489)]);
    let report = job.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(meta.values(AUDIENCE, "DOBY"), [sha("1990")].into_iter().collect());
    assert_eq!(meta.values(AUDIENCE, "EMAIL"), [sha("born1@example.com")].into_iter().collect());

    // A corrected date alone: the member is sent again with it, and no removal row goes out
    // for the old date's parts (they name no one on their own).
    let removals = |meta: &Meta| meta.sent().iter().filter(|s| s.edge == crate::meta_server::Edge::Remove).count();
    let before = removals(&meta);
    source.set_rows(vec![row(1, 7_490)]);
    let report = job.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(removals(&meta), before, "no removal of weak keys alone");
    assert!(meta.values(AUDIENCE, "DOBD").contains(&sha("05")));
    meta.assert_no_violations();
}
