//! The rows the status tables hold: one per record outcome, one per run, as plain data for
//! either backend.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rse_core::observe::{ObservedBatch, ObservedRecord};
use rse_core::{Effect, FailureKind, Key, RunStatus, SyncReport};

use crate::encode::{value_to_json, value_to_text};

/// One record's outcome, as a row of the records table.
#[derive(Debug, Clone)]
pub(crate) struct RecordRow {
    pub(crate) sync_id: Arc<str>,
    pub(crate) run_id: i64,
    pub(crate) key: String,
    pub(crate) key_hash: String,
    pub(crate) op: Option<&'static str>,
    pub(crate) outcome: &'static str,
    pub(crate) stage: &'static str,
    pub(crate) effect: Option<&'static str>,
    pub(crate) reason: Option<String>,
    pub(crate) record_id: Option<String>,
    pub(crate) at: SystemTime,
}

impl RecordRow {
    /// The rows of `batch`'s records in `range`.
    pub(crate) fn of(batch: &ObservedBatch, range: std::ops::Range<usize>, out: &mut Vec<RecordRow>) {
        let run_id = i64::try_from(batch.run_id).unwrap_or(i64::MAX);
        let records = batch.records.get(range).unwrap_or_default();
        out.extend(records.iter().map(|r| RecordRow::one(batch, run_id, r)));
    }

    fn one(batch: &ObservedBatch, run_id: i64, r: &ObservedRecord) -> RecordRow {
        RecordRow {
            sync_id: batch.sync_id.clone(),
            run_id,
            key: key_text(&r.key),
            key_hash: r.key.redacted().to_string(),
            op: r.op.map(|op| op.as_str()),
            outcome: r.outcome.as_str(),
            stage: r.outcome.stage_str(),
            effect: r.effect.map(effect_name),
            reason: r.reason.as_deref().map(clean),
            record_id: r.record_id.as_deref().map(clean),
            at: batch.at,
        }
    }
}

/// One run, as a row of the run history table.
#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub(crate) sync_id: String,
    pub(crate) run_id: i64,
    pub(crate) status: &'static str,
    pub(crate) failure_kind: Option<&'static str>,
    pub(crate) message: String,
    pub(crate) mode: String,
    pub(crate) dry_run: bool,
    pub(crate) full_resync: bool,
    pub(crate) started_at: SystemTime,
    pub(crate) finished_at: SystemTime,
    pub(crate) duration_ms: i64,
    /// records_read, applied, rejected, superseded, refused, unchanged, undelivered,
    /// withheld, retries, batches: the order of [`RUN_COUNTS`].
    pub(crate) counts: [i64; 10],
    /// The whole report.
    pub(crate) report: serde_json::Value,
}

/// The count columns of the run history table, in [`RunRow::counts`]' order.
pub(crate) const RUN_COUNTS: [&str; 10] = [
    "records_read",
    "applied",
    "rejected",
    "superseded",
    "refused",
    "unchanged",
    "undelivered",
    "withheld",
    "retries",
    "batches",
];

impl RunRow {
    pub(crate) fn of(report: &SyncReport) -> RunRow {
        let c = &report.counts;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let started_at = UNIX_EPOCH + Duration::from_millis(report.started_at_ms);
        RunRow {
            sync_id: clean(&report.sync_id),
            run_id: n(report.run_id),
            status: report.status.label(),
            failure_kind: match &report.status {
                RunStatus::Failed { kind, .. } => Some(failure_name(*kind)),
                _ => None,
            },
            message: clean(&report.status.to_string()),
            mode: report.mode.to_string(),
            dry_run: report.dry_run,
            full_resync: report.full_resync,
            started_at,
            finished_at: started_at + report.stages.total,
            duration_ms: i64::try_from(report.stages.total.as_millis()).unwrap_or(i64::MAX),
            counts: [
                n(c.read),
                n(c.applied.total()),
                n(c.rejected.total()),
                n(c.superseded),
                n(c.source_rejected + c.transform_rejected + c.invalid),
                n(c.unchanged),
                n(c.undelivered),
                n(c.withheld),
                n(report.retries),
                n(report.batches),
            ],
            report: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A key as readable text: a one-column key as its value's text (`7`, `ada@example.com`),
/// a composite key as a JSON array of its values (`["acme",7]`).
pub(crate) fn key_text(key: &Key) -> String {
    match key.decode() {
        Ok(values) => match values.as_slice() {
            [one] => clean(&value_to_text(one).unwrap_or_default()),
            many => clean(&serde_json::Value::Array(many.iter().map(value_to_json).collect()).to_string()),
        },
        // Never for a key rse built; the hash still finds it in logs.
        Err(_) => format!("#{}", key.redacted()),
    }
}

/// Text without NUL characters, which PostgreSQL's `text` cannot hold.
fn clean(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text.to_owned() }
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Created => "created",
        Effect::Updated => "updated",
        Effect::Unchanged => "unchanged",
        _ => "other",
    }
}

fn failure_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Source => "source",
        FailureKind::Transform => "transform",
        FailureKind::SchemaDrift => "schema_drift",
        FailureKind::Unauthorized => "unauthorized",
        FailureKind::Destination => "destination",
        FailureKind::Undelivered => "undelivered",
        FailureKind::StateCommit => "state_commit",
        FailureKind::LeaseLost => "lease_lost",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use rse_core::Value;

    use super::*;

    #[test]
    fn keys_read_as_their_values() {
        assert_eq!(key_text(&Key::from_values(&[Value::Int(7)])), "7");
        assert_eq!(key_text(&Key::from_values(&[Value::from("ada@example.com")])), "ada@example.com");
        assert_eq!(key_text(&Key::from_values(&[Value::from("acme"), Value::Int(7)])), r#"["acme",7]"#);
        assert_eq!(key_text(&Key::from_values(&[Value::from("a\0b")])), "a\u{fffd}b");
    }

    #[tokio::test]
    async fn a_run_row_names_its_status_as_the_metrics_do() {
        use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
        use rse_core::{DataType, Field, Schema, SyncJob};
        let schema = Schema::new(vec![Field::required("id", DataType::Int)], &["id"]).unwrap().into_arc();
        let sync = SyncJob::builder("paused")
            .source(MemorySource::new(schema, vec![]))
            .destination(MemoryDestination::new())
            .state(MemoryStateStore::new())
            .build()
            .await
            .unwrap();
        sync.pause("oncall", "the CRM answers 401").await.unwrap();
        let mut report = sync.run().await.unwrap();
        assert!(matches!(report.status, RunStatus::Paused { .. }));
        assert_eq!(RunRow::of(&report).status, "paused");
        report.status = RunStatus::Failed { reason: "taken over".into(), kind: FailureKind::LeaseLost };
        assert_eq!(RunRow::of(&report).status, "lease_lost");
    }
}
