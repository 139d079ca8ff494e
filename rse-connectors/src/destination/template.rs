//! Key templates of the Redis and NATS destinations: `features:{user_id}`, `crm.contacts.{id}`.

use rse_core::{Schema, Value};

use crate::encode::value_to_text;

/// Replaces `{column}` placeholders in `template` with the key's values (text form) and
/// `{sync_id}` with `sync_id` as given; `sanitize` maps each key value (e.g. to keep a NATS
/// subject token valid, or a Redis key unambiguous).
pub(crate) fn fill_template(
    template: &[TemplatePart],
    sync_id: &str,
    key_values: &[Value],
    sanitize: impl Fn(&str) -> String,
) -> String {
    let mut out = String::new();
    for part in template {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::SyncId => out.push_str(sync_id),
            TemplatePart::KeyColumn(i) => {
                let text = key_values.get(*i).and_then(value_to_text).unwrap_or_default();
                out.push_str(&sanitize(&text));
            }
        }
    }
    out
}

/// One piece of a parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplatePart {
    Literal(String),
    SyncId,
    /// The key column at this position of the key.
    KeyColumn(usize),
}

/// Parses `template` against `schema`'s key columns.
///
/// # Errors
/// A message naming a placeholder that is not a key column (with the key columns there are),
/// or an unclosed brace.
pub(crate) fn parse_template(template: &str, schema: &Schema) -> Result<Vec<TemplatePart>, String> {
    let key_names: Vec<&str> = schema.key_names().collect();
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("key template `{template}` has an unclosed `{{`"))?;
        let name = &after[..close];
        if name == "sync_id" {
            parts.push(TemplatePart::SyncId);
        } else {
            let i = key_names.iter().position(|k| *k == name).ok_or_else(|| {
                format!(
                    "key template `{template}` names `{{{name}}}`, which is not a key column (key columns: {}; or `{{sync_id}}`)",
                    key_names.join(", ")
                )
            })?;
            parts.push(TemplatePart::KeyColumn(i));
        }
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::KeyColumn(_))) && !key_names.is_empty() {
        return Err(format!(
            "key template `{template}` names no key column, so every record would share one key; add one of: {}",
            key_names.iter().map(|k| format!("{{{k}}}")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(parts)
}
