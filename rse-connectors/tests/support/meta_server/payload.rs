//! Reading a write's parameters: the `payload` (schema, rows aligned to it, at most 10,000)
//! and the `session` (`session_id`, `batch_seq`, `last_batch_flag`, `estimated_num_total`),
//! as the "Custom Audience Users" reference and the guide "Customer File Custom Audiences"
//! describe them; and which cells Meta takes as invalid (hashed keys as 64 lowercase hex
//! digits, `MADID` unhashed and lowercase).
use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::audience::{DataKind, HASHED_KEYS, MAX_ROWS, PLAIN_KEYS, invalid};
use super::wire::Reply;

pub struct Payload {
    pub schema: Vec<String>,
    pub kind: DataKind,
    pub rows: Vec<Vec<Json>>,
}

pub struct SessionParam {
    pub id: i64,
    pub batch_seq: i64,
    pub last: bool,
    pub estimated_total: Option<i64>,
}

pub fn payload(params: &BTreeMap<String, String>, violations: &mut Vec<String>, what: &str) -> Result<Payload, Reply> {
    let Some(text) = params.get("payload") else {
        violations.push(format!("{what}: no `payload` parameter"));
        return Err(Reply::error(100, None, "The parameter payload is required"));
    };
    let Ok(Json::Object(payload)) = serde_json::from_str::<Json>(text) else {
        violations.push(format!("{what}: `payload` is not a JSON object"));
        return Err(invalid("payload must be a JSON object"));
    };
    for key in payload.keys() {
        if !["schema", "data", "is_raw", "app_ids", "page_ids", "data_source"].contains(&key.as_str()) {
            violations.push(format!("{what}: unknown payload field `{key}`"));
        }
    }
    let known = |k: &str| HASHED_KEYS.contains(&k) || PLAIN_KEYS.contains(&k);
    let (schema, kind) = match payload.get("schema") {
        Some(Json::String(s)) => {
            let key = match s.as_str() {
                "EMAIL_SHA256" => "EMAIL",
                "PHONE_SHA256" => "PHONE",
                "MOBILE_ADVERTISER_ID" => "MADID",
                other => other,
            };
            if !known(key) {
                violations.push(format!("{what}: unknown schema `{s}`"));
                return Err(invalid(&format!("unknown schema key {s}")));
            }
            (vec![key.to_owned()], DataKind::SingleKey)
        }
        Some(Json::Array(keys)) if !keys.is_empty() => {
            let mut schema = Vec::new();
            for k in keys {
                let Some(k) = k.as_str().filter(|k| known(k)) else {
                    violations.push(format!("{what}: unknown schema key {k}"));
                    return Err(invalid(&format!("unknown schema key {k}")));
                };
                if schema.iter().any(|s| s == k) {
                    violations.push(format!("{what}: schema key {k} twice"));
                    return Err(invalid(&format!("schema key {k} appears twice")));
                }
                schema.push(k.to_owned());
            }
            (schema, DataKind::MultiKey)
        }
        _ => {
            violations.push(format!("{what}: payload.schema missing or empty"));
            return Err(invalid("payload.schema is required"));
        }
    };
    let Some(Json::Array(data)) = payload.get("data") else {
        violations.push(format!("{what}: payload.data missing or not an array"));
        return Err(invalid("payload.data is required"));
    };
    if data.is_empty() {
        violations.push(format!("{what}: payload.data is empty"));
        return Err(invalid("payload.data is empty"));
    }
    if data.len() > MAX_ROWS {
        violations.push(format!("{what}: {} rows, more than {MAX_ROWS}", data.len()));
        return Err(invalid(&format!("too many entries: at most {MAX_ROWS} per request")));
    }
    let mut rows = Vec::with_capacity(data.len());
    for row in data {
        let cells = match (kind, row) {
            (DataKind::SingleKey, Json::Array(cells)) if cells.len() == 1 => cells.clone(),
            (DataKind::SingleKey, cell) if !cell.is_array() => vec![cell.clone()],
            (DataKind::MultiKey, Json::Array(cells)) if cells.len() == schema.len() => cells.clone(),
            _ => {
                violations.push(format!("{what}: a data row does not match the schema's {} keys", schema.len()));
                return Err(invalid("the number of fields in a data row does not match the schema"));
            }
        };
        rows.push(cells);
    }
    Ok(Payload { schema, kind, rows })
}

pub fn session_param(
    params: &BTreeMap<String, String>,
    violations: &mut Vec<String>,
    what: &str,
) -> Result<Option<SessionParam>, Reply> {
    let Some(text) = params.get("session") else { return Ok(None) };
    let Ok(Json::Object(s)) = serde_json::from_str::<Json>(text) else {
        violations.push(format!("{what}: `session` is not a JSON object"));
        return Err(invalid("session must be a JSON object"));
    };
    for key in s.keys() {
        if !["session_id", "batch_seq", "last_batch_flag", "estimated_num_total"].contains(&key.as_str()) {
            violations.push(format!("{what}: unknown session field `{key}`"));
        }
    }
    let id = s.get("session_id").and_then(Json::as_i64).filter(|id| *id > 0);
    let seq = s.get("batch_seq").and_then(Json::as_i64).filter(|n| *n > 0);
    let (Some(id), Some(batch_seq)) = (id, seq) else {
        violations.push(format!("{what}: session needs a positive integer session_id and batch_seq"));
        return Err(invalid("session.session_id and session.batch_seq must be positive integers"));
    };
    let last = match s.get("last_batch_flag") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            violations.push(format!("{what}: last_batch_flag is {other}, not a boolean"));
            return Err(invalid("session.last_batch_flag must be a boolean"));
        }
    };
    let estimated_total = s.get("estimated_num_total").and_then(Json::as_i64);
    Ok(Some(SessionParam { id, batch_seq, last, estimated_total }))
}

/// Why a cell is invalid, if it is (never naming the value).
pub fn bad_cell(key: &str, cell: &Json) -> Option<&'static str> {
    let Some(v) = cell.as_str() else { return Some("Value is not a string") };
    if v.is_empty() {
        return None;
    }
    let hex64 = v.len() == 64 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if HASHED_KEYS.contains(&key) && !hex64 {
        return Some("Invalid hash: expected a SHA-256 digest in lowercase hex");
    }
    if key == "MADID" && (hex64 || v.bytes().any(|b| b.is_ascii_uppercase())) {
        return Some("Invalid mobile advertiser id: send it unhashed, in lowercase");
    }
    None
}
