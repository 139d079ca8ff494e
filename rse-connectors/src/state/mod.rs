//! Durable state stores: SQLite (one file, the embedded default) and PostgreSQL.
//!
//! Both keep the same tables: one row per sync (its metadata and its lease), the snapshot
//! (key → fingerprint, version, pending change) with keys as BLOB/bytea so that `ORDER BY
//! key` is the key-byte order, the rejected set, and the run history. Each applies its own
//! versioned migrations when opened and refuses a state written by a newer rse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rse_core::state::{PendingChange, RejectedEntry, SnapshotEntry, SyncMeta};
use rse_core::{Fingerprint, FingerprintAlgorithm, Key, Op, RejectionStage, StateError, SyncReport, Value};

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStateStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStateStore;

/// How many runs of each sync a store keeps unless told otherwise.
pub const DEFAULT_RUN_RETENTION: usize = 100;

/// A run as listed by a store: its id, when it started, how it ended, and its report.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The sync.
    pub sync_id: String,
    /// The run id (the lease's fencing token).
    pub run_id: u64,
    /// When it started (milliseconds since the Unix epoch).
    pub started_at_ms: u64,
    /// The report, as last recorded.
    pub report: SyncReport,
}

/// A sync known to a store, with its lease if one is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    /// The sync.
    pub sync_id: String,
    /// Snapshot entries (tombstones and pending intents included).
    pub entries: u64,
    /// Rejected keys waiting for a retry.
    pub rejected: u64,
    /// The current lease holder and when its lease expires, if one is held.
    pub lease: Option<(String, SystemTime)>,
}

pub(crate) fn op_code(op: Op) -> i16 {
    match op {
        Op::Insert => 0,
        Op::Update => 1,
        Op::Delete => 2,
        Op::Append => 3,
    }
}

pub(crate) fn op_from_code(code: i64) -> Result<Op, StateError> {
    Ok(match code {
        0 => Op::Insert,
        1 => Op::Update,
        2 => Op::Delete,
        3 => Op::Append,
        other => return Err(corrupt(&format!("unknown operation code {other}"))),
    })
}

pub(crate) fn corrupt(what: &str) -> StateError {
    StateError::Incompatible {
        message: format!(
            "stored state is not understood ({what}); it was written by another rse version or altered by hand: \
             restore it from a backup or point the store elsewhere"
        ),
    }
}

pub(crate) fn key_from(bytes: &[u8]) -> Result<Key, StateError> {
    Key::from_encoded(bytes).map_err(|e| corrupt(&format!("a stored key: {e}")))
}

pub(crate) fn fingerprint_from(bytes: &[u8]) -> Result<Fingerprint, StateError> {
    let array: [u8; 16] =
        bytes.try_into().map_err(|_| corrupt(&format!("a fingerprint of {} bytes, expected 16", bytes.len())))?;
    Ok(Fingerprint::from_bytes(array))
}

/// Builds a snapshot entry from its stored columns.
pub(crate) fn entry_from(
    key: &[u8],
    fingerprint: Option<&[u8]>,
    version: i64,
    pending: (Option<i64>, Option<&[u8]>, Option<i64>),
) -> Result<SnapshotEntry, StateError> {
    let pending = match pending {
        (Some(op), Some(fp), Some(version)) => Some(PendingChange {
            op: op_from_code(op)?,
            fingerprint: fingerprint_from(fp)?,
            version: from_i64(version),
        }),
        (None, None, None) => None,
        _ => return Err(corrupt("a pending change with missing columns")),
    };
    Ok(SnapshotEntry {
        key: key_from(key)?,
        fingerprint: fingerprint.map(fingerprint_from).transpose()?,
        version: from_i64(version),
        pending,
    })
}

/// Pending-change columns: operation code, fingerprint bytes, version.
pub(crate) type PendingColumns = (Option<i16>, Option<[u8; 16]>, Option<i64>);

pub(crate) fn pending_columns(pending: Option<&PendingChange>) -> PendingColumns {
    match pending {
        Some(p) => (Some(op_code(p.op)), Some(p.fingerprint.to_bytes()), Some(to_i64(p.version))),
        None => (None, None, None),
    }
}

/// Versions, tokens and timestamps are `u64` in rse and signed 64-bit in SQL; none comes
/// near 2^63, and the conversion saturates rather than wraps if one ever did.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(feature = "sqlite")]
pub(crate) fn now_ms() -> i64 {
    to_i64(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

pub(crate) fn time_from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(from_i64(ms))
}

pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    to_i64(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn stage_name(stage: RejectionStage) -> &'static str {
    match stage {
        RejectionStage::Transform => "transform",
        RejectionStage::Key => "key",
        RejectionStage::Destination => "destination",
        _ => "other",
    }
}

pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StateError> {
    serde_json::to_string(value)
        .map_err(|e| StateError::Other { message: format!("could not encode {what}: {e}"), source: Some(Box::new(e)) })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StateError> {
    serde_json::from_str(text).map_err(|e| corrupt(&format!("{what}: {e}")))
}

pub(crate) fn rejected_from_json(text: &str) -> Result<RejectedEntry, StateError> {
    from_json("a rejected entry", text)
}

/// The metadata of a sync from its stored columns.
pub(crate) fn meta_from(algorithm: Option<&str>, cursor: Option<&str>) -> Result<SyncMeta, StateError> {
    let fingerprint_algorithm = algorithm
        .map(|a| a.parse::<FingerprintAlgorithm>().map_err(|e| corrupt(&format!("fingerprint algorithm: {e}"))))
        .transpose()?;
    let cursor = cursor.map(|c| from_json::<Value>("the cursor", c)).transpose()?;
    Ok(SyncMeta { fingerprint_algorithm, cursor })
}

/// Keeps the last occurrence of each key: a commit that names a key twice in one category
/// means its last value, as the in-memory store applies them one after the other. (Set-wise
/// statements, as PostgreSQL's `unnest` upserts, cannot touch a row twice.)
pub(crate) fn last_per_key<T>(items: Vec<T>, key: impl Fn(&T) -> &Key) -> Vec<T> {
    let mut index = std::collections::HashMap::with_capacity(items.len());
    let mut out: Vec<Option<T>> = Vec::with_capacity(items.len());
    for item in items {
        let k = key(&item).clone();
        if let Some(&i) = index.get(&k) {
            out[i] = None;
        }
        index.insert(k, out.len());
        out.push(Some(item));
    }
    out.into_iter().flatten().collect()
}
