//! Per-item answers to outcomes, per-batch dedupe, and the job poller.
//!
//! The answers follow the Salesforce sObject Collections upsert (one result per record, in
//! order) and the Bulk API 2.0 result files keyed by the external id column (row order not
//! guaranteed): /work/shared/contracts/saas-contracts.md §2.

use std::time::{Duration, Instant};

use rse_connectors::DestinationError;
use rse_connectors::saas::{
    BatchIdentities, ItemResult, KeyedItems, PollOptions, PollOutcome, Probe, SentItems, poll_until,
};
use rse_core::{ChangeOutcome, Effect, Key, Memo, Receipt, Value, WriteOutcomes};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

/// A Salesforce UpsertResult read into an item result: created or updated, the record id
/// kept as the key's memo.
fn upsert_result(result: &Json) -> ItemResult {
    if result["success"] == true {
        let receipt = if result["created"] == true { Receipt::created() } else { Receipt::updated() };
        match result["id"].as_str() {
            Some(id) => ItemResult::AppliedWith(receipt.with_memo(Memo::text(id).unwrap())),
            None => ItemResult::Applied,
        }
    } else {
        ItemResult::rejected(format!("refused ({})", rse_connectors::saas::error_codes(&result["errors"])))
    }
}

#[test]
fn results_by_position_fill_the_batch_and_a_short_answer_fills_nothing() {
    let sent = SentItems::from(vec![0, 1, 3]);
    let answer = json!([
        {"id": "003A", "success": true, "created": false, "errors": []},
        {"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "ada@example.com refused", "fields": ["Email"]}]},
        {"id": "003B", "success": true, "created": true, "errors": []}
    ]);
    let results = answer.as_array().unwrap();
    let mut outcomes = WriteOutcomes::new(4);
    outcomes.rejected(2, "mapping refused it");
    sent.record_by_position("salesforce:contacts", &mut outcomes, results, upsert_result).unwrap();
    let outcome = outcomes.finish("salesforce:contacts").unwrap();
    assert_eq!(outcome.outcomes[0], ChangeOutcome::Applied);
    assert_eq!(
        outcome.outcomes[1],
        ChangeOutcome::rejected("refused (statusCode=FIELD_CUSTOM_VALIDATION_EXCEPTION, field=Email)")
    );
    assert_eq!(outcome.outcomes[3], ChangeOutcome::Applied);
    assert_eq!(outcome.receipts[0].effect, Some(Effect::Updated));
    assert_eq!(outcome.receipts[3].effect, Some(Effect::Created));
    assert_eq!(outcome.receipts[3].memo.as_ref().and_then(Memo::as_str), Some("003B"));

    // Two results for three records: nothing is attributed, and the batch cannot finish.
    let mut outcomes = WriteOutcomes::new(4);
    let error =
        sent.record_by_position("salesforce:contacts", &mut outcomes, &results[..2], upsert_result).unwrap_err();
    assert!(matches!(error, DestinationError::Fatal { .. }), "{error:?}");
    assert!(error.to_string().contains("holds 2 results for 3 items sent"), "{error}");
    assert_eq!(outcomes.unset().collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(outcomes.finish("salesforce:contacts").is_err());
}

#[test]
fn results_by_key_refuse_what_they_cannot_attribute() {
    let mut sent = KeyedItems::new();
    for (external_id, position) in [("u-17", 0), ("u-18", 1), ("u-19", 2)] {
        sent.insert(external_id, position).unwrap();
    }
    // successfulResults and failedResults, rows in any order.
    let successful = [("u-19", ItemResult::Applied), ("u-17", ItemResult::Applied)];
    let failed = [("u-18", ItemResult::retryable("UNABLE_TO_LOCK_ROW"))];
    let mut outcomes = WriteOutcomes::new(3);
    sent.record("salesforce:bulk", &mut outcomes, successful.clone().into_iter().chain(failed.clone())).unwrap();
    let outcome = outcomes.finish("salesforce:bulk").unwrap();
    assert_eq!(outcome.outcomes[1], ChangeOutcome::Rejected { reason: "UNABLE_TO_LOCK_ROW".into(), retryable: true });

    // A row missing from both files leaves its change unset; the write fails.
    let mut outcomes = WriteOutcomes::new(3);
    let error = sent.record("salesforce:bulk", &mut outcomes, successful).unwrap_err();
    assert!(error.to_string().contains("1 of 3 items sent have no result (batch positions 1)"), "{error}");
    assert!(!outcomes.is_set(1));
}

#[test]
fn a_second_change_for_one_vendor_record_is_refused_naming_the_first() {
    let emails = ["ada@example.com", "bob@example.com", "ADA@example.com"];
    let keys: Vec<Key> = (0..3).map(|i| Key::from_values(&[Value::Int(i)])).collect();
    let mut seen = BatchIdentities::new("HubSpot contact", "email");
    let mut outcomes = WriteOutcomes::new(3);
    let send: Vec<usize> =
        (0..3).filter(|&i| seen.claim_or_reject(&mut outcomes, i, &keys[i], &emails[i].to_lowercase())).collect();
    assert_eq!(send, [0, 1]);
    // The vendor applied what was sent.
    send.iter().for_each(|&i| outcomes.applied(i));
    let outcome = outcomes.finish("hubspot:contacts").unwrap();
    let ChangeOutcome::Rejected { reason, retryable: false } = &outcome.outcomes[2] else {
        panic!("the duplicate is rejected for good: {:?}", outcome.outcomes[2])
    };
    assert!(reason.contains(&format!("position 0, key {}", keys[0])), "{reason}");
    assert!(!reason.to_lowercase().contains("ada@"), "{reason}");
}

#[tokio::test]
async fn the_poller_times_out_with_the_last_state() {
    let options = PollOptions::new(Duration::from_millis(300))
        .with_intervals(Duration::from_millis(20), Duration::from_millis(80));
    let started = Instant::now();
    let mut polls = 0u32;
    let outcome: PollOutcome<String, ()> = poll_until(&options, std::future::pending(), || {
        polls += 1;
        let n = polls;
        async move { Ok(Probe::Pending(format!("InProgress {n}"))) }
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let PollOutcome::TimedOut { last: Some(last), waited } = outcome else { panic!("{outcome:?}") };
    assert_eq!(last, format!("InProgress {polls}"));
    assert!(waited >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "{waited:?} {elapsed:?}");
    // 20, 40, 80, 80 … ms apart (less jitter): a handful of polls, not hundreds.
    assert!((4..=15).contains(&polls), "{polls}");
}

#[tokio::test]
async fn the_poller_stops_when_cancelled_even_mid_probe() {
    let options = PollOptions::new(Duration::from_secs(60));
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    // The second look hangs (a stalled request): cancellation still ends the wait.
    let mut polls = 0;
    let outcome: PollOutcome<&str, ()> = poll_until(
        &options.with_intervals(Duration::from_millis(10), Duration::from_millis(10)),
        token.cancelled(),
        || {
            polls += 1;
            let n = polls;
            async move {
                if n > 1 {
                    std::future::pending::<()>().await;
                }
                Ok(Probe::Pending("UploadComplete"))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome, PollOutcome::Cancelled { last: Some("UploadComplete") });
    assert!(started.elapsed() < Duration::from_secs(5));

    let failed: PollOutcome<(), ()> =
        poll_until(&options, std::future::pending(), || async { Ok(Probe::Failed("state=Failed".into())) })
            .await
            .unwrap();
    assert_eq!(failed, PollOutcome::Failed("state=Failed".into()));
}
