//! Vendor contract files (JSON Schemas under `../shared/contracts/`), compiled for the
//! in-process contract servers: a validator for any `x-roots` entry or `$defs` name of a file.
//! Files are read where they live, never copied into the project.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use jsonschema::{Registry, Validator};
use serde_json::{Value as Json, json};

/// The contracts directory: the one `RSE_CONTRACTS` names, else `../shared/contracts/` beside
/// the project root (the first ancestor of the compiling crate that holds `Cargo.lock`).
pub fn contracts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RSE_CONTRACTS") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(&manifest);
    root.join("../shared/contracts")
}

/// One compiled schema file.
pub struct SchemaFile {
    uri: String,
    doc: Json,
    registry: Registry<'static>,
    validators: Mutex<HashMap<String, &'static Validator>>,
}

impl SchemaFile {
    /// The file at `relative` (to the contracts directory), compiled once per test binary.
    pub fn get(relative: &'static str) -> &'static SchemaFile {
        static FILES: OnceLock<Mutex<HashMap<&'static str, &'static SchemaFile>>> = OnceLock::new();
        let files = FILES.get_or_init(Default::default);
        let mut files = files.lock().unwrap();
        let file: &'static SchemaFile =
            files.entry(relative).or_insert_with(|| Box::leak(Box::new(SchemaFile::load(relative))));
        file
    }

    fn load(relative: &str) -> SchemaFile {
        let path = contracts_dir().join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "read the contract {}: {e}; the vendor contracts live beside the project \
                 (../shared/contracts), or set RSE_CONTRACTS to their directory",
                path.display()
            )
        });
        let doc: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let canonical = path.canonicalize().expect("the contract path resolves");
        let uri = format!("file://{}", canonical.display());
        let registry =
            Registry::new().add(&uri, doc.clone()).expect("a file URI").prepare().expect("the contract resolves");
        SchemaFile { uri, doc, registry, validators: Mutex::default() }
    }

    /// The validator of `name`: an `x-roots` entry, else a `$defs` name.
    pub fn validator(&self, name: &str) -> &'static Validator {
        let mut validators = self.validators.lock().unwrap();
        if let Some(v) = validators.get(name) {
            return v;
        }
        let fragment = match self.doc["x-roots"].get(name).and_then(Json::as_str) {
            Some(fragment) => fragment.to_owned(),
            None => {
                assert!(self.doc["$defs"].get(name).is_some(), "{} has no x-root or $defs entry {name}", self.uri);
                format!("#/$defs/{name}")
            }
        };
        let root = json!({ "$ref": format!("{}{fragment}", self.uri) });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_registry(&self.registry)
            .build(&root)
            .unwrap_or_else(|e| panic!("compile {name}: {e}"));
        let validator: &'static Validator = Box::leak(Box::new(validator));
        validators.insert(name.to_owned(), validator);
        validator
    }

    /// Every violation of `body` against `name`, as text (empty when it validates).
    pub fn violations(&self, name: &str, body: &Json) -> Vec<String> {
        self.validator(name).iter_errors(body).map(|e| format!("{name}: {} at {}", e, e.instance_path())).collect()
    }
}
