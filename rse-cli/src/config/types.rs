//! Data types and values as a file writes them.

use std::fmt;

use rse::{DataType, Value};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The type names a file may use.
pub(crate) const TYPE_NAMES: &str = "bool, int, float, decimal, string, bytes, date, timestamp, json, list<TYPE>";

/// A data type written as its name: `int`, `decimal`, `list<string>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeName(pub(crate) DataType);

/// Parses a type name as [`DataType`]'s `Display` writes it.
pub(crate) fn parse_type(text: &str) -> Option<DataType> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
        return parse_type(inner).map(|t| DataType::List(Box::new(t)));
    }
    Some(match text {
        "bool" => DataType::Bool,
        "int" => DataType::Int,
        "float" => DataType::Float,
        "decimal" => DataType::Decimal,
        "string" => DataType::String,
        "bytes" => DataType::Bytes,
        "date" => DataType::Date,
        "timestamp" => DataType::Timestamp,
        "json" => DataType::Json,
        _ => return None,
    })
}

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_type(&text)
            .map(TypeName)
            .ok_or_else(|| de::Error::custom(format!("`{text}` is not a data type; expected one of {TYPE_NAMES}")))
    }
}

/// A value written in TOML: a string, a number, a boolean or an array of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Literal(pub(crate) Value);

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LiteralVisitor).map(Literal)
    }
}

struct LiteralVisitor;

impl<'de> Visitor<'de> for LiteralVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number, a boolean or an array of them")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| E::custom("the number is too large for an int"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Literal(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
}

/// `value` as a value of `data_type`: text becomes a decimal or JSON, a number a decimal,
/// anything a JSON document; otherwise the value must already be of the type.
pub(crate) fn coerce(value: Value, data_type: &DataType) -> Result<Value, String> {
    let value = match (data_type, value) {
        (DataType::Decimal, Value::String(s)) => {
            Value::Decimal(s.parse().map_err(|_| format!("`{s}` is not a decimal number"))?)
        }
        (DataType::Decimal, Value::Int(i)) => {
            Value::Decimal(i.to_string().parse().map_err(|_| "not a decimal".to_owned())?)
        }
        (DataType::Decimal, Value::Float(f)) => {
            Value::Decimal(f.to_string().parse().map_err(|_| format!("{f} is not a finite decimal"))?)
        }
        (DataType::Float, Value::Int(i)) => Value::Float(i as f64),
        (DataType::Json, Value::String(s)) => {
            Value::Json(serde_json::from_str(&s).map_err(|e| format!("the text is not a JSON document: {e}"))?)
        }
        (DataType::Json, v) => Value::Json(to_json(&v)),
        (DataType::List(inner), Value::List(items)) => {
            Value::List(items.into_iter().map(|v| coerce(v, inner)).collect::<Result<_, _>>()?)
        }
        (_, v) => v,
    };
    if data_type.accepts(&value) {
        Ok(value)
    } else {
        Err(format!("the value does not fit type {data_type}; write a {data_type} value"))
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
        Value::String(s) => s.clone().into(),
        Value::List(items) => items.iter().map(to_json).collect(),
        _ => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_read_as_display_writes_them() {
        for t in [
            DataType::Bool,
            DataType::Int,
            DataType::Float,
            DataType::Decimal,
            DataType::String,
            DataType::Bytes,
            DataType::Date,
            DataType::Timestamp,
            DataType::Json,
            DataType::List(Box::new(DataType::List(Box::new(DataType::Int)))),
        ] {
            assert_eq!(parse_type(&t.to_string()), Some(t));
        }
        assert_eq!(parse_type("integer"), None);
    }

    #[test]
    fn literals_coerce_to_declared_types() {
        assert!(matches!(coerce(Value::String("12.50".into()), &DataType::Decimal), Ok(Value::Decimal(_))));
        assert!(matches!(coerce(Value::Int(3), &DataType::Json), Ok(Value::Json(_))));
        assert!(coerce(Value::String("x".into()), &DataType::Int).is_err());
    }
}
