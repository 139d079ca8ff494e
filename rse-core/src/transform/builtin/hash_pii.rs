//! `HashPii`: normalise emails, phone numbers or text and replace them by their SHA-256, as ad platforms require.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::common::{
    Outcome, PlanCache, Planned, build_schema, config_error, field_at, hex, run_records, schema_error, type_mismatch,
};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::{Field, Schema};
use crate::transform::{Transform, TransformOutput};
use crate::value::{DataType, Value};

const NAME: &str = "hash_pii";

/// What kind of personal data a field holds, which decides how it is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PiiKind {
    Email,
    Phone,
    Text,
}

/// Normalises a field of personal data and replaces it by the lower-case hex SHA-256 of the
/// normalised text: the form ad platforms (Google Ads Customer Match, Meta Custom
/// Audiences, …) match on.
///
/// Normalisation by kind:
/// - [`email`](HashPii::email): trimmed and lower-cased; it must have one `@` between a
///   non-empty local part and a domain with a dot, and no whitespace inside. With
///   [`with_gmail_dot_removal`](HashPii::with_gmail_dot_removal), dots and a `+suffix` are
///   removed from the local part of `gmail.com` and `googlemail.com` addresses.
/// - [`phone`](HashPii::phone): E.164, `+` then 7 to 15 digits. Spaces, `-`, `.`, `(`, `)`
///   and `/` are removed; any other character rejects the record. A number without a
///   leading `+` gets the [default country code](HashPii::with_default_country_code)
///   prefixed, or is rejected when none is set. National trunk prefixes (the leading `0`
///   of many national formats) are not removed: pass such numbers with their `+` and
///   country code. An int field is read as the digits of a number without `+`.
/// - [`text`](HashPii::text): trimmed and lower-cased.
///
/// `Null` stays `Null`. A blank value (empty after trimming) becomes `Null` when the field
/// is nullable and rejects the record otherwise. A value that does not normalise rejects
/// its record with a reason naming the field (never the value).
///
/// By default the hash replaces the value in place; [`with_output_field`](HashPii::with_output_field)
/// writes it under another name instead, in the same position, and
/// [`with_keep_original`](HashPii::with_keep_original) keeps the original field and
/// appends the hashed one after the existing fields. A hashed key column stays a key
/// column (under its new name), unless the original is kept, which then stays the key.
///
/// # Configuration errors
/// An unknown field (the message lists the fields there are); a field that is not a
/// string (or an int, for a phone); an output field that already exists; keeping the
/// original without naming an output field; a default country code that is not 1 to 3
/// digits.
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform, Value};
/// # use rse_core::transform::HashPii;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(vec![Field::required("id", DataType::Int), Field::new("email", DataType::String)], &["id"])?.into_arc();
/// let hash = HashPii::email("email").with_output_field("email_sha256");
/// let batch = RowBatch::new(input, vec![Record::new(vec![1.into(), "  Jane.Doe@Example.com ".into()])]);
/// let out = hash.apply(batch).await?;
/// assert_eq!(out.batch.schema.field_names(), "id, email_sha256");
/// // SHA-256 of "jane.doe@example.com".
/// assert_eq!(out.batch.records[0].values[1].as_str().map(|h| h.len()), Some(64));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HashPii {
    field: String,
    kind: PiiKind,
    gmail_dot_removal: bool,
    default_country_code: Option<String>,
    plus_prefix: bool,
    output_field: Option<String>,
    keep_original: bool,
    cache: PlanCache<Plan>,
}

#[derive(Debug)]
struct Plan {
    source: usize,
    source_type: DataType,
    nullable: bool,
    /// Where the hash goes: over the source value, or appended.
    append: bool,
    /// The default country code's digits.
    country_code: Option<String>,
}

/// Why a value could not be normalised.
enum Problem {
    Blank,
    Invalid(String),
}

impl HashPii {
    fn with_kind(field: impl Into<String>, kind: PiiKind) -> Self {
        Self {
            field: field.into(),
            kind,
            gmail_dot_removal: false,
            default_country_code: None,
            plus_prefix: true,
            output_field: None,
            keep_original: false,
            cache: PlanCache::new(),
        }
    }

    /// Hashes an email address field.
    pub fn email(field: impl Into<String>) -> Self {
        Self::with_kind(field, PiiKind::Email)
    }

    /// Hashes a phone number field, normalised to E.164.
    pub fn phone(field: impl Into<String>) -> Self {
        Self::with_kind(field, PiiKind::Phone)
    }

    /// Hashes a text field (a name, a city, …), trimmed and lower-cased.
    pub fn text(field: impl Into<String>) -> Self {
        Self::with_kind(field, PiiKind::Text)
    }

    /// For emails at `gmail.com` and `googlemail.com`, removes the dots and any `+suffix`
    /// from the local part, as Google Ads asks (`Jane.Doe+news@gmail.com` →
    /// `janedoe@gmail.com`). Off by default; no effect on other kinds.
    pub fn with_gmail_dot_removal(mut self, enabled: bool) -> Self {
        self.gmail_dot_removal = enabled;
        self
    }

    /// The country calling code (`"1"`, `"44"`, also written `"+44"`) prefixed to phone
    /// numbers written without a leading `+`. Without one, such numbers are rejected.
    pub fn with_default_country_code(mut self, code: impl Into<String>) -> Self {
        self.default_country_code = Some(code.into());
        self
    }

    /// Whether the hashed phone number includes its leading `+` (`+14155552671`, Google
    /// Ads' form; the default) or is digits only (`14155552671`, Meta's form).
    pub fn with_plus_prefix(mut self, enabled: bool) -> Self {
        self.plus_prefix = enabled;
        self
    }

    /// Writes the hash to a field of this name instead of the original's.
    pub fn with_output_field(mut self, name: impl Into<String>) -> Self {
        self.output_field = Some(name.into());
        self
    }

    /// Keeps the original field next to the hashed output field (off by default). Needs
    /// [`with_output_field`](HashPii::with_output_field).
    pub fn with_keep_original(mut self, keep: bool) -> Self {
        self.keep_original = keep;
        self
    }

    fn plan(&self, input: &Schema) -> Result<Planned<Plan>, TransformError> {
        let source = input.require(&self.field, "cannot hash").map_err(|e| schema_error(NAME, &e))?;
        let field = field_at(NAME, input, source)?;
        let type_ok = match self.kind {
            PiiKind::Phone => matches!(field.data_type, DataType::String | DataType::Int),
            PiiKind::Email | PiiKind::Text => field.data_type == DataType::String,
        };
        if !type_ok {
            return Err(config_error(
                NAME,
                format!(
                    "field `{}` is {}, but only string fields{} can be hashed; cast it to string first",
                    self.field,
                    field.data_type,
                    if self.kind == PiiKind::Phone { " and int fields" } else { "" }
                ),
            ));
        }
        let country_code = match &self.default_country_code {
            None => None,
            Some(code) => {
                let digits = code.trim().trim_start_matches('+');
                let valid = (1..=3).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0');
                if !valid {
                    return Err(config_error(
                        NAME,
                        format!(
                            "default country code `{code}` is not a country calling code (1 to 3 digits, e.g. `1` or `44`)"
                        ),
                    ));
                }
                Some(digits.to_owned())
            }
        };
        let output_name = self.output_field.as_deref().unwrap_or(&self.field);
        if self.keep_original && output_name == self.field {
            return Err(config_error(
                NAME,
                format!(
                    "keeping the original field `{}` needs a different output field; call `with_output_field`",
                    self.field
                ),
            ));
        }
        if output_name != self.field && input.index_of(output_name).is_some() {
            return Err(config_error(
                NAME,
                format!(
                    "output field `{output_name}` already exists (fields: {}); choose another name",
                    input.field_names()
                ),
            ));
        }
        let hashed = Field { name: output_name.to_owned(), data_type: DataType::String, nullable: field.nullable };
        let mut fields = input.fields().to_vec();
        let mut key: Vec<String> = input.key_names().map(str::to_owned).collect();
        if self.keep_original {
            fields.push(hashed);
        } else {
            if let Some(slot) = fields.get_mut(source) {
                *slot = hashed;
            }
            for k in &mut key {
                if *k == self.field {
                    output_name.clone_into(k);
                }
            }
        }
        let plan = Plan {
            source,
            source_type: field.data_type.clone(),
            nullable: field.nullable,
            append: self.keep_original,
            country_code,
        };
        Ok(Planned { output: build_schema(NAME, fields, &key)?, plan })
    }

    fn hash_record(&self, plan: &Plan, mut record: Record) -> Outcome {
        let value = record.values.get(plan.source).unwrap_or(&Value::Null);
        let hashed = match value {
            Value::Null => Value::Null,
            _ if !plan.source_type.accepts(value) => {
                let reason = type_mismatch(&self.field, &plan.source_type, value);
                return Outcome::Reject(record, reason);
            }
            _ => match self.normalise(plan, value) {
                Ok(text) => Value::String(hex(&Sha256::digest(text.as_bytes()))),
                Err(Problem::Blank) if plan.nullable => Value::Null,
                Err(Problem::Blank) => {
                    let reason = format!("field `{}`: is blank, but the field is not nullable", self.field);
                    return Outcome::Reject(record, reason);
                }
                Err(Problem::Invalid(why)) => {
                    let reason = format!("field `{}`: {why}", self.field);
                    return Outcome::Reject(record, reason);
                }
            },
        };
        if plan.append {
            record.values.push(hashed);
        } else if let Some(slot) = record.values.get_mut(plan.source) {
            *slot = hashed;
        }
        Outcome::Keep(record)
    }

    /// The text to hash for a non-null `value`.
    fn normalise(&self, plan: &Plan, value: &Value) -> Result<String, Problem> {
        match (self.kind, value) {
            (PiiKind::Email, Value::String(s)) => self.normalise_email(s),
            (PiiKind::Phone, Value::String(s)) => self.normalise_phone(plan, s),
            (PiiKind::Phone, Value::Int(i)) if *i >= 0 => self.normalise_phone(plan, &i.to_string()),
            (PiiKind::Phone, Value::Int(_)) => {
                Err(Problem::Invalid("is a negative number, not a phone number".to_owned()))
            }
            (PiiKind::Text, Value::String(s)) => {
                let text = s.trim().to_lowercase();
                if text.is_empty() { Err(Problem::Blank) } else { Ok(text) }
            }
            _ => Err(Problem::Invalid(format!("cannot hash a {} value", value.type_name()))),
        }
    }

    fn normalise_email(&self, raw: &str) -> Result<String, Problem> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(Problem::Blank);
        }
        let invalid = || {
            Problem::Invalid(
                "is not an email address (expected one `@` between a local part and a domain with a dot)".to_owned(),
            )
        };
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let well_formed = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(char::is_whitespace);
        if !well_formed {
            return Err(invalid());
        }
        if self.gmail_dot_removal && (domain == "gmail.com" || domain == "googlemail.com") {
            let local: String = local.split('+').next().unwrap_or_default().chars().filter(|&c| c != '.').collect();
            if local.is_empty() {
                return Err(invalid());
            }
            return Ok(format!("{local}@{domain}"));
        }
        Ok(email)
    }

    fn normalise_phone(&self, plan: &Plan, raw: &str) -> Result<String, Problem> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Problem::Blank);
        }
        let (has_plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
            } else if !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')' | '/')) {
                return Err(Problem::Invalid(
                    "is not a phone number (only digits, separators and a leading `+` are allowed)".to_owned(),
                ));
            }
        }
        if !has_plus {
            let Some(code) = &plan.country_code else {
                return Err(Problem::Invalid(
                    "has no country code: it has no leading `+` and no default country code is configured \
                     (`with_default_country_code`)"
                        .to_owned(),
                ));
            };
            digits.insert_str(0, code);
        }
        if digits.len() < 7 {
            return Err(Problem::Invalid("has too few digits for a phone number (E.164: 7 to 15 digits)".to_owned()));
        }
        if digits.len() > 15 {
            return Err(Problem::Invalid("has too many digits for a phone number (E.164: 7 to 15 digits)".to_owned()));
        }
        Ok(if self.plus_prefix { format!("+{digits}") } else { digits })
    }
}

#[async_trait]
impl Transform for HashPii {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!(
            "field={:?} kind={:?} gmail_dots={} country={:?} plus={} output={:?} keep={}",
            self.field,
            self.kind,
            self.gmail_dot_removal,
            self.default_country_code,
            self.plus_prefix,
            self.output_field,
            self.keep_original
        ))
    }

    fn keeps_key_values(&self, input: &Arc<Schema>) -> bool {
        !input.is_key(self.output_field.as_deref().unwrap_or(&self.field))
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |plan, record| self.hash_record(plan, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;

    fn sha256(text: &str) -> Value {
        Value::String(hex(&Sha256::digest(text.as_bytes())))
    }

    /// Runs `hash` over one record per value of a nullable string field `pii`; returns the
    /// output and the rejections.
    async fn run(hash: HashPii, values: Vec<Value>) -> Result<TransformOutput, Box<dyn std::error::Error>> {
        let input = schema(vec![Field::required("id", DataType::Int), Field::new("pii", DataType::String)], &["id"])?;
        let records = values.into_iter().zip(1..).map(|(v, id)| Record::new(vec![Value::Int(id), v])).collect();
        Ok(hash.apply(RowBatch::new(input, records)).await?)
    }

    fn hashes(out: &TransformOutput) -> Vec<Value> {
        out.batch.records.iter().filter_map(|r| r.values.get(1).cloned()).collect()
    }

    #[test]
    fn the_known_sha256_vector_matches() {
        assert_eq!(sha256("abc"), Value::from("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    }

    #[tokio::test]
    async fn emails_are_trimmed_lowercased_and_hashed() -> TestResult {
        let out = run(HashPii::email("pii"), vec![" Jane.Doe+news@GMail.com ".into(), Value::Null]).await?;
        assert_eq!(hashes(&out), vec![sha256("jane.doe+news@gmail.com"), Value::Null]);
        let gmail = HashPii::email("pii").with_gmail_dot_removal(true);
        let out = run(
            gmail,
            vec!["Jane.Doe+news@gmail.com".into(), "j.doe+x@googlemail.com".into(), "j.doe+x@example.com".into()],
        )
        .await?;
        assert_eq!(
            hashes(&out),
            vec![sha256("janedoe@gmail.com"), sha256("jdoe@googlemail.com"), sha256("j.doe+x@example.com")]
        );
        Ok(())
    }

    #[tokio::test]
    async fn invalid_emails_are_rejected_without_their_value() -> TestResult {
        let bad = ["jane.example.com", "@example.com", "jane@", "jane@localhost", "ja ne@example.com", "a@b@c.com"];
        let out = run(HashPii::email("pii"), bad.iter().map(|&s| Value::from(s)).collect()).await?;
        assert!(out.batch.is_empty());
        assert_eq!(out.rejected.len(), bad.len());
        for (rejection, value) in out.rejected.iter().zip(bad) {
            assert!(rejection.reason.starts_with("field `pii`: is not an email address"), "{}", rejection.reason);
            assert!(!rejection.reason.contains(value), "{}", rejection.reason);
            assert_eq!(rejection.record.values.get(1), Some(&Value::from(value)), "rejected as received");
        }
        Ok(())
    }

    #[tokio::test]
    async fn phones_are_normalised_to_e164() -> TestResult {
        let hash = HashPii::phone("pii").with_default_country_code("+1");
        let out = run(hash, vec!["+1 (415) 555-2671".into(), "415.555.2671".into(), "+44 20 7946 0958".into()]).await?;
        assert_eq!(hashes(&out), vec![sha256("+14155552671"), sha256("+14155552671"), sha256("+442079460958")]);
        let meta = HashPii::phone("pii").with_plus_prefix(false);
        let out = run(meta, vec!["+1 415 555 2671".into()]).await?;
        assert_eq!(hashes(&out), vec![sha256("14155552671")]);
        Ok(())
    }

    #[tokio::test]
    async fn int_phone_fields_are_hashed() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int), Field::new("phone", DataType::Int)], &["id"])?;
        let hash = HashPii::phone("phone").with_default_country_code("1");
        let out = hash.apply(RowBatch::new(input, vec![Record::new(vec![1.into(), 4_155_552_671_i64.into()])])).await?;
        assert_eq!(out.batch.schema.field(1), Some(&Field::new("phone", DataType::String)));
        assert_eq!(hashes(&out), vec![sha256("+14155552671")]);
        Ok(())
    }

    #[tokio::test]
    async fn invalid_phones_are_rejected_with_the_rule() -> TestResult {
        let cases = [
            ("415 555 2671", "has no country code"),
            ("+1 415 555 2671 ext 4", "is not a phone number"),
            ("+1 2345", "has too few digits"),
            ("+1234567890123456", "has too many digits"),
            ("1-800-FLOWERS", "is not a phone number"),
        ];
        let out = run(HashPii::phone("pii"), cases.iter().map(|(v, _)| Value::from(*v)).collect()).await?;
        assert_eq!(out.rejected.len(), cases.len());
        for (rejection, (_, rule)) in out.rejected.iter().zip(cases) {
            assert!(rejection.reason.starts_with(&format!("field `pii`: {rule}")), "{}", rejection.reason);
            assert!(!rejection.reason.contains("555"), "{}", rejection.reason);
        }
        Ok(())
    }

    #[tokio::test]
    async fn text_is_trimmed_and_lowercased_and_blank_becomes_null() -> TestResult {
        let out = run(HashPii::text("pii"), vec![" Zoë ".into(), "   ".into()]).await?;
        assert_eq!(hashes(&out), vec![sha256("zoë"), Value::Null]);
        let input =
            schema(vec![Field::required("id", DataType::Int), Field::required("name", DataType::String)], &["id"])?;
        let out =
            HashPii::text("name").apply(RowBatch::new(input, vec![Record::new(vec![1.into(), " ".into()])])).await?;
        let reason = out.rejected.first().map(|r| r.reason.as_str()).unwrap_or_default();
        assert_eq!(reason, "field `name`: is blank, but the field is not nullable");
        Ok(())
    }

    #[tokio::test]
    async fn output_field_replaces_or_keeps_the_original() -> TestResult {
        let replace = HashPii::email("pii").with_output_field("pii_sha256");
        let out = run(replace, vec!["a@example.com".into()]).await?;
        assert_eq!(out.batch.schema.field_names(), "id, pii_sha256");
        assert_eq!(hashes(&out), vec![sha256("a@example.com")]);

        let keep = HashPii::email("pii").with_output_field("pii_sha256").with_keep_original(true);
        let out = run(keep, vec!["A@example.com".into()]).await?;
        assert_eq!(out.batch.schema.field_names(), "id, pii, pii_sha256");
        assert_eq!(
            out.batch.records,
            vec![Record::new(vec![1.into(), "A@example.com".into(), sha256("a@example.com")])]
        );
        Ok(())
    }

    #[test]
    fn a_hashed_key_column_stays_the_key() -> TestResult {
        let input = schema(vec![Field::required("email", DataType::String)], &["email"])?;
        let output = HashPii::email("email").with_output_field("email_sha256").output_schema(&input)?;
        assert_eq!(output.key_names().collect::<Vec<_>>(), ["email_sha256"]);
        assert_eq!(output.field(0).map(|f| f.nullable), Some(false));
        let output = HashPii::email("email").with_output_field("h").with_keep_original(true).output_schema(&input)?;
        assert_eq!(output.key_names().collect::<Vec<_>>(), ["email"]);
        Ok(())
    }

    #[test]
    fn misconfiguration_is_reported_naming_the_field() -> TestResult {
        let input = schema(vec![Field::required("id", DataType::Int), Field::new("pii", DataType::String)], &["id"])?;
        let message = config_message(HashPii::email("mail").output_schema(&input));
        assert!(message.contains("`mail` not found (fields: id, pii)"), "{message}");
        let message = config_message(HashPii::email("id").output_schema(&input));
        assert!(message.contains("field `id` is int, but only string fields can be hashed"), "{message}");
        let message = config_message(HashPii::email("pii").with_output_field("id").output_schema(&input));
        assert!(message.contains("output field `id` already exists"), "{message}");
        let message = config_message(HashPii::email("pii").with_keep_original(true).output_schema(&input));
        assert!(message.contains("keeping the original field `pii` needs a different output field"), "{message}");
        let message = config_message(HashPii::phone("pii").with_default_country_code("01").output_schema(&input));
        assert!(message.contains("default country code `01`"), "{message}");
        Ok(())
    }
}
