//! The metrics rse emits, through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! rse records into whatever recorder the host installed (a Prometheus exporter, StatsD,
//! OpenTelemetry, none at all: without a recorder every call is a no-op). [`describe`]
//! registers each metric's help text and unit with the recorder; [`CATALOG`] lists them all
//! with the service-level indicator each one answers, and [`markdown_table`] renders the
//! table the README shows.
//!
//! # Labels
//! Every label is low-cardinality: the sync id ([`SYNC`]), the destination's kind
//! ([`DESTINATION`], the part of [`Destination::name`](crate::Destination::name) before its
//! first `:`), an operation ([`OP`]), an outcome, status, stage, window or class from a fixed
//! set. No label ever carries a key, a value or an error message.
//!
//! # When the runner emits
//! Counters move per batch and per run, never per record (the change-time latency, which a
//! sync asks for with [`SyncOptions::change_time_field`](crate::SyncOptions::change_time_field), is the one
//! per-record figure). A dry run emits nothing: it changes nothing, and counting it would move
//! the freshness and success figures of the real runs. At the start of each run the change
//! counters of the mode's operations (`applied` and `rejected`) and [`RETRIES_TOTAL`] are
//! registered at zero, so that a ratio of them has both terms from the first run on.
//!
//! # Example
//! ```
//! # fn main() {
//! // A host that exports metrics installs its recorder first, then:
//! rse_core::metrics::describe();
//! assert!(rse_core::metrics::CATALOG.iter().any(|m| m.name == rse_core::metrics::RUNS_TOTAL));
//! # }
//! ```

/// Label: the sync's id.
pub const SYNC: &str = "sync";
/// Label: the destination's kind (`postgres`, `hubspot`, …): its name up to the first `:`.
pub const DESTINATION: &str = "destination";
/// Label: the operation (`insert`, `update`, `delete`).
pub const OP: &str = "op";
/// Label: an outcome from a fixed set, named per metric.
pub const OUTCOME: &str = "outcome";
/// Label: a run's status (`succeeded`, `completed_with_rejections`, `deletes_withheld`,
/// `circuit_open`, `cancelled`, `rate_limited`, `quota_exhausted`, `lease_lost`, `paused`,
/// `failed`).
pub const STATUS: &str = "status";
/// Label: where a record was refused (`source`, `transform`, `key`, `destination`).
pub const STAGE: &str = "stage";
/// Label: which quota allowance (`window`: the short one; `daily`).
pub const WINDOW: &str = "window";
/// Label: an HTTP answer's class (`2xx`, `3xx`, `4xx`, `429`, `5xx`, `error` when none came).
pub const CLASS: &str = "class";
/// Label: a reconciliation mismatch's kind (`missing`, `stale`, `extra`).
pub const KIND: &str = "kind";

/// Counter: changes by their final outcome in a run (`applied`, `rejected`, `superseded`,
/// `withheld`, `undelivered`), per op; counted as each batch settles, so they add up to the
/// report's `applied`, `rejected`, `superseded`, `withheld` and `undelivered` counts.
/// `withheld` is only ever a delete's (the delete guard); `undelivered` changes go next run.
pub const RECORDS_TOTAL: &str = "rse_records_total";
/// Counter: records read from the source.
pub const RECORDS_READ_TOTAL: &str = "rse_records_read_total";
/// Counter: records refused, by stage: `source` (unreadable rows), `transform` (refused by a
/// transform), `key` (a null or repeated key) and `destination` (refused or superseded
/// changes, both kept among the sync's rejections).
pub const REJECTIONS_TOTAL: &str = "rse_rejections_total";
/// Counter: write attempts retried after a transient failure or a rate limit, and changes'
/// retryable refusals retried in the run: the report's `retries`.
pub const RETRIES_TOTAL: &str = "rse_retries_total";
/// Counter: write calls to the destination by outcome, one per attempt (retries included):
/// `ok` (every change applied), `partial` (an answer refusing some changes), `rate_limited`,
/// `transient`, `timeout` (no answer within the write timeout), `unauthorized`,
/// `quota_exhausted`, `failed` (a refused batch, a fatal error, an answer of the wrong
/// length, an exactly-once write whose state commit failed).
pub const DESTINATION_REQUESTS_TOTAL: &str = "rse_destination_requests_total";
/// Counter: HTTP requests an HTTP-speaking destination made, by answer class: `2xx`, `3xx`,
/// `4xx`, `429` (apart from the other `4xx`), `5xx`, or `error` when no answer came (a
/// timeout, a refused connection). Counted by `rse-connectors` where requests are sent: the
/// HTTP destination's writes and check, and the SaaS kit's client (HubSpot, Salesforce,
/// Google, Meta); a retry after a `401` is a second request. The OAuth token endpoint's
/// requests are not counted (a refused token shows as `unauthorized` write calls).
pub const HTTP_REQUESTS_TOTAL: &str = "rse_http_requests_total";
/// Counter: runs by final status, the label being
/// [`RunStatus::label`](crate::RunStatus::label): `succeeded`, `completed_with_rejections`,
/// `deletes_withheld`, `circuit_open`, `cancelled`, `rate_limited`, `quota_exhausted`,
/// `lease_lost`, `failed`. A run that returns an error (the state unreadable, a fingerprint
/// mismatch) counts as `failed`; one that could not take its lease is not a run here (see
/// [`LEASE_CONFLICTS_TOTAL`]).
pub const RUNS_TOTAL: &str = "rse_runs_total";
/// Counter: changes sent again under the idempotency key of an earlier send whose outcome
/// was unknown (the destination may already hold it): duplicates absorbed by the key. These
/// are the pending changes a run finds (recorded before an earlier run's write, whose
/// acknowledgement was never committed: a crash, a cut-short run) and sends again unchanged;
/// a retry within a run is counted by [`RETRIES_TOTAL`].
pub const DUPLICATE_WRITES_TOTAL: &str = "rse_duplicate_writes_total";
/// Counter: records kept from the destination because a sensitive field would have reached it.
pub const SENSITIVE_FIELD_BLOCKS_TOTAL: &str = "rse_sensitive_field_blocks_total";
/// Counter: times the circuit breaker opened.
pub const CIRCUIT_BREAKER_OPENS_TOTAL: &str = "rse_circuit_breaker_opens_total";
/// Counter: seconds spent waiting for rate limits and quota windows: wall time during which
/// at least one write waited (the report's `rate_limit_wait`), counted in whole seconds as
/// they accumulate (the rest of a second carries over to the sync's next wait).
pub const RATE_LIMIT_WAIT_SECONDS_TOTAL: &str = "rse_rate_limit_wait_seconds_total";
/// Counter: runs that found the source's columns changed (from those last delivered, or
/// during the read), whether the run stopped or went on under the drift policy.
pub const SCHEMA_DRIFT_TOTAL: &str = "rse_schema_drift_total";
/// Counter: runs that could not start because another runner holds the lease (taking it
/// failed with [`StateError::LeaseHeld`](crate::StateError::LeaseHeld)).
pub const LEASE_CONFLICTS_TOTAL: &str = "rse_lease_conflicts_total";
/// Counter: keys removed from or kept out of the destination because consent was withdrawn,
/// by outcome (`kept_out`, `removed`, `not_removable`).
pub const SUPPRESSED_TOTAL: &str = "rse_suppressed_total";
/// Counter: per-record outcomes the status write-back dropped (its buffer was full or its
/// table unreachable).
pub const STATUS_WRITEBACK_DROPPED_TOTAL: &str = "rse_status_writeback_dropped_total";
/// Counter: status write-back flushes that failed.
pub const STATUS_WRITEBACK_FAILURES_TOTAL: &str = "rse_status_writeback_failures_total";

/// Gauge: when the sync's last run ended (seconds since the Unix epoch), whatever its status.
pub const LAST_RUN_TIMESTAMP: &str = "rse_last_run_timestamp_seconds";
/// Gauge: when the sync's last run that delivered everything ended (Unix seconds): a run
/// whose every planned change reached a final outcome (`succeeded`,
/// `completed_with_rejections`, `deletes_withheld`: [`RunStatus::is_complete`](crate::RunStatus::is_complete)).
pub const LAST_SUCCESS_TIMESTAMP: &str = "rse_last_success_timestamp_seconds";
/// Gauge: the change time of the newest source change the destination acknowledged (Unix
/// seconds), where the sync names a change-time column
/// ([`SyncOptions::change_time_field`](crate::SyncOptions::change_time_field)); it never
/// goes back while the process runs, as an older change acknowledged later is not fresher.
pub const SOURCE_CHANGE_TIMESTAMP: &str = "rse_source_change_timestamp_seconds";
/// Gauge: what is left of a quota allowance the destination reported, as of its last answer
/// (`window`: the short window; `daily`).
pub const QUOTA_REMAINING: &str = "rse_quota_remaining";
/// Gauge: the size of a quota allowance the destination reported.
pub const QUOTA_LIMIT: &str = "rse_quota_limit";
/// Gauge: mismatches the last reconciliation found, by kind.
pub const RECONCILE_MISMATCHES: &str = "rse_reconcile_mismatches";
/// Gauge: records the last reconciliation checked.
pub const RECONCILE_CHECKED: &str = "rse_reconcile_checked_records";
/// Gauge: mismatches over records checked in the last reconciliation.
pub const RECONCILE_MISMATCH_RATIO: &str = "rse_reconcile_mismatch_ratio";
/// Gauge: 1 while a run of the sync is in progress (from taking its lease to its end), else 0.
pub const RUN_IN_PROGRESS: &str = "rse_run_in_progress";
/// Gauge: records the current (or last) run has read so far.
pub const RUN_RECORDS_READ: &str = "rse_run_records_read";
/// Gauge: records the current run expects to read, when known: progress is read / expected.
/// Set for runs that read the whole model: the keys the snapshot holds (the hash diff loads
/// it first), or with the merge diff, which streams the snapshot, what the last complete run
/// read. An incremental run does not set it.
pub const RUN_RECORDS_EXPECTED: &str = "rse_run_records_expected";
/// Gauge: when the last initial load or full resync completed (Unix seconds). An initial load
/// starts on a sync with nothing acknowledged yet; it, like a full resync, goes on run after
/// run until one completes ([`SyncReport::backfill_started_at_ms`](crate::SyncReport)).
pub const BACKFILL_COMPLETED_TIMESTAMP: &str = "rse_backfill_completed_timestamp_seconds";
/// Gauge: how long the last initial load or full resync took, from the start of its first run
/// to the end of the run that completed it.
pub const BACKFILL_DURATION_SECONDS: &str = "rse_backfill_duration_seconds";
/// Gauge: 1 while the sync is paused, else 0.
pub const PAUSED: &str = "rse_paused";
/// Gauge: the process's resident memory, read from `/proc/self/status` when a run starts and
/// ends (Linux; not set elsewhere).
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "rse_process_resident_memory_bytes";
/// Gauge: the CPU time (user and system) the process has used, read from `/proc/self/stat`
/// when a run starts and ends (Linux; not set elsewhere).
pub const PROCESS_CPU_SECONDS: &str = "rse_process_cpu_seconds";

/// Histogram: a run's wall time, for every run counted by [`RUNS_TOTAL`].
pub const RUN_DURATION_SECONDS: &str = "rse_run_duration_seconds";
/// Histogram: changes per write call (each attempt, a bisected half included).
pub const BATCH_SIZE_RECORDS: &str = "rse_batch_size_records";
/// Histogram: one write call's wall time (each attempt, up to its answer or the write timeout).
pub const WRITE_DURATION_SECONDS: &str = "rse_write_duration_seconds";
/// Histogram: from a record's source change time to the destination's acknowledgement, one
/// observation per applied insert, update or append whose change-time column is set, where
/// the sync names one ([`SyncOptions::change_time_field`](crate::SyncOptions::change_time_field)).
/// A change time ahead of the clock counts as no latency.
pub const RECORD_LATENCY_SECONDS: &str = "rse_record_latency_seconds";

/// How a metric counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down; the last value counts.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDoc {
    /// Its name.
    pub name: &'static str,
    /// How it counts.
    pub kind: MetricKind,
    /// Its unit (`seconds`, `bytes`, `records`), `None` for a plain count.
    pub unit: Option<&'static str>,
    /// Its label keys.
    pub labels: &'static [&'static str],
    /// The service-level indicators and failure modes it answers (the seed's M1–M15, F1–F9).
    pub sli: &'static str,
    /// The question it answers.
    pub help: &'static str,
}

const S: &[&str] = &[SYNC];
const SD: &[&str] = &[SYNC, DESTINATION];

macro_rules! doc {
    ($name:expr, $kind:ident, $unit:expr, $labels:expr, $sli:expr, $help:expr) => {
        MetricDoc { name: $name, kind: MetricKind::$kind, unit: $unit, labels: $labels, sli: $sli, help: $help }
    };
}

/// Every metric rse emits.
pub const CATALOG: &[MetricDoc] = &[
    doc!(
        RECORDS_TOTAL,
        Counter,
        Some("records"),
        &[SYNC, DESTINATION, OP, OUTCOME],
        "M1, F6",
        "How many changes reached the destination (outcome `applied`) and how many did not (`rejected`, `superseded`, `withheld`, `undelivered`)?"
    ),
    doc!(RECORDS_READ_TOTAL, Counter, Some("records"), S, "M15", "How many records has the sync read from its source?"),
    doc!(
        REJECTIONS_TOTAL,
        Counter,
        Some("records"),
        &[SYNC, STAGE],
        "F2, F6",
        "Where are records refused: by the source, a transform (validation), the key, or the destination (refused or superseded)?"
    ),
    doc!(
        RETRIES_TOTAL,
        Counter,
        None,
        SD,
        "M5, F9",
        "How many write attempts (and retryable refusals) were retried after a transient failure or a rate limit?"
    ),
    doc!(
        DESTINATION_REQUESTS_TOTAL,
        Counter,
        None,
        &[SYNC, DESTINATION, OUTCOME],
        "M4, F1",
        "How do write calls (each attempt) end: `ok`, `partial` (some changes refused), `rate_limited`, `transient`, `timeout`, `unauthorized`, `quota_exhausted`, `failed`?"
    ),
    doc!(
        HTTP_REQUESTS_TOTAL,
        Counter,
        None,
        &[DESTINATION, CLASS],
        "M4, F1",
        "How do an HTTP destination's requests answer: `2xx`, `3xx`, `4xx`, `429` (apart), `5xx`, or `error` (no answer)?"
    ),
    doc!(
        RUNS_TOTAL,
        Counter,
        None,
        &[SYNC, STATUS],
        "M8",
        "How do runs end (`succeeded`, `completed_with_rejections`, `deletes_withheld`, `circuit_open`, `cancelled`, `rate_limited`, `quota_exhausted`, `lease_lost`, `failed`; a run that returned an error counts as `failed`)?"
    ),
    doc!(
        DUPLICATE_WRITES_TOTAL,
        Counter,
        Some("records"),
        SD,
        "M9, F3",
        "How many pending changes, whose earlier send never got its outcome committed, were sent again under the same idempotency key?"
    ),
    doc!(
        SENSITIVE_FIELD_BLOCKS_TOTAL,
        Counter,
        Some("records"),
        S,
        "M10, F5",
        "How many records were kept back because a sensitive field would have reached the destination?"
    ),
    doc!(
        CIRCUIT_BREAKER_OPENS_TOTAL,
        Counter,
        None,
        SD,
        "F9",
        "How often did repeated failures open the circuit breaker?"
    ),
    doc!(
        RATE_LIMIT_WAIT_SECONDS_TOTAL,
        Counter,
        Some("seconds"),
        SD,
        "F1, M6",
        "How long did runs wait for rate limits and quota windows?"
    ),
    doc!(SCHEMA_DRIFT_TOTAL, Counter, None, S, "F2", "How many runs found the source's columns changed?"),
    doc!(
        LEASE_CONFLICTS_TOTAL,
        Counter,
        None,
        S,
        "F7",
        "How many runs could not start because another runner held the sync's lease (not counted as runs)?"
    ),
    doc!(
        SUPPRESSED_TOTAL,
        Counter,
        Some("records"),
        &[SYNC, DESTINATION, OUTCOME],
        "F5",
        "How many keys whose consent was withdrawn were kept out of the destination (`kept_out`), removed from it (`removed`), or may remain in one that cannot delete (`not_removable`)?"
    ),
    doc!(
        STATUS_WRITEBACK_DROPPED_TOTAL,
        Counter,
        Some("records"),
        S,
        "F6",
        "How many per-record outcomes did the status write-back drop?"
    ),
    doc!(STATUS_WRITEBACK_FAILURES_TOTAL, Counter, None, S, "F6", "How many status write-back flushes failed?"),
    doc!(LAST_RUN_TIMESTAMP, Gauge, Some("seconds"), S, "M8, F7", "When did the sync last run (Unix time)?"),
    doc!(
        LAST_SUCCESS_TIMESTAMP,
        Gauge,
        Some("seconds"),
        S,
        "M2, F4",
        "When did a run last deliver everything (every planned change applied or refused; Unix time); freshness lag is `time() -` this?"
    ),
    doc!(
        SOURCE_CHANGE_TIMESTAMP,
        Gauge,
        Some("seconds"),
        S,
        "M2, F4",
        "How recent is the newest source change the destination holds (Unix time of its change-time column)?"
    ),
    doc!(
        QUOTA_REMAINING,
        Gauge,
        None,
        &[SYNC, DESTINATION, WINDOW],
        "M6, F1",
        "How much of the destination's quota allowance is left?"
    ),
    doc!(
        QUOTA_LIMIT,
        Gauge,
        None,
        &[SYNC, DESTINATION, WINDOW],
        "M6, F1",
        "How large is the destination's quota allowance?"
    ),
    doc!(
        RECONCILE_MISMATCHES,
        Gauge,
        Some("records"),
        &[SYNC, KIND],
        "M7",
        "How many records did the last reconciliation find `missing`, `stale` or `extra` at the destination?"
    ),
    doc!(RECONCILE_CHECKED, Gauge, Some("records"), S, "M7", "How many records did the last reconciliation check?"),
    doc!(RECONCILE_MISMATCH_RATIO, Gauge, None, S, "M7", "What share of the records checked did not match?"),
    doc!(RUN_IN_PROGRESS, Gauge, None, S, "F7", "Is a run of the sync in progress?"),
    doc!(RUN_RECORDS_READ, Gauge, Some("records"), S, "M15", "How far has the current run read?"),
    doc!(
        RUN_RECORDS_EXPECTED,
        Gauge,
        Some("records"),
        S,
        "M15",
        "How many records does the current run expect to read (the snapshot's keys, or the last complete read; progress is read / expected)?"
    ),
    doc!(
        BACKFILL_COMPLETED_TIMESTAMP,
        Gauge,
        Some("seconds"),
        S,
        "M15",
        "When did the last initial load (from nothing acknowledged) or full resync complete (Unix time)?"
    ),
    doc!(
        BACKFILL_DURATION_SECONDS,
        Gauge,
        Some("seconds"),
        S,
        "M15",
        "How long did the last initial load or full resync take, from its first run's start to completion?"
    ),
    doc!(PAUSED, Gauge, None, S, "F7", "Is the sync paused by an operator?"),
    doc!(PROCESS_RESIDENT_MEMORY_BYTES, Gauge, Some("bytes"), &[], "M11, F8", "How much memory does the process hold?"),
    doc!(PROCESS_CPU_SECONDS, Gauge, Some("seconds"), &[], "M11", "How much CPU time has the process used?"),
    doc!(RUN_DURATION_SECONDS, Histogram, Some("seconds"), S, "M11", "How long do runs take?"),
    doc!(BATCH_SIZE_RECORDS, Histogram, Some("records"), SD, "M11", "How many changes does each write call carry?"),
    doc!(WRITE_DURATION_SECONDS, Histogram, Some("seconds"), SD, "M4", "How long does one write call take?"),
    doc!(
        RECORD_LATENCY_SECONDS,
        Histogram,
        Some("seconds"),
        SD,
        "M3, F4",
        "How long from a record's change in the source to the destination's acknowledgement (P95, P99)?"
    ),
];

/// The destination label's value for a destination name: its kind, the part before the
/// first `:` (`postgres:public.users` → `postgres`).
pub fn destination_kind(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// Registers every metric's help text and unit with the installed recorder (call it after
/// installing one; without a recorder it does nothing).
pub fn describe() {
    for m in CATALOG {
        let unit = match m.unit {
            Some("seconds") => Some(::metrics::Unit::Seconds),
            Some("bytes") => Some(::metrics::Unit::Bytes),
            Some(_) => Some(::metrics::Unit::Count),
            None => None,
        };
        let help = m.help;
        match (m.kind, unit) {
            (MetricKind::Counter, Some(u)) => ::metrics::describe_counter!(m.name, u, help),
            (MetricKind::Counter, None) => ::metrics::describe_counter!(m.name, help),
            (MetricKind::Gauge, Some(u)) => ::metrics::describe_gauge!(m.name, u, help),
            (MetricKind::Gauge, None) => ::metrics::describe_gauge!(m.name, help),
            (MetricKind::Histogram, Some(u)) => ::metrics::describe_histogram!(m.name, u, help),
            (MetricKind::Histogram, None) => ::metrics::describe_histogram!(m.name, help),
        }
    }
}

/// The catalog as a Markdown table (the README's metrics table is this text).
pub fn markdown_table() -> String {
    let mut out = String::from("| Metric | Kind | Unit | Labels | SLI | Question |\n|---|---|---|---|---|---|\n");
    for m in CATALOG {
        let labels = m.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.unit.unwrap_or("—"),
            if labels.is_empty() { "—".to_owned() } else { labels },
            m.sli,
            m.help.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_labels_come_from_the_fixed_set() {
        let allowed = [SYNC, DESTINATION, OP, OUTCOME, STATUS, STAGE, WINDOW, CLASS, KIND];
        let mut seen = std::collections::HashSet::new();
        for m in CATALOG {
            assert!(m.name.starts_with("rse_"), "{}", m.name);
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.labels.iter().all(|l| allowed.contains(l)), "{}: {:?}", m.name, m.labels);
            assert_eq!(m.kind == MetricKind::Counter, m.name.ends_with("_total"), "{}", m.name);
        }
        assert_eq!(destination_kind("postgres:public.users"), "postgres");
        assert_eq!(destination_kind("memory"), "memory");
    }
}
