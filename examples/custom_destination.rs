//! A complete destination to copy: one JSON document per key in a folder, the way a tool
//! that ingests a directory (a search index, a static-site build, a file drop) takes them.
//!
//! A destination is its I/O and its error classes, nothing else: the runner batches,
//! paces, retries, bisects refused batches and keeps the state. Run it with
//! `cargo run --example custom_destination --features encode`; `cargo test --all-features`
//! runs it through the destination conformance suite.

use std::path::{Path, PathBuf};

use rse::connectors::encode::record_to_json;
use rse::memory::{MemorySource, MemoryStateStore};
use rse::{
    ChangeBatch, DataType, Destination, DestinationCapabilities, DestinationError, Field, Key, Mode, Op, Record,
    Schema, SyncJob, SyncOptions, Value, WriteOutcome, WriteOutcomes, async_trait,
};

/// Writes each record as `<folder>/<key>.json`; a delete removes the file.
pub struct JsonFolderDestination {
    name: String,
    folder: PathBuf,
}

impl JsonFolderDestination {
    /// Documents go into `folder`, which must exist.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        let folder = folder.into();
        Self { name: format!("json-folder:{}", folder.display()), folder }
    }

    /// A file name per key: the key's bytes in hex, so any key is a valid, distinct name and
    /// no value shows in it.
    fn path_of(&self, key: &Key) -> PathBuf {
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        self.folder.join(format!("{hex}.json"))
    }

    /// How the runner should treat an I/O failure: a full disk or a busy file may pass, a
    /// folder we may not write to will not.
    fn classify(&self, error: std::io::Error, doing: &str) -> DestinationError {
        let message = format!("{}: {doing}: {error}", self.name);
        match error.kind() {
            std::io::ErrorKind::PermissionDenied => DestinationError::Unauthorized { message },
            std::io::ErrorKind::NotFound => DestinationError::fatal(message + " (does the folder exist?)"),
            _ => DestinationError::transient(message),
        }
    }
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never half of one.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("json.partial");
    tokio::fs::write(&partial, bytes).await?;
    tokio::fs::rename(&partial, path).await
}

#[async_trait]
impl Destination for JsonFolderDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete]).with_max_batch_rows(500)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let probe = self.folder.join(".rse-check");
        write_atomically(&probe, b"{}").await.map_err(|e| self.classify(e, "writing a probe file"))?;
        tokio::fs::remove_file(&probe).await.map_err(|e| self.classify(e, "removing the probe file"))
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut outcomes = WriteOutcomes::new(batch.len());
        for (i, change) in batch.changes.iter().enumerate() {
            let path = self.path_of(&change.key);
            match (&change.record, change.op) {
                (_, Op::Delete) => match tokio::fs::remove_file(&path).await {
                    // Deleting what is not there succeeds: a re-sent delete must.
                    Ok(()) => outcomes.applied(i),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => outcomes.applied(i),
                    Err(e) => return Err(self.classify(e, "deleting a document")),
                },
                (Some(record), _) => {
                    let json = serde_json::Value::Object(record_to_json(&batch.schema, record));
                    write_atomically(&path, json.to_string().as_bytes())
                        .await
                        .map_err(|e| self.classify(e, "writing a document"))?;
                    outcomes.applied(i);
                }
                // Refuse this change alone; the rest of the batch goes on.
                (None, op) => outcomes.rejected(i, format!("{op} without a record")),
            }
        }
        // Fails, naming the positions, if a change above was left without an outcome.
        outcomes.finish(&self.name)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::temp_dir().join(format!("rse-json-folder-{}", std::process::id()));
    tokio::fs::create_dir_all(&folder).await?;
    let schema =
        Schema::new(vec![Field::required("id", DataType::Int), Field::new("tier", DataType::String)], &["id"])?
            .into_arc();
    let rows = |tiers: &[&str]| -> Vec<Record> {
        tiers.iter().enumerate().map(|(i, t)| Record::new(vec![Value::Int(i as i64), (*t).into()])).collect()
    };
    let source = MemorySource::new(schema, rows(&["gold", "silver", "bronze"]));
    let sync = SyncJob::builder("tiers-to-folder")
        .source(source.clone())
        .destination(JsonFolderDestination::new(&folder))
        .state(MemoryStateStore::new())
        .mode(Mode::Mirror)
        .options(SyncOptions::default().with_max_deletes(None))
        .build()
        .await?;
    println!("{}", sync.run().await?);
    source.set_rows(rows(&["gold", "platinum"]));
    println!("{}", sync.run().await?);
    println!("documents in {}: {}", folder.display(), std::fs::read_dir(&folder)?.count());
    tokio::fs::remove_dir_all(&folder).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rse::testing::{DestinationReadback, check_destination};

    /// Reads a conformance-suite document back into a record of the suite's schema.
    struct Readback<'a>(&'a JsonFolderDestination);

    #[async_trait]
    impl DestinationReadback for Readback<'_> {
        async fn get(&self, schema: &Schema, key: &Key) -> Result<Option<Record>, rse::BoxError> {
            let Ok(text) = tokio::fs::read_to_string(self.0.path_of(key)).await else { return Ok(None) };
            let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)?;
            let value = |f: &Field| match (&f.data_type, json.get(&f.name).unwrap_or(&serde_json::Value::Null)) {
                (DataType::Int, v) => v.as_i64().map_or(Value::Null, Value::Int),
                (DataType::Float, v) => v.as_f64().map_or(Value::Null, Value::Float),
                (DataType::Bool, v) => v.as_bool().map_or(Value::Null, Value::Bool),
                (_, v) => v.as_str().map_or(Value::Null, Value::from),
            };
            Ok(Some(Record::new(schema.fields().iter().map(value).collect())))
        }
    }

    #[tokio::test]
    async fn the_json_folder_destination_passes_the_conformance_suite() {
        let folder = std::env::temp_dir().join(rse::testing::unique_id("rse-json-folder"));
        tokio::fs::create_dir_all(&folder).await.unwrap();
        let dest = JsonFolderDestination::new(&folder);
        check_destination(&dest, Some(&Readback(&dest))).await.unwrap();
        tokio::fs::remove_dir_all(&folder).await.unwrap();
    }
}
