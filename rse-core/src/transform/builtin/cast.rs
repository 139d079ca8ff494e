//! `Cast`: convert fields to another data type, rejecting the records whose values do not convert.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::common::{
    Outcome, PlanCache, Planned, build_schema, config_error, field_at, key_names, run_records, schema_error,
    type_mismatch,
};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::time::{MICROS_PER_DAY, format_date, format_timestamp, parse_date, parse_timestamp};
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Decimal, Value, canonical_f64, canonical_json};

const NAME: &str = "cast";

/// Converts fields to another [`DataType`].
///
/// A value that does not convert rejects its record with a reason naming the field and the
/// target type (never the value); the batch goes on. `Null` stays `Null`, and a field
/// keeps its nullability. Casting a field to its own type changes nothing.
///
/// Supported casts; every other pair is a configuration error:
///
/// | from | to |
/// |---|---|
/// | string | int, float, decimal, bool, date, timestamp, json, bytes |
/// | int | string, float, decimal, bool, json |
/// | float | string, int, decimal, json |
/// | decimal | string, int, float |
/// | bool | string, int, json |
/// | date | string, timestamp |
/// | timestamp | string, date |
/// | json | string |
/// | bytes | string |
///
/// The rules, chosen so that no cast loses information silently:
/// - Text is trimmed first. To int it must be an integral number in range (`42`, `4.2e1`,
///   `42.0`; not `4.5`); to float a finite number; to bool one of `true`/`t`/`yes`/`y`/
///   `on`/`1` or `false`/`f`/`no`/`n`/`off`/`0`, in any case; to date `YYYY-MM-DD`; to
///   timestamp RFC 3339 (`2024-05-01T12:00:00Z`, also with a space for `T`, an offset
///   `±HH:MM`, or no offset, meaning UTC; a bare date is midnight UTC; digits of a fraction
///   past microseconds are truncated); to json a JSON document; to bytes its UTF-8.
/// - A float converts to int only when integral and in range, and never from NaN or an
///   infinity. An int converts to float rounded to the nearest float.
/// - A number converts to bool only from `0` or `1`; a bool to int as `0` or `1`.
/// - A float is written as text in its shortest round-trip form (`0.1`, `1e300`), a
///   decimal in its normalised form, a date as `YYYY-MM-DD`, a timestamp as RFC 3339 in UTC
///   (`2024-05-01T12:00:00Z`, with `.ffffff` when not whole seconds), JSON as canonical text
///   (keys sorted, no whitespace; a JSON string keeps its quotes), bytes as UTF-8 (invalid
///   UTF-8 rejects the record).
/// - A timestamp converts to the date it falls on in UTC; a date to its midnight UTC.
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform, Value};
/// # use rse_core::transform::Cast;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::String), Field::new("age", DataType::String)], &["id"])?.into_arc();
/// let cast = Cast::new("age", DataType::Int).with_cast("id", DataType::Int);
/// let batch = RowBatch::new(input, vec![Record::new(vec!["1".into(), "42".into()]), Record::new(vec!["2".into(), "n/a".into()])]);
/// let out = cast.apply(batch).await?;
/// assert_eq!(out.batch.records, vec![Record::new(vec![Value::Int(1), Value::Int(42)])]);
/// assert_eq!(out.rejected[0].reason, "field `age`: cannot cast string to int");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Cast {
    casts: Vec<(String, DataType)>,
    cache: PlanCache<Vec<Step>>,
}

/// One field's conversion, resolved against a schema.
#[derive(Debug)]
struct Step {
    index: usize,
    field: String,
    from: DataType,
    to: DataType,
}

impl Cast {
    /// Casts `field` to `to`.
    pub fn new(field: impl Into<String>, to: DataType) -> Self {
        Self { casts: vec![(field.into(), to)], cache: PlanCache::new() }
    }

    /// Casts each `(field, type)` pair.
    pub fn fields<I, S>(casts: I) -> Self
    where
        I: IntoIterator<Item = (S, DataType)>,
        S: Into<String>,
    {
        Self { casts: casts.into_iter().map(|(f, t)| (f.into(), t)).collect(), cache: PlanCache::new() }
    }

    /// Also casts `field` to `to`.
    pub fn with_cast(mut self, field: impl Into<String>, to: DataType) -> Self {
        self.casts.push((field.into(), to));
        self
    }

    fn plan(&self, input: &Schema) -> Result<Planned<Vec<Step>>, TransformError> {
        let mut fields = input.fields().to_vec();
        let mut steps: Vec<Step> = Vec::with_capacity(self.casts.len());
        for (name, to) in &self.casts {
            let index = input.require(name, "cannot cast").map_err(|e| schema_error(NAME, &e))?;
            if steps.iter().any(|s| s.index == index) {
                return Err(config_error(NAME, format!("field `{name}` is cast twice; cast it once")));
            }
            let from = field_at(NAME, input, index)?.data_type.clone();
            if !supported(&from, to) {
                return Err(config_error(
                    NAME,
                    format!(
                        "cannot cast field `{name}` from {from} to {to}; from {from} rse casts to: {}",
                        targets(&from)
                    ),
                ));
            }
            if let Some(field) = fields.get_mut(index) {
                field.data_type = to.clone();
            }
            steps.push(Step { index, field: name.clone(), from, to: to.clone() });
        }
        let output = build_schema(NAME, fields, &key_names(input))?;
        Ok(Planned { output, plan: steps })
    }
}

#[async_trait]
impl Transform for Cast {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("casts={:?}", self.casts))
    }

    fn keeps_key_values(&self, input: &Arc<Schema>) -> bool {
        self.casts.iter().all(|(field, _)| !input.is_key(field))
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |steps, record| cast_record(steps, record)))
    }
}

fn cast_record(steps: &[Step], mut record: Record) -> Outcome {
    // Convert every field first and write only when all succeeded, so that a rejection
    // carries the record as it arrived.
    let mut converted = Vec::with_capacity(steps.len());
    for step in steps {
        let value = record.values.get(step.index).unwrap_or(&Value::Null);
        if value.is_null() {
            continue;
        }
        if !step.from.accepts(value) {
            let reason = type_mismatch(&step.field, &step.from, value);
            return Outcome::Reject(record, reason);
        }
        match convert(value, &step.to) {
            Some(v) => converted.push((step.index, v)),
            None => {
                let reason = format!("field `{}`: cannot cast {} to {}", step.field, step.from, step.to);
                return Outcome::Reject(record, reason);
            }
        }
    }
    for (index, value) in converted {
        if let Some(slot) = record.values.get_mut(index) {
            *slot = value;
        }
    }
    Outcome::Keep(record)
}

/// The data types `from` casts to, besides itself.
fn targets(from: &DataType) -> &'static str {
    match from {
        DataType::String => "int, float, decimal, bool, date, timestamp, json, bytes",
        DataType::Int => "string, float, decimal, bool, json",
        DataType::Float => "string, int, decimal, json",
        DataType::Decimal => "string, int, float",
        DataType::Bool => "string, int, json",
        DataType::Date => "string, timestamp",
        DataType::Timestamp => "string, date",
        DataType::Json | DataType::Bytes => "string",
        _ => "nothing but itself",
    }
}

fn supported(from: &DataType, to: &DataType) -> bool {
    use DataType as T;
    from == to
        || matches!(
            (from, to),
            (T::String, T::Int | T::Float | T::Decimal | T::Bool | T::Date | T::Timestamp | T::Json | T::Bytes)
                | (T::Int, T::String | T::Float | T::Decimal | T::Bool | T::Json)
                | (T::Float, T::String | T::Int | T::Decimal | T::Json)
                | (T::Decimal, T::String | T::Int | T::Float)
                | (T::Bool, T::String | T::Int | T::Json)
                | (T::Date, T::String | T::Timestamp)
                | (T::Timestamp, T::String | T::Date)
                | (T::Json | T::Bytes, T::String)
        )
}

/// `value` (not null, of the field's declared type) as `to`, or `None` when it does not
/// convert.
fn convert(value: &Value, to: &DataType) -> Option<Value> {
    use DataType as T;
    let converted = match (value, to) {
        (v, to) if to.accepts(v) => v.clone(),
        (Value::String(s), T::Int) => Value::Int(text_to_int(s.trim())?),
        (Value::String(s), T::Float) => Value::Float(s.trim().parse::<f64>().ok().filter(|f| f.is_finite())?),
        (Value::String(s), T::Decimal) => Value::Decimal(Decimal::parse(s).ok()?),
        (Value::String(s), T::Bool) => Value::Bool(text_to_bool(s.trim())?),
        (Value::String(s), T::Date) => Value::Date(parse_date(s)?),
        (Value::String(s), T::Timestamp) => Value::Timestamp(parse_timestamp(s)?),
        (Value::String(s), T::Json) => Value::Json(serde_json::from_str(s).ok()?),
        (Value::String(s), T::Bytes) => Value::Bytes(Bytes::copy_from_slice(s.as_bytes())),
        (Value::Int(i), T::String) => Value::String(i.to_string()),
        #[allow(clippy::cast_precision_loss)] // Documented: an int casts to the nearest float.
        (Value::Int(i), T::Float) => Value::Float(*i as f64),
        (Value::Int(i), T::Decimal) => Value::Decimal(Decimal::from_scaled(i128::from(*i), 0)),
        (Value::Int(i), T::Bool) => Value::Bool(match i {
            0 => false,
            1 => true,
            _ => return None,
        }),
        (Value::Int(i), T::Json) => Value::Json(serde_json::Value::from(*i)),
        (Value::Float(f), T::String) => Value::String(float_to_text(*f)?),
        (Value::Float(f), T::Int) => Value::Int(float_to_int(*f)?),
        (Value::Float(f), T::Decimal) => Value::Decimal(float_to_decimal(*f)?),
        (Value::Float(f), T::Json) => Value::Json(serde_json::Number::from_f64(canonical_f64(*f))?.into()),
        (Value::Decimal(d), T::String) => Value::String(d.as_str().to_owned()),
        (Value::Decimal(d), T::Int) => Value::Int(d.as_str().parse::<i64>().ok()?),
        (Value::Decimal(d), T::Float) => Value::Float(d.as_str().parse::<f64>().ok().filter(|f| f.is_finite())?),
        (Value::Bool(b), T::String) => Value::String(b.to_string()),
        (Value::Bool(b), T::Int) => Value::Int(i64::from(*b)),
        (Value::Bool(b), T::Json) => Value::Json(serde_json::Value::Bool(*b)),
        (Value::Date(d), T::String) => Value::String(format_date(*d)),
        (Value::Date(d), T::Timestamp) => Value::Timestamp(i64::from(*d).checked_mul(MICROS_PER_DAY)?),
        (Value::Timestamp(t), T::String) => Value::String(format_timestamp(*t)),
        (Value::Timestamp(t), T::Date) => Value::Date(i32::try_from(t.div_euclid(MICROS_PER_DAY)).ok()?),
        (Value::Json(j), T::String) => Value::String(canonical_json(j)),
        (Value::Bytes(b), T::String) => Value::String(std::str::from_utf8(b).ok()?.to_owned()),
        _ => return None,
    };
    Some(converted)
}

/// An integral number written as text (`42`, `-7`, `4.2e1`, `42.0`) as an `i64`.
fn text_to_int(text: &str) -> Option<i64> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i);
    }
    // A normalised decimal is integral exactly when it has no point.
    let decimal = Decimal::parse(text).ok()?;
    decimal.as_str().parse::<i64>().ok()
}

fn text_to_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The shortest text that reads back as `f` (`-0.0` as `0`), in plain notation for
/// everyday magnitudes and scientific notation for very large or small ones.
fn float_to_text(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let f = canonical_f64(f);
    let magnitude = f.abs();
    Some(if magnitude == 0.0 || (1e-7..1e21).contains(&magnitude) { format!("{f}") } else { format!("{f:e}") })
}

fn float_to_int(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; every integral float in [-2^63, 2^63) fits an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !f.is_finite() || f.fract() != 0.0 || !(-LIMIT..LIMIT).contains(&f) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // Integral and in range, checked above.
    Some(f as i64)
}

fn float_to_decimal(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    // `{:?}` is the shortest text that reads back as `f`: what a user means by the float.
    Decimal::parse(&format!("{:?}", canonical_f64(f))).ok()
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::schema::Field;

    async fn cast_one(from: DataType, value: Value, to: DataType) -> Result<Option<Value>, TransformError> {
        let input = Schema::new(vec![Field::required("id", DataType::Int), Field::new("v", from)], &["id"])
            .map_err(|e| schema_error(NAME, &e))?
            .into_arc();
        let out = Cast::new("v", to).apply(RowBatch::new(input, vec![Record::new(vec![1.into(), value])])).await?;
        Ok(out.batch.records.into_iter().next().and_then(|r| r.values.into_iter().nth(1)))
    }

    #[tokio::test]
    async fn casts_convert_values() -> TestResult {
        use DataType as T;
        let d = |s: &str| Decimal::parse(s).map(Value::Decimal);
        let cases: Vec<(T, Value, T, Value)> = vec![
            (T::String, " 42 ".into(), T::Int, Value::Int(42)),
            (T::String, "4.2e1".into(), T::Int, Value::Int(42)),
            (T::String, "-7.0".into(), T::Int, Value::Int(-7)),
            (T::String, "2.5".into(), T::Float, Value::Float(2.5)),
            (T::String, "1.50".into(), T::Decimal, d("1.5")?),
            (T::String, "Yes".into(), T::Bool, Value::Bool(true)),
            (T::String, "off".into(), T::Bool, Value::Bool(false)),
            (T::String, "2024-02-29".into(), T::Date, Value::Date(19_782)),
            (T::String, "2024-02-29T14:30:00+02:00".into(), T::Timestamp, Value::Timestamp(1_709_209_800_000_000)),
            (T::String, r#"{"b":1,"a":[true]}"#.into(), T::Json, Value::Json(serde_json::json!({"a": [true], "b": 1}))),
            (T::String, "hé".into(), T::Bytes, Value::Bytes(Bytes::from_static("hé".as_bytes()))),
            (T::Int, Value::Int(-12), T::String, "-12".into()),
            (T::Int, Value::Int(3), T::Float, Value::Float(3.0)),
            (T::Int, Value::Int(i64::MIN), T::Decimal, d("-9223372036854775808")?),
            (T::Int, Value::Int(1), T::Bool, Value::Bool(true)),
            (T::Int, Value::Int(5), T::Json, Value::Json(serde_json::json!(5))),
            (T::Float, Value::Float(0.1), T::String, "0.1".into()),
            (T::Float, Value::Float(-0.0), T::String, "0".into()),
            (T::Float, Value::Float(1e300), T::String, "1e300".into()),
            (T::Float, Value::Float(-3.0), T::Int, Value::Int(-3)),
            (T::Float, Value::Float(0.1), T::Decimal, d("0.1")?),
            (T::Float, Value::Float(1.5), T::Json, Value::Json(serde_json::json!(1.5))),
            (T::Decimal, d("-123.45")?, T::String, "-123.45".into()),
            (T::Decimal, d("1200")?, T::Int, Value::Int(1200)),
            (T::Decimal, d("0.25")?, T::Float, Value::Float(0.25)),
            (T::Bool, Value::Bool(false), T::String, "false".into()),
            (T::Bool, Value::Bool(true), T::Int, Value::Int(1)),
            (T::Date, Value::Date(19_782), T::String, "2024-02-29".into()),
            (T::Date, Value::Date(1), T::Timestamp, Value::Timestamp(MICROS_PER_DAY)),
            (T::Timestamp, Value::Timestamp(1_709_217_000_000_001), T::String, "2024-02-29T14:30:00.000001Z".into()),
            (T::Timestamp, Value::Timestamp(-1), T::Date, Value::Date(-1)),
            (T::Json, Value::Json(serde_json::json!({"b": "x", "a": 1.0})), T::String, r#"{"a":1,"b":"x"}"#.into()),
            (T::Bytes, Value::Bytes(Bytes::from_static(b"ok")), T::String, "ok".into()),
            (T::String, Value::Null, T::Int, Value::Null),
            (T::String, "same".into(), T::String, "same".into()),
        ];
        for (from, value, to, want) in cases {
            let label = format!("{from} -> {to}");
            assert_eq!(cast_one(from, value, to).await?, Some(want), "{label}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn values_that_do_not_convert_reject_their_record() -> TestResult {
        use DataType as T;
        let cases: Vec<(T, Value, T)> = vec![
            (T::String, "4.5".into(), T::Int),
            (T::String, "99999999999999999999".into(), T::Int),
            (T::String, "NaN".into(), T::Float),
            (T::String, "maybe".into(), T::Bool),
            (T::String, "2023-02-29".into(), T::Date),
            (T::String, "yesterday".into(), T::Timestamp),
            (T::String, "{".into(), T::Json),
            (T::String, "1,5".into(), T::Decimal),
            (T::Int, Value::Int(2), T::Bool),
            (T::Float, Value::Float(0.5), T::Int),
            (T::Float, Value::Float(f64::NAN), T::String),
            (T::Float, Value::Float(f64::INFINITY), T::Decimal),
            (T::Float, Value::Float(1e19), T::Int),
            (T::Decimal, Value::Decimal(Decimal::parse("0.5")?), T::Int),
            (T::Date, Value::Date(i32::MAX), T::Timestamp),
            (T::Bytes, Value::Bytes(Bytes::from_static(&[0xff, 0xfe])), T::String),
        ];
        for (from, value, to) in cases {
            let label = format!("{from} -> {to}");
            let input = schema(vec![Field::required("id", T::Int), Field::new("secret", from.clone())], &["id"])?;
            let record = Record::new(vec![Value::Int(1), value]);
            let out = Cast::new("secret", to.clone())
                .apply(RowBatch::new(input, vec![record.clone(), Record::new(vec![Value::Int(2), Value::Null])]))
                .await?;
            assert_eq!(out.batch.len(), 1, "{label}: the other record passes");
            assert_eq!(out.rejected.len(), 1, "{label}");
            let rejection = out.rejected.first().ok_or("no rejection")?;
            assert_eq!(rejection.record, record, "{label}: rejected as received");
            assert_eq!(rejection.reason, format!("field `secret`: cannot cast {from} to {to}"), "{label}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_rejected_record_is_returned_unchanged_when_another_field_already_converted() -> TestResult {
        let input =
            schema(vec![Field::required("id", DataType::String), Field::new("age", DataType::String)], &["id"])?;
        let record = Record::new(vec!["7".into(), "old".into()]);
        let cast = Cast::fields([("id", DataType::Int), ("age", DataType::Int)]);
        let out = cast.apply(RowBatch::new(input, vec![record.clone()])).await?;
        assert!(out.batch.is_empty());
        assert_eq!(out.rejected.first().map(|r| &r.record), Some(&record));
        assert_eq!(
            out.batch.schema.fields().iter().map(|f| f.data_type.clone()).collect::<Vec<_>>(),
            [DataType::Int, DataType::Int]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_type_is_rejected_naming_types_only() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int), Field::new("age", DataType::String)], &["id"])?;
        let out = Cast::new("age", DataType::Int)
            .apply(RowBatch::new(input, vec![Record::new(vec![1.into(), Value::Float(41.5)])]))
            .await?;
        let reason = out.rejected.first().map(|r| r.reason.clone()).unwrap_or_default();
        assert!(reason.starts_with("field `age`: expected string, found float"), "{reason}");
        assert!(!reason.contains("41"), "{reason}");
        Ok(())
    }

    #[test]
    fn unsupported_casts_and_unknown_fields_are_config_errors() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int), Field::new("at", DataType::Date)], &["id"])?;
        let message = config_message(Cast::new("at", DataType::Bool).output_schema(&input));
        assert_eq!(message, "cannot cast field `at` from date to bool; from date rse casts to: string, timestamp");
        let message = config_message(Cast::new("when", DataType::String).output_schema(&input));
        assert!(message.contains("`when` not found (fields: id, at)"), "{message}");
        let message = config_message(
            Cast::new("at", DataType::String).with_cast("at", DataType::Timestamp).output_schema(&input),
        );
        assert!(message.contains("`at` is cast twice"), "{message}");
        let output = Cast::new("id", DataType::String).output_schema(&input)?;
        assert_eq!(output.key_names().collect::<Vec<_>>(), ["id"]);
        assert_eq!(output.field(0).map(|f| (&f.data_type, f.nullable)), Some((&DataType::String, false)));
        Ok(())
    }
}
