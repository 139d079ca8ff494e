//! A finished Bulk job's result files, matched back to the changes by external id:
//! `successfulResults` (`sf__Id` becomes the key's memo, `sf__Created` the receipt),
//! `failedResults` (`sf__Error`'s code becomes the rejection), `unprocessedrecords` (sent
//! again). Salesforce does not keep the upload's row order in these files, so a row is
//! attributed by its external id column only, and every row sent must be accounted for
//! exactly once ([`KeyedItems::record`](crate::saas::KeyedItems::record)).

use reqwest::header::{ACCEPT, HeaderValue};
use rse_core::{DestinationError, Memo, Receipt};

use super::api::record_id;
use super::bulk::{Part, Results};
use super::classify::{bulk_refused, job_error_code, job_failed};
use super::jobs::JobInfo;
use super::write::Write;
use crate::saas::{ItemResult, SaasRequest};

/// What reading one job's results needs.
struct Read<'a> {
    info: &'a JobInfo,
    /// The most bytes a result file may take.
    cap: usize,
    /// The columns sent (a failure names only these as fields).
    header: &'a [String],
    /// Why an unprocessed row is sent again.
    unprocessed: String,
}

impl Write<'_> {
    /// Sets the outcome of every change of `part` from its job's result files.
    ///
    /// # Errors
    /// A job that ended without processing a record ([`job_failed`]); a result file that
    /// cannot be read or does not account for every row (`Fatal`).
    pub(super) async fn read(&mut self, part: Part, info: &JobInfo, header: &[String]) -> Result<(), DestinationError> {
        let complete = info.state == "JobComplete";
        let code = job_error_code(info.error_message.as_deref());
        if !complete && info.number_records_processed == 0 {
            return Err(job_failed(self.api.name(), &info.id, &info.state, &code));
        }
        let read = Read {
            info,
            cap: part.csv.len() * 2 + part.rows * 64 + (1 << 20),
            header,
            unprocessed: format!("not processed: Bulk job {} ended {} ({code}); it is sent again", info.id, info.state),
        };
        let mut results = Vec::with_capacity(part.rows);
        self.results(&read, Results::Successful, &mut results).await?;
        if info.number_records_failed > 0 {
            self.results(&read, Results::Failed, &mut results).await?;
        }
        if !complete || (info.number_records_processed as usize) < part.rows {
            self.results(&read, Results::Unprocessed, &mut results).await?;
        }
        part.items.record(self.api.name(), &mut self.outcomes, results)?;
        self.acknowledged += part.rows;
        Ok(())
    }

    /// Reads one result file into `(external id, result)` pairs.
    async fn results(
        &mut self,
        read: &Read<'_>,
        which: Results,
        out: &mut Vec<(String, ItemResult)>,
    ) -> Result<(), DestinationError> {
        let Read { info, cap, header, .. } = *read;
        let url = self.api.data_url(&self.session, &format!("jobs/ingest/{}/{}", info.id, which.path()))?;
        let request =
            SaasRequest::get(url).with_header(ACCEPT, HeaderValue::from_static("text/csv")).with_max_body_bytes(cap);
        let answer = self.api.call(&request, &mut self.usage).await?;
        if !answer.is_complete() {
            return Err(DestinationError::fatal(format!(
                "{}: the {} of Bulk job {} are larger than expected ({cap} bytes); this is a bug in the connector",
                self.api.name(),
                which.path().trim_end_matches('/'),
                info.id
            )));
        }
        let unreadable = |row: u64| {
            DestinationError::fatal(format!(
                "{}: the {} of Bulk job {} are not the CSV expected (row {row}); none of the job's records is recorded as applied and they are sent again; check the API version",
                self.api.name(),
                which.path().trim_end_matches('/'),
                info.id
            ))
        };
        let mut reader =
            csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(answer.body().as_ref());
        let columns = reader.headers().map_err(|_| unreadable(0))?.clone();
        let at = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
        let external_id = at(&self.shape.external_id_field).ok_or_else(|| unreadable(0))?;
        let (id, created, error) = (at("sf__Id"), at("sf__Created"), at("sf__Error"));
        for (n, row) in reader.records().enumerate() {
            let row = row.map_err(|_| unreadable(n as u64 + 1))?;
            let key = row.get(external_id).ok_or_else(|| unreadable(n as u64 + 1))?.to_owned();
            let result = match which {
                Results::Successful => {
                    let mut receipt = match created.and_then(|c| row.get(c)) {
                        Some(c) if c.eq_ignore_ascii_case("true") => Receipt::created(),
                        Some(c) if c.eq_ignore_ascii_case("false") => Receipt::updated(),
                        _ => Receipt::default(),
                    };
                    let memo = id.and_then(|i| row.get(i)).filter(|v| record_id(v)).and_then(|v| Memo::text(v).ok());
                    if let Some(memo) = memo {
                        receipt = receipt.with_memo(memo);
                    }
                    ItemResult::AppliedWith(receipt)
                }
                Results::Failed => bulk_refused(error.and_then(|e| row.get(e)).unwrap_or_default(), header),
                Results::Unprocessed => ItemResult::retryable(read.unprocessed.clone()),
            };
            out.push((key, result));
        }
        Ok(())
    }
}
