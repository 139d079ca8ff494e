//! `[sync.<name>.source]`: what a sync reads.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use rse::SyncBuilder;
use serde::Deserialize;
use toml::de::DeTable;

use super::error::ConfigError;
use super::tree::{Doc, join};
use super::types::TypeName;

/// The source types a file may name, in this build.
pub(crate) const TYPES: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "files")]
    "csv",
    #[cfg(feature = "files")]
    "jsonl",
    #[cfg(feature = "parquet")]
    "parquet",
];

/// A SQL model: a table (optionally in a schema) or a query.
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) struct ModelSpec {
    table: Option<String>,
    schema: Option<String>,
    query: Option<String>,
}

impl ModelSpec {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn model(&self) -> rse::sources::Model {
        use rse::sources::Model;
        match (&self.query, &self.schema, &self.table) {
            (Some(q), _, _) => Model::query(q.clone()),
            (None, Some(s), Some(t)) => Model::qualified(s.clone(), t.clone()),
            (None, _, t) => Model::table(t.clone().unwrap_or_default()),
        }
    }

    fn check(&self, doc: &Doc, path: &str, span: Range<usize>) -> Result<(), ConfigError> {
        match (&self.table, &self.query) {
            (Some(_), Some(_)) => Err(doc.invalid(span, path, "give `table` or `query`, not both")),
            (None, None) => Err(doc.invalid(
                span,
                path,
                "missing field `table`: name the table or view to read (or give `query` with a SELECT)",
            )),
            (None, Some(_)) if self.schema.is_some() => {
                Err(doc.invalid(span, path, "`schema` goes with `table`; a query names its own tables"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
struct SqlSpec {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    column_types: BTreeMap<String, TypeName>,
    #[serde(default, with = "rse::config::duration_opt")]
    connect_timeout: Option<std::time::Duration>,
    #[serde(default)]
    pushdown_schema: Option<String>,
    #[serde(default)]
    pushdown_readers: Option<std::num::NonZeroUsize>,
}

/// A field declared for a CSV or JSON Lines file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "files"), allow(dead_code))]
struct FieldSpec {
    name: String,
    #[serde(rename = "type")]
    data_type: TypeName,
    #[serde(default = "yes")]
    nullable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(not(feature = "files"), allow(dead_code))]
enum OnMalformed {
    Fail,
    Reject,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(all(feature = "files", feature = "parquet")), allow(dead_code))]
struct FileSpec {
    path: PathBuf,
    #[serde(default)]
    key: Vec<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    sorted_by_key: bool,
    // CSV and JSON Lines.
    #[serde(default)]
    schema: Option<Vec<FieldSpec>>,
    #[serde(default)]
    infer_rows: Option<usize>,
    #[serde(default)]
    on_malformed: Option<OnMalformed>,
    // CSV.
    #[serde(default)]
    delimiter: Option<char>,
    #[serde(default)]
    quote: Option<char>,
    #[serde(default)]
    header: Option<bool>,
    // Parquet.
    #[serde(default)]
    columns: Option<Vec<String>>,
}

/// A source as the file describes it, its secrets resolved or not.
#[derive(Debug)]
pub(crate) struct SourceSpec {
    kind: String,
    sql: Option<(SqlSpec, ModelSpec)>,
    file: Option<FileSpec>,
    path: String,
    span: Range<usize>,
    /// The span of `url` (PostgreSQL), where a URL that does not parse is reported.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    url_span: Option<Range<usize>>,
}

/// The keys each type takes, beyond `type`.
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "sqlite" => &["type", "path", "table", "schema", "query", "key", "cursor", "column_types"],
        "postgres" => &[
            "type",
            "url",
            "table",
            "schema",
            "query",
            "key",
            "cursor",
            "connect_timeout",
            "pushdown_schema",
            "pushdown_readers",
        ],
        "csv" => &[
            "type",
            "path",
            "key",
            "cursor",
            "schema",
            "infer_rows",
            "delimiter",
            "quote",
            "header",
            "sorted_by_key",
            "on_malformed",
        ],
        "jsonl" => &["type", "path", "key", "cursor", "schema", "infer_rows", "sorted_by_key", "on_malformed"],
        _ => &["type", "path", "key", "cursor", "columns", "sorted_by_key"],
    }
}

/// A text file source (`csv`, `jsonl`) with the options both take: key, cursor, declared
/// schema and how many rows to infer it from.
#[cfg(feature = "files")]
macro_rules! text_file_source {
    ($ty:path, $doc:expr, $f:expr) => {{
        let mut source = <$ty>::new($doc.resolve_path(&$f.path));
        if !$f.key.is_empty() {
            source = source.with_key($f.key);
        }
        if let Some(cursor) = $f.cursor {
            source = source.with_cursor(cursor);
        }
        if let Some(schema) = $f.schema {
            source = source.with_schema(fields(schema));
        }
        if let Some(rows) = $f.infer_rows {
            source = source.with_infer_rows(rows);
        }
        source
    }};
}

impl SourceSpec {
    /// Reads the source table at `path`.
    pub(crate) fn parse(
        doc: &Doc,
        path: &str,
        span: Range<usize>,
        mut table: DeTable<'_>,
    ) -> Result<Self, ConfigError> {
        let (kind, _) = doc.take_type(path, span.clone(), &mut table, "source", TYPES)?;
        let allowed = keys_of(&kind);
        // Keys one type takes and another does not: refused with this type's list.
        if let Some((key, node)) = table.iter().find(|(k, _)| !allowed.contains(&k.get_ref().as_ref())) {
            let key = key.get_ref().to_string();
            return Err(doc.invalid(
                node.span(),
                &join(path, &key),
                format!("unknown field `{key}` for a {kind} source, expected one of {}", super::tree::list(allowed)),
            ));
        }
        let url_span = table.get("url").map(|n| n.span());
        let mut spec =
            Self { kind: kind.clone(), sql: None, file: None, path: path.to_owned(), span: span.clone(), url_span };
        match kind.as_str() {
            "sqlite" | "postgres" => {
                let sql: SqlSpec = doc.read_table(path, span.clone(), table, &["type"])?;
                let what = if kind == "sqlite" { "the SQLite file to read" } else { "the PostgreSQL connection URL" };
                let (needed, given) =
                    if kind == "sqlite" { ("path", sql.path.is_some()) } else { ("url", sql.url.is_some()) };
                if !given {
                    return Err(doc.invalid(span, path, format!("missing field `{needed}`: {what}")));
                }
                let model =
                    ModelSpec { table: sql.table.clone(), schema: sql.schema.clone(), query: sql.query.clone() };
                model.check(doc, path, span)?;
                spec.sql = Some((sql, model));
            }
            _ => {
                let file: FileSpec = doc.read_table(path, span.clone(), table, &["type"])?;
                for (name, c) in [("delimiter", file.delimiter), ("quote", file.quote)] {
                    if c.is_some_and(|c| !c.is_ascii()) {
                        return Err(doc.invalid(span, &join(path, name), "must be one ASCII character"));
                    }
                }
                spec.file = Some(file);
            }
        }
        Ok(spec)
    }

    /// The source's type (`sqlite`, `postgres`, `csv`, `jsonl`, `parquet`).
    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }

    /// The span of the key list, or of the source table.
    pub(crate) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Puts the source on `builder`.
    pub(crate) fn apply(self, doc: &Doc, builder: SyncBuilder) -> Result<SyncBuilder, ConfigError> {
        match self.kind.as_str() {
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let Some((sql, model)) = self.sql else { return Ok(builder) };
                let file = doc.resolve_path(&sql.path.unwrap_or_default());
                let mut source = rse::sources::sqlite::SqliteSource::new(file, model.model());
                if !sql.key.is_empty() {
                    source = source.with_key(sql.key);
                }
                if let Some(cursor) = sql.cursor {
                    source = source.with_cursor(cursor);
                }
                for (column, TypeName(data_type)) in sql.column_types {
                    source = source.with_column_type(column, data_type);
                }
                Ok(builder.source(source))
            }
            #[cfg(feature = "postgres")]
            "postgres" => {
                let Some((sql, model)) = self.sql else { return Ok(builder) };
                let url = sql.url.unwrap_or_default();
                let mut source =
                    rse::sources::postgres::PostgresSource::from_url(&url, model.model()).map_err(|e| {
                        doc.error(
                            super::error::ConfigErrorKind::Build,
                            self.url_span.clone().unwrap_or(self.span.clone()),
                            &join(&self.path, "url"),
                            e.to_string(),
                        )
                    })?;
                if !sql.key.is_empty() {
                    source = source.with_key(sql.key);
                }
                if let Some(cursor) = sql.cursor {
                    source = source.with_cursor(cursor);
                }
                if let Some(timeout) = sql.connect_timeout {
                    source = source.with_connect_timeout(timeout);
                }
                if let Some(schema) = sql.pushdown_schema {
                    source = source.with_pushdown_schema(schema);
                }
                if let Some(readers) = sql.pushdown_readers {
                    source = source.with_pushdown_readers(readers.get());
                }
                Ok(builder.source(source))
            }
            #[cfg(feature = "files")]
            "csv" => {
                let Some(f) = self.file else { return Ok(builder) };
                let mut source = text_file_source!(rse::sources::files::CsvSource, doc, f);
                if let Some(c) = f.delimiter {
                    source = source.with_delimiter(c as u8);
                }
                if let Some(c) = f.quote {
                    source = source.with_quote(c as u8);
                }
                if let Some(header) = f.header {
                    source = source.with_header(header);
                }
                if let Some(m) = f.on_malformed {
                    source = source.with_on_malformed(on_malformed(m));
                }
                Ok(builder.source(source.with_sorted_by_key(f.sorted_by_key)))
            }
            #[cfg(feature = "files")]
            "jsonl" => {
                let Some(f) = self.file else { return Ok(builder) };
                let mut source = text_file_source!(rse::sources::files::JsonLinesSource, doc, f);
                if let Some(m) = f.on_malformed {
                    source = source.with_on_malformed(on_malformed(m));
                }
                Ok(builder.source(source.with_sorted_by_key(f.sorted_by_key)))
            }
            #[cfg(feature = "parquet")]
            "parquet" => {
                let Some(f) = self.file else { return Ok(builder) };
                let mut source = rse::sources::parquet::ParquetSource::new(doc.resolve_path(&f.path));
                if !f.key.is_empty() {
                    source = source.with_key(f.key);
                }
                if let Some(cursor) = f.cursor {
                    source = source.with_cursor(cursor);
                }
                if let Some(columns) = f.columns {
                    source = source.with_columns(columns);
                }
                Ok(builder.source(source.with_sorted_by_key(f.sorted_by_key)))
            }
            _ => Err(doc.invalid(self.span, &self.path, format!("source type `{}` is not in this build", self.kind))),
        }
    }
}

#[cfg(feature = "files")]
fn fields(specs: Vec<FieldSpec>) -> Vec<rse::Field> {
    specs
        .into_iter()
        .map(|f| {
            if f.nullable {
                rse::Field::new(f.name, f.data_type.0)
            } else {
                rse::Field::required(f.name, f.data_type.0)
            }
        })
        .collect()
}

#[cfg(feature = "files")]
fn on_malformed(m: OnMalformed) -> rse::sources::files::OnMalformed {
    match m {
        OnMalformed::Fail => rse::sources::files::OnMalformed::Fail,
        OnMalformed::Reject => rse::sources::files::OnMalformed::Reject,
    }
}
