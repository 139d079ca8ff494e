//! The parsed document with the place of every key and value, and typed reads from it
//! whose errors name the file, the line and the field.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, ConfigErrorKind, Position};

/// A value with its place in the file.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// The configuration file's text and where it lives.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) path: PathBuf,
    pub(crate) text: Arc<str>,
    /// Relative paths in the file are relative to this directory.
    pub(crate) dir: PathBuf,
}

impl Doc {
    pub(crate) fn new(path: &Path, text: String) -> Self {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self { path: path.to_path_buf(), text: text.into(), dir }
    }

    /// The document's root table.
    pub(crate) fn parse(&self) -> Result<Spanned<DeTable<'_>>, ConfigError> {
        DeTable::parse(&self.text).map_err(|e| {
            let mut error =
                ConfigError::new(ConfigErrorKind::Syntax, &self.path, format!("not valid TOML: {}", e.message()));
            if let Some(span) = e.span() {
                error = error.at(Position::of(&self.text, span.start));
            }
            error
        })
    }

    /// An error at `span`, on `field`.
    pub(crate) fn error(
        &self,
        kind: ConfigErrorKind,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(kind, &self.path, message).at(Position::of(&self.text, span.start)).field(field)
    }

    /// An [`Invalid`](ConfigErrorKind::Invalid) error at `span`, on `field`.
    pub(crate) fn invalid(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        self.error(ConfigErrorKind::Invalid, span, field, message)
    }

    /// A path in the file made absolute against the file's directory.
    pub(crate) fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.dir.join(path) }
    }

    /// Reads `node` (at `path`) as `T`. An error points at the deepest key under `node`
    /// that holds the place serde complained about; `also` names keys read apart from `T`
    /// (a tag, a URL), listed with the expected ones when a key is unknown.
    pub(crate) fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        node: Node<'_>,
        also: &[&str],
    ) -> Result<T, ConfigError> {
        let copy = node.clone();
        T::deserialize(ValueDeserializer::from(node)).map_err(|e| {
            let span = e.span().unwrap_or_else(|| copy.span());
            let field = locate(path, &copy, span.start);
            self.invalid(span, &field, tidy(e.message(), also))
        })
    }

    /// Reads a whole table (at `path`, spanning `span`) as `T`.
    pub(crate) fn read_table<T: DeserializeOwned>(
        &self,
        path: &str,
        span: Range<usize>,
        table: DeTable<'_>,
        also: &[&str],
    ) -> Result<T, ConfigError> {
        self.read(path, Spanned::new(span, DeValue::Table(table)), also)
    }

    /// Takes `key` out of `table` (at `path`) and reads it as `T`, with its span.
    pub(crate) fn take<T: DeserializeOwned>(
        &self,
        path: &str,
        table: &mut DeTable<'_>,
        key: &str,
    ) -> Result<Option<(T, Range<usize>)>, ConfigError> {
        let Some(node) = table.remove(key) else { return Ok(None) };
        let span = node.span();
        Ok(Some((self.read(&join(path, key), node, &[])?, span)))
    }

    /// Takes the required string `key` out of `table` (at `path`, spanning `span`).
    pub(crate) fn take_required<T: DeserializeOwned>(
        &self,
        path: &str,
        span: Range<usize>,
        table: &mut DeTable<'_>,
        key: &str,
        what: &str,
    ) -> Result<(T, Range<usize>), ConfigError> {
        self.take(path, table, key)?.ok_or_else(|| self.invalid(span, path, format!("missing field `{key}`: {what}")))
    }

    /// Takes the `type` of a tagged table (a source, a transform, a destination, a state
    /// store) and checks it is one of `kinds`.
    pub(crate) fn take_type(
        &self,
        path: &str,
        span: Range<usize>,
        table: &mut DeTable<'_>,
        what: &str,
        kinds: &[&str],
    ) -> Result<(String, Range<usize>), ConfigError> {
        let listed = list(kinds);
        let (kind, kind_span): (String, _) =
            self.take_required(path, span, table, "type", &format!("say which {what} this is, one of {listed}"))?;
        if !kinds.contains(&kind.as_str()) {
            return Err(self.invalid(
                kind_span,
                &join(path, "type"),
                format!("unknown {what} type `{kind}`; expected one of {listed}"),
            ));
        }
        Ok((kind, kind_span))
    }
}

/// `a.b` from `a` and `b`; keys that are not bare words are quoted.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("\"{}\"", key.replace('"', "\\\"")) };
    if path.is_empty() { key } else { format!("{path}.{key}") }
}

/// `` `a`, `b` or `c` ``.
pub(crate) fn list(items: &[&str]) -> String {
    items.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// The dotted path of the deepest key under `node` whose key or value holds `offset`.
fn locate(path: &str, node: &Node<'_>, offset: usize) -> String {
    find(node.get_ref(), offset).map_or_else(
        || path.to_owned(),
        |rest| {
            rest.iter().fold(path.to_owned(), |p, k| if k.starts_with('[') { format!("{p}{k}") } else { join(&p, k) })
        },
    )
}

fn find(value: &DeValue<'_>, offset: usize) -> Option<Vec<String>> {
    let holds = |span: Range<usize>| span.start <= offset && offset < span.end.max(span.start + 1);
    match value {
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                // A table under a `[header]` spans its header only: look inside every child.
                if let Some(mut rest) = find(child.get_ref(), offset) {
                    rest.insert(0, key.get_ref().to_string());
                    return Some(rest);
                }
                if holds(key.span()) || holds(child.span()) {
                    return Some(vec![key.get_ref().to_string()]);
                }
            }
            None
        }
        DeValue::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                if let Some(mut rest) = find(child.get_ref(), offset) {
                    rest.insert(0, format!("[{i}]"));
                    return Some(rest);
                }
                if holds(child.span()) {
                    return Some(vec![format!("[{i}]")]);
                }
            }
            None
        }
        _ => None,
    }
}

/// serde's message in the words of a file (`expected usize` → `expected a whole number
/// (0 or more)`), with the keys read apart added to an unknown field's expected list.
fn tidy(message: &str, also: &[&str]) -> String {
    let mut message = message.trim_end().to_owned();
    for (rust, words) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array, e.g. [\"id\"]"),
        ("expected a map", "expected a table"),
        ("expected a character", "expected a string of one character"),
    ] {
        if let Some(rest) = message.strip_suffix(rust) {
            message = format!("{rest}{words}");
        }
    }
    if also.is_empty() || !message.starts_with("unknown field") {
        return message;
    }
    match message.find(", expected") {
        Some(at) => format!("{}, expected one of {}, {}", &message[..at], list(also), expected_list(&message[at..])),
        None => format!("{message}; expected one of {}", list(also)),
    }
}

/// The names after serde's `, expected one of` / `, expected`.
fn expected_list(tail: &str) -> &str {
    tail.trim_start_matches(", expected one of ").trim_start_matches(", expected ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_of_an_error_is_the_deepest_key_holding_it() {
        let text = "[sync.a.source]\ntype = \"sqlite\"\nkey = [\"id\", 5]\n";
        let doc = Doc::new(Path::new("x.toml"), text.to_owned());
        let root = doc.parse().unwrap_or_else(|e| unreachable!("{e}"));
        let node = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
        let five = text.find('5').unwrap_or_default();
        assert_eq!(locate("", &node, five), "sync.a.source.key[1]");
        assert_eq!(locate("", &node, text.find("sqlite").unwrap_or_default()), "sync.a.source.type");
    }

    #[test]
    fn keys_read_apart_join_the_expected_list() {
        assert_eq!(
            tidy("unknown field `tabel`, expected one of `table`, `kind`", &["type", "path"]),
            "unknown field `tabel`, expected one of `type`, `path`, `table`, `kind`"
        );
        assert_eq!(tidy("missing field `table`", &["type"]), "missing field `table`");
    }
}
