//! File sources: CSV and JSON Lines, streamed line by line on a blocking thread.
//!
//! A file is read from the start on every read, a batch at a time, so memory stays bounded
//! whatever its size. Its schema is declared ([`CsvSource::with_schema`]) or inferred from
//! its first rows. A line that does not parse or whose value does not fit its column is
//! *malformed*: by default it fails the read with [`SourceError::Malformed`] naming its
//! line number and column; with [`OnMalformed::Reject`] it is left out of the read and kept
//! in the source's [`RejectedLines`] (line number and reason, never the line's values), so
//! the run goes on and the host can report or fix those lines.
//!
//! Files are in no particular order: a file the host knows is sorted by key can be declared
//! so ([`CsvSource::with_sorted_by_key`]), which is checked while reading. The cursor is
//! applied after parsing: every row whose cursor column is at or after the cursor (never a
//! null one) is returned.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rse_core::{
    DataType, Field, ReadRequest, Record, RowBatch, RowBatchStream, Schema, Source, SourceCapabilities, SourceError,
    SourceRejection, Value,
};

use crate::common::{Keys, OrderCheck, retain_from_cursor};
use crate::convert::{infer_text_type, json_error, push_value_from_text, value_from_json};
use crate::split::{Fields, Splitter};
use crate::stream::{BatchSender, blocking_stream};

/// What to do with a malformed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMalformed {
    /// Fail the read, naming the line (the default).
    #[default]
    Fail,
    /// Leave the line out, record it in [`RejectedLines`] and go on.
    Reject,
}

/// A line left out of a read under [`OnMalformed::Reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// The 1-based line number in the file (for CSV, the line the record starts on).
    pub line: u64,
    /// Why, naming the column where one is at fault; never the line's values.
    pub reason: String,
}

/// The lines the last read of a source left out, shared with the host.
#[derive(Debug, Clone, Default)]
pub struct RejectedLines(Arc<Mutex<Vec<RejectedLine>>>);

impl RejectedLines {
    /// The lines rejected by the most recent read.
    pub fn lines(&self) -> Vec<RejectedLine> {
        self.0.lock().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    fn push(&self, line: RejectedLine) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
    }

    /// The lines rejected after the first `from`.
    fn since(&self, from: usize) -> Vec<RejectedLine> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }
}

/// Options both file sources share.
#[derive(Debug, Clone)]
struct FileOptions {
    path: PathBuf,
    keys: Keys,
    declared: Option<Vec<Field>>,
    infer_rows: usize,
    sorted: bool,
    on_malformed: OnMalformed,
    rejected: RejectedLines,
}

impl FileOptions {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            keys: Keys::default(),
            declared: None,
            infer_rows: 1000,
            sorted: false,
            on_malformed: OnMalformed::Fail,
            rejected: RejectedLines::default(),
        }
    }

    fn label(&self) -> String {
        self.path.display().to_string()
    }

    fn open(&self) -> Result<File, SourceError> {
        File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound {
                what: format!("file `{}`", self.label()),
                hint: Some("check the path".to_owned()),
            },
            _ => io_error(&self.path, e),
        })
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut capabilities =
            SourceCapabilities::default().with_ordered_by_key(self.sorted && !self.keys.key.is_empty());
        if let Some(cursor) = &self.keys.cursor {
            capabilities = capabilities.with_cursor_field(cursor.clone());
        }
        capabilities
    }

    fn check_request(&self, request: &ReadRequest, name: &str) -> Result<(), SourceError> {
        if request.order_by_key && !self.capabilities().ordered_by_key {
            return Err(SourceError::Unsupported(format!(
                "`{name}` is not declared sorted by key; read it without key order (the runner's hash diff does)"
            )));
        }
        Ok(())
    }

    /// Handles one malformed line: an error under `Fail`, a recorded rejection under `Reject`.
    fn malformed(&self, line: u64, reason: String) -> Result<(), SourceError> {
        match self.on_malformed {
            OnMalformed::Fail => {
                Err(SourceError::Malformed { location: format!("line {line} of `{}`", self.label()), reason })
            }
            OnMalformed::Reject => {
                tracing::warn!(file = %self.label(), line, %reason, "Rejected a malformed line.");
                self.rejected.push(RejectedLine { line, reason });
                Ok(())
            }
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Unavailable { message: format!("reading `{}` failed", path.display()), source: Some(Box::new(e)) }
}

/// Collects records into batches, applies the cursor and order check, and sends them.
struct Batcher<'a> {
    schema: Arc<Schema>,
    records: Vec<Record>,
    size: usize,
    cursor: Option<(usize, Value)>,
    order: Option<OrderCheck>,
    sender: &'a BatchSender,
    label: String,
    /// Rejected lines, and how many of them earlier batches already carried to the runner.
    rejected: RejectedLines,
    reported: usize,
}

impl<'a> Batcher<'a> {
    fn new(
        schema: Arc<Schema>,
        request: &ReadRequest,
        options: &FileOptions,
        sender: &'a BatchSender,
        label: String,
    ) -> Self {
        let keys = &options.keys;
        let cursor = match (&request.cursor, &keys.cursor) {
            (Some(value), Some(column)) => schema.index_of(column).map(|i| (i, value.clone())),
            _ => None,
        };
        let size = request.batch_size.max(1);
        let order = request.order_by_key.then(OrderCheck::default);
        let rejected = options.rejected.clone();
        Self { schema, records: Vec::with_capacity(size), size, cursor, order, sender, label, rejected, reported: 0 }
    }

    /// Adds a record; `Ok(false)` when the reader has gone away and reading should stop.
    fn push(&mut self, record: Record, line: u64) -> Result<bool, SourceError> {
        if let Some(order) = &mut self.order {
            order.check(std::slice::from_ref(&record), &self.schema, &format!("line {line} of `{}`", self.label))?;
        }
        self.records.push(record);
        if self.records.len() >= self.size { Ok(self.flush()) } else { Ok(true) }
    }

    fn flush(&mut self) -> bool {
        let mut records = std::mem::replace(&mut self.records, Vec::with_capacity(self.size));
        if let Some((index, cursor)) = &self.cursor {
            retain_from_cursor(&mut records, *index, cursor);
        }
        // Lines rejected since the last batch travel with this one, so the run reports them.
        let rejected: Vec<SourceRejection> = self
            .rejected
            .since(self.reported)
            .into_iter()
            .map(|l| SourceRejection::new(format!("line {} of `{}`", l.line, self.label), l.reason))
            .collect();
        self.reported += rejected.len();
        (records.is_empty() && rejected.is_empty())
            || self.sender.send(RowBatch::new(self.schema.clone(), records).with_rejected(rejected))
    }
}

/// A CSV file: header, delimiter, quoting, and a declared or inferred schema.
///
/// An empty field is null (for every type, text included). Types are read from text as:
/// int and float in Rust's syntax, decimal exactly (`1.50`, `-2e3`), bool as
/// `true`/`false`/`t`/`f`/`yes`/`no`/`1`/`0`, date `YYYY-MM-DD`, timestamp ISO 8601 (no
/// offset = UTC), json as JSON text, bytes as the field's UTF-8 bytes. Inference looks at
/// the first [`with_infer_rows`](Self::with_infer_rows) rows and picks the narrowest of int,
/// float, bool (`true`/`false` only), date, timestamp, else string; a column with a number
/// written with a leading zero (`007`, `-007`, `00`; not `0` or `0.5`) is a column of codes
/// and stays string, so `007` and `7` stay two keys. Declare a schema to read decimals
/// exactly or to name columns of a file without a header.
///
/// ```no_run
/// use rse_sources::files::{CsvSource, OnMalformed};
/// let source = CsvSource::new("exports/customers.csv")
///     .with_delimiter(b';')
///     .with_key(["id"])
///     .with_on_malformed(OnMalformed::Reject);
/// ```
#[derive(Debug, Clone)]
pub struct CsvSource {
    options: FileOptions,
    delimiter: u8,
    quote: u8,
    has_header: bool,
    name: String,
}

impl CsvSource {
    /// Reads the CSV file at `path` (comma-delimited, `"`-quoted, with a header row).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let options = FileOptions::new(path.into());
        let name = format!("csv:{}", options.label());
        Self { options, delimiter: b',', quote: b'"', has_header: true, name }
    }

    /// Declares the key columns, in key order.
    pub fn with_key<I, S>(mut self, key: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.keys.key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the cursor column for incremental reads.
    pub fn with_cursor(mut self, column: impl Into<String>) -> Self {
        self.options.keys.cursor = Some(column.into());
        self
    }

    /// Declares the schema instead of inferring it. With a header, fields are matched to
    /// columns by name (other columns are ignored); without one, by position.
    pub fn with_schema(mut self, fields: Vec<Field>) -> Self {
        self.options.declared = Some(fields);
        self
    }

    /// How many rows inference looks at (default 1000).
    pub fn with_infer_rows(mut self, rows: usize) -> Self {
        self.options.infer_rows = rows.max(1);
        self
    }

    /// The field delimiter (default `,`).
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// The quote character (default `"`; a doubled quote inside quotes is a literal one).
    pub fn with_quote(mut self, quote: u8) -> Self {
        self.quote = quote;
        self
    }

    /// Whether the first row names the columns (default `true`). Without a header and
    /// without a declared schema, columns are named `column_1`, `column_2`, ….
    pub fn with_header(mut self, has_header: bool) -> Self {
        self.has_header = has_header;
        self
    }

    /// Declares that rows are in ascending key order, so the source can serve key-ordered
    /// reads (the order is checked while reading; a row out of order fails the read).
    pub fn with_sorted_by_key(mut self, sorted: bool) -> Self {
        self.options.sorted = sorted;
        self
    }

    /// What to do with a malformed line (default: fail the read).
    pub fn with_on_malformed(mut self, on_malformed: OnMalformed) -> Self {
        self.options.on_malformed = on_malformed;
        self
    }

    /// The lines the most recent read rejected under [`OnMalformed::Reject`].
    pub fn rejected(&self) -> RejectedLines {
        self.options.rejected.clone()
    }

    fn reader(&self, file: File) -> csv::Reader<File> {
        // The reader buffers the file itself: one large buffer, no second copy.
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .quote(self.quote)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(file)
    }

    /// The schema and, for each field, the index of its column in the file.
    fn resolve(&self) -> Result<(Arc<Schema>, Vec<usize>), SourceError> {
        let label = self.options.label();
        let mut reader = self.reader(self.options.open()?);
        let mut record = csv::ByteRecord::new();
        let mut rows: Vec<csv::ByteRecord> = Vec::new();
        let csv_error = |e: csv::Error| SourceError::Malformed {
            location: format!("line {} of `{label}`", e.position().map_or(0, csv::Position::line)),
            reason: "the CSV does not parse".to_owned(),
        };
        let header: Option<Vec<String>> = if self.has_header {
            if !reader.read_byte_record(&mut record).map_err(csv_error)? {
                return Err(SourceError::Malformed {
                    location: format!("`{label}`"),
                    reason: "the file is empty but a header row was expected".to_owned(),
                });
            }
            Some(record.iter().map(|f| String::from_utf8_lossy(f).trim().to_owned()).collect())
        } else {
            None
        };
        let need_rows = self.options.declared.is_none() || header.is_none();
        if need_rows {
            while rows.len() < self.options.infer_rows && reader.read_byte_record(&mut record).map_err(csv_error)? {
                rows.push(record.clone());
            }
        }
        let names: Vec<String> = match &header {
            Some(h) => h.clone(),
            None => {
                let width = rows.iter().map(csv::ByteRecord::len).max().unwrap_or(0);
                (1..=width).map(|i| format!("column_{i}")).collect()
            }
        };
        let (fields, positions) = match &self.options.declared {
            Some(declared) if header.is_some() => {
                let mut positions = Vec::with_capacity(declared.len());
                for field in declared {
                    let at = names.iter().position(|n| *n == field.name).ok_or_else(|| SourceError::NotFound {
                        what: format!("column `{}` in `{label}` (columns: {})", field.name, names.join(", ")),
                        hint: Some("the declared schema names columns of the header".to_owned()),
                    })?;
                    positions.push(at);
                }
                (declared.clone(), positions)
            }
            Some(declared) => (declared.clone(), (0..declared.len()).collect()),
            None => {
                let mut fields = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let samples = rows.iter().filter_map(|r| r.get(i)).map(|f| std::str::from_utf8(f).unwrap_or(""));
                    fields.push(Field::new(name.clone(), infer_text_type(samples).unwrap_or(DataType::String)));
                }
                (fields, (0..names.len()).collect())
            }
        };
        if let Some(field) = fields.iter().find(|f| matches!(f.data_type, DataType::List(_))) {
            return Err(SourceError::UnsupportedType {
                column: field.name.clone(),
                native_type: field.data_type.to_string(),
                hint: Some("CSV has no lists; declare the column as json or string".to_owned()),
            });
        }
        Ok((self.options.keys.schema(fields, &label)?, positions))
    }

    fn produce(&self, request: &ReadRequest, sender: &BatchSender) -> Result<(), SourceError> {
        self.options.rejected.clear();
        let (schema, positions) = self.resolve()?;
        let label = self.options.label();
        let mut splitter = Splitter::new(self.options.open()?, self.delimiter, self.quote);
        let width = if self.has_header {
            match splitter.read() {
                Ok(Some(header)) => header.len(),
                Ok(None) => return Ok(()),
                Err(e) => return Err(io_or_malformed(e, &label)),
            }
        } else {
            0
        };
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type.clone()).collect();
        // Splitting and converting run on this one thread: with the splitter's fast path, a
        // second thread saves less than handing every record's text from core to core costs,
        // and the record's buffers stay in this core's cache from one record to the next.
        let mut batcher = Batcher::new(schema.clone(), request, &self.options, sender, label.clone());
        loop {
            let (line, values) = match splitter.read() {
                Ok(Some(fields)) if width > 0 && fields.len() != width => {
                    (fields.line(), Err(format!("the row has {} fields, the header {width}", fields.len())))
                }
                Ok(Some(fields)) => (fields.line(), csv_values(fields, &positions, &types, &schema)),
                Ok(None) => break,
                Err(e) if e.is_io_error() => return Err(io_or_malformed(e, &label)),
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    (line, Err("the CSV does not parse".to_owned()))
                }
            };
            match values {
                Ok(values) => {
                    if !batcher.push(Record::new(values), line)? {
                        return Ok(());
                    }
                }
                Err(reason) => self.options.malformed(line, reason)?,
            }
        }
        batcher.flush();
        Ok(())
    }
}

fn io_or_malformed(e: csv::Error, label: &str) -> SourceError {
    let line = e.position().map_or(0, csv::Position::line);
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return io_error(Path::new(label), io);
        }
        return SourceError::Unavailable { message: format!("reading `{label}` failed"), source: None };
    }
    SourceError::Malformed {
        location: format!("line {line} of `{label}`"),
        reason: "the CSV does not parse".to_owned(),
    }
}

/// The values of the record's fields at `positions`, of `types`, or why the record does not
/// fit `schema` (naming the column, never quoting the value).
fn csv_values(
    fields: Fields<'_>,
    positions: &[usize],
    types: &[DataType],
    schema: &Schema,
) -> Result<Vec<Value>, String> {
    let bytes = fields.bytes();
    // UTF-8 is checked once for the whole record. Then a field is not UTF-8 only when it is
    // cut inside a character (by a delimiter byte above 0x7F): its ends are not character
    // boundaries. A record that is not all UTF-8 has its fields checked one by one.
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            parse_csv_row(|at| fields.range(at).map(|r| text.get(r).ok_or(())).transpose(), positions, types, schema)
        }
        Err(_) => parse_csv_row(
            |at| fields.range(at).map(|r| std::str::from_utf8(&bytes[r]).map_err(drop)).transpose(),
            positions,
            types,
            schema,
        ),
    }
}

/// The values of one record: `field(at)` is the text of the record's field `at` (`None`
/// past its end, an error when it is not UTF-8), read for each schema field in turn.
#[inline]
fn parse_csv_row<'r>(
    field: impl Fn(usize) -> Result<Option<&'r str>, ()>,
    positions: &[usize],
    types: &[DataType],
    schema: &Schema,
) -> Result<Vec<Value>, String> {
    let mut values = Vec::with_capacity(types.len());
    for (i, (&at, data_type)) in positions.iter().zip(types).enumerate() {
        let Ok(text) = field(at) else {
            return Err(column_error(schema, i, "the field is not valid UTF-8"));
        };
        let text = text.unwrap_or_default();
        if text.is_empty() {
            values.push(Value::Null);
            continue;
        }
        if let Err(reason) = push_value_from_text(&mut values, text, data_type) {
            return Err(column_error(schema, i, &reason));
        }
    }
    Ok(values)
}

/// `reason`, naming the schema's field `i`.
#[cold]
fn column_error(schema: &Schema, i: usize, reason: &str) -> String {
    format!("column `{}`: {reason}", schema.field(i).map(|f| f.name.as_str()).unwrap_or_default())
}

#[async_trait]
impl Source for CsvSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        self.options.capabilities()
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.resolve().map(|(schema, _)| schema)).await.map_err(stopped)?
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        self.options.check_request(&request, &self.name)?;
        // Resolve first so a missing file or column fails the call itself.
        self.schema().await?;
        let this = self.clone();
        blocking_stream(self.name.clone(), move |sender| this.produce(&request, sender))
    }
}

fn stopped(e: tokio::task::JoinError) -> SourceError {
    SourceError::Other { message: "the file reader stopped unexpectedly".to_owned(), source: Some(Box::new(e)) }
}

/// A JSON Lines file: one JSON object per line, blank lines skipped.
///
/// Each field is read from the object's member of the same name (a missing member is
/// null; other members are ignored). Numbers map to int when integral and to float
/// otherwise; a decimal field reads a number through its shortest text or a string exactly
/// (write exact decimals as strings: JSON numbers pass through binary floats); date and
/// timestamp fields read strings; a json field takes any value. Inference looks at the
/// first [`with_infer_rows`](Self::with_infer_rows) lines; inferred fields come in
/// alphabetical order (declare a schema to choose the order), each the narrowest of int,
/// float, bool, string, else json.
///
/// ```no_run
/// use rse_sources::files::JsonLinesSource;
/// let source = JsonLinesSource::new("events.jsonl").with_key(["event_id"]).with_cursor("ts");
/// ```
#[derive(Debug, Clone)]
pub struct JsonLinesSource {
    options: FileOptions,
    name: String,
}

impl JsonLinesSource {
    /// Reads the JSON Lines file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let options = FileOptions::new(path.into());
        let name = format!("jsonl:{}", options.label());
        Self { options, name }
    }

    /// Declares the key columns, in key order.
    pub fn with_key<I, S>(mut self, key: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.keys.key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the cursor column for incremental reads.
    pub fn with_cursor(mut self, column: impl Into<String>) -> Self {
        self.options.keys.cursor = Some(column.into());
        self
    }

    /// Declares the schema instead of inferring it.
    pub fn with_schema(mut self, fields: Vec<Field>) -> Self {
        self.options.declared = Some(fields);
        self
    }

    /// How many lines inference looks at (default 1000).
    pub fn with_infer_rows(mut self, rows: usize) -> Self {
        self.options.infer_rows = rows.max(1);
        self
    }

    /// Declares that lines are in ascending key order (checked while reading).
    pub fn with_sorted_by_key(mut self, sorted: bool) -> Self {
        self.options.sorted = sorted;
        self
    }

    /// What to do with a malformed line (default: fail the read).
    pub fn with_on_malformed(mut self, on_malformed: OnMalformed) -> Self {
        self.options.on_malformed = on_malformed;
        self
    }

    /// The lines the most recent read rejected under [`OnMalformed::Reject`].
    pub fn rejected(&self) -> RejectedLines {
        self.options.rejected.clone()
    }

    /// Calls `each(line number, line)` for every non-blank line until it returns `false`.
    fn lines(&self, mut each: impl FnMut(u64, &str) -> Result<bool, SourceError>) -> Result<(), SourceError> {
        let mut reader = BufReader::with_capacity(256 * 1024, self.options.open()?);
        let mut buf = String::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            line += 1;
            match reader.read_line(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not UTF-8: skip the rest of the line and report it.
                    let mut bytes = Vec::new();
                    reader.read_until(b'\n', &mut bytes).map_err(|e| io_error(&self.options.path, e))?;
                    self.options.malformed(line, "the line is not valid UTF-8".to_owned())?;
                    continue;
                }
                Err(e) => return Err(io_error(&self.options.path, e)),
            }
            let text = buf.trim();
            if text.is_empty() {
                continue;
            }
            if !each(line, text)? {
                return Ok(());
            }
        }
    }

    fn resolve(&self) -> Result<Arc<Schema>, SourceError> {
        let label = self.options.label();
        let fields = match &self.options.declared {
            Some(declared) => declared.clone(),
            None => {
                let mut seen: std::collections::BTreeMap<String, Option<DataType>> = Default::default();
                let mut sampled = 0;
                self.lines(|_, text| {
                    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
                        for (name, value) in map {
                            let slot = seen.entry(name).or_insert(None);
                            *slot = widen(slot.take(), &value);
                        }
                    }
                    sampled += 1;
                    Ok(sampled < self.options.infer_rows)
                })?;
                seen.into_iter().map(|(name, t)| Field::new(name, t.unwrap_or(DataType::Json))).collect()
            }
        };
        if fields.is_empty() {
            return Err(SourceError::Malformed {
                location: format!("`{label}`"),
                reason: "no JSON object with members found to infer a schema from; declare one with with_schema"
                    .to_owned(),
            });
        }
        self.options.keys.schema(fields, &label)
    }

    fn produce(&self, request: &ReadRequest, sender: &BatchSender) -> Result<(), SourceError> {
        self.options.rejected.clear();
        let schema = self.resolve()?;
        let label = self.options.label();
        let mut batcher = Batcher::new(schema.clone(), request, &self.options, sender, label);
        let fields: Vec<Field> = schema.fields().to_vec();
        let mut going = true;
        self.lines(|line, text| {
            let object = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(_) => {
                    self.options.malformed(line, "the line is JSON but not an object".to_owned())?;
                    return Ok(true);
                }
                Err(e) => {
                    self.options.malformed(line, format!("the line is not JSON ({})", json_error(&e)))?;
                    return Ok(true);
                }
            };
            let mut object = object;
            let mut values = Vec::with_capacity(fields.len());
            for field in &fields {
                let json = object.remove(&field.name).unwrap_or(serde_json::Value::Null);
                match value_from_json(json, &field.data_type) {
                    Ok(v) => values.push(v),
                    Err(reason) => {
                        self.options.malformed(line, format!("column `{}`: {reason}", field.name))?;
                        return Ok(true);
                    }
                }
            }
            going = batcher.push(Record::new(values), line)?;
            Ok(going)
        })?;
        if going {
            batcher.flush();
        }
        Ok(())
    }
}

/// The narrowest type holding both what was seen so far and `value` (null adds nothing).
fn widen(so_far: Option<DataType>, value: &serde_json::Value) -> Option<DataType> {
    use serde_json::Value as J;
    let this = match value {
        J::Null => return so_far,
        J::Bool(_) => DataType::Bool,
        J::Number(n) if n.is_i64() => DataType::Int,
        J::Number(_) => DataType::Float,
        J::String(_) => DataType::String,
        J::Array(_) | J::Object(_) => DataType::Json,
    };
    Some(match so_far {
        None => this,
        Some(t) if t == this => t,
        Some(DataType::Int | DataType::Float) if matches!(this, DataType::Int | DataType::Float) => DataType::Float,
        Some(_) => DataType::Json,
    })
}

#[async_trait]
impl Source for JsonLinesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        self.options.capabilities()
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.resolve()).await.map_err(stopped)?
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        self.options.check_request(&request, &self.name)?;
        self.schema().await?;
        let this = self.clone();
        blocking_stream(self.name.clone(), move |sender| this.produce(&request, sender))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use futures::StreamExt;

    use super::*;

    /// Reads `contents` as a CSV file with a header, `id` int and `name` string (by name,
    /// so other columns are ignored), rejecting malformed lines: the `(id, name)` pairs read
    /// and the rejected lines.
    async fn read(contents: &[u8]) -> (Vec<(Value, Value)>, Vec<RejectedLine>) {
        read_with(contents, b',').await
    }

    /// [`read`] with another delimiter.
    async fn read_with(contents: &[u8], delimiter: u8) -> (Vec<(Value, Value)>, Vec<RejectedLine>) {
        let path = std::env::temp_dir().join(format!(
            "rse_csv_unit_{}_{}.csv",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&path, contents).unwrap();
        let source = CsvSource::new(&path)
            .with_schema(vec![Field::new("id", DataType::Int), Field::new("name", DataType::String)])
            .with_delimiter(delimiter)
            .with_on_malformed(OnMalformed::Reject);
        let mut stream = source.read(ReadRequest::full().with_batch_size(2)).await.unwrap();
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            for record in batch.unwrap().records {
                rows.push((record.values[0].clone(), record.values[1].clone()));
            }
        }
        let _ = std::fs::remove_file(&path);
        (rows, source.rejected().lines())
    }

    fn row(id: i64, name: &str) -> (Value, Value) {
        (Value::Int(id), Value::String(name.to_owned()))
    }

    #[tokio::test]
    async fn fields_that_are_not_utf8_reject_their_row_only_when_read() {
        let (rows, rejected) = read(b"id,note,name\n1,\xff,Ann\n2,x,B\xffb\n3,y,Zo\xc3\xab\n4,,\n").await;
        assert_eq!(rows, [row(1, "Ann"), row(3, "Zo\u{eb}"), (Value::Int(4), Value::Null)]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, 3);
        assert_eq!(rejected[0].reason, "column `name`: the field is not valid UTF-8");
    }

    #[tokio::test]
    async fn a_delimiter_byte_above_0x7f_splits_even_inside_a_character() {
        // `§` is C2 A7 in UTF-8: with A7 as the delimiter, the field before it ends in C2.
        let (rows, rejected) = read_with(b"id\xa7name\n1\xa7Ann\n2\xc2\xa7Bob\n3\xa7\xc3\xab\n", 0xa7).await;
        assert_eq!(rows, [row(1, "Ann"), row(3, "\u{eb}")]);
        assert_eq!(rejected.len(), 1);
        assert_eq!((rejected[0].line, rejected[0].reason.as_str()), (3, "column `id`: the field is not valid UTF-8"));
    }

    #[tokio::test]
    async fn lines_are_numbered_as_the_csv_reader_counts_them() {
        // Each record is numbered by the line after the previous record's end: blank lines
        // before a record do not count, and a CRLF line end is counted with the next record.
        let (rows, rejected) = read(b"\xef\xbb\xbfid,name\n\n1,a\nx,b\n\n\ny,c\r\nz,d\r\n2,\"e\nf\"\ng,h").await;
        assert_eq!(rows, [row(1, "a"), row(2, "e\nf")]);
        let lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 5, 7, 11]);
        assert!(rejected.iter().all(|r| r.reason.starts_with("column `id`: expected a 64-bit integer")));
    }
}
