use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::salesforce_server::{FailJob, SalesforceServer};
use crate::server_smoke::{Answer, Session, login};

const JOBS: &str = "/services/data/v66.0/jobs/ingest";

async fn create_job(session: &Session, spec: Json) -> Answer {
    session.json(Method::POST, JOBS, &spec).await
}

fn upsert_spec() -> Json {
    json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Rse_Ext_Id__c",
           "contentType": "CSV", "lineEnding": "LF"})
}

async fn upload(session: &Session, job: &Json, csv: &str) -> Answer {
    // `contentUrl` is relative to the instance URL, without a leading slash.
    let url = job["contentUrl"].as_str().unwrap();
    assert!(!url.starts_with('/'), "{url}");
    session.send(Method::PUT, &format!("/{url}"), "text/csv", csv.as_bytes().to_vec()).await
}

async fn set_state(session: &Session, id: &str, state: &str) -> Answer {
    session.json(Method::PATCH, &format!("{JOBS}/{id}"), &json!({"state": state})).await
}

/// Polls until the job is finished; returns the states seen.
async fn poll(session: &Session, id: &str) -> (Vec<String>, Json) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let info = session.get(&format!("{JOBS}/{id}")).await.json();
        let state = info["state"].as_str().unwrap().to_owned();
        seen.push(state.clone());
        if matches!(state.as_str(), "JobComplete" | "Failed" | "Aborted") {
            return (seen, info);
        }
    }
    (seen, Json::Null)
}

/// A result CSV as (header, rows).
async fn results(session: &Session, id: &str, which: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let answer = session.get(&format!("{JOBS}/{id}/{which}/")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut reader = csv::Reader::from_reader(answer.text.as_bytes());
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

fn contacts_csv(range: std::ops::Range<usize>) -> String {
    let mut csv = String::from("Rse_Ext_Id__c,LastName,Email\n");
    for i in range {
        let email = if i % 10 == 3 { "no-at-sign".to_owned() } else { format!("p{i}@example.com") };
        csv.push_str(&format!("b-{i},Person {i},{email}\n"));
    }
    csv
}

#[tokio::test]
async fn an_upsert_job_runs_and_reports_every_row_in_shuffled_order() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    let job = create_job(&session, upsert_spec()).await;
    assert_eq!(job.status, 200, "{}", job.text);
    let job = job.json();
    assert_eq!((job["state"].clone(), job["externalIdFieldName"].clone()), (json!("Open"), json!("Rse_Ext_Id__c")));
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(upload(&session, &job, &contacts_csv(0..40)).await.status, 201);
    assert_eq!(set_state(&session, &id, "UploadComplete").await.json()["state"], json!("UploadComplete"));
    let (states, info) = poll(&session, &id).await;
    assert_eq!(states, ["InProgress", "JobComplete"]);
    assert_eq!((info["numberRecordsProcessed"].clone(), info["numberRecordsFailed"].clone()), (json!(40), json!(4)));

    let (header, ok) = results(&session, &id, "successfulResults").await;
    assert_eq!(header, ["sf__Id", "sf__Created", "Rse_Ext_Id__c", "LastName", "Email"]);
    assert_eq!(ok.len(), 36);
    let order: Vec<&str> = ok.iter().map(|r| r[2].as_str()).collect();
    let mut sorted_by_upload = order.clone();
    sorted_by_upload.sort_by_key(|k| k[2..].parse::<usize>().unwrap());
    assert_ne!(order, sorted_by_upload, "rows do not come back in upload order");
    {
        let org = server.lock();
        for row in &ok {
            assert_eq!(row[1], "true");
            assert_eq!(org.record_by_ext("Contact", "Rse_Ext_Id__c", &row[2]).unwrap().fields["Id"], json!(row[0]));
        }
    }
    let (header, failed) = results(&session, &id, "failedResults").await;
    assert_eq!(header[..2], ["sf__Id", "sf__Error"]);
    let failed: BTreeMap<&str, &str> = failed.iter().map(|r| (r[2].as_str(), r[1].as_str())).collect();
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), ["b-13", "b-23", "b-3", "b-33"]);
    assert!(failed["b-3"].starts_with("INVALID_EMAIL_ADDRESS:"), "{}", failed["b-3"]);
    assert_eq!(results(&session, &id, "unprocessedrecords").await.1.len(), 0);

    // The same rows again update: sf__Created is false.
    let again = create_job(&session, upsert_spec()).await.json();
    let again_id = again["id"].as_str().unwrap().to_owned();
    upload(&session, &again, &contacts_csv(0..5)).await;
    set_state(&session, &again_id, "UploadComplete").await;
    poll(&session, &again_id).await;
    let (_, ok) = results(&session, &again_id, "successfulResults").await;
    assert!(ok.iter().all(|r| r[1] == "false"), "{ok:?}");
    assert_eq!(server.lock().creations_of("Contact", "Rse_Ext_Id__c", "b-1"), 1);

    let listed = session.get(JOBS).await.json();
    assert_eq!(listed["done"], json!(true));
    assert_eq!(listed["records"].as_array().unwrap().len(), 2);
    assert_eq!(session.send(Method::DELETE, &format!("{JOBS}/{id}"), "", Vec::new()).await.status, 204);
    assert_eq!(session.get(JOBS).await.json()["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn uploads_are_refused_outside_an_open_job_above_the_cap_or_without_the_key_column() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    server.lock().bulk.upload_cap = 1_000;
    let job = create_job(&session, upsert_spec()).await.json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(upload(&session, &job, "LastName,Email\nA,a@example.com\n").await.status, 400, "no external id column");
    assert_eq!(upload(&session, &job, &contacts_csv(0..100)).await.status, 413);
    assert_eq!(upload(&session, &job, &contacts_csv(0..3)).await.status, 201);
    assert_eq!(upload(&session, &job, &contacts_csv(3..6)).await.error_code(), "INVALIDJOBSTATE", "one upload per job");
    set_state(&session, &id, "UploadComplete").await;
    assert_eq!(upload(&session, &job, &contacts_csv(6..9)).await.status, 400, "closed jobs take no data");
    let early = session.get(&format!("{JOBS}/{id}/successfulResults/")).await;
    assert_eq!((early.status, early.error_code()), (400, "INVALIDJOBSTATE".to_owned()), "no results before it ran");
    let refused = [
        json!({"object": "Widget__c", "operation": "upsert", "externalIdFieldName": "X__c"}),
        json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Email"}),
        json!({"object": "Contact", "operation": "upsert"}),
        json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Rse_Ext_Id__c", "contentType": "JSON"}),
    ];
    for spec in refused {
        assert_eq!(create_job(&session, spec.clone()).await.status, 400, "{spec}");
    }
}

#[tokio::test]
async fn jobs_fail_on_unknown_columns_and_wrong_line_endings() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    for (csv, message) in [
        ("Rse_Ext_Id__c,LastName,Shoe_Size__c\nx-1,A,38\n", "Field name not found : Shoe_Size__c"),
        ("Rse_Ext_Id__c,LastName\r\nx-1,A\r\n", "LineEnding is invalid"),
    ] {
        let job = create_job(&session, upsert_spec()).await.json();
        let id = job["id"].as_str().unwrap().to_owned();
        assert_eq!(upload(&session, &job, csv).await.status, 201);
        set_state(&session, &id, "UploadComplete").await;
        let (states, info) = poll(&session, &id).await;
        assert_eq!(states.last().unwrap(), "Failed");
        assert!(info["errorMessage"].as_str().unwrap().contains(message), "{info}");
        assert_eq!(results(&session, &id, "unprocessedrecords").await.1.len(), 1);
    }
    assert_eq!(server.lock().count("Contact"), 0);
}

#[tokio::test]
async fn a_failed_job_leaves_unprocessed_rows_a_stalled_one_can_be_aborted() {
    let server = SalesforceServer::start().await;
    let session = login(&server).await;
    server.lock().bulk.fail_next =
        Some(FailJob { after_rows: 6, message: "InternalServerError : retried 10 times".into() });
    let job = create_job(&session, upsert_spec()).await.json();
    let id = job["id"].as_str().unwrap().to_owned();
    upload(&session, &job, &contacts_csv(0..10)).await;
    set_state(&session, &id, "UploadComplete").await;
    let (_, info) = poll(&session, &id).await;
    assert_eq!(info["state"], json!("Failed"));
    assert_eq!(info["errorMessage"], json!("InternalServerError : retried 10 times"));
    let (ok, failed, unprocessed) = (
        results(&session, &id, "successfulResults").await.1,
        results(&session, &id, "failedResults").await.1,
        results(&session, &id, "unprocessedrecords").await,
    );
    assert_eq!((ok.len(), failed.len(), unprocessed.1.len()), (5, 1, 4));
    assert_eq!(unprocessed.0, ["Rse_Ext_Id__c", "LastName", "Email"]);
    let mut keys: Vec<&str> = unprocessed.1.iter().map(|r| r[0].as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["b-6", "b-7", "b-8", "b-9"]);

    server.lock().bulk.stall = true;
    let job = create_job(&session, upsert_spec()).await.json();
    let id = job["id"].as_str().unwrap().to_owned();
    upload(&session, &job, &contacts_csv(20..23)).await;
    set_state(&session, &id, "UploadComplete").await;
    for _ in 0..5 {
        session.get(&format!("{JOBS}/{id}")).await;
    }
    assert_eq!(session.get(&format!("{JOBS}/{id}")).await.json()["state"], json!("InProgress"));
    assert_eq!(
        session.get(&format!("{JOBS}/{id}/successfulResults/")).await.error_code(),
        "INVALIDJOBSTATE",
        "no results before the job finishes"
    );
    assert_eq!(set_state(&session, &id, "Aborted").await.json()["state"], json!("Aborted"));
    assert_eq!(results(&session, &id, "unprocessedrecords").await.1.len(), 3);
    assert_eq!(set_state(&session, &id, "UploadComplete").await.status, 400);
}
