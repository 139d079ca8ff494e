//! The hash diff: the snapshot in a hash map, source records in any order.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use async_trait::async_trait;

use super::{DiffError, DiffOutput, Differ, FingerprinterCache, InvalidRecord, PlanKind, Planned, duplicate_reason};
use crate::fingerprint::{Fingerprint, FingerprintAlgorithm};
use crate::key::Key;
use crate::record::Record;
use crate::schema::Schema;
use crate::state::{PendingChange, SnapshotEntry, StateStore};

/// Keys up to this many bytes live inside the map's bucket (an int key takes 9, a UUID
/// string 19): no pointer to chase on the lookup that every source record costs.
const INLINE: usize = 22;

/// A key stored inline when short, on the heap otherwise. Hashes and compares as its bytes,
/// so the map can be probed with a borrowed `&[u8]`.
#[derive(Clone)]
enum SlotKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl SlotKey {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            SlotKey::Inline { len: key.len() as u8, bytes }
        } else {
            SlotKey::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            SlotKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            SlotKey::Heap(b) => b,
        }
    }

    fn to_key(&self) -> Key {
        Key::from_encoded_unchecked(self.as_slice().to_vec())
    }
}

impl Borrow<[u8]> for SlotKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for SlotKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for SlotKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SlotKey {}

const LIVE: u8 = 1;
const KNOWN: u8 = 2;
const SEEN: u8 = 4;
const PENDING: u8 = 8;

/// What the map keeps per key, 32 bytes: the fingerprint as two words (a `u128` would
/// force 16-byte alignment and padding), the version and flags. Pending changes are rare
/// and live in a side map.
#[derive(Debug, Clone, Copy)]
struct Slot {
    fingerprint: [u64; 2],
    version: u64,
    flags: u8,
}

impl Slot {
    const FRESH: Slot = Slot { fingerprint: [0, 0], version: 0, flags: 0 };

    fn fingerprint(&self) -> Option<Fingerprint> {
        (self.flags & LIVE != 0)
            .then(|| Fingerprint((u128::from(self.fingerprint[0]) << 64) | u128::from(self.fingerprint[1])))
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn split(f: Fingerprint) -> [u64; 2] {
    [(f.0 >> 64) as u64, f.0 as u64]
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The hash strategy: loads the snapshot's keys into memory, then diffs records in any order.
///
/// A batch is diffed in two passes — first every key and fingerprint, then every lookup — so
/// the lookups, which miss the cache on a large snapshot, run back to back and overlap.
pub struct HashDiff {
    map: FastMap<SlotKey, Slot>,
    pending: FastMap<Key, PendingChange>,
    fingerprinters: FingerprinterCache,
    emit_unchanged: bool,
    live_total: u64,
    /// Per batch: every record's key bytes, end to end, and (key end, fingerprint) per record.
    key_arena: Vec<u8>,
    prepared: Vec<Option<(usize, Fingerprint)>>,
}

impl std::fmt::Debug for HashDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashDiff").field("keys", &self.map.len()).field("live", &self.live_total).finish()
    }
}

impl HashDiff {
    /// A diff against these snapshot entries.
    pub fn from_entries(entries: impl IntoIterator<Item = SnapshotEntry>, algorithm: FingerprintAlgorithm) -> Self {
        let entries = entries.into_iter();
        let mut map = FastMap::with_capacity_and_hasher(entries.size_hint().0, Default::default());
        let mut pending = FastMap::default();
        let mut live_total = 0;
        for e in entries {
            live_total += u64::from(e.is_live());
            let mut slot = Slot { version: e.version, flags: KNOWN, ..Slot::FRESH };
            if let Some(f) = e.fingerprint {
                slot.fingerprint = split(f);
                slot.flags |= LIVE;
            }
            if let Some(p) = e.pending {
                slot.flags |= PENDING;
                pending.insert(e.key.clone(), p);
            }
            map.insert(SlotKey::new(e.key.as_bytes()), slot);
        }
        Self {
            map,
            pending,
            fingerprinters: FingerprinterCache::new(algorithm),
            emit_unchanged: false,
            live_total,
            key_arena: Vec::new(),
            prepared: Vec::new(),
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
            self.map.entry(SlotKey::new(key.as_bytes())).or_insert(Slot::FRESH).flags |= SEEN;
        }
        // Pass 1: keys and fingerprints.
        let mut fingerprinter = self.fingerprinters.take(schema);
        let mut arena = std::mem::take(&mut self.key_arena);
        let mut prepared = std::mem::take(&mut self.prepared);
        arena.clear();
        prepared.clear();
        let mut key_buf = Vec::with_capacity(32);
        for record in &records {
            prepared.push(match record.key_into(schema, &mut key_buf) {
                Ok(()) => {
                    arena.extend_from_slice(&key_buf);
                    Some((arena.len(), fingerprinter.fingerprint(record)))
                }
                Err(_) => None,
            });
        }
        self.fingerprinters.put_back(schema, fingerprinter);

        // Pass 2: lookups. The unchanged path allocates nothing.
        let mut start = 0;
        for (record, prepared) in records.into_iter().zip(prepared.iter().copied()) {
            let Some((end, fingerprint)) = prepared else {
                let reason = match record.key(schema) {
                    Err(e) => e.to_string(),
                    Ok(_) => "key could not be encoded".to_owned(),
                };
                out.invalid.push(InvalidRecord { key: None, record, reason });
                continue;
            };
            let key_bytes = &arena[start..end];
            start = end;
            let (kind, base) = match self.map.get_mut(key_bytes) {
                Some(slot) if slot.has(SEEN) => {
                    let key = Some(Key::from_encoded_unchecked(key_bytes.to_vec()));
                    out.invalid.push(InvalidRecord { key, record, reason: duplicate_reason(schema) });
                    continue;
                }
                Some(slot) => {
                    slot.flags |= SEEN;
                    let kind = match slot.fingerprint() {
                        _ if slot.has(PENDING) => PlanKind::Insert,
                        Some(f) if f == fingerprint => PlanKind::Unchanged,
                        Some(_) => PlanKind::Update,
                        None => PlanKind::Insert,
                    };
                    (kind, *slot)
                }
                None => {
                    self.map.insert(SlotKey::new(key_bytes), Slot { flags: SEEN, ..Slot::FRESH });
                    (PlanKind::Insert, Slot::FRESH)
                }
            };
            if kind == PlanKind::Unchanged {
                out.unchanged += 1;
                if !self.emit_unchanged {
                    continue;
                }
            }
            let key = Key::from_encoded_unchecked(key_bytes.to_vec());
            let pending = if base.has(PENDING) { self.pending.get(&key).copied() } else { None };
            out.planned.push(Planned {
                kind,
                key,
                record,
                fingerprint,
                base_fingerprint: base.fingerprint(),
                base_version: base.version,
                pending,
            });
        }
        self.key_arena = arena;
        self.prepared = prepared;
        Ok(())
    }

    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError> {
        let mut deletes: Vec<SnapshotEntry> = self
            .map
            .iter()
            .filter(|(_, s)| s.has(KNOWN) && !s.has(SEEN) && (s.has(LIVE) || s.has(PENDING)))
            .map(|(k, s)| {
                let key = k.to_key();
                let pending = if s.has(PENDING) { self.pending.get(&key).copied() } else { None };
                SnapshotEntry { key, fingerprint: s.fingerprint(), version: s.version, pending }
            })
            .collect();
        deletes.sort_by(|a, b| a.key.cmp(&b.key));
        out.deletes.extend(deletes);
        out.live_total = self.live_total;
        Ok(())
    }
}
