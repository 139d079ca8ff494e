//! Building requests: URL templates filled per change, JSON bodies, the signature.

use std::fmt;

use hmac::{Hmac, Mac};
use rse_core::{Change, IdempotencyKey, Op, Schema, Value};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::config::{HttpBody, redact_template};
use crate::destination::Secret;
use crate::encode::{key_to_json, value_to_json, value_to_text};

/// One piece of a URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A `{field}` placeholder.
    Field(String),
}

/// A URL template such as `/customers/{id}`, parsed once when the destination is built.
#[derive(Debug, Clone)]
pub(super) struct UrlTemplate {
    text: String,
    parts: Vec<Part>,
}

/// Where the value of one placeholder comes from, once the template meets a schema.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    name: String,
    field: usize,
    /// The position among the key columns, when the field is one (a delete has only these).
    key_pos: Option<usize>,
}

impl UrlTemplate {
    /// Parses `text`.
    ///
    /// # Errors
    /// A message for an unclosed or stray brace, an empty placeholder, or a placeholder in
    /// the scheme or host (a value must never choose where a request goes).
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let shown = redact_template(text);
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("URL template `{shown}` has a `}}` without its `{{`"));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find(['{', '}'])
                .filter(|&c| after[c..].starts_with('}'))
                .ok_or_else(|| format!("URL template `{shown}` has an unclosed `{{`"))?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(format!("URL template `{shown}` has an empty `{{}}`; name a field, e.g. `{{id}}`"));
            }
            parts.push(Part::Field(name.to_owned()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let template = Self { text: text.to_owned(), parts };
        // An absolute template (`scheme://host/…`) or a network-path one (`//host/…`) names
        // its host before the first `/`, `?` or `#` after the `//`; no placeholder may stand
        // there.
        let authority_start = if text.starts_with("//") {
            Some(2)
        } else {
            text.find("://").filter(|&i| !text[..i].contains('/')).map(|i| i + 3)
        };
        let authority_end =
            authority_start.map(|from| text[from..].find(['/', '?', '#']).map_or(text.len(), |i| from + i));
        if let (Some(end), Some(first)) = (authority_end, text.find('{'))
            && first < end
        {
            return Err(format!(
                "URL template `{shown}` has a placeholder in its scheme or host; placeholders may stand in the path and query only"
            ));
        }
        Ok(template)
    }

    /// The template as written, for messages (its query left out).
    pub(super) fn shown(&self) -> String {
        redact_template(&self.text)
    }

    pub(super) fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The text with every placeholder filled by `with`, to check that it resolves.
    pub(super) fn sample(&self, with: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Field(_) => with,
            })
            .collect()
    }

    /// Resolves the placeholders against `schema`; `op` says which fields a change carries.
    ///
    /// # Errors
    /// A message naming a placeholder that is not a field (with the fields there are), or,
    /// for a delete, not a key column.
    pub(super) fn bind(&self, schema: &Schema, op: Op) -> Result<Vec<Slot>, String> {
        let key_names: Vec<&str> = schema.key_names().collect();
        let mut slots = Vec::new();
        for part in &self.parts {
            let Part::Field(name) = part else { continue };
            let field = schema.index_of(name).ok_or_else(|| {
                format!(
                    "the {op} URL template `{}` names `{{{name}}}`, which is not a field (fields: {})",
                    self.shown(),
                    schema.field_names()
                )
            })?;
            let key_pos = key_names.iter().position(|k| k == name);
            if op == Op::Delete && key_pos.is_none() {
                return Err(format!(
                    "the delete URL template `{}` names `{{{name}}}`, which is not a key column; a delete carries only its key (key columns: {})",
                    self.shown(),
                    key_names.join(", ")
                ));
            }
            slots.push(Slot { name: name.clone(), field, key_pos });
        }
        Ok(slots)
    }

    /// The template filled with `change`'s values, each percent-encoded as a path segment.
    ///
    /// # Errors
    /// A rejection reason naming the field: its value is null, or it fills a whole path
    /// segment with nothing, `.` or `..`, which would address another resource.
    pub(super) fn fill(&self, slots: &[Slot], change: &Change, key_values: &[Value]) -> Result<String, String> {
        let mut out = String::new();
        let mut slots = slots.iter();
        // The path is checked segment by segment; the query and fragment are not paths.
        let mut in_path = true;
        let mut segment_start = 0;
        let mut segment_field: Option<&str> = None;
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    for ch in text.chars() {
                        if in_path && matches!(ch, '/' | '?' | '#') {
                            check_segment(&out[segment_start..], segment_field, self)?;
                            segment_field = None;
                            in_path = ch == '/';
                            segment_start = out.len() + 1;
                        }
                        out.push(ch);
                    }
                }
                Part::Field(_) => {
                    let Some(slot) = slots.next() else { return Err("URL template out of step".to_owned()) };
                    let value = match slot.key_pos {
                        Some(pos) => key_values.get(pos),
                        None => change.record.as_ref().and_then(|r| r.values.get(slot.field)),
                    };
                    let text = value.and_then(value_to_text).ok_or_else(|| {
                        format!("`{}` is null, and the URL template `{}` needs its value", slot.name, self.shown())
                    })?;
                    encode_segment(&text, &mut out);
                    segment_field = Some(&slot.name);
                }
            }
        }
        if in_path {
            check_segment(&out[segment_start..], segment_field, self)?;
        }
        Ok(out)
    }
}

fn check_segment(segment: &str, field: Option<&str>, template: &UrlTemplate) -> Result<(), String> {
    match field {
        Some(name) if matches!(segment, "" | "." | "..") => Err(format!(
            "`{name}` would fill a path segment of `{}` with nothing, `.` or `..`, which addresses another resource",
            template.shown()
        )),
        _ => Ok(()),
    }
}

/// Appends `text` percent-encoded as one path segment: every byte but the unreserved
/// characters of RFC 3986 (letters, digits, `-`, `.`, `_`, `~`) is escaped, so a value
/// cannot add a segment, a query or a fragment.
pub(super) fn encode_segment(text: &str, out: &mut String) {
    use fmt::Write as _;
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The JSON object of one change for `body`; `None` when the body holds nothing.
///
/// # Errors
/// A rejection reason: the field mapping names a field the schema lacks, or the key could
/// not be decoded.
pub(super) fn change_object(
    body: HttpBody,
    schema: &Schema,
    fields: &[(String, String)],
    change: &Change,
) -> Result<Option<Json>, String> {
    let envelope = match body {
        HttpBody::None => return Ok(None),
        HttpBody::Record | HttpBody::RecordArray => false,
        _ => true,
    };
    let key = || change.key.decode().map_err(|e| format!("key could not be decoded: {e}"));
    let record = match &change.record {
        Some(r) => {
            let mut obj = Map::new();
            if fields.is_empty() {
                for (f, v) in schema.fields().iter().zip(&r.values) {
                    obj.insert(f.name.clone(), value_to_json(v));
                }
            } else {
                for (target, source) in fields {
                    let i = schema.index_of(source).ok_or_else(|| {
                        format!(
                            "field mapping names `{source}`, which the schema lacks (fields: {})",
                            schema.field_names()
                        )
                    })?;
                    obj.insert(target.clone(), r.values.get(i).map_or(Json::Null, value_to_json));
                }
            }
            Json::Object(obj)
        }
        // A plain delete body names the record by its key columns, under their mapped names.
        None if !envelope => {
            let key = key()?;
            let obj = schema
                .key_names()
                .zip(&key)
                .map(|(name, v)| {
                    let target = fields.iter().find(|(_, s)| s == name).map_or(name, |(t, _)| t.as_str());
                    (target.to_owned(), value_to_json(v))
                })
                .collect();
            Json::Object(obj)
        }
        None => Json::Null,
    };
    if !envelope {
        return Ok(Some(record));
    }
    let mut obj = Map::new();
    obj.insert("op".into(), Json::String(change.op.as_str().to_owned()));
    obj.insert("idempotency_key".into(), Json::String(change.idempotency_key.to_string()));
    obj.insert("key".into(), Json::Object(key_to_json(schema, &key()?)));
    obj.insert("record".into(), record);
    Ok(Some(Json::Object(obj)))
}

/// The `Idempotency-Key` of a request carrying several changes: SHA-256 (first 128 bits,
/// hex) of their keys in order, so the very same batch re-sent carries the same header.
pub(super) fn batch_idempotency_key<'a>(keys: impl Iterator<Item = &'a IdempotencyKey>) -> String {
    let mut h = Sha256::new();
    for key in keys {
        h.update(key.0);
    }
    hex(&h.finalize()[..16])
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `"{timestamp}.{body}"`).
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_refuse_what_they_cannot_mean() {
        assert!(UrlTemplate::parse("/customers/{id}").is_ok());
        assert!(UrlTemplate::parse("https://api.example.com/v1/customers/{id}?tenant={t}").is_ok());
        assert!(UrlTemplate::parse("/a//b/{id}").is_ok());
        for bad in [
            "/customers/{id",
            "/customers/id}",
            "/customers/{}",
            "https://{tenant}.example.com/c/{id}",
            "{scheme}://example.com/c",
            "//{host}/c",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_keep_values_inside_them() {
        let mut out = String::new();
        encode_segment("a/b c?d#e%f.g~", &mut out);
        assert_eq!(out, "a%2Fb%20c%3Fd%23e%25f.g~");
    }
}
