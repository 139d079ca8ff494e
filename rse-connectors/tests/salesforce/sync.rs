//! Whole syncs through the runner (`SyncJob`) into the org: refusals by a validation rule kept
//! and delivered once it is lifted, a session expiring mid-run, the daily allowance spent
//! mid-run and the share left to others, `Mirror` deleting only what it wrote (a record whose
//! creation was never acknowledged included), and exactly one record created per external id
//! through lost acknowledgements and duplicate identities.
//!
//! Follows the REST API Developer Guide ("Upsert Records Using sObject Collections", "Delete
//! Records Using sObject Collections", "Get Records Using sObject Rows by External ID",
//! "Status Codes and Error Responses": 401 `INVALID_SESSION_ID`, 403 `REQUEST_LIMIT_EXCEEDED`),
//! "API Request Limits and Allocations" (`Sforce-Limit-Info`), Salesforce Help "OAuth 2.0 JWT
//! Bearer Flow for Server-to-Server Integration"; saas-contracts.md §2.

use std::sync::Arc;
use std::time::Duration;

use rse_core::{EffectCounts, Mode, RunStatus, Value};
use serde_json::{Map, Value as Json};

use crate::salesforce_server::{Fault, ValidationRule};
use crate::server_smoke::{contact as contact_json, login};
use crate::world::{EXT, World, contacts, key, options};

const UPSERT: &str = "PATCH /services/data/v66.0/composite/sobjects/Contact/Rse_Ext_Id__c";

#[tokio::test]
async fn records_a_validation_rule_refuses_are_kept_retried_and_delivered_once_it_is_lifted() {
    let w = World::new(contacts(1..=500)).await;
    let refuses = |r: &Map<String, Json>| {
        r.get(EXT).and_then(Json::as_str).and_then(|id| id.parse::<i64>().ok()).is_some_and(|i| i % 100 == 42)
    };
    w.server.set_validation(Some(ValidationRule {
        field: "Email".into(),
        message: "p42@example.com may not be imported".into(),
        refuses: Arc::new(refuses),
    }));
    let sync = w.sync(Mode::Upsert, options()).await;
    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::CompletedWithRejections, "{first}");
    assert_eq!((first.counts.applied.insert, first.counts.rejected.insert), (495, 5), "{first}");
    assert_eq!(first.counts.destination, EffectCounts { created: 495, updated: 0, unchanged: 0 });
    assert_eq!(first.rejections.len(), 5);
    for sample in &first.rejections {
        assert_eq!(sample.reason, "Salesforce refused the record (FIELD_CUSTOM_VALIDATION_EXCEPTION; fields: Email)");
    }
    assert_eq!(w.state.rejections(&w.sync_id).len(), 5);

    // Still refused: tried again, kept again.
    let second = sync.run().await.unwrap();
    assert_eq!((second.counts.planned.insert, second.counts.rejected.insert), (5, 5), "{second}");
    assert_eq!(second.counts.applied.insert, 0);

    w.server.set_validation(None);
    let third = sync.run().await.unwrap();
    assert_eq!(third.status, RunStatus::Succeeded, "{third}");
    assert_eq!((third.counts.applied.insert, third.counts.recovered), (5, 5), "{third}");
    assert_eq!(third.counts.destination.created, 5);
    assert!(w.state.rejections(&w.sync_id).is_empty());
    assert_eq!(sync.run().await.unwrap().counts.planned.total(), 0);
    w.assert_org_equals_source();
    for i in [1, 42, 500] {
        assert_eq!(w.memo(i), w.record_id(i), "the state keeps contact {i}'s record id");
    }
}

#[tokio::test]
async fn a_session_expiring_mid_run_is_granted_again_and_the_run_completes() {
    let w = World::new(contacts(1..=1_000)).await;
    let sync = w.sync(Mode::Upsert, options()).await;
    w.server.expire_tokens_after(4);
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 1_000);
    assert_eq!(w.server.lock().jwt_grants, 2, "one grant, and one more once the session expired");
    w.assert_org_equals_source();
}

#[tokio::test]
async fn a_daily_allowance_spent_mid_run_ends_it_cleanly_and_the_next_run_finishes() {
    let w = World::new(contacts(1..=1_000)).await;
    // Four requests left today; each batch of 100 takes one.
    w.server.set_daily_allowance(100, 96);
    // Full batches only (a long linger), so that requests count batches exactly.
    let sync = w.sync(Mode::Upsert, options().with_max_concurrency(1).with_linger(Duration::from_secs(5))).await;
    let first = sync.run().await.unwrap();
    assert!(matches!(&first.status, RunStatus::QuotaExhausted { resets_at_ms: None, .. }), "{first}");
    assert_eq!(first.counts.applied.insert, 400, "{first}");
    assert_eq!(first.quota.and_then(|q| q.daily).map(|d| (d.remaining, d.limit)), Some((0, Some(100))));
    assert_eq!(w.held().len(), 400);
    assert_eq!(w.server.lock().api_used, 100, "the run stopped at the allowance, without a refused request");

    // The allowance frees up: the next run sends the rest.
    w.server.set_daily_allowance(100_000, 0);
    let second = sync.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_eq!(second.counts.applied.insert, 600);
    assert_eq!(second.counts.destination.created, 600);
    w.assert_org_equals_source();
}

#[tokio::test]
async fn the_reserve_leaves_a_share_of_the_allowance_to_other_integrations() {
    let w = World::new(contacts(1..=1_000)).await;
    w.server.set_daily_allowance(40, 0);
    let options = options()
        .with_batch_rows(10)
        .with_max_concurrency(1)
        .with_quota_reserve(0.5)
        .with_linger(Duration::from_secs(5));
    let report = w.sync(Mode::Upsert, options).await.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::QuotaExhausted { .. }), "{report}");
    assert_eq!(w.server.lock().api_used, 20, "half of the 40 requests left to others");
    assert_eq!(report.counts.applied.insert, 200);
}

#[tokio::test]
async fn mirror_deletes_only_what_this_sync_wrote_and_the_guard_holds_back_a_mass_delete() {
    let w = World::new(contacts(1..=100)).await;
    // Someone else's contact, with an external id this sync never wrote.
    let session = login(&w.server).await;
    assert_eq!(session.upsert(vec![contact_json("other-1", "Elsewhere")], false).await.status, 200);
    let sync = w.sync(Mode::Mirror, options()).await;
    assert_eq!(sync.run().await.unwrap().counts.destination.created, 100);
    let gone: Vec<String> = (91..=100).map(|i| w.record_id(i).unwrap()).collect();
    for i in 91..=100 {
        w.source.remove(&key(i));
    }
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.delete, 10);
    assert_eq!(w.server.requests_matching("DELETE /services/data/v66.0/composite/sobjects?ids="), 1);
    {
        let org = w.server.lock();
        assert!(gone.iter().all(|id| org.deleted.contains(id)), "deleted by the ids the upserts received");
        assert!(org.record_by_ext("Contact", EXT, "other-1").is_some(), "a record this sync did not write stays");
    }
    assert_eq!(w.memo(95), None, "a deleted key's memo goes with it");

    // 80 of the 90 rows vanish at once: the delete guard withholds the deletes.
    for i in 11..=90 {
        w.source.remove(&key(i));
    }
    let report = sync.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::DeletesWithheld { .. }), "{report}");
    assert_eq!((report.counts.withheld, report.counts.applied.delete), (80, 0));
    assert_eq!(w.held().len(), 91);
}

#[tokio::test]
async fn a_record_whose_creation_was_never_acknowledged_is_deleted_once_its_row_leaves_the_model() {
    let w = World::new(contacts(1..=100)).await;
    // One request left today: the upsert of the 100 contacts lands, its answer is lost, and
    // the retry finds the allowance spent. The run ends with none of them acknowledged.
    w.server.set_daily_allowance(1, 0);
    w.server.fault_on(UPSERT, Fault::LoseAck);
    let sync = w.sync(Mode::Mirror, options().with_linger(Duration::from_secs(5))).await;
    let first = sync.run().await.unwrap();
    assert!(matches!(first.status, RunStatus::QuotaExhausted { .. }), "{first}");
    assert_eq!(first.counts.applied.insert, 0, "{first}");
    assert_eq!(w.held().len(), 100, "Salesforce created them all");
    assert_eq!((w.memo(3), w.memo(7)), (None, None), "the state holds no record id");

    // Two rows leave the model before a run sends their upserts again.
    let (three, seven) = (w.record_id(3).unwrap(), w.record_id(7).unwrap());
    w.source.remove(&key(3));
    w.source.remove(&key(7));
    w.server.set_daily_allowance(100_000, 0);
    let second = sync.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_eq!((second.counts.applied.delete, second.counts.applied.insert), (2, 98), "{second}");
    assert_eq!(w.server.lock().ext_lookups, 2, "the two keys without a record id, looked up by external id");
    {
        let org = w.server.lock();
        assert!(org.deleted.contains(&three) && org.deleted.contains(&seven), "deleted by the ids found");
    }
    w.assert_org_equals_source();
    assert_eq!(sync.run().await.unwrap().counts.planned.total(), 0);
}

#[tokio::test]
async fn one_record_per_external_id_through_lost_acknowledgements() {
    let w = World::new(contacts(1..=300)).await;
    // Salesforce applies the first and third requests but the answers are lost.
    w.server.fault_on(UPSERT, Fault::LoseAck);
    w.server.fault_on_nth(UPSERT, 2, Fault::LoseAck);
    let options = options().with_max_concurrency(1).with_linger(Duration::from_secs(5));
    let report = w.sync(Mode::Upsert, options).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.insert, 300);
    assert!(report.retries >= 2, "{report}");
    // The records of the requests whose answer was lost were found again on the retry.
    assert_eq!(report.counts.destination, EffectCounts { created: 100, updated: 200, unchanged: 0 }, "{report}");
    w.assert_org_equals_source();
}

#[tokio::test]
async fn two_rows_with_one_external_id_make_one_record() {
    let mut rows = contacts(1..=10);
    // Rows 3 and 4 hold the same identity, as the model computes it, in another case.
    rows[3].values[2] = Value::from("P3@Example.com");
    let w = World::with(rows, |c| c.with_external_id_source("email")).await;
    let report = w.sync(Mode::Upsert, options()).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::CompletedWithRejections, "{report}");
    assert_eq!((report.counts.applied.insert, report.counts.rejected.insert), (9, 1));
    assert!(report.rejections[0].reason.contains("same Salesforce Contact by `Rse_Ext_Id__c`"), "{report}");
    assert!(!report.rejections[0].reason.contains("xample.com"), "{report}");
    assert_eq!(w.server.lock().creations_of("Contact", EXT, "p3@example.com"), 1);
    assert_eq!(w.held().len(), 9);
}
