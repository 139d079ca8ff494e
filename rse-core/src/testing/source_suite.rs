//! The source conformance suite: every [`Source`] reads the same standard model the same way.
//!
//! A source's test creates the standard model in its store (a table, a file) from
//! [`source_fixture_rows`], builds the source over it with the key columns and cursor
//! column of [`source_fixture`], and runs [`check_source`]. Cases that need the source built
//! differently have their own checks: [`check_empty_source`] (a model with no rows),
//! [`check_missing_model`] and [`check_missing_column`] (names in the error), and
//! [`check_null_key`] (a row whose key column is null is passed through for the runner to
//! report, never dropped or fatal).
//!
//! ```no_run
//! # async fn demo(source: &dyn rse_core::Source) {
//! let fixture = rse_core::testing::source_fixture();
//! // … create the table from `fixture.rows`, keyed by `fixture.key`, cursor `fixture.cursor_field` …
//! rse_core::testing::check_source(source, &fixture).await.unwrap();
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use super::conformance::ConformanceError;
use crate::error::{KeyError, SourceError};
use crate::key::Key;
use crate::record::Record;
use crate::schema::{Field, Schema};
use crate::source::{ReadRequest, Source};
use crate::value::{DataType, Value};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(ConformanceError(format!($($msg)+)));
        }
    };
}

/// The standard model every source test creates, and what reading it must give.
#[derive(Debug, Clone)]
pub struct SourceFixture {
    /// The schema the source must report: field names and types in order, and the key.
    pub schema: Arc<Schema>,
    /// The rows of the model, in no particular order, as values in the schema's field order.
    pub rows: Vec<Record>,
    /// The key columns, in key order.
    pub key: Vec<String>,
    /// The cursor column, whose values tie between rows.
    pub cursor_field: Option<String>,
}

/// The standard model: `region` (string) and `id` (int) form the key, then `name` (string,
/// one null), `score` (float) and `updated_at` (int, the cursor; several rows tie).
///
/// The key mixes upper and lower case and a non-ASCII letter, so a source that orders text
/// by a locale's collation instead of by UTF-8 bytes (PostgreSQL's `COLLATE "C"`) fails
/// the key-order check, and ids `2`, `9`, `10`, so one that orders numbers as text fails too.
pub fn source_fixture() -> SourceFixture {
    let fields = vec![
        Field::new("region", DataType::String),
        Field::new("id", DataType::Int),
        Field::new("name", DataType::String),
        Field::new("score", DataType::Float),
        Field::new("updated_at", DataType::Int),
    ];
    #[allow(clippy::expect_used)] // A constant schema: distinct fields, and its key exists.
    let schema = Schema::new(fields, &["region", "id"]).expect("the fixture schema is valid").into_arc();
    SourceFixture {
        schema,
        rows: source_fixture_rows(),
        key: vec!["region".into(), "id".into()],
        cursor_field: Some("updated_at".into()),
    }
}

/// The rows of [`source_fixture`]: `(region, id, name, score, updated_at)`.
pub fn source_fixture_rows() -> Vec<Record> {
    let row = |region: &str, id: i64, name: Option<&str>, score: f64, updated_at: i64| {
        Record::new(vec![
            Value::from(region),
            Value::Int(id),
            name.map_or(Value::Null, Value::from),
            Value::Float(score),
            Value::Int(updated_at),
        ])
    };
    vec![
        row("b", 10, Some("ten"), 1.5, 100),
        row("a", 2, Some("two"), 2.5, 100),
        row("B", 9, None, -0.5, 200),
        row("é", 1, Some("one"), 0.0, 200),
        row("a", 10, Some("a-ten"), 3.25, 200),
        row("Z", 3, Some("zed"), 10.0, 300),
        row("b", 9, Some("nine"), 7.75, 300),
    ]
}

/// Reads everything `request` returns, checking that every batch carries `schema`.
async fn read_all(source: &dyn Source, request: ReadRequest, schema: &Schema) -> Result<Vec<Record>, ConformanceError> {
    let what = format!("{} read ({request:?})", source.name());
    let mut stream = source.read(request).await.map_err(|e| ConformanceError(format!("{what} failed: {e}")))?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| ConformanceError(format!("{what} failed mid-stream: {e}")))?;
        ensure!(*batch.schema == *schema, "{what}: a batch's schema differs from schema()");
        for r in &batch.records {
            ensure!(
                r.values.len() == schema.len(),
                "{what}: a record has {} values for {} fields",
                r.values.len(),
                schema.len()
            );
        }
        out.extend(batch.records);
    }
    Ok(out)
}

/// The records keyed by their key; fails on a null or repeated key.
fn by_key(records: Vec<Record>, schema: &Schema, what: &str) -> Result<BTreeMap<Key, Record>, ConformanceError> {
    let mut out = BTreeMap::new();
    for r in records {
        let key = r.key(schema).map_err(|e| ConformanceError(format!("{what}: {e}")))?;
        ensure!(out.insert(key.clone(), r).is_none(), "{what}: key {key} returned twice");
    }
    Ok(out)
}

fn same_records(
    got: &BTreeMap<Key, Record>,
    want: &BTreeMap<Key, Record>,
    schema: &Schema,
    what: &str,
) -> Result<(), ConformanceError> {
    for (key, w) in want {
        let Some(g) = got.get(key) else {
            return Err(ConformanceError(format!("{what}: the row with key {key} is missing")));
        };
        for (i, field) in schema.fields().iter().enumerate() {
            let (gv, wv) = (g.values.get(i), w.values.get(i));
            ensure!(
                gv == wv,
                "{what}: key {key}, column `{}`: got a {} where a {} was expected, or a different value",
                field.name,
                gv.map_or("missing value", Value::type_name),
                wv.map_or("missing value", Value::type_name)
            );
        }
    }
    for key in got.keys() {
        ensure!(
            want.contains_key(key),
            "{what}: key {key} was returned but is not in the model (or not at or after the cursor)"
        );
    }
    Ok(())
}

fn ensure_ascending(records: &[Record], schema: &Schema, what: &str) -> Result<(), ConformanceError> {
    let mut previous: Option<Key> = None;
    for r in records {
        let key = r.key(schema).map_err(|e| ConformanceError(format!("{what}: {e}")))?;
        if let Some(p) = &previous {
            ensure!(p < &key, "{what}: key {key} came after key {p}; records must be in ascending key byte order");
        }
        previous = Some(key);
    }
    Ok(())
}

/// The cursor value most rows share (the smallest on a tie), so reading from it tests ties.
fn tie_cursor(fixture: &SourceFixture, index: usize) -> Option<Value> {
    let mut counts: Vec<(Value, usize)> = Vec::new();
    for r in &fixture.rows {
        let Some(v) = r.get(index).filter(|v| !v.is_null()) else { continue };
        match counts.iter_mut().find(|(c, _)| c == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.total_cmp(&b.0)));
    counts.into_iter().next().map(|(v, _)| v)
}

/// Runs the suite against `source`, which reads a model holding exactly `fixture.rows`.
///
/// Checks: the schema (field names and types, key columns); a full read returns every row
/// once with its values, in batches carrying the schema;
/// when the source says it reads in key order, records come in ascending [`Key`] byte order;
/// when it declares a cursor column, a read from a cursor value that several rows share
/// returns exactly the rows at or after it (ties included, none twice), also in key order,
/// and a read past the largest cursor returns nothing.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_source(source: &dyn Source, fixture: &SourceFixture) -> Result<(), ConformanceError> {
    let name = source.name().to_owned();
    ensure!(!name.is_empty(), "name() is empty");

    // Schema.
    let schema = source.schema().await.map_err(|e| ConformanceError(format!("{name}: schema() failed: {e}")))?;
    let got: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name.as_str(), &f.data_type)).collect();
    let want: Vec<(&str, &DataType)> =
        fixture.schema.fields().iter().map(|f| (f.name.as_str(), &f.data_type)).collect();
    ensure!(got == want, "{name}: schema() fields are {got:?}, expected {want:?}");
    let keys: Vec<&str> = schema.key_names().collect();
    let want_keys: Vec<&str> = fixture.key.iter().map(String::as_str).collect();
    ensure!(keys == want_keys, "{name}: schema() key is {keys:?}, expected {want_keys:?}");

    let want_all = by_key(fixture.rows.clone(), &schema, "the fixture")?;

    // Full read, in small batches so the stream spans several.
    for batch_size in [2, 1024] {
        let what = format!("{name}: full read with batch_size {batch_size}");
        let records = read_all(source, ReadRequest::full().with_batch_size(batch_size), &schema).await?;
        let got = by_key(records, &schema, &what)?;
        same_records(&got, &want_all, &schema, &what)?;
    }

    let capabilities = source.capabilities();

    // Key order.
    if capabilities.ordered_by_key {
        let what = format!("{name}: read in key order");
        let request = ReadRequest::full().with_order_by_key(true).with_batch_size(3);
        let records = read_all(source, request, &schema).await?;
        ensure_ascending(&records, &schema, &what)?;
        same_records(&by_key(records, &schema, &what)?, &want_all, &schema, &what)?;
    }

    // Cursor semantics at ties.
    if let Some(field) = &capabilities.cursor_field {
        ensure!(
            fixture.cursor_field.as_deref() == Some(field.as_str()),
            "{name}: capabilities() name cursor column `{field}`, but the fixture's is {:?}",
            fixture.cursor_field
        );
        let index = schema
            .index_of(field)
            .ok_or_else(|| ConformanceError(format!("{name}: cursor column `{field}` is not in schema()")))?;
        let cursor = tie_cursor(fixture, index)
            .ok_or_else(|| ConformanceError("the fixture has no cursor values".to_owned()))?;
        let at_or_after = |r: &Record| r.get(index).is_some_and(|v| !v.is_null() && v.total_cmp(&cursor).is_ge());
        let want = by_key(fixture.rows.iter().filter(|r| at_or_after(r)).cloned().collect(), &schema, "the fixture")?;
        ensure!(want.len() < want_all.len(), "the fixture's tie cursor selects every row; it must leave some out");
        for ordered in [false, capabilities.ordered_by_key] {
            let what = format!("{name}: read from a cursor that rows tie on (key order: {ordered})");
            let request =
                ReadRequest::full().with_cursor(Some(cursor.clone())).with_order_by_key(ordered).with_batch_size(2);
            let records = read_all(source, request, &schema).await?;
            if ordered {
                ensure_ascending(&records, &schema, &what)?;
            }
            same_records(&by_key(records, &schema, &what)?, &want, &schema, &what)?;
        }
        let past =
            fixture.rows.iter().filter_map(|r| r.get(index)).filter(|v| !v.is_null()).max_by(|a, b| a.total_cmp(b));
        if let Some(Value::Int(max)) = past {
            let what = format!("{name}: read from a cursor past every row");
            let request = ReadRequest::full().with_cursor(Some(Value::Int(max + 1)));
            let records = read_all(source, request, &schema).await?;
            ensure!(records.is_empty(), "{what}: returned {} records, expected none", records.len());
        }
    }
    Ok(())
}

/// Checks `source`, which reads a model that exists and has no rows: the schema is
/// described, and every read (full, in key order, from a cursor) yields no record.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_empty_source(source: &dyn Source) -> Result<(), ConformanceError> {
    let name = source.name().to_owned();
    let schema = source
        .schema()
        .await
        .map_err(|e| ConformanceError(format!("{name}: schema() of an empty model failed: {e}")))?;
    ensure!(!schema.is_empty(), "{name}: schema() of an empty model has no fields");
    let capabilities = source.capabilities();
    let mut requests = vec![ReadRequest::full()];
    if capabilities.ordered_by_key {
        requests.push(ReadRequest::full().with_order_by_key(true));
    }
    if let Some(field) = &capabilities.cursor_field {
        let index = schema.require(field, "cursor column").map_err(|e| ConformanceError(format!("{name}: {e}")))?;
        let cursor = match schema.field(index).map(|f| &f.data_type) {
            Some(DataType::Int) => Some(Value::Int(0)),
            _ => None,
        };
        if cursor.is_some() {
            requests.push(ReadRequest::full().with_cursor(cursor));
        }
    }
    for request in requests {
        let records = read_all(source, request.clone(), &schema).await?;
        ensure!(records.is_empty(), "{name}: read ({request:?}) of an empty model returned {} records", records.len());
    }
    Ok(())
}

/// The error `schema()` gives, and the error a full read gives (at once or as the stream's
/// first item), or `None` where it succeeded.
async fn errors_of(source: &dyn Source) -> (Option<SourceError>, Option<SourceError>) {
    let schema = source.schema().await.err();
    let read = match source.read(ReadRequest::full()).await {
        Err(e) => Some(e),
        Ok(mut stream) => {
            let mut found = None;
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    found = Some(e);
                    break;
                }
            }
            found
        }
    };
    (schema, read)
}

fn ensure_not_found(
    error: Option<SourceError>,
    call: &str,
    names: &[&str],
    name: &str,
) -> Result<(), ConformanceError> {
    match error {
        None => Err(ConformanceError(format!("{name}: {call} succeeded for a model that names something missing"))),
        Some(e @ SourceError::NotFound { .. }) => {
            let text = e.to_string();
            for n in names {
                ensure!(text.contains(n), "{name}: {call} error does not name `{n}`: {text}");
            }
            Ok(())
        }
        Some(e) => Err(ConformanceError(format!("{name}: {call} failed with {e:?}, expected SourceError::NotFound"))),
    }
}

/// Checks `source`, built over a model (table, view, file) that does not exist: both
/// `schema()` and `read()` fail with [`SourceError::NotFound`] whose message contains
/// `model` (the missing table's or file's name).
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_missing_model(source: &dyn Source, model: &str) -> Result<(), ConformanceError> {
    let name = source.name().to_owned();
    let (schema, read) = errors_of(source).await;
    ensure_not_found(schema, "schema()", &[model], &name)?;
    ensure_not_found(read, "read()", &[model], &name)
}

/// Checks `source`, built over an existing model with a key or cursor column `column` that
/// the model does not have: both `schema()` and `read()` fail with
/// [`SourceError::NotFound`] whose message names the column.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_missing_column(source: &dyn Source, column: &str) -> Result<(), ConformanceError> {
    let name = source.name().to_owned();
    let (schema, read) = errors_of(source).await;
    ensure_not_found(schema, "schema()", &[column], &name)?;
    ensure_not_found(read, "read()", &[column], &name)
}

/// Checks `source`, which reads a model holding `rows` rows of which exactly one has a null
/// in key column `column`: every read returns all rows, the null-key one included (for the
/// runner to report as invalid), and a read in key order returns it first.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_null_key(source: &dyn Source, column: &str, rows: usize) -> Result<(), ConformanceError> {
    let name = source.name().to_owned();
    let schema = source.schema().await.map_err(|e| ConformanceError(format!("{name}: schema() failed: {e}")))?;
    let mut requests = vec![(ReadRequest::full(), false)];
    if source.capabilities().ordered_by_key {
        requests.push((ReadRequest::full().with_order_by_key(true), true));
    }
    for (request, ordered) in requests {
        let what = format!("{name}: read ({request:?}) of a model with a null key");
        let records = read_all(source, request, &schema).await?;
        ensure!(records.len() == rows, "{what}: returned {} records, expected {rows}", records.len());
        let nulls: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.key(&schema), Err(KeyError::NullKey { column: c }) if c == column))
            .map(|(i, _)| i)
            .collect();
        ensure!(nulls.len() == 1, "{what}: {} records have a null `{column}`, expected 1", nulls.len());
        if ordered {
            ensure!(nulls == [0], "{what}: the null-key record came at position {}, expected first", nulls[0]);
            ensure_ascending(&records[1..], &schema, &what)?;
        }
    }
    Ok(())
}
