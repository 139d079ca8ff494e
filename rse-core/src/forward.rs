//! The four traits implemented for `Arc<T>` and `Box<T>`, so shared and boxed
//! implementations (`Arc<dyn Destination>`) plug in wherever an implementation does.
//!
//! Every method forwards explicitly: none relies on a default, so none can be bypassed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::change::{ChangeBatch, WriteOutcome};
use crate::destination::{Destination, DestinationCapabilities, ReadBack, TransactionalState};
use crate::error::{DestinationError, SourceError, StateError, TransformError};
use crate::key::Key;
use crate::record::RowBatch;
use crate::report::SyncReport;
use crate::schema::Schema;
use crate::source::{ReadRequest, RowBatchStream, Source, SourceCapabilities};
use crate::state::{Lease, Pause, RejectedEntry, SnapshotEntry, StateCommit, StateStore, SyncMeta};
use crate::transform::{Rejection, RejectionKind, Transform, TransformOutput};

macro_rules! forward {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Source + ?Sized> Source for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> SourceCapabilities {
                (**self).capabilities()
            }
            async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
                (**self).schema().await
            }
            async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
                (**self).read(request).await
            }
            fn pushdown(&self) -> Option<&dyn crate::pushdown::PushdownSource> {
                (**self).pushdown()
            }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Transform + ?Sized> Transform for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
                (**self).output_schema(input)
            }
            async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
                (**self).apply(batch).await
            }
            fn keeps_key_values(&self, input: &Arc<Schema>) -> bool {
                (**self).keeps_key_values(input)
            }
            fn rejection_kind(&self, rejection: &Rejection) -> RejectionKind {
                (**self).rejection_kind(rejection)
            }
            fn config_digest(&self) -> Option<String> {
                (**self).config_digest()
            }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Destination + ?Sized> Destination for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> DestinationCapabilities {
                (**self).capabilities()
            }
            async fn check(&self) -> Result<(), DestinationError> {
                (**self).check().await
            }
            async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
                (**self).write(batch).await
            }
            fn transactional_state(&self) -> Option<&dyn TransactionalState> {
                (**self).transactional_state()
            }
            fn check_schema(&self, schema: &Schema) -> Result<(), DestinationError> {
                (**self).check_schema(schema)
            }
            async fn validate(&self, batch: &ChangeBatch) -> Result<Option<WriteOutcome>, DestinationError> {
                (**self).validate(batch).await
            }
            fn intent_memo(&self, schema: &Schema, change: &crate::change::Change) -> Option<crate::change::Memo> {
                (**self).intent_memo(schema, change)
            }
            async fn begin_run(&self, run: &crate::destination::RunInfo) -> Result<(), DestinationError> {
                (**self).begin_run(run).await
            }
            async fn finish_run(
                &self,
                run: &crate::destination::RunInfo,
                end: &crate::destination::RunEnd,
            ) -> Result<crate::destination::DestinationRunReport, DestinationError> {
                (**self).finish_run(run, end).await
            }
            fn read_back(&self) -> Option<&dyn ReadBack> {
                (**self).read_back()
            }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: StateStore + ?Sized> StateStore for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn acquire_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
                (**self).acquire_lease(sync_id, holder, ttl).await
            }
            async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
                (**self).renew_lease(lease, ttl).await
            }
            async fn release_lease(&self, lease: &Lease) -> Result<(), StateError> {
                (**self).release_lease(lease).await
            }
            async fn meta(&self, sync_id: &str) -> Result<SyncMeta, StateError> {
                (**self).meta(sync_id).await
            }
            async fn scan(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<SnapshotEntry>, StateError> {
                (**self).scan(sync_id, after, limit).await
            }
            async fn get(&self, sync_id: &str, keys: &[Key]) -> Result<Vec<Option<SnapshotEntry>>, StateError> {
                (**self).get(sync_id, keys).await
            }
            async fn rejected(&self, sync_id: &str, after: Option<&Key>, limit: usize) -> Result<Vec<RejectedEntry>, StateError> {
                (**self).rejected(sync_id, after, limit).await
            }
            async fn commit(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
                (**self).commit(lease, commit).await
            }
            async fn record_run(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
                (**self).record_run(lease, report).await
            }
            async fn runs(&self, sync_id: &str, limit: usize) -> Result<Vec<SyncReport>, StateError> {
                (**self).runs(sync_id, limit).await
            }
            async fn pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
                (**self).pause(sync_id, pause).await
            }
            async fn resume(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
                (**self).resume(sync_id).await
            }
            async fn paused(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
                (**self).paused(sync_id).await
            }
        }
    )*};
}

forward!(Arc, Box);
