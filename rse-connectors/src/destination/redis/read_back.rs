//! Reading the hashes back, for reconciliation: the record at each key's hash in the sync's
//! schema, and the keys whose hashes exist.
//!
//! A record is read from the fields rse wrote, as the hash's `_rse_fields` list names them
//! (another writer's fields are not the record's); a listed field reads back from its text
//! form ([`value_to_text`](crate::encode::value_to_text)) as the exact value written, and a
//! schema field the list leaves out is null, as it was written. A hash without a readable
//! list reads every schema field it has. A key holding another type than a hash, or a field
//! whose text is not a value of its type, is [`Held::Unreadable`]. A hash that expired (a
//! TTL) is absent.
//!
//! Keys are found with `SCAN … MATCH` on the key template (each key placeholder a `*`), each
//! Redis key parsed back into its key values and kept only when the template writes exactly
//! that Redis key for them (so another writer's keys under the same prefix are left out).
//! Redis has no order to scan in: each page is one full `SCAN` of the matching keys, keeping
//! the `limit` smallest after `after` — a listing costs a scan of the keyspace per page, so
//! reconciliation of a large keyspace is best run with large pages.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use rse_core::{DataType, DestinationError, Held, Key, ReadBack, Record, Schema, Value};

use super::{FIELDS_LIST, KeyTemplate, RedisDestination, classify};
use crate::destination::template::TemplatePart;
use crate::read_back::from_text;

/// Keys asked of each `SCAN` call.
const SCAN_COUNT: usize = 1_000;

impl KeyTemplate {
    /// The `SCAN` pattern of the template's keys: literal text glob-escaped, each key
    /// placeholder `*`.
    fn pattern(&self, sync_id: &str) -> String {
        let mut out = String::new();
        let literal = |text: &str, out: &mut String| {
            for c in text.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        };
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => literal(text, &mut out),
                TemplatePart::SyncId => literal(sync_id, &mut out),
                TemplatePart::KeyColumn(_) => out.push('*'),
            }
        }
        out
    }

    /// The key whose hash is at `redis_key`, when the template writes exactly that key for
    /// it; `None` for a key of another writer.
    fn key_of(&self, sync_id: &str, schema: &Schema, redis_key: &str) -> Option<Key> {
        let mut captures = Vec::new();
        if !split(&self.parts, sync_id, redis_key, &mut captures) {
            return None;
        }
        let types: Vec<&DataType> =
            schema.key_indices().iter().map(|&i| schema.field(i).map(|f| &f.data_type)).collect::<Option<_>>()?;
        let mut values: Vec<Option<Value>> = vec![None; types.len()];
        let columns = self.parts.iter().filter_map(|p| match p {
            TemplatePart::KeyColumn(i) => Some(*i),
            _ => None,
        });
        for (i, text) in columns.zip(captures) {
            let value = from_text(&unescape(text)?, types.get(i)?)?;
            values[i] = Some(value);
        }
        let values: Vec<Value> = values.into_iter().collect::<Option<_>>()?;
        (self.key(sync_id, &values) == redis_key).then(|| Key::from_values(&values))
    }
}

/// Splits `text` along `parts`, each key placeholder's text into `captures`; whether it
/// matched. A placeholder's text never holds `:`, `{` or `}` (they are always escaped).
fn split<'t>(parts: &[TemplatePart], sync_id: &str, text: &'t str, captures: &mut Vec<&'t str>) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((TemplatePart::Literal(literal), rest)) => {
            text.strip_prefix(literal.as_str()).is_some_and(|t| split(rest, sync_id, t, captures))
        }
        Some((TemplatePart::SyncId, rest)) => {
            text.strip_prefix(sync_id).is_some_and(|t| split(rest, sync_id, t, captures))
        }
        Some((TemplatePart::KeyColumn(_), rest)) => {
            let limit = text.find([':', '{', '}']).unwrap_or(text.len());
            for end in (0..=limit).filter(|&end| text.is_char_boundary(end)) {
                captures.push(&text[..end]);
                if split(rest, sync_id, &text[end..], captures) {
                    return true;
                }
                captures.pop();
            }
            false
        }
    }
}

/// `text` with its `%XX` escapes decoded; `None` when they do not decode to UTF-8.
fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The record in a hash's fields (see the module docs); `Absent` for no fields.
fn record_of(schema: &Schema, mut fields: HashMap<Vec<u8>, Vec<u8>>) -> Held {
    if fields.is_empty() {
        return Held::Absent;
    }
    let listed: Option<Vec<String>> =
        fields.get(FIELDS_LIST.as_bytes()).and_then(|list| serde_json::from_slice(list).ok());
    let mut values = Vec::with_capacity(schema.len());
    for field in schema.fields() {
        let written = listed.as_ref().is_none_or(|names| names.contains(&field.name));
        let text = if written { fields.remove(field.name.as_bytes()) } else { None };
        let value = match text {
            None => Some(Value::Null),
            Some(text) => std::str::from_utf8(&text).ok().and_then(|t| from_text(t, &field.data_type)),
        };
        match value {
            Some(v) => values.push(v),
            None => {
                return Held::Unreadable(format!("field `{}` does not read back as {}", field.name, field.data_type));
            }
        }
    }
    Held::Record(Record::new(values))
}

#[async_trait]
impl ReadBack for RedisDestination {
    async fn read(&self, sync_id: &str, schema: &Schema, keys: &[Key]) -> Result<Vec<Held>, DestinationError> {
        let template = self.template(schema)?;
        let mut held = vec![Held::Absent; keys.len()];
        let mut asked = Vec::with_capacity(keys.len());
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (at, key) in keys.iter().enumerate() {
            let Ok(values) = key.decode() else { continue };
            pipe.cmd("HGETALL").arg(template.key(sync_id, &values));
            asked.push(at);
        }
        if asked.is_empty() {
            return Ok(held);
        }
        let mut conn = self.connection.clone();
        let results: Vec<redis::RedisResult<redis::Value>> =
            pipe.query_async(&mut conn).await.map_err(|e| classify(&self.name, "reading hashes back", &e))?;
        for (at, result) in asked.into_iter().zip(results) {
            held[at] = match result {
                Ok(value) => match redis::from_redis_value::<HashMap<Vec<u8>, Vec<u8>>>(value) {
                    Ok(fields) => record_of(schema, fields),
                    Err(_) => Held::Unreadable("the key's hash did not read as field/value pairs".to_owned()),
                },
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    Held::Unreadable("the key holds another type than a hash".to_owned())
                }
                Err(e) => return Err(classify(&self.name, "reading a hash back", &e)),
            };
        }
        Ok(held)
    }

    async fn keys(
        &self,
        sync_id: &str,
        schema: &Schema,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, DestinationError> {
        let template = self.template(schema)?;
        let pattern = template.pattern(sync_id);
        let mut conn = self.connection.clone();
        // The `limit` smallest keys after `after` (SCAN may return a key twice: a set).
        let mut smallest: BTreeSet<Key> = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&self.name, "SCAN of the keys held", &e))?;
            for redis_key in found {
                let Ok(text) = std::str::from_utf8(&redis_key) else { continue };
                let Some(key) = template.key_of(sync_id, schema, text) else { continue };
                if after.is_some_and(|a| key <= *a) {
                    continue;
                }
                smallest.insert(key);
                if smallest.len() > limit {
                    smallest.pop_last();
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(smallest.into_iter().collect())
    }
}
