//! Deletes of keys this sync holds no record id for: the record is read by the external id
//! the key gives (`GET /services/data/vXX.X/sobjects/{object}/{external_id_field}/{value}`,
//! REST API Developer Guide, "Get Records Using sObject Rows by External ID"), and deleted by
//! its id with the batch's other deletes.
//!
//! The runner plans a delete only for a key this sync delivered or sent a change for, so a
//! record under the key's external id is one an upsert of this sync wrote (created, or took
//! over by external id): looking it up deletes nothing the sync did not write.

use futures::StreamExt;
use rse_core::DestinationError;
use serde::Deserialize;
use serde_json::Value as Json;

use super::api::record_id;
use super::classify::SalesforceClassifier;
use super::limits::Usage;
use super::records::{Deletes, Lookup, add_delete};
use super::write::Write;
use crate::saas::{SaasRequest, SaasResponse};

/// Lookups in flight at once: enough that a batch of them ends well within a write's time,
/// few enough not to crowd the org's concurrent request limit.
const AT_ONCE: usize = 4;

/// The record a lookup found: its id is all a delete needs.
#[derive(Debug, Deserialize)]
struct Found {
    #[serde(rename = "Id")]
    id: String,
}

impl Write<'_> {
    /// Looks up the record of each of `lookups` and adds its id to `deletes`. A key whose
    /// external id no record holds is answered as applied; one that several records hold
    /// (an external id field not marked unique) is refused: which of them this sync wrote
    /// is unknown.
    ///
    /// # Errors
    /// A lookup's failure, classified; the outcomes of earlier lookups stay set.
    pub(super) async fn look_up(&mut self, lookups: &[Lookup], deletes: &mut Deletes) -> Result<(), DestinationError> {
        let field = &self.shape.external_id_field;
        let base = self.api.data_url(&self.session, &format!("sobjects/{}/{field}", self.object))?;
        let api = self.api;
        let mut requests = Vec::with_capacity(lookups.len());
        for lookup in lookups {
            // `.` and `..` would be taken as path steps, not as a value.
            if matches!(lookup.text.as_str(), "." | "..") {
                self.outcomes.rejected(
                    lookup.position,
                    format!(
                        "the key's external id cannot be looked up (Salesforce reads it from the URL path, where `.` and `..` are path steps); \
                         delete the record in Salesforce by `{field}`"
                    ),
                );
                continue;
            }
            let mut url = base.clone();
            url.path_segments_mut()
                .map_err(|()| DestinationError::fatal(format!("{}: the instance URL cannot take a path", api.name())))?
                .push(&lookup.text);
            requests.push((lookup.position, SaasRequest::get(url)));
        }
        let mut answers = futures::stream::iter(requests)
            .map(|(position, request)| async move {
                let mut usage = Usage::default();
                let answer = api.send(&request, &mut usage).await;
                (position, usage, answer)
            })
            .buffered(AT_ONCE);
        while let Some((position, usage, answer)) = answers.next().await {
            self.usage.merge(usage);
            let answer = answer?;
            match answer.status().as_u16() {
                200..=299 => {
                    let found: Found = answer.json("the record found by external id")?;
                    if !record_id(&found.id) {
                        return Err(DestinationError::fatal(format!(
                            "{}: the record found by external id has an `Id` that is not a record id; check the API version",
                            api.name()
                        )));
                    }
                    add_delete(deletes, &found.id, position);
                    continue;
                }
                300 => self.outcomes.rejected(
                    position,
                    format!(
                        "several Salesforce records hold the key's external id in `{field}` (a field not marked unique), so which one \
                         this sync wrote is unknown; delete the extra ones in Salesforce (the next run then deletes the one left)"
                    ),
                ),
                // The same code answers an object or field the org lacks; a sync's upserts,
                // sent before any of its deletes, would have failed on those already.
                404 if not_found(&answer) => {
                    self.outcomes.applied(position);
                }
                _ => return Err(answer.error(&SalesforceClassifier)),
            }
            self.acknowledged += 1;
        }
        Ok(())
    }
}

/// Whether a 404 says that no record holds the value (`NOT_FOUND`).
fn not_found(answer: &SaasResponse) -> bool {
    let failure = answer.failure();
    let code =
        failure.json().and_then(Json::as_array).and_then(|errors| errors.first()).and_then(|e| e.get("errorCode"));
    code.and_then(Json::as_str) == Some("NOT_FOUND")
}
