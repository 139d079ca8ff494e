//! What the built-in transforms share: a per-schema plan cache, the record loop, error helpers.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{SchemaError, TransformError};
use crate::record::{Record, RowBatch};
use crate::schema::{Field, Schema};
use crate::transform::{Rejection, TransformOutput};
use crate::value::{DataType, Value};

/// A transform's configuration resolved against one input schema.
#[derive(Debug)]
pub(crate) struct Planned<P> {
    /// The schema `apply` returns for this input.
    pub(crate) output: Arc<Schema>,
    /// Field indices and whatever else the record loop needs.
    pub(crate) plan: P,
}

/// An input schema and the plan built for it.
type Entry<P> = (Arc<Schema>, Arc<Planned<P>>);

/// The plan for the last input schema seen, so that `apply` resolves names once per schema
/// rather than once per batch.
pub(crate) struct PlanCache<P> {
    last: Mutex<Option<Entry<P>>>,
}

impl<P> PlanCache<P> {
    pub(crate) fn new() -> Self {
        Self { last: Mutex::new(None) }
    }

    /// The plan for `input`, built with `build` unless the last one was for an equal schema.
    pub(crate) fn get_or_build(
        &self,
        input: &Arc<Schema>,
        build: impl FnOnce(&Arc<Schema>) -> Result<Planned<P>, TransformError>,
    ) -> Result<Arc<Planned<P>>, TransformError> {
        {
            // A poisoned lock only means another thread panicked while swapping the cache;
            // the cached value is either the old or the new complete plan, both valid.
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((schema, planned)) = last.as_ref()
                && (Arc::ptr_eq(schema, input) || **schema == **input)
            {
                return Ok(Arc::clone(planned));
            }
        }
        let planned = Arc::new(build(input)?);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((Arc::clone(input), Arc::clone(&planned)));
        Ok(planned)
    }
}

impl<P> Default for PlanCache<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Clone for PlanCache<P> {
    /// A fresh, empty cache: plans are cheap to rebuild and tied to no configuration.
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<P> fmt::Debug for PlanCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlanCache")
    }
}

/// What became of one record.
pub(crate) enum Outcome {
    /// It passed, possibly changed.
    Keep(Record),
    /// It was left out on purpose.
    Filter,
    /// It was refused: the record as received and the reason.
    Reject(Record, String),
}

/// Runs `each` over every record of `batch`, collecting the outcomes into one output under
/// the planned schema. A record whose width does not match its schema is rejected before
/// `each` sees it, so `each` may rely on every field index of the plan being present.
pub(crate) fn run_records<P>(
    planned: &Planned<P>,
    batch: RowBatch,
    mut each: impl FnMut(&P, Record) -> Outcome,
) -> TransformOutput {
    let width = batch.schema.len();
    let mut passed = Vec::with_capacity(batch.records.len());
    let mut rejected = Vec::new();
    let mut filtered = 0;
    for record in batch.records {
        if record.values.len() != width {
            rejected.push(Rejection { reason: width_mismatch(record.values.len(), width), record });
            continue;
        }
        match each(&planned.plan, record) {
            Outcome::Keep(record) => passed.push(record),
            Outcome::Filter => filtered += 1,
            Outcome::Reject(record, reason) => rejected.push(Rejection { record, reason }),
        }
    }
    TransformOutput { batch: RowBatch::new(Arc::clone(&planned.output), passed), rejected, filtered }
}

/// The reason for a record whose number of values differs from its schema's fields.
pub(crate) fn width_mismatch(values: usize, fields: usize) -> String {
    format!("record has {values} values but its schema has {fields} fields (the source produced a malformed row)")
}

/// A [`TransformError::Config`] for `transform`.
pub(crate) fn config_error(transform: &str, message: impl Into<String>) -> TransformError {
    TransformError::Config { transform: transform.to_owned(), message: message.into() }
}

/// A [`TransformError::Config`] carrying a schema error's message.
pub(crate) fn schema_error(transform: &str, error: &SchemaError) -> TransformError {
    config_error(transform, error.to_string())
}

/// A schema of `fields` keyed by `key`, or a config error of `transform`.
pub(crate) fn build_schema<S: AsRef<str>>(
    transform: &str,
    fields: Vec<Field>,
    key: &[S],
) -> Result<Arc<Schema>, TransformError> {
    Schema::new(fields, key).map(Schema::into_arc).map_err(|e| schema_error(transform, &e))
}

/// The names of `schema`'s key columns, owned.
pub(crate) fn key_names(schema: &Schema) -> Vec<String> {
    schema.key_names().map(str::to_owned).collect()
}

/// The reason for a value whose type is not its field's declared type. Names types only.
pub(crate) fn type_mismatch(field: &str, expected: &DataType, found: &Value) -> String {
    format!(
        "field `{field}`: expected {expected}, found {} (the source produced a value of the wrong type)",
        found.type_name()
    )
}

/// The field at `index` of `schema`, or a config error (an index from `Schema::require` is
/// always present; this keeps the lookup free of panics all the same).
pub(crate) fn field_at<'s>(transform: &str, schema: &'s Schema, index: usize) -> Result<&'s Field, TransformError> {
    schema.field(index).ok_or_else(|| config_error(transform, format!("field index {index} out of range")))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for the built-in transforms' tests.

    use std::sync::Arc;

    use crate::error::TransformError;
    use crate::schema::{Field, Schema};

    /// What a test returns: any error fails it.
    pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A schema of `fields` keyed by `key`.
    pub(crate) fn schema(fields: Vec<Field>, key: &[&str]) -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        Ok(Schema::new(fields, key)?.into_arc())
    }

    /// The message of a config error, or a marker that makes the caller's assertion fail.
    pub(crate) fn config_message<T>(result: Result<T, TransformError>) -> String {
        match result {
            Err(TransformError::Config { message, .. }) => message,
            Err(other) => format!("<not a config error: {other}>"),
            Ok(_) => "<no error>".to_owned(),
        }
    }
}
