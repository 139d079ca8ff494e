//! The hash diff: the snapshot in a hash map, source records in any order.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{DiffError, DiffOutput, Differ, FingerprinterCache, InvalidRecord, PlanKind, Planned, duplicate_reason};
use crate::fingerprint::{Fingerprint, FingerprintAlgorithm};
use crate::key::Key;
use crate::record::Record;
use crate::schema::Schema;
use crate::state::{PendingChange, SnapshotEntry, StateStore};

#[derive(Debug, Clone, Copy)]
struct Slot {
    fingerprint: Option<Fingerprint>,
    version: u64,
    pending: Option<PendingChange>,
    /// In the snapshot before this run (not just seen in it).
    known: bool,
    seen: bool,
}

/// The hash strategy: loads the snapshot's keys into memory, then diffs records in any order.
#[derive(Debug)]
pub struct HashDiff {
    map: HashMap<Key, Slot>,
    fingerprinters: FingerprinterCache,
    emit_unchanged: bool,
    key_buf: Vec<u8>,
    live_total: u64,
}

impl HashDiff {
    /// A diff against these snapshot entries.
    pub fn from_entries(entries: impl IntoIterator<Item = SnapshotEntry>, algorithm: FingerprintAlgorithm) -> Self {
        let entries = entries.into_iter();
        let mut map = HashMap::with_capacity(entries.size_hint().0);
        let mut live_total = 0;
        for e in entries {
            live_total += u64::from(e.is_live());
            let slot =
                Slot { fingerprint: e.fingerprint, version: e.version, pending: e.pending, known: true, seen: false };
            map.insert(e.key, slot);
        }
        Self {
            map,
            fingerprinters: FingerprinterCache::new(algorithm),
            emit_unchanged: false,
            key_buf: Vec::with_capacity(64),
            live_total,
        }
    }

    /// A diff against the snapshot of `sync_id` in `store`, read in pages of `page_size`.
    ///
    /// # Errors
    /// [`StateError`](crate::StateError) when the snapshot cannot be read.
    pub async fn load(
        store: &dyn StateStore,
        sync_id: &str,
        algorithm: FingerprintAlgorithm,
        page_size: usize,
    ) -> Result<Self, DiffError> {
        let mut entries = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = store.scan(sync_id, after.as_ref(), page_size.max(1)).await?;
            let done = page.len() < page_size.max(1);
            after = page.last().map(|e| e.key.clone());
            entries.extend(page);
            if done || after.is_none() {
                break;
            }
        }
        Ok(Self::from_entries(entries, algorithm))
    }

    /// Also emits records that match the snapshot, as [`PlanKind::Unchanged`] (for a resync).
    pub fn with_unchanged(mut self, emit: bool) -> Self {
        self.emit_unchanged = emit;
        self
    }
}

#[async_trait]
impl Differ for HashDiff {
    fn strategy(&self) -> &'static str {
        "hash"
    }

    async fn push(
        &mut self,
        schema: &Schema,
        records: Vec<Record>,
        seen: Vec<Key>,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError> {
        for key in seen {
            let fresh = Slot { fingerprint: None, version: 0, pending: None, known: false, seen: false };
            self.map.entry(key).or_insert(fresh).seen = true;
        }
        let emit_unchanged = self.emit_unchanged;
        let mut key_buf = std::mem::take(&mut self.key_buf);
        let mut fingerprinter = self.fingerprinters.take(schema);
        for record in records {
            if let Err(e) = record.key_into(schema, &mut key_buf) {
                out.invalid.push(InvalidRecord { key: None, record, reason: e.to_string() });
                continue;
            }
            let fingerprint = fingerprinter.fingerprint(&record);
            // The unchanged path allocates nothing: one lookup by the borrowed key bytes.
            let (kind, base) = match self.map.get_mut(key_buf.as_slice()) {
                Some(slot) if slot.seen => {
                    let key = Key::from_encoded_unchecked(key_buf.clone());
                    out.invalid.push(InvalidRecord { key: Some(key), record, reason: duplicate_reason(schema) });
                    continue;
                }
                Some(slot) => {
                    slot.seen = true;
                    let kind = match slot.fingerprint {
                        _ if slot.pending.is_some() => PlanKind::Insert,
                        Some(f) if f == fingerprint => PlanKind::Unchanged,
                        Some(_) => PlanKind::Update,
                        None => PlanKind::Insert,
                    };
                    (kind, *slot)
                }
                None => {
                    let fresh = Slot { fingerprint: None, version: 0, pending: None, known: false, seen: true };
                    self.map.insert(Key::from_encoded_unchecked(key_buf.clone()), fresh);
                    (PlanKind::Insert, fresh)
                }
            };
            if kind == PlanKind::Unchanged {
                out.unchanged += 1;
                if !emit_unchanged {
                    continue;
                }
            }
            out.planned.push(Planned {
                kind,
                key: Key::from_encoded_unchecked(key_buf.clone()),
                record,
                fingerprint,
                base_fingerprint: base.fingerprint,
                base_version: base.version,
                pending: base.pending,
            });
        }
        self.fingerprinters.put_back(schema, fingerprinter);
        self.key_buf = key_buf;
        Ok(())
    }

    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError> {
        let mut deletes: Vec<SnapshotEntry> = self
            .map
            .iter()
            .filter(|(_, s)| s.known && !s.seen)
            .map(|(k, s)| SnapshotEntry {
                key: k.clone(),
                fingerprint: s.fingerprint,
                version: s.version,
                pending: s.pending,
            })
            .filter(SnapshotEntry::may_exist)
            .collect();
        deletes.sort_by(|a, b| a.key.cmp(&b.key));
        out.deletes.extend(deletes);
        out.live_total = self.live_total;
        Ok(())
    }
}
