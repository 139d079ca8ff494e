//! A pushdown source over a [`MemorySource`]: the delivered tables live beside the rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{MemorySource, lock};
use crate::error::SourceError;
use crate::key::Key;
use crate::pushdown::{PushdownBatch, PushdownSource, PushdownStream, RowHash};
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::source::{ReadRequest, RowBatchStream, Source, SourceCapabilities};

/// One sync's delivered table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveredTable {
    /// The epoch the table was completed under.
    pub epoch: Option<String>,
    /// Each key's hash (`None`: unknown, always handed out).
    pub rows: BTreeMap<Key, Option<RowHash>>,
}

#[derive(Debug, Default)]
struct Faults {
    intents: u64,
    delivered: u64,
}

/// A [`MemorySource`] that diffs its rows against the rows a sync delivered, as a warehouse
/// does in SQL (see [`crate::pushdown`]): it offers [`Source::pushdown`], keeps one
/// [`DeliveredTable`] per sync, and counts the rows it hands out. Clones share the rows,
/// the tables and the counters, so a test keeps one to edit, inspect and break.
#[derive(Clone)]
pub struct MemoryPushdownSource {
    rows: MemorySource,
    tables: Arc<Mutex<HashMap<String, DeliveredTable>>>,
    handed_out: Arc<AtomicU64>,
    faults: Arc<Mutex<Faults>>,
}

impl std::fmt::Debug for MemoryPushdownSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPushdownSource").field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl MemoryPushdownSource {
    /// Pushdown over the rows of `rows` (shared with it: edit them through either handle).
    pub fn new(rows: MemorySource) -> Self {
        Self { rows, tables: Arc::default(), handed_out: Arc::default(), faults: Arc::default() }
    }

    /// The source of the rows.
    pub fn rows(&self) -> &MemorySource {
        &self.rows
    }

    /// The hash this source gives `record`: SHA-256 of its values in the key encoding
    /// (type-tagged, so `1` and `"1"` differ), first 16 bytes.
    pub fn hash_of(record: &Record) -> RowHash {
        let encoded = Key::from_values(&record.values);
        RowHash::new(&Sha256::digest(encoded.as_bytes())[..16])
    }

    /// A copy of the delivered table of `sync_id`, if it was created.
    pub fn table(&self, sync_id: &str) -> Option<DeliveredTable> {
        lock(&self.tables).get(sync_id).cloned()
    }

    /// How many rows every read so far handed out (pushdown reads and ordinary ones).
    pub fn rows_handed_out(&self) -> u64 {
        self.handed_out.load(Ordering::Relaxed)
    }

    /// The next `n` calls of [`record_intents`](PushdownSource::record_intents) fail.
    pub fn fail_intents(&self, n: u64) {
        lock(&self.faults).intents = n;
    }

    /// The next `n` calls of [`record_delivered`](PushdownSource::record_delivered) fail.
    pub fn fail_delivered(&self, n: u64) {
        lock(&self.faults).delivered = n;
    }

    /// Forgets every delivered table (a warehouse whose tables were dropped).
    pub fn drop_tables(&self) {
        lock(&self.tables).clear();
    }

    fn injected(&self, which: impl FnOnce(&mut Faults) -> &mut u64, call: &str) -> Result<(), SourceError> {
        let mut faults = lock(&self.faults);
        let left = which(&mut faults);
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        Err(SourceError::Unavailable { message: format!("injected failure of {call}"), source: None })
    }

    /// The model's rows with their keys and hashes, in key order.
    fn model(&self) -> Result<Vec<(Key, Record, RowHash)>, SourceError> {
        let schema = self.rows.schema_arc();
        let mut rows = Vec::new();
        for record in self.rows.rows() {
            let key = record.key(&schema).map_err(|e| SourceError::Malformed {
                location: format!("source `{}`", self.rows.name()),
                reason: format!("a pushdown source needs every row keyed: {e}"),
            })?;
            let hash = Self::hash_of(&record);
            rows.push((key, record, hash));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    fn stream(&self, rows: Vec<Record>, hashes: Vec<RowHash>, vanished: Vec<Key>, size: usize) -> PushdownStream<'_> {
        let schema = self.rows.schema_arc();
        self.handed_out.fetch_add(rows.len() as u64, Ordering::Relaxed);
        let size = size.max(1);
        let mut batches = Vec::new();
        let mut rows = rows.into_iter();
        let mut hashes = hashes.into_iter();
        loop {
            let chunk: Vec<Record> = rows.by_ref().take(size).collect();
            if chunk.is_empty() {
                break;
            }
            let chunk_hashes: Vec<RowHash> = hashes.by_ref().take(chunk.len()).collect();
            batches.push(PushdownBatch::rows(RowBatch::new(schema.clone(), chunk), chunk_hashes));
        }
        for keys in vanished.chunks(size) {
            batches.push(Ok(PushdownBatch::vanished(schema.clone(), keys.to_vec())));
        }
        futures::stream::iter(batches).boxed()
    }
}

#[async_trait]
impl Source for MemoryPushdownSource {
    fn name(&self) -> &str {
        self.rows.name()
    }

    fn capabilities(&self) -> SourceCapabilities {
        self.rows.capabilities()
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        self.rows.schema().await
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let stream = self.rows.read(request).await?;
        let counter = self.handed_out.clone();
        Ok(stream
            .inspect(move |batch| {
                if let Ok(batch) = batch {
                    counter.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                }
            })
            .boxed())
    }

    fn pushdown(&self) -> Option<&dyn PushdownSource> {
        Some(self)
    }
}

#[async_trait]
impl PushdownSource for MemoryPushdownSource {
    async fn epoch(&self, sync_id: &str) -> Result<Option<String>, SourceError> {
        Ok(lock(&self.tables).entry(sync_id.to_owned()).or_default().epoch.clone())
    }

    async fn begin_full(&self, sync_id: &str) -> Result<(), SourceError> {
        let mut tables = lock(&self.tables);
        let table = tables.entry(sync_id.to_owned()).or_default();
        table.epoch = None;
        table.rows.values_mut().for_each(|hash| *hash = None);
        Ok(())
    }

    async fn read_changed(&self, sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError> {
        let model = self.model()?;
        let (mut rows, mut hashes, mut vanished) = (Vec::new(), Vec::new(), Vec::new());
        {
            let tables = lock(&self.tables);
            let empty = BTreeMap::new();
            let held = tables.get(sync_id).map_or(&empty, |t| &t.rows);
            let mut in_model = std::collections::HashSet::with_capacity(model.len());
            for (key, record, hash) in model {
                let changed = held.get(&key).is_none_or(|stored| stored.as_ref() != Some(&hash));
                in_model.insert(key);
                if changed {
                    rows.push(record);
                    hashes.push(hash);
                }
            }
            vanished.extend(held.keys().filter(|k| !in_model.contains(*k)).cloned());
        }
        Ok(self.stream(rows, hashes, vanished, request.batch_size))
    }

    async fn read_full(&self, _sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError> {
        let (rows, hashes) = self.model()?.into_iter().map(|(_, record, hash)| (record, hash)).unzip();
        Ok(self.stream(rows, hashes, Vec::new(), request.batch_size))
    }

    async fn record_intents(&self, sync_id: &str, keys: &[Key]) -> Result<(), SourceError> {
        self.injected(|f| &mut f.intents, "record_intents")?;
        let mut tables = lock(&self.tables);
        let table = tables.entry(sync_id.to_owned()).or_default();
        for key in keys {
            table.rows.insert(key.clone(), None);
        }
        Ok(())
    }

    async fn record_delivered(&self, sync_id: &str, delivered: &[(Key, Option<RowHash>)]) -> Result<(), SourceError> {
        self.injected(|f| &mut f.delivered, "record_delivered")?;
        let mut tables = lock(&self.tables);
        let table = tables.entry(sync_id.to_owned()).or_default();
        for (key, hash) in delivered {
            match hash {
                Some(hash) => {
                    table.rows.insert(key.clone(), Some(hash.clone()));
                }
                None => {
                    table.rows.remove(key);
                }
            }
        }
        Ok(())
    }

    async fn complete(&self, sync_id: &str, epoch: &str) -> Result<(), SourceError> {
        lock(&self.tables).entry(sync_id.to_owned()).or_default().epoch = Some(epoch.to_owned());
        Ok(())
    }
}
