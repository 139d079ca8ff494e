//! Full syncs into the contract server: refusals kept with HubSpot's reason and retried,
//! Mirror deletes by record id (and of records whose creation's answer was lost), tokens that expire mid-run, a daily allowance spent
//! mid-run, and pacing to the burst limit.

use std::time::{Duration, Instant};

use rse_connectors::HubSpotDestination;
use rse_connectors::hubspot::{ApiVersion, BurstLimit};
use rse_connectors::saas::{OAuthRefreshConfig, SaasAuthConfig};
use rse_core::*;
use serde_json::json;

use super::common::*;
use crate::hubspot_server::{Fault, OAuthApp, Policy, TOKEN, Version};

/// The number in `user<n>@example.com`.
fn number(email: &str) -> i64 {
    email.trim_start_matches("user").split('@').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn refused_rows_keep_hubspot_s_reason_are_retried_each_run_and_go_once_the_rule_is_lifted() {
    for version in VERSIONS {
        let hs = server().await;
        // One row in a hundred breaks the account's rule; its message repeats the values.
        hs.set_rule(|input| {
            (number(input.id) % 100 == 0).then(|| {
                let name = input.properties["firstname"].as_str().unwrap_or_default();
                format!("{} ({name}) is on the blocklist", input.id)
            })
        });
        let w = World::new(contacts(1..=400), destination(&hs, version), Mode::Mirror, options()).await;
        let report = w.run().await;
        assert_eq!(report.status, RunStatus::CompletedWithRejections, "{version}: {report}");
        assert_eq!((report.counts.applied.insert, report.counts.rejected.insert), (396, 4), "{version}: {report}");
        assert_eq!(report.counts.destination, EffectCounts { created: 396, updated: 0, unchanged: 0 }, "{version}");
        let rejections = w.state.rejections("customers");
        assert_eq!(rejections.len(), 4);
        for r in &rejections {
            assert!(
                r.reason.contains(
                    "HubSpot refused it (category=VALIDATION_ERROR, code=VALIDATION_RULE): … is on the blocklist"
                ),
                "{version}: {}",
                r.reason
            );
            assert!(!r.reason.contains("example") && !r.reason.contains("Contact"), "{version}: {}", r.reason);
        }
        assert!(!report.to_string().contains("@example"), "{report}");

        // Nothing changed: the refused rows are sent again, and refused again.
        let report = w.run().await;
        assert_eq!((report.counts.applied.total(), report.counts.rejected.total()), (0, 4), "{version}: {report}");
        assert_eq!(report.counts.destination, EffectCounts::default(), "{version}");

        // Ten rows change: updates, reported as such.
        for id in 1..=10 {
            w.source.upsert(contact_named(id, "Renamed"));
        }
        let report = w.run().await;
        assert_eq!((report.counts.applied.update, report.counts.rejected.total()), (10, 4), "{version}: {report}");
        assert_eq!(report.counts.destination, EffectCounts { created: 0, updated: 10, unchanged: 0 }, "{version}");

        hs.lift_rule();
        let report = w.run().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{version}: {report}");
        assert_eq!((report.counts.applied.insert, report.counts.recovered), (4, 4), "{version}: {report}");
        assert_eq!(report.counts.destination.created, 4, "{version}");
        assert!(w.state.rejections("customers").is_empty());
        let report = w.run().await;
        assert_eq!(report.counts.planned.total(), 0, "{version}: {report}");

        for record in w.source.rows() {
            assert_holds(&hs, &record);
        }
        assert_eq!(hs.live("contacts").len(), 400);
        assert!(hs.creations("contacts").values().all(|n| *n == 1), "{version}: one record per contact");
        for id in [1, 100, 400] {
            assert_eq!(w.memo(id), held(&hs, id).map(|r| r.id.to_string()), "{version}: contact {id}'s record id kept");
        }
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn mirror_archives_only_what_this_sync_wrote_and_the_delete_guard_holds() {
    let hs = server().await;
    // A contact someone else created.
    let other =
        json!({"inputs": [{"idProperty": "email", "id": "someone@else.example", "properties": {"firstname": "Else"}}]});
    assert_eq!(hs.lock().crm.upsert(Version::V2026_03, "contacts", &other, 100).status, 200);
    let options = options().with_max_deletes(Some(MaxDeletes::Count(15)));
    let w = World::new(contacts(1..=50), destination(&hs, ApiVersion::V2026_03), Mode::Mirror, options).await;
    assert_eq!(w.run().await.status, RunStatus::Succeeded);
    let ids: Vec<u64> = (41..=50).map(|id| w.memo(id).unwrap().parse().unwrap()).collect();

    for id in 41..=50 {
        w.source.remove(&key(id));
    }
    let report = w.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.delete, 10, "{report}");
    let archived: Vec<u64> = hs.lock().archived.iter().map(|(_, id)| *id).collect();
    assert_eq!(archived, ids, "exactly the records of the deleted keys, by their ids");
    assert_eq!(hs.live("contacts").len(), 41, "the forty left and the one someone else created");
    assert!(hs.record("contacts", "email", "someone@else.example").is_some());
    assert_eq!(w.memo(45), None, "an archived record's id is forgotten");

    // Twenty more deletes are more than the guard allows: none goes.
    for id in 1..=20 {
        w.source.remove(&key(id));
    }
    let report = w.run().await;
    assert!(matches!(report.status, RunStatus::DeletesWithheld { .. }), "{report}");
    assert_eq!(report.counts.withheld, 20, "{report}");
    assert_eq!(hs.calls("archive"), 1, "no archive call for withheld deletes");
    assert_eq!(hs.live("contacts").len(), 41);

    // A key that comes back is a new record, archived later by its new id.
    w.source.upsert(contact(45));
    let report = w.run().await;
    assert_eq!(report.counts.destination.created, 1, "{report}");
    assert_ne!(w.memo(45).unwrap().parse::<u64>().unwrap(), ids[4]);
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_record_whose_creation_answer_was_lost_is_archived_when_its_key_leaves_the_model() {
    // The record found by the id property mapped from the key (companies by `external_id`),
    // and by the key property (contacts by e-mail, the key in `rse_sync_key`).
    for by_key_property in [false, true] {
        let hs = server().await;
        let (config, object, property) = match by_key_property {
            false => (companies_config(&hs), "companies", "external_id"),
            true => (config(&hs).with_key_property(KEY_PROPERTY), "contacts", KEY_PROPERTY),
        };
        let options = options().with_max_attempts(2).with_initial_backoff(Duration::from_millis(5));
        let w = World::new(contacts(1..=5), HubSpotDestination::new(config).unwrap(), Mode::Mirror, options).await;
        // Each attempt of the first write lands, and its answer is lost on the way back.
        hs.inject(Fault::LoseAck, 2);
        let report = w.run().await;
        assert_eq!(report.counts.undelivered, 5, "{object}: {report}");
        assert_eq!(hs.live(object).len(), 5, "{object}: created, never acknowledged");
        assert_eq!(w.memo(1), None, "{object}: no record id kept");

        // Two customers leave the model before a run sends their rows again.
        for id in [1, 2] {
            w.source.remove(&key(id));
        }
        let report = w.run().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{object}: {report}");
        assert_eq!(report.counts.applied.delete, 2, "{object}: {report}");
        assert_eq!(hs.calls("archive"), 1, "{object}");

        // HubSpot holds the model: the three left, each created once, nothing else.
        let mut live: Vec<String> = hs.live(object).iter().map(|r| r.properties[property].clone()).collect();
        live.sort();
        assert_eq!(live, ["3", "4", "5"], "{object}");
        assert!(hs.creations(object).values().all(|n| *n == 1), "{object}");
        if by_key_property {
            for record in w.source.rows() {
                assert_holds(&hs, &record);
            }
        }
        for id in 3..=5 {
            let held = hs.record(object, property, &id.to_string()).map(|r| r.id.to_string());
            assert_eq!(w.memo(id), held, "{object}: the record id kept once an answer came");
        }
        assert_eq!(w.run().await.counts.planned.total(), 0, "{object}");
        hs.assert_no_violations();
    }
}

#[tokio::test]
async fn an_oauth_token_that_expires_mid_run_is_refreshed_and_the_run_completes() {
    let hs = server().await;
    hs.enable_oauth(OAuthApp {
        client_id: "rse-app".into(),
        client_secret: "client-s3cret".into(),
        refresh_token: "refresh-s3cret".into(),
        lifetime: Duration::from_secs(1_800),
        // Each access token is refused after three calls: it expires mid-run, many times.
        uses_per_token: Some(3),
    });
    let oauth = OAuthRefreshConfig::new(
        format!("{}/oauth/v1/token", hs.base_url()),
        "rse-app",
        "client-s3cret",
        "refresh-s3cret",
    );
    let mut config = config(&hs);
    config.auth = SaasAuthConfig::from(oauth);
    let w = World::new(contacts(1..=2_000), HubSpotDestination::new(config).unwrap(), Mode::Upsert, options()).await;
    let report = w.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 2_000);
    assert_eq!(hs.live("contacts").len(), 2_000);
    let (refreshes, refused) = {
        let s = hs.lock();
        (s.auth.refreshes, s.auth.unauthorized)
    };
    assert!(refreshes >= 6 && refused >= 5, "{refreshes} tokens fetched, {refused} refused");
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_static_token_refused_mid_run_ends_it_unauthorized_keeping_every_unsent_change() {
    let hs = server().await;
    let w = World::new(contacts(1..=2_000), destination(&hs, ApiVersion::V2026_03), Mode::Upsert, options()).await;
    hs.token_uses(TOKEN, 6);
    let report = w.run().await;
    let RunStatus::Failed { kind: FailureKind::Unauthorized, reason } = &report.status else { panic!("{report}") };
    assert!(reason.contains("401") && !reason.contains(TOKEN), "{reason}");
    assert_eq!(report.counts.applied.insert, 600, "{report}");
    assert_eq!(report.counts.rejected.total(), 0, "a refused token refuses no change: {report}");
    assert_eq!(report.counts.undelivered, 1_400, "{report}");

    // A new token (the same string, valid again): the next run sends the rest.
    hs.add_token(TOKEN, Default::default());
    let report = w.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 1_400, "{report}");
    assert_eq!(report.counts.destination.created, 1_400, "{report}");
    assert_eq!(hs.live("contacts").len(), 2_000);
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_daily_allowance_spent_mid_run_ends_it_cleanly_and_the_next_day_s_run_finishes() {
    let hs = server().await;
    hs.set_daily(Some(14));
    let w = World::new(contacts(1..=2_000), destination(&hs, ApiVersion::V2026_03), Mode::Upsert, options()).await;
    let report = w.run().await;
    let RunStatus::QuotaExhausted { reason, resets_at_ms } = &report.status else { panic!("{report}") };
    assert!(reason.contains("daily allowance"), "{reason}");
    assert!(resets_at_ms.is_some());
    assert_eq!(hs.refused(Policy::Daily), 0, "the run stopped on the allowance the answers reported, before a refusal");
    assert_eq!(report.counts.applied.insert, 1_400, "{report}");
    assert_eq!(report.counts.undelivered, 600, "{report}");
    assert_eq!(report.quota.and_then(|q| q.daily).map(|d| (d.remaining, d.limit)), Some((0, Some(14))));

    // The allowance was spent by another integration too: the refusal itself ends the run.
    let report = w.run().await;
    assert!(matches!(report.status, RunStatus::QuotaExhausted { .. }), "{report}");
    // (Each call in flight when the first refusal came back was refused too.)
    assert!((1..=4).contains(&hs.refused(Policy::Daily)), "{}", hs.refused(Policy::Daily));
    assert_eq!(report.counts.applied.total(), 0);

    hs.new_day();
    let report = w.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 600, "{report}");
    assert_eq!(hs.live("contacts").len(), 2_000);
    assert!(hs.creations("contacts").values().all(|n| *n == 1));
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_run_paced_to_a_100_per_10_s_account_gets_no_429() {
    let hs = server().await;
    hs.set_window(Some((100, Duration::from_secs(10))));
    let config = config(&hs).with_rate_limit(BurstLimit::per_ten_seconds(100)).with_max_batch_rows(25);
    let w = World::new(contacts(1..=3_000), HubSpotDestination::new(config).unwrap(), Mode::Upsert, options()).await;
    let started = Instant::now();
    let report = w.run().await;
    let took = started.elapsed();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(hs.too_many(), 0, "a 429 was answered");
    assert!(hs.max_in_window(Duration::from_secs(10)) <= 100);
    assert_eq!(hs.calls("upsert"), 120);
    assert_eq!(hs.live("contacts").len(), 3_000);
    // 120 calls at 95 per 10 s: about 12.5 s; the quota is used, not wasted.
    assert!(took < Duration::from_secs(16), "{took:?}");
    assert_eq!(report.quota.and_then(|q| q.window).and_then(|w| w.limit), Some(100));
    hs.assert_no_violations();
}

#[tokio::test]
async fn a_batch_hubspot_refuses_whole_is_bisected_until_it_fits() {
    let hs = server().await;
    // An account that takes fewer inputs per call than the destination sends.
    hs.set_batch_limit(30);
    let w = World::new(contacts(1..=200), destination(&hs, ApiVersion::V2026_03), Mode::Upsert, options()).await;
    let report = w.run().await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!((report.counts.applied.insert, report.counts.rejected.total()), (200, 0), "{report}");
    assert_eq!(report.counts.destination.created, 200);
    assert_eq!(hs.live("contacts").len(), 200);
    hs.assert_no_violations();
}
