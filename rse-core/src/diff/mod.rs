//! The diff engine: which records changed since the state the destination acknowledged.
//!
//! Two strategies sit behind one interface, [`Differ`]:
//!
//! - [`HashDiff`] loads the snapshot's keys and fingerprints into a hash map and takes
//!   source records in any order. Memory grows with the snapshot: about 75 bytes per key,
//!   plus the key itself when it is longer than 22 bytes.
//! - [`MergeDiff`] walks the snapshot page by page beside a source that reads in key order.
//!   Memory is independent of table size.
//!
//! - [`LookupDiff`] diffs only what a pushdown source handed out (see [`crate::pushdown`]),
//!   looking each key up in the state store: memory grows with the changed rows only.
//!
//! All validate keys the same way: a record whose key column is null, or whose key was
//! already seen in this run, becomes an [`InvalidRecord`] with a reason (the first
//! occurrence of a repeated key is diffed; later ones are invalid), never silently merged.

mod hash;
mod lookup;
mod merge;

use async_trait::async_trait;

pub use hash::HashDiff;
pub use lookup::LookupDiff;
pub use merge::MergeDiff;

use crate::error::StateError;
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::record::Record;
use crate::state::{PendingChange, SnapshotEntry};

/// What the diff found for one source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// The key is not live in the snapshot, or a change to it is pending (so whether the
    /// destination holds it is unknown; an insert is safe either way, see
    /// [`Destination`](crate::Destination)).
    Insert,
    /// The key is live with another fingerprint.
    Update,
    /// The key is live with the same fingerprint and no change to it is pending (only
    /// emitted when asked, for a resync).
    Unchanged,
}

/// A source record the diff decided about.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What it is.
    pub kind: PlanKind,
    /// The key.
    pub key: Key,
    /// The record after transforms.
    pub record: Record,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// The fingerprint the destination acknowledged last (`None` if never, or deleted).
    pub base_fingerprint: Option<Fingerprint>,
    /// The key's version in the snapshot (0 if unknown).
    pub base_version: u64,
    /// A change to the key that was sent and not acknowledged.
    pub pending: Option<PendingChange>,
}

/// A source record whose key is invalid.
#[derive(Debug, Clone)]
pub struct InvalidRecord {
    /// The key, when it could be built (a repeated key).
    pub key: Option<Key>,
    /// The record.
    pub record: Record,
    /// Why, naming the column; never the values.
    pub reason: String,
}

/// What the diff has found so far; [`Differ`] methods append to it.
#[derive(Debug, Default)]
pub struct DiffOutput {
    /// Records to send.
    pub planned: Vec<Planned>,
    /// Records with an invalid key.
    pub invalid: Vec<InvalidRecord>,
    /// How many records matched the snapshot.
    pub unchanged: u64,
    /// Live snapshot entries the source no longer has (filled by `finish`).
    pub deletes: Vec<SnapshotEntry>,
    /// How many live entries the snapshot held (known after `finish`).
    pub live_total: u64,
    /// Keys the source no longer has ([`Differ::push_absent`]) that the destination does
    /// not hold either: nothing to send.
    pub absent_settled: Vec<Key>,
}

/// A diff failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The snapshot could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The merge strategy got a key smaller than the one before it.
    #[error(
        "source returned keys out of order (key {key} after {previous}); the merge diff needs ascending key order: fix the source's ORDER BY or use the hash strategy"
    )]
    OutOfOrder {
        /// The key out of place (hashed).
        key: Key,
        /// The key before it (hashed).
        previous: Key,
    },
}

/// One diff strategy. The runner pushes every transformed batch, then calls `finish` once.
#[async_trait]
pub trait Differ: Send {
    /// The strategy's name: `hash`, `merge` or `pushdown`.
    fn strategy(&self) -> &'static str;

    /// Diffs the records of one batch. `seen` are keys read in this batch that did not reach
    /// the diff (refused by a transform): they count as present, so they are never deleted.
    ///
    /// # Errors
    /// [`DiffError`] when the snapshot cannot be read or the source breaks key order.
    async fn push(
        &mut self,
        schema: &crate::Schema,
        records: Vec<Record>,
        seen: Vec<Key>,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError>;

    /// Keys a pushdown read says the source no longer has: delete candidates for
    /// [`finish`](Differ::finish). The default ignores them, for the strategies that find
    /// absent keys themselves by covering the whole snapshot.
    ///
    /// # Errors
    /// [`DiffError::State`] when the snapshot cannot be read.
    async fn push_absent(&mut self, keys: Vec<Key>) -> Result<(), DiffError> {
        let _ = keys;
        Ok(())
    }

    /// Ends the diff: fills `deletes` with the live keys never seen and `live_total`.
    ///
    /// # Errors
    /// [`DiffError::State`] when the snapshot cannot be read.
    async fn finish(&mut self, out: &mut DiffOutput) -> Result<(), DiffError>;
}

pub(crate) fn duplicate_reason(schema: &crate::Schema) -> String {
    let cols: Vec<&str> = schema.key_names().collect();
    format!("key ({}) repeated in this run; the first occurrence was kept, this one is refused", cols.join(", "))
}

/// Keeps the fingerprinter of the last schema seen, so batches of one schema share it.
#[derive(Debug)]
struct FingerprinterCache {
    algorithm: crate::FingerprintAlgorithm,
    last: Option<(crate::Schema, crate::Fingerprinter)>,
}

impl FingerprinterCache {
    fn new(algorithm: crate::FingerprintAlgorithm) -> Self {
        Self { algorithm, last: None }
    }

    fn take(&mut self, schema: &crate::Schema) -> crate::Fingerprinter {
        match self.last.take() {
            Some((s, f)) if s == *schema => f,
            _ => crate::Fingerprinter::new(self.algorithm, schema),
        }
    }

    fn put_back(&mut self, schema: &crate::Schema, fingerprinter: crate::Fingerprinter) {
        self.last = Some((schema.clone(), fingerprinter));
    }
}
