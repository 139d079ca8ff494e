//! Record fields to vendor properties: which field goes to which property ([`FieldMap`]),
//! and how each value is written for the vendor ([`ValueStyle`]).
//!
//! | [`Value`] | [`ValueStyle::HubSpot`] (every value a string) | [`ValueStyle::Salesforce`] (JSON natives) |
//! |---|---|---|
//! | `Null` | `""`: clears the property | `null`: clears the field |
//! | `Bool` | `"true"` / `"false"` | `true` / `false` |
//! | `Int` | `"42"` | `42` |
//! | `Float` | plain decimal, never an exponent: `"0.1"`, `"1000000000000000000000"`; NaN and ±∞ refused | a number (`0.1`, `1e+21`); NaN and ±∞ refused |
//! | `Decimal` | the exact decimal, `"12.5"` | a number when a JSON reader gets it back exactly (an integer of up to 19 digits, or a decimal a float holds exactly); else refused, never rounded |
//! | `String` | as is | as is |
//! | `Date` | `"2024-03-01"` | `"2024-03-01"` |
//! | `Timestamp` | `"2024-05-01T12:00:00.000Z"`: UTC, milliseconds (sub-millisecond digits dropped) | the same |
//! | `List` of strings | `"a;b;c"`: a multiple-checkbox property | `"a;b;c"`: a multi-select picklist |
//!
//! Bytes, JSON documents and lists of anything but strings have no property type at either
//! vendor: [`FieldMap::bind`] refuses a mapping of such a field (cast it to a string in the
//! model). Dates and timestamps outside the years 0001 to 9999, and a list item that is
//! null or holds a `;`, are refused per record.
//!
//! ```
//! use rse_connectors::saas::{FieldMap, ValueStyle};
//! use rse_core::{DataType, Field, Record, Schema, Value};
//!
//! let schema = Schema::new(
//!     vec![Field::required("id", DataType::Int), Field::new("vip", DataType::Bool), Field::new("tier", DataType::String)],
//!     &["id"],
//! )?;
//! let map: FieldMap = serde_json::from_str(r#"[{"field": "vip", "property": "is_vip"}, {"field": "tier", "property": "plan_tier"}]"#)?;
//! let bound = map.bind(&schema, ValueStyle::HubSpot, "hubspot:contacts")?;
//! let properties = bound.properties(&Record::new(vec![Value::Int(7), Value::Bool(true), Value::Null]))?;
//! assert_eq!(serde_json::Value::Object(properties), serde_json::json!({"is_vip": "true", "plan_tier": ""}));
//!
//! let typo = FieldMap::new().with("teir", "plan_tier").bind(&schema, ValueStyle::HubSpot, "hubspot:contacts");
//! assert!(typo.unwrap_err().to_string().contains("field `teir` (HubSpot property `plan_tier`) is not in the model (fields: id, vip, tier)"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;

use rse_core::time::{format_date, format_timestamp_micros};
use rse_core::{DataType, DestinationError, Record, Schema, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// One field sent as one vendor property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The record's field.
    pub field: String,
    /// The vendor's property (HubSpot internal name, Salesforce field API name).
    pub property: String,
}

/// Which fields go to which vendor properties, in order; as configuration data a list of
/// `{"field": …, "property": …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldMap {
    mappings: Vec<FieldMapping>,
}

impl From<Vec<FieldMapping>> for FieldMap {
    fn from(mappings: Vec<FieldMapping>) -> Self {
        Self { mappings }
    }
}

impl FieldMap {
    /// No mapping yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `field` sent as `property`.
    pub fn with(mut self, field: impl Into<String>, property: impl Into<String>) -> Self {
        self.push(field, property);
        self
    }

    /// Adds `field` sent as `property`.
    pub fn push(&mut self, field: impl Into<String>, property: impl Into<String>) {
        self.mappings.push(FieldMapping { field: field.into(), property: property.into() });
    }

    /// The mappings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &FieldMapping> {
        self.mappings.iter()
    }

    /// How many fields are mapped.
    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// The property `field` is sent as.
    pub fn property_of(&self, field: &str) -> Option<&str> {
        self.mappings.iter().find(|m| m.field == field).map(|m| m.property.as_str())
    }

    /// Checks the map against `schema` and `style` (call it from
    /// [`Destination::check_schema`](rse_core::Destination::check_schema)), and resolves
    /// each field's position.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] naming the field and the property: a field the schema
    /// lacks (listing the fields there are), a type the vendor has no property for, an
    /// empty property name, a property mapped twice.
    pub fn bind(
        &self,
        schema: &Schema,
        style: ValueStyle,
        destination: &str,
    ) -> Result<BoundFieldMap, DestinationError> {
        let vendor = style.vendor();
        let mut properties = HashSet::new();
        let mut entries = Vec::with_capacity(self.mappings.len());
        for FieldMapping { field, property } in &self.mappings {
            let what = format!("field `{field}` ({vendor} property `{property}`)");
            if property.trim().is_empty() {
                return Err(DestinationError::fatal(format!(
                    "{destination}: field `{field}` is mapped to an empty property name"
                )));
            }
            if !properties.insert(property.as_str()) {
                return Err(DestinationError::fatal(format!(
                    "{destination}: {vendor} property `{property}` is mapped twice; map each property from one field"
                )));
            }
            let index = schema.index_of(field).ok_or_else(|| {
                DestinationError::fatal(format!(
                    "{destination}: {what} is not in the model (fields: {})",
                    schema.field_names()
                ))
            })?;
            let data_type = schema.field(index).map(|f| &f.data_type);
            if let Some(data_type) = data_type.filter(|t| !style.accepts(t)) {
                return Err(DestinationError::fatal(format!(
                    "{destination}: {what} is of type {data_type}, which no {vendor} property holds; cast it to a string (or a number, a date) in the model"
                )));
            }
            entries.push(Bound { index, field: field.clone(), property: property.clone() });
        }
        Ok(BoundFieldMap { style, entries })
    }
}

/// A field's position in the schema and its property.
#[derive(Debug, Clone)]
struct Bound {
    index: usize,
    field: String,
    property: String,
}

/// A [`FieldMap`] checked against a schema: turns records into property objects.
#[derive(Debug, Clone)]
pub struct BoundFieldMap {
    style: ValueStyle,
    entries: Vec<Bound>,
}

impl BoundFieldMap {
    /// The value style.
    pub fn style(&self) -> ValueStyle {
        self.style
    }

    /// `(field, property, field's position in the schema)` of each mapping, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.entries.iter().map(|b| (b.field.as_str(), b.property.as_str(), b.index))
    }

    /// The record's mapped fields as `{property: value}` in the vendor's style.
    ///
    /// # Errors
    /// A rejection reason for this change, naming the field and the property and what is
    /// wrong with the value, never the value itself.
    pub fn properties(&self, record: &Record) -> Result<Map<String, Json>, String> {
        let mut out = Map::with_capacity(self.entries.len());
        for bound in &self.entries {
            let value = record.values.get(bound.index).ok_or_else(|| {
                format!("the record has no value for field `{}`; this is a bug in the connector", bound.field)
            })?;
            let json = self.style.encode(value).map_err(|problem| {
                format!("field `{}` ({} property `{}`): {problem}", bound.field, self.style.vendor(), bound.property)
            })?;
            out.insert(bound.property.clone(), json);
        }
        Ok(out)
    }
}

/// How a vendor wants values written; see the module docs' table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ValueStyle {
    /// HubSpot CRM properties: every value a string.
    #[serde(rename = "hubspot")]
    HubSpot,
    /// Salesforce sObject fields: JSON numbers, booleans and strings.
    #[serde(rename = "salesforce")]
    Salesforce,
}

impl ValueStyle {
    /// The vendor's name, for messages.
    pub fn vendor(self) -> &'static str {
        match self {
            ValueStyle::HubSpot => "HubSpot",
            ValueStyle::Salesforce => "Salesforce",
        }
    }

    /// Whether a field of `data_type` can be mapped to a property.
    pub fn accepts(self, data_type: &DataType) -> bool {
        match data_type {
            DataType::Bool
            | DataType::Int
            | DataType::Float
            | DataType::Decimal
            | DataType::String
            | DataType::Date
            | DataType::Timestamp => true,
            DataType::List(inner) => **inner == DataType::String,
            _ => false,
        }
    }

    /// `value` in this style.
    ///
    /// # Errors
    /// What makes the value unsendable (a NaN, a date past year 9999, a decimal a JSON
    /// number would round), without the value.
    pub fn encode(self, value: &Value) -> Result<Json, String> {
        let hubspot = self == ValueStyle::HubSpot;
        let text = |s: String| Ok(Json::String(s));
        match value {
            Value::Null if hubspot => text(String::new()),
            Value::Null => Ok(Json::Null),
            Value::Bool(b) if hubspot => text(b.to_string()),
            Value::Bool(b) => Ok(Json::Bool(*b)),
            Value::Int(i) if hubspot => text(i.to_string()),
            Value::Int(i) => Ok(Json::from(*i)),
            Value::Float(f) if !f.is_finite() => Err("a NaN or infinite float has no number form".to_owned()),
            Value::Float(f) if hubspot => text(f.to_string()),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(Json::Number).ok_or_else(|| "not a finite float".to_owned())
            }
            Value::Decimal(d) if hubspot => text(d.as_str().to_owned()),
            Value::Decimal(d) => exact_number(d.as_str()),
            Value::String(s) => text(s.clone()),
            Value::Date(days) => {
                let date = format_date(*days);
                if plain_year(&date) { text(date) } else { Err("a date outside the years 0001 to 9999".to_owned()) }
            }
            Value::Timestamp(micros) => millis_timestamp(*micros).map(Json::String),
            Value::List(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) if s.contains(';') => {
                            return Err("a list item holds `;`, which separates the options".to_owned());
                        }
                        Value::String(s) => parts.push(s.as_str()),
                        Value::Null => return Err("a list item is null".to_owned()),
                        other => return Err(format!("a list item is a {}, not a string", other.type_name())),
                    }
                }
                text(parts.join(";"))
            }
            other => Err(format!("a {} value has no {} form", other.type_name(), self.vendor())),
        }
    }
}

/// Whether an ISO date or timestamp text has a plain four-digit year from 0001.
fn plain_year(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && &b[..4] != b"0000"
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for microseconds since the epoch (rounded down to the
/// millisecond).
fn millis_timestamp(micros: i64) -> Result<String, String> {
    let millis_only = micros - micros.rem_euclid(1000);
    let text = format_timestamp_micros(millis_only);
    // `….ffffffZ`: keep three fractional digits.
    match text.len().checked_sub(4) {
        Some(cut) if plain_year(&text) && text.ends_with('Z') => Ok(format!("{}Z", &text[..cut])),
        _ => Err("a timestamp outside the years 0001 to 9999".to_owned()),
    }
}

/// The decimal `text` (normalized: no exponent, no trailing zeros) as a JSON number a
/// reader gets back exactly, or why not.
fn exact_number(text: &str) -> Result<Json, String> {
    if !text.contains('.') {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Json::from(i));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Json::from(u));
        }
    }
    let exact = text.parse::<f64>().ok().filter(|f| f.is_finite() && f.to_string() == text);
    match exact.and_then(serde_json::Number::from_f64) {
        Some(n) => Ok(Json::Number(n)),
        None => Err(format!(
            "a decimal of {} significant digits, more than a JSON number carries exactly; round it in the model",
            text.bytes().filter(u8::is_ascii_digit).count()
        )),
    }
}

#[cfg(test)]
mod tests {
    use rse_core::Decimal;

    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        let decimal = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
        let sf = ValueStyle::Salesforce;
        assert_eq!(sf.encode(&decimal("12.50")).unwrap().to_string(), "12.5");
        assert_eq!(sf.encode(&decimal("123456789012345678")).unwrap().to_string(), "123456789012345678");
        assert_eq!(sf.encode(&decimal("-0.001")).unwrap().to_string(), "-0.001");
        let refused = sf.encode(&decimal("12345678901234567.25")).unwrap_err();
        assert!(refused.contains("19 significant digits"), "{refused}");
        assert_eq!(ValueStyle::HubSpot.encode(&decimal("12345678901234567.25")).unwrap(), "12345678901234567.25");
    }

    #[test]
    fn timestamps_keep_milliseconds_before_the_epoch_too() {
        assert_eq!(millis_timestamp(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(millis_timestamp(1_714_564_800_123_999).unwrap(), "2024-05-01T12:00:00.123Z");
        assert!(millis_timestamp(i64::MAX).is_err());
    }
}
