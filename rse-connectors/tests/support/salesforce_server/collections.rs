//! sObject Collections (upsert by external id, delete by ids), `describe` and `limits`.
//!
//! Follows the Salesforce REST API Developer Guide: "Upsert Records Using sObject Collections"
//! (API 46.0+: at most 200 records, all of the URI's type, each with `attributes.type`, no record
//! ids, results in input order, `allOrNone` default false), "Delete Records Using sObject
//! Collections" (`?ids=` up to 200, DeleteResults in the order of the ids), "allOrNone
//! Parameters in Composite and Collections Requests" (`ALL_OR_NONE_OPERATION_ROLLED_BACK`),
//! "sObject Describe", "Limits", and "Status Codes and Error Responses" (malformed → 400 with
//! `[{message, errorCode}]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value as Json, json};

use super::auth::parse_form;
use super::records::{ErrItem, json_type_error, key_text};
use super::{Org, json_response, parse_version, sf_error};

type Shared = State<Arc<Mutex<Org>>>;

const MAX_RECORDS: usize = 200;
const ROLLED_BACK: &str =
    "Record rolled back because not all records were valid and the request was using AllOrNone header";

fn not_found() -> Response {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
}

fn bad(code: &str, message: &str) -> Response {
    sf_error(StatusCode::BAD_REQUEST, code, message)
}

fn success(id: &str, created: Option<bool>) -> Json {
    match created {
        Some(created) => json!({"id": id, "success": true, "errors": [], "created": created}),
        None => json!({"id": id, "success": true, "errors": []}),
    }
}

fn failure(id: Option<&str>, error: &ErrItem) -> Json {
    match id {
        Some(id) => json!({"id": id, "success": false, "errors": [error.json()]}),
        None => json!({"success": false, "errors": [error.json()]}),
    }
}

/// `PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}`.
pub async fn upsert(
    State(org): Shared,
    Path((version, sobject, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if parse_version(&version).is_none_or(|v| v < 46.0) {
        return not_found();
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return sf_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type header specified in HTTP request is not supported",
        );
    }
    let mut s = org.lock().unwrap();
    let Some(object) = s.objects.get(&sobject).cloned() else { return not_found() };
    let Some(ext) = object.field(&field).filter(|f| f.external_id).map(|f| f.name.clone()) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
        );
    };
    let Ok(Json::Object(top)) = serde_json::from_slice::<Json>(&body) else {
        return bad("JSON_PARSER_ERROR", "The request body is not a JSON object");
    };
    if let Some(key) = top.keys().find(|k| *k != "allOrNone" && *k != "records") {
        return bad("JSON_PARSER_ERROR", &format!("Unrecognized field \"{key}\""));
    }
    let all_or_none = match top.get("allOrNone") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return bad("JSON_PARSER_ERROR", "allOrNone must be true or false"),
    };
    let Some(Json::Array(records)) = top.get("records") else {
        return bad("JSON_PARSER_ERROR", "records must be an array of sObjects");
    };
    if records.len() > MAX_RECORDS {
        return bad("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call");
    }
    let mut raw = Vec::with_capacity(records.len());
    for record in records {
        let Json::Object(record) = record else {
            return bad("JSON_PARSER_ERROR", "Each record must be a JSON object");
        };
        match record.get("attributes").and_then(|a| a.get("type")).and_then(Json::as_str) {
            None => return bad("INVALID_TYPE", "Must send a concrete entity type."),
            Some(t) if t != sobject => {
                return bad(
                    "INVALID_TYPE",
                    &format!("Every record must be of the type in the URI ({sobject}), not {t}"),
                );
            }
            Some(_) => {}
        }
        if record.keys().any(|k| k.eq_ignore_ascii_case("id")) {
            return bad("INVALID_FIELD", &format!("Record IDs are not allowed in an upsert by external ID ({ext})"));
        }
        for (name, value) in record {
            if let Some(kind) = object.field(name).and_then(|f| json_type_error(f.kind, value)) {
                // As Salesforce does, the message quotes the value.
                return bad(
                    "JSON_PARSER_ERROR",
                    &format!(
                        "Cannot deserialize instance of {kind} from value {value} or request may be missing a required field"
                    ),
                );
            }
        }
        raw.push(record);
    }
    let checked: Vec<Result<Map<String, Json>, ErrItem>> = raw.iter().map(|r| s.canonical(&sobject, r)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in checked.iter().flatten() {
        if let Some(value) = record.get(&ext).and_then(key_text) {
            *seen.entry(value).or_default() += 1;
        }
    }
    let duplicate = |record: &Map<String, Json>| record.get(&ext).and_then(key_text).filter(|v| seen[v] > 1);
    let checked: Vec<Result<Map<String, Json>, ErrItem>> = checked
        .into_iter()
        .map(|r| {
            let record = r?;
            if let Some(value) = duplicate(&record) {
                return Err(ErrItem::new(
                    "DUPLICATE_EXTERNAL_ID",
                    format!("Duplicate external id specified: {value}"),
                    &[ext.as_str()],
                ));
            }
            Ok(record)
        })
        .collect();
    let results: Vec<Json> = if all_or_none {
        let outcomes: Vec<Result<Map<String, Json>, ErrItem>> =
            checked.into_iter().map(|r| r.and_then(|rec| s.check_upsert(&sobject, &ext, &rec).map(|()| rec))).collect();
        if outcomes.iter().any(Result::is_err) {
            let rolled = ErrItem::new("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK, &[]);
            outcomes.iter().map(|r| failure(None, r.as_ref().err().unwrap_or(&rolled))).collect()
        } else {
            outcomes
                .into_iter()
                .flatten()
                .map(|rec| {
                    let (id, created) = s.apply_upsert(&sobject, &ext, rec);
                    success(&id, Some(created))
                })
                .collect()
        }
    } else {
        // One by one, in order: each record sees what the earlier ones wrote.
        checked
            .into_iter()
            .map(|r| match r.and_then(|rec| s.check_upsert(&sobject, &ext, &rec).map(|()| rec)) {
                Ok(rec) => {
                    let (id, created) = s.apply_upsert(&sobject, &ext, rec);
                    success(&id, Some(created))
                }
                Err(e) => failure(None, &e),
            })
            .collect()
    };
    json_response(StatusCode::OK, &Json::Array(results))
}

/// `DELETE /services/data/vXX.X/composite/sobjects?ids=…&allOrNone=…`.
pub async fn delete(State(org): Shared, Path(version): Path<String>, RawQuery(query): RawQuery) -> Response {
    if parse_version(&version).is_none_or(|v| v < 42.0) {
        return not_found();
    }
    let params = parse_form(query.as_deref().unwrap_or_default());
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(ids) = param("ids").filter(|v| !v.is_empty()) else {
        return bad("MISSING_ARGUMENT", "ids not specified");
    };
    let all_or_none = match param("allOrNone") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return bad("INVALID_QUERY_PARAMETER_VALUE", "allOrNone must be true or false"),
    };
    let ids: Vec<&str> = ids.split(',').collect();
    if ids.len() > MAX_RECORDS {
        return bad("EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call");
    }
    let mut s = org.lock().unwrap();
    let shown = |id: &str| super::ids::well_formed(id).then(|| id.to_owned());
    let results: Vec<Json> = if all_or_none {
        let outcomes: Vec<Result<(), ErrItem>> = ids.iter().map(|id| s.check_delete(id)).collect();
        if outcomes.iter().any(Result::is_err) {
            let rolled = ErrItem::new("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK, &[]);
            ids.iter()
                .zip(&outcomes)
                .map(|(id, r)| failure(shown(id).as_deref(), r.as_ref().err().unwrap_or(&rolled)))
                .collect()
        } else {
            ids.iter().map(|id| success(&s.apply_delete(id), None)).collect()
        }
    } else {
        ids.iter()
            .map(|id| match s.check_delete(id) {
                Ok(()) => success(&s.apply_delete(id), None),
                Err(e) => failure(shown(id).as_deref(), &e),
            })
            .collect()
    };
    json_response(StatusCode::OK, &Json::Array(results))
}

/// `GET /services/data/vXX.X/sobjects/{SObject}/describe` (the fields a connector checks).
pub async fn describe(State(org): Shared, Path((_version, sobject)): Path<(String, String)>) -> Response {
    let s = org.lock().unwrap();
    let Some(object) = s.objects.get(&sobject) else { return not_found() };
    let fields: Vec<Json> = object
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "label": f.name.trim_end_matches("__c").replace('_', " "),
                "type": f.kind.describe_name(),
                "createable": f.createable,
                "updateable": f.updateable,
                "externalId": f.external_id,
                "idLookup": f.external_id || f.name == "Id",
                "unique": f.external_id,
                "nillable": !f.required && f.name != "Id",
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "name": sobject,
            "label": sobject,
            "keyPrefix": object.key_prefix,
            "createable": true,
            "updateable": true,
            "deletable": true,
            "fields": fields,
        }),
    )
}

/// `GET /services/data/vXX.X/limits` (the daily API allowance only).
pub async fn limits(State(org): Shared) -> Response {
    let s = org.lock().unwrap();
    json_response(
        StatusCode::OK,
        &json!({"DailyApiRequests": {"Max": s.daily_limit, "Remaining": s.daily_limit.saturating_sub(s.api_used)}}),
    )
}
