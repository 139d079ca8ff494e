//! `POST .../batch/read`: records by record id or by a unique property's value.
//!
//! The contract file covers batch upsert only, so this endpoint's bodies are checked by this
//! server's own rules ([`contract::READ_REQUEST`], [`contract::READ_RESPONSE`]), written from
//! HubSpot's documentation: "CRM objects: Retrieve records by ID or unique property value"
//! (batch read, `POST /crm/objects/{version}/{objectType}/batch/read`, legacy
//! `/crm/v3/objects/{objectType}/batch/read`) and the `BatchReadInputSimplePublicObjectId` and
//! `BatchResponseSimplePublicObject` models of HubSpot's SDKs: the request requires `inputs`
//! (`[{"id"}]`), `properties` and `propertiesWithHistory`, and takes an optional `idProperty`
//! (a property with unique values; without it, `id` is the record id); an answer holds
//! `results[{id, properties, createdAt, updatedAt, archived}]`. Archived records are not read
//! (the `archived` query parameter defaults to false). A value no live record holds is left out
//! of `results`: in `v3` and `2026-03` it is named in an `OBJECT_NOT_FOUND` error of a 207,
//! in `2026-09` simply absent from a 200.
use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value as Json, json};

use super::contract;
use super::crm::{Crm, StoredRecord, Version};
use super::wire::{Reply, rfc3339};

/// The properties a read returns unasked, as HubSpot does.
const ALWAYS: [&str; 3] = ["hs_object_id", "createdate", "lastmodifieddate"];

impl Crm {
    /// `POST .../batch/read`; `body` already matches [`contract::READ_REQUEST`].
    pub fn read(&self, version: Version, object: &str, body: &Json, batch_limit: usize) -> Reply {
        let requested_at = SystemTime::now();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        if inputs.len() > batch_limit {
            let message = format!("Batch input limit exceeded: {} inputs, at most {batch_limit} allowed", inputs.len());
            return Reply::error(400, "VALIDATION_ERROR", message);
        }
        let Some(obj) = self.object(object) else {
            return Reply::error(400, "VALIDATION_ERROR", format!("Unable to infer object type from: {object}"));
        };
        let id_property = body.get("idProperty").and_then(Json::as_str);
        if let Some(p) = id_property {
            match obj.properties.get(p) {
                None => {
                    return Reply::error(400, "VALIDATION_ERROR", format!("Property `{p}` does not exist on {object}"));
                }
                Some(d) if !d.unique => {
                    return Reply::error(
                        400,
                        "VALIDATION_ERROR",
                        format!("Unable to read by non-unique {} property {p}", obj.type_id),
                    );
                }
                Some(_) => {}
            }
        }
        let wanted: Vec<&str> = body["properties"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in &inputs {
            let id = input["id"].as_str().unwrap_or_default();
            let found = match id_property {
                Some(p) => obj.find(p, id),
                None => id.parse::<u64>().ok().and_then(|rid| obj.records.get(&rid)).filter(|r| !r.archived),
            };
            match found {
                Some(record) => results.push(result(record, &wanted)),
                None => missing.push(id.to_owned()),
            }
        }
        let mut body = json!({"status": "COMPLETE", "requestedAt": rfc3339(requested_at), "startedAt": rfc3339(requested_at),
                              "completedAt": rfc3339(SystemTime::now()), "results": results});
        if missing.is_empty() || version == Version::V2026_09 {
            return Reply::json(200, body, contract::READ_RESPONSE);
        }
        let error = json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": format!("Could not get some {object} objects, they may be deleted or not exist. Check that ids are valid."),
                           "errors": [], "context": {"ids": missing}, "links": {}});
        body["numErrors"] = json!(1);
        body["errors"] = json!([error]);
        Reply::json(207, body, contract::READ_RESPONSE)
    }
}

/// A `SimplePublicObject`: the record with the properties asked for (those it holds) and
/// the ones HubSpot always returns.
fn result(record: &StoredRecord, wanted: &[&str]) -> Json {
    let mut properties: BTreeMap<&str, Json> = wanted
        .iter()
        .filter_map(|name| record.properties.get(*name).map(|v| (*name, Json::String(v.clone()))))
        .collect();
    let system = [record.id.to_string(), rfc3339(record.created_at), rfc3339(record.updated_at)];
    for (name, value) in ALWAYS.into_iter().zip(system) {
        properties.insert(name, Json::String(value));
    }
    let properties: Map<String, Json> = properties.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    json!({"id": record.id.to_string(), "properties": properties, "archived": false,
           "createdAt": rfc3339(record.created_at), "updatedAt": rfc3339(record.updated_at)})
}
