//! `[[sync.<name>.transform]]`: the built-in transforms of `rse::transform`, in order.

use std::collections::BTreeMap;
use std::ops::Range;

use rse::transform::{
    Cast, Constant, DropFields, Filter, HashPii, Mask, PiiDetector, Rename, Select, SensitiveFields, Validate,
};
use rse::{SyncBuilder, Value};
use serde::Deserialize;
use toml::de::DeTable;

use super::error::ConfigError;
use super::tree::{Doc, join};
use super::types::{Literal, TypeName, coerce};

/// The transform types a file may name.
pub(crate) const TYPES: &[&str] =
    &["rename", "select", "drop", "cast", "constant", "hash_pii", "mask", "filter", "validate", "sensitive_fields"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameSpec {
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsSpec {
    fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CastSpec {
    fields: BTreeMap<String, TypeName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstantSpec {
    field: String,
    value: Literal,
    #[serde(default)]
    data_type: Option<TypeName>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PiiKind {
    Email,
    Phone,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HashPiiSpec {
    field: String,
    pii: PiiKind,
    #[serde(default)]
    output_field: Option<String>,
    #[serde(default)]
    keep_original: bool,
    #[serde(default)]
    gmail_dot_removal: bool,
    #[serde(default)]
    default_country_code: Option<String>,
    #[serde(default)]
    plus_prefix: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskSpec {
    field: String,
    #[serde(default)]
    keep_last: Option<usize>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    null: bool,
    #[serde(default)]
    mask_char: Option<char>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterSpec {
    field: String,
    #[serde(default)]
    consent: bool,
    #[serde(default)]
    suppress: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    field: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    min_length: Option<usize>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    min: Option<Literal>,
    #[serde(default)]
    max: Option<Literal>,
    #[serde(default)]
    one_of: Option<Vec<Literal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateSpec {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Detector {
    Email,
    PaymentCard,
    UsSsn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SensitiveSpec {
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    detectors: Vec<Detector>,
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug)]
enum Kind {
    Rename(RenameSpec),
    Select(FieldsSpec),
    Drop(FieldsSpec),
    Cast(CastSpec),
    Constant(ConstantSpec),
    HashPii(HashPiiSpec),
    Mask(MaskSpec),
    Filter(FilterSpec),
    Validate(ValidateSpec),
    Sensitive(SensitiveSpec),
}

/// One transform as the file describes it.
#[derive(Debug)]
pub(crate) struct TransformSpec {
    kind: Kind,
    path: String,
    span: Range<usize>,
}

impl TransformSpec {
    /// Reads the transform table at `path`.
    pub(crate) fn parse(
        doc: &Doc,
        path: &str,
        span: Range<usize>,
        mut table: DeTable<'_>,
    ) -> Result<Self, ConfigError> {
        let (kind, _) = doc.take_type(path, span.clone(), &mut table, "transform", TYPES)?;
        let s = span.clone();
        let also = &["type"];
        let kind = match kind.as_str() {
            "rename" => Kind::Rename(doc.read_table(path, s, table, also)?),
            "select" => Kind::Select(doc.read_table(path, s, table, also)?),
            "drop" => Kind::Drop(doc.read_table(path, s, table, also)?),
            "cast" => Kind::Cast(doc.read_table(path, s, table, also)?),
            "constant" => {
                let spec: ConstantSpec = doc.read_table(path, s, table, also)?;
                if let Some(TypeName(t)) = &spec.data_type {
                    coerce(spec.value.0.clone(), t).map_err(|m| doc.invalid(span.clone(), &join(path, "value"), m))?;
                }
                Kind::Constant(spec)
            }
            "hash_pii" => Kind::HashPii(doc.read_table(path, s, table, also)?),
            "mask" => Kind::Mask(doc.read_table(path, s, table, also)?),
            "filter" => {
                let spec: FilterSpec = doc.read_table(path, s, table, also)?;
                if spec.consent == spec.suppress.is_some() {
                    return Err(doc.invalid(
                        span,
                        path,
                        "a filter keeps records with consent (`consent = true`) or leaves out a suppression list \
                         (`suppress = [\"a@example.com\"]`): give one of them",
                    ));
                }
                Kind::Filter(spec)
            }
            "validate" => Kind::Validate(doc.read_table(path, s, table, also)?),
            _ => Kind::Sensitive(doc.read_table(path, s, table, also)?),
        };
        Ok(Self { kind, path: path.to_owned(), span })
    }

    /// The file path of this transform (`sync.x.transform[2]`) and its span.
    pub(crate) fn place(&self) -> (&str, Range<usize>) {
        (&self.path, self.span.clone())
    }

    /// Appends the transform to `builder`.
    pub(crate) fn apply(self, doc: &Doc, builder: SyncBuilder) -> Result<SyncBuilder, ConfigError> {
        Ok(match self.kind {
            Kind::Rename(r) => builder.transform(Rename::new(r.fields)),
            Kind::Select(f) => builder.transform(Select::new(f.fields)),
            Kind::Drop(f) => builder.transform(DropFields::new(f.fields)),
            Kind::Cast(c) => builder.transform(Cast::fields(c.fields.into_iter().map(|(f, TypeName(t))| (f, t)))),
            Kind::Constant(c) => match c.data_type {
                Some(TypeName(t)) => {
                    let value =
                        coerce(c.value.0, &t).map_err(|m| doc.invalid(self.span, &join(&self.path, "value"), m))?;
                    builder.transform(Constant::typed(c.field, t, value))
                }
                None => builder.transform(Constant::new(c.field, c.value.0)),
            },
            Kind::HashPii(h) => {
                let mut t = match h.pii {
                    PiiKind::Email => HashPii::email(h.field),
                    PiiKind::Phone => HashPii::phone(h.field),
                    PiiKind::Text => HashPii::text(h.field),
                };
                if let Some(out) = h.output_field {
                    t = t.with_output_field(out);
                }
                if let Some(code) = h.default_country_code {
                    t = t.with_default_country_code(code);
                }
                if let Some(plus) = h.plus_prefix {
                    t = t.with_plus_prefix(plus);
                }
                builder.transform(t.with_keep_original(h.keep_original).with_gmail_dot_removal(h.gmail_dot_removal))
            }
            Kind::Mask(m) => {
                let mut t = match m.keep_last {
                    Some(n) => Mask::keep_last(m.field, n),
                    None => Mask::redact(m.field),
                };
                if let Some(text) = m.text {
                    t = t.with_mask_text(text);
                }
                if m.null {
                    t = t.with_null();
                }
                if let Some(c) = m.mask_char {
                    t = t.with_mask_char(c);
                }
                builder.transform(t)
            }
            Kind::Filter(f) => match f.suppress {
                Some(list) => builder.transform(Filter::suppress(f.field, list)),
                None => builder.transform(Filter::consent(f.field)),
            },
            Kind::Validate(v) => {
                let mut t = Validate::new();
                for rule in v.rules {
                    let field = rule.field;
                    if rule.required {
                        t = t.required(field.clone());
                    }
                    if let Some(p) = rule.pattern {
                        t = t.pattern(field.clone(), p);
                    }
                    if let Some(n) = rule.min_length {
                        t = t.min_length(field.clone(), n);
                    }
                    if let Some(n) = rule.max_length {
                        t = t.max_length(field.clone(), n);
                    }
                    if let Some(Literal(v)) = rule.min {
                        t = t.min(field.clone(), bound(v));
                    }
                    if let Some(Literal(v)) = rule.max {
                        t = t.max(field.clone(), bound(v));
                    }
                    if let Some(values) = rule.one_of {
                        t = t.one_of(field.clone(), values.into_iter().map(|Literal(v)| v));
                    }
                }
                builder.transform(t)
            }
            Kind::Sensitive(s) => {
                let detectors = s.detectors.into_iter().map(|d| match d {
                    Detector::Email => PiiDetector::Email,
                    Detector::PaymentCard => PiiDetector::PaymentCard,
                    Detector::UsSsn => PiiDetector::UsSsn,
                });
                builder.transform(SensitiveFields::new(s.fields).with_detectors(detectors).allow(s.allow))
            }
        })
    }
}

/// A range bound: text is read as an exact decimal (`"19.99"`).
fn bound(value: Value) -> Value {
    match value {
        Value::String(s) => s.parse().map(Value::Decimal).unwrap_or(Value::String(s)),
        v => v,
    }
}
