//! Durable state stores: SQLite (one file, the embedded default) and PostgreSQL (which lives
//! in [`crate::postgres`]; the helpers here are shared by both).
//!
//! Both keep the same tables: one row per sync (its metadata and its lease), the snapshot
//! (key → fingerprint, version, pending change) with keys as BLOB/bytea so that `ORDER BY
//! key` is the key-byte order, the rejected set, and the run history. Each applies its own
//! versioned migrations when opened and refuses a state written by a newer rse.
//!
//! Refused records and cursors are kept in an exact, tagged binary form (`codec.rs`): every
//! value, NaN and infinities included, reads back bit for bit. Rows written before that form
//! keep their JSON and are still read: a read fallback, not a data migration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rse_core::state::{PendingChange, RejectedEntry, SnapshotEntry, SyncMeta};
use rse_core::{Fingerprint, FingerprintAlgorithm, Key, Op, RejectionStage, StateError, SyncReport, Value};

mod codec;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use crate::postgres::{PostgresStateStore, PostgresStateStoreOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStateStore, SqliteStateStoreOptions};

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
    memo: Option<&[u8]>,
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
        memo: memo.map(|m| rse_core::Memo::from_stored(bytes::Bytes::copy_from_slice(m))),
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

/// A rejection as its stored columns: the entry as JSON without its record, and the record
/// in the exact form of [`codec`] (`None` when it has none). `r` is left as it was.
pub(crate) fn rejected_columns(r: &mut RejectedEntry) -> Result<(String, Option<Vec<u8>>), StateError> {
    let record = r.record.take();
    let bytes = record.as_ref().map(|rec| codec::encode_record("a refused record", rec)).transpose();
    let json = to_json("a rejected entry", &*r);
    r.record = record;
    Ok((json?, bytes?))
}

/// A rejection from its stored columns (see [`rejected_columns`]).
///
/// A row written before the record had its own column has the record inside the JSON, and
/// is read from there. Such a row holding a NaN or an infinite float has `null` in its place
/// (JSON has no such numbers) and the value is lost: the entry is read without its record,
/// so the rejection is kept and retried when the source returns the row again, rather than
/// every later run failing on it.
pub(crate) fn rejected_from(sync_id: &str, text: &str, record: Option<&[u8]>) -> Result<RejectedEntry, StateError> {
    if let Some(bytes) = record {
        let mut entry: RejectedEntry = from_json("a rejected entry", text)?;
        entry.record = Some(codec::decode_record("a refused record", bytes)?);
        return Ok(entry);
    }
    let error = match serde_json::from_str::<RejectedEntry>(text) {
        Ok(entry) => return Ok(entry),
        Err(e) => e,
    };
    let lost = || corrupt(&format!("a rejected entry: {error}"));
    let mut json: serde_json::Value = serde_json::from_str(text).map_err(|_| lost())?;
    let Some(fields) = json.as_object_mut() else { return Err(lost()) };
    if !fields.get("record").is_some_and(holds_a_lost_float) {
        return Err(lost());
    }
    fields.insert("record".into(), serde_json::Value::Null);
    let entry: RejectedEntry = serde_json::from_value(json).map_err(|_| lost())?;
    tracing::warn!(
        sync = sync_id,
        key = %entry.key,
        "A refused record stored by an earlier rse held a NaN or infinite float, which it could not keep; the rejection is kept without its record and is retried when the source returns the row."
    );
    Ok(entry)
}

/// Whether old-format JSON of a value holds `{"Float": null}`: what serde wrote for a NaN or
/// an infinite float.
fn holds_a_lost_float(json: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match json {
        J::Object(map) => map.iter().any(|(k, v)| (k == "Float" && v.is_null()) || holds_a_lost_float(v)),
        J::Array(items) => items.iter().any(holds_a_lost_float),
        _ => false,
    }
}

/// A cursor in its stored form (see [`codec`]).
pub(crate) fn cursor_bytes(cursor: &Value) -> Result<Vec<u8>, StateError> {
    codec::encode_value("the cursor", cursor)
}

/// The metadata of a sync from its stored columns: the algorithm's name, and the cursor in
/// the exact form (`cursor`) or, as written before it, in JSON (`old_cursor`).
///
/// An old JSON cursor that held a NaN or an infinite float reads `null` in its place and is
/// lost: it is read as no cursor, so the next run reads the source in full (the diff still
/// sends only what changed) instead of every run failing on it.
pub(crate) fn meta_from(
    sync_id: &str,
    algorithm: Option<&str>,
    cursor: Option<&[u8]>,
    old_cursor: Option<&str>,
) -> Result<SyncMeta, StateError> {
    let fingerprint_algorithm = algorithm
        .map(|a| a.parse::<FingerprintAlgorithm>().map_err(|e| corrupt(&format!("fingerprint algorithm: {e}"))))
        .transpose()?;
    let cursor = match (cursor, old_cursor) {
        (Some(bytes), _) => Some(codec::decode_value("the cursor", bytes)?),
        (None, Some(text)) => match serde_json::from_str::<Value>(text) {
            Ok(cursor) => Some(cursor),
            Err(_) if serde_json::from_str(text).is_ok_and(|j| holds_a_lost_float(&j)) => {
                tracing::warn!(
                    sync = sync_id,
                    "The cursor stored by an earlier rse was a NaN or infinite float, which it could not keep; the next run reads the source in full."
                );
                None
            }
            Err(e) => return Err(corrupt(&format!("the cursor: {e}"))),
        },
        (None, None) => None,
    };
    Ok(SyncMeta { fingerprint_algorithm, cursor, pushdown_epoch: None })
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
