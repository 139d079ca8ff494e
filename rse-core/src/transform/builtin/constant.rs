//! `Constant`: add a field holding the same value in every record.

use std::sync::Arc;

use async_trait::async_trait;

use super::common::{Outcome, PlanCache, Planned, build_schema, config_error, key_names, run_records};
use crate::error::TransformError;
use crate::record::RowBatch;
use crate::schema::{Field, Schema};
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Value};

const NAME: &str = "constant";

/// Adds a field, after the existing ones, holding the same value in every record.
///
/// Typical uses: tag rows with their origin (`source = "warehouse"`) or fill a field the
/// destination requires. The field is nullable only when the value is `Null`.
///
/// # Configuration errors
/// A field of that name already exists; the type of a `Null` (or an empty list) cannot be
/// inferred, so use [`Constant::typed`]; a value that its declared type does not accept.
///
/// ```
/// # use rse_core::{DataType, Field, Schema, Transform};
/// # use rse_core::transform::Constant;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::Int)], &["id"])?.into_arc();
/// let output = Constant::new("source", "warehouse").output_schema(&input)?;
/// assert_eq!(output.fields()[1], Field::required("source", DataType::String));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Constant {
    name: String,
    value: Value,
    data_type: Option<DataType>,
    cache: PlanCache<()>,
}

impl Constant {
    /// Adds `name` holding `value`, its type inferred from the value.
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Self { name: name.into(), value: value.into(), data_type: None, cache: PlanCache::new() }
    }

    /// Adds `name` of type `data_type` holding `value`; needed for a `Null` constant.
    pub fn typed(name: impl Into<String>, data_type: DataType, value: impl Into<Value>) -> Self {
        Self { name: name.into(), value: value.into(), data_type: Some(data_type), cache: PlanCache::new() }
    }

    fn plan(&self, input: &Schema) -> Result<Planned<()>, TransformError> {
        if input.index_of(&self.name).is_some() {
            return Err(config_error(
                NAME,
                format!(
                    "field `{}` already exists (fields: {}); choose another name or drop that field first",
                    self.name,
                    input.field_names()
                ),
            ));
        }
        let data_type = match &self.data_type {
            Some(t) if t.accepts(&self.value) => t.clone(),
            Some(t) => {
                return Err(config_error(
                    NAME,
                    format!(
                        "the constant for field `{}` is a {}, which type {t} does not accept",
                        self.name,
                        self.value.type_name()
                    ),
                ));
            }
            None => infer(&self.value).ok_or_else(|| {
                config_error(
                    NAME,
                    format!(
                        "cannot infer the type of field `{}` from a null or an empty list; use `Constant::typed`",
                        self.name
                    ),
                )
            })?,
        };
        let mut fields = input.fields().to_vec();
        fields.push(Field { name: self.name.clone(), data_type, nullable: self.value.is_null() });
        Ok(Planned { output: build_schema(NAME, fields, &key_names(input))?, plan: () })
    }
}

/// The data type of `value`, when it says.
fn infer(value: &Value) -> Option<DataType> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => DataType::Bool,
        Value::Int(_) => DataType::Int,
        Value::Float(_) => DataType::Float,
        Value::Decimal(_) => DataType::Decimal,
        Value::String(_) => DataType::String,
        Value::Bytes(_) => DataType::Bytes,
        Value::Date(_) => DataType::Date,
        Value::Timestamp(_) => DataType::Timestamp,
        Value::Json(_) => DataType::Json,
        Value::List(items) => {
            let inner = items.iter().find(|v| !v.is_null()).and_then(infer)?;
            if !items.iter().all(|v| inner.accepts(v)) {
                return None;
            }
            DataType::List(Box::new(inner))
        }
    })
}

#[async_trait]
impl Transform for Constant {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("name={:?} value={:?} type={:?}", self.name, self.value, self.data_type))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |(), mut record| {
            record.values.push(self.value.clone());
            Outcome::Keep(record)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::record::Record;

    #[tokio::test]
    async fn adds_the_value_to_every_record() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int)], &["id"])?;
        let out = Constant::new("source", "warehouse")
            .apply(RowBatch::new(input, vec![Record::new(vec![1.into()]), Record::new(vec![2.into()])]))
            .await?;
        assert_eq!(out.batch.schema.field_names(), "id, source");
        assert_eq!(
            out.batch.records,
            vec![Record::new(vec![1.into(), "warehouse".into()]), Record::new(vec![2.into(), "warehouse".into()])]
        );
        Ok(())
    }

    #[test]
    fn types_are_inferred_or_declared() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int)], &["id"])?;
        let list = Value::List(vec![Value::Null, Value::Int(1)]);
        let output = Constant::new("tags", list).output_schema(&input)?;
        assert_eq!(output.field(1), Some(&Field::required("tags", DataType::List(Box::new(DataType::Int)))));
        let output = Constant::typed("churned_at", DataType::Timestamp, Value::Null).output_schema(&input)?;
        assert_eq!(output.field(1), Some(&Field::new("churned_at", DataType::Timestamp)));
        let message = config_message(Constant::new("churned_at", Value::Null).output_schema(&input));
        assert!(message.contains("cannot infer the type of field `churned_at`"), "{message}");
        let message = config_message(Constant::typed("n", DataType::Int, "x").output_schema(&input));
        assert!(message.contains("field `n` is a string, which type int does not accept"), "{message}");
        Ok(())
    }

    #[test]
    fn an_existing_name_is_a_config_error() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int)], &["id"])?;
        let message = config_message(Constant::new("id", 1).output_schema(&input));
        assert!(message.contains("field `id` already exists (fields: id)"), "{message}");
        Ok(())
    }
}
