//! The rse engine: data model, the four traits, the diff and idempotency engine, the runner.
//!
//! A host composes a sync from a [`Source`], a chain of [`Transform`]s, a [`Destination`]
//! and a [`StateStore`], and runs it with [`SyncJob`]. Each run reads the model, fingerprints
//! every record after transforms, diffs against the snapshot of what the destination
//! acknowledged, and delivers exactly the changes — batched, paced to the destination's
//! quota, retried with backoff, with a deterministic idempotency key per change — committing
//! state only for acknowledged changes and keeping every refused record with its reason.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audience;
pub mod canary;
pub mod change;
pub mod config;
pub mod destination;
pub mod diff;
pub mod drift;
pub mod error;
pub mod fingerprint;
mod forward;
pub mod key;
pub mod memory;
pub mod metrics;
pub mod observe;
pub mod partition;
pub mod pushdown;
pub mod reconcile;
pub mod record;
pub mod report;
pub mod runner;
pub mod schema;
pub mod shared_quota;
pub mod source;
pub mod state;
pub mod suppression;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod transform;
pub mod value;

/// The attribute the four traits are declared with, re-exported so that an implementation
/// needs no dependency of its own: `#[rse_core::async_trait]`.
pub use async_trait::async_trait;
pub use audience::{AudienceReport, MatchRate};
pub use change::{
    Change, ChangeBatch, ChangeOutcome, Effect, IdempotencyKey, Memo, Op, Receipt, WriteOutcome, WriteOutcomes,
};
pub use destination::{
    CommitFor, CommittedWriteError, Destination, DestinationCapabilities, DestinationRunReport, Held, QuotaFeedback,
    QuotaWindow, RateLimit, ReadBack, RunEnd, RunInfo, TransactionalState,
};
pub use drift::{SchemaDrift, SchemaDriftPolicy, SchemaSummary};
pub use error::{
    BoxError, ConfigError, DestinationError, Error, KeyError, SchemaError, SourceError, StateError, TransformError,
    ValueError,
};
pub use fingerprint::{Fingerprint, FingerprintAlgorithm, Fingerprinter};
pub use key::{Key, KeyHash};
pub use observe::{ObservedBatch, ObservedRecord, OutcomeObserver, RecordOutcome};
pub use partition::{Partition, PartitionReport};
pub use pushdown::{PushdownBatch, PushdownSource, PushdownStream, RowHash};
pub use reconcile::{Mismatch, MismatchKind, MismatchSample, ReconcileReport, VerifyOptions};
pub use record::{Record, RowBatch, SourceRejection};
pub use report::{
    Counts, EffectCounts, FailureKind, OpCounts, ProgressEvent, PushdownReport, RejectionSample, RunStatus,
    StageDurations, SyncReport,
};
pub use runner::{DEFAULT_MAX_DELETES, DiffStrategy, MaxDeletes, Mode, SyncBuilder, SyncJob, SyncOptions};
pub use schema::{Field, Schema};
pub use shared_quota::SharedQuota;
pub use source::{ReadRequest, RowBatchStream, Source, SourceCapabilities};
pub use state::{
    Lease, Pause, PendingChange, RejectedEntry, RejectionStage, SnapshotEntry, StateCommit, StateStore, SyncMeta,
};
pub use transform::{Rejection, RejectionKind, Transform, TransformOutput};
pub use value::{DataType, Decimal, Value};
