//! `SensitiveFields`: keep back a record whose sensitive data would otherwise reach the destination.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use regex::Regex;

use super::common::{Outcome, PlanCache, Planned, config_error, run_records};
use crate::error::TransformError;
use crate::record::{Record, RowBatch};
use crate::schema::Schema;
use crate::transform::{Rejection, RejectionKind, Transform, TransformOutput};
use crate::value::{DataType, Value};

const NAME: &str = "sensitive_fields";

/// Every reason this transform gives for a block starts so (and no other reason does).
const BLOCKED: &str = "sensitive data kept from the destination: ";

/// A detector of likely personal data in a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PiiDetector {
    /// An email address anywhere in the text (`local@domain.tld`).
    Email,
    /// A payment card number: 13 to 19 digits, spaces or dashes between them allowed, that
    /// pass the Luhn check, standing apart from other letters and digits.
    PaymentCard,
    /// A US social security number written `AAA-GG-SSSS`, with an area other than `000`,
    /// `666` or `900`–`999`, a group other than `00` and a serial other than `0000`.
    UsSsn,
}

impl PiiDetector {
    /// Every detector.
    pub const ALL: [PiiDetector; 3] = [PiiDetector::Email, PiiDetector::PaymentCard, PiiDetector::UsSsn];

    /// Its name in reasons: `email`, `payment_card`, `us_ssn`.
    pub fn name(self) -> &'static str {
        match self {
            PiiDetector::Email => "email",
            PiiDetector::PaymentCard => "payment_card",
            PiiDetector::UsSsn => "us_ssn",
        }
    }

    /// What it finds, in words.
    fn what(self) -> &'static str {
        match self {
            PiiDetector::Email => "an email address",
            PiiDetector::PaymentCard => "a payment card number",
            PiiDetector::UsSsn => "a US social security number",
        }
    }

    /// Whether `text` holds what it looks for.
    fn finds(self, text: &str) -> bool {
        match self {
            PiiDetector::Email => EMAIL.as_ref().is_some_and(|re| re.is_match(text)),
            PiiDetector::PaymentCard => has_card_number(text),
            PiiDetector::UsSsn => SSN.as_ref().is_some_and(|re| re.captures_iter(text).any(|c| ssn_parts_valid(&c))),
        }
    }
}

static EMAIL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}").ok());

static SSN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:^|[^0-9A-Za-z-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?:$|[^0-9A-Za-z-])").ok());

fn ssn_parts_valid(c: &regex::Captures<'_>) -> bool {
    let part = |i| c.get(i).map_or("", |m| m.as_str());
    let (area, group, serial) = (part(1), part(2), part(3));
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Whether `text` holds 13 to 19 digits (single spaces or dashes between them allowed),
/// not touching another letter or digit, that pass the Luhn check.
fn has_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // A run of digits with single separators between them.
        let mut digits = Vec::with_capacity(19);
        let mut j = i;
        while j < bytes.len() {
            match bytes[j] {
                d if d.is_ascii_digit() => digits.push(d - b'0'),
                b' ' | b'-' if j + 1 < bytes.len() && bytes[j + 1].is_ascii_digit() && !digits.is_empty() => {}
                _ => break,
            }
            j += 1;
        }
        let apart = j == bytes.len() || !bytes[j].is_ascii_alphanumeric();
        if apart && (13..=19).contains(&digits.len()) && luhn(&digits) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

/// The Luhn check over `digits`, the check digit last.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `text` is a hex digest: 32, 40, 64 or 128 hex digits (MD5, SHA-1, SHA-256 — what
/// [`HashPii`](super::HashPii) writes — and SHA-512).
fn is_digest(text: &str) -> bool {
    matches!(text.len(), 32 | 40 | 64 | 128) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Keeps back a record whose sensitive data would otherwise reach the destination: a
/// guard at the end of a transform chain, so that a column of personal data that nobody
/// dropped or hashed never leaves the warehouse.
///
/// Two checks, each naming the field and what to do, never the value:
/// - **Marked fields** ([`new`](SensitiveFields::new)): a field the host marks sensitive
///   must, at this point of the chain, be gone (dropped with [`DropFields`](super::DropFields),
///   or hashed under another name), `Null`, or a hex digest (hashed in place with
///   [`HashPii`](super::HashPii)). Any other value keeps the record back. A marked field the
///   input does not have passes: dropping it is the point.
/// - **Detectors** ([`with_detectors`](SensitiveFields::with_detectors)): every string field
///   not marked and not on the [allow-list](SensitiveFields::allow), key columns included,
///   is searched for likely personal data: an email address, a payment card number (by the
///   Luhn check), a US social security number ([`PiiDetector`]). A hex digest is never
///   searched (it is already hashed).
///
/// A kept-back record is refused with a reason such as
/// ``sensitive data kept from the destination: field `notes` holds what looks like an email
/// address (detector `email`); drop or hash the field before this transform, or allow it``.
/// It stays among the sync's rejections like any refused record, and is sent once its row
/// is fixed or the chain drops the field. The runner counts these refusals in
/// [`SENSITIVE_FIELD_BLOCKS_TOTAL`](crate::metrics::SENSITIVE_FIELD_BLOCKS_TOTAL), which an
/// operator is paged for (`RseSensitiveFieldBlocked`).
///
/// Values pass through unchanged; the output schema is the input's.
///
/// # Configuration errors
/// A guard that checks nothing (no marked field and no detector).
///
/// ```
/// # use rse_core::{DataType, Field, Record, RowBatch, Schema, Transform, Value};
/// # use rse_core::transform::{PiiDetector, SensitiveFields};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let input = Schema::new(
///     vec![Field::required("id", DataType::Int), Field::new("ssn", DataType::String), Field::new("notes", DataType::String)],
///     &["id"],
/// )?
/// .into_arc();
/// let guard = SensitiveFields::new(["ssn"]).with_detectors(PiiDetector::ALL);
/// let batch = RowBatch::new(input, vec![
///     Record::new(vec![1.into(), Value::Null, "prefers email".into()]),
///     Record::new(vec![2.into(), "078-05-1120".into(), "".into()]),
///     Record::new(vec![3.into(), Value::Null, "write to jane@example.com".into()]),
/// ]);
/// let out = guard.apply(batch).await?;
/// assert_eq!(out.batch.len(), 1);
/// assert!(out.rejected[0].reason.contains("field `ssn`"));
/// assert!(out.rejected[1].reason.contains("detector `email`"));
/// assert!(!out.rejected[1].reason.contains("jane"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SensitiveFields {
    marked: Vec<String>,
    detectors: Vec<PiiDetector>,
    allowed: Vec<String>,
    cache: PlanCache<Plan>,
}

#[derive(Debug)]
struct Plan {
    /// The marked fields the input has: index and name.
    marked: Vec<(usize, String)>,
    /// The string fields the detectors search: index and name.
    searched: Vec<(usize, String)>,
}

impl SensitiveFields {
    /// A guard on the fields `marked` sensitive: each must be gone, `Null` or hashed by the
    /// time records reach it.
    pub fn new<I, S>(marked: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            marked: marked.into_iter().map(Into::into).collect(),
            detectors: Vec::new(),
            allowed: Vec::new(),
            cache: PlanCache::new(),
        }
    }

    /// Also searches every other string field (but those [allowed](Self::allow)) with
    /// `detectors`, e.g. [`PiiDetector::ALL`].
    pub fn with_detectors(mut self, detectors: impl IntoIterator<Item = PiiDetector>) -> Self {
        for d in detectors {
            if !self.detectors.contains(&d) {
                self.detectors.push(d);
            }
        }
        self
    }

    /// Fields the detectors do not search: string fields whose content the host vouches
    /// for (a product code that passes the Luhn check, a support address meant to be sent).
    pub fn allow<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed.extend(fields.into_iter().map(Into::into));
        self
    }

    fn plan(&self, input: &Arc<Schema>) -> Result<Planned<Plan>, TransformError> {
        if self.marked.is_empty() && self.detectors.is_empty() {
            return Err(config_error(
                NAME,
                "checks nothing: mark the sensitive fields (`SensitiveFields::new([\"ssn\"])`) or add detectors \
                 (`with_detectors(PiiDetector::ALL)`)",
            ));
        }
        let marked: Vec<(usize, String)> =
            self.marked.iter().filter_map(|name| input.index_of(name).map(|i| (i, name.clone()))).collect();
        let searched = if self.detectors.is_empty() {
            Vec::new()
        } else {
            input
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| f.data_type == DataType::String)
                .filter(|(_, f)| !self.marked.contains(&f.name) && !self.allowed.contains(&f.name))
                .map(|(i, f)| (i, f.name.clone()))
                .collect()
        };
        Ok(Planned { output: Arc::clone(input), plan: Plan { marked, searched } })
    }

    fn check(&self, plan: &Plan, record: Record) -> Outcome {
        let mut problems = Vec::new();
        for (i, name) in &plan.marked {
            let holds = match record.values.get(*i) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !is_digest(s),
                Some(_) => true,
            };
            if holds {
                problems.push(format!(
                    "field `{name}` is marked sensitive and still holds a value here; drop it (DropFields) or hash it \
                     (HashPii) before this transform"
                ));
            }
        }
        for (i, name) in &plan.searched {
            let Some(Value::String(text)) = record.values.get(*i) else { continue };
            if is_digest(text) {
                continue;
            }
            if let Some(found) = self.detectors.iter().find(|d| d.finds(text)) {
                problems.push(format!(
                    "field `{name}` holds what looks like {} (detector `{}`); drop or hash the field before this \
                     transform, or allow it (SensitiveFields::allow) if it is meant to be sent",
                    found.what(),
                    found.name()
                ));
            }
        }
        if problems.is_empty() {
            Outcome::Keep(record)
        } else {
            Outcome::Reject(record, format!("{BLOCKED}{}", problems.join("; ")))
        }
    }
}

#[async_trait]
impl Transform for SensitiveFields {
    fn name(&self) -> &str {
        NAME
    }

    fn config_digest(&self) -> Option<String> {
        Some(format!("marked={:?} detectors={:?} allowed={:?}", self.marked, self.detectors, self.allowed))
    }

    fn output_schema(&self, input: &Arc<Schema>) -> Result<Arc<Schema>, TransformError> {
        Ok(self.plan(input)?.output)
    }

    async fn apply(&self, batch: RowBatch) -> Result<TransformOutput, TransformError> {
        let planned = self.cache.get_or_build(&batch.schema, |s| self.plan(s))?;
        Ok(run_records(&planned, batch, |plan, record| self.check(plan, record)))
    }

    fn keeps_key_values(&self, _input: &Arc<Schema>) -> bool {
        true
    }

    fn rejection_kind(&self, rejection: &Rejection) -> RejectionKind {
        if rejection.reason.starts_with(BLOCKED) { RejectionKind::SensitiveField } else { RejectionKind::Invalid }
    }
}

#[cfg(test)]
mod tests {
    use super::super::HashPii;
    use super::super::common::test_support::{TestResult, config_message, schema};
    use super::*;
    use crate::schema::Field;

    fn customers() -> Result<Arc<Schema>, Box<dyn std::error::Error>> {
        schema(
            vec![
                Field::required("id", DataType::Int),
                Field::new("email", DataType::String),
                Field::new("notes", DataType::String),
                Field::new("code", DataType::String),
            ],
            &["id"],
        )
    }

    fn row(id: i64, email: Value, notes: &str, code: &str) -> Record {
        Record::new(vec![Value::Int(id), email, notes.into(), code.into()])
    }

    #[test]
    fn detectors_find_what_they_name_and_not_their_neighbours() {
        let card = PiiDetector::PaymentCard;
        assert!(card.finds("4111 1111 1111 1111"));
        assert!(card.finds("paid with 4111-1111-1111-1111."));
        assert!(card.finds("5500005555555559"));
        assert!(!card.finds("4111 1111 1111 1112"), "fails the Luhn check");
        assert!(!card.finds("order 411111111111"), "too short");
        assert!(!card.finds("x4111111111111111"), "part of a longer token");
        assert!(!card.finds("+1 415 555 2671"));
        let ssn = PiiDetector::UsSsn;
        assert!(ssn.finds("078-05-1120"));
        assert!(ssn.finds("ssn: 219-09-9999 on file"));
        assert!(!ssn.finds("000-12-3456") && !ssn.finds("666-12-3456") && !ssn.finds("912-12-3456"));
        assert!(!ssn.finds("123-00-4567") && !ssn.finds("123-45-0000"));
        assert!(!ssn.finds("2024-05-01") && !ssn.finds("1-078-05-1120-9"));
        let email = PiiDetector::Email;
        assert!(email.finds("Jane.Doe+news@Example.co.uk"));
        assert!(email.finds("write to jane@example.com please"));
        assert!(!email.finds("@handle") && !email.finds("a@b") && !email.finds("user at example dot com"));
    }

    #[tokio::test]
    async fn pii_in_an_unmarked_field_is_refused_without_its_value() -> TestResult {
        let guard = SensitiveFields::new(["email"]).with_detectors(PiiDetector::ALL).allow(["code"]);
        let batch = RowBatch::new(
            customers()?,
            vec![
                row(1, Value::Null, "call after 5pm", "4111111111111111"),
                row(2, Value::Null, "card 4111 1111 1111 1111", ""),
                row(3, Value::Null, "ssn 078-05-1120", ""),
                row(4, Value::Null, "cc jane@example.com", ""),
                row(5, "jane@example.com".into(), "", ""),
            ],
        );
        let out = guard.apply(batch).await?;
        assert_eq!(out.batch.len(), 1, "only the clean row passes (the allowed field is not searched)");
        let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 4);
        assert!(reasons[0].contains("field `notes`") && reasons[0].contains("detector `payment_card`"));
        assert!(reasons[1].contains("detector `us_ssn`"));
        assert!(reasons[2].contains("detector `email`"));
        assert!(reasons[3].contains("field `email` is marked sensitive"));
        for (reason, value) in reasons.iter().zip(["4111", "078-05", "jane", "jane"]) {
            assert!(!reason.contains(value), "{reason}");
            assert!(reason.contains("drop") && reason.contains("hash"), "{reason}");
        }
        for rejection in &out.rejected {
            assert_eq!(guard.rejection_kind(rejection), RejectionKind::SensitiveField);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_hashed_or_dropped_field_passes() -> TestResult {
        let hash = HashPii::email("email");
        let guard = SensitiveFields::new(["email", "ssn"]).with_detectors(PiiDetector::ALL);
        let batch = RowBatch::new(customers()?, vec![row(1, "Jane@Example.com".into(), "", "")]);
        let hashed = hash.apply(batch).await?;
        let out = guard.apply(hashed.batch).await?;
        assert_eq!((out.batch.len(), out.rejected.len()), (1, 0), "the digest is neither a value nor an address");
        Ok(())
    }

    #[tokio::test]
    async fn a_malformed_row_is_refused_as_invalid_not_as_sensitive() -> TestResult {
        let guard = SensitiveFields::new(["email"]);
        let out = guard.apply(RowBatch::new(customers()?, vec![Record::new(vec![Value::Int(1)])])).await?;
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(guard.rejection_kind(&out.rejected[0]), RejectionKind::Invalid);
        Ok(())
    }

    #[test]
    fn a_guard_that_checks_nothing_is_a_configuration_error() -> TestResult {
        let message = config_message(SensitiveFields::new(Vec::<String>::new()).output_schema(&customers()?));
        assert!(message.contains("checks nothing"), "{message}");
        Ok(())
    }
}
