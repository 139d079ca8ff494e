//! `Select` and `DropFields`: keep an allow-list of fields, or remove a deny-list.

use std::sync::Arc;

use async_trait::async_trait;

use super::common::{Outcome, PlanCache, Planned, build_schema, config_error, key_names, run_records, schema_error};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::{Field, Schema};
use crate::transform::{Transform, TransformOutput};
use crate::value::Value;

/// Keeps only the named fields, in the order given.
///
/// Use it as an allow-list in front of a destination, so that a column added to the model
/// later is not sent until someone selects it.
///
/// # Configuration errors
/// A named field the input does not have (the message lists the fields there are), a field
/// named twice, or a key column left out: the key identifies records in the destination, so
/// it must always be selected.
///
/// ```
/// # use rse_core::{DataType, Field, Schema, Transform};
/// # use rse_core::transform::Select;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(
///     vec![Field::required("id", DataType::Int), Field::new("ssn", DataType::String), Field::new("email", DataType::String)],
///     &["id"],
/// )?
/// .into_arc();
/// let output = Select::new(["email", "id"]).output_schema(&input)?;
/// assert_eq!(output.field_names(), "email, id");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Select {
    fields: Vec<String>,
    cache: PlanCache<Vec<usize>>,
}

impl Select {
    const NAME: &'static str = "select";

    /// Keeps exactly `fields`, in this order.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { fields: fields.into_iter().map(Into::into).collect(), cache: PlanCache::new() }
    }

    fn plan(&self, input: &Schema) -> Result<Planned<Vec<usize>>, TransformError> {
        let mut indices = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            let index = input.require(name, "cannot select").map_err(|e| schema_error(Self::NAME, &e))?;
            if indices.contains(&index) {
                return Err(config_error(Self::NAME, format!("field `{name}` is selected twice; name it once")));
            }
            indices.push(index);
        }
        planned_subset(Self::NAME, input, indices, "add it to the selection")
    }
}

#[async_trait]
impl Transform for Select {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("fields={:?}", self.fields))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |indices, record| pick(indices, record)))
    }
}

/// Removes the named fields and keeps the rest in their order.
///
/// Named `DropFields` rather than `Drop` so that a glob import does not shadow the
/// prelude's `Drop` trait.
///
/// # Configuration errors
/// A named field the input does not have (the message lists the fields there are), or a
/// key column: the key identifies records in the destination, so it cannot be dropped.
///
/// ```
/// # use rse_core::{DataType, Field, Schema, Transform};
/// # use rse_core::transform::DropFields;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(
///     vec![Field::required("id", DataType::Int), Field::new("ssn", DataType::String), Field::new("email", DataType::String)],
///     &["id"],
/// )?
/// .into_arc();
/// let output = DropFields::new(["ssn"]).output_schema(&input)?;
/// assert_eq!(output.field_names(), "id, email");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DropFields {
    fields: Vec<String>,
    cache: PlanCache<Vec<usize>>,
}

impl DropFields {
    const NAME: &'static str = "drop";

    /// Removes `fields`.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { fields: fields.into_iter().map(Into::into).collect(), cache: PlanCache::new() }
    }

    fn plan(&self, input: &Schema) -> Result<Planned<Vec<usize>>, TransformError> {
        let mut dropped = vec![false; input.len()];
        for name in &self.fields {
            let index = input.require(name, "cannot drop").map_err(|e| schema_error(Self::NAME, &e))?;
            if let Some(d) = dropped.get_mut(index) {
                *d = true;
            }
        }
        let kept = dropped.iter().enumerate().filter(|(_, d)| !**d).map(|(i, _)| i).collect();
        planned_subset(Self::NAME, input, kept, "remove it from the fields to drop")
    }
}

#[async_trait]
impl Transform for DropFields {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("fields={:?}", self.fields))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |indices, record| pick(indices, record)))
    }
}

/// The plan keeping the input fields at `indices`, in that order, refusing to lose a key
/// column.
fn planned_subset(
    transform: &str,
    input: &Schema,
    indices: Vec<usize>,
    fix: &str,
) -> Result<Planned<Vec<usize>>, TransformError> {
    if let Some(lost) = input.key_indices().iter().find(|k| !indices.contains(k)) {
        let column = input.field(*lost).map(|f| f.name.as_str()).unwrap_or_default();
        return Err(config_error(
            transform,
            format!("key column `{column}` would be removed; the key identifies records in the destination, so {fix}"),
        ));
    }
    let fields: Vec<Field> = indices.iter().filter_map(|&i| input.field(i).cloned()).collect();
    let output = build_schema(transform, fields, &key_names(input))?;
    Ok(Planned { output, plan: indices })
}

/// The record made of the values at `indices`, in that order.
fn pick(indices: &[usize], mut record: Record) -> Outcome {
    // Indices are distinct and within the record (its width was checked), so each value is
    // taken exactly once.
    let values = indices
        .iter()
        .map(|&i| record.values.get_mut(i).map(|v| std::mem::replace(v, Value::Null)).unwrap_or(Value::Null))
        .collect();
    Outcome::Keep(Record::new(values))
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::value::DataType;

    fn input() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("id", DataType::Int),
                Field::new("ssn", DataType::String),
                Field::new("email", DataType::String),
            ],
            &["id"],
        )
    }

    fn record(id: i64) -> Record {
        Record::new(vec![Value::Int(id), "078-05-1120".into(), format!("{id}@example.com").into()])
    }

    #[tokio::test]
    async fn select_keeps_the_named_fields_in_order() -> TestResult {
        let out = Select::new(["email", "id"]).apply(RowBatch::new(input()?, vec![record(1), record(2)])).await?;
        assert_eq!(out.batch.schema.field_names(), "email, id");
        assert_eq!(out.batch.schema.key_names().collect::<Vec<_>>(), ["id"]);
        assert_eq!(
            out.batch.records,
            vec![
                Record::new(vec!["1@example.com".into(), Value::Int(1)]),
                Record::new(vec!["2@example.com".into(), Value::Int(2)])
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn drop_removes_the_named_fields() -> TestResult {
        let out = DropFields::new(["ssn"]).apply(RowBatch::new(input()?, vec![record(1)])).await?;
        assert_eq!(out.batch.schema.field_names(), "id, email");
        assert_eq!(out.batch.records, vec![Record::new(vec![Value::Int(1), "1@example.com".into()])]);
        Ok(())
    }

    #[test]
    fn removing_a_key_column_is_a_config_error() -> TestResult {
        let message = config_message(Select::new(["email"]).output_schema(&input()?));
        assert!(message.contains("key column `id` would be removed"), "{message}");
        let message = config_message(DropFields::new(["id"]).output_schema(&input()?));
        assert!(message.contains("key column `id` would be removed"), "{message}");
        Ok(())
    }

    #[test]
    fn unknown_or_repeated_fields_are_config_errors() -> TestResult {
        let message = config_message(Select::new(["id", "mail"]).output_schema(&input()?));
        assert!(message.contains("`mail` not found (fields: id, ssn, email)"), "{message}");
        let message = config_message(DropFields::new(["phone"]).output_schema(&input()?));
        assert!(message.contains("`phone` not found"), "{message}");
        let message = config_message(Select::new(["id", "id"]).output_schema(&input()?));
        assert!(message.contains("`id` is selected twice"), "{message}");
        Ok(())
    }

    #[tokio::test]
    async fn a_record_of_the_wrong_width_is_rejected() -> TestResult {
        let short = Record::new(vec![Value::Int(3)]);
        let out = Select::new(["id"]).apply(RowBatch::new(input()?, vec![record(1), short.clone()])).await?;
        assert_eq!(out.batch.len(), 1);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected.first().map(|r| &r.record), Some(&short));
        Ok(())
    }
}
