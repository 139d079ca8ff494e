//! Large batches through Bulk API 2.0: one job (or several past the upload cap), result
//! files matched back by external id although the org shuffles their rows, a job that fails
//! part way or before starting, one that never ends, one abandoned by its write, and jobs a
//! killed process left open.
//!
//! Follows the Bulk API 2.0 and Bulk API Developer Guide: "Create a Job", "Upload Job Data",
//! "Close or Abort a Job", "Get Job Info", "Get All Jobs", "Get Job Successful / Failed /
//! Unprocessed Record Results" (the order of result rows is not guaranteed); saas-contracts.md §2.

use std::time::Duration;

use reqwest::Method;
use rse_connectors::saas::PollOptions;
use rse_connectors::{Destination, DestinationError, SalesforceBulkOptions};
use rse_core::testing::ChangeBatchBuilder;
use rse_core::{ChangeBatch, ChangeOutcome, EffectCounts, FailureKind, Mode, Op, RunStatus, SyncOptions, Value};
use serde_json::{Value as Json, json};

use crate::salesforce_server::bulk::JobState;
use crate::salesforce_server::{FailJob, ObjectDef};
use crate::server_smoke::{Session, login};
use crate::world::{World, contact, contacts, fast_poll, options, schema};

const JOBS: &str = "/services/data/v66.0/jobs/ingest";
const CREATE_JOB: &str = "POST /services/data/v66.0/jobs/ingest";
const COLLECTIONS: &str = "PATCH /services/data/v66.0/composite/sobjects";

fn bulk_from(records: usize) -> SalesforceBulkOptions {
    SalesforceBulkOptions::default().with_min_records(records).with_poll(fast_poll())
}

/// Runner options sending `rows` changes a batch, never a partial one before the model ends.
fn whole(rows: usize) -> SyncOptions {
    options().with_batch_rows(rows).with_linger(Duration::from_secs(5))
}

fn upserts(ids: std::ops::RangeInclusive<i64>, score: f64) -> ChangeBatch {
    ids.fold(ChangeBatchBuilder::new(&schema(), "bulk"), |b, i| b.change(Op::Insert, contact(i, score))).build()
}

fn job_states(w: &World) -> Vec<(String, JobState)> {
    w.server.lock().jobs.values().map(|j| (j.id.clone(), j.state)).collect()
}

#[tokio::test]
async fn a_large_batch_goes_by_one_job_and_its_shuffled_results_are_matched_by_external_id() {
    let mut rows = contacts(1..=2_500);
    for i in (0..2_500).step_by(250) {
        rows[i].values[2] = Value::String(format!("no-at-sign-{i}"));
    }
    let w = World::new(rows).await;
    let sync = w.sync(Mode::Upsert, whole(2_500)).await;
    let first = sync.run().await.unwrap();
    assert_eq!(first.status, RunStatus::CompletedWithRejections, "{first}");
    assert_eq!((first.counts.applied.insert, first.counts.rejected.insert), (2_490, 10));
    assert_eq!(first.counts.destination, EffectCounts { created: 2_490, updated: 0, unchanged: 0 });
    assert_eq!((w.server.requests_matching(CREATE_JOB), w.server.requests_matching(COLLECTIONS)), (1, 0));
    for sample in &first.rejections {
        assert_eq!(sample.reason, "Salesforce refused the record (INVALID_EMAIL_ADDRESS; fields: Email)");
    }
    // Each key's memo is its own record's id: the org answered the rows in another order.
    for i in (1..=2_500).filter(|i| (i - 1) % 250 != 0) {
        assert_eq!(w.memo(i), w.record_id(i), "contact {i}");
    }

    // Every row changes (and the refused ones are fixed): updates, by Bulk again.
    w.source.set_rows(
        contacts(1..=2_500)
            .into_iter()
            .map(|mut r| {
                r.values[3] = Value::Float(2.0);
                r
            })
            .collect(),
    );
    let second = sync.run().await.unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{second}");
    assert_eq!(second.counts.destination, EffectCounts { created: 10, updated: 2_490, unchanged: 0 }, "{second}");
    assert_eq!(w.server.requests_matching(CREATE_JOB), 2);
    w.assert_org_equals_source();
}

#[tokio::test]
async fn null_clears_a_field_by_bulk_as_by_collections() {
    for bulk in [bulk_from(1), bulk_from(2_000)] {
        let w = World::with(Vec::new(), |c| c.with_bulk(bulk)).await;
        w.destination.write(&upserts(1..=2, 1.0)).await.unwrap();
        let mut cleared = contact(1, 1.0);
        cleared.values[2] = Value::Null;
        cleared.values[1] = Value::String("Lovelace, \"Ada\"\nof Ockham".into());
        let update = ChangeBatchBuilder::new(&schema(), "bulk").change(Op::Update, cleared).build();
        assert_eq!(w.destination.write(&update).await.unwrap().outcomes, vec![ChangeOutcome::Applied]);
        let held = w.held();
        assert_eq!(held["1"]["Email"], Json::Null, "{held:?}");
        assert_eq!(held["1"]["LastName"], json!("Lovelace, \"Ada\"\nof Ockham"));
        assert_eq!(held["2"]["Email"], json!("p2@example.com"));
    }
}

#[tokio::test]
async fn a_job_that_fails_part_way_answers_what_it_processed_and_the_rest_goes_again() {
    let w = World::new(contacts(1..=2_500)).await;
    w.server.lock().bulk.fail_next =
        Some(FailJob { after_rows: 1_000, message: "InternalServerError : the job ran out of retries".into() });
    let report = w.sync(Mode::Upsert, whole(2_500)).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.destination.created, 2_500, "{report}");
    // The 1,500 rows the job did not process went again, by Collections (fewer than 2,000).
    assert_eq!(w.server.requests_matching(CREATE_JOB), 1);
    assert_eq!(w.server.requests_matching(COLLECTIONS), 8);
    w.assert_org_equals_source();
}

#[tokio::test]
async fn a_job_that_fails_before_processing_is_sent_again_unless_its_data_was_refused() {
    let w = World::new(contacts(1..=2_000)).await;
    w.server.lock().bulk.fail_next = Some(FailJob { after_rows: 0, message: "InternalServerError : try again".into() });
    let report = w.sync(Mode::Upsert, whole(2_000)).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!((report.retries, w.server.requests_matching(CREATE_JOB)), (1, 2));
    w.assert_org_equals_source();

    let w = World::new(contacts(1..=2_000)).await;
    w.server.lock().bulk.fail_next =
        Some(FailJob { after_rows: 0, message: "InvalidBatch : Field name not found : Secret_Field__c".into() });
    let report = w.sync(Mode::Upsert, whole(2_000)).await.run().await.unwrap();
    let RunStatus::Failed { reason, kind } = &report.status else { panic!("{report}") };
    assert_eq!(*kind, FailureKind::Destination);
    assert!(reason.contains("ended Failed (InvalidBatch)") && !reason.contains("Secret_Field"), "{reason}");
}

#[tokio::test]
async fn a_batch_whose_csv_passes_the_upload_cap_goes_as_several_jobs() {
    let w = World::with(contacts(1..=2_500), |c| c.with_bulk(bulk_from(2_000).with_max_upload_bytes(20_000))).await;
    let report = w.sync(Mode::Upsert, whole(2_500)).await.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    // About 112 kB of CSV, rows of 36 to 46 bytes: six or seven jobs of at most 20,000 bytes.
    let jobs = w.server.requests_matching(CREATE_JOB);
    assert!((6..=7).contains(&jobs), "{jobs} jobs");
    let org = w.server.lock();
    assert_eq!(org.jobs.values().map(|j| j.rows.len()).sum::<usize>(), 2_500);
    assert!(org.jobs.values().all(|j| j.rows.len() * 36 <= 20_000 && j.state == JobState::JobComplete));
    drop(org);
    w.assert_org_equals_source();
}

async fn open_job(session: &Session, object: &str, operation: &str) -> String {
    let mut spec = json!({"object": object, "operation": operation, "contentType": "CSV", "lineEnding": "LF"});
    if operation == "upsert" {
        spec["externalIdFieldName"] = json!("Rse_Ext_Id__c");
    }
    let job = session.json(Method::POST, JOBS, &spec).await.json();
    let id = job["id"].as_str().unwrap().to_owned();
    let csv = if operation == "upsert" { "Rse_Ext_Id__c,LastName\n1,Left Over\n" } else { "Id\n003000000000001\n" };
    let url = format!("/{}", job["contentUrl"].as_str().unwrap());
    assert_eq!(session.send(Method::PUT, &url, "text/csv", csv.as_bytes().to_vec()).await.status, 201);
    id
}

#[tokio::test]
async fn jobs_a_killed_process_left_open_are_aborted_by_the_next_bulk_write_and_no_others() {
    let w = World::new(contacts(1..=2_000)).await;
    w.server.define("Lead", ObjectDef::contact());
    let session = login(&w.server).await;
    // What a process killed between upload and close leaves: an open upsert job.
    let left = open_job(&session, "Contact", "upsert").await;
    // Not this destination's: another operation, another object.
    let delete = open_job(&session, "Contact", "delete").await;
    let lead = open_job(&session, "Lead", "upsert").await;
    let sync = w.sync(Mode::Upsert, whole(2_000)).await;
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
    let state = |id: &str| w.server.lock().jobs[id].state;
    assert_eq!((state(&left), state(&delete), state(&lead)), (JobState::Aborted, JobState::Open, JobState::Open));
    w.assert_org_equals_source();

    // The look happens once per process.
    w.source.set_rows(
        contacts(1..=2_000)
            .into_iter()
            .map(|mut r| {
                r.values[3] = Value::Float(3.0);
                r
            })
            .collect(),
    );
    assert_eq!(sync.run().await.unwrap().counts.destination.updated, 2_000);
    let listed = w.server.lock().requests.iter().filter(|r| *r == &format!("GET {JOBS}")).count();
    assert_eq!(listed, 1);
}

#[tokio::test]
async fn a_job_that_does_not_end_in_time_is_aborted_and_the_write_is_sent_again() {
    let poll = PollOptions::new(Duration::from_millis(200))
        .with_intervals(Duration::from_millis(5), Duration::from_millis(20));
    let w = World::with(Vec::new(), |c| c.with_bulk(bulk_from(1).with_poll(poll))).await;
    w.server.lock().bulk.stall = true;
    let error = w.destination.write(&upserts(1..=3, 1.0)).await.unwrap_err();
    assert!(
        matches!(&error, DestinationError::Transient { message, .. } if message.contains("did not end within")),
        "{error}"
    );
    let states = job_states(&w);
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].1, JobState::Aborted);
}

#[tokio::test]
async fn a_write_the_runner_abandons_aborts_its_job() {
    let w = World::with(Vec::new(), |c| c.with_bulk(bulk_from(1))).await;
    w.server.lock().bulk.stall = true;
    let abandoned = tokio::time::timeout(Duration::from_millis(300), w.destination.write(&upserts(1..=3, 1.0))).await;
    assert!(abandoned.is_err(), "the stalled job keeps the write waiting");
    for _ in 0..200 {
        if job_states(&w).iter().all(|(_, s)| *s == JobState::Aborted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the abandoned job was not aborted: {:?}", job_states(&w));
}
