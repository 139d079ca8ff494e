//! Built-in transforms: rename, select/drop, cast, constant, PII hashing, masking, filters, validation, the sensitive-field guard, closures.

mod cast;
mod closure;
mod common;
mod constant;
mod filter;
mod hash_pii;
mod mask;
mod rename;
mod select;
mod sensitive;
mod validate;

pub use cast::Cast;
pub use closure::FnTransform;
pub use constant::Constant;
pub use filter::Filter;
pub use hash_pii::HashPii;
pub use mask::Mask;
pub use rename::Rename;
pub use select::{DropFields, Select};
pub use sensitive::{PiiDetector, SensitiveFields};
pub use validate::Validate;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::common::test_support::{TestResult, schema};
    use super::*;
    use crate::record::{Record, RowBatch};
    use crate::schema::{Field, Schema};
    use crate::transform::{Transform, TransformOutput};
    use crate::value::{DataType, Decimal, Value};

    #[test]
    fn every_builtin_is_send_sync_and_object_safe() {
        fn check<T: Transform + Clone + Send + Sync + 'static>(t: T) -> Arc<dyn Transform> {
            Arc::new(t)
        }
        let all = [
            check(Rename::new([("a", "b")])),
            check(Select::new(["a"])),
            check(DropFields::new(["a"])),
            check(Cast::new("a", DataType::Int)),
            check(Constant::new("a", 1)),
            check(HashPii::email("a")),
            check(Mask::redact("a")),
            check(Filter::consent("a")),
            check(Validate::new().required("a")),
            check(SensitiveFields::new(["a"])),
            check(FnTransform::new("custom", |r, _| Ok(Some(r.clone())))),
        ];
        let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "rename",
                "select",
                "drop",
                "cast",
                "constant",
                "hash_pii",
                "mask",
                "filter",
                "validate",
                "sensitive_fields",
                "custom"
            ]
        );
    }

    /// A warehouse table of customers, as a source would describe it.
    fn customers() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("customer_id", DataType::String),
                Field::new("email_address", DataType::String),
                Field::new("phone", DataType::String),
                Field::new("ltv", DataType::String),
                Field::new("marketing_opt_in", DataType::Bool),
                Field::new("ssn", DataType::String),
            ],
            &["customer_id"],
        )
    }

    fn customer(id: &str, email: &str, phone: &str, ltv: &str, opt_in: bool) -> Record {
        Record::new(vec![id.into(), email.into(), phone.into(), ltv.into(), opt_in.into(), "078-05-1120".into()])
    }

    /// An ad-audience sync's chain, as a host would build it.
    fn audience_chain() -> Vec<Arc<dyn Transform>> {
        vec![
            Arc::new(Rename::new([("email_address", "email"), ("customer_id", "id")])),
            Arc::new(Filter::consent("marketing_opt_in")),
            Arc::new(Filter::suppress("email", ["unsubscribed@example.com"])),
            Arc::new(Cast::fields([("id", DataType::Int), ("ltv", DataType::Decimal)])),
            Arc::new(Validate::new().required("email").min("ltv", 0)),
            Arc::new(HashPii::email("email").with_gmail_dot_removal(true).with_output_field("email_sha256")),
            Arc::new(HashPii::phone("phone").with_default_country_code("1").with_output_field("phone_sha256")),
            Arc::new(Constant::new("source", "warehouse")),
            Arc::new(DropFields::new(["ssn", "marketing_opt_in"])),
        ]
    }

    #[tokio::test]
    async fn a_chain_accounts_for_every_record() -> TestResult {
        let chain = audience_chain();
        let mut schema = customers()?;
        for t in &chain {
            schema = t.output_schema(&schema)?;
        }
        assert_eq!(schema.field_names(), "id, email_sha256, phone_sha256, ltv, source");
        assert_eq!(schema.key_names().collect::<Vec<_>>(), ["id"]);

        let records = vec![
            customer("1", "Jane.Doe@gmail.com", "(415) 555-2671", "12.50", true),
            customer("2", "no-consent@example.com", "415 555 2671", "1", false),
            customer("3", "unsubscribed@example.com", "415 555 2671", "1", true),
            customer("x4", "bad-id@example.com", "415 555 2671", "1", true),
            customer("5", "negative@example.com", "415 555 2671", "-1", true),
            customer("6", "no-at-sign", "415 555 2671", "1", true),
            customer("7", "short-phone@example.com", "555", "1", true),
        ];
        let total = records.len();
        let mut batch = RowBatch::new(customers()?, records);
        let (mut rejected, mut filtered) = (Vec::new(), 0);
        for t in &chain {
            let TransformOutput { batch: next, rejected: r, filtered: f } = t.apply(batch).await?;
            rejected.extend(r.into_iter().map(|r| r.reason));
            filtered += f;
            batch = next;
        }
        assert_eq!(batch.schema, schema);
        assert_eq!(batch.len() + rejected.len() + filtered, total);
        assert_eq!(filtered, 2);
        assert_eq!(
            rejected,
            [
                "field `id`: cannot cast string to int",
                "field `ltv`: below the minimum 0",
                "field `email`: is not an email address (expected one `@` between a local part and a domain with a dot)",
                "field `phone`: has too few digits for a phone number (E.164: 7 to 15 digits)",
            ]
        );
        let sha = |s: &str| Value::String(super::common::hex(&<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes())));
        assert_eq!(
            batch.records,
            vec![Record::new(vec![
                Value::Int(1),
                sha("janedoe@gmail.com"),
                sha("+14155552671"),
                Value::Decimal(Decimal::parse("12.5")?),
                "warehouse".into(),
            ])]
        );
        Ok(())
    }

    /// Every type in one schema, keyed by `id`.
    fn every_type() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("id", DataType::Int),
                Field::new("s", DataType::String),
                Field::new("n", DataType::Int),
                Field::new("f", DataType::Float),
                Field::new("d", DataType::Decimal),
                Field::new("b", DataType::Bool),
                Field::new("t", DataType::Timestamp),
                Field::new("dt", DataType::Date),
                Field::new("j", DataType::Json),
                Field::new("by", DataType::Bytes),
            ],
            &["id"],
        )
    }

    /// One configuration of every transform that fits [`every_type`].
    fn every_transform() -> Vec<Arc<dyn Transform>> {
        use DataType as T;
        vec![
            Arc::new(Rename::new([("s", "text"), ("id", "key")])),
            Arc::new(Select::new(["s", "id", "n"])),
            Arc::new(DropFields::new(["j"])),
            Arc::new(Cast::fields([("s", T::Int), ("n", T::Float), ("f", T::Decimal), ("d", T::Int)])),
            Arc::new(Cast::fields([("s", T::Timestamp), ("n", T::Bool), ("f", T::Int), ("d", T::Float)])),
            Arc::new(Cast::fields([("s", T::Date), ("t", T::Date), ("dt", T::Timestamp), ("j", T::String)])),
            Arc::new(Cast::fields([("s", T::Json), ("t", T::String), ("dt", T::String), ("by", T::String)])),
            Arc::new(Cast::fields([("f", T::String), ("d", T::String), ("b", T::Int), ("s", T::Bool)])),
            Arc::new(Cast::fields([("s", T::Float), ("n", T::Decimal), ("f", T::Json), ("id", T::String)])),
            Arc::new(Constant::new("c", Value::List(vec![Value::Int(1)]))),
            Arc::new(HashPii::email("s").with_gmail_dot_removal(true)),
            Arc::new(HashPii::phone("s").with_default_country_code("44")),
            Arc::new(HashPii::phone("n").with_plus_prefix(false)),
            Arc::new(HashPii::text("s").with_output_field("h").with_keep_original(true)),
            Arc::new(Mask::keep_last("s", 3)),
            Arc::new(Mask::redact("s").with_null()),
            Arc::new(Filter::consent("b")),
            Arc::new(Filter::suppress("s", ["a", "B "])),
            Arc::new(
                Validate::new()
                    .required("s")
                    .pattern("s", "^[a-z]+$")
                    .length("s", 1, 5)
                    .range("n", -5, 5)
                    .range("f", -0.5, 0.5)
                    .min("d", 0)
                    .one_of("b", [true]),
            ),
            Arc::new(SensitiveFields::new(["s", "j"]).with_detectors(PiiDetector::ALL).allow(["c"])),
            Arc::new(FnTransform::new("identity", |r, _| Ok(Some(r.clone())))),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)].prop_map(Value::Float),
            (any::<i64>(), 0u32..30).prop_map(|(u, s)| Value::Decimal(Decimal::from_scaled(i128::from(u), s))),
            any::<String>().prop_map(Value::String),
            "[ +()0-9a-zA-Z.@-]{0,24}".prop_map(Value::String),
            "-?[0-9]{1,20}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?"
                .prop_map(Value::String),
            any::<Vec<u8>>().prop_map(|b| Value::Bytes(b.into())),
            any::<i32>().prop_map(Value::Date),
            any::<i64>().prop_map(Value::Timestamp),
            any::<Option<i64>>().prop_map(|n| Value::Json(serde_json::json!({ "n": n, "s": "x" }))),
            proptest::collection::vec(any::<i64>().prop_map(Value::Int), 0..3).prop_map(Value::List),
        ]
    }

    proptest! {
        /// Whatever the values, and even when their types or the record's width do not
        /// match the schema, every transform returns every record exactly once, never
        /// panics, and passes records that fit its output schema.
        #[test]
        fn every_record_comes_back_exactly_once(
            records in proptest::collection::vec(proptest::collection::vec(arb_value(), 9..=11), 0..8)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build()?;
            let input = every_type().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let records: Vec<Record> = records.into_iter().map(Record::new).collect();
            for transform in every_transform() {
                let output_schema = transform.output_schema(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let batch = RowBatch::new(Arc::clone(&input), records.clone());
                let out = runtime.block_on(transform.apply(batch)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(out.batch.len() + out.rejected.len() + out.filtered, records.len(), "{}", transform.name());
                prop_assert_eq!(&out.batch.schema, &output_schema);
                for record in &out.batch.records {
                    prop_assert_eq!(record.values.len(), output_schema.len(), "{}", transform.name());
                }
                for rejection in &out.rejected {
                    prop_assert!(records.contains(&rejection.record), "{}: a rejection carries its record as received", transform.name());
                }
                let again = RowBatch::new(Arc::clone(&input), records.clone());
                let second = runtime.block_on(transform.apply(again)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&second.batch.records, &out.batch.records, "{} is deterministic", transform.name());
            }
        }
    }
}
