//! Parquet source: one file or a directory of files, read a row group at a time.
//!
//! Files are read through the `parquet` crate's Arrow reader on a blocking thread, a batch
//! at a time within each row group, with only the projected columns decoded, so memory is
//! bounded by a row group's projected columns rather than the data set.
//!
//! # Types
//!
//! | Parquet (Arrow) | rse |
//! |---|---|
//! | `BOOLEAN` | bool |
//! | `INT8/16/32/64`, `UINT8/16/32` | int |
//! | `UINT64` | int (a value above `i64::MAX` fails, naming the column) |
//! | `FLOAT`, `DOUBLE` | float |
//! | `DECIMAL(p, s)` (any physical type) | decimal, exact |
//! | `STRING` / `UTF8`, `ENUM`, `JSON` | string |
//! | `UUID` (Arrow's `arrow.uuid` extension) | string, lower-case hyphenated |
//! | `BINARY`, `FIXED_LEN_BYTE_ARRAY` | bytes |
//! | `DATE` | date |
//! | `TIMESTAMP(unit, UTC or local)` | timestamp in microseconds; nanoseconds are truncated toward the past, and a timestamp not adjusted to UTC is read as UTC |
//! | `LIST` (nested to any depth) | list |
//! | dictionary-encoded columns | their value type |
//!
//! Anything else (`FLOAT16`, `TIME`, `INTERVAL`, structs, maps) fails with
//! [`SourceError::UnsupportedType`] naming the column and its type; project it away with
//! [`ParquetSource::with_columns`].
//!
//! A directory is read recursively in path order, skipping names starting with `.` or `_`
//! (`_SUCCESS`, `_delta_log`); every file must have the same columns. Hive partition values
//! in directory names are not turned into columns.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType as ArrowType, Field as ArrowField, TimeUnit};
use async_trait::async_trait;
use rse_core::{
    DataType, Decimal, Field, ReadRequest, Record, RowBatch, RowBatchStream, Schema, Source, SourceCapabilities,
    SourceError, Value,
};

use crate::common::{Keys, OrderCheck, retain_from_cursor};
use crate::stream::{BatchSender, blocking_stream};

/// Parquet files, read as one model.
///
/// ```no_run
/// use rse_sources::parquet::ParquetSource;
/// let source = ParquetSource::new("lake/customers/")
///     .with_columns(["customer_id", "email", "plan", "updated_at"])
///     .with_key(["customer_id"])
///     .with_cursor("updated_at");
/// ```
#[derive(Debug, Clone)]
pub struct ParquetSource {
    path: PathBuf,
    keys: Keys,
    columns: Option<Vec<String>>,
    sorted: bool,
    name: String,
}

impl ParquetSource {
    /// Reads the Parquet file at `path`, or every Parquet file under the directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = format!("parquet:{}", path.display());
        Self { path, keys: Keys::default(), columns: None, sorted: false, name }
    }

    /// Declares the key columns, in key order.
    pub fn with_key<I, S>(mut self, key: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys.key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the cursor column for incremental reads: every row at or after the cursor
    /// (never a null one) is returned. Row groups whose statistics show that all their
    /// cursor values are before the cursor are not read at all (integer, date and timestamp
    /// cursors).
    pub fn with_cursor(mut self, column: impl Into<String>) -> Self {
        self.keys.cursor = Some(column.into());
        self
    }

    /// Reads only these top-level columns (plus the key and cursor columns), in the files'
    /// order; the others are never decoded.
    pub fn with_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Declares that the rows, across files in path order, are in ascending key order, so
    /// the source can serve key-ordered reads (checked while reading).
    pub fn with_sorted_by_key(mut self, sorted: bool) -> Self {
        self.sorted = sorted;
        self
    }

    /// The files to read, in order.
    fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound {
                what: format!("Parquet file or directory `{}`", self.path.display()),
                hint: Some("check the path".to_owned()),
            },
            _ => io_error(&self.path, e),
        })?;
        if meta.is_file() {
            return Ok(vec![self.path.clone()]);
        }
        let mut files = Vec::new();
        collect_files(&self.path, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(SourceError::NotFound {
                what: format!("Parquet files under `{}`", self.path.display()),
                hint: Some("the directory holds no *.parquet file".to_owned()),
            });
        }
        Ok(files)
    }

    fn open(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, SourceError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| SourceError::Malformed {
            location: format!("`{}`", path.display()),
            reason: format!("not a readable Parquet file ({e})"),
        })
    }

    /// The schema of the projected columns of `builder`'s file and their root indices.
    fn describe(
        &self,
        builder: &ParquetRecordBatchReaderBuilder<File>,
        path: &Path,
    ) -> Result<(Arc<Schema>, Vec<usize>), SourceError> {
        let arrow = builder.schema();
        let label = path.display().to_string();
        let names = || arrow.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let wanted: Option<Vec<&str>> = self.columns.as_ref().map(|cols| {
            cols.iter().chain(&self.keys.key).chain(self.keys.cursor.as_ref()).map(String::as_str).collect()
        });
        if let Some(wanted) = &wanted {
            for column in wanted {
                if arrow.field_with_name(column).is_err() {
                    return Err(SourceError::NotFound {
                        what: format!("column `{column}` in `{label}` (columns: {})", names()),
                        hint: None,
                    });
                }
            }
        }
        let mut fields = Vec::new();
        let mut indices = Vec::new();
        for (i, field) in arrow.fields().iter().enumerate() {
            if wanted.as_ref().is_some_and(|w| !w.contains(&field.name().as_str())) {
                continue;
            }
            fields.push(Field::new(field.name(), map_type(field)?));
            indices.push(i);
        }
        Ok((self.keys.schema(fields, &label)?, indices))
    }

    fn resolve(&self) -> Result<Arc<Schema>, SourceError> {
        let files = self.files()?;
        let first = files.first().map(PathBuf::as_path).unwrap_or(self.path.as_path());
        Ok(self.describe(&self.open(first)?, first)?.0)
    }

    fn produce(&self, request: &ReadRequest, sender: &BatchSender) -> Result<(), SourceError> {
        let files = self.files()?;
        let mut expected: Option<Arc<Schema>> = None;
        let mut order = request.order_by_key.then(OrderCheck::default);
        let cursor = match (&request.cursor, &self.keys.cursor) {
            (Some(value), Some(column)) => Some((column.as_str(), value.clone())),
            _ => None,
        };
        let batch_size = request.batch_size.max(1);
        for path in &files {
            let builder = self.open(path)?;
            let (schema, indices) = self.describe(&builder, path)?;
            let schema = match &expected {
                None => {
                    expected = Some(schema.clone());
                    schema
                }
                Some(first) if **first == *schema => first.clone(),
                Some(first) => {
                    return Err(SourceError::Malformed {
                        location: format!("`{}`", path.display()),
                        reason: format!(
                            "its columns ({}) differ from the first file's ({}); every file must have the same columns",
                            schema.field_names(),
                            first.field_names()
                        ),
                    });
                }
            };
            let cursor_index = cursor.as_ref().and_then(|(c, v)| schema.index_of(c).map(|i| (i, v)));
            // Row numbers in errors count from the first row read; say so when groups were skipped.
            let mut counted_from = "";
            let builder = match &cursor {
                Some((column, value)) => {
                    let groups = row_groups_from_cursor(&builder, column, value);
                    if groups.len() < builder.metadata().num_row_groups() {
                        counted_from = " (counting from the first row group not skipped by the cursor)";
                    }
                    builder.with_row_groups(groups)
                }
                None => builder,
            };
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
            let reader = builder.with_projection(mask).with_batch_size(batch_size).build().map_err(|e| {
                SourceError::Malformed { location: format!("`{}`", path.display()), reason: format!("{e}") }
            })?;
            let mut row = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| SourceError::Malformed {
                    location: format!("`{}` after row {row}{counted_from}", path.display()),
                    reason: format!("the data does not decode ({e})"),
                })?;
                let mut records =
                    convert_batch(&batch, &schema).map_err(|(column, offset, reason)| SourceError::Malformed {
                        location: format!(
                            "column `{column}` of `{}`, row {}{counted_from}",
                            path.display(),
                            row + offset as u64 + 1
                        ),
                        reason,
                    })?;
                row += batch.num_rows() as u64;
                if let Some(order) = &mut order {
                    order.check(&records, &schema, &format!("`{}` before row {}", path.display(), row + 1))?;
                }
                if let Some((index, value)) = &cursor_index {
                    retain_from_cursor(&mut records, *index, value);
                }
                if !records.is_empty() && !sender.send(RowBatch::new(schema.clone(), records)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The row groups that may hold rows whose `column` is at or after `cursor`, judged by their
/// statistics: a row group is skipped only when its largest value is known to be before
/// the cursor (integer, date and timestamp columns; others are always read).
fn row_groups_from_cursor(builder: &ParquetRecordBatchReaderBuilder<File>, column: &str, cursor: &Value) -> Vec<usize> {
    let metadata = builder.metadata();
    let all: Vec<usize> = (0..metadata.num_row_groups()).collect();
    let Ok(field) = builder.schema().field_with_name(column) else { return all };
    let Some(leaf) = builder.parquet_schema().columns().iter().position(|c| c.path().parts() == [column]) else {
        return all;
    };
    all.into_iter()
        .filter(|&group| {
            let stats = metadata.row_group(group).columns().get(leaf).and_then(|c| c.statistics());
            let max = stats.and_then(|s| statistics_max(s, field.data_type()));
            let before = match (max, cursor) {
                (Some(Value::Int(m)), Value::Int(c)) | (Some(Value::Timestamp(m)), Value::Timestamp(c)) => m < *c,
                (Some(Value::Date(m)), Value::Date(c)) => m < *c,
                _ => false,
            };
            !before
        })
        .collect()
}

/// A row group's largest value of a column as rse would read it, when its statistics say.
fn statistics_max(stats: &::parquet::file::statistics::Statistics, t: &ArrowType) -> Option<Value> {
    use ::parquet::file::statistics::Statistics;
    let max = match stats {
        Statistics::Int32(s) => i64::from(*s.max_opt()?),
        Statistics::Int64(s) => *s.max_opt()?,
        _ => return None,
    };
    Some(match t {
        // Unsigned columns are left out: their statistics order as unsigned.
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64 => Value::Int(max),
        ArrowType::Date32 => Value::Date(i32::try_from(max).ok()?),
        ArrowType::Timestamp(unit, _) => Value::Timestamp(match unit {
            TimeUnit::Second => max.checked_mul(1_000_000)?,
            TimeUnit::Millisecond => max.checked_mul(1_000)?,
            TimeUnit::Microsecond => max,
            TimeUnit::Nanosecond => max.div_euclid(1_000),
        }),
        _ => return None,
    })
}

fn io_error(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Unavailable { message: format!("reading `{}` failed", path.display()), source: Some(Box::new(e)) }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

fn is_uuid(field: &ArrowField) -> bool {
    field.metadata().get("ARROW:extension:name").is_some_and(|n| n == "arrow.uuid")
}

/// The rse type of an Arrow field read from Parquet.
fn map_type(field: &ArrowField) -> Result<DataType, SourceError> {
    map_arrow(field.data_type(), is_uuid(field)).ok_or_else(|| SourceError::UnsupportedType {
        column: field.name().clone(),
        native_type: field.data_type().to_string(),
        hint: Some(
            "leave the column out with ParquetSource::with_columns, or convert it where the file is written".to_owned(),
        ),
    })
}

fn map_arrow(t: &ArrowType, uuid: bool) -> Option<DataType> {
    Some(match t {
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Int8
        | ArrowType::Int16
        | ArrowType::Int32
        | ArrowType::Int64
        | ArrowType::UInt8
        | ArrowType::UInt16
        | ArrowType::UInt32
        | ArrowType::UInt64 => DataType::Int,
        ArrowType::Float32 | ArrowType::Float64 => DataType::Float,
        ArrowType::Decimal32(..) | ArrowType::Decimal64(..) | ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => {
            DataType::Decimal
        }
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::String,
        ArrowType::FixedSizeBinary(16) if uuid => DataType::String,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView | ArrowType::FixedSizeBinary(_) => {
            DataType::Bytes
        }
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        ArrowType::Timestamp(..) => DataType::Timestamp,
        ArrowType::List(f) | ArrowType::LargeList(f) | ArrowType::FixedSizeList(f, _) => {
            DataType::List(Box::new(map_arrow(f.data_type(), is_uuid(f))?))
        }
        ArrowType::Dictionary(_, value) => map_arrow(value, uuid)?,
        _ => return None,
    })
}

/// Converts an Arrow batch to records; on failure `(column, row in batch, reason)`.
fn convert_batch(batch: &arrow_array::RecordBatch, schema: &Schema) -> Result<Vec<Record>, (String, usize, String)> {
    let rows = batch.num_rows();
    let mut records: Vec<Vec<Value>> = (0..rows).map(|_| Vec::with_capacity(schema.len())).collect();
    for (i, field) in schema.fields().iter().enumerate() {
        let array = batch.column(i);
        let uuid = batch.schema().field(i).metadata().get("ARROW:extension:name").is_some_and(|n| n == "arrow.uuid");
        let values = column_values(array.as_ref(), uuid).map_err(|(row, reason)| (field.name.clone(), row, reason))?;
        for (record, value) in records.iter_mut().zip(values) {
            record.push(value);
        }
    }
    Ok(records.into_iter().map(Record::new).collect())
}

fn unsupported(t: &ArrowType) -> (usize, String) {
    (0, format!("Arrow type {t} is not supported"))
}

/// Every value of `array`, nulls as [`Value::Null`]; on failure `(row, reason)`.
fn column_values(array: &dyn Array, uuid: bool) -> Result<Vec<Value>, (usize, String)> {
    let n = array.len();
    macro_rules! each {
        ($arr:expr, |$v:ident| $make:expr) => {{
            let arr = $arr;
            let mut out = Vec::with_capacity(n);
            for row in 0..n {
                if arr.is_null(row) {
                    out.push(Value::Null);
                } else {
                    let $v = arr.value(row);
                    let made: Result<Value, String> = $make;
                    out.push(made.map_err(|reason| (row, reason))?);
                }
            }
            Ok(out)
        }};
    }
    macro_rules! prim {
        ($t:ty, |$v:ident| $make:expr) => {{
            let arr = array.as_primitive_opt::<$t>().ok_or_else(|| unsupported(array.data_type()))?;
            each!(arr, |$v| $make)
        }};
    }
    let t = array.data_type();
    match t {
        ArrowType::Boolean => {
            let arr = array.as_boolean_opt().ok_or_else(|| unsupported(t))?;
            each!(arr, |v| Ok(Value::Bool(v)))
        }
        ArrowType::Int8 => prim!(Int8Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::Int16 => prim!(Int16Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::Int32 => prim!(Int32Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::Int64 => prim!(Int64Type, |v| Ok(Value::Int(v))),
        ArrowType::UInt8 => prim!(UInt8Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::UInt16 => prim!(UInt16Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::UInt32 => prim!(UInt32Type, |v| Ok(Value::Int(v.into()))),
        ArrowType::UInt64 => prim!(UInt64Type, |v| i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| "an unsigned 64-bit value above the largest signed one".to_owned())),
        ArrowType::Float32 => prim!(Float32Type, |v| Ok(Value::Float(v.into()))),
        ArrowType::Float64 => prim!(Float64Type, |v| Ok(Value::Float(v))),
        ArrowType::Decimal32(_, s) => prim!(Decimal32Type, |v| decimal(i128::from(v), *s)),
        ArrowType::Decimal64(_, s) => prim!(Decimal64Type, |v| decimal(i128::from(v), *s)),
        ArrowType::Decimal128(_, s) => prim!(Decimal128Type, |v| decimal(v, *s)),
        ArrowType::Decimal256(_, s) => prim!(Decimal256Type, |v| {
            Decimal::parse(&format!("{v}e{}", -i32::from(*s)))
                .map(Value::Decimal)
                .map_err(|_| "the decimal does not convert".to_owned())
        }),
        ArrowType::Date32 => prim!(Date32Type, |v| Ok(Value::Date(v))),
        ArrowType::Date64 => prim!(Date64Type, |v| i32::try_from(v.div_euclid(86_400_000))
            .map(Value::Date)
            .map_err(|_| "the date is out of range".to_owned())),
        ArrowType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, |v| v
            .checked_mul(1_000_000)
            .map(Value::Timestamp)
            .ok_or_else(|| "the timestamp is out of range".to_owned())),
        ArrowType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, |v| v
            .checked_mul(1_000)
            .map(Value::Timestamp)
            .ok_or_else(|| "the timestamp is out of range".to_owned())),
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, |v| Ok(Value::Timestamp(v))),
        ArrowType::Timestamp(TimeUnit::Nanosecond, _) => {
            prim!(TimestampNanosecondType, |v| Ok(Value::Timestamp(v.div_euclid(1_000))))
        }
        ArrowType::Utf8 => {
            each!(array.as_string_opt::<i32>().ok_or_else(|| unsupported(t))?, |v| Ok(Value::String(v.to_owned())))
        }
        ArrowType::LargeUtf8 => {
            each!(array.as_string_opt::<i64>().ok_or_else(|| unsupported(t))?, |v| Ok(Value::String(v.to_owned())))
        }
        ArrowType::Utf8View => {
            each!(array.as_string_view_opt().ok_or_else(|| unsupported(t))?, |v| Ok(Value::String(v.to_owned())))
        }
        ArrowType::FixedSizeBinary(16) if uuid => {
            each!(array.as_fixed_size_binary_opt().ok_or_else(|| unsupported(t))?, |v| Ok(Value::String(format_uuid(
                v
            ))))
        }
        ArrowType::FixedSizeBinary(_) => {
            each!(array.as_fixed_size_binary_opt().ok_or_else(|| unsupported(t))?, |v| Ok(Value::Bytes(
                v.to_vec().into()
            )))
        }
        ArrowType::Binary => {
            each!(array.as_binary_opt::<i32>().ok_or_else(|| unsupported(t))?, |v| Ok(Value::Bytes(v.to_vec().into())))
        }
        ArrowType::LargeBinary => {
            each!(array.as_binary_opt::<i64>().ok_or_else(|| unsupported(t))?, |v| Ok(Value::Bytes(v.to_vec().into())))
        }
        ArrowType::BinaryView => {
            each!(array.as_binary_view_opt().ok_or_else(|| unsupported(t))?, |v| Ok(Value::Bytes(v.to_vec().into())))
        }
        ArrowType::List(f) => {
            let uuid = is_uuid(f);
            each!(array.as_list_opt::<i32>().ok_or_else(|| unsupported(t))?, |v| list(&v, uuid))
        }
        ArrowType::LargeList(f) => {
            let uuid = is_uuid(f);
            each!(array.as_list_opt::<i64>().ok_or_else(|| unsupported(t))?, |v| list(&v, uuid))
        }
        ArrowType::FixedSizeList(f, _) => {
            let uuid = is_uuid(f);
            each!(array.as_fixed_size_list_opt().ok_or_else(|| unsupported(t))?, |v| list(&v, uuid))
        }
        ArrowType::Dictionary(..) => {
            let dict = array.as_any_dictionary_opt().ok_or_else(|| unsupported(t))?;
            let values = column_values(dict.values().as_ref(), uuid)?;
            let keys = dict.normalized_keys();
            let mut out = Vec::with_capacity(n);
            for (row, key) in keys.into_iter().enumerate() {
                if array.is_null(row) {
                    out.push(Value::Null);
                } else {
                    out.push(values.get(key).cloned().ok_or((row, "a dictionary key is out of range".to_owned()))?);
                }
            }
            Ok(out)
        }
        other => Err(unsupported(other)),
    }
}

fn list(items: &ArrayRef, uuid: bool) -> Result<Value, String> {
    column_values(items.as_ref(), uuid).map(Value::List).map_err(|(_, reason)| format!("in a list: {reason}"))
}

fn decimal(unscaled: i128, scale: i8) -> Result<Value, String> {
    if scale >= 0 {
        return Ok(Value::Decimal(Decimal::from_scaled(unscaled, scale.unsigned_abs().into())));
    }
    Decimal::parse(&format!("{unscaled}e{}", -i32::from(scale)))
        .map(Value::Decimal)
        .map_err(|_| "the decimal does not convert".to_owned())
}

fn format_uuid(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xF)] as char);
    }
    out
}

#[async_trait]
impl Source for ParquetSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut capabilities =
            SourceCapabilities::default().with_ordered_by_key(self.sorted && !self.keys.key.is_empty());
        if let Some(cursor) = &self.keys.cursor {
            capabilities = capabilities.with_cursor_field(cursor.clone());
        }
        capabilities.pushdown = true;
        capabilities
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.resolve()).await.map_err(|e| SourceError::Other {
            message: "the Parquet reader stopped unexpectedly".to_owned(),
            source: Some(Box::new(e)),
        })?
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        if request.order_by_key && !self.capabilities().ordered_by_key {
            return Err(SourceError::Unsupported(format!(
                "`{}` is not declared sorted by key; read it without key order (the runner's hash diff does)",
                self.name
            )));
        }
        self.schema().await?;
        let this = self.clone();
        blocking_stream(self.name.clone(), move |sender| this.produce(&request, sender))
    }
}
