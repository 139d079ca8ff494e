//! The hash diff: the snapshot in a hash map, source records in any order.

use std::hash::BuildHasher;

use async_trait::async_trait;
use hashbrown::HashTable;

use super::{DiffError, DiffOutput, Differ, FingerprinterCache, InvalidRecord, PlanKind, Planned, duplicate_reason};
use crate::canary::Canary;
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

const LIVE: u8 = 1;
const KNOWN: u8 = 2;
const SEEN: u8 = 4;
const PENDING: u8 = 8;

/// What the diff keeps per key, 56 bytes: the key, the fingerprint as two words (a `u128`
/// would force 16-byte alignment and padding), the version and flags. Pending changes are
/// rare and live in a side map.
#[derive(Clone)]
struct Slot {
    key: SlotKey,
    fingerprint: [u64; 2],
    version: u64,
    flags: u8,
}

impl Slot {
    fn fresh(key: &[u8]) -> Slot {
        Slot { key: SlotKey::new(key), fingerprint: [0, 0], version: 0, flags: 0 }
    }

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

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The snapshot's keys: slots in a dense vector, in the order they arrived (the snapshot's
/// key order, then new keys), and a hash table of positions into it.
///
/// The table holds only positions (8 bytes and a control byte per bucket: about 18 MB for a
/// million keys, which stays in a server's last-level cache), so a lookup costs one probe
/// of the table and one read of the slot. When the source reads in (or near) key order —
/// the common case — consecutive records hit consecutive slots, which the prefetcher
/// streams in.
#[derive(Default)]
struct Slots {
    index: HashTable<usize>,
    slots: Vec<Slot>,
    hasher: foldhash::fast::RandomState,
}

impl Slots {
    fn with_capacity(n: usize) -> Self {
        Slots { index: HashTable::with_capacity(n), slots: Vec::with_capacity(n), hasher: Default::default() }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.index.find(hash, |&i| self.slots[i].key.as_slice() == key).copied()
    }

    /// Appends a slot for a key not held yet; returns its position.
    fn push(&mut self, hash: u64, slot: Slot) -> usize {
        let Slots { index, slots, hasher } = self;
        let at = slots.len();
        slots.push(slot);
        index.insert_unique(hash, at, |&i| hasher.hash_one(slots[i].key.as_slice()));
        at
    }

    /// The position of `key`, and whether it was there: a fresh slot (`make`) is added
    /// when it was not. One probe of the table either way.
    fn find_or_push(&mut self, hash: u64, key: &[u8], make: impl FnOnce() -> Slot) -> (usize, bool) {
        let Slots { index, slots, hasher } = self;
        let entry =
            index.entry(hash, |&i| slots[i].key.as_slice() == key, |&i| hasher.hash_one(slots[i].key.as_slice()));
        match entry {
            hashbrown::hash_table::Entry::Occupied(found) => (*found.get(), true),
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                let at = slots.len();
                slots.push(make());
                vacant.insert(at);
                (at, false)
            }
        }
    }

    /// The slot of `key`, created fresh when missing.
    fn entry(&mut self, key: &[u8]) -> &mut Slot {
        let hash = self.hash(key);
        let (at, _) = self.find_or_push(hash, key, || Slot::fresh(key));
        &mut self.slots[at]
    }
}

/// The hash strategy: loads the snapshot's keys into memory, then diffs records in any order.
///
/// A batch is diffed in passes — every key, fingerprint and hash first, then every lookup,
/// then the decisions — so the lookups, which miss the cache on a large snapshot, run back
/// to back and overlap.
pub struct HashDiff {
    slots: Slots,
    pending: FastMap<Key, PendingChange>,
    fingerprinters: FingerprinterCache,
    emit_unchanged: bool,
    live_total: u64,
    /// Per batch: every record's key bytes, end to end, and (key end, fingerprint, hash) per
    /// record; then each record's slot.
    key_arena: Vec<u8>,
    prepared: Vec<Option<(usize, Fingerprint, u64)>>,
    found: Vec<Option<usize>>,
}

impl std::fmt::Debug for HashDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashDiff").field("keys", &self.slots.slots.len()).field("live", &self.live_total).finish()
    }
}

impl HashDiff {
    /// A diff against these snapshot entries.
    pub fn from_entries(entries: impl IntoIterator<Item = SnapshotEntry>, algorithm: FingerprintAlgorithm) -> Self {
        let entries = entries.into_iter();
        let mut slots = Slots::with_capacity(entries.size_hint().0);
        let mut pending = FastMap::default();
        let mut live_total = 0;
        for e in entries {
            live_total += u64::from(e.is_live());
            let mut slot = Slot { version: e.version, flags: KNOWN, ..Slot::fresh(e.key.as_bytes()) };
            if let Some(f) = e.fingerprint {
                slot.fingerprint = split(f);
                slot.flags |= LIVE;
            }
            if let Some(p) = e.pending {
                slot.flags |= PENDING;
                pending.insert(e.key.clone(), p);
            }
            let hash = slots.hash(e.key.as_bytes());
            match slots.find(hash, e.key.as_bytes()) {
                // A store lists each key once; should one repeat, the later entry wins.
                Some(at) => slots.slots[at] = slot,
                None => {
                    slots.push(hash, slot);
                }
            }
        }
        Self {
            slots,
            pending,
            fingerprinters: FingerprinterCache::new(algorithm),
            emit_unchanged: false,
            live_total,
            key_arena: Vec::new(),
            prepared: Vec::new(),
            found: Vec::new(),
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
        Self::load_within(store, sync_id, algorithm, page_size, None).await
    }

    /// [`load`](Self::load), keeping only the keys inside `canary`: the others are neither
    /// planned nor deleted, and do not count among the live keys.
    ///
    /// # Errors
    /// [`StateError`](crate::StateError) when the snapshot cannot be read.
    pub async fn load_within(
        store: &dyn StateStore,
        sync_id: &str,
        algorithm: FingerprintAlgorithm,
        page_size: usize,
        canary: Option<Canary>,
    ) -> Result<Self, DiffError> {
        let mut entries = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let page = store.scan(sync_id, after.as_ref(), page_size.max(1)).await?;
            let done = page.len() < page_size.max(1);
            after = page.last().map(|e| e.key.clone());
            match canary {
                Some(canary) => entries.extend(page.into_iter().filter(|e| canary.contains(&e.key))),
                None => entries.extend(page),
            }
            if done || after.is_none() {
                break;
            }
        }
        Ok(Self::from_entries(entries, algorithm))
    }

    /// The keys the snapshot holds live (acknowledged and not deleted).
    pub fn live(&self) -> u64 {
        self.live_total
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
            self.slots.entry(key.as_bytes()).flags |= SEEN;
        }
        // Pass 1: keys, fingerprints and hashes.
        let mut fingerprinter = self.fingerprinters.take(schema);
        let mut arena = std::mem::take(&mut self.key_arena);
        let mut prepared = std::mem::take(&mut self.prepared);
        let mut found = std::mem::take(&mut self.found);
        arena.clear();
        prepared.clear();
        found.clear();
        let mut key_buf = Vec::with_capacity(32);
        for record in &records {
            prepared.push(match record.key_into(schema, &mut key_buf) {
                Ok(()) => {
                    arena.extend_from_slice(&key_buf);
                    Some((arena.len(), fingerprinter.fingerprint(record), self.slots.hash(&key_buf)))
                }
                Err(_) => None,
            });
        }
        self.fingerprinters.put_back(schema, fingerprinter);

        // Pass 2: lookups, back to back.
        let mut start = 0;
        for p in &prepared {
            found.push(p.and_then(|(end, _, hash)| {
                let key = &arena[start..end];
                start = end;
                self.slots.find(hash, key)
            }));
        }

        // Pass 3: decisions. The unchanged path allocates nothing.
        let mut start = 0;
        for ((record, prepared), at) in records.into_iter().zip(prepared.iter().copied()).zip(found.iter().copied()) {
            let Some((end, fingerprint, hash)) = prepared else {
                let reason = match record.key(schema) {
                    Err(e) => e.to_string(),
                    Ok(_) => "key could not be encoded".to_owned(),
                };
                out.invalid.push(InvalidRecord { key: None, record, reason });
                continue;
            };
            let key_bytes = &arena[start..end];
            start = end;
            // A miss in pass 2 is a new key unless it came earlier in this batch: one probe
            // settles which, adding the key when it is new.
            let at = match at {
                Some(at) => Some(at),
                None => {
                    match self.slots.find_or_push(hash, key_bytes, || Slot { flags: SEEN, ..Slot::fresh(key_bytes) }) {
                        (at, true) => Some(at),
                        (_, false) => None,
                    }
                }
            };
            let (kind, base) = match at.map(|at| &mut self.slots.slots[at]) {
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
                    (kind, (slot.fingerprint(), slot.version, slot.has(PENDING)))
                }
                None => (PlanKind::Insert, (None, 0, false)),
            };
            if kind == PlanKind::Unchanged {
                out.unchanged += 1;
                if !self.emit_unchanged {
                    continue;
                }
            }
            let (base_fingerprint, base_version, has_pending) = base;
            let key = Key::from_encoded_unchecked(key_bytes.to_vec());
            let pending = if has_pending { self.pending.get(&key).copied() } else { None };
            out.planned.push(Planned { kind, key, record, fingerprint, base_fingerprint, base_version, pending });
        }
        self.key_arena = arena;
        self.prepared = prepared;
        self.found = found;
        Ok(())
    }

    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError> {
        let mut deletes: Vec<SnapshotEntry> = self
            .slots
            .slots
            .iter()
            .filter(|s| s.has(KNOWN) && !s.has(SEEN) && (s.has(LIVE) || s.has(PENDING)))
            .map(|s| {
                let key = s.key.to_key();
                let pending = if s.has(PENDING) { self.pending.get(&key).copied() } else { None };
                SnapshotEntry { key, fingerprint: s.fingerprint(), version: s.version, pending, memo: None }
            })
            .collect();
        deletes.sort_by(|a, b| a.key.cmp(&b.key));
        out.deletes.extend(deletes);
        out.live_total = self.live_total;
        Ok(())
    }
}
