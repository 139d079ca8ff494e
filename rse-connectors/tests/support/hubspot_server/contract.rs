//! The HubSpot contract file, compiled once per test binary: the validators of its `x-roots`,
//! plus the archive request and the batch read's request and answer, which the file does not
//! describe (the file covers batch upsert only): those are this server's own rules, written
//! from HubSpot's documentation, and say so in their root names.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::{Registry, Validator};
use serde_json::{Value as Json, json};

/// `x-roots` entry of a batch upsert request.
pub const REQUEST: &str = "BatchUpsertRequest";
/// `x-roots` entry of a 200 answer without errors.
pub const RESPONSE_200: &str = "BatchUpsertResponse200";
/// `x-roots` entry of a 207 answer, and of a 2026-09 200 answer that carries `errors[]`.
pub const RESPONSE_WITH_ERRORS: &str = "BatchUpsertResponseWithErrors";
/// `x-roots` entry of any other non-2xx answer.
pub const ERROR: &str = "ErrorResponse";
/// `x-roots` entry of a 429 answer.
pub const RATE_LIMIT: &str = "RateLimitResponse429";
/// Not in the contract file: `POST .../batch/archive`, `{"inputs":[{"id":"<record id>"}]}`,
/// shaped after HubSpot's "Archive a batch of objects by ID" reference (saas-contracts.md §1,
/// source HS29) and the SDK model `BatchInputSimplePublicObjectId`.
pub const ARCHIVE_REQUEST: &str = "ArchiveRequest (rse, from HubSpot's docs)";
/// Not in the contract file: `POST .../batch/read`, shaped after HubSpot's "Retrieve records by
/// ID or unique property value" (batch read) reference and the SDK model
/// `BatchReadInputSimplePublicObjectId`: `inputs` (`[{"id"}]`), `properties` and
/// `propertiesWithHistory` required, `idProperty` optional.
pub const READ_REQUEST: &str = "BatchReadRequest (rse, from HubSpot's docs)";
/// Not in the contract file: a batch read's 200 or 207 answer, after the SDK model
/// `BatchResponseSimplePublicObject(WithErrors)`; its `status` and `errors[]` items are the
/// contract file's `BatchStatus` and `StandardError`.
pub const READ_RESPONSE: &str = "BatchReadResponse (rse, from HubSpot's docs)";

/// Where the contract file is read from: the directory `RSE_CONTRACTS` names, else
/// `../shared/contracts/` beside the project root, the first ancestor of the crate compiling
/// this (rse-connectors for its tests, the root for the benches) that holds `Cargo.lock`.
pub fn schema_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("RSE_CONTRACTS") {
        return PathBuf::from(dir).join("hubspot/crm-batch-upsert.schema.json");
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(&manifest);
    root.join("../shared/contracts/hubspot/crm-batch-upsert.schema.json")
}

pub struct Contract {
    validators: HashMap<&'static str, Validator>,
}

impl Contract {
    /// The compiled contract, shared by every server of the test binary.
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(Contract::load)
    }

    fn load() -> Contract {
        let path = schema_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "read the HubSpot contract at {}: {e}; the vendor contracts live beside the project \
                     (../shared/contracts), or set RSE_CONTRACTS to their directory",
                path.display()
            )
        });
        let doc: Json = serde_json::from_str(&text).expect("the HubSpot contract is JSON");
        let roots = doc["x-roots"].as_object().expect("the contract lists its x-roots").clone();
        let canonical = path.canonicalize().expect("the contract path resolves");
        let uri = format!("file://{}", canonical.display());
        let registry = Registry::new().add(&uri, doc).expect("a file URI").prepare().expect("the contract resolves");
        let mut validators = HashMap::new();
        for name in [REQUEST, RESPONSE_200, RESPONSE_WITH_ERRORS, ERROR, RATE_LIMIT] {
            let fragment = roots[name].as_str().unwrap_or_else(|| panic!("x-roots names {name}"));
            let root = json!({ "$ref": format!("{uri}{fragment}") });
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .with_registry(&registry)
                .build(&root)
                .unwrap_or_else(|e| panic!("compile x-root {name}: {e}"));
            validators.insert(name, validator);
        }
        let archive = json!({
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": false,
            "properties": {"inputs": {"type": "array", "items": {
                "type": "object", "required": ["id"], "additionalProperties": false,
                "properties": {"id": {"type": "string"}}
            }}}
        });
        validators.insert(ARCHIVE_REQUEST, jsonschema::validator_for(&archive).expect("the archive schema compiles"));
        let strings = json!({"type": "array", "items": {"type": "string"}});
        let read = json!({
            "type": "object",
            "required": ["inputs", "properties", "propertiesWithHistory"],
            "additionalProperties": false,
            "properties": {
                "inputs": {"type": "array", "items": {
                    "type": "object", "required": ["id"], "additionalProperties": false,
                    "properties": {"id": {"type": "string", "minLength": 1}}
                }},
                "properties": strings,
                "propertiesWithHistory": strings,
                "idProperty": {"type": "string", "minLength": 1}
            }
        });
        validators.insert(READ_REQUEST, jsonschema::validator_for(&read).expect("the read schema compiles"));
        let time = json!({"type": "string", "format": "date-time"});
        let read_answer = json!({
            "type": "object",
            "required": ["status", "results", "startedAt", "completedAt"],
            "dependentRequired": {"errors": ["numErrors"]},
            "properties": {
                "status": {"$ref": format!("{uri}#/$defs/BatchStatus")},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "properties", "createdAt", "updatedAt", "archived"],
                    "properties": {
                        "id": {"type": "string"},
                        "properties": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                        "createdAt": time, "updatedAt": time, "archivedAt": time,
                        "archived": {"type": "boolean"}
                    }
                }},
                "requestedAt": time, "startedAt": time, "completedAt": time,
                "numErrors": {"type": "integer", "minimum": 1},
                "errors": {"type": "array", "items": {"$ref": format!("{uri}#/$defs/StandardError")}},
                "links": {"type": "object"}
            }
        });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(&read_answer)
            .expect("the read answer's schema compiles");
        validators.insert(READ_RESPONSE, validator);
        Contract { validators }
    }

    /// The violations of `body` against `root`, each as "`/pointer`: message"; empty when valid.
    pub fn check(&self, root: &str, body: &Json) -> Vec<String> {
        let Some(validator) = self.validators.get(root) else {
            return vec![format!("no validator for root {root}")];
        };
        validator.iter_errors(body).map(|e| format!("`{}`: {e}", e.instance_path())).collect()
    }
}
