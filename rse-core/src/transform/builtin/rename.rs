//! `Rename`: give fields new names, key columns included.

use std::sync::Arc;

use async_trait::async_trait;

use super::common::{Outcome, PlanCache, Planned, build_schema, config_error, run_records, schema_error};
use crate::error::TransformError;
use crate::record::RowBatch;
use crate::schema::Schema;
use crate::transform::{Transform, TransformOutput};

const NAME: &str = "rename";

/// Renames fields; values and field order are unchanged.
///
/// Key columns carry through under their new names. Renames apply at once, so fields may
/// swap names (`a → b`, `b → a`).
///
/// # Configuration errors
/// From [`output_schema`](Transform::output_schema) (and `apply`): a field to rename that
/// the input does not have (the message lists the fields there are), a field renamed twice,
/// or a new name that another field of the output already has.
///
/// ```
/// # use rse_core::{DataType, Field, Schema, Transform};
/// # use rse_core::transform::Rename;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::Int), Field::new("email_address", DataType::String)], &["id"])?.into_arc();
/// let rename = Rename::new([("email_address", "email"), ("id", "customer_id")]);
/// let output = rename.output_schema(&input)?;
/// assert_eq!(output.field_names(), "customer_id, email");
/// assert_eq!(output.key_names().collect::<Vec<_>>(), ["customer_id"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Rename {
    renames: Vec<(String, String)>,
    cache: PlanCache<()>,
}

impl Rename {
    /// Renames each `(from, to)` pair.
    pub fn new<I, F, T>(renames: I) -> Self
    where
        I: IntoIterator<Item = (F, T)>,
        F: Into<String>,
        T: Into<String>,
    {
        Self { renames: renames.into_iter().map(|(f, t)| (f.into(), t.into())).collect(), cache: PlanCache::new() }
    }

    /// Also renames `from` to `to`.
    pub fn with_rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.renames.push((from.into(), to.into()));
        self
    }

    fn plan(&self, input: &Schema) -> Result<Planned<()>, TransformError> {
        let mut fields = input.fields().to_vec();
        let mut renamed = vec![false; fields.len()];
        for (from, to) in &self.renames {
            let index = input.require(from, "cannot rename").map_err(|e| schema_error(NAME, &e))?;
            let (Some(field), Some(done)) = (fields.get_mut(index), renamed.get_mut(index)) else {
                return Err(config_error(NAME, format!("field `{from}` is out of range")));
            };
            if *done {
                return Err(config_error(NAME, format!("field `{from}` is renamed twice; rename it once")));
            }
            *done = true;
            field.name.clone_from(to);
        }
        for (from, to) in &self.renames {
            if fields.iter().filter(|f| &f.name == to).count() > 1 {
                return Err(config_error(
                    NAME,
                    format!(
                        "cannot rename `{from}` to `{to}`: a field named `{to}` already exists (fields: {}); \
                         rename or drop that field first",
                        input.field_names()
                    ),
                ));
            }
        }
        let key: Vec<String> =
            input.key_indices().iter().filter_map(|&i| fields.get(i)).map(|f| f.name.clone()).collect();
        let output = build_schema(NAME, fields, &key)?;
        Ok(Planned { output, plan: () })
    }
}

#[async_trait]
impl Transform for Rename {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("renames={:?}", self.renames))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        // Values stay where they are; only the schema changes.
        Ok(run_records(&planned, batch, |(), record| Outcome::Keep(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::record::Record;
    use crate::schema::Field;
    use crate::value::{DataType, Value};

    fn input() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("id", DataType::Int),
                Field::new("email_address", DataType::String),
                Field::new("plan", DataType::String),
            ],
            &["id"],
        )
    }

    fn record(id: i64, email: &str) -> Record {
        Record::new(vec![Value::Int(id), email.into(), "pro".into()])
    }

    #[tokio::test]
    async fn renames_fields_and_key_columns() -> TestResult {
        let rename = Rename::new([("email_address", "email")]).with_rename("id", "customer_id");
        let batch = RowBatch::new(input()?, vec![record(1, "a@example.com"), record(2, "b@example.com")]);
        let out = rename.apply(batch).await?;
        assert_eq!(out.batch.schema.field_names(), "customer_id, email, plan");
        assert_eq!(out.batch.schema.key_names().collect::<Vec<_>>(), ["customer_id"]);
        assert_eq!(out.batch.records, vec![record(1, "a@example.com"), record(2, "b@example.com")]);
        assert!(out.rejected.is_empty());
        assert_eq!(out.filtered, 0);
        assert_eq!(rename.output_schema(&input()?)?, out.batch.schema);
        Ok(())
    }

    #[test]
    fn fields_may_swap_names() -> TestResult {
        let out = Rename::new([("plan", "email_address"), ("email_address", "plan")]).output_schema(&input()?)?;
        assert_eq!(out.field_names(), "id, plan, email_address");
        Ok(())
    }

    #[test]
    fn unknown_field_is_a_config_error_listing_the_fields() -> TestResult {
        let message = config_message(Rename::new([("mail", "email")]).output_schema(&input()?));
        assert!(message.contains("`mail` not found"), "{message}");
        assert!(message.contains("(fields: id, email_address, plan)"), "{message}");
        Ok(())
    }

    #[test]
    fn renaming_onto_an_existing_name_or_twice_is_a_config_error() -> TestResult {
        let message = config_message(Rename::new([("email_address", "plan")]).output_schema(&input()?));
        assert!(message.contains("`plan` already exists"), "{message}");
        let message = config_message(Rename::new([("plan", "a"), ("plan", "b")]).output_schema(&input()?));
        assert!(message.contains("`plan` is renamed twice"), "{message}");
        Ok(())
    }
}
