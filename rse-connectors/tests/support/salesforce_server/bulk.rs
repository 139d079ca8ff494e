//! Bulk API 2.0 ingest jobs: create, upload CSV, close or abort, poll, list, delete (their
//! result files are in `bulk_results.rs`).
//!
//! Follows the Bulk API 2.0 and Bulk API Developer Guide: "Create a Job" (`object`,
//! `operation`, `externalIdFieldName`, `contentType` CSV, `lineEnding`; answers the job with
//! `state` Open and a relative `contentUrl`), "Upload Job Data" (`PUT …/batches`, `text/csv`,
//! 201, 100 MB raw), "Close or Abort a Job" (`{"state": "UploadComplete" | "Aborted"}`), "Get Job
//! Info" (states Open → UploadComplete → InProgress → JobComplete | Failed | Aborted, counters
//! `numberRecordsProcessed`/`numberRecordsFailed`, `errorMessage`), "Get All Jobs" (`done`,
//! `records`, `nextRecordsUrl`), "Delete a Job", and "Get Job Successful / Failed /
//! Unprocessed Record Results" (CSV: `sf__Id`, `sf__Created` / `sf__Id`, `sf__Error`, then the
//! uploaded columns; "the order of records in the response is not guaranteed to match the
//! ordering of records in the original job data" — so this server always shuffles them).
//!
//! Not documented, chosen here: one upload per job (a second `PUT` is refused with 400
//! `INVALIDJOBSTATE`, so a client splits large loads into several jobs); an upload over the cap
//! answers 413; a header without the external id column is refused at upload (Salesforce would
//! fail the job later); only `upsert` and `delete` jobs are served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};

use super::records::ErrItem;
use super::{FieldDef, FieldType, Org, ids, json_response, parse_version, sf_error};

type Shared = State<Arc<Mutex<Org>>>;

/// A job's state, as "Get Job Info" names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }

    pub fn terminal(self) -> bool {
        matches!(self, JobState::JobComplete | JobState::Failed | JobState::Aborted)
    }
}

/// Make the next job that finishes fail after processing this many rows (in upload order).
#[derive(Debug, Clone)]
pub struct FailJob {
    pub after_rows: usize,
    pub message: String,
}

/// The knobs of the Bulk API.
#[derive(Debug, Clone)]
pub struct BulkKnobs {
    /// The most bytes one upload may carry (100 MB, as documented, by default).
    pub upload_cap: usize,
    /// Jobs stay `InProgress` however often they are polled.
    pub stall: bool,
    pub fail_next: Option<FailJob>,
    /// How many polls answer `InProgress` before a job finishes.
    pub polls_in_progress: u32,
    /// For benchmarks: the org keeps no record. Each upserted row is counted and answered as
    /// created, under an id made from a counter; a job drops its rows once processed and its
    /// results once read, so the org holds at most the jobs in flight.
    pub lean: bool,
    /// Rows processed in lean mode.
    pub lean_rows: u64,
    /// Time spent in lean mode parsing uploads, processing jobs and writing result files
    /// (the org's own work, with its lock held).
    pub lean_busy: std::time::Duration,
    /// The most bytes of row data jobs held at once in lean mode (the cells' text with their
    /// `String` and row `Vec` headers; allocator overhead and request buffers not counted).
    pub lean_peak_bytes: usize,
    lean_bytes: usize,
}

impl Default for BulkKnobs {
    fn default() -> Self {
        BulkKnobs {
            upload_cap: 100 * 1024 * 1024,
            stall: false,
            fail_next: None,
            polls_in_progress: 1,
            lean: false,
            lean_rows: 0,
            lean_busy: std::time::Duration::ZERO,
            lean_peak_bytes: 0,
            lean_bytes: 0,
        }
    }
}

impl BulkKnobs {
    fn hold(&mut self, bytes: usize) {
        self.lean_bytes += bytes;
        self.lean_peak_bytes = self.lean_peak_bytes.max(self.lean_bytes);
    }

    pub(super) fn release(&mut self, bytes: usize) {
        self.lean_bytes = self.lean_bytes.saturating_sub(bytes);
    }
}

/// The bytes rows take in memory: each cell's text and `String`, each row's `Vec`.
fn cells_bytes(rows: &[Vec<String>]) -> usize {
    rows.iter().map(|r| 24 + r.iter().map(|c| 24 + c.capacity()).sum::<usize>()).sum()
}

/// An ingest job and what it holds.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub object: String,
    pub operation: String,
    pub external_id_field: Option<String>,
    pub line_ending: String,
    pub api_version: String,
    pub created_by: String,
    pub state: JobState,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub uploads: u32,
    pub polls: u32,
    /// Result rows without the `sf__` columns' header: `[sf__Id, sf__Created, columns…]`.
    pub successful: Vec<Vec<String>>,
    /// `[sf__Id, sf__Error, columns…]`.
    pub failed: Vec<Vec<String>>,
    pub unprocessed: Vec<Vec<String>>,
    pub error_message: Option<String>,
    /// The upload used CRLF where the job said LF (or the reverse).
    pub wrong_line_ending: bool,
}

impl Job {
    fn info(&self) -> Json {
        let mut info = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": "2026-01-01T00:00:00.000+0000",
            "systemModstamp": "2026-01-01T00:00:00.000+0000",
            "state": self.state.name(),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": parse_version(&self.api_version).unwrap_or_default(),
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/{}/jobs/ingest/{}/batches", self.api_version, self.id),
            "lineEnding": self.line_ending,
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": self.successful.len() + self.failed.len(),
            "numberRecordsFailed": self.failed.len(),
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        });
        if let Some(field) = &self.external_id_field {
            info["externalIdFieldName"] = json!(field);
        }
        if let Some(message) = &self.error_message {
            info["errorMessage"] = json!(message);
        }
        info
    }
}

pub(super) fn bad(code: &str, message: &str) -> Response {
    sf_error(StatusCode::BAD_REQUEST, code, message)
}

pub(super) fn no_job() -> Response {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// `POST /services/data/vXX.X/jobs/ingest`.
pub async fn create(State(org): Shared, Path(version): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if !content_type(&headers).starts_with("application/json") {
        return sf_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the job as application/json",
        );
    }
    let Ok(Json::Object(spec)) = serde_json::from_slice::<Json>(&body) else {
        return bad("JSON_PARSER_ERROR", "The job is not a JSON object");
    };
    const KNOWN: [&str; 7] = [
        "object",
        "operation",
        "externalIdFieldName",
        "contentType",
        "lineEnding",
        "columnDelimiter",
        "assignmentRuleId",
    ];
    if let Some(key) = spec.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return bad("JSON_PARSER_ERROR", &format!("Unrecognized field \"{key}\""));
    }
    let text = |name: &str| spec.get(name).and_then(Json::as_str);
    let mut s = org.lock().unwrap();
    let Some(object) = text("object").and_then(|o| s.objects.get(o).map(|def| (o.to_owned(), def.clone()))) else {
        return bad("INVALIDJOB", "InvalidJob : object is missing or is not an sObject this org knows");
    };
    let operation = match text("operation") {
        Some(op @ ("upsert" | "delete" | "hardDelete")) => op.to_owned(),
        _ => return bad("INVALIDJOB", "InvalidJob : operation must be upsert, delete or hardDelete on this server"),
    };
    let external_id_field = if operation == "upsert" {
        match text("externalIdFieldName").and_then(|f| object.1.field(f)).filter(|f| f.external_id) {
            Some(f) => Some(f.name.clone()),
            None => return bad("INVALIDJOB", "InvalidJob : externalIdFieldName must name an external ID field"),
        }
    } else {
        None
    };
    if text("contentType").is_some_and(|c| c != "CSV") {
        return bad("INVALIDJOB", "InvalidJob : contentType must be CSV");
    }
    let line_ending = match text("lineEnding") {
        None | Some("LF") => "LF",
        Some("CRLF") => "CRLF",
        Some(_) => return bad("INVALIDJOB", "InvalidJob : lineEnding must be LF or CRLF"),
    };
    if text("columnDelimiter").is_some_and(|d| d != "COMMA") {
        return bad("INVALIDJOB", "InvalidJob : this server reads COMMA-delimited CSV only");
    }
    s.next_id += 1;
    let id = ids::nth("750", s.next_id);
    let job = Job {
        id: id.clone(),
        object: object.0,
        operation,
        external_id_field,
        line_ending: line_ending.to_owned(),
        api_version: version,
        created_by: s.user_id.clone(),
        state: JobState::Open,
        header: Vec::new(),
        rows: Vec::new(),
        uploads: 0,
        polls: 0,
        successful: Vec::new(),
        failed: Vec::new(),
        unprocessed: Vec::new(),
        error_message: None,
        wrong_line_ending: false,
    };
    let info = job.info();
    s.jobs.insert(id, job);
    json_response(StatusCode::OK, &info)
}

/// `PUT /services/data/vXX.X/jobs/ingest/{id}/batches`.
pub async fn upload(
    State(org): Shared,
    Path((_v, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !content_type(&headers).starts_with("text/csv") {
        return sf_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "Upload job data as text/csv");
    }
    let started = std::time::Instant::now();
    let mut s = org.lock().unwrap();
    let cap = s.bulk.upload_cap;
    let Some(job) = s.jobs.get_mut(&id) else { return no_job() };
    if job.state != JobState::Open {
        return bad(
            "INVALIDJOBSTATE",
            &format!("Job {id} is {}; data is uploaded only while it is Open", job.state.name()),
        );
    }
    if job.uploads > 0 {
        return bad("INVALIDJOBSTATE", &format!("Job {id} already holds its data; create another job for more"));
    }
    if body.len() > cap {
        return sf_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EXCEEDED_MAX_SIZE",
            &format!("The upload is {} bytes; a job takes at most {cap} bytes of CSV", body.len()),
        );
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&body[..]);
    let header: Vec<String> = match reader.headers() {
        Ok(h) if !h.is_empty() => h.iter().map(str::to_owned).collect(),
        _ => return bad("INVALIDBATCH", "InvalidBatch : the CSV has no header row"),
    };
    let mut rows = Vec::new();
    for row in reader.records() {
        match row {
            Ok(row) => rows.push(row.iter().map(str::to_owned).collect::<Vec<_>>()),
            Err(_) => {
                return bad(
                    "INVALIDBATCH",
                    "InvalidBatch : the CSV is malformed (a row has a different column count or a broken quote)",
                );
            }
        }
    }
    let needed = job.external_id_field.clone().unwrap_or_else(|| "Id".to_owned());
    if !header.iter().any(|h| h.eq_ignore_ascii_case(&needed)) {
        return bad("INVALIDBATCH", &format!("InvalidBatch : the CSV header must contain the column {needed}"));
    }
    let crlf = body.windows(2).any(|w| w == b"\r\n");
    job.wrong_line_ending = (job.line_ending == "LF") == crlf;
    job.header = header;
    let bytes = cells_bytes(&rows);
    job.rows = rows;
    job.uploads += 1;
    if s.bulk.lean {
        s.bulk.hold(bytes);
        s.bulk.lean_busy += started.elapsed();
    }
    StatusCode::CREATED.into_response()
}

/// `PATCH /services/data/vXX.X/jobs/ingest/{id}` with `{"state": …}`.
pub async fn close(State(org): Shared, Path((_v, id)): Path<(String, String)>, body: Bytes) -> Response {
    let Ok(Json::Object(change)) = serde_json::from_slice::<Json>(&body) else {
        return bad("JSON_PARSER_ERROR", "Send {\"state\": \"UploadComplete\"} or {\"state\": \"Aborted\"}");
    };
    let mut s = org.lock().unwrap();
    let Some(job) = s.jobs.get_mut(&id) else { return no_job() };
    match (change.get("state").and_then(Json::as_str), job.state) {
        (Some("UploadComplete"), JobState::Open) => job.state = JobState::UploadComplete,
        (Some("Aborted"), JobState::Open | JobState::UploadComplete | JobState::InProgress) => {
            job.state = JobState::Aborted;
            job.unprocessed = job.rows.clone();
        }
        (Some(wanted @ ("UploadComplete" | "Aborted")), now) => {
            return bad("INVALIDJOBSTATE", &format!("Job {id} is {}; it cannot become {wanted}", now.name()));
        }
        _ => return bad("INVALIDJOBSTATE", "state must be UploadComplete or Aborted"),
    }
    json_response(StatusCode::OK, &job.info())
}

/// `GET /services/data/vXX.X/jobs/ingest/{id}`: each poll moves a closed job along.
pub async fn info(State(org): Shared, Path((_v, id)): Path<(String, String)>) -> Response {
    let mut s = org.lock().unwrap();
    let Some(mut job) = s.jobs.remove(&id) else { return no_job() };
    match job.state {
        JobState::UploadComplete => job.state = JobState::InProgress,
        JobState::InProgress if !s.bulk.stall => {
            job.polls += 1;
            if job.polls >= s.bulk.polls_in_progress {
                process(&mut s, &mut job);
            }
        }
        _ => {}
    }
    let info = job.info();
    s.jobs.insert(id, job);
    json_response(StatusCode::OK, &info)
}

/// `GET /services/data/vXX.X/jobs/ingest`.
pub async fn list(State(org): Shared) -> Response {
    let s = org.lock().unwrap();
    let records: Vec<Json> = s.jobs.values().map(Job::info).collect();
    json_response(StatusCode::OK, &json!({"done": true, "records": records, "nextRecordsUrl": null}))
}

/// `DELETE /services/data/vXX.X/jobs/ingest/{id}` (finished jobs only).
pub async fn remove(State(org): Shared, Path((_v, id)): Path<(String, String)>) -> Response {
    let mut s = org.lock().unwrap();
    let Some(job) = s.jobs.get(&id) else { return no_job() };
    if !job.state.terminal() {
        return bad(
            "INVALIDJOBSTATE",
            &format!("Job {id} is {}; only a finished job can be deleted", job.state.name()),
        );
    }
    s.jobs.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// Runs a closed job: job-level faults first, then every row (up to the failure knob).
fn process(s: &mut Org, job: &mut Job) {
    let fail_all = |job: &mut Job, message: String| {
        job.state = JobState::Failed;
        job.error_message = Some(message);
        job.unprocessed = job.rows.clone();
    };
    if job.wrong_line_ending {
        let expected = job.line_ending.clone();
        return fail_all(
            job,
            format!("ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {expected}"),
        );
    }
    if s.bulk.lean && job.external_id_field.is_some() && !job.wrong_line_ending {
        // Held as rows until now; as results (the same cells and an id) until read.
        let started = std::time::Instant::now();
        for row in std::mem::take(&mut job.rows) {
            s.next_id += 1;
            s.bulk.lean_rows += 1;
            job.successful.push([vec![ids::nth("003", s.next_id), "true".to_owned()], row].concat());
        }
        job.state = JobState::JobComplete;
        s.bulk.lean_busy += started.elapsed();
        return;
    }
    let object = s.objects[&job.object].clone();
    if let Some(name) = job.header.iter().find(|name| object.field(name).is_none()).cloned() {
        return fail_all(job, format!("InvalidBatch : Field name not found : {name}"));
    }
    let columns: Vec<FieldDef> = job.header.iter().filter_map(|name| object.field(name).cloned()).collect();
    let (limit, failure) = match s.bulk.fail_next.take() {
        Some(f) => (f.after_rows.min(job.rows.len()), Some(f.message)),
        None => (job.rows.len(), None),
    };
    let ext = job.external_id_field.clone();
    let ext_at = ext.as_ref().and_then(|e| columns.iter().position(|c| &c.name == e));
    let mut seen: HashMap<&str, usize> = HashMap::new();
    if let Some(at) = ext_at {
        for row in &job.rows[..limit] {
            *seen.entry(row[at].as_str()).or_default() += 1;
        }
    }
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for row in &job.rows[..limit] {
        let outcome = match (&ext, ext_at) {
            (Some(ext), Some(at)) if seen[row[at].as_str()] > 1 => Err(ErrItem::new(
                "DUPLICATE_EXTERNAL_ID",
                format!("Duplicate external id specified: {}", row[at]),
                &[ext.as_str()],
            )),
            (Some(ext), _) => row_record(&columns, row).and_then(|record| {
                s.check_upsert(&job.object, ext, &record)?;
                Ok(s.apply_upsert(&job.object, ext, record))
            }),
            (None, _) => {
                let id = columns.iter().position(|c| c.name == "Id").map(|i| row[i].clone()).unwrap_or_default();
                s.check_delete(&id).map(|()| (s.apply_delete(&id), false))
            }
        };
        match outcome {
            Ok((id, created)) => {
                successful.push([vec![id, created.to_string()], row.clone()].concat());
            }
            Err(e) => failed.push([vec![String::new(), e.bulk()], row.clone()].concat()),
        }
    }
    job.successful = successful;
    job.failed = failed;
    job.unprocessed = job.rows[limit..].to_vec();
    match failure {
        Some(message) => {
            job.state = JobState::Failed;
            job.error_message = Some(message);
        }
        None => job.state = JobState::JobComplete,
    }
}

/// A CSV row as a record: an empty cell leaves the field alone, `#N/A` sets it to null.
fn row_record(columns: &[FieldDef], row: &[String]) -> Result<Map<String, Json>, ErrItem> {
    let mut record = Map::new();
    for (field, cell) in columns.iter().zip(row) {
        let value = match (field.kind, cell.as_str()) {
            (_, "") => continue,
            (_, "#N/A") => Json::Null,
            (FieldType::Double | FieldType::Int, text) => match text.parse::<f64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(type_error(&field.name, text)),
            },
            (FieldType::Boolean, text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" => Json::Bool(true),
                "false" | "0" => Json::Bool(false),
                _ => return Err(type_error(&field.name, text)),
            },
            (_, text) => Json::String(text.to_owned()),
        };
        record.insert(field.name.clone(), value);
    }
    Ok(record)
}

fn type_error(field: &str, text: &str) -> ErrItem {
    // As Salesforce does, the message quotes the value.
    ErrItem::new("INVALID_TYPE_ON_FIELD_IN_RECORD", format!("{field}: value not of required type: {text}"), &[field])
}
