//! Source read throughput: a million rows of ten columns from each source, and the peak
//! memory of one full read.
//!
//! Every source reads the same model — `id` int, `name`, `email`, `country` text, `score`
//! float, `amount` decimal (2 places), `active` bool, `created` date, `updated_at`
//! timestamp, `visits` int — created once, untimed: a PostgreSQL table (in its own schema,
//! dropped at the end), a SQLite file, a CSV file and a Parquet file (snappy, row groups of
//! 128 Ki rows) in the temp directory. Each iteration reads the whole model in batches of
//! 4096 and counts the records.
//!
//! Besides criterion's throughput, each source prints one line: rows per second of a single
//! read and the peak resident memory during it (`VmHWM` from `/proc/self/status`, reset
//! before the read through `/proc/self/clear_refs`). Targets: PostgreSQL and SQLite
//! ≥ 500 k rows/s, Parquet and CSV ≥ 1 M rows/s.
//!
//! Run with `cargo bench --bench sources --features sqlite,postgres,files,parquet` (any
//! subset); set `RSE_BENCH_ROWS` for another size and `RSE_POSTGRES_URL` for the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use rse_core::{ReadRequest, Source};

const BATCH: usize = 4096;

fn rows() -> usize {
    std::env::var("RSE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The `i`-th row's values as text, in column order (the CSV line and the SQL values).
#[allow(dead_code)] // Unused when only the PostgreSQL source (which generates rows in SQL) is built.
fn row_text(i: usize) -> [String; 10] {
    [
        i.to_string(),
        format!("Customer {i}"),
        format!("customer{i}@example.com"),
        ["FR", "DE", "US", "BR", "JP"][i % 5].to_owned(),
        format!("{}", (i % 1000) as f64 / 8.0),
        format!("{}.{:02}", i % 100_000, i % 100),
        i.is_multiple_of(3).to_string(),
        format!("2024-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
        format!("2024-06-01T{:02}:{:02}:{:02}.{:06}Z", i % 24, i % 60, (i / 60) % 60, i % 1_000_000),
        (i % 500).to_string(),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn read_count(source: &dyn Source) -> usize {
    let mut stream = source.read(ReadRequest::full().with_batch_size(BATCH)).await.unwrap();
    let mut n = 0;
    while let Some(batch) = stream.next().await {
        n += black_box(batch.unwrap()).len();
    }
    n
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat` at the usual
/// 100 ticks per second.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Times one full read and reports rows/s and the peak resident memory during it.
fn report(rt: &tokio::runtime::Runtime, label: &str, source: &dyn Source) {
    let before = status_kb("VmRSS:").unwrap_or(0);
    // Resets VmHWM to the current RSS (Linux); without it the peak includes data generation.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (started, cpu_before) = (Instant::now(), cpu_secs());
    let n = rt.block_on(read_count(source));
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_secs() - cpu_before);
    assert_eq!(n, rows(), "{label} read {n} rows");
    let peak = status_kb("VmHWM:").unwrap_or(0);
    // CPU time shows the cost on a busy machine, where wall time also counts waiting.
    println!(
        "{label}: {n} rows × 10 columns in {secs:.2} s = {:.0} rows/s ({cpu:.2} CPU-s in this process); \
         peak RSS {} during the read (RSS before {}{})",
        n as f64 / secs,
        mb(peak),
        mb(before),
        if reset { "" } else { "; peak not reset, includes setup" }
    );
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn bench_source(c: &mut Criterion, rt: &tokio::runtime::Runtime, label: &str, source: &dyn Source) {
    report(rt, label, source);
    let mut group = c.benchmark_group("sources");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(rows() as u64));
    group.bench_function(label, |b| b.iter(|| rt.block_on(read_count(source))));
    group.finish();
}

#[cfg(feature = "sqlite")]
fn sqlite(c: &mut Criterion) {
    use rse_sources::Model;
    use rse_sources::sqlite::SqliteSource;
    let path = std::env::temp_dir().join(format!("rse_bench_sources_{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE model (id INTEGER PRIMARY KEY, name TEXT, email TEXT, country TEXT, score REAL,
               amount NUMERIC(12, 2), active BOOLEAN, created DATE, updated_at TIMESTAMP, visits INTEGER);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare("INSERT INTO model VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)").unwrap();
            for i in 0..rows() {
                let t = row_text(i);
                insert
                    .execute(rusqlite::params![
                        i as i64,
                        t[1],
                        t[2],
                        t[3],
                        (i % 1000) as f64 / 8.0,
                        t[5],
                        i.is_multiple_of(3),
                        t[7],
                        t[8],
                        (i % 500) as i64
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let rt = runtime();
    let source = SqliteSource::new(&path, Model::table("model")).with_key(["id"]);
    bench_source(c, &rt, "sqlite", &source);
    let _ = std::fs::remove_file(&path);
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    use rse_sources::Model;
    use rse_sources::postgres::PostgresSource;
    let url = std::env::var("RSE_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let rt = runtime();
    let schema = format!("rse_bench_sources_{}", std::process::id());
    let client = match rt.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls)) {
        Ok((client, connection)) => {
            rt.spawn(connection);
            client
        }
        Err(e) => {
            eprintln!("skipping the PostgreSQL source bench: {url} is unreachable ({e})");
            return;
        }
    };
    let setup = format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.model AS SELECT
           g::int8 AS id, 'Customer ' || g AS name, 'customer' || g || '@example.com' AS email,
           (ARRAY['FR','DE','US','BR','JP'])[g % 5 + 1] AS country, (g % 1000) / 8.0::float8 AS score,
           ((g % 100000) || '.' || lpad((g % 100)::text, 2, '0'))::numeric(12, 2) AS amount,
           g % 3 = 0 AS active, date '2024-01-01' + (g % 365) AS created,
           timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second' AS updated_at, (g % 500)::int4 AS visits
         FROM generate_series(0, {} - 1) AS g;",
        rows()
    );
    rt.block_on(client.batch_execute(&setup)).unwrap();
    let source = PostgresSource::from_url(&url, Model::qualified(&schema, "model")).unwrap().with_key(["id"]);
    bench_source(c, &rt, "postgres", &source);
    rt.block_on(client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))).unwrap();
}

#[cfg(feature = "files")]
fn csv(c: &mut Criterion) {
    use std::io::Write;

    use rse_core::{DataType, Field};
    use rse_sources::files::CsvSource;
    let path = std::env::temp_dir().join(format!("rse_bench_sources_{}.csv", std::process::id()));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "id,name,email,country,score,amount,active,created,updated_at,visits").unwrap();
        for i in 0..rows() {
            writeln!(out, "{}", row_text(i).join(",")).unwrap();
        }
        out.flush().unwrap();
    }
    let fields = vec![
        Field::new("id", DataType::Int),
        Field::new("name", DataType::String),
        Field::new("email", DataType::String),
        Field::new("country", DataType::String),
        Field::new("score", DataType::Float),
        Field::new("amount", DataType::Decimal),
        Field::new("active", DataType::Bool),
        Field::new("created", DataType::Date),
        Field::new("updated_at", DataType::Timestamp),
        Field::new("visits", DataType::Int),
    ];
    let rt = runtime();
    let source = CsvSource::new(&path).with_schema(fields).with_key(["id"]);
    bench_source(c, &rt, "csv", &source);
    let _ = std::fs::remove_file(&path);
}

#[cfg(feature = "parquet")]
fn parquet(c: &mut Criterion) {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array, RecordBatch,
        StringArray, TimestampMicrosecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use rse_sources::parquet::ParquetSource;
    let path = std::env::temp_dir().join(format!("rse_bench_sources_{}.parquet", std::process::id()));
    {
        let chunk = 65_536;
        let mut writer = None;
        let mut start = 0;
        while start < rows() {
            let ids: Vec<usize> = (start..(start + chunk).min(rows())).collect();
            let text =
                |f: fn(usize) -> String| Arc::new(ids.iter().map(|&i| Some(f(i))).collect::<StringArray>()) as ArrayRef;
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("id", Arc::new(ids.iter().map(|&i| i as i64).collect::<Int64Array>())),
                ("name", text(|i| format!("Customer {i}"))),
                ("email", text(|i| format!("customer{i}@example.com"))),
                ("country", text(|i| ["FR", "DE", "US", "BR", "JP"][i % 5].to_owned())),
                ("score", Arc::new(ids.iter().map(|&i| (i % 1000) as f64 / 8.0).collect::<Float64Array>())),
                (
                    "amount",
                    Arc::new(
                        ids.iter()
                            .map(|&i| ((i % 100_000) * 100 + i % 100) as i128)
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(12, 2)
                            .unwrap(),
                    ),
                ),
                ("active", Arc::new(ids.iter().map(|&i| Some(i.is_multiple_of(3))).collect::<BooleanArray>())),
                (
                    "created",
                    Arc::new(Date32Array::from(ids.iter().map(|&i| 19_723 + (i % 365) as i32).collect::<Vec<_>>())),
                ),
                (
                    "updated_at",
                    Arc::new(
                        TimestampMicrosecondArray::from(
                            ids.iter().map(|&i| 1_717_200_000_000_000 + i as i64 * 1_000_000).collect::<Vec<_>>(),
                        )
                        .with_timezone("UTC"),
                    ),
                ),
                ("visits", Arc::new(ids.iter().map(|&i| (i % 500) as i32).collect::<Int32Array>())),
            ];
            let batch = RecordBatch::try_from_iter(columns).unwrap();
            let writer = writer.get_or_insert_with(|| {
                let props = WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(131_072))
                    .build();
                ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap()
            });
            writer.write(&batch).unwrap();
            start += chunk;
        }
        writer.unwrap().close().unwrap();
    }
    let rt = runtime();
    let source = ParquetSource::new(&path).with_key(["id"]);
    bench_source(c, &rt, "parquet", &source);
    let _ = std::fs::remove_file(&path);
}

fn benches(c: &mut Criterion) {
    #[cfg(feature = "postgres")]
    postgres(c);
    #[cfg(feature = "sqlite")]
    sqlite(c);
    #[cfg(feature = "files")]
    csv(c);
    #[cfg(feature = "parquet")]
    parquet(c);
    let _ = c;
}

criterion_group!(sources, benches);
criterion_main!(sources);
