//! One batch: its upserts in one `batch/upsert` call by the id property, its deletes in
//! one `batch/archive` call by record id (those without one found first by a `batch/read`,
//! [`resolve`](super::resolve)), and each change's outcome from the answers.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use reqwest::Method;
use rse_core::{ChangeBatch, DestinationError, Memo, Op, QuotaFeedback, Receipt, WriteOutcome, WriteOutcomes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use tracing::warn;

use super::HubSpotDestination;
use super::classify::input_reason;
use super::quota::feedback;
use super::resolve::{Finder, Lookups, key_text};
use crate::saas::{BatchIdentities, BoundFieldMap, ItemResult, KeyedItems, SaasRequest, SaasResponse};

/// One input of a batch upsert.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Input<'a> {
    id_property: &'a str,
    id: String,
    properties: Map<String, Json>,
    object_write_trace_id: String,
}

/// A batch upsert's body, serialized straight from the inputs.
#[derive(Serialize)]
struct Inputs<'a> {
    inputs: &'a [Input<'a>],
}

/// The upsert inputs of one batch and how to find each one's change in the answer.
#[derive(Default)]
struct Upserts<'a> {
    inputs: Vec<Input<'a>>,
    /// `objectWriteTraceId` → batch position, for the answer's accounting.
    sent: KeyedItems,
    /// `objectWriteTraceId` → the input, whose values are kept out of reasons.
    by_trace: HashMap<String, usize>,
    /// id value → the input, for an answer that does not echo the trace id.
    by_id: HashMap<String, usize>,
}

/// A batch upsert answer, as far as the outcomes need it: the results' echoed properties
/// are skipped unread.
#[derive(Deserialize)]
struct UpsertAnswer {
    results: Option<Vec<UpsertResult>>,
    #[serde(default)]
    errors: Vec<Json>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertResult {
    id: Option<String>,
    new: Option<bool>,
    object_write_trace_id: Option<String>,
}

/// The archive inputs of one batch: record ids, each once, with the changes asking for it.
#[derive(Default)]
struct Archives {
    ids: Vec<String>,
    positions: Vec<usize>,
}

impl HubSpotDestination {
    pub(super) async fn write_batch(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut outcomes = WriteOutcomes::new(batch.len());
        if batch.is_empty() {
            return outcomes.finish(&self.name);
        }
        let fields = self.bound(&batch.schema)?;
        let mut upserts = Upserts::default();
        let mut archives = Archives::default();
        let finder = self.finder(&batch.schema);
        let mut lookups = Lookups::default();
        let mut seen = BatchIdentities::new(format!("HubSpot `{}` record", self.config.object), &self.id_property);
        for (i, change) in batch.changes.iter().enumerate() {
            if change.op == Op::Delete {
                match change.memo.as_ref().map(|m| m.as_str().filter(|id| is_record_id(id))) {
                    // No record id kept: the key's write may have landed with its answer
                    // lost. The runner deletes only keys this sync sent a change for, so a
                    // record found under the key's own identity (the id property mapped
                    // from it, the key property) is one this sync wrote.
                    None => match self.lookup_value(finder, &change.key) {
                        Ok(Some(value)) => lookups.add(i, value),
                        Ok(None) if finder == Finder::Nothing => {
                            warn!(
                                destination = %self.name,
                                key = %change.key.redacted(),
                                "Delete without a record id applied without a call: nothing identifies its record from the key; set `key_property` so that it can be found."
                            );
                            outcomes.applied(i);
                        }
                        Ok(None) => outcomes.applied(i),
                        Err(reason) => outcomes.rejected(i, reason),
                    },
                    Some(Some(id)) => {
                        if !archives.ids.iter().any(|known| known == id) {
                            archives.ids.push(id.to_owned());
                        }
                        archives.positions.push(i);
                    }
                    Some(None) => outcomes.rejected(
                        i,
                        "the key's memo is not a HubSpot record id (it was written by another destination or version); \
                         not archiving by a guess: archive the record in HubSpot if it should go, then clear the key's state",
                    ),
                }
                continue;
            }
            let Some(record) = &change.record else {
                outcomes.rejected(i, format!("a {} change without a record; this is a bug in the runner", change.op));
                continue;
            };
            match self.input(&fields, record, &change.key) {
                Ok((id, properties)) => {
                    if !seen.claim_or_reject(&mut outcomes, i, &change.key, &id) {
                        continue;
                    }
                    let trace = change.idempotency_key.to_string();
                    if let Err(first) = upserts.sent.insert(trace.clone(), i) {
                        outcomes.rejected(i, format!("the change at batch position {first} has the same idempotency key; this is a bug in the runner"));
                        continue;
                    }
                    let n = upserts.inputs.len();
                    upserts.by_trace.insert(trace.clone(), n);
                    upserts.by_id.insert(id.clone(), n);
                    upserts.inputs.push(Input {
                        id_property: &self.id_property,
                        id,
                        properties,
                        object_write_trace_id: trace,
                    });
                }
                Err(reason) => outcomes.rejected(i, reason),
            }
        }

        let mut quota = None;
        let mut written = HashSet::new();
        if !upserts.inputs.is_empty() {
            let body = Inputs { inputs: &upserts.inputs };
            let request = SaasRequest::json(Method::POST, self.urls.upsert.clone(), &body)?;
            let answer = self.client.send(&request).await?.success_or(&self.classifier)?;
            quota = self.quota(&answer).or(quota);
            written = self.record_upserts(&answer, &upserts, &mut outcomes)?;
        }
        if !lookups.values.is_empty() {
            let found = self.find(self.lookup_property(finder), &lookups, &mut outcomes).await?;
            quota = self.quota(&found.answer).or(quota);
            for id in found.ids {
                if !archives.ids.contains(&id) {
                    archives.ids.push(id);
                }
            }
            let open = lookups.positions.iter().map(|(i, _)| *i).filter(|&i| !outcomes.is_set(i));
            archives.positions.extend(open);
        }
        // A record an upsert of this batch just wrote belongs to that change's key now (a
        // key that left and another that arrived with its e-mail address): it stays.
        archives.ids.retain(|id| !written.contains(id));
        if !archives.ids.is_empty() {
            let inputs: Vec<Json> = archives.ids.iter().map(|id| json!({ "id": id })).collect();
            let request = SaasRequest::json(Method::POST, self.urls.archive.clone(), &json!({ "inputs": inputs }))?;
            let answer = self.client.send(&request).await?.success_or(&self.classifier)?;
            quota = self.quota(&answer).or(quota);
        }
        // HubSpot answers 204 for the whole batch; an id already archived or unknown is no
        // error, so a repeated archive is safe.
        for &i in &archives.positions {
            outcomes.applied(i);
        }
        if let Some(quota) = quota {
            outcomes.set_quota(quota);
        }
        outcomes.finish(&self.name)
    }

    /// The input for `record` of `key`: its id value (normalized) and its properties, with
    /// the key's text in the key property when one is configured.
    fn input(
        &self,
        fields: &BoundFieldMap,
        record: &rse_core::Record,
        key: &rse_core::Key,
    ) -> Result<(String, Map<String, Json>), String> {
        let mut properties = fields.properties(record)?;
        if let Some(key_property) = &self.config.key_property {
            let text = key_text(key).map_err(|problem| format!("HubSpot property `{key_property}`: {problem}"))?;
            properties.insert(key_property.clone(), Json::String(text));
        }
        let raw = properties.get(&self.id_property).and_then(Json::as_str).unwrap_or_default();
        let id = if self.lowercase_id { raw.trim().to_lowercase() } else { raw.to_owned() };
        if id.is_empty() {
            return Err(format!(
                "field `{}` (HubSpot property `{}`, which finds the record) is empty; HubSpot needs a value to match or create the record",
                self.id_field, self.id_property
            ));
        }
        properties.insert(self.id_property.clone(), Json::String(id.clone()));
        Ok((id, properties))
    }

    fn quota(&self, answer: &SaasResponse) -> Option<QuotaFeedback> {
        feedback(answer.headers(), self.config.account_utc_offset, SystemTime::now())
    }

    /// Sets each sent change's outcome from a batch upsert answer: a 200, a 207 with
    /// `errors`, or a 2026-09 200 with `errors` and `numErrors`; returns the ids of the
    /// records written.
    fn record_upserts(
        &self,
        answer: &SaasResponse,
        upserts: &Upserts<'_>,
        outcomes: &mut WriteOutcomes,
    ) -> Result<HashSet<String>, DestinationError> {
        let parsed: UpsertAnswer = answer.json("the batch upsert answer")?;
        let Some(results) = parsed.results else {
            return Err(DestinationError::fatal(format!(
                "{}: the batch upsert answer has no `results`; check that the API version `{}` is one this connector supports",
                self.name, self.config.api_version
            )));
        };
        // A result without its trace id is found by its id property's value, from the
        // properties the answer echoes (read only then: they are most of the answer).
        let echoed: Option<Json> = match results.iter().any(|r| r.object_write_trace_id.is_none()) {
            true => Some(answer.json("the batch upsert answer")?),
            false => None,
        };
        let mut items: Vec<(String, ItemResult)> = Vec::with_capacity(results.len() + parsed.errors.len());
        let mut written = HashSet::with_capacity(results.len());
        for (n, result) in results.into_iter().enumerate() {
            let trace = result.object_write_trace_id.or_else(|| {
                let properties = echoed.as_ref()?.get("results")?.get(n)?.get("properties")?;
                self.trace_of(upserts, text(properties.get(&self.id_property))?)
            });
            let mut receipt = match result.new {
                Some(true) => Receipt::created(),
                Some(false) => Receipt::updated(),
                None => Receipt::default(),
            };
            if let Some(id) = result.id.filter(|id| is_record_id(id)) {
                receipt = receipt.with_memo(Memo::text(&id)?);
                written.insert(id);
            }
            items.push((trace.unwrap_or_default(), ItemResult::AppliedWith(receipt)));
        }
        for error in &parsed.errors {
            let context = error.get("context");
            let listed = |name: &str| -> Vec<&str> {
                let list = context.and_then(|c| c.get(name)).and_then(Json::as_array);
                list.into_iter().flatten().filter_map(Json::as_str).collect()
            };
            let mut traces: Vec<String> = listed("objectWriteTraceId").into_iter().map(str::to_owned).collect();
            if traces.is_empty() {
                traces = listed("ids").into_iter().filter_map(|id| self.trace_of(upserts, id)).collect();
            }
            if traces.is_empty() {
                // Unattributable: the accounting below refuses the answer.
                items.push((String::new(), ItemResult::rejected("")));
            }
            for trace in traces {
                let input = upserts.by_trace.get(&trace).and_then(|&n| upserts.inputs.get(n));
                let sent: Vec<&str> =
                    input.map(|i| i.properties.values().filter_map(Json::as_str).collect()).unwrap_or_default();
                let (reason, retryable) = input_reason(error, &sent);
                let result = if retryable { ItemResult::retryable(reason) } else { ItemResult::rejected(reason) };
                items.push((trace, result));
            }
        }
        upserts.sent.record(&self.name, outcomes, items)?;
        Ok(written)
    }

    fn trace_of(&self, upserts: &Upserts<'_>, id: &str) -> Option<String> {
        let found = upserts.by_id.get(id).or_else(|| upserts.by_id.get(&id.trim().to_lowercase()));
        found.and_then(|&n| upserts.inputs.get(n)).map(|input| input.object_write_trace_id.clone())
    }
}

fn text(value: Option<&Json>) -> Option<&str> {
    value.and_then(Json::as_str)
}

/// Whether `id` looks like a HubSpot record id (digits).
pub(super) fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit())
}
