//! `Mask`: redact a string field, or hide all but its last few characters.

use std::sync::Arc;

use async_trait::async_trait;

use super::common::{
    Outcome, PlanCache, Planned, build_schema, config_error, field_at, key_names, run_records, schema_error,
    type_mismatch,
};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Value};

const NAME: &str = "mask";

/// The text [`Mask::redact`] writes by default.
const REDACTED: &str = "REDACTED";

/// Hides the value of a string field from the destination.
///
/// - [`Mask::redact`] replaces every non-null value by `"REDACTED"`
///   ([`with_mask_text`](Mask::with_mask_text) changes the text,
///   [`with_null`](Mask::with_null) writes `Null` instead).
/// - [`Mask::keep_last`] keeps the last `n` characters and replaces each other one by `*`
///   ([`with_mask_char`](Mask::with_mask_char) changes it): `4111111111111111` →
///   `************1111`. A value of `n` characters or fewer is masked entirely, so that
///   no short value is shown whole.
///
/// `Null` stays `Null`. Lengths count characters, not bytes.
///
/// # Configuration errors
/// An unknown field (the message lists the fields there are), a field that is not a
/// string, or a key column: masking a key would merge distinct records into one.
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform};
/// # use rse_core::transform::Mask;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::Int), Field::new("card", DataType::String)], &["id"])?.into_arc();
/// let batch = RowBatch::new(input, vec![Record::new(vec![1.into(), "4111111111111111".into()])]);
/// let out = Mask::keep_last("card", 4).apply(batch).await?;
/// assert_eq!(out.batch.records[0].values[1].as_str(), Some("************1111"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mask {
    field: String,
    /// `Some(n)` keeps the last `n` characters; `None` redacts the whole value.
    keep_last: Option<usize>,
    /// What a redacted value becomes; `None` is `Null`.
    replacement: Option<String>,
    mask_char: char,
    cache: PlanCache<usize>,
}

impl Mask {
    /// Replaces every non-null value of `field` by `"REDACTED"`.
    pub fn redact(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            keep_last: None,
            replacement: Some(REDACTED.to_owned()),
            mask_char: '*',
            cache: PlanCache::new(),
        }
    }

    /// Keeps the last `n` characters of `field` and masks the others with `*`.
    pub fn keep_last(field: impl Into<String>, n: usize) -> Self {
        Self { keep_last: Some(n), ..Self::redact(field) }
    }

    /// The text a redacted value becomes (default `"REDACTED"`). No effect with
    /// [`keep_last`](Mask::keep_last).
    pub fn with_mask_text(mut self, text: impl Into<String>) -> Self {
        self.replacement = Some(text.into());
        self
    }

    /// Redacts values to `Null` instead of a text; the field becomes nullable. No effect
    /// with [`keep_last`](Mask::keep_last).
    pub fn with_null(mut self) -> Self {
        self.replacement = None;
        self
    }

    /// The character that replaces each hidden character with
    /// [`keep_last`](Mask::keep_last) (default `*`).
    pub fn with_mask_char(mut self, c: char) -> Self {
        self.mask_char = c;
        self
    }

    fn plan(&self, input: &Schema) -> Result<Planned<usize>, TransformError> {
        let index = input.require(&self.field, "cannot mask").map_err(|e| schema_error(NAME, &e))?;
        let field = field_at(NAME, input, index)?;
        if field.data_type != DataType::String {
            return Err(config_error(
                NAME,
                format!(
                    "field `{}` is {}, but only string fields can be masked; cast it to string first",
                    self.field, field.data_type
                ),
            ));
        }
        if input.key_indices().contains(&index) {
            return Err(config_error(
                NAME,
                format!(
                    "field `{}` is a key column; masking it would merge distinct records, so mask another field \
                     or hash this one with `HashPii`",
                    self.field
                ),
            ));
        }
        let mut fields = input.fields().to_vec();
        if self.keep_last.is_none()
            && self.replacement.is_none()
            && let Some(f) = fields.get_mut(index)
        {
            f.nullable = true;
        }
        Ok(Planned { output: build_schema(NAME, fields, &key_names(input))?, plan: index })
    }

    fn masked(&self, text: &str) -> Value {
        match (self.keep_last, &self.replacement) {
            (Some(n), _) => {
                let len = text.chars().count();
                let hidden = if len <= n { len } else { len - n };
                let mut out = String::with_capacity(text.len());
                out.extend(std::iter::repeat_n(self.mask_char, hidden));
                out.extend(text.chars().skip(hidden));
                Value::String(out)
            }
            (None, Some(replacement)) => Value::String(replacement.clone()),
            (None, None) => Value::Null,
        }
    }

    fn mask_record(&self, index: usize, mut record: Record) -> Outcome {
        let masked = match record.values.get(index) {
            None | Some(Value::Null) => return Outcome::Keep(record),
            Some(Value::String(text)) => self.masked(text),
            Some(other) => {
                let reason = type_mismatch(&self.field, &DataType::String, other);
                return Outcome::Reject(record, reason);
            }
        };
        if let Some(slot) = record.values.get_mut(index) {
            *slot = masked;
        }
        Outcome::Keep(record)
    }
}

#[async_trait]
impl Transform for Mask {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!(
            "field={:?} keep_last={:?} replacement={:?} char={:?}",
            self.field, self.keep_last, self.replacement, self.mask_char
        ))
    }

    fn keeps_key_values(&self, input: &Arc<Schema>) -> bool {
        !input.is_key(&self.field)
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |&index, record| self.mask_record(index, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::schema::Field;

    async fn masked(mask: Mask, values: Vec<Value>) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
        let input =
            schema(vec![Field::required("id", DataType::Int), Field::required("card", DataType::String)], &["id"])?;
        let records = values.into_iter().zip(1..).map(|(v, id)| Record::new(vec![Value::Int(id), v])).collect();
        let out = mask.apply(RowBatch::new(input, records)).await?;
        Ok(out.batch.records.into_iter().filter_map(|r| r.values.into_iter().nth(1)).collect())
    }

    #[tokio::test]
    async fn redact_replaces_the_value() -> TestResult {
        assert_eq!(
            masked(Mask::redact("card"), vec!["4111".into(), Value::Null]).await?,
            vec![Value::from("REDACTED"), Value::Null]
        );
        assert_eq!(
            masked(Mask::redact("card").with_mask_text("[hidden]"), vec!["4111".into()]).await?,
            vec![Value::from("[hidden]")]
        );
        assert_eq!(masked(Mask::redact("card").with_null(), vec!["4111".into()]).await?, vec![Value::Null]);
        Ok(())
    }

    #[tokio::test]
    async fn keep_last_masks_all_but_the_last_characters() -> TestResult {
        let values = vec!["4111111111111111".into(), "ab".into(), "çàéü12".into(), "".into()];
        assert_eq!(
            masked(Mask::keep_last("card", 4), values).await?,
            vec![Value::from("************1111"), Value::from("**"), Value::from("**éü12"), Value::from("")]
        );
        assert_eq!(
            masked(Mask::keep_last("card", 2).with_mask_char('#'), vec!["12345".into()]).await?,
            vec![Value::from("###45")]
        );
        Ok(())
    }

    #[test]
    fn redacting_to_null_makes_the_field_nullable() -> TestResult {
        let input =
            schema(vec![Field::required("id", DataType::Int), Field::required("card", DataType::String)], &["id"])?;
        let output = Mask::redact("card").with_null().output_schema(&input)?;
        assert_eq!(output.field(1), Some(&Field::new("card", DataType::String)));
        Ok(())
    }

    #[test]
    fn key_columns_unknown_and_non_string_fields_are_config_errors() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::String), Field::new("n", DataType::Int)], &["id"])?;
        let message = config_message(Mask::redact("id").output_schema(&input));
        assert!(message.contains("field `id` is a key column"), "{message}");
        let message = config_message(Mask::redact("n").output_schema(&input));
        assert!(message.contains("field `n` is int, but only string fields can be masked"), "{message}");
        let message = config_message(Mask::keep_last("card", 4).output_schema(&input));
        assert!(message.contains("`card` not found (fields: id, n)"), "{message}");
        Ok(())
    }
}
