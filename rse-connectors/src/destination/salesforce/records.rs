//! Changes as Salesforce records: the external id of each upsert, the record id of each
//! delete (from the key's memo, or else looked up by the external id the key gives), and the
//! record's fields as JSON (Collections) or CSV cells (Bulk).

use rse_core::{ChangeBatch, DataType, DestinationError, Key, Op, Record, Schema, Value, WriteOutcomes};
use serde_json::{Map, Value as Json};
use tracing::{debug, warn};

use super::api::record_id;
use crate::saas::{BatchIdentities, BoundFieldMap, FieldMap, ValueStyle};

/// The longest external id Salesforce takes (a text field of 255 characters).
const MAX_EXTERNAL_ID: usize = 255;

/// The field map and external id source, checked against one schema.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub(super) fields: BoundFieldMap,
    /// The position and name of the model field holding the external id.
    external_id: (usize, String),
    /// Whether that field is the sync key (its only field), so that a delete, which carries
    /// the key and no record, still has the external id.
    from_key: bool,
    /// The sObject field it goes into.
    pub(super) external_id_field: String,
}

impl Shape {
    /// Binds `fields` and the external id source to `schema`.
    pub(super) fn bind(
        fields: &FieldMap,
        source: Option<&str>,
        external_id_field: &str,
        schema: &Schema,
        destination: &str,
    ) -> Result<Self, DestinationError> {
        let fatal = |message: String| DestinationError::fatal(format!("{destination}: {message}"));
        let bound = fields.bind(schema, ValueStyle::Salesforce, destination)?;
        if let Some(property) = bound.iter().map(|(_, p, _)| p).find(|p| p.eq_ignore_ascii_case(external_id_field)) {
            return Err(fatal(format!(
                "the field map writes `{property}`, the external id field, which rse fills from `external_id_source` (or the key); remove it from `fields`"
            )));
        }
        let index = match source {
            Some(name) => schema.index_of(name).ok_or_else(|| {
                fatal(format!(
                    "`external_id_source` names field `{name}`, which is not in the model (fields: {})",
                    schema.field_names()
                ))
            })?,
            None => match schema.key_indices() {
                [one] => *one,
                several => {
                    return Err(fatal(format!(
                        "the sync key has {} fields ({}); set `external_id_source` to the model field holding the external id (build one in the model, e.g. by concatenating the key)",
                        several.len(),
                        schema.key_names().collect::<Vec<_>>().join(", ")
                    )));
                }
            },
        };
        let field =
            schema.field(index).ok_or_else(|| fatal("the external id source is not in the schema".to_owned()))?;
        if !matches!(field.data_type, DataType::String | DataType::Int) {
            return Err(fatal(format!(
                "field `{}` (the external id, `{external_id_field}`) is of type {}; an external id is text or an integer: cast it in the model",
                field.name, field.data_type
            )));
        }
        Ok(Self {
            fields: bound,
            from_key: schema.key_indices() == [index],
            external_id: (index, field.name.clone()),
            external_id_field: external_id_field.to_owned(),
        })
    }

    /// The external id of `record`, as text (an integer as its digits): what Salesforce
    /// matches, and what a Bulk result file names the row by.
    fn external_id(&self, record: &Record) -> Result<String, String> {
        self.external_id_text(record.values.get(self.external_id.0))
    }

    /// The external id the key gives, when the external id is the key: `None` when it comes
    /// from another field (`external_id_source`), an error when the key's value is not one
    /// (an upsert of the key was refused for the same reason).
    fn key_external_id(&self, key: &Key) -> Option<Result<String, String>> {
        if !self.from_key {
            return None;
        }
        Some(match key.decode() {
            Ok(values) => self.external_id_text(values.first()),
            Err(_) => Err("the key cannot be decoded".to_owned()),
        })
    }

    /// The external id `value` makes, as text.
    fn external_id_text(&self, value: Option<&Value>) -> Result<String, String> {
        let name = &self.external_id.1;
        let what = format!("field `{name}` (the external id, `{}`)", self.external_id_field);
        match value {
            Some(Value::Int(i)) => Ok(i.to_string()),
            Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{what} is empty")),
            Some(Value::String(s)) if s.chars().count() > MAX_EXTERNAL_ID => {
                Err(format!("{what} is longer than the {MAX_EXTERNAL_ID} characters an external id holds"))
            }
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(format!("{what} is null")),
            Some(other) => Err(format!("{what} is a {}, not text or an integer", other.type_name())),
        }
    }

    /// The record as a Collections upsert item: `attributes.type`, the external id, the
    /// mapped fields.
    pub(super) fn json_record(&self, object: &str, upsert: &Upsert, record: &Record) -> Result<Json, String> {
        let properties = self.fields.properties(record)?;
        let mut out = Map::with_capacity(properties.len() + 2);
        out.insert("attributes".to_owned(), serde_json::json!({ "type": object }));
        out.insert(self.external_id_field.clone(), Json::String(upsert.text.clone()));
        out.extend(properties);
        Ok(Json::Object(out))
    }

    /// The CSV header of a Bulk job: the external id field, then the mapped fields.
    pub(super) fn csv_header(&self) -> Vec<String> {
        std::iter::once(self.external_id_field.clone())
            .chain(self.fields.iter().map(|(_, property, _)| property.to_owned()))
            .collect()
    }

    /// Appends the record's CSV cells (after its external id) to `cells`.
    pub(super) fn csv_cells(&self, record: &Record, cells: &mut Vec<String>) -> Result<(), String> {
        let style = self.fields.style();
        for (field, property, index) in self.fields.iter() {
            let value = record.values.get(index).unwrap_or(&Value::Null);
            let json = style
                .encode(value)
                .map_err(|problem| format!("field `{field}` (Salesforce field `{property}`): {problem}"))?;
            cells.push(csv_cell(json));
        }
        Ok(())
    }
}

/// A value as a Bulk API CSV cell. An empty cell leaves a field as it is, so a null (and an
/// empty string, which Salesforce stores as null anyway) is written `#N/A`, which clears it.
fn csv_cell(json: Json) -> String {
    match json {
        Json::Null => "#N/A".to_owned(),
        Json::String(s) if s.is_empty() => "#N/A".to_owned(),
        Json::String(s) => s,
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// One change to upsert.
#[derive(Debug, Clone)]
pub(super) struct Upsert {
    /// Its position in the batch.
    pub(super) position: usize,
    /// The external id, as sent (text in JSON and in CSV alike).
    pub(super) text: String,
}

/// A delete without a memo, whose record is looked up by the external id its key gives.
#[derive(Debug, Clone)]
pub(super) struct Lookup {
    /// Its position in the batch.
    pub(super) position: usize,
    /// The external id, as an upsert of the key sent it.
    pub(super) text: String,
}

/// Record ids to delete, each with the batch positions whose record it is.
pub(super) type Deletes = Vec<(String, Vec<usize>)>;

/// Adds `position` to the delete of record `id`.
pub(super) fn add_delete(deletes: &mut Deletes, id: &str, position: usize) {
    match deletes.iter_mut().find(|(d, _)| d == id) {
        Some((_, positions)) => positions.push(position),
        None => deletes.push((id.to_owned(), vec![position])),
    }
}

/// What a batch asks of Salesforce.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Record ids to delete (from the keys' memos), each with the batch positions whose memo
    /// names it.
    pub(super) deletes: Deletes,
    /// Deletes without a memo, to look up by external id first.
    pub(super) lookups: Vec<Lookup>,
    /// Changes to upsert.
    pub(super) upserts: Vec<Upsert>,
}

impl Plan {
    /// Sorts the batch's changes into deletes, lookups and upserts. Sets the outcome of those
    /// that need no request: a delete without a memo whose key gives no external id (applied,
    /// see the module docs), and changes refused before sending (no external id, a duplicate
    /// one).
    pub(super) fn of(shape: &Shape, batch: &ChangeBatch, outcomes: &mut WriteOutcomes, object: &str) -> Self {
        let mut plan = Plan::default();
        let mut seen = BatchIdentities::new(format!("Salesforce {object}"), shape.external_id_field.clone());
        for (i, change) in batch.changes.iter().enumerate() {
            match (change.op, &change.record) {
                (Op::Delete, _) => match change.memo.as_ref().map(|m| m.as_str()) {
                    None => match shape.key_external_id(&change.key) {
                        Some(Ok(text)) => plan.lookups.push(Lookup { position: i, text }),
                        Some(Err(problem)) => {
                            // An upsert of this key was refused for the same reason: no
                            // record holds it.
                            debug!(
                                object,
                                key = %change.key,
                                %problem,
                                "A delete whose key gives no external id; nothing to delete."
                            );
                            outcomes.applied(i);
                        }
                        None => {
                            warn!(
                                object,
                                key = %change.key,
                                external_id_field = %shape.external_id_field,
                                "A delete of a key this sync holds no record id for, with the external id taken from a model field \
                                 (`external_id_source`) that a delete does not carry: the record cannot be found, and is left in Salesforce."
                            );
                            outcomes.applied(i);
                        }
                    },
                    Some(Some(id)) if record_id(id) => add_delete(&mut plan.deletes, id, i),
                    Some(_) => outcomes.rejected(
                        i,
                        "the memo this sync kept for the key is not a Salesforce record id, so the record cannot be deleted; \
                         delete it in Salesforce and clear the key's state",
                    ),
                },
                (Op::Insert | Op::Update, Some(record)) => match shape.external_id(record) {
                    Ok(text) => {
                        // Text external ids match regardless of case unless the field is
                        // case-sensitive: treat `A-1` and `a-1` as one record.
                        if seen.claim_or_reject(outcomes, i, &change.key, &text.to_lowercase()) {
                            plan.upserts.push(Upsert { position: i, text });
                        }
                    }
                    Err(reason) => outcomes.rejected(i, reason),
                },
                (Op::Insert | Op::Update, None) => {
                    outcomes.rejected(i, "an upsert without a record; this is a bug in the runner or the host")
                }
                (op, _) => outcomes.rejected(
                    i,
                    format!("the Salesforce destination does not take `{op}` changes (it upserts and deletes)"),
                ),
            }
        }
        plan
    }
}
