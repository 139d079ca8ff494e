//! Change batches for tests, built as the runner builds them.

use std::sync::Arc;

use crate::change::{Change, ChangeBatch, IdempotencyKey, Op};
use crate::fingerprint::{FingerprintAlgorithm, Fingerprinter};
use crate::record::Record;
use crate::schema::Schema;

/// A batch of `(op, record)` changes of `schema` for `sync_id`, every change on version 0:
/// keys, fingerprints and idempotency keys are derived as the runner derives them, and a
/// delete carries no record (only its key).
///
/// # Panics
/// When a record's key column is null (a test's mistake).
///
/// ```
/// # use rse_core::{DataType, Field, Op, Record, Schema, Value};
/// # use rse_core::testing::change_batch;
/// let schema = Schema::new(vec![Field::required("id", DataType::Int)], &["id"]).unwrap().into_arc();
/// let batch = change_batch(&schema, "s", [(Op::Insert, Record::new(vec![Value::Int(1)]))]);
/// assert_eq!(batch.changes[0].key, rse_core::Key::from_values(&[Value::Int(1)]));
/// ```
pub fn change_batch(
    schema: &Arc<Schema>,
    sync_id: &str,
    changes: impl IntoIterator<Item = (Op, Record)>,
) -> ChangeBatch {
    let mut builder = ChangeBatchBuilder::new(schema, sync_id);
    for (op, record) in changes {
        builder = builder.change(op, record);
    }
    builder.build()
}

/// Builds a test batch change by change, with versions when they matter.
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ChangeBatchBuilder {
    schema: Arc<Schema>,
    sync_id: Arc<str>,
    fingerprinter: Fingerprinter,
    changes: Vec<Change>,
}

impl ChangeBatchBuilder {
    /// An empty batch of `schema` for `sync_id`.
    pub fn new(schema: &Arc<Schema>, sync_id: &str) -> Self {
        Self {
            schema: schema.clone(),
            sync_id: sync_id.into(),
            fingerprinter: Fingerprinter::new(FingerprintAlgorithm::default(), schema),
            changes: Vec::new(),
        }
    }

    /// Adds a change on version 0.
    pub fn change(self, op: Op, record: Record) -> Self {
        self.versioned(op, record, 0)
    }

    /// Adds a change on `version` (how many changes were applied to the key before it).
    ///
    /// # Panics
    /// When the record's key column is null.
    #[allow(clippy::expect_used)]
    pub fn versioned(mut self, op: Op, record: Record, version: u64) -> Self {
        let key = record.key(&self.schema).expect("a test record has a key");
        let fingerprint = self.fingerprinter.fingerprint(&record);
        let idempotency_key = IdempotencyKey::derive(&self.sync_id, &key, op, fingerprint, version);
        let record = (op != Op::Delete).then_some(record);
        self.changes.push(Change { op, key, record, fingerprint, version, idempotency_key, memo: None });
        self
    }

    /// Gives the last change added the memo its key's last applied change left (as the
    /// runner does for a destination that [keeps memos](crate::DestinationCapabilities::keeps_memos)).
    pub fn with_memo(mut self, memo: crate::change::Memo) -> Self {
        if let Some(last) = self.changes.last_mut() {
            last.memo = Some(memo);
        }
        self
    }

    /// The batch.
    pub fn build(self) -> ChangeBatch {
        ChangeBatch { sync_id: self.sync_id, schema: self.schema, changes: self.changes }
    }
}
