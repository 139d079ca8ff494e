//! The `StateStore` trait: what a sync has delivered, refused and read, across runs.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::change::{Memo, Op};
use crate::error::StateError;
use crate::fingerprint::{Fingerprint, FingerprintAlgorithm};
use crate::key::Key;
use crate::record::Record;
use crate::report::SyncReport;
use crate::value::Value;

/// What the snapshot knows of one key: the fingerprint the destination acknowledged last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The key.
    pub key: Key,
    /// The fingerprint last applied, or `None` once this sync has deleted the key (a
    /// tombstone, kept so that the key's version keeps counting up).
    pub fingerprint: Option<Fingerprint>,
    /// How many changes this sync has applied to the key.
    pub version: u64,
    /// A change sent for this key whose outcome is unknown: the run died, or the write
    /// failed ambiguously, before an acknowledgement was committed. The destination may hold
    /// it instead of `fingerprint`, so the next run sends the key's current state (the very
    /// same change again, under the same idempotency key, when the record has not changed
    /// since) or deletes it.
    #[serde(default)]
    pub pending: Option<PendingChange>,
    /// The memo the destination handed back with the key's last applied change (a record
    /// id, the identifiers last sent), handed back with the key's later changes. `None` for
    /// destinations that keep none, and after an applied delete.
    #[serde(default)]
    pub memo: Option<Memo>,
}

/// A change that was sent and not (yet) acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PendingChange {
    /// Its operation.
    pub op: Op,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// The version it was planned on.
    pub version: u64,
}

impl SnapshotEntry {
    /// Whether the destination holds the key as far as this sync knows.
    pub fn is_live(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Whether the destination may hold the key: live, or a change to it is pending (even a
    /// pending delete: it may not have landed, and what was pending before it may have).
    pub fn may_exist(&self) -> bool {
        self.fingerprint.is_some() || self.pending.is_some()
    }

    /// The version a new change to this key is planned on: one past any pending change's,
    /// so that it never shares an idempotency key with a change that may have been applied.
    pub fn next_version(&self) -> u64 {
        self.pending.map_or(self.version, |p| self.version.max(p.version + 1))
    }
}

/// Where a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectionStage {
    /// The source could not read it as a record (a malformed line of a file).
    Source,
    /// A transform refused it (validation, a value that would not cast).
    Transform,
    /// Its key was invalid (repeated within the run).
    Key,
    /// The destination refused it.
    Destination,
}

/// A change that was refused, kept until it succeeds or the record changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEntry {
    /// The key.
    pub key: Key,
    /// Where it was refused.
    pub stage: RejectionStage,
    /// The operation refused (`None` when refused before the diff, by a transform).
    pub op: Option<Op>,
    /// The fingerprint of the refused record (`None` when refused by a transform).
    pub fingerprint: Option<Fingerprint>,
    /// The key's version when the change was planned.
    pub version: u64,
    /// Why, in the refuser's words.
    pub reason: String,
    /// How many runs have tried this same change.
    pub attempts: u32,
    /// The refused record after transforms, so it can be retried even when an incremental
    /// read does not return it again.
    pub record: Option<Record>,
    /// When it was first refused (seconds since the Unix epoch).
    pub first_rejected_at: u64,
    /// When it was last refused (seconds since the Unix epoch).
    pub last_rejected_at: u64,
}

/// Per-sync metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncMeta {
    /// The algorithm the snapshot's fingerprints were taken with; `None` before the first commit.
    pub fingerprint_algorithm: Option<FingerprintAlgorithm>,
    /// The cursor of the last incremental read, if any.
    pub cursor: Option<Value>,
    /// The epoch of the last complete full re-diff of a pushdown sync (see
    /// [`crate::pushdown`]); `None` before one, and after a state reset.
    pub pushdown_epoch: Option<String>,
}

/// One atomic update of a sync's state, applied all or nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateCommit {
    /// Changes about to be sent, recorded as each key's pending change (an unknown key gets
    /// an entry with no fingerprint at version 0) until an applied entry replaces it. Written
    /// before a batch goes out, so a crash after the destination applied it is never lost.
    pub intents: Vec<(Key, PendingChange)>,
    /// Memos to record on keys that have an entry (after this commit's intents), changing
    /// nothing else: the memo a destination gave for a change about to be sent
    /// ([`Destination::intent_memo`](crate::Destination::intent_memo)).
    pub memos: Vec<(Key, Memo)>,
    /// Pending changes the destination refused (so never applied): each key's pending change
    /// goes back to what it was before. An entry left with no fingerprint, no version and
    /// nothing pending is removed.
    pub settled: Vec<(Key, Option<PendingChange>)>,
    /// Snapshot entries to write (a tombstone for a delete), memo included; each also clears
    /// the key's rejection.
    pub applied: Vec<SnapshotEntry>,
    /// Rejections to write, replacing any earlier one of the same key.
    pub rejected: Vec<RejectedEntry>,
    /// Keys whose rejection is to be dropped (the record is gone or back to what was applied).
    pub cleared_rejections: Vec<Key>,
    /// Snapshot entries to forget entirely.
    pub forgotten: Vec<Key>,
    /// The new cursor, when it moves.
    pub cursor: Option<Value>,
    /// The fingerprint algorithm, recorded with the first commit.
    pub fingerprint_algorithm: Option<FingerprintAlgorithm>,
    /// The pushdown epoch, when a complete full re-diff sets it (see [`crate::pushdown`]).
    pub pushdown_epoch: Option<String>,
}

impl StateCommit {
    /// Whether the commit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
            && self.memos.is_empty()
            && self.settled.is_empty()
            && self.applied.is_empty()
            && self.rejected.is_empty()
            && self.cleared_rejections.is_empty()
            && self.forgotten.is_empty()
            && self.cursor.is_none()
            && self.fingerprint_algorithm.is_none()
            && self.pushdown_epoch.is_none()
    }
}

/// An operator's pause of a sync: who paused it, why and when.
///
/// Kept in the state store beside the sync's state, so every runner of the sync sees it,
/// whichever process it runs in. A paused sync's runs return at once with
/// [`RunStatus::Paused`](crate::RunStatus::Paused); a run in flight stops at its next batch
/// boundary (see [`SyncJob::pause`](crate::SyncJob::pause)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Who paused it: a person, a team or a system, as the operator names it.
    pub by: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// When (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

impl Pause {
    /// A pause by `by` for `reason`, now.
    pub fn new(by: impl Into<String>, reason: impl Into<String>) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { by: by.into(), reason: reason.into(), at_ms }
    }
}

/// The right to write a sync's state, held by one runner at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The sync.
    pub sync_id: String,
    /// Who holds it (host name, process id, …).
    pub holder: String,
    /// The fencing token: strictly greater than every earlier lease's of this sync. A write
    /// under a token that is no longer current is refused.
    pub token: u64,
    /// When it was taken.
    pub acquired_at: SystemTime,
    /// When it lapses unless renewed.
    pub expires_at: SystemTime,
}

/// Durable state of syncs: the snapshot (key → fingerprint), the rejected set, the cursor,
/// run history and the per-sync lease.
///
/// # Contract
/// - [`commit`](StateStore::commit) is atomic: after a crash at any instant, either all of a
///   commit is visible or none of it.
/// - Writes are fenced: `commit`, `record_run` and `renew_lease` fail with
///   [`StateError::Fenced`] when the lease's token is no longer the sync's current one.
/// - [`scan`](StateStore::scan) returns entries in ascending key-byte order, tombstones
///   included, so the merge diff can walk it beside a key-ordered source.
/// - A second [`acquire_lease`](StateStore::acquire_lease) of a sync whose lease is held and
///   not expired fails at once with [`StateError::LeaseHeld`] naming the holder.
/// - Syncs are independent: nothing written for one sync id is visible under another.
/// - A [`pause`](StateStore::pause) needs no lease: an operator pauses and resumes a sync
///   while a run holds its lease, and the pause neither fences nor blocks that run's writes
///   (the run stops itself when it sees the pause).
///
/// # Example
/// What the runner does with a store, by hand: take the lease, commit what the destination
/// acknowledged, read it back in key order.
/// ```
/// # use std::time::Duration;
/// # use rse_core::{*, memory::MemoryStateStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), StateError> {
/// let store = MemoryStateStore::new();
/// let lease = store.acquire_lease("crm", "worker-1", Duration::from_secs(60)).await?;
/// assert!(matches!(store.acquire_lease("crm", "worker-2", Duration::from_secs(60)).await,
///                  Err(StateError::LeaseHeld { .. })));
/// let key = Key::from_values(&[Value::Int(7)]);
/// let entry = SnapshotEntry { key: key.clone(), fingerprint: Some(Fingerprint(1)), version: 1, pending: None, memo: None };
/// store.commit(&lease, StateCommit { applied: vec![entry], ..StateCommit::default() }).await?;
/// assert_eq!(store.scan("crm", None, 10).await?[0].key, key);
/// store.release_lease(&lease).await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StateStore: Send + Sync {
    /// A short name for reports and errors, e.g. `sqlite:/var/lib/rse/state.db`.
    fn name(&self) -> &str;

    /// Takes the sync's lease for `ttl`, with a fencing token greater than any before.
    ///
    /// # Errors
    /// [`StateError::LeaseHeld`] when another holder's lease has not expired.
    async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError>;

    /// Extends a held lease by `ttl` from now.
    ///
    /// # Errors
    /// [`StateError::Fenced`] when the lease was taken over.
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError>;

    /// Gives the lease up. Releasing a lease that was taken over is not an error.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StateError>;

    /// The sync's metadata (empty for a sync never committed).
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError>;

    /// Up to `limit` snapshot entries with keys strictly after `after`, in ascending key
    /// order, tombstones included.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError>;

    /// The snapshot entries of `keys`, one per key in order (`None` for an unknown key).
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError>;

    /// Up to `limit` rejected entries with keys strictly after `after`, in key order.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn rejected(
        &self,
        sync_id: &str,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<RejectedEntry>, StateError>;

    /// Applies `commit` atomically under `lease`.
    ///
    /// # Errors
    /// [`StateError::Fenced`] when the lease was taken over (nothing is written).
    async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError>;

    /// Writes or replaces the record of a run (keyed by its run id) under `lease`.
    ///
    /// # Errors
    /// [`StateError::Fenced`] when the lease was taken over.
    async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError>;

    /// The latest `limit` runs of the sync, newest first.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError>;

    /// Pauses the sync, without a lease, and returns the pause in force. A sync already
    /// paused stays paused as it was (who, why and since when are the first pause's), so
    /// that the reason an incident was stopped for is not overwritten; a sync never run
    /// can be paused too. Nothing else of the sync's state changes.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError>;

    /// Lifts the sync's pause, without a lease; returns the pause lifted, or `None` when the
    /// sync was not paused.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError>;

    /// The sync's pause, or `None` when it is not paused.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the store cannot be reached.
    async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError>;
}
