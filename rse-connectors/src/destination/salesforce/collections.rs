//! sObject Collections: upsert by external id, 200 records a request, and delete by record
//! id, 200 ids a request; each with `allOrNone: false`, so one refused record does not take
//! the others down, and one result per record in the request's order.

use reqwest::Method;
use rse_core::{ChangeOutcome, DestinationError, Memo, Receipt};
use serde::Deserialize;
use serde_json::Value as Json;

use super::api::record_id;
use super::classify::refused;
use super::records::Upsert;
use super::write::Write;
use crate::saas::{ItemResult, SaasRequest, SentItems};

/// The most records (or ids) one Collections request takes.
pub(super) const MAX_RECORDS: usize = 200;

/// Codes a delete answers for a record that is already gone: the delete is done.
const GONE: [&str; 3] = ["ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"];

/// One record's result (an UpsertResult or DeleteResult).
#[derive(Debug, Deserialize)]
struct SaveResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Debug, Deserialize)]
struct SaveError {
    #[serde(rename = "statusCode", default)]
    status_code: Option<String>,
    #[serde(default)]
    fields: Vec<Json>,
}

impl SaveResult {
    fn codes(&self) -> impl Iterator<Item = &str> {
        self.errors.iter().filter_map(|e| e.status_code.as_deref())
    }

    fn refusal(&self) -> ItemResult {
        let fields = self.errors.iter().flat_map(|e| e.fields.iter().filter_map(Json::as_str));
        refused(self.codes(), fields)
    }

    /// What an upsert's result says of the change.
    fn upserted(&self) -> ItemResult {
        if !self.success {
            return self.refusal();
        }
        let mut receipt = match self.created {
            Some(true) => Receipt::created(),
            Some(false) => Receipt::updated(),
            None => Receipt::default(),
        };
        if let Some(memo) = self.id.as_deref().filter(|id| record_id(id)).and_then(|id| Memo::text(id).ok()) {
            receipt = receipt.with_memo(memo);
        }
        ItemResult::AppliedWith(receipt)
    }
}

impl Write<'_> {
    /// Upserts `upserts` by external id, in requests of 200, one after the other.
    ///
    /// # Errors
    /// A request's failure, classified; the outcomes of earlier requests stay set.
    pub(super) async fn upsert_collections(&mut self, upserts: &[Upsert]) -> Result<(), DestinationError> {
        let (object, field) = (self.object, &self.shape.external_id_field);
        let url = self.api.data_url(&self.session, &format!("composite/sobjects/{object}/{field}"))?;
        let mut pending = upserts.iter();
        loop {
            let mut records = Vec::with_capacity(MAX_RECORDS);
            let mut sent = SentItems::new();
            for upsert in pending.by_ref() {
                let Some(record) = self.batch.changes.get(upsert.position).and_then(|c| c.record.as_ref()) else {
                    continue;
                };
                match self.shape.json_record(object, upsert, record) {
                    Ok(json) => {
                        records.push(json);
                        sent.push(upsert.position);
                    }
                    Err(reason) => self.outcomes.rejected(upsert.position, reason),
                }
                if sent.len() == MAX_RECORDS {
                    break;
                }
            }
            if sent.is_empty() {
                return Ok(());
            }
            let body = serde_json::json!({ "allOrNone": false, "records": records });
            let request = SaasRequest::json(Method::PATCH, url.clone(), &body)?;
            let answer = self.api.call(&request, &mut self.usage).await?;
            let results: Vec<SaveResult> = answer.json("the sObject Collections upsert answer")?;
            sent.record_by_position(self.api.name(), &mut self.outcomes, &results, SaveResult::upserted)?;
            self.acknowledged += sent.len();
        }
    }

    /// Deletes records by id, in requests of 200 ids. A record already gone counts as
    /// deleted.
    ///
    /// # Errors
    /// A request's failure, classified; the outcomes of earlier requests stay set.
    pub(super) async fn delete(&mut self, deletes: &[(String, Vec<usize>)]) -> Result<(), DestinationError> {
        for chunk in deletes.chunks(MAX_RECORDS) {
            let mut url = self.api.data_url(&self.session, "composite/sobjects")?;
            let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
            url.query_pairs_mut().append_pair("ids", &ids.join(",")).append_pair("allOrNone", "false");
            let answer = self.api.call(&SaasRequest::new(Method::DELETE, url), &mut self.usage).await?;
            let results: Vec<SaveResult> = answer.json("the sObject Collections delete answer")?;
            if results.len() != chunk.len() {
                return Err(DestinationError::fatal(format!(
                    "{}: the delete answer holds {} results for {} ids sent, so which records were deleted is unknown; \
                     none is recorded as deleted and the next run sends the deletes again. Check the API version",
                    self.api.name(),
                    results.len(),
                    chunk.len()
                )));
            }
            for ((_, positions), result) in chunk.iter().zip(&results) {
                let gone =
                    !result.success && result.codes().next().is_some() && result.codes().all(|c| GONE.contains(&c));
                let outcome = match result.refusal() {
                    _ if result.success || gone => ChangeOutcome::Applied,
                    ItemResult::Rejected { reason, retryable } => ChangeOutcome::Rejected { reason, retryable },
                    _ => ChangeOutcome::Applied,
                };
                for &position in positions {
                    self.outcomes.set(position, outcome.clone());
                }
                self.acknowledged += positions.len();
            }
        }
        Ok(())
    }
}
