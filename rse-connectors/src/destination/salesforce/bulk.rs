//! Bulk API 2.0 ingest for a large batch: the records as CSV (several jobs when one upload
//! would be too large), each job created, uploaded, closed and waited for, then its result
//! files matched back to the changes by external id, since their rows come in any order.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use rse_core::DestinationError;
use serde_json::json;

use super::jobs::{JobInfo, OpenJob, job_info};
use super::limits::Usage;
use super::records::Upsert;
use super::write::Write;
use crate::saas::{KeyedItems, PollOutcome, Probe, SaasRequest, poll_until};

/// One job's share of the batch.
pub(super) struct Part {
    pub(super) csv: Bytes,
    pub(super) rows: usize,
    pub(super) items: KeyedItems,
}

/// Which result file.
#[derive(Clone, Copy)]
pub(super) enum Results {
    Successful,
    Failed,
    Unprocessed,
}

impl Results {
    pub(super) fn path(self) -> &'static str {
        match self {
            Results::Successful => "successfulResults/",
            Results::Failed => "failedResults/",
            Results::Unprocessed => "unprocessedrecords/",
        }
    }
}

/// `cells` as one CSV line ending in `\n`: a cell is quoted when it holds a comma, a quote,
/// a line break or edge spaces, and its quotes doubled.
fn push_csv_line(out: &mut Vec<u8>, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let quote = cell.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
            || cell.starts_with(' ')
            || cell.ends_with(' ');
        if quote {
            out.push(b'"');
            for b in cell.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(cell.as_bytes());
        }
    }
    out.push(b'\n');
}

impl Write<'_> {
    /// Upserts `upserts` through Bulk API 2.0 jobs.
    ///
    /// # Errors
    /// A request's failure, classified; a job that ended without processing a record
    /// (see [`job_failed`](super::classify::job_failed)). The outcomes of jobs read before stay set.
    pub(super) async fn upsert_bulk(&mut self, upserts: &[Upsert]) -> Result<(), DestinationError> {
        if self.bulk.abort_stale_jobs {
            let (api, session, object) = (self.api, &self.session, self.object);
            let field = &self.shape.external_id_field;
            self.bulk_state.clean_up_once(api, session, object, field, &mut self.usage).await?;
        }
        let header = self.shape.csv_header();
        let parts = self.parts(upserts, &header);
        // Every job is started before any is waited for: Salesforce runs them side by side.
        // A failure drops the jobs started so far, which aborts them.
        let mut jobs = Vec::with_capacity(parts.len());
        for part in &parts {
            jobs.push(self.start(part).await?);
        }
        let mut first_error = None;
        for (part, job) in parts.into_iter().zip(&mut jobs) {
            let info = self.wait(job).await?;
            if let Err(error) = self.read(part, &info, &header).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The CSV of each job, at most `max_upload_bytes` each; a record that cannot be
    /// written is rejected.
    fn parts(&mut self, upserts: &[Upsert], header: &[String]) -> Vec<Part> {
        let cap = self.bulk.max_upload_bytes;
        let mut head = Vec::new();
        push_csv_line(&mut head, header);
        let fresh = || (head.clone(), 0usize, KeyedItems::new());
        let mut parts = Vec::new();
        let mut part = fresh();
        let mut cells = Vec::with_capacity(header.len());
        let mut line = Vec::new();
        for upsert in upserts {
            let Some(record) = self.batch.changes.get(upsert.position).and_then(|c| c.record.as_ref()) else {
                continue;
            };
            cells.clear();
            cells.push(upsert.text.clone());
            if let Err(reason) = self.shape.csv_cells(record, &mut cells) {
                self.outcomes.rejected(upsert.position, reason);
                continue;
            }
            line.clear();
            push_csv_line(&mut line, &cells);
            if head.len() + line.len() > cap {
                self.outcomes.rejected(
                    upsert.position,
                    format!("the record takes {} bytes of CSV, more than `bulk.max_upload_bytes` ({cap})", line.len()),
                );
                continue;
            }
            if part.1 > 0 && part.0.len() + line.len() > cap {
                parts.push(std::mem::replace(&mut part, fresh()));
            }
            if part.2.insert(upsert.text.clone(), upsert.position).is_err() {
                self.outcomes.rejected(upsert.position, "another change of this batch has the same external id");
                continue;
            }
            part.0.extend_from_slice(&line);
            part.1 += 1;
        }
        if part.1 > 0 {
            parts.push(part);
        }
        parts.into_iter().map(|(csv, rows, items)| Part { csv: Bytes::from(csv), rows, items }).collect()
    }

    /// Creates a job for `part`, uploads its CSV and closes it.
    async fn start(&mut self, part: &Part) -> Result<OpenJob, DestinationError> {
        let spec = json!({
            "object": self.object,
            "operation": "upsert",
            "externalIdFieldName": self.shape.external_id_field,
            "contentType": "CSV",
            "lineEnding": "LF",
        });
        let url = self.api.data_url(&self.session, "jobs/ingest")?;
        let created: JobInfo = self
            .api
            .call(&SaasRequest::json(Method::POST, url, &spec)?, &mut self.usage)
            .await?
            .json("the created Bulk job")?;
        if created.id.is_empty() || !created.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(DestinationError::fatal(format!(
                "{}: the created Bulk job has no usable id; check the API version",
                self.api.name()
            )));
        }
        let mut job = OpenJob::new(self.api, &self.session, created.id)?;
        let upload = match created.content_url.as_deref() {
            Some(path) if !path.is_empty() => self.api.instance_url(&self.session, path)?,
            _ => self.api.data_url(&self.session, &format!("jobs/ingest/{}/batches", job.id))?,
        };
        let request = SaasRequest::new(Method::PUT, upload)
            .with_body("text/csv", part.csv.clone())
            .with_timeout(self.bulk.upload_timeout);
        self.api.call(&request, &mut self.usage).await?;
        let close = SaasRequest::json(Method::PATCH, job.url().clone(), &json!({ "state": "UploadComplete" }))?;
        let closed: JobInfo = self.api.call(&close, &mut self.usage).await?.json("the closed Bulk job")?;
        if closed.terminal() {
            job.ended();
        }
        Ok(job)
    }

    /// Waits for `job` to end, as `bulk.poll` says; a job that does not end in time is
    /// aborted and the wait is a transient failure (the batch is sent again).
    async fn wait(&mut self, job: &mut OpenJob) -> Result<JobInfo, DestinationError> {
        let seen = Mutex::new(Usage::default());
        let (api, url) = (self.api, job.url().clone());
        let polled = poll_until(&self.bulk.poll, std::future::pending(), || {
            let (url, seen) = (url.clone(), &seen);
            async move {
                let mut usage = Usage::default();
                let info = job_info(api, &url, &mut usage).await;
                seen.lock().unwrap_or_else(PoisonError::into_inner).merge(usage);
                let info = info?;
                Ok(if info.terminal() { Probe::Done(info) } else { Probe::Pending(info.state) })
            }
        })
        .await;
        self.usage.merge(seen.into_inner().unwrap_or_else(PoisonError::into_inner));
        let (last, waited) = match polled? {
            PollOutcome::Done(info) => {
                job.ended();
                return Ok(info);
            }
            PollOutcome::TimedOut { last, waited } => (last, waited),
            PollOutcome::Cancelled { last } => (last, Duration::ZERO),
            PollOutcome::Failed(_) => (None, Duration::ZERO),
        };
        job.abort().await;
        Err(DestinationError::transient(format!(
            "{}: Bulk job {} did not end within {waited:?} (last seen {}; `bulk.poll.max_wait` is {:?}); it was aborted and the batch is sent again",
            self.api.name(),
            job.id,
            last.as_deref().unwrap_or("no state"),
            self.bulk.poll.max_wait
        )))
    }
}
