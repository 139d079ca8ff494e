//! Secret references inside strings: `${env:NAME}` and `${file:/path}`.

use std::borrow::Cow;
use std::path::Path;

use toml::de::DeValue;

use super::error::{ConfigError, ConfigErrorKind};
use super::tree::{Doc, Node, join};

/// One piece of a string: literal text or a reference.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'s> {
    Text(Cow<'s, str>),
    Env(&'s str),
    File(&'s str),
}

/// Splits `text` into literal pieces and references; `$${` is a literal `${`.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: an escaped `${`.
            out.push(Piece::Text(Cow::Owned(format!("{}{{", &rest[..at]))));
            rest = &rest[at + 2..];
            continue;
        }
        if at > 0 {
            out.push(Piece::Text(Cow::Borrowed(&rest[..at])));
        }
        let inner = &rest[at + 2..];
        let Some(end) = inner.find('}') else {
            return Err(
                "a `${` is not closed by `}`; write `${env:NAME}` or `${file:/path}`, or `$${` for a literal `${`"
                    .to_owned(),
            );
        };
        let reference = &inner[..end];
        let piece = match reference.split_once(':') {
            Some(("env", name)) if !name.trim().is_empty() => Piece::Env(name.trim()),
            Some(("file", path)) if !path.trim().is_empty() => Piece::File(path.trim()),
            _ => {
                return Err(format!(
                    "`${{{reference}}}` is not a secret reference; write `${{env:NAME}}` or `${{file:/path}}` (or `$${{` \
                     for a literal `${{`)"
                ));
            }
        };
        out.push(piece);
        rest = &inner[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(Cow::Borrowed(rest)));
    }
    Ok(out)
}

/// Checks the syntax of every reference under `node` (at `path`), reading no secret.
pub(crate) fn check(doc: &Doc, path: &str, node: &Node<'_>) -> Result<(), ConfigError> {
    match node.get_ref() {
        DeValue::String(s) => {
            pieces(s).map_err(|m| doc.error(ConfigErrorKind::Secret, node.span(), path, m))?;
        }
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                check(doc, &join(path, key.get_ref()), child)?;
            }
        }
        DeValue::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check(doc, &format!("{path}[{i}]"), child)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every reference under `node` (at `path`) by the secret it names, and records
/// each secret read in `read` (so that messages can hide them).
pub(crate) fn resolve(doc: &Doc, path: &str, node: &mut Node<'_>, read: &mut Vec<String>) -> Result<(), ConfigError> {
    let span = node.span();
    match node.get_mut() {
        DeValue::String(s) => {
            if !s.contains("${") {
                return Ok(());
            }
            let parts = pieces(s).map_err(|m| doc.error(ConfigErrorKind::Secret, span.clone(), path, m))?;
            let mut value = String::new();
            for part in parts {
                match part {
                    Piece::Text(t) => value.push_str(&t),
                    Piece::Env(name) => {
                        let secret =
                            from_env(name).map_err(|m| doc.error(ConfigErrorKind::Secret, span.clone(), path, m))?;
                        value.push_str(&secret);
                        read.push(secret);
                    }
                    Piece::File(file) => {
                        let secret = from_file(&doc.resolve_path(Path::new(file)))
                            .map_err(|m| doc.error(ConfigErrorKind::Secret, span.clone(), path, m))?;
                        value.push_str(&secret);
                        read.push(secret);
                    }
                }
            }
            *s = Cow::Owned(value);
        }
        DeValue::Table(table) => {
            for (key, child) in table.iter_mut() {
                resolve(doc, &join(path, key.get_ref()), child, read)?;
            }
        }
        DeValue::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                resolve(doc, &format!("{path}[{i}]"), child, read)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn from_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| match e {
        std::env::VarError::NotPresent => {
            format!("`${{env:{name}}}`: the environment variable `{name}` is not set; set it to the secret")
        }
        std::env::VarError::NotUnicode(_) => {
            format!("`${{env:{name}}}`: the environment variable `{name}` is not valid Unicode")
        }
    })
}

/// The file's contents without one trailing line break (as a mounted secret usually ends).
fn from_file(path: &Path) -> Result<String, String> {
    let mut value = std::fs::read_to_string(path)
        .map_err(|e| format!("`${{file:{}}}`: cannot read the secret file: {e}", path.display()))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

/// `message` with every secret in `read` replaced by `***`.
pub(crate) fn redact(message: &str, read: &[String]) -> String {
    let mut message = message.to_owned();
    for secret in read.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "***");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_from_text_and_escapes_stay_literal() {
        assert_eq!(
            pieces("postgres://app:${env:PGPASS}@db/x").unwrap_or_default(),
            vec![Piece::Text("postgres://app:".into()), Piece::Env("PGPASS"), Piece::Text("@db/x".into())]
        );
        assert_eq!(pieces("${file:/run/s}").unwrap_or_default(), vec![Piece::File("/run/s")]);
        assert_eq!(
            pieces("cost $${x}").unwrap_or_default(),
            vec![Piece::Text("cost ${".into()), Piece::Text("x}".into())]
        );
        assert!(pieces("${vault:a}").is_err_and(|m| m.contains("not a secret reference")));
        assert!(pieces("${env:A").is_err_and(|m| m.contains("not closed")));
        assert!(pieces("${env:}").is_err());
    }

    #[test]
    fn redaction_hides_every_secret_read() {
        assert_eq!(redact("bad value `hunter2` here", &["hunter2".into(), String::new()]), "bad value `***` here");
    }
}
