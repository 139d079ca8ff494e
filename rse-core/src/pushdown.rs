//! Pushdown: a warehouse source that diffs in the warehouse and hands out only what changed.
//!
//! A re-run that reads every row of a large model to find the 1 % that changed spends its
//! time moving unchanged rows out of the warehouse. A [`PushdownSource`] keeps, in a table
//! of its own store (the *delivered table*, one per sync), a hash of each source row whose
//! post-transform version the destination acknowledged. The warehouse compares the model's
//! current row hashes with it and hands out only new and changed rows (with their hashes)
//! and the keys that vanished from the model.
//!
//! The pushdown only narrows what is read. rse's own diff — the fingerprint after
//! transforms against the state store's snapshot, idempotency, retries of refused rows —
//! still decides what is sent; the delivered table is never a second source of truth.
//!
//! # The invariant the runner keeps in the delivered table
//! **Every key the destination may hold has a row**, and a row's hash is either `None`
//! (unknown: always re-read) or the hash of the source row whose post-transform version
//! the destination acknowledged. Hence:
//! - a row whose hash differs from the model's, is `None`, or is absent is re-read;
//! - a key in the table but not in the model has vanished (a delete candidate).
//!
//! The runner keeps it with three calls: [`record_intents`](PushdownSource::record_intents)
//! sets a key's row to `None` *before* a change for it goes out (so a crash after the
//! destination applied it leaves a `None` row, never a missing or stale one, and a later
//! delete or revert is never missed); [`record_delivered`](PushdownSource::record_delivered) sets the hash (or
//! removes the row for an acknowledged delete) *after* the state store committed the
//! outcome. Refused, failed, withheld and undelivered rows get no hash: they are re-read and
//! retried next run.
//!
//! The invariant is what a run that reads only what changed relies on; during a full
//! re-diff (below) the table is not read, and the runner records no intents there: the
//! re-diff starts by giving every key the destination may hold a row with an unknown hash,
//! and it is completed only when every change of the run was settled (delivered or refused)
//! and every hash recorded, which restores the invariant for the keys it added. A full
//! re-diff that stops short, or whose hash writes failed, leaves the epoch unset, and the
//! next run re-diffs in full again.
//!
//! # Epochs
//! What the post-transform output depends on (the transforms' configuration, the source's
//! columns, the fingerprint algorithm, the mode) is digested into an *epoch*. The runner
//! reads with [`read_changed`](PushdownSource::read_changed) only when the epoch of its
//! configuration equals both the epoch recorded with the state
//! ([`SyncMeta::pushdown_epoch`](crate::SyncMeta::pushdown_epoch)) and the one the
//! delivered table was completed under ([`epoch`](PushdownSource::epoch)). Otherwise it runs
//! one *full re-diff*: [`begin_full`](PushdownSource::begin_full), an ordinary run over
//! [`read_full`](PushdownSource::read_full) that also records hashes (no intents), then
//! [`complete`](PushdownSource::complete). A full re-diff reads the model, not the delivered
//! table: a key whose delete the destination acknowledged in a run that stopped before
//! recording it stays in the table until the next pushdown run hands it out as vanished,
//! finds it gone from the state too, and removes it.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::SourceError;
use crate::key::Key;
use crate::record::RowBatch;
use crate::source::ReadRequest;

/// The hash a warehouse computed over one source row's columns: opaque bytes, compared for
/// equality only. Its algorithm is the source's choice; a change of algorithm only makes
/// every row look changed once (they are re-read, found unchanged by rse's diff, and their
/// new hashes recorded).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowHash(Box<[u8]>);

impl RowHash {
    /// A hash of these bytes.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RowHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowHash(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 8 {
            write!(f, "…")?;
        }
        write!(f, ")")
    }
}

impl From<Vec<u8>> for RowHash {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into_boxed_slice())
    }
}

impl From<&[u8]> for RowHash {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }
}

/// One batch of a pushdown read: source rows, each with its hash, and keys that vanished
/// from the model. The hashes travel beside the records, never as a column the transforms
/// would see.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushdownBatch {
    /// The rows read, under the source's schema (as [`Source::read`](crate::Source::read)
    /// returns them), with any rows the source could not read in `rows.rejected`.
    pub rows: RowBatch,
    /// The hash of each record of `rows.records`, at the same index.
    pub hashes: Vec<RowHash>,
    /// Keys held in the delivered table that the model no longer has.
    pub vanished: Vec<Key>,
}

impl PushdownBatch {
    /// Rows with their hashes (one per record, at the same index).
    ///
    /// # Errors
    /// [`SourceError::Malformed`] when the counts differ.
    pub fn rows(rows: RowBatch, hashes: Vec<RowHash>) -> Result<Self, SourceError> {
        if rows.records.len() != hashes.len() {
            return Err(SourceError::Malformed {
                location: "pushdown batch".to_owned(),
                reason: format!(
                    "{} records but {} row hashes; a pushdown source gives one hash per record",
                    rows.records.len(),
                    hashes.len()
                ),
            });
        }
        Ok(Self { rows, hashes, vanished: Vec::new() })
    }

    /// Rows of an ordinary read, with no hashes.
    pub(crate) fn plain(rows: RowBatch) -> Self {
        Self { rows, hashes: Vec::new(), vanished: Vec::new() }
    }

    /// Keys that vanished from the model, with no rows (`rows` is empty under `schema`).
    pub fn vanished(schema: std::sync::Arc<crate::schema::Schema>, keys: Vec<Key>) -> Self {
        Self { rows: RowBatch::empty(schema), hashes: Vec::new(), vanished: keys }
    }
}

/// A stream of pushdown batches.
pub type PushdownStream<'a> = BoxStream<'a, Result<PushdownBatch, SourceError>>;

/// A source that can compare the model with the rows a sync delivered, in its own store,
/// and hand out only what changed. Offered through
/// [`Source::pushdown`](crate::Source::pushdown).
///
/// Keys are [`Key`]s of the source's key columns; pushdown needs transforms that leave the
/// key values as they are (renaming a key column is fine). An implementation keeps one
/// delivered table per `sync_id` (key columns, a nullable hash) and one epoch per sync.
///
/// # Contract
/// - Every method is idempotent: the runner may call it again after a failure or crash.
/// - [`read_changed`](Self::read_changed) hands out every model row whose key is absent
///   from the delivered table or whose stored hash is `None` or differs from the row's
///   current hash, each with its current hash, and every key of the table the model no
///   longer has, each key once across the stream. It may hand out more (never less).
/// - [`read_full`](Self::read_full) hands out every model row with its hash and no
///   vanished keys.
/// - With [`ReadRequest::order_by_key`], rows come in ascending key order.
///   [`ReadRequest::cursor`] is always `None`: pushdown and incremental reads exclude each
///   other.
/// - No method ever removes a key of the delivered table except
///   [`record_delivered`](Self::record_delivered) with `None`.
/// - Errors never carry row values.
#[async_trait]
pub trait PushdownSource: Send + Sync {
    /// Creates the delivered table of `sync_id` if it is missing; returns the epoch the
    /// table was last completed under, `None` when never (or since
    /// [`begin_full`](Self::begin_full)).
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] when the store cannot be reached; any error when the
    /// table cannot be created (e.g. no permission, naming the schema to grant).
    async fn epoch(&self, sync_id: &str) -> Result<Option<String>, SourceError>;

    /// A full re-diff of `sync_id` starts: clears the epoch first, then forgets the stored
    /// hashes (sets them to `None`). Keeps every key.
    ///
    /// # Errors
    /// As for [`epoch`](Self::epoch).
    async fn begin_full(&self, sync_id: &str) -> Result<(), SourceError>;

    /// Reads the new and changed rows and the vanished keys (see the contract).
    ///
    /// # Errors
    /// As for [`Source::read`](crate::Source::read), at once or as an item of the stream.
    async fn read_changed(&self, sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError>;

    /// Reads every row with its hash: the read of a full re-diff.
    ///
    /// # Errors
    /// As for [`Source::read`](crate::Source::read), at once or as an item of the stream.
    async fn read_full(&self, sync_id: &str, request: ReadRequest) -> Result<PushdownStream<'_>, SourceError>;

    /// Before changes for `keys` go out: sets each key's hash to `None`, adding the key when
    /// it is missing. (A present hash is forgotten too: were the run to die after the
    /// destination applied the change, a kept hash could match a later source row that
    /// reverted to it, and the destination's newer copy would never be corrected.)
    ///
    /// # Errors
    /// Any failure to write; the runner then sends nothing for these keys.
    async fn record_intents(&self, sync_id: &str, keys: &[Key]) -> Result<(), SourceError>;

    /// After the destination acknowledged and the state store committed: `Some(hash)` sets
    /// the key's hash (adding the row when missing), `None` removes the key (its delete was
    /// acknowledged).
    ///
    /// # Errors
    /// Any failure to write. The runner logs and counts it and carries on: the rows keep
    /// an older or `None` hash and are re-read next run.
    async fn record_delivered(&self, sync_id: &str, delivered: &[(Key, Option<RowHash>)]) -> Result<(), SourceError>;

    /// A full re-diff of `sync_id` read the whole model and delivered it: sets the epoch.
    ///
    /// # Errors
    /// Any failure to write; the next run re-diffs in full again.
    async fn complete(&self, sync_id: &str, epoch: &str) -> Result<(), SourceError>;

    /// A run of `sync_id` ended (whatever its outcome): releases what the run held, such as
    /// a connection kept open for its writes. The next run starts with
    /// [`epoch`](Self::epoch) again. Nothing by default.
    async fn finish(&self, sync_id: &str) {
        let _ = sync_id;
    }
}
