//! `Filter`: leave out records without consent or on a suppression list.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::common::{Outcome, PlanCache, Planned, config_error, field_at, run_records, schema_error, type_mismatch};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Value};

const NAME: &str = "filter";

#[derive(Debug, Clone)]
enum Rule {
    /// Keep a record only when the field is `true`.
    Consent,
    /// Leave out a record whose field, trimmed and lower-cased, is in the set.
    Suppress(HashSet<String>),
}

/// Leaves out records on purpose: those without consent, or those on a suppression list.
///
/// A left-out record is *filtered*, not rejected: it is counted in
/// [`TransformOutput::filtered`] and treated as absent from the source, so a `Mirror` sync
/// deletes it from the destination — what a withdrawn consent or a new suppression asks
/// for. The schema is unchanged.
///
/// - [`Filter::consent`] keeps records whose bool field is `true`; `false` and `Null` are
///   filtered.
/// - [`Filter::suppress`] filters records whose string field, trimmed and lower-cased, is
///   in the suppression set (whose entries are trimmed and lower-cased too); `Null` is
///   kept.
///
/// A value of another type than the field's declared type rejects its record.
///
/// # Configuration errors
/// An unknown field (the message lists the fields there are), or a field of the wrong type
/// (bool for consent, string for suppression).
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform};
/// # use rse_core::transform::Filter;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("email", DataType::String)], &["email"])?.into_arc();
/// let batch = RowBatch::new(input, vec![Record::new(vec!["a@example.com".into()]), Record::new(vec!["B@example.com ".into()])]);
/// let out = Filter::suppress("email", ["b@example.com"]).apply(batch).await?;
/// assert_eq!(out.batch.len(), 1);
/// assert_eq!(out.filtered, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Filter {
    field: String,
    rule: Rule,
    cache: PlanCache<usize>,
}

impl Filter {
    /// Keeps only records whose bool `field` is `true`.
    pub fn consent(field: impl Into<String>) -> Self {
        Self { field: field.into(), rule: Rule::Consent, cache: PlanCache::new() }
    }

    /// Leaves out records whose string `field` is in `suppressed`, compared after trimming
    /// and lower-casing both sides.
    pub fn suppress<I, S>(field: impl Into<String>, suppressed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = suppressed.into_iter().map(|s| normalise(s.as_ref())).collect();
        Self { field: field.into(), rule: Rule::Suppress(set), cache: PlanCache::new() }
    }

    fn plan(&self, input: &Arc<Schema>) -> Result<Planned<usize>, TransformError> {
        let index = input.require(&self.field, "cannot filter on").map_err(|e| schema_error(NAME, &e))?;
        let field = field_at(NAME, input, index)?;
        let (wanted, what) = match self.rule {
            Rule::Consent => (DataType::Bool, "a consent field must be bool"),
            Rule::Suppress(_) => (DataType::String, "a suppression field must be string"),
        };
        if field.data_type != wanted {
            return Err(config_error(
                NAME,
                format!("field `{}` is {}, but {what}; cast it first", self.field, field.data_type),
            ));
        }
        Ok(Planned { output: Arc::clone(input), plan: index })
    }

    fn filter_record(&self, index: usize, record: Record) -> Outcome {
        let value = record.values.get(index).unwrap_or(&Value::Null);
        let keep = match (&self.rule, value) {
            (Rule::Consent, Value::Bool(consent)) => *consent,
            (Rule::Consent, Value::Null) => false,
            (Rule::Suppress(set), Value::String(s)) => !set.contains(&normalise(s)),
            (Rule::Suppress(_), Value::Null) => true,
            (Rule::Consent, other) => {
                let reason = type_mismatch(&self.field, &DataType::Bool, other);
                return Outcome::Reject(record, reason);
            }
            (Rule::Suppress(_), other) => {
                let reason = type_mismatch(&self.field, &DataType::String, other);
                return Outcome::Reject(record, reason);
            }
        };
        if keep { Outcome::Keep(record) } else { Outcome::Filter }
    }
}

fn normalise(text: &str) -> String {
    text.trim().to_lowercase()
}

#[async_trait]
impl Transform for Filter {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(match &self.rule {
            Rule::Consent => format!("field={:?} consent", self.field),
            Rule::Suppress(set) => {
                let mut listed: Vec<&String> = set.iter().collect();
                listed.sort();
                format!("field={:?} suppress={listed:?}", self.field)
            }
        })
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |&index, record| self.filter_record(index, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::schema::Field;

    fn input() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("id", DataType::Int),
                Field::new("email", DataType::String),
                Field::new("opted_in", DataType::Bool),
            ],
            &["id"],
        )
    }

    fn record(id: i64, email: Value, opted_in: Value) -> Record {
        Record::new(vec![Value::Int(id), email, opted_in])
    }

    fn ids(out: &TransformOutput) -> Vec<Value> {
        out.batch.records.iter().filter_map(|r| r.values.first().cloned()).collect()
    }

    #[tokio::test]
    async fn consent_keeps_only_true() -> TestResult {
        let records = vec![
            record(1, Value::Null, true.into()),
            record(2, Value::Null, false.into()),
            record(3, Value::Null, Value::Null),
            record(4, Value::Null, "yes".into()),
        ];
        let out = Filter::consent("opted_in").apply(RowBatch::new(input()?, records)).await?;
        assert_eq!(ids(&out), vec![Value::Int(1)]);
        assert_eq!(out.filtered, 2);
        assert_eq!(out.rejected.len(), 1);
        let reason = out.rejected.first().map(|r| r.reason.as_str()).unwrap_or_default();
        assert!(reason.starts_with("field `opted_in`: expected bool, found string"), "{reason}");
        assert!(!reason.contains("yes"), "{reason}");
        assert_eq!(out.batch.schema, input()?);
        Ok(())
    }

    #[tokio::test]
    async fn suppress_filters_listed_values_after_normalising() -> TestResult {
        let records = vec![
            record(1, "a@example.com".into(), Value::Null),
            record(2, "  B@Example.COM ".into(), Value::Null),
            record(3, Value::Null, Value::Null),
            record(4, "c@example.com".into(), Value::Null),
        ];
        let filter = Filter::suppress("email", [" b@example.com", "C@EXAMPLE.COM"]);
        let out = filter.apply(RowBatch::new(input()?, records)).await?;
        assert_eq!(ids(&out), vec![Value::Int(1), Value::Int(3)]);
        assert_eq!(out.filtered, 2);
        assert!(out.rejected.is_empty());
        Ok(())
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_config_errors() -> TestResult {
        let message = config_message(Filter::consent("email").output_schema(&input()?));
        assert!(message.contains("field `email` is string, but a consent field must be bool"), "{message}");
        let message = config_message(Filter::suppress("opted_in", ["x"]).output_schema(&input()?));
        assert!(message.contains("field `opted_in` is bool, but a suppression field must be string"), "{message}");
        let message = config_message(Filter::consent("consent").output_schema(&input()?));
        assert!(message.contains("`consent` not found (fields: id, email, opted_in)"), "{message}");
        Ok(())
    }
}
