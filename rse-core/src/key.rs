//! Keys: the key columns of a record in an order-preserving byte encoding.
//!
//! The encoding is "memcomparable": comparing two encoded keys byte by byte gives the same
//! order as comparing their values with [`Value::total_cmp`] column by column. A state store
//! can therefore keep keys as BLOB/bytea and scan them in the order a source returns
//! `ORDER BY key` (text under `COLLATE "C"`).
//!
//! Each value is a tag byte (its type's rank, so types order by rank) and a self-delimiting
//! payload, so the encoding of a composite key is the concatenation of its columns:
//!
//! | type | payload |
//! |---|---|
//! | null | — |
//! | bool | `0` or `1` |
//! | int | 8 bytes big-endian, sign bit flipped |
//! | float | 8 bytes: canonical bits, all inverted if negative, else sign bit set |
//! | decimal | tag by sign; exponent (8 bytes) and digits `1..=10`, then `0`; all inverted if negative |
//! | string, bytes, json | bytes with `00` escaped as `00 FF`, then `00 01` (json: canonical text) |
//! | date | 4 bytes big-endian, sign bit flipped |
//! | timestamp | 8 bytes big-endian, sign bit flipped |
//! | list | each element, then `00` |

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::KeyError;
use crate::value::{Decimal, Value, canonical_f64_bits_ordered, canonical_json};

const TAG_NULL: u8 = 0x01;
const TAG_BOOL: u8 = 0x02;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x04;
const TAG_DEC_NEG: u8 = 0x05;
const TAG_DEC_ZERO: u8 = 0x06;
const TAG_DEC_POS: u8 = 0x07;
const TAG_STRING: u8 = 0x08;
const TAG_BYTES: u8 = 0x09;
const TAG_DATE: u8 = 0x0A;
const TAG_TIMESTAMP: u8 = 0x0B;
const TAG_JSON: u8 = 0x0C;
const TAG_LIST: u8 = 0x0D;

/// Lists nest at most this deep in a key, so decoding hostile bytes cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// The key of a record: its key columns in the order-preserving encoding.
///
/// `Key` orders, hashes and compares by its bytes. `Debug` and `Display` show a short hash
/// of the key, never its values, so a key can go into a log line; [`Key::decode`] gives the
/// values back when a host really wants them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(Box<[u8]>);

impl Key {
    /// The key of these column values, in key order.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut buf = Vec::with_capacity(16);
        for v in values {
            encode_value(v, &mut buf);
        }
        Key(buf.into_boxed_slice())
    }

    /// A key from bytes produced by this encoding, validated.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the bytes are not a valid encoding.
    pub fn from_encoded(bytes: &[u8]) -> Result<Self, KeyError> {
        decode(bytes)?;
        Ok(Key(bytes.into()))
    }

    /// A key from bytes the caller has just encoded itself.
    pub(crate) fn from_encoded_unchecked(bytes: Vec<u8>) -> Self {
        Key(bytes.into_boxed_slice())
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The column values of this key.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the bytes are not a valid encoding, which cannot happen
    /// for a key built by rse.
    pub fn decode(&self) -> Result<Vec<Value>, KeyError> {
        decode(&self.0)
    }

    /// A short, stable hash of the key (16 hex digits) for logs and reports, so that a
    /// key that is itself personal data (an email) never appears in them.
    pub fn redacted(&self) -> KeyHash {
        let digest = Sha256::digest(&self.0);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        KeyHash(u64::from_be_bytes(first))
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.redacted())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.redacted(), f)
    }
}

/// A short hash of a key, safe to log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyHash(pub u64);

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// Appends the encoding of `value` to `buf`.
pub(crate) fn encode_value(value: &Value, buf: &mut Vec<u8>) {
    match value {
        Value::Null => buf.push(TAG_NULL),
        Value::Bool(b) => buf.extend_from_slice(&[TAG_BOOL, u8::from(*b)]),
        Value::Int(i) => {
            buf.push(TAG_INT);
            buf.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float(f) => {
            buf.push(TAG_FLOAT);
            buf.extend_from_slice(&canonical_f64_bits_ordered(*f).to_be_bytes());
        }
        Value::Decimal(d) => encode_decimal(d, buf),
        Value::String(s) => {
            buf.push(TAG_STRING);
            encode_escaped(s.as_bytes(), buf);
        }
        Value::Bytes(b) => {
            buf.push(TAG_BYTES);
            encode_escaped(b, buf);
        }
        Value::Date(d) => {
            buf.push(TAG_DATE);
            buf.extend_from_slice(&((*d as u32) ^ (1 << 31)).to_be_bytes());
        }
        Value::Timestamp(t) => {
            buf.push(TAG_TIMESTAMP);
            buf.extend_from_slice(&((*t as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Json(j) => {
            buf.push(TAG_JSON);
            encode_escaped(canonical_json(j).as_bytes(), buf);
        }
        Value::List(items) => {
            buf.push(TAG_LIST);
            for item in items {
                encode_value(item, buf);
            }
            buf.push(0x00);
        }
    }
}

fn encode_escaped(bytes: &[u8], buf: &mut Vec<u8>) {
    buf.reserve(bytes.len() + 2);
    for &b in bytes {
        buf.push(b);
        if b == 0 {
            buf.push(0xFF);
        }
    }
    buf.extend_from_slice(&[0x00, 0x01]);
}

fn encode_decimal(d: &Decimal, buf: &mut Vec<u8>) {
    let (negative, digits, exp) = d.parts();
    if digits.is_empty() {
        buf.push(TAG_DEC_ZERO);
        return;
    }
    buf.push(if negative { TAG_DEC_NEG } else { TAG_DEC_POS });
    let start = buf.len();
    buf.extend_from_slice(&((exp as u64) ^ (1 << 63)).to_be_bytes());
    buf.extend(digits.iter().map(|d| d - b'0' + 1));
    buf.push(0x00);
    if negative {
        // A larger magnitude is a smaller negative number: invert everything after the tag.
        for b in &mut buf[start..] {
            *b = !*b;
        }
    }
}

fn malformed(at: usize, what: &'static str) -> KeyError {
    KeyError::Malformed { offset: at, reason: what }
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], KeyError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| malformed(self.pos, "truncated fixed-width value"))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    fn escaped(&mut self) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(malformed(self.pos, "unterminated string"));
            };
            self.pos += 1;
            if b != 0 {
                out.push(b);
                continue;
            }
            match self.bytes.get(self.pos) {
                Some(0xFF) => out.push(0),
                Some(0x01) => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(malformed(self.pos, "invalid escape in string")),
            }
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, KeyError> {
        let at = self.pos;
        let Some(&tag) = self.bytes.get(self.pos) else {
            return Err(malformed(at, "missing value tag"));
        };
        self.pos += 1;
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_BOOL => match self.take::<1>()? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                _ => return Err(malformed(at, "invalid bool")),
            },
            TAG_INT => Value::Int((u64::from_be_bytes(self.take()?) ^ (1 << 63)) as i64),
            TAG_FLOAT => {
                let ordered = u64::from_be_bytes(self.take()?);
                let bits = if ordered & (1 << 63) != 0 { ordered & !(1 << 63) } else { !ordered };
                let f = f64::from_bits(bits);
                // Only canonical floats are ever encoded; refuse others so decode∘encode is exact.
                if canonical_f64_bits_ordered(f) != ordered {
                    return Err(malformed(at, "non-canonical float"));
                }
                Value::Float(f)
            }
            TAG_DEC_ZERO => Value::Decimal(Decimal::from_scaled(0, 0)),
            TAG_DEC_NEG | TAG_DEC_POS => {
                let negative = tag == TAG_DEC_NEG;
                let flip = |b: u8| if negative { !b } else { b };
                let mut exp_bytes = self.take::<8>()?;
                for b in &mut exp_bytes {
                    *b = flip(*b);
                }
                let exp = (u64::from_be_bytes(exp_bytes) ^ (1 << 63)) as i64;
                let mut digits = Vec::new();
                loop {
                    let Some(&b) = self.bytes.get(self.pos) else {
                        return Err(malformed(self.pos, "unterminated decimal"));
                    };
                    self.pos += 1;
                    match flip(b) {
                        0 => break,
                        d @ 1..=10 => digits.push(b'0' + d - 1),
                        _ => return Err(malformed(self.pos - 1, "invalid decimal digit")),
                    }
                }
                if digits.first().is_none_or(|&d| d == b'0') || digits.last() == Some(&b'0') {
                    return Err(malformed(at, "non-canonical decimal"));
                }
                if exp.unsigned_abs() > 4_000_000 {
                    return Err(malformed(at, "decimal exponent out of range"));
                }
                Value::Decimal(Decimal::from_parts(negative, &digits, exp))
            }
            TAG_STRING => {
                let raw = self.escaped()?;
                Value::String(String::from_utf8(raw).map_err(|_| malformed(at, "string is not UTF-8"))?)
            }
            TAG_BYTES => Value::Bytes(Bytes::from(self.escaped()?)),
            TAG_DATE => Value::Date((u32::from_be_bytes(self.take()?) ^ (1 << 31)) as i32),
            TAG_TIMESTAMP => Value::Timestamp((u64::from_be_bytes(self.take()?) ^ (1 << 63)) as i64),
            TAG_JSON => {
                let raw = self.escaped()?;
                let json: serde_json::Value =
                    serde_json::from_slice(&raw).map_err(|_| malformed(at, "invalid JSON"))?;
                if canonical_json(&json).as_bytes() != raw.as_slice() {
                    return Err(malformed(at, "non-canonical JSON"));
                }
                Value::Json(json)
            }
            TAG_LIST => {
                if depth >= MAX_DEPTH {
                    return Err(malformed(at, "lists nested too deeply"));
                }
                let mut items = Vec::new();
                loop {
                    match self.bytes.get(self.pos) {
                        Some(0x00) => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => items.push(self.value(depth + 1)?),
                        None => return Err(malformed(self.pos, "unterminated list")),
                    }
                }
                Value::List(items)
            }
            _ => return Err(malformed(at, "unknown value tag")),
        })
    }
}

/// Decodes a whole encoded key into its column values.
fn decode(bytes: &[u8]) -> Result<Vec<Value>, KeyError> {
    let mut decoder = Decoder { bytes, pos: 0 };
    let mut out = Vec::new();
    while decoder.pos < bytes.len() {
        out.push(decoder.value(0)?);
    }
    Ok(out)
}
