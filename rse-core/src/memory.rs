//! In-memory implementations of `Source`, `Destination` and `StateStore` (and of
//! `PushdownSource`, [`MemoryPushdownSource`]).
//!
//! They are complete implementations of their traits' contracts (the conformance suites run
//! against them), useful for ephemeral syncs, examples and tests. Each is a cheap handle:
//! clones share the same data, so a test can keep one to inspect or edit while a sync uses
//! another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;

use crate::change::{Change, ChangeBatch, ChangeOutcome, IdempotencyKey, Memo, Op, Receipt, WriteOutcome};
use crate::destination::{
    CommitFor, CommittedWriteError, Destination, DestinationCapabilities, Held, ReadBack, TransactionalState,
};
use crate::error::{DestinationError, SourceError, StateError};
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::record::{Record, RowBatch};
use crate::report::SyncReport;
use crate::schema::Schema;
use crate::source::{ReadRequest, RowBatchStream, Source, SourceCapabilities};
use crate::state::{Lease, Pause, RejectedEntry, SnapshotEntry, StateCommit, StateStore, SyncMeta};

mod pushdown;
pub use pushdown::{DeliveredTable, MemoryPushdownSource};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent before anything can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A table held in memory, keyed by its schema's key columns.
#[derive(Clone)]
pub struct MemorySource {
    name: Arc<str>,
    schema: Arc<Schema>,
    capabilities: SourceCapabilities,
    rows: Arc<Mutex<Vec<Record>>>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource").field("name", &self.name).field("rows", &lock(&self.rows).len()).finish()
    }
}

impl MemorySource {
    /// A table of `rows` under `schema`; it can read in key order.
    pub fn new(schema: Arc<Schema>, rows: Vec<Record>) -> Self {
        Self {
            name: "memory".into(),
            schema,
            capabilities: SourceCapabilities::default().with_ordered_by_key(true),
            rows: Arc::new(Mutex::new(rows)),
        }
    }

    /// Names the source.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Sets what the source declares it can do (e.g. a cursor field for incremental reads,
    /// or no key order, to force the hash diff).
    pub fn with_capabilities(mut self, capabilities: SourceCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The schema of the rows.
    pub(crate) fn schema_arc(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    /// Replaces every row.
    pub fn set_rows(&self, rows: Vec<Record>) {
        *lock(&self.rows) = rows;
    }

    /// A copy of the rows.
    pub fn rows(&self) -> Vec<Record> {
        lock(&self.rows).clone()
    }

    /// Inserts `record`, or replaces the row with the same key.
    pub fn upsert(&self, record: Record) {
        let mut rows = lock(&self.rows);
        let key = record.key(&self.schema).ok();
        match rows.iter_mut().find(|r| key.is_some() && r.key(&self.schema).ok() == key) {
            Some(row) => *row = record,
            None => rows.push(record),
        }
    }

    /// Removes the row with this key, if any.
    pub fn remove(&self, key: &Key) {
        lock(&self.rows).retain(|r| r.key(&self.schema).ok().as_ref() != Some(key));
    }
}

#[async_trait]
impl Source for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        self.capabilities.clone()
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(self.schema.clone())
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        if request.order_by_key && !self.capabilities.ordered_by_key {
            return Err(SourceError::Unsupported(format!("source `{}` does not read in key order", self.name)));
        }
        let mut rows = self.rows();
        if let (Some(cursor), Some(field)) = (&request.cursor, &self.capabilities.cursor_field) {
            let i = self.schema.index_of(field).ok_or_else(|| SourceError::NotFound {
                what: format!("cursor column `{field}` in `{}` (columns: {})", self.name, self.schema.field_names()),
                hint: None,
            })?;
            rows.retain(|r| r.get(i).is_some_and(|v| !v.is_null() && v.total_cmp(cursor).is_ge()));
        }
        if request.order_by_key {
            // Rows with a null key sort first; the runner reports them as invalid.
            let mut keyed: Vec<(Option<Key>, Record)> =
                rows.into_iter().map(|r| (r.key(&self.schema).ok(), r)).collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
        let size = request.batch_size.max(1);
        let schema = self.schema.clone();
        let mut batches = Vec::with_capacity(rows.len() / size + 1);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            batches.push(Ok(RowBatch::new(schema.clone(), rows.by_ref().take(size).collect())));
        }
        Ok(futures::stream::iter(batches).boxed())
    }
}

/// One write of a change that reached a [`MemoryDestination`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The change's idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// Its key.
    pub key: Key,
    /// Its operation.
    pub op: Op,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// The version it was planned on.
    pub version: u64,
    /// `false` when it was dropped as a duplicate of an applied idempotency key.
    pub applied: bool,
    /// The memo the change carried (the record id, for a destination that keeps memos).
    pub memo: Option<Memo>,
}

#[derive(Default)]
struct DestinationData {
    rows: BTreeMap<Key, (Record, Fingerprint)>,
    /// Record ids, for a destination that keeps memos.
    ids: BTreeMap<Key, String>,
    next_id: u64,
    events: Vec<(Key, Record)>,
    applied_keys: HashSet<IdempotencyKey>,
    log: Vec<Delivery>,
    writes: u64,
}

/// A destination that keeps records in memory, logs every delivery, and honours
/// idempotency keys (a change whose key was applied before is acknowledged, not re-applied).
///
/// `Insert` of an existing key overwrites it, `Update` of a missing key is rejected with
/// "record not found", `Delete` of a missing key is applied, `Append` adds an event.
///
/// With capabilities that [keep memos](DestinationCapabilities::with_memos) it behaves as a
/// CRM does: a record gets an id when created (`rec-1`, `rec-2`, …), every applied insert or
/// update hands it back as the memo with `created`/`updated`, and a delete removes the
/// record only by the id in the change's memo — a delete without one (a record this sync
/// has no id of) changes nothing, and one with another record's id is refused.
///
/// With [`with_state_store`](Self::with_state_store) it is exactly-once: it offers
/// [`TransactionalState`], applying each batch and the sync's state commit into that
/// [`MemoryStateStore`] together, or neither when the lease was lost.
#[derive(Clone)]
pub struct MemoryDestination {
    name: Arc<str>,
    capabilities: DestinationCapabilities,
    data: Arc<Mutex<DestinationData>>,
    state: Option<MemoryStateStore>,
}

impl std::fmt::Debug for MemoryDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDestination").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Default for MemoryDestination {
    fn default() -> Self {
        Self::new()
    }
}

/// What one write changed, so a refused state commit can take it back.
#[derive(Default)]
struct Undo {
    rows: Vec<(Key, Option<(Record, Fingerprint)>)>,
    ids: Vec<(Key, Option<String>)>,
    events: usize,
    log: usize,
    applied_keys: Vec<IdempotencyKey>,
}

impl Undo {
    fn roll_back(self, data: &mut DestinationData) {
        for (key, before) in self.rows.into_iter().rev() {
            match before {
                Some(row) => data.rows.insert(key, row),
                None => data.rows.remove(&key),
            };
        }
        for (key, before) in self.ids.into_iter().rev() {
            match before {
                Some(id) => data.ids.insert(key, id),
                None => data.ids.remove(&key),
            };
        }
        data.events.truncate(self.events);
        data.log.truncate(self.log);
        for key in &self.applied_keys {
            data.applied_keys.remove(key);
        }
    }
}

impl MemoryDestination {
    /// A destination supporting every operation, honouring idempotency keys.
    pub fn new() -> Self {
        Self {
            name: "memory".into(),
            capabilities: DestinationCapabilities::new(Op::ALL).with_idempotency_keys(true),
            data: Arc::default(),
            state: None,
        }
    }

    /// Replaces the declared capabilities.
    pub fn with_capabilities(mut self, capabilities: DestinationCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Commits the sync's state into `store` together with each batch (exactly-once); the
    /// sync must be built with the same store.
    pub fn with_state_store(mut self, store: MemoryStateStore) -> Self {
        self.state = Some(store);
        self
    }

    /// The records held, by key.
    pub fn records(&self) -> BTreeMap<Key, Record> {
        lock(&self.data).rows.iter().map(|(k, (r, _))| (k.clone(), r.clone())).collect()
    }

    /// The fingerprint of the change last applied to each key held.
    pub fn fingerprints(&self) -> BTreeMap<Key, Fingerprint> {
        lock(&self.data).rows.iter().map(|(k, (_, f))| (k.clone(), *f)).collect()
    }

    /// The appended events, in order.
    pub fn events(&self) -> Vec<(Key, Record)> {
        lock(&self.data).events.clone()
    }

    /// Every change delivered, in order, duplicates included (a write whose state commit
    /// was refused left no trace).
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.data).log.clone()
    }

    /// How many `write` calls reached it.
    pub fn writes(&self) -> u64 {
        lock(&self.data).writes
    }

    /// The record ids assigned, by key (a destination that keeps memos).
    pub fn record_ids(&self) -> BTreeMap<Key, String> {
        lock(&self.data).ids.clone()
    }

    /// Puts a record in place as if written by someone else (for `Update` mode tests).
    pub fn seed(&self, key: Key, record: Record) {
        lock(&self.data).rows.insert(key, (record, Fingerprint(0)));
    }

    /// Takes a record away as if deleted by someone else; the record it held, if any.
    pub fn remove(&self, key: &Key) -> Option<Record> {
        lock(&self.data).rows.remove(key).map(|(record, _)| record)
    }

    /// Applies `batch` to `data`, noting in `undo` how to take it back.
    fn apply(&self, data: &mut DestinationData, batch: &ChangeBatch, undo: &mut Undo) -> WriteOutcome {
        let honour = self.capabilities.honours_idempotency_keys;
        let memos = self.capabilities.keeps_memos;
        data.writes += 1;
        undo.events = data.events.len();
        undo.log = data.log.len();
        let mut outcomes = Vec::with_capacity(batch.changes.len());
        let mut receipts = Vec::with_capacity(if memos { batch.changes.len() } else { 0 });
        for change in &batch.changes {
            let duplicate = honour && data.applied_keys.contains(&change.idempotency_key);
            let (outcome, receipt) = if memos && !duplicate && self.capabilities.supports(change.op) {
                Self::apply_by_id(data, change, undo)
            } else if memos && duplicate {
                // A re-sent change that landed before: acknowledged again with the record's id,
                // as an upsert answers, so the id reaches the state even when the first
                // answer was lost.
                let memo = data.ids.get(&change.key).and_then(|id| Memo::text(id).ok());
                (ChangeOutcome::Applied, Receipt { memo, ..Receipt::unchanged() })
            } else {
                (self.apply_one(data, change, duplicate, undo), Receipt::default())
            };
            let applied = !duplicate && outcome == ChangeOutcome::Applied;
            if applied && data.applied_keys.insert(change.idempotency_key) {
                undo.applied_keys.push(change.idempotency_key);
            }
            data.log.push(Delivery {
                idempotency_key: change.idempotency_key,
                key: change.key.clone(),
                op: change.op,
                fingerprint: change.fingerprint,
                version: change.version,
                applied,
                memo: change.memo.clone(),
            });
            outcomes.push(outcome);
            if memos {
                receipts.push(receipt);
            }
        }
        let mut written = WriteOutcome::from_outcomes(outcomes);
        written.receipts = receipts;
        written
    }

    /// A change to a destination that keeps memos: records are known by the id it assigned.
    fn apply_by_id(data: &mut DestinationData, change: &Change, undo: &mut Undo) -> (ChangeOutcome, Receipt) {
        let id_memo = |id: &str| Memo::text(id).ok();
        match (change.op, &change.record) {
            (Op::Delete, _) => {
                match (data.ids.get(&change.key), &change.memo) {
                    // No memo: the change that created the record was never acknowledged
                    // (its answer was lost). The record is found by its key, as a CRM
                    // finds one by the external id it was upserted under.
                    (Some(_), None) => {
                        undo.rows.push((change.key.clone(), data.rows.remove(&change.key)));
                        undo.ids.push((change.key.clone(), data.ids.remove(&change.key)));
                        (ChangeOutcome::Applied, Receipt::default())
                    }
                    (None, None) => (ChangeOutcome::Applied, Receipt::default()),
                    (Some(id), Some(memo)) if memo.as_str() == Some(id.as_str()) => {
                        undo.rows.push((change.key.clone(), data.rows.remove(&change.key)));
                        undo.ids.push((change.key.clone(), data.ids.remove(&change.key)));
                        (ChangeOutcome::Applied, Receipt::default())
                    }
                    // Deleted already (a re-sent delete).
                    (None, Some(_)) => (ChangeOutcome::Applied, Receipt::default()),
                    (Some(_), Some(_)) => {
                        (ChangeOutcome::rejected("the memo names another record's id"), Receipt::default())
                    }
                }
            }
            (Op::Insert | Op::Update, Some(record)) => {
                let before = data.rows.insert(change.key.clone(), (record.clone(), change.fingerprint));
                undo.rows.push((change.key.clone(), before));
                match data.ids.get(&change.key) {
                    Some(id) => (ChangeOutcome::Applied, Receipt { memo: id_memo(id), ..Receipt::updated() }),
                    None => {
                        data.next_id += 1;
                        let id = format!("rec-{}", data.next_id);
                        let memo = id_memo(&id);
                        undo.ids.push((change.key.clone(), data.ids.insert(change.key.clone(), id)));
                        (ChangeOutcome::Applied, Receipt { memo, ..Receipt::created() })
                    }
                }
            }
            (op, _) => (ChangeOutcome::rejected(format!("{op} is not supported by record id")), Receipt::default()),
        }
    }

    fn apply_one(
        &self,
        data: &mut DestinationData,
        change: &Change,
        duplicate: bool,
        undo: &mut Undo,
    ) -> ChangeOutcome {
        {
            if duplicate {
                ChangeOutcome::Applied
            } else if !self.capabilities.supports(change.op) {
                ChangeOutcome::rejected(format!("operation {} not supported", change.op))
            } else {
                match (change.op, &change.record) {
                    (Op::Delete, _) => {
                        let before = data.rows.remove(&change.key);
                        undo.rows.push((change.key.clone(), before));
                        ChangeOutcome::Applied
                    }
                    (Op::Update, Some(_)) if !data.rows.contains_key(&change.key) => {
                        ChangeOutcome::rejected("record not found")
                    }
                    (Op::Insert | Op::Update, Some(record)) => {
                        let before = data.rows.insert(change.key.clone(), (record.clone(), change.fingerprint));
                        undo.rows.push((change.key.clone(), before));
                        ChangeOutcome::Applied
                    }
                    (Op::Append, Some(record)) => {
                        data.events.push((change.key.clone(), record.clone()));
                        ChangeOutcome::Applied
                    }
                    (_, None) => ChangeOutcome::rejected(format!("{} without a record", change.op)),
                }
            }
        }
    }
}

#[async_trait]
impl Destination for MemoryDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        self.capabilities.clone()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        Ok(self.apply(&mut lock(&self.data), batch, &mut Undo::default()))
    }

    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        self.state.is_some().then_some(self as &dyn TransactionalState)
    }

    fn read_back(&self) -> Option<&dyn ReadBack> {
        Some(self)
    }
}

/// The records held, as they were written (the memory destination holds one sync's
/// records: `sync_id` and `schema` are not needed to find them).
#[async_trait]
impl ReadBack for MemoryDestination {
    async fn read(&self, _sync_id: &str, _schema: &Schema, keys: &[Key]) -> Result<Vec<Held>, DestinationError> {
        let data = lock(&self.data);
        Ok(keys.iter().map(|k| data.rows.get(k).map_or(Held::Absent, |(r, _)| Held::Record(r.clone()))).collect())
    }

    async fn keys(
        &self,
        _sync_id: &str,
        _schema: &Schema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, DestinationError> {
        use std::ops::Bound;
        let data = lock(&self.data);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(data.rows.range::<Key, _>((lower, Bound::Unbounded)).take(limit).map(|(k, _)| k.clone()).collect())
    }
}

#[async_trait]
impl TransactionalState for MemoryDestination {
    fn state_store_name(&self) -> &str {
        self.state.as_ref().map_or("", |s| s.name())
    }

    fn state_store(&self) -> Option<Arc<dyn StateStore>> {
        self.state.clone().map(|s| Arc::new(s) as Arc<dyn StateStore>)
    }

    async fn write_committing(
        &self,
        batch: &ChangeBatch,
        lease: &Lease,
        commit_for: &CommitFor<'_>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        let Some(store) = &self.state else {
            return Err(DestinationError::fatal(format!("{}: no state store to commit into", self.name)).into());
        };
        // Both under the destination's lock: no one sees the rows without their state.
        let mut data = lock(&self.data);
        let mut undo = Undo::default();
        let written = self.apply(&mut data, batch, &mut undo);
        if let Err(error) = store.commit_now(lease, commit_for(&written)) {
            undo.roll_back(&mut data);
            return Err(error.into());
        }
        Ok(written)
    }
}

struct LeaseState {
    holder: String,
    token: u64,
    acquired_at: SystemTime,
    acquired_instant: tokio::time::Instant,
    expires: tokio::time::Instant,
}

#[derive(Default)]
struct SyncData {
    snapshot: BTreeMap<Key, SnapshotEntry>,
    rejected: BTreeMap<Key, RejectedEntry>,
    meta: SyncMeta,
    runs: BTreeMap<u64, SyncReport>,
    lease: Option<LeaseState>,
    last_token: u64,
    pause: Option<Pause>,
}

/// A state store in memory. Lease expiry follows tokio's clock, so tests with a paused clock
/// can let a lease lapse without waiting.
///
/// Each store has its own [`name`](StateStore::name), `memory#<n>`, so an exactly-once
/// [`MemoryDestination`] can tell its store from another.
#[derive(Clone)]
pub struct MemoryStateStore {
    name: Arc<str>,
    syncs: Arc<Mutex<HashMap<String, SyncData>>>,
    run_retention: usize,
}

impl Default for MemoryStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStateStore").finish_non_exhaustive()
    }
}

impl MemoryStateStore {
    /// An empty store keeping the last 100 runs of each sync.
    pub fn new() -> Self {
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { name: format!("memory#{n}").into(), syncs: Arc::default(), run_retention: 100 }
    }

    /// Keeps only the last `n` runs of each sync.
    pub fn with_run_retention(mut self, n: usize) -> Self {
        self.run_retention = n.max(1);
        self
    }

    /// The whole snapshot of a sync, tombstones included, in key order.
    pub fn snapshot(&self, sync_id: &str) -> Vec<SnapshotEntry> {
        lock(&self.syncs).get(sync_id).map(|s| s.snapshot.values().cloned().collect()).unwrap_or_default()
    }

    /// The whole rejected set of a sync, in key order.
    pub fn rejections(&self, sync_id: &str) -> Vec<RejectedEntry> {
        lock(&self.syncs).get(sync_id).map(|s| s.rejected.values().cloned().collect()).unwrap_or_default()
    }

    fn with_sync<T>(&self, sync_id: &str, f: impl FnOnce(&mut SyncData) -> T) -> T {
        let mut syncs = lock(&self.syncs);
        f(syncs.entry(sync_id.to_owned()).or_default())
    }

    /// [`StateStore::commit`], without a future: the exactly-once [`MemoryDestination`]
    /// commits while it holds its own lock.
    fn commit_now(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        self.with_sync(&lease.sync_id, |data| {
            Self::check_fence(&lease.sync_id, data, lease)?;
            // An entry that is there is updated in place: no key is cloned for it.
            for (key, pending) in commit.intents {
                match data.snapshot.get_mut(&key) {
                    Some(entry) => entry.pending = Some(pending),
                    None => {
                        let entry = SnapshotEntry {
                            key: key.clone(),
                            fingerprint: None,
                            version: 0,
                            pending: Some(pending),
                            memo: None,
                        };
                        data.snapshot.insert(key, entry);
                    }
                }
            }
            for (key, memo) in commit.memos {
                if let Some(entry) = data.snapshot.get_mut(&key) {
                    entry.memo = Some(memo);
                }
            }
            for (key, pending) in commit.settled {
                if let Some(entry) = data.snapshot.get_mut(&key) {
                    entry.pending = pending;
                    if entry.fingerprint.is_none() && entry.version == 0 && entry.pending.is_none() {
                        data.snapshot.remove(&key);
                    }
                }
            }
            for entry in commit.applied {
                if !data.rejected.is_empty() {
                    data.rejected.remove(&entry.key);
                }
                match data.snapshot.get_mut(&entry.key) {
                    Some(existing) => *existing = entry,
                    None => {
                        data.snapshot.insert(entry.key.clone(), entry);
                    }
                }
            }
            for entry in commit.rejected {
                data.rejected.insert(entry.key.clone(), entry);
            }
            for key in &commit.cleared_rejections {
                data.rejected.remove(key);
            }
            for key in &commit.forgotten {
                data.snapshot.remove(key);
            }
            if let Some(cursor) = commit.cursor {
                data.meta.cursor = Some(cursor);
            }
            if let Some(algorithm) = commit.fingerprint_algorithm {
                data.meta.fingerprint_algorithm = Some(algorithm);
            }
            if let Some(epoch) = commit.pushdown_epoch {
                data.meta.pushdown_epoch = Some(epoch);
            }
            Ok(())
        })
    }

    fn check_fence(sync_id: &str, data: &SyncData, lease: &Lease) -> Result<(), StateError> {
        let current = data.lease.as_ref().map_or(data.last_token, |l| l.token);
        if current != lease.token || data.lease.is_none() {
            return Err(StateError::Fenced { sync_id: sync_id.to_owned(), token: lease.token, current });
        }
        Ok(())
    }
}

fn page<V: Clone>(map: &BTreeMap<Key, V>, after: Option<&Key>, limit: usize) -> Vec<V> {
    use std::ops::Bound;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    map.range::<Key, _>((lower, Bound::Unbounded)).take(limit).map(|(_, v)| v.clone()).collect()
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        let now = tokio::time::Instant::now();
        self.with_sync(sync_id, |data| {
            if let Some(l) = &data.lease
                && l.expires > now
            {
                return Err(StateError::LeaseHeld {
                    sync_id: sync_id.to_owned(),
                    holder: l.holder.clone(),
                    since_secs: now.duration_since(l.acquired_instant).as_secs(),
                    expires_in_secs: l.expires.duration_since(now).as_secs(),
                });
            }
            data.last_token += 1;
            let acquired_at = SystemTime::now();
            data.lease = Some(LeaseState {
                holder: holder.to_owned(),
                token: data.last_token,
                acquired_at,
                acquired_instant: now,
                expires: now + ttl,
            });
            Ok(Lease {
                sync_id: sync_id.to_owned(),
                holder: holder.to_owned(),
                token: data.last_token,
                acquired_at,
                expires_at: acquired_at + ttl,
            })
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        let now = tokio::time::Instant::now();
        self.with_sync(&lease.sync_id, |data| {
            Self::check_fence(&lease.sync_id, data, lease)?;
            let mut renewed = lease.clone();
            if let Some(l) = data.lease.as_mut() {
                l.expires = now + ttl;
                renewed.acquired_at = l.acquired_at;
            }
            renewed.expires_at = SystemTime::now() + ttl;
            Ok(renewed)
        })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
        self.with_sync(&lease.sync_id, |data| {
            if data.lease.as_ref().is_some_and(|l| l.token == lease.token) {
                data.lease = None;
            }
        });
        Ok(())
    }

    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
        Ok(lock(&self.syncs).get(sync_id).map(|s| s.meta.clone()).unwrap_or_default())
    }

    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
        Ok(lock(&self.syncs).get(sync_id).map(|s| page(&s.snapshot, after, limit)).unwrap_or_default())
    }

    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
        let syncs = lock(&self.syncs);
        let snapshot = syncs.get(sync_id).map(|s| &s.snapshot);
        Ok(keys.iter().map(|k| snapshot.and_then(|s| s.get(k).cloned())).collect())
    }

    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError> {
        Ok(lock(&self.syncs).get(sync_id).map(|s| page(&s.rejected, after, limit)).unwrap_or_default())
    }

    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        self.commit_now(lease, commit)
    }

    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        let retention = self.run_retention.max(1);
        self.with_sync(&lease.sync_id, |data| {
            Self::check_fence(&lease.sync_id, data, lease)?;
            data.runs.insert(report.run_id, report.clone());
            while data.runs.len() > retention {
                data.runs.pop_first();
            }
            Ok(())
        })
    }

    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
        Ok(lock(&self.syncs)
            .get(sync_id)
            .map(|s| s.runs.values().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        Ok(self.with_sync(sync_id, |data| data.pause.get_or_insert_with(|| pause.clone()).clone()))
    }

    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        Ok(lock(&self.syncs).get_mut(sync_id).and_then(|s| s.pause.take()))
    }

    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        Ok(lock(&self.syncs).get(sync_id).and_then(|s| s.pause.clone()))
    }
}
