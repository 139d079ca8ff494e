//! `Validate`: reject records whose fields break declared rules (required, pattern, length, range, one of).

use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;

use super::common::{Outcome, PlanCache, Planned, config_error, field_at, run_records, schema_error, type_mismatch};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Decimal, Value, canonical_f64};

const NAME: &str = "validate";

/// One rule as configured.
#[derive(Debug, Clone)]
enum Rule {
    Required,
    /// The pattern's text and its compiled form, or why it did not compile.
    Pattern(String, Result<Regex, String>),
    MinLength(usize),
    MaxLength(usize),
    Min(Value),
    Max(Value),
    OneOf(Vec<Value>),
}

/// A number for range checks: exact for ints and decimals, and the shortest round-trip
/// decimal of a float, so that `0.1` compares equal to the decimal `0.1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Num {
    NegInf,
    Finite(Decimal),
    PosInf,
}

/// A rule resolved against a schema.
#[derive(Debug)]
struct Check {
    index: usize,
    field: String,
    data_type: DataType,
    kind: CheckKind,
}

#[derive(Debug)]
enum CheckKind {
    Required,
    Pattern(Regex),
    MinLength(usize),
    MaxLength(usize),
    Min(Num),
    Max(Num),
    OneOf(Vec<Value>),
}

/// Rejects records whose fields break declared rules.
///
/// Rules, each on one field, checked in the order they were added:
/// - [`required`](Validate::required): the value is not `Null`. Every other rule passes a
///   `Null`; add `required` to refuse it.
/// - [`pattern`](Validate::pattern): a string matches a regular expression (the
///   [`regex`](https://docs.rs/regex) crate's syntax). The match may be anywhere in the
///   value; anchor it with `^…$` to match the whole value.
/// - [`min_length`](Validate::min_length), [`max_length`](Validate::max_length),
///   [`length`](Validate::length): a string's length in characters (not bytes).
/// - [`min`](Validate::min), [`max`](Validate::max), [`range`](Validate::range): an int,
///   float or decimal within inclusive bounds, compared exactly (NaN fails every bound).
/// - [`one_of`](Validate::one_of): the value equals one of the allowed values (strings
///   compare exactly, case included).
///
/// A record that breaks rules is rejected with one reason per broken rule, joined by `; `,
/// each naming the field and the rule and never the value: `field `email`: does not match
/// pattern `^[^@]+@[^@]+$``. A value whose type is not its field's declared type breaks
/// the rule too.
///
/// # Configuration errors
/// An unknown field (the message lists the fields there are); a pattern that does not
/// compile; a pattern or length rule on a field that is not a string; a range rule on a
/// field that is not a number, or with a bound that is not a finite number; `one_of` with
/// no values or with values the field's type does not accept.
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform, Value};
/// # use rse_core::transform::Validate;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(
///     vec![Field::required("id", DataType::Int), Field::new("email", DataType::String), Field::new("age", DataType::Int)],
///     &["id"],
/// )?
/// .into_arc();
/// let validate = Validate::new().required("email").pattern("email", "^[^@]+@[^@]+$").range("age", 0, 130);
/// let batch = RowBatch::new(input, vec![
///     Record::new(vec![1.into(), "a@example.com".into(), 34.into()]),
///     Record::new(vec![2.into(), "nope".into(), Value::Int(-1)]),
/// ]);
/// let out = validate.apply(batch).await?;
/// assert_eq!(out.batch.len(), 1);
/// assert_eq!(out.rejected[0].reason, "field `email`: does not match pattern `^[^@]+@[^@]+$`; field `age`: below the minimum 0");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Validate {
    rules: Vec<(String, Rule)>,
    cache: PlanCache<Vec<Check>>,
}

impl Validate {
    /// A validation with no rules yet: every record passes.
    pub fn new() -> Self {
        Self::default()
    }

    fn rule(mut self, field: impl Into<String>, rule: Rule) -> Self {
        self.rules.push((field.into(), rule));
        self
    }

    /// `field` must not be `Null`.
    pub fn required(self, field: impl Into<String>) -> Self {
        self.rule(field, Rule::Required)
    }

    /// String `field` must match `pattern` somewhere (anchor it with `^…$` for the whole
    /// value). A pattern that does not compile is reported as a configuration error by
    /// [`output_schema`](Transform::output_schema).
    pub fn pattern(self, field: impl Into<String>, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let regex = Regex::new(&pattern).map_err(|e| e.to_string());
        self.rule(field, Rule::Pattern(pattern, regex))
    }

    /// String `field` must have at least `min` characters.
    pub fn min_length(self, field: impl Into<String>, min: usize) -> Self {
        self.rule(field, Rule::MinLength(min))
    }

    /// String `field` must have at most `max` characters.
    pub fn max_length(self, field: impl Into<String>, max: usize) -> Self {
        self.rule(field, Rule::MaxLength(max))
    }

    /// String `field` must have `min` to `max` characters, inclusive.
    pub fn length(self, field: impl Into<String>, min: usize, max: usize) -> Self {
        let field = field.into();
        self.min_length(field.clone(), min).max_length(field, max)
    }

    /// Numeric `field` must be at least `min` (an int, float or decimal).
    pub fn min(self, field: impl Into<String>, min: impl Into<Value>) -> Self {
        self.rule(field, Rule::Min(min.into()))
    }

    /// Numeric `field` must be at most `max` (an int, float or decimal).
    pub fn max(self, field: impl Into<String>, max: impl Into<Value>) -> Self {
        self.rule(field, Rule::Max(max.into()))
    }

    /// Numeric `field` must be within `min` and `max`, inclusive.
    pub fn range(self, field: impl Into<String>, min: impl Into<Value>, max: impl Into<Value>) -> Self {
        let field = field.into();
        self.min(field.clone(), min).max(field, max)
    }

    /// `field` must equal one of `values`.
    pub fn one_of<I, V>(self, field: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value>,
    {
        self.rule(field, Rule::OneOf(values.into_iter().map(Into::into).collect()))
    }

    fn plan(&self, input: &Arc<Schema>) -> Result<Planned<Vec<Check>>, TransformError> {
        let mut checks = Vec::with_capacity(self.rules.len());
        for (name, rule) in &self.rules {
            let index = input.require(name, "cannot validate").map_err(|e| schema_error(NAME, &e))?;
            let data_type = field_at(NAME, input, index)?.data_type.clone();
            let needs_string = || {
                if data_type == DataType::String {
                    Ok(())
                } else {
                    Err(config_error(
                        NAME,
                        format!("field `{name}` is {data_type}, but pattern and length rules apply to strings only"),
                    ))
                }
            };
            let bound = |value: &Value, which: &str| {
                if !matches!(data_type, DataType::Int | DataType::Float | DataType::Decimal) {
                    return Err(config_error(
                        NAME,
                        format!("field `{name}` is {data_type}, but range rules apply to int, float and decimal only"),
                    ));
                }
                match to_num(value) {
                    Some(Ok(Num::Finite(d))) => Ok(Num::Finite(d)),
                    _ => Err(config_error(
                        NAME,
                        format!("the {which} for field `{name}` must be a finite int, float or decimal"),
                    )),
                }
            };
            let kind = match rule {
                Rule::Required => CheckKind::Required,
                Rule::Pattern(pattern, regex) => {
                    needs_string()?;
                    let regex = regex.as_ref().map_err(|e| {
                        config_error(NAME, format!("the pattern `{pattern}` for field `{name}` does not compile: {e}"))
                    })?;
                    CheckKind::Pattern(regex.clone())
                }
                Rule::MinLength(n) => {
                    needs_string()?;
                    CheckKind::MinLength(*n)
                }
                Rule::MaxLength(n) => {
                    needs_string()?;
                    CheckKind::MaxLength(*n)
                }
                Rule::Min(v) => CheckKind::Min(bound(v, "minimum")?),
                Rule::Max(v) => CheckKind::Max(bound(v, "maximum")?),
                Rule::OneOf(values) => {
                    if values.is_empty() {
                        return Err(config_error(NAME, format!("`one_of` for field `{name}` has no allowed values")));
                    }
                    if let Some(bad) = values.iter().find(|v| v.is_null() || !data_type.accepts(v)) {
                        return Err(config_error(
                            NAME,
                            format!(
                                "`one_of` for field `{name}` allows a value of type {}, but the field is {data_type}",
                                bad.type_name()
                            ),
                        ));
                    }
                    CheckKind::OneOf(values.clone())
                }
            };
            checks.push(Check { index, field: name.clone(), data_type, kind });
        }
        Ok(Planned { output: Arc::clone(input), plan: checks })
    }
}

/// `value` as a number: `None` when it is not one, `Some(Err(()))` for NaN.
fn to_num(value: &Value) -> Option<Result<Num, ()>> {
    Some(Ok(match value {
        Value::Int(i) => Num::Finite(Decimal::from_scaled(i128::from(*i), 0)),
        Value::Decimal(d) => Num::Finite(d.clone()),
        Value::Float(f) if f.is_nan() => return Some(Err(())),
        Value::Float(f) if *f == f64::INFINITY => Num::PosInf,
        Value::Float(f) if *f == f64::NEG_INFINITY => Num::NegInf,
        // `{:?}` is the shortest text that reads back as the float, and always parses.
        Value::Float(f) => Num::Finite(Decimal::parse(&format!("{:?}", canonical_f64(*f))).ok()?),
        _ => return None,
    }))
}

fn bound_text(bound: &Num) -> &str {
    match bound {
        Num::Finite(d) => d.as_str(),
        Num::NegInf => "-inf",
        Num::PosInf => "inf",
    }
}

/// The reason `value` breaks `check`, if it does. Never mentions the value.
fn broken(check: &Check, value: &Value) -> Option<String> {
    let field = &check.field;
    if value.is_null() {
        return matches!(check.kind, CheckKind::Required).then(|| format!("field `{field}`: is required but null"));
    }
    if !check.data_type.accepts(value) {
        return Some(type_mismatch(field, &check.data_type, value));
    }
    let why = match (&check.kind, value) {
        (CheckKind::Required, _) => return None,
        (CheckKind::Pattern(regex), Value::String(s)) => {
            (!regex.is_match(s)).then(|| format!("does not match pattern `{}`", regex.as_str()))
        }
        (CheckKind::MinLength(n), Value::String(s)) => {
            (s.chars().count() < *n).then(|| format!("shorter than {n} characters"))
        }
        (CheckKind::MaxLength(n), Value::String(s)) => {
            (s.chars().count() > *n).then(|| format!("longer than {n} characters"))
        }
        (CheckKind::Min(bound), v) => match to_num(v) {
            Some(Ok(n)) => (n < *bound).then(|| format!("below the minimum {}", bound_text(bound))),
            _ => Some("is not a number".to_owned()),
        },
        (CheckKind::Max(bound), v) => match to_num(v) {
            Some(Ok(n)) => (n > *bound).then(|| format!("above the maximum {}", bound_text(bound))),
            _ => Some("is not a number".to_owned()),
        },
        (CheckKind::OneOf(values), v) => (!values.contains(v)).then(|| "not one of the allowed values".to_owned()),
        // The plan only pairs string rules with string fields, and the type was checked.
        (CheckKind::Pattern(_) | CheckKind::MinLength(_) | CheckKind::MaxLength(_), other) => {
            Some(format!("a {} value cannot be checked against a string rule", other.type_name()))
        }
    }?;
    Some(format!("field `{field}`: {why}"))
}

fn validate_record(checks: &[Check], record: Record) -> Outcome {
    let mut reasons: Vec<String> = Vec::new();
    for check in checks {
        let value = record.values.get(check.index).unwrap_or(&Value::Null);
        if let Some(reason) = broken(check, value) {
            // Several rules on a field of the wrong type would repeat the same reason.
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
    }
    if reasons.is_empty() { Outcome::Keep(record) } else { Outcome::Reject(record, reasons.join("; ")) }
}

#[async_trait]
impl Transform for Validate {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("rules={:?}", self.rules))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |checks, record| validate_record(checks, record)))
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
                Field::new("score", DataType::Float),
                Field::new("plan", DataType::String),
                Field::new("balance", DataType::Decimal),
            ],
            &["id"],
        )
    }

    fn record(id: i64, email: Value, score: Value, plan: Value, balance: Value) -> Record {
        Record::new(vec![Value::Int(id), email, score, plan, balance])
    }

    /// The rejection reason for a record, or `None` when it passes.
    async fn reason_for(validate: &Validate, record: Record) -> Result<Option<String>, Box<dyn std::error::Error>> {
        let out = validate.apply(RowBatch::new(input()?, vec![record])).await?;
        assert_eq!(out.batch.len() + out.rejected.len(), 1);
        Ok(out.rejected.into_iter().next().map(|r| r.reason))
    }

    #[tokio::test]
    async fn each_rule_names_the_field_and_never_the_value() -> TestResult {
        let d = |s: &str| Decimal::parse(s).map(Value::Decimal);
        let validate = Validate::new()
            .required("email")
            .pattern("email", "^[^@ ]+@[^@ ]+$")
            .length("email", 6, 20)
            .range("score", 0, 1.5)
            .one_of("plan", ["free", "pro"])
            .min("balance", d("-0.01")?);
        let ok = record(1, "a@b.co".into(), 1.5.into(), "pro".into(), d("-0.01")?);
        assert_eq!(reason_for(&validate, ok).await?, None);
        let nulls = record(1, Value::Null, Value::Null, Value::Null, Value::Null);
        assert_eq!(reason_for(&validate, nulls).await?.as_deref(), Some("field `email`: is required but null"));
        let cases = [
            (
                record(1, "secret-at-example".into(), Value::Null, Value::Null, Value::Null),
                "field `email`: does not match pattern `^[^@ ]+@[^@ ]+$`",
            ),
            (
                record(1, "a@b.c".into(), Value::Null, Value::Null, Value::Null),
                "field `email`: shorter than 6 characters",
            ),
            (
                record(1, "secret.person@example.com".into(), Value::Null, Value::Null, Value::Null),
                "field `email`: longer than 20 characters",
            ),
            (
                record(1, "a@b.co".into(), (-0.25).into(), Value::Null, Value::Null),
                "field `score`: below the minimum 0",
            ),
            (record(1, "a@b.co".into(), 1.75.into(), Value::Null, Value::Null), "field `score`: above the maximum 1.5"),
            (record(1, "a@b.co".into(), f64::NAN.into(), Value::Null, Value::Null), "field `score`: is not a number"),
            (
                record(1, "a@b.co".into(), Value::Null, "Pro".into(), Value::Null),
                "field `plan`: not one of the allowed values",
            ),
            (
                record(1, "a@b.co".into(), Value::Null, Value::Null, d("-0.011")?),
                "field `balance`: below the minimum -0.01",
            ),
        ];
        for (record, want) in cases {
            let reason = reason_for(&validate, record.clone()).await?.unwrap_or_default();
            assert!(reason.starts_with(want), "{reason} should start with {want}");
            for value in record.values.iter().skip(1).filter_map(Value::as_str) {
                assert!(!reason.contains(value), "{reason} shows a value");
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn all_broken_rules_are_reported_in_order() -> TestResult {
        let validate = Validate::new().max_length("email", 3).one_of("plan", ["free"]).required("score");
        let reason = reason_for(&validate, record(1, "long".into(), Value::Null, "pro".into(), Value::Null)).await?;
        assert_eq!(
            reason.as_deref(),
            Some(
                "field `email`: longer than 3 characters; field `plan`: not one of the allowed values; \
                 field `score`: is required but null"
            )
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_type_is_rejected_once() -> TestResult {
        let validate = Validate::new().min_length("email", 1).max_length("email", 9);
        let reason = reason_for(&validate, record(1, Value::Int(5), Value::Null, Value::Null, Value::Null)).await?;
        let reason = reason.unwrap_or_default();
        assert!(reason.starts_with("field `email`: expected string, found int"), "{reason}");
        assert!(!reason.contains(';'), "{reason}");
        Ok(())
    }

    #[test]
    fn misconfiguration_is_reported_naming_the_field() -> TestResult {
        let input = input()?;
        let message = config_message(Validate::new().pattern("email", "(").output_schema(&input));
        assert!(message.contains("the pattern `(` for field `email` does not compile"), "{message}");
        let message = config_message(Validate::new().required("mail").output_schema(&input));
        assert!(message.contains("`mail` not found (fields: id, email, score, plan, balance)"), "{message}");
        let message = config_message(Validate::new().min_length("score", 1).output_schema(&input));
        assert!(
            message.contains("field `score` is float, but pattern and length rules apply to strings only"),
            "{message}"
        );
        let message = config_message(Validate::new().max("email", 1).output_schema(&input));
        assert!(message.contains("field `email` is string, but range rules apply to int"), "{message}");
        let message = config_message(Validate::new().max("score", "1").output_schema(&input));
        assert!(message.contains("the maximum for field `score` must be a finite"), "{message}");
        let message = config_message(Validate::new().min("score", f64::NAN).output_schema(&input));
        assert!(message.contains("the minimum for field `score` must be a finite"), "{message}");
        let message = config_message(Validate::new().one_of("plan", [1, 2]).output_schema(&input));
        assert!(
            message.contains("`one_of` for field `plan` allows a value of type int, but the field is string"),
            "{message}"
        );
        let none: [&str; 0] = [];
        let message = config_message(Validate::new().one_of("plan", none).output_schema(&input));
        assert!(message.contains("has no allowed values"), "{message}");
        Ok(())
    }
}
