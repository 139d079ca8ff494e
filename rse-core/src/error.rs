//! Errors: each names what failed and what to do, and never shows a row's values.

use std::time::{Duration, SystemTime};

/// A boxed error from a driver, kept as the `source()` of an rse error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Text that is not a finite decimal number.
    #[error("invalid decimal ({len} characters): expected digits with an optional sign, point and exponent")]
    InvalidDecimal {
        /// The length of the rejected text (the text itself is not repeated).
        len: usize,
    },
}

/// A schema is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Two fields share a name.
    #[error("field `{field}` appears twice; field names must be unique")]
    DuplicateField {
        /// The repeated name.
        field: String,
    },
    /// A key column is not a field.
    #[error("key column `{column}` is not a field (fields: {available})")]
    UnknownKeyColumn {
        /// The missing column.
        column: String,
        /// The fields there are.
        available: String,
    },
    /// A configuration names a field the schema does not have.
    #[error("{context}: field `{field}` not found (fields: {available})")]
    UnknownField {
        /// The missing field.
        field: String,
        /// Where it was named.
        context: String,
        /// The fields there are.
        available: String,
    },
}

/// A key could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key column is null.
    #[error("key column `{column}` is null; every key column needs a value")]
    NullKey {
        /// The null column.
        column: String,
    },
    /// Bytes that are not a key encoding.
    #[error("malformed key encoding at byte {offset}: {reason}")]
    Malformed {
        /// Where decoding stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// A source failed to describe or read its model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The model (table, view, file, query) or a column of it does not exist.
    #[error("{what} not found{}", fmt_hint(.hint))]
    NotFound {
        /// What is missing, e.g. "column `email` in `analytics.customers` (columns: id, mail)".
        what: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A native type that rse cannot map.
    #[error("column `{column}` has type `{native_type}`, which rse cannot map{}", fmt_hint(.hint))]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its native type.
        native_type: String,
        /// What to do, e.g. cast it in the model's SQL.
        hint: Option<String>,
    },
    /// A value that does not fit its declared type or a malformed line in a file.
    #[error("{location}: {reason}")]
    Malformed {
        /// Where, e.g. "line 17" or "column `age`".
        location: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// The source cannot give what the request asked for (e.g. key order).
    #[error("source cannot serve the request: {0}")]
    Unsupported(String),
    /// A connection or I/O failure; the read may succeed if retried.
    #[error("source unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else.
    #[error("source failed: {message}")]
    Other {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

fn fmt_hint(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
}

/// A transform failed for a whole batch, or is misconfigured.
///
/// A single record that fails a transform is *rejected* with a reason, not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// The transform's configuration does not fit its input schema.
    #[error("transform `{transform}`: {message}")]
    Config {
        /// The transform's name.
        transform: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The transform failed for the whole batch.
    #[error("transform `{transform}` failed: {message}")]
    Failed {
        /// The transform's name.
        transform: String,
        /// What failed.
        message: String,
    },
}

/// A whole batch failed at the destination. Per-change refusals are not errors: they come
/// back as [`ChangeOutcome::Rejected`](crate::ChangeOutcome::Rejected).
///
/// The variant is the classification the runner acts on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// A failure that may pass: a timeout, a 5xx, a dropped connection. Retried with backoff.
    #[error("transient destination failure: {message}")]
    Transient {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The destination asked us to slow down. Every worker pauses for `retry_after` (or a
    /// backoff when absent) before the batch is retried.
    #[error("destination rate limit reached{}", .retry_after.map(|d| format!("; retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// How long the destination asked us to wait.
        retry_after: Option<Duration>,
    },
    /// An allowance the destination counts over a long period (a daily API quota) is used
    /// up. Retrying before it resets only burns what other integrations of the account have
    /// left, so the run ends cleanly as
    /// [`RunStatus::QuotaExhausted`](crate::RunStatus::QuotaExhausted): what was
    /// acknowledged is committed and every unsent change goes next run.
    #[error("destination quota exhausted: {message}{}", .resets_in.map(|d| format!("; it resets in {}s", d.as_secs())).unwrap_or_default())]
    QuotaExhausted {
        /// Which allowance, in the destination's words (never values).
        message: String,
        /// When it resets, from now, if the destination says.
        resets_in: Option<Duration>,
    },
    /// Credentials are missing, wrong or expired. Ends the run.
    #[error("destination refused our credentials: {message}")]
    Unauthorized {
        /// What the destination said.
        message: String,
    },
    /// The destination refused the batch as a whole because of some of its records, without
    /// saying which. The runner bisects the batch to isolate them.
    #[error("destination refused the batch: {message}")]
    InvalidBatch {
        /// What the destination said.
        message: String,
    },
    /// A failure that retrying will not fix. Ends the run.
    #[error("destination failed: {message}")]
    Fatal {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl DestinationError {
    /// A [`DestinationError::Transient`] with this message.
    pub fn transient(message: impl Into<String>) -> Self {
        DestinationError::Transient { message: message.into(), source: None }
    }

    /// A [`DestinationError::Fatal`] with this message.
    pub fn fatal(message: impl Into<String>) -> Self {
        DestinationError::Fatal { message: message.into(), source: None }
    }

    /// Whether the runner retries this error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DestinationError::Transient { .. } | DestinationError::RateLimited { .. })
    }
}

/// A state store failed. The state is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another runner holds this sync's lease.
    #[error(
        "sync `{sync_id}` is being run by `{holder}` (lease taken {since_secs}s ago, expires in {expires_in_secs}s); wait for it to finish or for its lease to expire"
    )]
    LeaseHeld {
        /// The sync.
        sync_id: String,
        /// Who holds the lease.
        holder: String,
        /// Seconds since it was taken.
        since_secs: u64,
        /// Seconds until it expires unless renewed.
        expires_in_secs: u64,
    },
    /// A commit or renewal under a lease that another runner has since taken over.
    #[error(
        "lease of sync `{sync_id}` was taken over (our token {token}, current {current}); this runner must stop: its late writes are refused"
    )]
    Fenced {
        /// The sync.
        sync_id: String,
        /// The token this runner held.
        token: u64,
        /// The current token.
        current: u64,
    },
    /// The store cannot be reached or is busy; the call may succeed if retried.
    #[error("state store unavailable: {message}")]
    Unavailable {
        /// What failed and what to do.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The stored state was written by a newer rse or is otherwise not understood.
    #[error("state incompatible: {message}")]
    Incompatible {
        /// What is wrong and what to do.
        message: String,
    },
    /// Anything else.
    #[error("state store failed: {message}")]
    Other {
        /// What failed and what to do.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

/// A sync is misconfigured. Returned by [`SyncBuilder::build`](crate::SyncBuilder::build)
/// before anything runs; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required part was not given.
    #[error("sync `{sync_id}`: no {part} given; call `.{part}(…)` on the builder")]
    Missing {
        /// The sync.
        sync_id: String,
        /// The missing part: source, destination or state.
        part: &'static str,
    },
    /// The sync has no key columns.
    #[error(
        "sync `{sync_id}`: the model has no key columns; declare them on the source or with `.key([...])` (fields: {available})"
    )]
    NoKey {
        /// The sync.
        sync_id: String,
        /// The fields there are.
        available: String,
    },
    /// The schema or a mapping is inconsistent.
    #[error("sync `{sync_id}`: {source}")]
    Schema {
        /// The sync.
        sync_id: String,
        /// What is wrong.
        #[source]
        source: SchemaError,
    },
    /// A transform does not fit its input.
    #[error("sync `{sync_id}`: {source}")]
    Transform {
        /// The sync.
        sync_id: String,
        /// What is wrong.
        #[source]
        source: TransformError,
    },
    /// The destination does not support an operation the mode needs.
    #[error(
        "sync `{sync_id}`: mode {mode} needs the `{op}` operation, which destination `{destination}` does not support (it supports: {supported})"
    )]
    UnsupportedMode {
        /// The sync.
        sync_id: String,
        /// The mode.
        mode: String,
        /// The missing operation.
        op: String,
        /// The destination's name.
        destination: String,
        /// What it supports.
        supported: String,
    },
    /// An option is out of range.
    #[error("sync `{sync_id}`: option `{option}` {message}")]
    InvalidOption {
        /// The sync.
        sync_id: String,
        /// The option.
        option: &'static str,
        /// What is wrong and the accepted range.
        message: String,
    },
    /// The destination commits the sync's state itself (exactly-once) into another state
    /// store than the one given to the sync.
    #[error(
        "sync `{sync_id}`: destination `{destination}` commits the sync's state with its rows into state store `{expected}`, but the sync was given `{given}`; pass that same store to `.state(…)`"
    )]
    StateStoreMismatch {
        /// The sync.
        sync_id: String,
        /// The destination's name.
        destination: String,
        /// The store the destination commits into.
        expected: String,
        /// The store given to the builder.
        given: String,
    },
    /// The destination cannot take the sync's records (a mapping or template naming a
    /// field the schema does not have, a type it cannot store).
    #[error("sync `{sync_id}`: destination `{destination}` cannot take these records: {source}")]
    Destination {
        /// The sync.
        sync_id: String,
        /// The destination's name.
        destination: String,
        /// What is wrong, in the destination's words.
        #[source]
        source: DestinationError,
    },
    /// The source could not describe its schema.
    #[error("sync `{sync_id}`: reading the source schema failed: {source}")]
    Source {
        /// The sync.
        sync_id: String,
        /// The source's error.
        #[source]
        source: SourceError,
    },
}

/// Why a run could not complete. A run that ends early but cleanly (circuit open,
/// cancelled) is not an error: it returns a report whose status says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sync is misconfigured.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state store failed; nothing after the failure was committed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state was written with another fingerprint algorithm.
    #[error(
        "sync `{sync_id}`: state was fingerprinted with {stored} but this sync uses {configured}; set `fingerprint_algorithm` to {stored}, or run once with `full_resync` to re-send every row and re-fingerprint"
    )]
    FingerprintMismatch {
        /// The sync.
        sync_id: String,
        /// The algorithm recorded with the state.
        stored: String,
        /// The algorithm configured now.
        configured: String,
    },
    /// Reconciliation ([`SyncJob::verify`](crate::SyncJob::verify) or
    /// [`repair`](crate::SyncJob::repair)) could not compare or repair: a destination that
    /// cannot read back, a mode it does not apply to, a source or destination that could not
    /// be read. Nothing was written.
    #[error("sync `{sync_id}`: reconciliation: {message}")]
    Reconcile {
        /// The sync.
        sync_id: String,
        /// What failed and what to do.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// A point in wall-clock time as seconds since the Unix epoch; what state stores persist.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
