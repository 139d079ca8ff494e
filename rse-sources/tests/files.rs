//! CsvSource and JsonLinesSource over files written by the tests: the conformance suite,
//! parsing options, declared and inferred schemas, and malformed lines.
#![cfg(feature = "files")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use futures::StreamExt;
use rse_core::testing::{
    check_empty_source, check_missing_column, check_missing_model, check_null_key, check_source, source_fixture,
    unique_id,
};
use rse_core::{DataType, Decimal, Field, ReadRequest, Record, Source, SourceError, Value};
use rse_sources::files::{CsvSource, JsonLinesSource, OnMalformed};

/// A file of its own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.{extension}", unique_id("rse_file_source")));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn read_all(source: &dyn Source, request: ReadRequest) -> Result<Vec<Record>, SourceError> {
    let mut stream = source.read(request).await?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.extend(batch?.records);
    }
    Ok(out)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        other => panic!("unexpected fixture type {}", other.type_name()),
    }
}

fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::String(s) => s.clone().into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        other => panic!("unexpected fixture type {}", other.type_name()),
    }
}

/// The fixture rows, sorted by key when `sorted`.
fn fixture_rows(sorted: bool) -> Vec<Record> {
    let fixture = source_fixture();
    let mut rows = fixture.rows;
    if sorted {
        rows.sort_by_key(|r| r.key(&fixture.schema).unwrap());
    }
    rows
}

fn fixture_csv(sorted: bool) -> TempFile {
    let mut out = String::from("region,id,name,score,updated_at\n");
    for r in fixture_rows(sorted) {
        out.push_str(&r.values.iter().map(text).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    TempFile::new("csv", &out)
}

fn fixture_jsonl(sorted: bool) -> TempFile {
    let names = ["region", "id", "name", "score", "updated_at"];
    let mut out = String::new();
    for r in fixture_rows(sorted) {
        let object: serde_json::Map<String, serde_json::Value> =
            names.iter().zip(&r.values).map(|(n, v)| (n.to_string(), json(v))).collect();
        out.push_str(&serde_json::Value::Object(object).to_string());
        out.push_str("\n\n");
    }
    TempFile::new("jsonl", &out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_pass_the_conformance_suite_sorted_or_not() {
    let fixture = source_fixture();
    for sorted in [false, true] {
        let file = fixture_csv(sorted);
        let source =
            CsvSource::new(&file.0).with_key(["region", "id"]).with_cursor("updated_at").with_sorted_by_key(sorted);
        assert_eq!(source.capabilities().ordered_by_key, sorted);
        check_source(&source, &fixture).await.unwrap_or_else(|e| panic!("sorted {sorted}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_files_pass_the_conformance_suite() {
    let fixture = source_fixture();
    for sorted in [false, true] {
        let file = fixture_jsonl(sorted);
        let source = JsonLinesSource::new(&file.0)
            .with_schema(fixture.schema.fields().to_vec())
            .with_key(["region", "id"])
            .with_cursor("updated_at")
            .with_sorted_by_key(sorted);
        check_source(&source, &fixture).await.unwrap_or_else(|e| panic!("sorted {sorted}: {e}"));
    }
    // Inferred: the same types, fields in alphabetical order.
    let file = fixture_jsonl(false);
    let schema = JsonLinesSource::new(&file.0).schema().await.unwrap();
    let fields: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name.as_str(), &f.data_type)).collect();
    assert_eq!(
        fields,
        [
            ("id", &DataType::Int),
            ("name", &DataType::String),
            ("region", &DataType::String),
            ("score", &DataType::Float),
            ("updated_at", &DataType::Int)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_missing_and_null_key_files() {
    let empty = TempFile::new("csv", "id,updated_at\n");
    let declared = vec![Field::new("id", DataType::Int), Field::new("updated_at", DataType::Int)];
    check_empty_source(
        &CsvSource::new(&empty.0).with_schema(declared.clone()).with_key(["id"]).with_cursor("updated_at"),
    )
    .await
    .unwrap();
    let empty = TempFile::new("jsonl", "\n");
    check_empty_source(&JsonLinesSource::new(&empty.0).with_schema(declared).with_key(["id"])).await.unwrap();

    let missing = std::env::temp_dir().join(format!("{}.csv", unique_id("rse_missing")));
    let label = missing.display().to_string();
    check_missing_model(&CsvSource::new(&missing).with_key(["id"]), &label).await.unwrap();
    check_missing_model(&JsonLinesSource::new(&missing).with_key(["id"]), &label).await.unwrap();

    let csv = fixture_csv(false);
    check_missing_column(&CsvSource::new(&csv.0).with_key(["region", "customer_id"]), "customer_id").await.unwrap();
    let declared = vec![Field::new("id", DataType::Int), Field::new("email", DataType::String)];
    check_missing_column(&CsvSource::new(&csv.0).with_schema(declared).with_key(["id"]), "email").await.unwrap();
    let jsonl = fixture_jsonl(false);
    check_missing_column(&JsonLinesSource::new(&jsonl.0).with_key(["id"]).with_cursor("modified"), "modified")
        .await
        .unwrap();

    let nulls = TempFile::new("csv", "id,n\n,1\na,2\nb,3\n");
    check_null_key(&CsvSource::new(&nulls.0).with_key(["id"]).with_sorted_by_key(true), "id", 3).await.unwrap();
    let nulls = TempFile::new("jsonl", "{\"n\": 1}\n{\"id\": \"a\", \"n\": 2}\n{\"id\": null, \"n\": 3}\n");
    let source = JsonLinesSource::new(&nulls.0).with_key(["id"]);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.values[0].is_null()).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_delimiter_quoting_header_and_declared_types() {
    // Columns in another order than declared; a quoted field holds the delimiter, a doubled
    // quote and a line break.
    let file = TempFile::new(
        "csv",
        "note;price;day;id;at;ok;doc\n\
         \"a;b \"\"c\"\"\nd\";12345678901234567890.10;2024-02-29;1;2024-06-01T12:30:00Z;yes;{\"k\": [1]}\n\
         ;-0.5;;2;2024-06-01 00:00:00+01:00;false;null\n",
    );
    let declared = vec![
        Field::new("id", DataType::Int),
        Field::new("price", DataType::Decimal),
        Field::new("day", DataType::Date),
        Field::new("at", DataType::Timestamp),
        Field::new("ok", DataType::Bool),
        Field::new("doc", DataType::Json),
        Field::new("note", DataType::String),
    ];
    let source = CsvSource::new(&file.0).with_delimiter(b';').with_schema(declared).with_key(["id"]);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    let june_first = 1_717_200_000_000_000i64;
    assert_eq!(
        rows[0].values,
        vec![
            Value::Int(1),
            Value::Decimal(Decimal::parse("12345678901234567890.1").unwrap()),
            Value::Date(19_782),
            Value::Timestamp(june_first + 45_000_000_000),
            Value::Bool(true),
            Value::Json(serde_json::json!({"k": [1]})),
            Value::from("a;b \"c\"\nd"),
        ]
    );
    assert_eq!(
        rows[1].values,
        vec![
            Value::Int(2),
            Value::Decimal(Decimal::parse("-0.5").unwrap()),
            Value::Null,
            Value::Timestamp(june_first - 3_600_000_000),
            Value::Bool(false),
            Value::Json(serde_json::Value::Null),
            Value::Null,
        ]
    );

    // No header: columns by position, named column_1… when inferred.
    let file = TempFile::new("csv", "'x,y',1\n'z',2\n");
    let source = CsvSource::new(&file.0).with_header(false).with_quote(b'\'').with_key(["column_2"]);
    let schema = source.schema().await.unwrap();
    assert_eq!(schema.field_names(), "column_1, column_2");
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    assert_eq!(rows[0].values, vec![Value::from("x,y"), Value::Int(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_csv_line_fails_the_read_or_is_rejected_by_line_number() {
    let file = TempFile::new("csv", "id,amount\n1,10\n2,\"multi\nline\"\n3,secret-value\n4,40,extra\n5,50\n");
    let declared = vec![Field::new("id", DataType::Int), Field::new("amount", DataType::String)];
    let typed = vec![Field::new("id", DataType::Int), Field::new("amount", DataType::Int)];
    // `amount` as an int: line 2 (multi-line) and line 4 fail; line 5 has an extra field.
    let source = CsvSource::new(&file.0).with_schema(typed.clone()).with_key(["id"]);
    let err = read_all(&source, ReadRequest::full()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
    assert!(message.contains("line 3") && message.contains("`amount`"), "{message}");

    let source = CsvSource::new(&file.0).with_schema(typed).with_key(["id"]).with_on_malformed(OnMalformed::Reject);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.values[0].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 5]);
    let rejected = source.rejected().lines();
    let lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 5, 6]);
    assert!(rejected[0].reason.contains("`amount`"), "{:?}", rejected[0]);
    assert!(rejected[2].reason.contains("3 fields"), "{:?}", rejected[2]);
    assert!(rejected.iter().all(|r| !r.reason.contains("secret")), "reasons never show values");

    // As text every row fits but the one with an extra field.
    let source = CsvSource::new(&file.0).with_schema(declared).with_key(["id"]).with_on_malformed(OnMalformed::Reject);
    assert_eq!(read_all(&source, ReadRequest::full()).await.unwrap().len(), 4);
    assert_eq!(source.rejected().lines().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_lines_reach_the_run_report() {
    use rse_core::memory::{MemoryDestination, MemoryStateStore};
    let file = TempFile::new("csv", "id,amount\n1,10\n2,secret-value\n3,30\n4,40,extra\n");
    let typed = vec![Field::new("id", DataType::Int), Field::new("amount", DataType::Int)];
    let source = CsvSource::new(&file.0).with_schema(typed).with_key(["id"]).with_on_malformed(OnMalformed::Reject);
    let destination = MemoryDestination::new();
    let sync = rse_core::SyncJob::builder("csv-rejections")
        .source(source)
        .destination(destination.clone())
        .state(MemoryStateStore::new())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.source_rejected, 2);
    assert_eq!(report.counts.applied.insert, 2);
    assert_eq!(report.status, rse_core::RunStatus::CompletedWithRejections);
    let reasons: Vec<&str> = report.rejections.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("line 3 of") && r.contains("`amount`")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("line 5 of")), "{reasons:?}");
    assert!(reasons.iter().all(|r| !r.contains("secret")), "{reasons:?}");
    assert_eq!(destination.records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_json_line_fails_the_read_or_is_rejected_by_line_number() {
    let file = TempFile::new(
        "jsonl",
        "{\"id\": 1, \"amount\": 1.5}\n\n{\"id\": 2, \"amount\": \"secret-value\"}\nnot json\n[1, 2]\n{\"id\": 3, \"amount\": \"2.25\"}\n",
    );
    let declared = vec![Field::new("id", DataType::Int), Field::new("amount", DataType::Decimal)];
    let source = JsonLinesSource::new(&file.0).with_schema(declared.clone()).with_key(["id"]);
    let err = read_all(&source, ReadRequest::full()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("line 3") && message.contains("`amount`"), "{message}");
    assert!(!message.contains("secret"), "{message}");

    let source =
        JsonLinesSource::new(&file.0).with_schema(declared).with_key(["id"]).with_on_malformed(OnMalformed::Reject);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.values.clone()).collect::<Vec<_>>(),
        vec![
            vec![Value::Int(1), Value::Decimal(Decimal::parse("1.5").unwrap())],
            vec![Value::Int(3), Value::Decimal(Decimal::parse("2.25").unwrap())],
        ]
    );
    let lines: Vec<u64> = source.rejected().lines().iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_declared_sorted_that_is_not_fails_a_key_ordered_read() {
    let file = TempFile::new("csv", "id\n1\n3\n2\n");
    let source = CsvSource::new(&file.0).with_key(["id"]).with_sorted_by_key(true);
    let err = read_all(&source, ReadRequest::full().with_order_by_key(true)).await.unwrap_err();
    assert!(err.to_string().contains("line 4"), "{err}");
    // Without the declaration, key order is refused up front.
    let source = CsvSource::new(&file.0).with_key(["id"]);
    let err = read_all(&source, ReadRequest::full().with_order_by_key(true)).await.unwrap_err();
    assert!(matches!(err, SourceError::Unsupported(_)), "{err:?}");
    assert_eq!(read_all(&source, ReadRequest::full()).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_stream_in_batches() {
    let mut contents = String::from("id,name\n");
    for i in 0..20_000 {
        contents.push_str(&format!("{i},name-{i}\n"));
    }
    let file = TempFile::new("csv", &contents);
    let source = CsvSource::new(&file.0).with_key(["id"]);
    let mut stream = source.read(ReadRequest::full().with_batch_size(500)).await.unwrap();
    let (mut batches, mut rows) = (0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        assert!(batch.len() <= 500);
        rows += batch.len();
        batches += 1;
    }
    assert_eq!((rows, batches), (20_000, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_values_with_leading_zeros_are_inferred_as_text_and_stay_distinct_keys() {
    let file = TempFile::new("csv", "code,n,m,ratio,padded_ratio\n007,0,-007,0.5,00.5\n7,10,00,1.25,1\n");
    let source = CsvSource::new(&file.0).with_key(["code"]);
    let schema = source.schema().await.unwrap();
    let types: Vec<String> = schema.fields().iter().map(|f| f.data_type.to_string()).collect();
    let expected: Vec<String> = [DataType::String, DataType::Int, DataType::String, DataType::Float, DataType::String]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(types, expected);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    let codes: Vec<&Value> = rows.iter().map(|r| &r.values[0]).collect();
    assert_eq!(codes, [&Value::from("007"), &Value::from("7")]);
    assert_ne!(rows[0].key(&schema).unwrap(), rows[1].key(&schema).unwrap());
    assert_eq!(rows[1].values[2], Value::from("00"));

    // Zero, and numbers that only look padded after a sign or a decimal point, are numbers.
    let file = TempFile::new("csv", "id\n0\n10\n-3\n");
    let source = CsvSource::new(&file.0).with_key(["id"]);
    assert_eq!(source.schema().await.unwrap().fields()[0].data_type, DataType::Int);
    let rows = read_all(&source, ReadRequest::full()).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.values[0].clone()).collect::<Vec<_>>(),
        [Value::Int(0), Value::Int(10), Value::Int(-3)]
    );
}
