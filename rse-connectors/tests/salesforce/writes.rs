//! One write at a time through sObject Collections: upserts by external id with record ids as
//! memos, 200 records a request, per-record refusals without values, deletes by memo or by the
//! external id the key gives, what each failure of the org means, the daily allowance
//! reported, a request failing after others were acknowledged.
//!
//! Follows the REST API Developer Guide, "Upsert Records Using sObject Collections" (200
//! records, results in order, `created`), "Delete Records Using sObject Collections", "Get
//! Records Using sObject Rows by External ID" (200, 404 `NOT_FOUND`, 300), "Status
//! Codes and Error Responses" (400 malformed, 401, 403 `REQUEST_LIMIT_EXCEEDED`, 503), and
//! "API Request Limits and Allocations" (`Sforce-Limit-Info`); saas-contracts.md §2.

use std::time::Duration;

use rse_connectors::{Destination, DestinationError, SalesforceDestination};
use rse_core::testing::ChangeBatchBuilder;
use rse_core::{ChangeBatch, ChangeOutcome, Effect, Memo, Op, Record, Value};
use serde_json::{Map, Value as Json};

use crate::salesforce_server::{Fault, SalesforceServer, ValidationRule};
use crate::world::{EXT, World, config, contact, schema};

const UPSERT: &str = "PATCH /services/data/v66.0/composite/sobjects/Contact/Rse_Ext_Id__c";
const LOOKUP: &str = "GET /services/data/v66.0/sobjects/Contact/Rse_Ext_Id__c/";

fn batch(changes: impl IntoIterator<Item = (Op, Record)>) -> ChangeBatch {
    changes.into_iter().fold(ChangeBatchBuilder::new(&schema(), "writes"), |b, (op, r)| b.change(op, r)).build()
}

fn inserts(ids: std::ops::RangeInclusive<i64>) -> ChangeBatch {
    batch(ids.map(|i| (Op::Insert, contact(i, 1.0))))
}

#[tokio::test]
async fn upserts_create_then_update_by_external_id_and_hand_back_record_ids() {
    let w = World::new(Vec::new()).await;
    let first = w.destination.write(&inserts(1..=3)).await.unwrap();
    assert_eq!(first.outcomes, vec![ChangeOutcome::Applied; 3]);
    for (i, id) in (1..=3).enumerate() {
        let receipt = first.receipt(i).unwrap();
        assert_eq!(receipt.effect, Some(Effect::Created));
        assert_eq!(receipt.memo.as_ref().and_then(Memo::as_str), w.record_id(id).as_deref());
    }
    let again = w.destination.write(&batch((1..=3).map(|i| (Op::Update, contact(i, 2.0))))).await.unwrap();
    for i in 0..3 {
        assert_eq!(again.receipt(i).unwrap().effect, Some(Effect::Updated));
        assert_eq!(again.receipt(i).unwrap().memo, first.receipt(i).unwrap().memo, "the same record");
    }
    let held = w.held();
    assert_eq!(held["2"]["Score__c"], Json::from(2.0));
    assert_eq!(held["2"]["Active__c"], Json::Bool(true));
    assert_eq!(w.server.lock().creations_of("Contact", EXT, "2"), 1);
    assert_eq!(w.server.lock().versions.iter().collect::<Vec<_>>(), ["v66.0"]);
}

#[tokio::test]
async fn a_batch_goes_two_hundred_records_a_request() {
    let w = World::new(Vec::new()).await;
    let out = w.destination.write(&inserts(1..=450)).await.unwrap();
    assert!(out.outcomes.iter().all(|o| *o == ChangeOutcome::Applied));
    assert_eq!(w.server.requests_matching(UPSERT), 3);
    assert_eq!(w.held().len(), 450);
}

#[tokio::test]
async fn refused_records_carry_codes_and_fields_never_the_values_salesforce_repeats() {
    let w = World::new(Vec::new()).await;
    w.server.set_validation(Some(ValidationRule {
        field: "Email".into(),
        message: "p5@example.com is on the block list".into(),
        refuses: std::sync::Arc::new(|r: &Map<String, Json>| r.get("Email") == Some(&Json::from("p5@example.com"))),
    }));
    let mut bad_email = contact(2, 1.0);
    bad_email.values[2] = Value::from("no-at-sign-secret");
    let out = w
        .destination
        .write(&batch([(Op::Insert, contact(1, 1.0)), (Op::Insert, bad_email), (Op::Insert, contact(5, 1.0))]))
        .await
        .unwrap();
    assert_eq!(out.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(
        out.outcomes[1],
        ChangeOutcome::rejected("Salesforce refused the record (INVALID_EMAIL_ADDRESS; fields: Email)")
    );
    assert_eq!(
        out.outcomes[2],
        ChangeOutcome::rejected("Salesforce refused the record (FIELD_CUSTOM_VALIDATION_EXCEPTION; fields: Email)")
    );
    let shown = format!("{out:?}");
    assert!(!shown.contains("secret") && !shown.contains("block list"), "{shown}");
    assert_eq!(w.held().len(), 1);
}

/// A delete of key `id`, with `memo` when given.
fn delete(b: ChangeBatchBuilder, id: i64, memo: Option<Memo>) -> ChangeBatchBuilder {
    let b = b.change(Op::Delete, contact(id, 1.0));
    match memo {
        Some(m) => b.with_memo(m),
        None => b,
    }
}

fn deletes() -> ChangeBatchBuilder {
    ChangeBatchBuilder::new(&schema(), "writes")
}

#[tokio::test]
async fn deletes_go_by_the_memo() {
    let w = World::new(Vec::new()).await;
    w.destination.write(&inserts(1..=2)).await.unwrap();
    let by_memo = delete(deletes(), 1, Some(Memo::text(&w.record_id(1).unwrap()).unwrap())).build();
    let out = w.destination.write(&by_memo).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied]);
    assert!(w.record_id(1).is_none(), "deleted by its id");
    // Deleted already (by someone, or by this write whose answer was lost): done.
    assert_eq!(w.destination.write(&by_memo).await.unwrap().outcomes, vec![ChangeOutcome::Applied]);
    assert_eq!(w.server.lock().ext_lookups, 0, "a memo needs no lookup");

    let out = w.destination.write(&delete(deletes(), 2, Some(Memo::text("not an id").unwrap())).build()).await.unwrap();
    assert!(
        matches!(&out.outcomes[0], ChangeOutcome::Rejected { reason, retryable: false } if reason.contains("not a Salesforce record id"))
    );
    assert!(w.record_id(2).is_some());
}

#[tokio::test]
async fn a_delete_without_a_memo_finds_the_record_by_the_external_id_the_key_gives() {
    let w = World::new(Vec::new()).await;
    // Contacts 1 to 4 exist; this sync holds the record id of 3 only (the answers of the
    // others were lost, say).
    w.destination.write(&inserts(1..=4)).await.unwrap();
    let (two, three) = (w.record_id(2).unwrap(), w.record_id(3).unwrap());
    let batch = delete(deletes(), 2, None);
    let batch = delete(batch, 3, Some(Memo::text(&three).unwrap()));
    // 99 was never created (its upsert refused, say): nothing to delete.
    let batch = delete(batch, 99, None).build();
    let out = w.destination.write(&batch).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 3]);
    {
        let org = w.server.lock();
        assert!(org.deleted.contains(&two) && org.deleted.contains(&three), "2 found by external id, 3 by its memo");
        assert_eq!(org.ext_lookups, 2, "one lookup per key without a memo");
    }
    assert_eq!(w.server.requests_matching(LOOKUP), 2);
    assert_eq!(
        w.server.requests_matching("DELETE /services/data/v66.0/composite/sobjects?ids="),
        1,
        "one request for both"
    );
    assert_eq!(w.held().keys().collect::<Vec<_>>(), ["1", "4"]);

    // Two records hold the key's external id (the field is not unique): which one this sync
    // wrote is unknown, so neither is deleted.
    let four = w.record_id(4).unwrap();
    let copy = w.server.lock().duplicate(&four);
    let out = w.destination.write(&delete(deletes(), 4, None).build()).await.unwrap();
    assert!(
        matches!(&out.outcomes[0], ChangeOutcome::Rejected { reason, retryable: false }
            if reason.contains("several Salesforce records") && reason.contains("Rse_Ext_Id__c")),
        "{:?}",
        out.outcomes
    );
    let org = w.server.lock();
    assert!(org.records.contains_key(&four) && org.records.contains_key(&copy));
}

#[tokio::test]
async fn a_lookup_the_org_fails_fails_the_write_and_nothing_is_recorded_as_deleted() {
    let w = World::new(Vec::new()).await;
    w.destination.write(&inserts(1..=2)).await.unwrap();
    w.server.fault_on(LOOKUP, Fault::Unavailable);
    let batch = delete(delete(deletes(), 1, None), 2, None).build();
    assert!(matches!(w.destination.write(&batch).await, Err(DestinationError::Transient { .. })));
    assert_eq!(w.held().len(), 2);
    assert_eq!(w.destination.write(&batch).await.unwrap().outcomes, vec![ChangeOutcome::Applied; 2]);
    assert!(w.held().is_empty());
}

#[tokio::test]
async fn a_delete_without_a_memo_is_applied_without_a_request_when_the_external_id_is_another_field() {
    // The external id comes from the row, and a delete carries only the key.
    let w = World::with(Vec::new(), |c| c.with_external_id_source("email")).await;
    w.destination.write(&inserts(1..=1)).await.unwrap();
    let before = w.server.lock().requests.len();
    let out = w.destination.write(&delete(deletes(), 1, None).build()).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied]);
    assert_eq!(w.server.lock().requests.len(), before, "nothing sent");
    assert_eq!(w.held().len(), 1, "the record stays");

    // `external_id_source` naming the key itself: the key gives the external id.
    let w = World::with(Vec::new(), |c| c.with_external_id_source("id")).await;
    w.destination.write(&inserts(1..=1)).await.unwrap();
    let out = w.destination.write(&delete(deletes(), 1, None).build()).await.unwrap();
    assert_eq!(out.outcomes, vec![ChangeOutcome::Applied]);
    assert!(w.held().is_empty(), "found by external id and deleted");
}

#[tokio::test]
async fn each_failure_of_the_org_means_what_the_runner_should_do() {
    let w = World::new(Vec::new()).await;
    let one = inserts(1..=1);
    w.server.push_fault(Fault::Unavailable);
    assert!(matches!(w.destination.write(&one).await, Err(DestinationError::Transient { .. })));
    w.server.push_fault(Fault::ConcurrentLimit);
    let limited = w.destination.write(&one).await;
    assert!(
        matches!(limited, Err(DestinationError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(2))
    );
    w.server.push_fault(Fault::Answer {
        status: 400,
        body: r#"[{"message":"bad ada@example.com","errorCode":"MALFORMED_REQUEST"}]"#.into(),
    });
    let fatal = w.destination.write(&one).await.unwrap_err().to_string();
    assert!(fatal.contains("errorCode=MALFORMED_REQUEST") && !fatal.contains("ada@"), "{fatal}");

    // A value that does not fit its field fails the whole request: the runner bisects.
    let typed =
        SalesforceDestination::new(config(&w.server).with_fields(Default::default()).with_field("name", "Score__c"))
            .unwrap();
    let error = typed.write(&inserts(7..=7)).await.unwrap_err();
    assert!(
        matches!(&error, DestinationError::InvalidBatch { message } if message.contains("JSON_PARSER_ERROR")),
        "{error}"
    );
    assert!(!error.to_string().contains("Person 7"), "{error}");

    // The daily allowance: used up, the run ends cleanly.
    w.server.set_daily_allowance(100, 100);
    let error = w.destination.write(&one).await.unwrap_err();
    assert!(
        matches!(&error, DestinationError::QuotaExhausted { resets_in: None, message } if message.contains("TotalRequests")),
        "{error}"
    );
}

#[tokio::test]
async fn every_answer_reports_the_daily_allowance() {
    let w = World::new(Vec::new()).await;
    w.server.set_daily_allowance(1_000, 100);
    let out = w.destination.write(&inserts(1..=250)).await.unwrap();
    let daily = out.quota.and_then(|q| q.daily).unwrap();
    let used = w.server.lock().api_used;
    assert_eq!(used, 102, "two requests of up to 200 records");
    assert_eq!((daily.remaining, daily.limit, daily.resets_in), (1_000 - used, Some(1_000), None));
}

#[tokio::test]
async fn a_request_failing_after_others_were_acknowledged_answers_those_and_sends_the_rest_again() {
    let w = World::new(Vec::new()).await;
    w.server.fault_on_nth(UPSERT, 2, Fault::Unavailable);
    let out = w.destination.write(&inserts(1..=450)).await.unwrap();
    let applied = out.outcomes.iter().filter(|o| **o == ChangeOutcome::Applied).count();
    assert_eq!(applied, 200, "the first request's records");
    for (i, outcome) in out.outcomes.iter().enumerate().skip(200) {
        assert!(
            matches!(outcome, ChangeOutcome::Rejected { retryable: true, reason } if reason.starts_with("not sent yet:")),
            "{i}: {outcome:?}"
        );
    }
    assert!(out.receipts[..200].iter().all(|r| r.effect == Some(Effect::Created) && r.memo.is_some()));

    // The allowance running out mid-write: the same, and the runner then stops on the quota.
    let used = w.server.lock().api_used;
    w.server.set_daily_allowance(used + 1, used);
    let out = w.destination.write(&inserts(1001..=1300)).await.unwrap();
    assert_eq!(out.outcomes.iter().filter(|o| **o == ChangeOutcome::Applied).count(), 200);
    assert_eq!(out.quota.and_then(|q| q.daily).map(|d| d.remaining), Some(0));

    // Failures retrying cannot fix are the write's error, whatever came before.
    w.server.set_daily_allowance(100_000, 0);
    w.server.fault_on_nth(UPSERT, 2, Fault::Answer { status: 400, body: r#"[{"errorCode":"INVALID_TYPE"}]"#.into() });
    assert!(matches!(w.destination.write(&inserts(2001..=2300)).await, Err(DestinationError::Fatal { .. })));
}

#[tokio::test]
async fn a_refresh_token_or_a_static_session_id_signs_in_too() {
    let server = SalesforceServer::start().await;
    server.add_refresh_token("r3fresh");
    let (key, secret) = {
        let org = server.lock();
        (org.consumer_key.clone(), org.consumer_secret.clone())
    };
    let refresh = rse_connectors::saas::OAuthRefreshConfig::new(
        format!("{}/services/oauth2/token", server.url()),
        key,
        secret.as_str(),
        "r3fresh",
    );
    let mut with_refresh = config(&server);
    with_refresh.auth = refresh.into();
    let dest = SalesforceDestination::new(with_refresh).unwrap();
    dest.write(&inserts(1..=2)).await.unwrap();
    assert_eq!(server.lock().refresh_grants, 1);

    // A session id from elsewhere has no instance URL with it: the configuration names it.
    let token = server.lock().tokens.iter().next().unwrap().clone();
    let mut with_bearer = config(&server);
    with_bearer.auth = rse_connectors::saas::SaasAuthConfig::Bearer { token: token.as_str().into() };
    let error = SalesforceDestination::new(with_bearer.clone()).unwrap().write(&inserts(3..=3)).await.unwrap_err();
    assert!(error.to_string().contains("set `instance_url`"), "{error}");
    let dest = SalesforceDestination::new(with_bearer.with_instance_url(server.url())).unwrap();
    assert_eq!(dest.write(&inserts(3..=3)).await.unwrap().outcomes, vec![ChangeOutcome::Applied]);
}
