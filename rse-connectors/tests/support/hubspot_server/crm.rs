//! The CRM store and what batch upsert, batch archive and the properties listing do to it.
//!
//! Follows saas-contracts.md §1 ("Request", "Partial failures", "Idempotency / semantics"):
//! `id` is the value of the unique property `idProperty` names, matched exactly; two inputs
//! resolving to one record fail the batch; unknown and read-only properties are errors; `""`
//! clears a property. Partial failures: `v3` and `2026-03` answer 207 when every input carries
//! a unique `objectWriteTraceId` and otherwise refuse the whole batch with 400; `2026-09`
//! answers 200 with `errors[]` and `numErrors`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value as Json, json};

use super::contract;
use super::wire::{Reply, rfc3339};

/// An API version in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `/crm/v3/objects/...` (legacy).
    V3,
    /// `/crm/objects/2026-03/...`.
    V2026_03,
    /// `/crm/objects/2026-09/...`.
    V2026_09,
}

/// One property of an object type, as the properties listing shows it.
#[derive(Debug, Clone)]
pub struct PropertyDef {
    pub name: String,
    /// `string`, `number`, `bool`, `datetime`, `enumeration`.
    pub kind: &'static str,
    /// `modificationMetadata.readOnlyValue`.
    pub read_only: bool,
    /// `hasUniqueValue`.
    pub unique: bool,
}

impl PropertyDef {
    pub fn text(name: &str) -> Self {
        PropertyDef { name: name.to_owned(), kind: "string", read_only: false, unique: false }
    }
    pub fn number(name: &str) -> Self {
        PropertyDef { kind: "number", ..Self::text(name) }
    }
    pub fn boolean(name: &str) -> Self {
        PropertyDef { kind: "bool", ..Self::text(name) }
    }
    pub fn unique(name: &str) -> Self {
        PropertyDef { unique: true, ..Self::text(name) }
    }
    pub fn read_only(name: &str) -> Self {
        PropertyDef { read_only: true, ..Self::text(name) }
    }
}

/// A record the CRM holds.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub archived: bool,
}

/// What a validation rule sees of one input.
pub struct RuleInput<'a> {
    pub object_type: &'a str,
    pub id: &'a str,
    pub properties: &'a Map<String, Json>,
}

/// An account's validation rule: `Some(message)` refuses the input.
pub type Rule = Arc<dyn Fn(&RuleInput<'_>) -> Option<String> + Send + Sync>;

/// One object type: its properties and records.
pub struct ObjectType {
    /// `0-1`, `0-2`, `2-123`.
    pub type_id: String,
    /// The name used in paths (`contacts`); custom objects use their id.
    pub name: String,
    pub properties: BTreeMap<String, PropertyDef>,
    pub records: BTreeMap<u64, StoredRecord>,
    /// (unique property, value) → record id, for live records.
    index: HashMap<(String, String), u64>,
    /// Records created per (idProperty, id).
    pub creations: HashMap<(String, String), u32>,
}

impl ObjectType {
    /// An object type with HubSpot's read-only system properties and `defs`.
    pub fn new(name: &str, type_id: &str, defs: impl IntoIterator<Item = PropertyDef>) -> Self {
        let system = ["hs_object_id", "createdate", "lastmodifieddate"].map(PropertyDef::read_only);
        ObjectType {
            type_id: type_id.to_owned(),
            name: name.to_owned(),
            properties: system.into_iter().chain(defs).map(|d| (d.name.clone(), d)).collect(),
            records: BTreeMap::new(),
            index: HashMap::new(),
            creations: HashMap::new(),
        }
    }

    /// The live record whose unique `property` is `value`.
    pub fn find(&self, property: &str, value: &str) -> Option<&StoredRecord> {
        self.index.get(&(property.to_owned(), value.to_owned())).and_then(|id| self.records.get(id))
    }

    fn reindex(&mut self, id: u64, before: &BTreeMap<String, String>) {
        let unique: Vec<String> = self.properties.values().filter(|d| d.unique).map(|d| d.name.clone()).collect();
        for p in &unique {
            if let Some(v) = before.get(p) {
                self.index.remove(&(p.clone(), v.clone()));
            }
        }
        let Some(record) = self.records.get(&id) else { return };
        if record.archived {
            return;
        }
        for p in &unique {
            if let Some(v) = record.properties.get(p).filter(|v| !v.is_empty()) {
                self.index.insert((p.clone(), v.clone()), id);
            }
        }
    }

    fn result(&self, id: u64, created: bool, trace: Option<&str>) -> Json {
        let r = &self.records[&id];
        let mut properties: Map<String, Json> =
            r.properties.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect();
        properties.insert("hs_object_id".into(), json!(id.to_string()));
        properties.insert("createdate".into(), json!(rfc3339(r.created_at)));
        properties.insert("lastmodifieddate".into(), json!(rfc3339(r.updated_at)));
        let mut out = json!({
            "id": id.to_string(), "new": created, "archived": false, "properties": properties,
            "createdAt": rfc3339(r.created_at), "updatedAt": rfc3339(r.updated_at),
        });
        if let Some(t) = trace {
            out["objectWriteTraceId"] = json!(t);
        }
        out
    }

    /// The properties listing (`GET /crm/properties/{version}/{objectType}`), shaped after
    /// HubSpot's "Properties API: read all properties" reference.
    pub fn listing(&self) -> Json {
        let results: Vec<Json> = self
            .properties
            .values()
            .map(|d| {
                json!({
                    "name": d.name, "label": d.name, "type": d.kind,
                    "fieldType": if d.kind == "number" { "number" } else { "text" },
                    "groupName": "contactinformation", "description": "", "options": [],
                    "hasUniqueValue": d.unique, "hidden": false, "calculated": false,
                    "modificationMetadata": {"archivable": !d.read_only, "readOnlyDefinition": d.read_only,
                                              "readOnlyValue": d.read_only},
                })
            })
            .collect();
        json!({ "results": results })
    }
}

/// A failed input, before it becomes a `StandardError` or a whole-batch `Error`.
struct InputError {
    category: &'static str,
    message: String,
    details: Vec<Json>,
}

impl InputError {
    fn validation(message: impl Into<String>, details: Vec<Json>) -> Self {
        InputError { category: "VALIDATION_ERROR", message: message.into(), details }
    }
}

enum Target {
    Existing(u64),
    New,
}

struct Plan {
    id_property: String,
    id: String,
    target: Target,
    properties: Vec<(String, String)>,
}

fn detail(message: String, code: &str, property: &str) -> Json {
    json!({"message": message, "code": code, "in": property, "context": {"propertyName": [property]}})
}

fn plan(obj: &ObjectType, rule: Option<&Rule>, input: &Json) -> Result<Plan, InputError> {
    let id = input["id"].as_str().unwrap_or_default().to_owned();
    let Some(id_property) = input.get("idProperty").and_then(Json::as_str) else {
        return Err(InputError::validation(
            "idProperty is required for an upsert: name the unique property that `id` holds a value of",
            vec![],
        ));
    };
    let Some(def) = obj.properties.get(id_property) else {
        return Err(InputError::validation(
            format!("Property `{id_property}` does not exist on object type {}", obj.type_id),
            vec![detail(format!("Property `{id_property}` does not exist"), "PROPERTY_DOESNT_EXIST", id_property)],
        ));
    };
    if !def.unique {
        return Err(InputError::validation(
            format!("Unable to perform update/upsert by non-unique {} property {id_property}", obj.type_id),
            vec![],
        ));
    }
    if id.is_empty() {
        return Err(InputError::validation("id is empty: it must hold a value of the idProperty", vec![]));
    }
    let empty = Map::new();
    let given = input["properties"].as_object().unwrap_or(&empty);
    let mut details = Vec::new();
    let mut properties = Vec::new();
    for (name, value) in given {
        let value = value.as_str().unwrap_or_default();
        match obj.properties.get(name) {
            None => details.push(detail(format!("Property `{name}` does not exist"), "PROPERTY_DOESNT_EXIST", name)),
            Some(d) if d.read_only => {
                details.push(detail(format!("Property `{name}` is read-only"), "READ_ONLY_VALUE", name))
            }
            Some(_) if name == id_property && value != id => {
                details.push(detail(format!("Property `{name}` differs from the input's id"), "INVALID_VALUE", name))
            }
            Some(d) if d.kind == "number" && !value.is_empty() && value.parse::<f64>().is_err() => details
                .push(detail(format!("Property `{name}` takes a number, got {value:?}"), "INVALID_DECIMAL", name)),
            Some(_) => properties.push((name.clone(), value.to_owned())),
        }
    }
    if !details.is_empty() {
        return Err(InputError::validation("Property values were not valid", details));
    }
    if let Some(rule) = rule
        && let Some(message) = rule(&RuleInput { object_type: &obj.name, id: &id, properties: given })
    {
        return Err(InputError::validation(
            message,
            vec![json!({"message": "A validation rule refused this record.",
                                                               "code": "VALIDATION_RULE"})],
        ));
    }
    let target = match obj.find(id_property, &id) {
        Some(r) => Target::Existing(r.id),
        None => Target::New,
    };
    let own = match target {
        Target::Existing(rid) => Some(rid),
        Target::New => None,
    };
    for (name, value) in &properties {
        if value.is_empty() || name == id_property || !obj.properties[name].unique {
            continue;
        }
        if let Some(other) = obj.find(name, value).filter(|r| Some(r.id) != own) {
            return Err(InputError {
                category: "CONFLICT",
                message: format!("A record already has this value of `{name}`. Existing ID: {}", other.id),
                details: vec![],
            });
        }
    }
    Ok(Plan { id_property: id_property.to_owned(), id, target, properties })
}

/// The CRM: object types, their records, and the account's validation rule.
pub struct Crm {
    pub types: Vec<ObjectType>,
    pub rule: Option<Rule>,
    /// Whether answers echo each input's `objectWriteTraceId` (on by default).
    pub echo_traces: bool,
    next_id: u64,
}

impl Default for Crm {
    fn default() -> Self {
        let contacts = ObjectType::new(
            "contacts",
            "0-1",
            [PropertyDef::unique("email"), PropertyDef::text("firstname"), PropertyDef::text("lastname")],
        );
        // Companies have no unique property of their own; accounts create one for upserts.
        let companies = ObjectType::new(
            "companies",
            "0-2",
            [PropertyDef::unique("external_id"), PropertyDef::text("name"), PropertyDef::text("domain")],
        );
        Crm { types: vec![contacts, companies], rule: None, echo_traces: true, next_id: 5101 }
    }
}

impl Crm {
    /// The object type a path names (`contacts` or `0-1`).
    pub fn object(&self, name: &str) -> Option<&ObjectType> {
        self.types.iter().find(|t| t.name == name || t.type_id == name)
    }

    pub fn object_mut(&mut self, name: &str) -> Option<&mut ObjectType> {
        self.types.iter_mut().find(|t| t.name == name || t.type_id == name)
    }

    /// `POST .../batch/upsert`; `body` already matches the contract's request root.
    pub fn upsert(&mut self, version: Version, object: &str, body: &Json, batch_limit: usize) -> Reply {
        let requested_at = SystemTime::now();
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        if inputs.len() > batch_limit {
            return Reply::error(
                400,
                "VALIDATION_ERROR",
                format!("Batch input limit exceeded: {} inputs, at most {batch_limit} allowed", inputs.len()),
            );
        }
        let rule = self.rule.clone();
        let Some(obj) = self.object(object) else {
            return Reply::error(400, "VALIDATION_ERROR", format!("Unable to infer object type from: {object}"));
        };
        let plans: Vec<Result<Plan, InputError>> = inputs.iter().map(|i| plan(obj, rule.as_ref(), i)).collect();

        // Two inputs resolving to one record fail the whole batch, whatever the version.
        let mut seen = HashSet::new();
        let mut duplicates = Vec::new();
        for p in plans.iter().flatten() {
            let target = match p.target {
                Target::Existing(rid) => format!("record {rid}"),
                Target::New => format!("{}={}", p.id_property, p.id),
            };
            if !seen.insert(target) {
                duplicates.push(p.id.clone());
            }
        }
        if !duplicates.is_empty() {
            return Reply::error(
                400,
                "VALIDATION_ERROR",
                format!("Duplicate IDs found in batch input: {duplicates:?}. IDs must be unique"),
            );
        }

        let traces: Vec<Option<&str>> =
            inputs.iter().map(|i| i.get("objectWriteTraceId").and_then(Json::as_str)).collect();
        let failed = plans.iter().filter(|p| p.is_err()).count();
        if failed > 0 && version != Version::V2026_09 {
            let distinct: HashSet<&str> = traces.iter().flatten().copied().collect();
            let multi_status = distinct.len() == inputs.len();
            if !multi_status {
                let first = plans.into_iter().find_map(Result::err).expect("an input failed");
                return Reply::error_with(400, first.category, first.message, first.details, json!({}));
            }
        }

        let mut results = Vec::new();
        let mut errors = Vec::new();
        // An answer that names inputs by their ids only (the trace ids not echoed).
        let echoed: Vec<Option<&str>> = traces.iter().map(|t| t.filter(|_| self.echo_traces)).collect();
        for ((plan, trace), input) in plans.into_iter().zip(&echoed).zip(&inputs) {
            match plan {
                Ok(plan) => {
                    let (rid, created) = self.apply(object, plan);
                    results.push(self.object(object).map(|o| o.result(rid, created, *trace)).unwrap_or_default());
                }
                Err(e) => {
                    let mut context = json!({ "ids": [input["id"].as_str().unwrap_or_default()] });
                    if let Some(t) = trace {
                        context["objectWriteTraceId"] = json!([t]);
                    }
                    errors.push(json!({"status": "error", "category": e.category, "message": e.message,
                                       "errors": e.details, "context": context, "links": {}}));
                }
            }
        }
        let now = rfc3339(SystemTime::now());
        let mut body = json!({"status": "COMPLETE", "requestedAt": rfc3339(requested_at), "startedAt": rfc3339(requested_at),
                              "completedAt": now, "results": results});
        if errors.is_empty() {
            return Reply::json(200, body, contract::RESPONSE_200);
        }
        body["numErrors"] = json!(errors.len());
        body["errors"] = Json::Array(errors);
        let status = if version == Version::V2026_09 { 200 } else { 207 };
        Reply::json(status, body, contract::RESPONSE_WITH_ERRORS)
    }

    fn apply(&mut self, object: &str, plan: Plan) -> (u64, bool) {
        let now = SystemTime::now();
        let fresh = self.next_id;
        let obj = self.object_mut(object).expect("the object type was resolved");
        let (rid, created, before) = match plan.target {
            Target::Existing(rid) => (rid, false, obj.records[&rid].properties.clone()),
            Target::New => {
                let record = StoredRecord {
                    id: fresh,
                    properties: BTreeMap::from([(plan.id_property.clone(), plan.id.clone())]),
                    created_at: now,
                    updated_at: now,
                    archived: false,
                };
                obj.records.insert(fresh, record);
                *obj.creations.entry((plan.id_property.clone(), plan.id.clone())).or_default() += 1;
                (fresh, true, BTreeMap::new())
            }
        };
        let record = obj.records.get_mut(&rid).expect("the record exists");
        for (name, value) in plan.properties {
            if value.is_empty() {
                record.properties.remove(&name);
            } else {
                record.properties.insert(name, value);
            }
        }
        record.updated_at = now;
        obj.reindex(rid, &before);
        if created {
            self.next_id += 1;
        }
        (rid, created)
    }

    /// `POST .../batch/archive`: archives each live record named by id; an unknown or already
    /// archived id is accepted as done (HubSpot answers 204 either way).
    pub fn archive(&mut self, object: &str, body: &Json, batch_limit: usize) -> (Reply, Vec<u64>) {
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        if inputs.len() > batch_limit {
            let message = format!("Batch input limit exceeded: {} inputs, at most {batch_limit} allowed", inputs.len());
            return (Reply::error(400, "VALIDATION_ERROR", message), vec![]);
        }
        let Some(obj) = self.object_mut(object) else {
            return (
                Reply::error(400, "VALIDATION_ERROR", format!("Unable to infer object type from: {object}")),
                vec![],
            );
        };
        let mut archived = Vec::new();
        for input in &inputs {
            let Some(rid) = input["id"].as_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
            let Some(record) = obj.records.get_mut(&rid).filter(|r| !r.archived) else { continue };
            record.archived = true;
            record.updated_at = SystemTime::now();
            let props = record.properties.clone();
            obj.reindex(rid, &props);
            archived.push(rid);
        }
        (Reply::empty(204), archived)
    }
}
