//! What the metrics cost a run: the diff bench's unchanged path run end to end through
//! `SyncJob` — a million records read from a `MemorySource`, every one matching the snapshot
//! the hash diff loads from a `MemoryStateStore`, nothing to send — once with no recorder
//! installed and once with a Prometheus recorder (`metrics-exporter-prometheus`).
//!
//! - `metrics/run_unchanged/no_recorder`: every metric call is the facade's no-op.
//! - `metrics/run_unchanged/prometheus`: the recorder records every counter, gauge and
//!   histogram the run emits (its help texts registered first with `describe`).
//! - `metrics/run_unchanged/prometheus_json_logs`: the same, with a tracing subscriber writing
//!   JSON lines at INFO with every span's fields (to a sink), as the json_logs example sets
//!   up: the spans of the run, its reads and diff passes are then recorded too.
//!
//! In the first two no tracing subscriber is installed, so spans cost what they cost a host
//! that logs nothing. Both run the same `SyncJob`, whose first run (the initial load, untimed)
//! filled the snapshot.
//!
//! The time measured is the CPU time (user and system) of the thread that runs the sync —
//! the runtime is a current-thread one, so that is all of the run's work — read from
//! `/proc/thread-self/stat` in ticks of 10 ms (each sample is one or more runs of about a
//! second): on a machine shared with other work, the time the thread waits for a core does
//! not count. Off Linux it is wall time. Run with `cargo bench --bench metrics`;
//! `RSE_BENCH_ROWS` sets a smaller table.
//!
//! Each run clones the source's million records and frees them again. glibc's allocator
//! returns such a heap to the system between runs, or keeps it, as its thresholds adapt, and
//! the page faults of refilling it move a run's time by a quarter, from one stretch of runs
//! to the next, whatever the variant. The README's figures were measured with it keeping the
//! heap, so that what differs between the variants is what they do:
//! `GLIBC_TUNABLES=glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=1073741824:glibc.malloc.top_pad=268435456`
//! (or measure with `--features bench-mimalloc`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use rse::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse::{DiffStrategy, SyncJob, SyncOptions};

#[path = "support/customers.rs"]
mod customers;

#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rows() -> usize {
    std::env::var("RSE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The calling thread's CPU time so far (Linux), or the wall clock's instant.
enum Clock {
    Cpu(Duration),
    Wall(std::time::Instant),
}

impl Clock {
    fn now() -> Self {
        match thread_cpu_time() {
            Some(cpu) => Clock::Cpu(cpu),
            None => Clock::Wall(std::time::Instant::now()),
        }
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Cpu(start) => thread_cpu_time().map_or(Duration::ZERO, |now| now.saturating_sub(*start)),
            Clock::Wall(start) => start.elapsed(),
        }
    }
}

/// utime and stime of `/proc/thread-self/stat` (fields 14 and 15, the 12th and 13th after
/// the command's closing parenthesis), in ticks of 10 ms.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn bench_metrics(c: &mut Criterion) {
    let rows = rows();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let source = MemorySource::new(customers::schema().into_arc(), (0..rows).map(customers::record).collect());
    let destination = MemoryDestination::new();
    let sync = rt
        .block_on(
            SyncJob::builder("bench")
                .source(source)
                .destination(destination)
                .state(MemoryStateStore::new())
                // The diff bench's unchanged path is the hash diff's.
                .options(SyncOptions::default().with_diff_strategy(DiffStrategy::Hash))
                .build(),
        )
        .expect("build");
    let load = rt.block_on(sync.run()).expect("initial load");
    assert_eq!(load.counts.applied.insert, rows as u64);
    let run = || {
        let report = rt.block_on(sync.run()).expect("run");
        assert_eq!(report.counts.unchanged, rows as u64);
        report
    };

    // A few runs first, so that the heap has settled before any variant is measured.
    for _ in 0..3 {
        black_box(run());
    }

    // The recorder is the calling thread's while a measurement runs: the runtime is this
    // thread's too, so it sees every metric the run emits.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, rse::metrics::describe);

    let mut group = c.benchmark_group("metrics");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(rows as u64));
    let runs = |iters: u64| {
        let started = Clock::now();
        for _ in 0..iters {
            black_box(run());
        }
        started.elapsed()
    };
    group.bench_function("run_unchanged/no_recorder", |b| b.iter_custom(runs));
    group.bench_function("run_unchanged/prometheus", |b| {
        b.iter_custom(|iters| metrics::with_local_recorder(&recorder, || runs(iters)));
    });
    // And with the logs a host ships too: JSON lines at INFO, with every span's fields.
    let json = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    let json = std::sync::Arc::new(json);
    group.bench_function("run_unchanged/prometheus_json_logs", |b| {
        b.iter_custom(|iters| {
            tracing::subscriber::with_default(json.clone(), || metrics::with_local_recorder(&recorder, || runs(iters)))
        });
    });
    group.finish();

    let scraped = handle.render();
    assert!(scraped.contains("rse_records_read_total{sync=\"bench\"}"), "{scraped}");
}

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
