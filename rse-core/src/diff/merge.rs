//! The merge diff: a key-ordered source walked beside the key-ordered snapshot.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::{DiffError, DiffOutput, Differ, FingerprinterCache, InvalidRecord, PlanKind, Planned, duplicate_reason};
use crate::canary::Canary;
use crate::error::StateError;
use crate::fingerprint::{FingerprintAlgorithm, Fingerprinter};
use crate::key::Key;
use crate::record::Record;
use crate::schema::Schema;
use crate::state::{SnapshotEntry, StateStore};

/// The merge strategy: memory independent of table size, for sources that read in key order.
///
/// The snapshot is read `page_size` entries at a time, the next page fetched in the
/// background while the current one is merged (so a store's latency overlaps the source's
/// reading); the source's keys must ascend strictly across the whole run (an equal key is a
/// duplicate, a smaller one an error).
pub struct MergeDiff {
    store: Arc<dyn StateStore>,
    sync_id: String,
    page_size: usize,
    page: VecDeque<SnapshotEntry>,
    /// The next page, on its way.
    next: Option<JoinHandle<Result<Vec<SnapshotEntry>, StateError>>>,
    after: Option<Key>,
    exhausted: bool,
    /// The last key merged (its encoded bytes), to check the source's order.
    last: Option<Vec<u8>>,
    fingerprinters: FingerprinterCache,
    emit_unchanged: bool,
    live_total: u64,
    /// Only the snapshot's keys inside it are merged (all without one).
    canary: Option<Canary>,
}

impl std::fmt::Debug for MergeDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeDiff").field("sync_id", &self.sync_id).field("page_size", &self.page_size).finish()
    }
}

impl MergeDiff {
    /// A diff against the snapshot of `sync_id` in `store`.
    pub fn new(store: Arc<dyn StateStore>, sync_id: &str, algorithm: FingerprintAlgorithm, page_size: usize) -> Self {
        Self {
            store,
            sync_id: sync_id.to_owned(),
            page_size: page_size.max(1),
            page: VecDeque::new(),
            next: None,
            after: None,
            exhausted: false,
            last: None,
            fingerprinters: FingerprinterCache::new(algorithm),
            emit_unchanged: false,
            live_total: 0,
            canary: None,
        }
    }

    /// Merges only the snapshot's keys inside `canary`: the others are neither planned nor
    /// deleted, and do not count among the live keys (the source's records outside it must
    /// not be pushed either).
    pub fn with_canary(mut self, canary: Option<Canary>) -> Self {
        self.canary = canary;
        self
    }

    /// Also emits records that match the snapshot, as [`PlanKind::Unchanged`] (for a resync).
    pub fn with_unchanged(mut self, emit: bool) -> Self {
        self.emit_unchanged = emit;
        self
    }

    /// The next snapshot entry, taking the next page when the buffer is empty and starting
    /// the fetch of the one after.
    async fn peek(&mut self) -> Result<Option<&SnapshotEntry>, DiffError> {
        while self.page.is_empty() && !self.exhausted {
            let page = match self.next.take() {
                Some(fetch) => fetch.await.map_err(|e| StateError::Other {
                    message: format!("reading the snapshot of sync `{}` stopped: {e}", self.sync_id),
                    source: None,
                })??,
                None => self.store.scan(&self.sync_id, self.after.as_ref(), self.page_size).await?,
            };
            self.exhausted = page.len() < self.page_size;
            if let Some(last) = page.last() {
                self.after = Some(last.key.clone());
            }
            if !self.exhausted {
                let (store, sync_id, after, size) =
                    (self.store.clone(), self.sync_id.clone(), self.after.clone(), self.page_size);
                // In the run's span, so that what the store logs carries the run's fields.
                let scan = async move { store.scan(&sync_id, after.as_ref(), size).await };
                self.next = Some(tokio::spawn(tracing::Instrument::in_current_span(scan)));
            }
            let mut page = page;
            if let Some(canary) = self.canary {
                page.retain(|e| canary.contains(&e.key));
            }
            self.live_total += page.iter().filter(|e| e.is_live()).count() as u64;
            self.page.extend(page);
        }
        Ok(self.page.front())
    }

    /// Consumes snapshot entries before `key`: those are keys the source no longer has.
    /// Returns the entry equal to `key`, if any.
    async fn advance_to(&mut self, key: &[u8], out: &mut DiffOutput) -> Result<Option<SnapshotEntry>, DiffError> {
        while let Some(head) = self.peek().await? {
            match head.key.as_bytes().cmp(key) {
                std::cmp::Ordering::Less => {
                    if let Some(gone) = self.page.pop_front()
                        && gone.may_exist()
                    {
                        out.deletes.push(gone);
                    }
                }
                std::cmp::Ordering::Equal => return Ok(self.page.pop_front()),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

impl MergeDiff {
    /// Merges one source key (a record, or a key refused before the diff) into the walk.
    async fn merge(
        &mut self,
        schema: &Schema,
        key: &[u8],
        item: Item,
        fingerprinter: &mut Fingerprinter,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError> {
        if let Some(previous) = &self.last {
            match key.cmp(previous) {
                std::cmp::Ordering::Less => {
                    return Err(DiffError::OutOfOrder {
                        key: Key::from_encoded_unchecked(key.to_vec()),
                        previous: Key::from_encoded_unchecked(previous.clone()),
                    });
                }
                std::cmp::Ordering::Equal => {
                    if let Item::Record(record) = item {
                        let key = Some(Key::from_encoded_unchecked(key.to_vec()));
                        out.invalid.push(InvalidRecord { key, record, reason: duplicate_reason(schema) });
                    }
                    return Ok(());
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        let base = self.advance_to(key, out).await?;
        let last = self.last.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(key);
        let Item::Record(record) = item else { return Ok(()) };
        let fingerprint = fingerprinter.fingerprint(&record);
        let base_fingerprint = base.as_ref().and_then(|b| b.fingerprint);
        let pending = base.as_ref().and_then(|b| b.pending);
        let kind = match base_fingerprint {
            _ if pending.is_some() => PlanKind::Insert,
            Some(f) if f == fingerprint => PlanKind::Unchanged,
            Some(_) => PlanKind::Update,
            None => PlanKind::Insert,
        };
        if kind == PlanKind::Unchanged {
            out.unchanged += 1;
            if !self.emit_unchanged {
                return Ok(());
            }
        }
        let base_version = base.map_or(0, |b| b.version);
        let key = Key::from_encoded_unchecked(key.to_vec());
        out.planned.push(Planned { kind, key, record, fingerprint, base_fingerprint, base_version, pending });
        Ok(())
    }
}

impl Drop for MergeDiff {
    fn drop(&mut self) {
        if let Some(fetch) = self.next.take() {
            fetch.abort();
        }
    }
}

enum Item {
    Record(Record),
    Seen,
}

#[async_trait]
impl Differ for MergeDiff {
    fn strategy(&self) -> &'static str {
        "merge"
    }

    async fn push(
        &mut self,
        schema: &Schema,
        records: Vec<Record>,
        seen: Vec<Key>,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError> {
        // Records and refused keys, in source order; refused keys are rare, and merged in by
        // a stable sort so a record and a refused record of one key keep their order.
        let mut fingerprinter = self.fingerprinters.take(schema);
        let result = if seen.is_empty() {
            let mut key = Vec::with_capacity(32);
            let mut result = Ok(());
            for record in records {
                if let Err(e) = record.key_into(schema, &mut key) {
                    out.invalid.push(InvalidRecord { key: None, record, reason: e.to_string() });
                    continue;
                }
                if let Err(e) = self.merge(schema, &key, Item::Record(record), &mut fingerprinter, out).await {
                    result = Err(e);
                    break;
                }
            }
            result
        } else {
            let mut items: Vec<(Key, Item)> = Vec::with_capacity(records.len() + seen.len());
            for record in records {
                match record.key(schema) {
                    Ok(key) => items.push((key, Item::Record(record))),
                    Err(e) => out.invalid.push(InvalidRecord { key: None, record, reason: e.to_string() }),
                }
            }
            items.extend(seen.into_iter().map(|k| (k, Item::Seen)));
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let mut result = Ok(());
            for (key, item) in items {
                if let Err(e) = self.merge(schema, key.as_bytes(), item, &mut fingerprinter, out).await {
                    result = Err(e);
                    break;
                }
            }
            result
        };
        self.fingerprinters.put_back(schema, fingerprinter);
        result
    }

    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError> {
        while self.peek().await?.is_some() {
            if let Some(gone) = self.page.pop_front()
                && gone.may_exist()
            {
                out.deletes.push(gone);
            }
        }
        out.live_total = self.live_total;
        Ok(())
    }
}
