//! The `Transform` trait and the built-in transforms.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;

mod builtin;
pub use builtin::*;

/// A record a transform refused, with the reason.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The record as the transform received it.
    pub record: Record,
    /// Why it was refused. Must not contain the record's values.
    pub reason: String,
}

/// What kind of refusal a [`Rejection`] is, as its transform tells it
/// ([`Transform::rejection_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The record broke a rule or did not convert (the default).
    #[default]
    Invalid,
    /// A sensitive field would have reached the destination: the record was kept back
    /// (see [`SensitiveFields`]). The runner counts these in
    /// [`SENSITIVE_FIELD_BLOCKS_TOTAL`](crate::metrics::SENSITIVE_FIELD_BLOCKS_TOTAL).
    SensitiveField,
}

/// What a transform made of one batch.
#[derive(Debug, Clone)]
pub struct TransformOutput {
    /// The records that passed, under the transform's output schema.
    pub batch: RowBatch,
    /// The records refused, under the input schema.
    pub rejected: Vec<Rejection>,
    /// How many records were left out on purpose (a suppression or consent filter). A
    /// filtered record counts as absent from the source, so `Mirror` deletes it.
    pub filtered: usize,
}

impl TransformOutput {
    /// Every record passed.
    pub fn passed(batch: RowBatch) -> Self {
        Self { batch, rejected: Vec::new(), filtered: 0 }
    }
}

/// One step between source and diff: batch in, batch out, plus per-record rejections.
///
/// # Contract
/// - [`output_schema`](Transform::output_schema) checks the configuration against the input
///   schema (a field that does not exist is an error naming it) and says what `apply`
///   returns; key columns carry through under their new names.
/// - [`apply`](Transform::apply) returns every input record exactly once: in the output
///   batch, as a rejection with a reason, or counted as filtered.
/// - A rejection reason names fields and rules, never values.
/// - It is deterministic: the same input gives the same output, or fingerprints churn.
///
/// # Example
/// Built-ins chain on a sync; a closure covers the rest ([`FnTransform`]).
/// A transform plans against its input schema and refuses, by name, a field it lacks:
/// ```
/// # use rse_core::*;
/// # use rse_core::transform::{DropFields, HashPii};
/// let input = Schema::new(
///     vec![Field::required("id", DataType::Int), Field::new("email", DataType::String), Field::new("notes", DataType::String)],
///     &["id"],
/// ).unwrap().into_arc();
/// let hashed = HashPii::email("email").output_schema(&input).unwrap();
/// let slim = DropFields::new(["notes"]).output_schema(&hashed).unwrap();
/// assert_eq!(slim.field_names(), "id, email");
/// let err = DropFields::new(["phone"]).output_schema(&input).unwrap_err();
/// assert!(err.to_string().contains("`phone`"));
/// ```
#[async_trait]
pub trait Transform: Send + Sync {
    /// A short name for errors and reports.
    fn name(&self) -> &str;

    /// The schema `apply` returns for batches of `input`.
    ///
    /// # Errors
    /// [`TransformError::Config`] when the configuration does not fit the input, naming the field.
    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError>;

    /// Transforms one batch.
    ///
    /// # Errors
    /// [`TransformError::Failed`] when the whole batch cannot be transformed.
    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError>;

    /// Whether `apply`, on batches of `input`, leaves every record's key values as they were
    /// (renaming a key column is fine; casting, hashing or masking one is not).
    ///
    /// The runner walks a key-ordered source beside the snapshot (the merge diff) only when
    /// every transform keeps key values, since a rewritten key is no longer in the source's
    /// order. The default, `false`, is always safe: the runner then uses the hash diff.
    fn keeps_key_values(&self, input: &Arc<Schema>) -> bool {
        let _ = input;
        false
    }

    /// Everything in this transform's configuration that shapes its output (the fields it
    /// names, its rules, its constants), as text that is the same in every process for the
    /// same configuration. The pushdown strategy (see [`crate::pushdown`]) digests it into
    /// the sync's epoch, so that a changed configuration re-diffs the model in full once.
    /// `None` (the default) says the transform cannot describe itself (a closure): a sync
    /// with [`DiffStrategy::Pushdown`](crate::DiffStrategy::Pushdown) then refuses to build.
    fn config_digest(&self) -> Option<String> {
        None
    }

    /// What kind of refusal `rejection`, one of this transform's, is. The default,
    /// [`RejectionKind::Invalid`], fits every transform but a guard that keeps sensitive
    /// data from the destination, whose blocks the runner counts apart (and an operator is
    /// paged for).
    fn rejection_kind(&self, rejection: &Rejection) -> RejectionKind {
        let _ = rejection;
        RejectionKind::Invalid
    }
}
