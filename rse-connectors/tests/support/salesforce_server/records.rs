//! What the org does with one record, whichever API it came through: the per-record checks of
//! an upsert by external id (REST API Developer Guide, "Upsert Records Using sObject
//! Collections"; error codes from "Status Codes and Error Responses" and the UpsertResult
//! reference), and the write itself.

use serde_json::{Map, Value as Json, json};

use super::{FieldType, ObjectDef, Org, StoredRecord, ids};

/// One entry of a result's `errors` array.
#[derive(Debug, Clone)]
pub struct ErrItem {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl ErrItem {
    pub fn new(code: &'static str, message: impl Into<String>, fields: &[&str]) -> ErrItem {
        ErrItem { code, message: message.into(), fields: fields.iter().map(|f| (*f).to_owned()).collect() }
    }

    /// `{statusCode, message, fields}` as in a Collections result.
    pub fn json(&self) -> Json {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }

    /// `CODE:message:fields --` as in Bulk API 2.0's `sf__Error` column.
    pub fn bulk(&self) -> String {
        format!("{}:{}:{} --", self.code, self.message, self.fields.join(","))
    }
}

/// The text an external id value is matched by: a string as is, a number as written.
pub fn key_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Why a JSON value cannot go into a field of this type, if it cannot (Salesforce refuses the
/// whole request: the JSON does not deserialize).
pub fn json_type_error(kind: FieldType, value: &Json) -> Option<&'static str> {
    let ok = match (kind, value) {
        (_, Json::Null) => true,
        (FieldType::Double, Json::Number(_)) => true,
        (FieldType::Int, Json::Number(n)) => n.is_i64(),
        (FieldType::Boolean, Json::Bool(_)) => true,
        (FieldType::String | FieldType::Email | FieldType::Id | FieldType::DateTime, Json::String(_)) => true,
        // Salesforce coerces a number into a text field.
        (FieldType::String, Json::Number(_)) => true,
        _ => false,
    };
    if ok {
        return None;
    }
    Some(match kind {
        FieldType::Double => "double",
        FieldType::Int => "int",
        FieldType::Boolean => "boolean",
        _ => "String",
    })
}

fn no_such_column(sobject: &str, name: &str) -> ErrItem {
    ErrItem::new(
        "INVALID_FIELD",
        format!(
            "No such column '{name}' on sobject of type {sobject}. If you are attempting to use a custom field, be \
             sure to append the '__c' after the custom field name."
        ),
        &[name],
    )
}

impl Org {
    fn object(&self, sobject: &str) -> &ObjectDef {
        &self.objects[sobject]
    }

    /// The per-record checks of an upsert through `ext_field`, in the order Salesforce reports
    /// them. The record's field names are canonical (see [`Org::canonical`]).
    pub fn check_upsert(&self, sobject: &str, ext_field: &str, record: &Map<String, Json>) -> Result<(), ErrItem> {
        let object = self.object(sobject);
        let Some(value) = record.get(ext_field).and_then(key_text) else {
            return Err(ErrItem::new("MISSING_ARGUMENT", format!("{ext_field} not specified"), &[ext_field]));
        };
        let existing = self.ext_index.contains_key(&(sobject.to_owned(), ext_field.to_owned(), value));
        for (name, value) in record {
            let Some(field) = object.field(name) else { return Err(no_such_column(sobject, name)) };
            let allowed = if existing { field.updateable || field.name == ext_field } else { field.createable };
            if !allowed {
                return Err(ErrItem::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {name}. Please check the security settings of this field and \
                         verify that it is read/write for your profile or permission set."
                    ),
                    &[name],
                ));
            }
            if field.kind == FieldType::Email
                && let Json::String(email) = value
                && !email.contains('@')
            {
                // As Salesforce does, the message repeats the value.
                return Err(ErrItem::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{name}: invalid email address: {email}"),
                    &[name],
                ));
            }
        }
        if !existing {
            let missing: Vec<&str> = object
                .fields
                .iter()
                .filter(|f| f.required && record.get(&f.name).is_none_or(Json::is_null))
                .map(|f| f.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(ErrItem::new(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", missing.join(", ")),
                    &missing,
                ));
            }
        }
        if let Some(rule) = &self.validation
            && (rule.refuses)(record)
        {
            return Err(ErrItem::new(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                rule.message.clone(),
                &[rule.field.as_str()],
            ));
        }
        Ok(())
    }

    /// The record with `attributes` left out and every field under its canonical name
    /// (Salesforce matches field names without regard to case); an unknown field fails the
    /// record with `INVALID_FIELD`.
    pub fn canonical(&self, sobject: &str, record: &Map<String, Json>) -> Result<Map<String, Json>, ErrItem> {
        let object = self.object(sobject);
        let mut out = Map::new();
        for (name, value) in record {
            if name == "attributes" {
                continue;
            }
            let Some(field) = object.field(name) else { return Err(no_such_column(sobject, name)) };
            out.insert(field.name.clone(), value.clone());
        }
        Ok(out)
    }

    /// Writes a record that passed [`Org::check_upsert`]: updates the one `ext_field` matches,
    /// or creates one. Returns its id and whether it was created.
    pub fn apply_upsert(&mut self, sobject: &str, ext_field: &str, record: Map<String, Json>) -> (String, bool) {
        let value = record.get(ext_field).and_then(key_text).expect("checked");
        let key = (sobject.to_owned(), ext_field.to_owned(), value);
        let (id, created) = match self.ext_index.get(&key).cloned() {
            Some(id) => (id, false),
            None => {
                self.next_id += 1;
                let id = ids::nth(&self.object(sobject).key_prefix, self.next_id);
                let mut fields = Map::new();
                fields.insert("Id".to_owned(), json!(id));
                fields.insert("CreatedDate".to_owned(), json!("2026-01-01T00:00:00.000+0000"));
                self.records.insert(id.clone(), StoredRecord { sobject: sobject.to_owned(), fields });
                *self.creations.entry(key).or_default() += 1;
                (id, true)
            }
        };
        self.unindex(&id);
        let stored = self.records.get_mut(&id).expect("just found or made");
        for (name, value) in record {
            stored.fields.insert(name, value);
        }
        self.index(&id);
        (id, created)
    }

    fn ext_entries(&self, id: &str) -> Vec<(String, String, String)> {
        let Some(record) = self.records.get(id) else { return Vec::new() };
        self.object(&record.sobject)
            .fields
            .iter()
            .filter(|f| f.external_id)
            .filter_map(|f| {
                let value = record.fields.get(&f.name).and_then(key_text)?;
                Some((record.sobject.clone(), f.name.clone(), value))
            })
            .collect()
    }

    fn unindex(&mut self, id: &str) {
        for entry in self.ext_entries(id) {
            self.ext_index.remove(&entry);
        }
    }

    fn index(&mut self, id: &str) {
        for entry in self.ext_entries(id) {
            self.ext_index.insert(entry, id.to_owned());
        }
    }

    /// Why a record id cannot be deleted, if it cannot.
    pub fn check_delete(&self, id: &str) -> Result<(), ErrItem> {
        if !ids::well_formed(id) {
            return Err(ErrItem::new("MALFORMED_ID", format!("malformed id {id}"), &[]));
        }
        let id18 = self.full_id(id);
        if self.records.contains_key(&id18) {
            Ok(())
        } else if self.deleted.contains(&id18) {
            Err(ErrItem::new("ENTITY_IS_DELETED", "entity is deleted", &[]))
        } else {
            Err(ErrItem::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", &[]))
        }
    }

    /// The 18-character form of a well-formed id.
    pub fn full_id(&self, id: &str) -> String {
        if id.len() == 15 { ids::with_checksum(id) } else { id.to_owned() }
    }

    /// Deletes a record that passed [`Org::check_delete`].
    pub fn apply_delete(&mut self, id: &str) -> String {
        let id18 = self.full_id(id);
        self.unindex(&id18);
        self.records.remove(&id18);
        self.deleted.insert(id18.clone());
        id18
    }
}
