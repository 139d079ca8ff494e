//! ParquetSource over files the tests write with the Arrow writer: the conformance suite,
//! directories, projection and logical types.
#![cfg(feature = "parquet")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, FixedSizeBinaryArray,
    Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, Time64MicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{DataType as ArrowType, Field as ArrowField, Schema as ArrowSchema};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rse_core::testing::{
    check_empty_source, check_missing_column, check_missing_model, check_null_key, check_source, source_fixture,
    unique_id,
};
use rse_core::{DataType, Decimal, ReadRequest, Record, Source, SourceError, Value};
use rse_sources::parquet::ParquetSource;

/// A directory of its own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(unique_id("rse_parquet_source"));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, batch: &RecordBatch, row_group_rows: usize) {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group_rows)).build();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// The fixture rows as an Arrow batch.
fn fixture_batch(rows: &[Record]) -> RecordBatch {
    let col = |i: usize| rows.iter().map(move |r| r.values[i].clone());
    let strings =
        |i: usize| Arc::new(col(i).map(|v| v.as_str().map(str::to_owned)).collect::<StringArray>()) as ArrayRef;
    let ints = |i: usize| Arc::new(col(i).map(|v| v.as_i64()).collect::<Int64Array>()) as ArrayRef;
    let floats = Arc::new(
        col(3)
            .map(|v| match v {
                Value::Float(f) => Some(f),
                _ => None,
            })
            .collect::<Float64Array>(),
    ) as ArrayRef;
    batch(vec![
        ("region", strings(0)),
        ("id", ints(1)),
        ("name", strings(2)),
        ("score", floats),
        ("updated_at", ints(4)),
    ])
}

async fn read_all(source: &dyn Source, request: ReadRequest) -> Result<Vec<Record>, SourceError> {
    let mut stream = source.read(request).await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.extend(batch?.records);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_directories_pass_the_conformance_suite() {
    let fixture = source_fixture();
    let dir = TempDir::new();
    // One file, in no order, two rows per row group.
    let file = dir.path("one.parquet");
    write(&file, &fixture_batch(&fixture.rows), 2);
    let source = ParquetSource::new(&file).with_key(["region", "id"]).with_cursor("updated_at");
    check_source(&source, &fixture).await.unwrap();

    // A partitioned directory sorted by key across files, with files a reader must skip.
    let mut sorted = fixture.rows.clone();
    sorted.sort_by_key(|r| r.key(&fixture.schema).unwrap());
    write(&dir.path("set/part=1/a.parquet"), &fixture_batch(&sorted[..3]), 2);
    write(&dir.path("set/part=2/b.parquet"), &fixture_batch(&sorted[3..]), 3);
    std::fs::write(dir.path("set/_SUCCESS"), "").unwrap();
    std::fs::write(dir.path("set/.part=1.crc"), "junk").unwrap();
    let source = ParquetSource::new(dir.path("set"))
        .with_key(["region", "id"])
        .with_cursor("updated_at")
        .with_sorted_by_key(true);
    check_source(&source, &fixture).await.unwrap();

    // Projection: only the named columns (and key and cursor) are read.
    let source = ParquetSource::new(&file).with_columns(["score"]).with_key(["id"]).with_cursor("updated_at");
    let schema = source.schema().await.unwrap();
    assert_eq!(schema.field_names(), "id, score, updated_at");
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    assert!(rows.iter().all(|r| r.values.len() == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_missing_and_null_key_files() {
    let dir = TempDir::new();
    let empty = dir.path("empty.parquet");
    write(&empty, &fixture_batch(&[]), 10);
    check_empty_source(&ParquetSource::new(&empty).with_key(["id"]).with_cursor("updated_at")).await.unwrap();

    let missing = dir.path("missing.parquet");
    check_missing_model(&ParquetSource::new(&missing).with_key(["id"]), &missing.display().to_string()).await.unwrap();
    let file = dir.path("fixture.parquet");
    write(&file, &fixture_batch(&source_fixture().rows), 100);
    check_missing_column(&ParquetSource::new(&file).with_key(["region", "customer_id"]), "customer_id").await.unwrap();
    check_missing_column(&ParquetSource::new(&file).with_key(["id"]).with_columns(["email"]), "email").await.unwrap();

    let nulls = dir.path("nulls.parquet");
    let ids: ArrayRef = Arc::new(StringArray::from(vec![None, Some("a"), Some("b")]));
    write(&nulls, &batch(vec![("id", ids)]), 100);
    check_null_key(&ParquetSource::new(&nulls).with_key(["id"]).with_sorted_by_key(true), "id", 3).await.unwrap();

    // A file whose columns differ from the first one's is named.
    write(&dir.path("mixed/a.parquet"), &fixture_batch(&source_fixture().rows), 100);
    write(&dir.path("mixed/b.parquet"), &batch(vec![("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]), 100);
    let err = read_all(&ParquetSource::new(dir.path("mixed")).with_key(["id"]), ReadRequest::full()).await.unwrap_err();
    assert!(err.to_string().contains("b.parquet"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_types_map_exactly() {
    let dir = TempDir::new();
    let file = dir.path("typed.parquet");
    let mut lists = ListBuilder::new(Int32Builder::new());
    lists.append_value([Some(1), None, Some(3)]);
    lists.append_null();
    let mut nested = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    nested.values().append_value([Some("a"), Some("b")]);
    nested.append(true);
    nested.values().append_value([Some("c")]);
    nested.append(true);
    let uuid_field = ArrowField::new("uuid", ArrowType::FixedSizeBinary(16), true)
        .with_metadata(std::collections::HashMap::from([("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned())]));
    let uuid = FixedSizeBinaryArray::try_from_iter(
        [[0xA0u8, 0xEE, 0xBC, 0x99, 0x9C, 0x0B, 0x4E, 0xF8, 0xBB, 0x6D, 0x6B, 0xB9, 0xBD, 0x38, 0x0A, 0x11], [0u8; 16]]
            .into_iter(),
    )
    .unwrap();
    let columns: Vec<(ArrowField, ArrayRef)> = vec![
        (ArrowField::new("id", ArrowType::Int32, false), Arc::new(Int32Array::from(vec![1, 2]))),
        (
            ArrowField::new("amount", ArrowType::Decimal128(38, 4), true),
            Arc::new(
                Decimal128Array::from(vec![Some(123_456_789_012_345_678_901_234_567_890_123_i128), Some(-5)])
                    .with_precision_and_scale(38, 4)
                    .unwrap(),
            ),
        ),
        (
            ArrowField::new(
                "at",
                ArrowType::Timestamp(arrow_schema::TimeUnit::Millisecond, Some("+02:00".into())),
                true,
            ),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1_717_237_800_250), None]).with_timezone("+02:00")),
        ),
        (
            ArrowField::new("local", ArrowType::Timestamp(arrow_schema::TimeUnit::Nanosecond, None), true),
            Arc::new(TimestampNanosecondArray::from(vec![Some(1_500), Some(-1)])),
        ),
        (ArrowField::new("day", ArrowType::Date32, true), Arc::new(Date32Array::from(vec![Some(19_782), Some(-1)]))),
        (ArrowField::new("ok", ArrowType::Boolean, true), Arc::new(BooleanArray::from(vec![Some(true), None]))),
        (
            ArrowField::new("blob", ArrowType::Binary, true),
            Arc::new(BinaryArray::from(vec![Some(&[0u8, 255][..]), Some(&b""[..])])),
        ),
        (uuid_field, Arc::new(uuid)),
        (
            ArrowField::new("big", ArrowType::UInt64, true),
            Arc::new(UInt64Array::from(vec![Some(i64::MAX as u64), None])),
        ),
        (
            ArrowField::new("plan", ArrowType::Dictionary(Box::new(ArrowType::Int32), Box::new(ArrowType::Utf8)), true),
            Arc::new(vec![Some("pro"), Some("free")].into_iter().collect::<DictionaryArray<Int32Type>>()),
        ),
    ];
    let list_array: ListArray = lists.finish();
    let nested_array: ListArray = nested.finish();
    let mut fields: Vec<ArrowField> = columns.iter().map(|(f, _)| f.clone()).collect();
    let mut arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
    fields.push(ArrowField::new("tags", list_array.data_type().clone(), true));
    arrays.push(Arc::new(list_array));
    fields.push(ArrowField::new("nested", nested_array.data_type().clone(), true));
    arrays.push(Arc::new(nested_array));
    let typed = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).unwrap();
    write(&file, &typed, 100);

    let source = ParquetSource::new(&file).with_key(["id"]);
    let schema = source.schema().await.unwrap();
    use DataType as T;
    let list = |t: T| T::List(Box::new(t));
    let types: Vec<T> = schema.fields().iter().map(|f| f.data_type.clone()).collect();
    assert_eq!(
        types,
        [
            T::Int,
            T::Decimal,
            T::Timestamp,
            T::Timestamp,
            T::Date,
            T::Bool,
            T::Bytes,
            T::String,
            T::Int,
            T::String,
            list(T::Int),
            list(list(T::String))
        ]
    );
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    let dec = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
    let s = |s: &str| Value::from(s);
    assert_eq!(
        rows[0].values,
        vec![
            Value::Int(1),
            dec("12345678901234567890123456789.0123"),
            Value::Timestamp(1_717_237_800_250_000),
            Value::Timestamp(1),
            Value::Date(19_782),
            Value::Bool(true),
            Value::Bytes(vec![0, 255].into()),
            s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Value::Int(i64::MAX),
            s("pro"),
            Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)]),
            Value::List(vec![Value::List(vec![s("a"), s("b")])]),
        ]
    );
    assert_eq!(rows[1].values[1], dec("-0.0005"));
    assert_eq!(rows[1].values[3], Value::Timestamp(-1), "nanoseconds truncate toward the past");
    assert_eq!(rows[1].values[4], Value::Date(-1));
    assert_eq!(rows[1].values[10], Value::Null);
    assert_eq!(rows[1].values[11], Value::List(vec![Value::List(vec![s("c")])]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_types_and_values_name_their_column() {
    let dir = TempDir::new();
    let file = dir.path("odd.parquet");
    let odd = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("opens_at", Arc::new(Time64MicrosecondArray::from(vec![1, 2])) as ArrayRef),
        ("big", Arc::new(UInt64Array::from(vec![1, u64::MAX])) as ArrayRef),
    ]);
    write(&file, &odd, 100);
    let err = ParquetSource::new(&file).with_key(["id"]).schema().await.unwrap_err();
    assert!(matches!(&err, SourceError::UnsupportedType { column, .. } if column == "opens_at"), "{err:?}");
    assert!(err.to_string().contains("Time64"), "{err}");
    // Projected away, the rest reads; the value that does not fit is named by column and row.
    let source = ParquetSource::new(&file).with_columns(["big"]).with_key(["id"]);
    let err = read_all(&source, ReadRequest::full()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`big`") && message.contains("row 2"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_groups_before_the_cursor_are_not_read() {
    let dir = TempDir::new();
    let file = dir.path("events.parquet");
    // Two rows per row group. The first group holds an unsigned value rse cannot read: a
    // read that decodes that group fails, so a read that succeeds has skipped it.
    let events = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef),
        ("updated_at", Arc::new(Int64Array::from(vec![10, 20, 30, 30, 40])) as ArrayRef),
        ("big", Arc::new(UInt64Array::from(vec![u64::MAX, 1, 1, 1, 1])) as ArrayRef),
    ]);
    write(&file, &events, 2);
    let source = ParquetSource::new(&file).with_key(["id"]).with_cursor("updated_at");
    assert!(read_all(&source, ReadRequest::full()).await.is_err(), "a full read decodes the first row group");
    let ids = |rows: Vec<Record>| rows.iter().map(|r| r.values[0].as_i64().unwrap()).collect::<Vec<_>>();
    let rows = read_all(&source, ReadRequest::full().with_cursor(Some(Value::Int(30)))).await.unwrap();
    assert_eq!(ids(rows), [3, 4, 5], "ties at the cursor are kept across row groups");
    let rows = read_all(&source, ReadRequest::full().with_cursor(Some(Value::Int(21)))).await.unwrap();
    assert_eq!(ids(rows), [3, 4, 5]);
    // A group whose largest cursor equals the cursor is read.
    assert!(read_all(&source, ReadRequest::full().with_cursor(Some(Value::Int(20)))).await.is_err());
}
