//! One record read by the value of an external id field.
//!
//! Follows the Salesforce REST API Developer Guide, "Get Records Using sObject Rows by External
//! ID" and "Get a Record Using an External ID" (`GET /services/data/vXX.X/sobjects/{SObject}/
//! {fieldName}/{fieldValue}`: 200 and the record, with `attributes` and `Id`), the same
//! resource's note that a value matched by several records answers 300 with the list of the
//! matching records, and "Status Codes and Error Responses" (404 `NOT_FOUND`).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value as Json, json};

use super::records::key_text;
use super::{Org, json_response, sf_error};

type Shared = State<Arc<Mutex<Org>>>;

/// `GET /services/data/vXX.X/sobjects/{SObject}/{ExternalIdField}/{value}`.
///
/// The records are scanned rather than read from the org's index, so that a test can give a
/// second record the same value (as a field not marked unique allows) and get the 300.
pub async fn by_external_id(
    State(org): Shared,
    Path((version, sobject, field, value)): Path<(String, String, String, String)>,
) -> Response {
    let mut s = org.lock().unwrap();
    s.ext_lookups += 1;
    let not_found = || sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
    let Some(object) = s.objects.get(&sobject) else { return not_found() };
    let Some(ext) = object.field(&field).filter(|f| f.external_id).map(|f| f.name.clone()) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
        );
    };
    let url = |id: &str| format!("/services/data/{version}/sobjects/{sobject}/{id}");
    let matching: Vec<&Map<String, Json>> = s
        .records
        .values()
        .filter(|r| r.sobject == sobject && r.fields.get(&ext).and_then(key_text).as_deref() == Some(value.as_str()))
        .map(|r| &r.fields)
        .collect();
    match matching.as_slice() {
        [] => not_found(),
        [one] => {
            let id = one.get("Id").and_then(Json::as_str).unwrap_or_default();
            let mut body = Map::new();
            body.insert("attributes".to_owned(), json!({"type": sobject, "url": url(id)}));
            body.extend((*one).clone());
            json_response(StatusCode::OK, &Json::Object(body))
        }
        several => {
            // The documentation says the answer lists the matching records; not documented is
            // the shape of the list: their URLs, as a JSON array.
            let urls: Vec<Json> = several
                .iter()
                .map(|r| Json::from(url(r.get("Id").and_then(Json::as_str).unwrap_or_default())))
                .collect();
            json_response(StatusCode::MULTIPLE_CHOICES, &Json::Array(urls))
        }
    }
}

impl Org {
    /// A second record with the fields of record `id` (its external ids included), as an
    /// external id field not marked unique allows, e.g. after a data load that bypassed the
    /// API. The org's index keeps pointing at the first. Returns the new record's id.
    pub fn duplicate(&mut self, id: &str) -> String {
        let mut copy = self.records[id].clone();
        self.next_id += 1;
        let new_id = super::ids::nth(&self.objects[&copy.sobject].key_prefix, self.next_id);
        copy.fields.insert("Id".to_owned(), json!(new_id));
        self.records.insert(new_id.clone(), copy);
        new_id
    }
}
