//! The `Destination` trait: the operational tool that changes are delivered to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::change::{ChangeBatch, Op, WriteOutcome};
use crate::error::{DestinationError, StateError};
use crate::schema::Schema;
use crate::state::{Lease, StateCommit, StateStore};

/// A request quota: at most `requests` writes per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    pub per: Duration,
    /// How many requests may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// `requests` per second, bursts of one request.
    pub fn per_second(requests: u32) -> Self {
        Self { requests, per: Duration::from_secs(1), burst: 1 }
    }

    /// Sets the burst.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

/// The quota a destination reported with an answer (from headers such as
/// `X-HubSpot-RateLimit-*` or `Sforce-Limit-Info`), which the runner paces to: it does not
/// send into a window it knows is spent, and ends the run when the daily allowance is
/// (less what [`SyncOptions::quota_reserve`](crate::SyncOptions) leaves for other
/// integrations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaFeedback {
    /// The short window (requests per ten seconds, per minute), if reported.
    pub window: Option<QuotaWindow>,
    /// The daily allowance, if reported.
    pub daily: Option<QuotaWindow>,
}

/// One quota window as the destination reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaWindow {
    /// Requests left in the window.
    pub remaining: u64,
    /// The window's allowance, if reported.
    pub limit: Option<u64>,
    /// When the window resets, from the answer; for a rolling window, its length.
    #[serde(with = "crate::config::duration_opt", default)]
    pub resets_in: Option<Duration>,
}

impl QuotaWindow {
    /// `remaining` of `limit` left, resetting in `resets_in`.
    pub fn new(remaining: u64, limit: Option<u64>, resets_in: Option<Duration>) -> Self {
        Self { remaining, limit, resets_in }
    }

    /// The share of the allowance used, when the limit is known.
    pub fn used_fraction(&self) -> Option<f64> {
        self.limit.filter(|&l| l > 0).map(|l| l.saturating_sub(self.remaining) as f64 / l as f64)
    }
}

/// What a destination accepts; the runner shapes batches, concurrency and pacing to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationCapabilities {
    /// The operations it supports. `Update` on a destination that upserts means "insert or
    /// update".
    pub ops: Vec<Op>,
    /// The most changes one write may carry.
    pub max_batch_rows: usize,
    /// The most bytes (estimated) one write may carry.
    pub max_batch_bytes: usize,
    /// Its request quota, if any.
    pub rate_limit: Option<RateLimit>,
    /// The most writes it accepts at once.
    pub max_concurrency: usize,
    /// Whether it drops a change whose idempotency key it has already applied.
    pub honours_idempotency_keys: bool,
    /// Whether a write is applied all-or-nothing.
    pub transactional: bool,
    /// Whether it hands back memos ([`Receipt::with_memo`](crate::Receipt::with_memo)) and
    /// needs them on later changes: the runner then reads each batch's memos from the
    /// state before the write and fills [`Change::memo`](crate::Change::memo).
    pub keeps_memos: bool,
    /// Whether the memo it hands back is its own id of the record (a CRM's record id), which
    /// [outcome observers](crate::observe) are then shown as the record's id. Off for a
    /// memo that holds anything else (an audience's identifiers), which is never shown.
    pub memos_are_record_ids: bool,
}

impl DestinationCapabilities {
    /// A destination that supports `ops`, with generous defaults for everything else.
    pub fn new(ops: impl IntoIterator<Item = Op>) -> Self {
        Self {
            ops: ops.into_iter().collect(),
            max_batch_rows: 10_000,
            max_batch_bytes: 16 << 20,
            rate_limit: None,
            max_concurrency: 4,
            honours_idempotency_keys: false,
            transactional: false,
            keeps_memos: false,
            memos_are_record_ids: false,
        }
    }

    /// Whether `op` is supported.
    pub fn supports(&self, op: Op) -> bool {
        self.ops.contains(&op)
    }

    /// Sets the most changes per write.
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows;
        self
    }

    /// Sets the most bytes per write.
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Sets the request quota.
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Sets the most writes at once.
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Declares that idempotency keys are honoured.
    pub fn with_idempotency_keys(mut self, honoured: bool) -> Self {
        self.honours_idempotency_keys = honoured;
        self
    }

    /// Declares that writes are all-or-nothing.
    pub fn with_transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Declares that memos are handed back and needed on later changes.
    pub fn with_memos(mut self, keeps: bool) -> Self {
        self.keeps_memos = keeps;
        self
    }

    /// Declares that its memos are its own record ids (a CRM's): outcome observers see
    /// them as [`ObservedRecord::record_id`](crate::observe::ObservedRecord::record_id).
    pub fn with_record_id_memos(mut self, ids: bool) -> Self {
        self.memos_are_record_ids = ids;
        self
    }
}

/// An operational tool that changes are delivered to: a CRM, an ad platform, a cache, a
/// database, a webhook.
///
/// A destination does only its I/O and classifies its errors. Batching, retries, rate
/// limiting, concurrency and state all live in the runner.
///
/// # Contract
/// - [`write`](Destination::write) returns exactly one outcome per change, in order.
///   `Applied` means durably applied: the runner records it in the state and will not send
///   that change again.
/// - `Insert` of a key the destination already holds must succeed (overwrite, or accept it
///   as applied): after a lost acknowledgement the runner re-sends the insert, under the
///   same idempotency key. `Delete` of a key it does not hold must succeed too.
/// - A refused change is `Rejected` with the destination's reason, not an error; the rest of
///   the batch is still applied.
/// - An `Err` means the batch as a whole failed, and its variant says what the runner does:
///   `Transient` and `RateLimited` are retried (so a write must be safe to repeat: use the
///   change's idempotency key or an upsert), `InvalidBatch` is bisected, `QuotaExhausted`
///   ends the run cleanly until the allowance resets, `Unauthorized` and `Fatal` end the run.
/// - An applied change may come with a [`Receipt`](crate::Receipt) (created or updated, a
///   memo for the key's later changes), and the answer with the quota the destination
///   reported; both through [`WriteOutcomes`](crate::WriteOutcomes).
/// - Values never appear in error messages.
///
/// # Example
/// The whole of a destination: its name, what it accepts, a check, and one outcome per
/// change (see `examples/custom_destination.rs` for one with real I/O and the conformance
/// suite):
/// ```
/// # use async_trait::async_trait;
/// # use rse_core::*;
/// struct Log;
///
/// #[async_trait]
/// impl Destination for Log {
///     fn name(&self) -> &str { "log" }
///     fn capabilities(&self) -> DestinationCapabilities {
///         DestinationCapabilities::new([Op::Insert, Op::Update]).with_max_batch_rows(500)
///     }
///     async fn check(&self) -> Result<(), DestinationError> { Ok(()) }
///     async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
///         let mut outcomes = WriteOutcomes::new(batch.len());
///         for (i, change) in batch.changes.iter().enumerate() {
///             // Keys print as a hash, never their values.
///             println!("{} {}", change.op, change.key);
///             outcomes.applied(i);
///         }
///         outcomes.finish(self.name())
///     }
/// }
/// ```
#[async_trait]
pub trait Destination: Send + Sync {
    /// A short name for reports and errors, e.g. `http:crm-webhook`.
    fn name(&self) -> &str;

    /// What it accepts.
    fn capabilities(&self) -> DestinationCapabilities;

    /// Checks, without any I/O, that the destination can take records of `schema` (the
    /// sync's schema after transforms): a field its mapping or URL template names, a key it
    /// needs. [`SyncBuilder::build`](crate::SyncBuilder::build) calls it, so a
    /// misconfiguration fails before the first run, not at the first write. The default
    /// accepts every schema.
    ///
    /// # Errors
    /// A [`DestinationError`] (usually `Fatal`) naming the field and what to change.
    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        let _ = schema;
        Ok(())
    }

    /// Checks connectivity and credentials without writing.
    ///
    /// # Errors
    /// `Unauthorized` for bad credentials, `Transient` when unreachable, `Fatal` otherwise.
    async fn check(&self) -> Result<(), DestinationError>;

    /// Applies a batch of changes.
    ///
    /// # Errors
    /// A [`DestinationError`] when the batch as a whole failed; its variant is the
    /// classification the runner acts on.
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError>;

    /// The exactly-once interface, when this destination holds the sync's state and commits
    /// it with the rows (see [`TransactionalState`]); the runner then writes through it
    /// instead of [`write`](Destination::write). `None` (the default) for most destinations.
    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        None
    }

    /// Checks a batch at the destination without applying any of it (Google's
    /// `validateOnly`), for a dry run with
    /// [`SyncOptions::validate_dry_run`](crate::SyncOptions::validate_dry_run): one outcome per
    /// change, `Rejected` for what the destination would refuse. `Ok(None)` (the default)
    /// when the destination cannot check without applying.
    ///
    /// # Errors
    /// A [`DestinationError`] when the check as a whole failed.
    async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
        let _ = batch;
        Ok(None)
    }

    /// The memo to record with `change`'s intent, before it is sent: for a destination that
    /// keeps memos and can tell beforehand what the change will leave it holding (an ad
    /// audience: the identifiers the member is about to be sent with). `change.memo` is the
    /// key's memo now; the result should cover both (what the destination may hold if the
    /// write is applied and its answer lost, and what it holds if the write never landed),
    /// so that a later change or delete of the key can undo either. `None` (the default)
    /// leaves the key's memo as it is. Called only when
    /// [`keeps_memos`](DestinationCapabilities::keeps_memos) is set.
    fn intent_memo(&self, schema: &Schema, change: &crate::change::Change) -> Option<crate::change::Memo> {
        let _ = (schema, change);
        None
    }

    /// Called once per run, before the run's first write (never in a dry run, nor in a run
    /// with nothing to send): where a destination opens what spans a run (an upload
    /// session). An error is classified as a write's would be.
    ///
    /// # Errors
    /// A [`DestinationError`]; the run then handles it as it would a failed write.
    async fn begin_run(&self, run: &RunInfo) -> Result<(), DestinationError> {
        let _ = run;
        Ok(())
    }

    /// Called once after the last write of a run that called
    /// [`begin_run`](Destination::begin_run), however the run ended: where a destination
    /// closes what spans the run (completes a replace, polls the platform's processing
    /// status) and reports on it. The report is merged into the run's
    /// [`SyncReport`](crate::SyncReport).
    ///
    /// # Errors
    /// A [`DestinationError`]; the run's status stays what the writes made it and the
    /// error is noted in the report.
    async fn finish_run(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        let _ = (run, end);
        Ok(DestinationRunReport::default())
    }

    /// The read-back interface, when this destination can read what it holds (see
    /// [`ReadBack`]); [`SyncJob::verify`](crate::SyncJob::verify) needs it. `None` (the
    /// default) for a destination that cannot (a webhook, a message stream, an events table).
    fn read_back(&self) -> Option<&dyn ReadBack> {
        None
    }
}

/// What a destination holds under one key, as [`ReadBack::read`] found it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Held {
    /// Nothing: the destination does not hold the key.
    Absent,
    /// The record held, in the sync's schema.
    Record(crate::record::Record),
    /// Something that cannot be read as a record of the schema (a value that does not fit
    /// its field's type, a Redis key of another type): reconciliation counts it as a record
    /// other than the one sent. The reason names the field and the type, never a value.
    Unreadable(String),
}

/// Reads back what a destination holds, so that reconciliation
/// ([`SyncJob::verify`](crate::SyncJob::verify)) can compare it with what the sync's state
/// says was acknowledged. Offered through [`Destination::read_back`].
///
/// # Contract
/// - [`read`](ReadBack::read) gives each key's record in the form the sync delivers it
///   (`schema`, the sync's schema after transforms): a record written and read back must be
///   **equal value for value**, so that it fingerprints exactly as the runner fingerprinted
///   it when it was sent (a float as the same float, a decimal normalised, a timestamp to the
///   microsecond, a list with its element types). A value the destination cannot hold
///   exactly is documented by the implementation (it will read as a mismatch).
/// - [`keys`](ReadBack::keys) lists the keys held, in pages: strictly after `after`, in
///   ascending order of the key's encoding ([`Key`](crate::Key) order) unless the
///   implementation documents its own order; walking the pages with `after` set to the last
///   key of the previous page gives every key held exactly once.
/// - Both only read: they never change what the destination holds.
/// - Values never appear in error messages.
#[async_trait]
pub trait ReadBack: Send + Sync {
    /// What the destination holds for each of `keys`, one per key, in order. `sync_id` and
    /// `schema` are the sync's, as its changes carry them
    /// ([`ChangeBatch`]'s `sync_id` and `schema`).
    ///
    /// # Errors
    /// A [`DestinationError`] when the read as a whole failed (classified as for a write).
    async fn read(
        &self,
        sync_id: &str,
        schema: &Schema,
        keys: &[crate::key::Key],
    ) -> Result<Vec<Held>, DestinationError>;

    /// Up to `limit` keys the destination holds for the sync, strictly after `after`.
    ///
    /// # Errors
    /// A [`DestinationError`] when the listing failed.
    async fn keys(
        &self,
        sync_id: &str,
        schema: &Schema,
        after: Option<&crate::key::Key>,
        limit: usize,
    ) -> Result<Vec<crate::key::Key>, DestinationError>;
}

/// The run a destination is called for, in [`Destination::begin_run`] and
/// [`Destination::finish_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunInfo {
    /// The sync.
    pub sync_id: std::sync::Arc<str>,
    /// The run (the lease's fencing token: it grows from run to run of a sync).
    pub run_id: u64,
    /// Whether the run sends every record regardless of its fingerprint
    /// ([`SyncOptions::full_resync`](crate::SyncOptions::full_resync)).
    pub full_resync: bool,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

impl RunInfo {
    /// A run of `sync_id`.
    pub fn new(sync_id: impl Into<std::sync::Arc<str>>, run_id: u64, full_resync: bool, started_at_ms: u64) -> Self {
        Self { sync_id: sync_id.into(), run_id, full_resync, started_at_ms }
    }
}

/// How the run went, for [`Destination::finish_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunEnd {
    /// Every change the run planned was acknowledged (applied or refused), and the read
    /// completed: a replace that spans the run may complete.
    pub delivered_all: bool,
}

impl RunEnd {
    /// A run end.
    pub fn new(delivered_all: bool) -> Self {
        Self { delivered_all }
    }
}

/// What a destination reports at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationRunReport {
    /// Audience figures (members, consent, match rate), merged into
    /// [`SyncReport::audience`](crate::SyncReport::audience).
    pub audience: Option<crate::audience::AudienceReport>,
}

impl DestinationRunReport {
    /// A report carrying audience figures.
    pub fn audience(report: crate::audience::AudienceReport) -> Self {
        Self { audience: Some(report) }
    }
}

/// The state commit a transactional write records with its rows, built by the runner from
/// the write's answer (one outcome per change of the batch, in order, and any receipts).
pub type CommitFor<'a> = dyn Fn(&WriteOutcome) -> StateCommit + Send + Sync + 'a;

/// Why a write that commits the sync's state with its rows failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommittedWriteError {
    /// The write failed; the variant is the classification the runner acts on, as for
    /// [`Destination::write`]. Neither the rows nor the state were committed.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The state commit was refused (the lease was lost to another runner, or the state
    /// could not be written). Neither the rows nor the state were committed; the run ends.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A destination that also holds the sync's state, and applies each batch's rows and the
/// state commit recording them **in one transaction**: exactly-once delivery.
///
/// With an ordinary destination the runner records an intent before each batch and the
/// outcomes after it, so a crash between the destination's commit and ours leaves the
/// change pending and it is sent again (at least once; idempotency keys then drop the
/// repeat where the destination honours them). A destination that implements this trait
/// (offered through [`Destination::transactional_state`]) closes that window: the runner
/// records no intents, and each write commits the rows together with the applied
/// fingerprints, versions and rejections, or neither.
///
/// The sync must be built with the state store this destination commits into: the builder
/// compares [`state_store_name`](Self::state_store_name) with
/// [`StateStore::name`] and refuses a mismatch.
///
/// # Contract
/// - `write_committing` applies the batch as [`Destination::write`] would, calls
///   `commit_for` exactly once with the outcomes (one per change, in order), and applies
///   the commit it returns in the same transaction, with the semantics of
///   [`StateStore::commit`] — including the lease check: when
///   `lease` is no longer current the transaction is rolled back and the error is
///   [`CommittedWriteError::State`] with [`StateError::Fenced`].
/// - On any error nothing of the batch or the commit is visible.
/// - A write retried after a lost acknowledgement (the transaction committed, the answer
///   never arrived) applies the same rows and the same state again; both are idempotent.
#[async_trait]
pub trait TransactionalState: Send + Sync {
    /// The [`StateStore::name`] of the store this destination
    /// commits into.
    fn state_store_name(&self) -> &str;

    /// The store this destination commits into. A sync built with this destination and no
    /// [`state`](crate::SyncBuilder::state) uses it, so the store is given once.
    fn state_store(&self) -> Option<Arc<dyn StateStore>>;

    /// Applies `batch` and, in the same transaction, the state commit `commit_for` builds
    /// from its outcomes, after checking that `lease` is current.
    ///
    /// # Errors
    /// [`CommittedWriteError::Destination`] when the batch as a whole failed (classified as
    /// for [`Destination::write`]); [`CommittedWriteError::State`] when the lease was lost
    /// or the state could not be written.
    async fn write_committing(
        &self,
        batch: &ChangeBatch,
        lease: &Lease,
        commit_for: &CommitFor<'_>,
    ) -> Result<WriteOutcome, CommittedWriteError>;
}
