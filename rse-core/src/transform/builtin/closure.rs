//! `FnTransform`: a transform made of a closure over one record.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::common::{PlanCache, Planned, config_error, width_mismatch};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::transform::{Rejection, Transform, TransformOutput};

type RecordFn = dyn Fn(&Record, &Schema) -> Result<Option<Record>, String> + Send + Sync;
type SchemaFn = dyn Fn(&Schema) -> Result<Schema, String> + Send + Sync;

/// A transform made of a closure called once per record, for what the built-ins do not
/// cover.
///
/// The closure receives a record and the input schema (to look fields up by name) and
/// returns:
/// - `Ok(Some(record))` to pass the record, possibly changed;
/// - `Ok(None)` to filter it out on purpose (counted in [`TransformOutput::filtered`], and
///   treated as absent from the source, so `Mirror` deletes it);
/// - `Err(reason)` to reject it. The reason must name fields and rules, **never values**:
///   it is stored and shown in reports.
///
/// By default the output schema is the input schema; when the closure adds, removes,
/// reorders or retypes fields, declare the new schema with
/// [`with_output_schema`](FnTransform::with_output_schema). Records passed must fit the
/// output schema: a record with another number of values than the schema has fields fails
/// the batch with [`TransformError::Failed`] (a bug in the closure, not in the data); a
/// value of another type than its field's (or `Null`) rejects that record, naming the field.
///
/// The closure must be deterministic — the same record gives the same result — or
/// fingerprints change every run and every record is re-sent. It runs on the async
/// runtime, so it must not block.
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform, Value};
/// # use rse_core::transform::FnTransform;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::Int), Field::new("name", DataType::String)], &["id"])?.into_arc();
/// // Upper-case names; filter test accounts; reject names that are too long.
/// let tidy = FnTransform::new("tidy_names", |record, schema| {
///     let Some(i) = schema.index_of("name") else { return Err("field `name` missing".to_owned()) };
///     let mut out = record.clone();
///     if let Some(Value::String(name)) = out.values.get_mut(i) {
///         if name.starts_with("test") {
///             return Ok(None);
///         }
///         if name.chars().count() > 100 {
///             return Err("field `name`: longer than 100 characters".to_owned());
///         }
///         *name = name.to_uppercase();
///     }
///     Ok(Some(out))
/// });
/// let batch = RowBatch::new(input, vec![Record::new(vec![1.into(), "ada".into()]), Record::new(vec![2.into(), "test-bot".into()])]);
/// let out = tidy.apply(batch).await?;
/// assert_eq!(out.batch.records, vec![Record::new(vec![1.into(), "ADA".into()])]);
/// assert_eq!(out.filtered, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FnTransform {
    name: String,
    record_fn: Arc<RecordFn>,
    schema_fn: Option<Arc<SchemaFn>>,
    config: Option<String>,
    cache: PlanCache<()>,
}

impl FnTransform {
    /// A transform named `name` (for errors and reports) that calls `f` on each record.
    pub fn new<F>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&Record, &Schema) -> Result<Option<Record>, String> + Send + Sync + 'static,
    {
        Self { name: name.into(), record_fn: Arc::new(f), schema_fn: None, config: None, cache: PlanCache::new() }
    }

    /// Declares the schema of the records `f` returns, computed from the input schema. An
    /// `Err(message)` is reported as a [`TransformError::Config`] of this transform; the
    /// message should name the field at fault.
    pub fn with_output_schema<F>(mut self, f: F) -> Self
    where
        F: Fn(&Schema) -> Result<Schema, String> + Send + Sync + 'static,
    {
        self.schema_fn = Some(Arc::new(f));
        self
    }

    /// Describes what the closure does, for [`Transform::config_digest`]: change `config`
    /// whenever the closure's code or captured settings change what it outputs (a version
    /// number is enough). Without it, a sync with the pushdown strategy refuses to build,
    /// since it could not tell when the closure's output changed.
    pub fn with_config_digest(mut self, config: impl Into<String>) -> Self {
        self.config = Some(config.into());
        self
    }

    fn plan(&self, input: &Arc<Schema>) -> Result<Planned<()>, TransformError> {
        let output = match &self.schema_fn {
            None => Arc::clone(input),
            Some(f) => f(input).map_err(|message| config_error(&self.name, message))?.into_arc(),
        };
        Ok(Planned { output, plan: () })
    }

    /// Checks that the closure passed a record of the output schema's width: a record of
    /// another width is a bug in the closure (or its declared schema), which fails the batch.
    fn check_width(&self, record: &Record, output: &Schema) -> Result<(), TransformError> {
        if record.values.len() == output.len() {
            return Ok(());
        }
        Err(TransformError::Failed {
            transform: self.name.clone(),
            message: format!(
                "the closure returned a record of {} values, but the output schema has {} fields ({}); \
                 declare the schema it produces with `with_output_schema`",
                record.values.len(),
                output.len(),
                output.field_names()
            ),
        })
    }
}

/// Why a record the closure passed does not fit the output schema, if it does not: a value
/// of another type than its field's (which may come from the input as well as the closure).
fn misfit(record: &Record, output: &Schema) -> Option<String> {
    output.fields().iter().zip(&record.values).find(|(field, value)| !field.data_type.accepts(value)).map(
        |(field, value)| {
            format!(
                "field `{}`: the transform produced a {} value, but the output schema declares {}",
                field.name,
                value.type_name(),
                field.data_type
            )
        },
    )
}

impl fmt::Debug for FnTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTransform")
            .field("name", &self.name)
            .field("output_schema", &self.schema_fn.as_ref().map(|_| "fn"))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transform for FnTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn config_digest(&self) -> Option<String> {
        self.config.clone()
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        let input = batch.schema;
        let mut passed = Vec::with_capacity(batch.records.len());
        let mut rejected = Vec::new();
        let mut filtered = 0;
        for record in batch.records {
            if record.values.len() != input.len() {
                rejected.push(Rejection { reason: width_mismatch(record.values.len(), input.len()), record });
                continue;
            }
            match (self.record_fn)(&record, &input) {
                Ok(Some(out)) => {
                    self.check_width(&out, &planned.output)?;
                    match misfit(&out, &planned.output) {
                        None => passed.push(out),
                        Some(reason) => rejected.push(Rejection { record, reason }),
                    }
                }
                Ok(None) => filtered += 1,
                Err(reason) => rejected.push(Rejection { record, reason }),
            }
        }
        Ok(TransformOutput { batch: RowBatch::new(Arc::clone(&planned.output), passed), rejected, filtered })
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::schema::Field;
    use crate::value::{DataType, Value};

    fn input() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(vec![Field::required("id", DataType::Int), Field::new("n", DataType::Int)], &["id"])
    }

    fn records() -> Vec<Record> {
        (1..=4).map(|i| Record::new(vec![Value::Int(i), Value::Int(i * 10)])).collect()
    }

    /// Doubles `n`; filters id 2; rejects id 3.
    fn doubling(record: &Record, schema: &Schema) -> Result<Option<Record>, String> {
        let n = schema.index_of("n").ok_or("field `n` missing")?;
        match record.values.first().and_then(Value::as_i64) {
            Some(2) => return Ok(None),
            Some(3) => return Err("field `n`: refused by rule three".to_owned()),
            _ => {}
        }
        let mut out = record.clone();
        if let Some(Value::Int(v)) = out.values.get_mut(n) {
            *v *= 2;
        }
        Ok(Some(out))
    }

    #[tokio::test]
    async fn passes_filters_and_rejects_as_the_closure_says() -> TestResult {
        let out = FnTransform::new("double", doubling).apply(RowBatch::new(input()?, records())).await?;
        assert_eq!(
            out.batch.records,
            vec![Record::new(vec![Value::Int(1), Value::Int(20)]), Record::new(vec![Value::Int(4), Value::Int(80)])]
        );
        assert_eq!(out.filtered, 1);
        assert_eq!(out.rejected.len(), 1);
        let rejection = out.rejected.first().ok_or("no rejection")?;
        assert_eq!(rejection.reason, "field `n`: refused by rule three");
        assert_eq!(rejection.record, Record::new(vec![Value::Int(3), Value::Int(30)]));
        Ok(())
    }

    #[tokio::test]
    async fn a_declared_output_schema_is_used_and_checked() -> TestResult {
        let to_text = FnTransform::new("to_text", |record, _schema| {
            let mut out = record.clone();
            if let Some(v) = out.values.get_mut(1) {
                *v = Value::String(format!("#{}", v.as_i64().unwrap_or_default()));
            }
            Ok(Some(out))
        })
        .with_output_schema(|s| {
            let fields = vec![Field::required("id", DataType::Int), Field::new("n", DataType::String)];
            Schema::new(fields, &s.key_names().collect::<Vec<_>>()).map_err(|e| e.to_string())
        });
        let out = to_text.apply(RowBatch::new(input()?, records())).await?;
        assert_eq!(out.batch.schema.field(1), Some(&Field::new("n", DataType::String)));
        assert_eq!(out.batch.records.first(), Some(&Record::new(vec![Value::Int(1), "#10".into()])));

        // Without the declaration the string values do not fit the int field.
        let undeclared = FnTransform::new("to_text", |record, _| {
            let mut out = record.clone();
            out.values.truncate(1);
            out.values.push("#".into());
            Ok(Some(out))
        });
        let out = undeclared.apply(RowBatch::new(input()?, records())).await?;
        assert_eq!(out.rejected.len(), 4);
        let reason = out.rejected.first().map(|r| r.reason.as_str()).unwrap_or_default();
        assert_eq!(reason, "field `n`: the transform produced a string value, but the output schema declares int");

        // A record of the wrong width is a bug in the closure: the batch fails.
        let wider = FnTransform::new("to_text", |record, _| {
            let mut out = record.clone();
            out.values.push(Value::Null);
            Ok(Some(out))
        });
        match wider.apply(RowBatch::new(input()?, records())).await {
            Err(TransformError::Failed { transform, message }) => {
                assert_eq!(transform, "to_text");
                assert!(message.contains("record of 3 values, but the output schema has 2 fields"), "{message}");
            }
            other => return Err(format!("expected a failure, got {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn an_output_schema_error_is_a_config_error() -> TestResult {
        let t = FnTransform::new("custom", |r, _| Ok(Some(r.clone())))
            .with_output_schema(|s| s.require("email", "custom needs").map(|_| s.clone()).map_err(|e| e.to_string()));
        let message = config_message(t.output_schema(&input()?));
        assert!(message.contains("custom needs: field `email` not found (fields: id, n)"), "{message}");
        Ok(())
    }
}
