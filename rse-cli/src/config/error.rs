//! The error of a configuration: where in the file, which field, what is expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`ConfigError`] reports, for a command that maps it to an exit
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key or value is not what its place takes: an unknown field, a wrong type, a
    /// missing field, an unknown kind of source, transform or destination.
    Invalid,
    /// A secret reference (`${env:NAME}`, `${file:/path}`) cannot be resolved.
    Secret,
    /// No sync of the asked name is in the file.
    UnknownSync,
    /// The parts were built but do not fit together: a key column the source lacks, a
    /// transform on a field that is not there, a URL that does not parse.
    Build,
    /// A part could not be opened or reached: a state store, a destination that
    /// connects when it is built.
    Unavailable,
}

/// Line and column (both from 1, the column in characters) of a place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub(crate) fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position { line, column: before[line_start..].chars().count() + 1 }
    }
}

/// A configuration problem: the file, the line and column, the field (a dotted path such
/// as `sync.customers.destination.table`) and what is wrong or expected.
///
/// It displays as `rse.toml:12:9: sync.customers.source.key: …`; without a place (a
/// file that cannot be read) as `rse.toml: …`. Messages never hold a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    file: PathBuf,
    position: Option<Position>,
    field: Option<String>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, file: &Path, message: impl Into<String>) -> Self {
        Self { kind, file: file.to_path_buf(), position: None, field: None, message: message.into() }
    }

    pub(crate) fn at(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = if field.is_empty() { None } else { Some(field) };
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The configuration file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Where in the file, when the problem has a place.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// The field at fault as a dotted path (`sync.customers.options.batch_rows`), when
    /// there is one.
    pub fn field_path(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong and what is expected, without the place.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // After the two-byte `é`: the column counts characters.
        assert_eq!(Position::of(text, 9), Position { line: 2, column: 3 });
        assert_eq!(Position::of(text, 1_000), Position { line: 3, column: 1 });
    }
}
