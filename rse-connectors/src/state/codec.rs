//! The exact, self-describing binary form in which the state stores keep values.
//!
//! Refused records and cursors were kept as serde JSON, which has no NaN or infinity: a
//! non-finite float became `null`, and reading it back failed on every later run. JSON's
//! floats are also the wrong place to be exact. This form keeps every [`Value`] as it was:
//! a tag byte per value, floats as their IEEE bits (NaN payload and sign, `-0.0`), JSON
//! documents as a tagged tree whose numbers keep their kind (`i64`, `u64`, float bits).
//!
//! ```text
//! stored value  := FORMAT value
//! stored record := FORMAT len value*
//! value := 0x00 null | 0x01 false | 0x02 true | 0x03 i64 | 0x04 f64-bits | 0x05 len decimal-text
//!        | 0x06 len utf8 | 0x07 len bytes | 0x08 i32 (days) | 0x09 i64 (micros) | 0x0A json
//!        | 0x0B len value*
//! json  := 0x00 null | 0x01 false | 0x02 true | 0x03 i64 | 0x04 u64 | 0x05 f64-bits
//!        | 0x06 len utf8 | 0x07 len json* | 0x08 len (len utf8 json)*
//! ```
//!
//! Fixed-width integers are big-endian; `len` is an unsigned LEB128 count. `FORMAT` (one
//! byte, now 1) lets a later rse change the form and still read this one. Decoding checks
//! every length against the bytes left and limits nesting, so a damaged row is an error,
//! never a panic or a huge allocation.

use bytes::Bytes;
use rse_core::{Decimal, Record, StateError, Value};
use serde_json::Value as J;

use super::corrupt;

/// The first byte of every encoding this rse writes.
const FORMAT: u8 = 1;

/// Lists and JSON documents nest at most this deep in a stored value: far beyond any real
/// record, and shallow enough that decoding a damaged row cannot exhaust the stack.
const MAX_DEPTH: usize = 512;

mod tag {
    pub const NULL: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const INT: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DECIMAL: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const BYTES: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const TIMESTAMP: u8 = 0x09;
    pub const JSON: u8 = 0x0A;
    pub const LIST: u8 = 0x0B;
}

mod json_tag {
    pub const NULL: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const I64: u8 = 0x03;
    pub const U64: u8 = 0x04;
    pub const F64: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const ARRAY: u8 = 0x07;
    pub const OBJECT: u8 = 0x08;
}

/// `value` in the stored form.
///
/// # Errors
/// [`StateError::Other`] for a value of a kind this rse does not know (a newer `Value`
/// variant) or nested deeper than the form allows; it names `what`, never the value.
pub(crate) fn encode_value(what: &str, value: &Value) -> Result<Vec<u8>, StateError> {
    let mut out = Vec::with_capacity(1 + value.estimated_size());
    out.push(FORMAT);
    put_value(&mut out, value, 0).map_err(|e| unencodable(what, e))?;
    Ok(out)
}

/// `record` in the stored form.
///
/// # Errors
/// As [`encode_value`].
pub(crate) fn encode_record(what: &str, record: &Record) -> Result<Vec<u8>, StateError> {
    let mut out = Vec::with_capacity(1 + record.estimated_size());
    out.push(FORMAT);
    put_len(&mut out, record.values.len());
    for value in &record.values {
        put_value(&mut out, value, 0).map_err(|e| unencodable(what, e))?;
    }
    Ok(out)
}

/// The value stored as `bytes` by [`encode_value`].
///
/// # Errors
/// [`StateError::Incompatible`] when the bytes are not such an encoding.
pub(crate) fn decode_value(what: &str, bytes: &[u8]) -> Result<Value, StateError> {
    let mut r = Reader::new(bytes);
    r.format().and_then(|()| r.value(0)).and_then(|v| r.end().map(|()| v)).map_err(|e| undecodable(what, e))
}

/// The record stored as `bytes` by [`encode_record`].
///
/// # Errors
/// [`StateError::Incompatible`] when the bytes are not such an encoding.
pub(crate) fn decode_record(what: &str, bytes: &[u8]) -> Result<Record, StateError> {
    let mut r = Reader::new(bytes);
    let record = (|| -> Read<Record> {
        r.format()?;
        let n = r.len()?;
        let mut values = Vec::with_capacity(n.min(r.left()));
        for _ in 0..n {
            values.push(r.value(0)?);
        }
        r.end()?;
        Ok(Record::new(values))
    })();
    record.map_err(|e| undecodable(what, e))
}

fn unencodable(what: &str, why: &'static str) -> StateError {
    StateError::Other { message: format!("could not store {what}: it holds {why}"), source: None }
}

fn undecodable(what: &str, why: String) -> StateError {
    corrupt(&format!("{what}: {why}"))
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let mut n = n as u64;
    loop {
        let low = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), &'static str> {
    match value {
        Value::Null => out.push(tag::NULL),
        Value::Bool(false) => out.push(tag::FALSE),
        Value::Bool(true) => out.push(tag::TRUE),
        Value::Int(i) => {
            out.push(tag::INT);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(tag::FLOAT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Decimal(d) => {
            out.push(tag::DECIMAL);
            put_bytes(out, d.as_str().as_bytes());
        }
        Value::String(s) => {
            out.push(tag::STRING);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(tag::BYTES);
            put_bytes(out, b);
        }
        Value::Date(d) => {
            out.push(tag::DATE);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Timestamp(t) => {
            out.push(tag::TIMESTAMP);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Value::Json(j) => {
            out.push(tag::JSON);
            put_json(out, j, depth + 1)?;
        }
        Value::List(items) => {
            if depth >= MAX_DEPTH {
                return Err("lists nested too deep");
            }
            out.push(tag::LIST);
            put_len(out, items.len());
            for item in items {
                put_value(out, item, depth + 1)?;
            }
        }
        _ => return Err("a kind of value this rse does not know"),
    }
    Ok(())
}

fn put_json(out: &mut Vec<u8>, json: &J, depth: usize) -> Result<(), &'static str> {
    if depth >= MAX_DEPTH {
        return Err("a JSON document nested too deep");
    }
    match json {
        J::Null => out.push(json_tag::NULL),
        J::Bool(false) => out.push(json_tag::FALSE),
        J::Bool(true) => out.push(json_tag::TRUE),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push(json_tag::I64);
                out.extend_from_slice(&i.to_be_bytes());
            } else if let Some(u) = n.as_u64() {
                out.push(json_tag::U64);
                out.extend_from_slice(&u.to_be_bytes());
            } else if let Some(f) = n.as_f64() {
                out.push(json_tag::F64);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            } else {
                return Err("a JSON number beyond 64 bits");
            }
        }
        J::String(s) => {
            out.push(json_tag::STRING);
            put_bytes(out, s.as_bytes());
        }
        J::Array(items) => {
            out.push(json_tag::ARRAY);
            put_len(out, items.len());
            for item in items {
                put_json(out, item, depth + 1)?;
            }
        }
        J::Object(map) => {
            out.push(json_tag::OBJECT);
            put_len(out, map.len());
            for (k, v) in map {
                put_bytes(out, k.as_bytes());
                put_json(out, v, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// A cursor over stored bytes; every read checks what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Read<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.left() {
            return Err(format!("{n} bytes wanted at offset {} of {}", self.at, self.bytes.len()));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn byte(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn format(&mut self) -> Read<()> {
        match self.byte()? {
            FORMAT => Ok(()),
            other => Err(format!("format {other}, this rse reads format {FORMAT}")),
        }
    }

    fn end(&self) -> Read<()> {
        if self.left() == 0 { Ok(()) } else { Err(format!("{} bytes left over", self.left())) }
    }

    fn len(&mut self) -> Read<usize> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| format!("a length of {n}"));
            }
        }
        Err("a length longer than 64 bits".into())
    }

    fn text(&mut self) -> Read<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!("text that is not UTF-8 ({e})"))
    }

    fn value(&mut self, depth: usize) -> Read<Value> {
        let at = self.at;
        Ok(match self.byte()? {
            tag::NULL => Value::Null,
            tag::FALSE => Value::Bool(false),
            tag::TRUE => Value::Bool(true),
            tag::INT => Value::Int(i64::from_be_bytes(self.array()?)),
            tag::FLOAT => Value::Float(f64::from_bits(u64::from_be_bytes(self.array()?))),
            tag::DECIMAL => {
                Value::Decimal(Decimal::parse(self.text()?).map_err(|_| format!("a malformed decimal at offset {at}"))?)
            }
            tag::STRING => Value::String(self.text()?.to_owned()),
            tag::BYTES => {
                let n = self.len()?;
                Value::Bytes(Bytes::copy_from_slice(self.take(n)?))
            }
            tag::DATE => Value::Date(i32::from_be_bytes(self.array()?)),
            tag::TIMESTAMP => Value::Timestamp(i64::from_be_bytes(self.array()?)),
            tag::JSON => Value::Json(self.json(depth + 1)?),
            tag::LIST => {
                if depth >= MAX_DEPTH {
                    return Err(format!("lists nested deeper than {MAX_DEPTH}"));
                }
                let n = self.len()?;
                // Each element takes at least one byte: a length beyond what is left is
                // damage, and must not size an allocation.
                let mut items = Vec::with_capacity(n.min(self.left()));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            other => return Err(format!("unknown value tag {other:#04x} at offset {at}")),
        })
    }

    fn json(&mut self, depth: usize) -> Read<J> {
        if depth >= MAX_DEPTH {
            return Err(format!("a JSON document nested deeper than {MAX_DEPTH}"));
        }
        let at = self.at;
        Ok(match self.byte()? {
            json_tag::NULL => J::Null,
            json_tag::FALSE => J::Bool(false),
            json_tag::TRUE => J::Bool(true),
            json_tag::I64 => J::from(i64::from_be_bytes(self.array()?)),
            json_tag::U64 => J::from(u64::from_be_bytes(self.array()?)),
            json_tag::F64 => {
                let f = f64::from_bits(u64::from_be_bytes(self.array()?));
                J::Number(serde_json::Number::from_f64(f).ok_or_else(|| format!("a non-finite JSON number at {at}"))?)
            }
            json_tag::STRING => J::String(self.text()?.to_owned()),
            json_tag::ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(self.left()));
                for _ in 0..n {
                    items.push(self.json(depth + 1)?);
                }
                J::Array(items)
            }
            json_tag::OBJECT => {
                let n = self.len()?;
                let mut map = serde_json::Map::new();
                for _ in 0..n {
                    let k = self.text()?.to_owned();
                    let v = self.json(depth + 1)?;
                    map.insert(k, v);
                }
                J::Object(map)
            }
            other => return Err(format!("unknown JSON tag {other:#04x} at offset {at}")),
        })
    }
}
