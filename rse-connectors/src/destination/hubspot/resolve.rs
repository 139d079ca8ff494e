//! Finding the record of a delete that comes without a record id, from its key alone: by
//! the id property when a key column is mapped to it, else by the configured key property,
//! in one `batch/read` call per batch.
//!
//! Follows HubSpot's "CRM objects: Retrieve records by ID or unique property value" (batch
//! read, `POST /crm/objects/{version}/{objectType}/batch/read`, legacy
//! `/crm/v3/objects/{objectType}/batch/read`): `{"idProperty", "inputs": [{"id"}],
//! "properties", "propertiesWithHistory"}`; the records found come back in `results[]` with
//! their `id`; a value no record holds is left out, or named in an `errors[]` item of
//! category `OBJECT_NOT_FOUND` (`v3`, `2026-03`, with HTTP 207).

use std::collections::HashSet;

use reqwest::Method;
use rse_core::{ChangeOutcome, DestinationError, Key, Schema, Value, WriteOutcomes};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::HubSpotDestination;
use super::classify::input_reason;
use super::write::is_record_id;
use crate::saas::{SaasRequest, SaasResponse, ValueStyle};

/// How the deletes of one schema without a record id find their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finder {
    /// By the id property, whose value is the key's column at this position.
    IdProperty(usize),
    /// By the key property, which holds the key's text.
    KeyProperty,
    /// Nothing identifies the record from the key.
    Nothing,
}

/// The values to look up in one batch, each once, with the batch positions asking for it.
#[derive(Default)]
pub(super) struct Lookups {
    pub(super) values: Vec<String>,
    pub(super) positions: Vec<(usize, String)>,
}

impl Lookups {
    pub(super) fn add(&mut self, i: usize, value: String) {
        if !self.values.contains(&value) {
            self.values.push(value.clone());
        }
        self.positions.push((i, value));
    }
}

/// A batch read's body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadRequest<'a> {
    id_property: &'a str,
    inputs: Vec<ReadInput<'a>>,
    properties: [&'a str; 1],
    properties_with_history: [&'a str; 0],
}

#[derive(Serialize)]
struct ReadInput<'a> {
    id: &'a str,
}

/// A batch read's answer, as far as archiving needs it.
#[derive(Deserialize)]
struct ReadAnswer {
    results: Option<Vec<ReadResult>>,
    #[serde(default)]
    errors: Vec<Json>,
}

#[derive(Deserialize)]
struct ReadResult {
    id: Option<String>,
    archived: Option<bool>,
}

/// What a batch read found: the live records' ids, and the lookups HubSpot could not answer.
pub(super) struct Found {
    pub(super) ids: Vec<String>,
    pub(super) answer: SaasResponse,
}

/// The text of `key` the key property holds: its one column's value as HubSpot writes it
/// (`"42"`), or, for a key of several columns, the JSON array of their texts
/// (`["eu","42"]`).
///
/// # Errors
/// Why the key has no such text (a column HubSpot has no text for), without its values.
pub(super) fn key_text(key: &Key) -> Result<String, String> {
    let values = key.decode().map_err(|e| format!("the key cannot be read back ({e}); this is a bug in rse"))?;
    let mut texts = Vec::with_capacity(values.len());
    for value in &values {
        texts.push(text_of(value).map_err(|problem| format!("the key's value has no HubSpot text: {problem}"))?);
    }
    match texts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Ok(Json::from(texts).to_string()),
    }
}

/// `value` as HubSpot's text.
fn text_of(value: &Value) -> Result<String, String> {
    match ValueStyle::HubSpot.encode(value)? {
        Json::String(text) => Ok(text),
        other => Ok(other.to_string()),
    }
}

impl HubSpotDestination {
    /// How the deletes of `schema` without a record id find their records.
    pub(super) fn finder(&self, schema: &Schema) -> Finder {
        let column = schema.index_of(&self.id_field);
        match column.and_then(|c| schema.key_indices().iter().position(|&k| k == c)) {
            Some(position) => Finder::IdProperty(position),
            None if self.config.key_property.is_some() => Finder::KeyProperty,
            None => Finder::Nothing,
        }
    }

    /// The property `finder` looks records up by.
    pub(super) fn lookup_property(&self, finder: Finder) -> &str {
        match finder {
            Finder::KeyProperty => self.config.key_property.as_deref().unwrap_or_default(),
            _ => &self.id_property,
        }
    }

    /// The value the record of `key` holds in the property `finder` looks up, as the
    /// destination's upserts wrote it; `Ok(None)` when `finder` finds nothing, or the value
    /// is empty (an upsert refuses an empty id, so no record holds it).
    ///
    /// # Errors
    /// A rejection reason: the key cannot be written as the property's value.
    pub(super) fn lookup_value(&self, finder: Finder, key: &Key) -> Result<Option<String>, String> {
        let value = match finder {
            Finder::Nothing => return Ok(None),
            Finder::KeyProperty => key_text(key)?,
            Finder::IdProperty(position) => {
                let values =
                    key.decode().map_err(|e| format!("the key cannot be read back ({e}); this is a bug in rse"))?;
                let value = values.get(position).ok_or("the key has fewer columns than the model's key")?;
                let text = text_of(value).map_err(|problem| {
                    format!("field `{}` (HubSpot property `{}`): {problem}", self.id_field, self.id_property)
                })?;
                if self.lowercase_id { text.trim().to_lowercase() } else { text }
            }
        };
        Ok((!value.is_empty()).then_some(value))
    }

    /// Reads the live records whose `property` holds one of `lookups`' values. A value no
    /// record holds is nothing to archive; a lookup HubSpot refuses for another reason is
    /// that change's rejection, set in `outcomes`.
    pub(super) async fn find(
        &self,
        property: &str,
        lookups: &Lookups,
        outcomes: &mut WriteOutcomes,
    ) -> Result<Found, DestinationError> {
        let body = ReadRequest {
            id_property: property,
            inputs: lookups.values.iter().map(|id| ReadInput { id }).collect(),
            properties: [property],
            properties_with_history: [],
        };
        let request = SaasRequest::json(Method::POST, self.urls.read.clone(), &body)?;
        let answer = self.client.send(&request).await?.success_or(&self.classifier)?;
        let parsed: ReadAnswer = answer.json("the batch read answer")?;
        let Some(results) = parsed.results else {
            return Err(DestinationError::fatal(format!(
                "{}: the batch read answer has no `results`; check that the API version `{}` is one this connector supports",
                self.name, self.config.api_version
            )));
        };
        // Every record returned holds one of the values asked for: all are archived.
        let ids = results
            .into_iter()
            .filter(|r| r.archived != Some(true))
            .filter_map(|r| r.id.filter(|id| is_record_id(id)))
            .collect();
        let sent: Vec<&str> = lookups.values.iter().map(String::as_str).collect();
        for error in
            parsed.errors.iter().filter(|e| e.get("category").and_then(Json::as_str) != Some("OBJECT_NOT_FOUND"))
        {
            let named: HashSet<&str> = error
                .get("context")
                .and_then(|c| c.get("ids"))
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .collect();
            let (reason, retryable) = input_reason(error, &sent);
            let reason = format!("finding the record to archive: {reason}");
            // An error that names no value is every lookup's.
            for (i, value) in &lookups.positions {
                if named.is_empty() || named.contains(value.as_str()) {
                    outcomes.set(*i, ChangeOutcome::Rejected { reason: reason.clone(), retryable });
                }
            }
        }
        Ok(Found { ids, answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_s_text_is_its_value_or_the_array_of_its_values() {
        assert_eq!(key_text(&Key::from_values(&[Value::Int(42)])), Ok("42".to_owned()));
        assert_eq!(key_text(&Key::from_values(&[Value::from("Ada@Example.com")])), Ok("Ada@Example.com".to_owned()));
        let composite = Key::from_values(&[Value::from("eu"), Value::Int(42), Value::Date(0)]);
        assert_eq!(key_text(&composite), Ok(r#"["eu","42","1970-01-01"]"#.to_owned()));
        let reason = key_text(&Key::from_values(&[Value::Float(f64::NAN)])).unwrap_err();
        assert!(reason.contains("NaN") && reason.contains("no HubSpot text"), "{reason}");
    }
}
