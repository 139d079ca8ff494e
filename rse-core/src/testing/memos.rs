//! A wrapper that keeps memos per key as the runner does, for suites that call a
//! destination's `write` directly.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::change::{ChangeBatch, ChangeOutcome, Memo, Op, WriteOutcome};
use crate::destination::{Destination, DestinationCapabilities, TransactionalState};
use crate::error::DestinationError;
use crate::key::Key;
use crate::schema::Schema;

/// Wraps a destination that [keeps memos](DestinationCapabilities::keeps_memos) and plays
/// the runner's part around each `write`: each change is handed its key's memo, a receipt's
/// memo is kept, an applied delete clears it, a refusal leaves it.
///
/// The conformance suite ([`check_destination`](super::check_destination)) writes batches
/// itself, without memos; a CRM destination that deletes by record id runs it through this
/// wrapper to be checked as a sync would drive it (and without, to check its deletes
/// without a memo).
#[derive(Debug)]
pub struct KeepMemos<D> {
    inner: D,
    memos: Mutex<HashMap<Key, Memo>>,
}

impl<D> KeepMemos<D> {
    /// Wraps `inner`, with no memo yet.
    pub fn new(inner: D) -> Self {
        Self { inner, memos: Mutex::default() }
    }

    /// The memo kept for `key`.
    pub fn memo(&self, key: &Key) -> Option<Memo> {
        self.memos.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }
}

#[async_trait]
impl<D: Destination> Destination for KeepMemos<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DestinationCapabilities {
        self.inner.capabilities()
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
        self.inner.check_schema(schema)
    }

    async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
        self.inner.validate(batch).await
    }

    fn intent_memo(
        &self,
        schema: &crate::schema::Schema,
        change: &crate::change::Change,
    ) -> Option<crate::change::Memo> {
        self.inner.intent_memo(schema, change)
    }

    async fn begin_run(&self, run: &crate::destination::RunInfo) -> Result<(), DestinationError> {
        self.inner.begin_run(run).await
    }

    async fn finish_run(
        &self,
        run: &crate::destination::RunInfo,
        end: &crate::destination::RunEnd,
    ) -> Result<crate::destination::DestinationRunReport, DestinationError> {
        self.inner.finish_run(run, end).await
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.inner.check().await
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut batch = batch.clone();
        {
            let memos = self.memos.lock().unwrap_or_else(PoisonError::into_inner);
            for change in &mut batch.changes {
                change.memo = memos.get(&change.key).cloned();
            }
        }
        let out = self.inner.write(&batch).await?;
        let mut memos = self.memos.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, (change, outcome)) in batch.changes.iter().zip(&out.outcomes).enumerate() {
            match (outcome, change.op) {
                (ChangeOutcome::Applied, Op::Delete) => {
                    memos.remove(&change.key);
                }
                (ChangeOutcome::Applied, _) => {
                    if let Some(memo) = out.receipt(i).and_then(|r| r.memo.clone()) {
                        memos.insert(change.key.clone(), memo);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn transactional_state(&self) -> Option<&dyn TransactionalState> {
        None
    }

    fn read_back(&self) -> Option<&dyn crate::destination::ReadBack> {
        self.inner.read_back()
    }
}
