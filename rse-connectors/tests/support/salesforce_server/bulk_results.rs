//! A finished Bulk API 2.0 job's result files: "Get Job Successful / Failed / Unprocessed
//! Record Results" (CSV: `sf__Id`, `sf__Created` / `sf__Id`, `sf__Error`, then the uploaded
//! columns). "The order of records in the response is not guaranteed to match the ordering of
//! records in the original job data": this server always shuffles them.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Org;
use super::bulk::{bad, no_job};

type Shared = State<Arc<Mutex<Org>>>;

/// Which result set a request asks for.
#[derive(Clone, Copy)]
enum Results {
    Successful,
    Failed,
    Unprocessed,
}

fn results(org: &Mutex<Org>, id: &str, which: Results) -> Response {
    let started = std::time::Instant::now();
    let mut s = org.lock().unwrap();
    let lean = s.bulk.lean;
    let Some(job) = s.jobs.get_mut(id) else { return no_job() };
    if !job.state.terminal() {
        return bad("INVALIDJOBSTATE", &format!("Job {id} is {}; results come once it has finished", job.state.name()));
    }
    let (mut header, rows) = match which {
        Results::Successful if lean => {
            (vec!["sf__Id".to_owned(), "sf__Created".to_owned()], std::mem::take(&mut job.successful))
        }
        Results::Successful => (vec!["sf__Id".to_owned(), "sf__Created".to_owned()], job.successful.clone()),
        Results::Failed => (vec!["sf__Id".to_owned(), "sf__Error".to_owned()], job.failed.clone()),
        Results::Unprocessed => (Vec::new(), job.unprocessed.clone()),
    };
    let header_cells = job.header.clone();
    let crlf = job.line_ending == "CRLF";
    if lean && matches!(which, Results::Successful) {
        // The rows leave the org with this answer.
        // As counted at upload: the uploaded cells, without the two added ones.
        let bytes: usize = rows.iter().map(|r| 24 + r[2..].iter().map(|c| 24 + c.capacity()).sum::<usize>()).sum();
        s.bulk.release(bytes);
    }
    let job = (header_cells, crlf);
    drop(s);
    header.extend(job.0);
    let rows = shuffled(id, rows);
    let terminator = if job.1 { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
    let mut out =
        csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).terminator(terminator).from_writer(Vec::new());
    out.write_record(&header).unwrap();
    for row in rows {
        out.write_record(&row).unwrap();
    }
    let body = out.into_inner().unwrap();
    if lean {
        org.lock().unwrap().bulk.lean_busy += started.elapsed();
    }
    (StatusCode::OK, [("content-type", "text/csv")], body).into_response()
}

/// The rows in an order that is never the upload order (when there are two or more).
fn shuffled(seed: &str, rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    fastrand::Rng::with_seed(hasher.finish()).shuffle(&mut order);
    if order.len() > 1 && order.iter().enumerate().all(|(i, &o)| i == o) {
        order.rotate_left(1);
    }
    let mut slots: Vec<Option<Vec<String>>> = rows.into_iter().map(Some).collect();
    order.into_iter().map(|i| slots[i].take().unwrap()).collect()
}

/// `GET …/jobs/ingest/{id}/successfulResults/`.
pub async fn successful(State(org): Shared, Path((_v, id)): Path<(String, String)>) -> Response {
    results(&org, &id, Results::Successful)
}

/// `GET …/jobs/ingest/{id}/failedResults/`.
pub async fn failed(State(org): Shared, Path((_v, id)): Path<(String, String)>) -> Response {
    results(&org, &id, Results::Failed)
}

/// `GET …/jobs/ingest/{id}/unprocessedrecords/`.
pub async fn unprocessed(State(org): Shared, Path((_v, id)): Path<(String, String)>) -> Response {
    results(&org, &id, Results::Unprocessed)
}
