//! The runner's side of consent revocation: the list loaded for a run, the records it keeps
//! out, and the audit of every suppression (see [`crate::suppression`] for what a run does).

use std::collections::HashSet;

use tokio::sync::broadcast;
use tracing::info;

use super::SyncInner;
use crate::change::Op;
use crate::key::Key;
use crate::metrics::{DESTINATION, OUTCOME, SUPPRESSED_TOTAL, SYNC, destination_kind};
use crate::record::{Record, RowBatch};
use crate::report::ProgressEvent;
use crate::schema::Schema;
use crate::suppression::{SuppressionList, SuppressionOutcome, SuppressionReport};

/// A run's suppression list and what it did with it.
pub(super) struct Suppressor {
    list: SuppressionList,
    /// Whether the destination can delete what it holds.
    pub(super) deletable: bool,
    /// Keys whose removal this run has dealt with (planned, or noted as not removable).
    handled: HashSet<Key>,
    /// Keys matched by an identifier's digest in this run's read.
    found: HashSet<Key>,
    pub(super) report: SuppressionReport,
}

impl Suppressor {
    /// Loads the sync's list for this run; the error says what failed, for the run's status.
    pub(super) async fn load(inner: &SyncInner) -> Result<Option<Self>, String> {
        if inner.suppressions.is_empty() {
            return Ok(None);
        }
        let mut list = SuppressionList::new();
        for suppressions in &inner.suppressions {
            let loaded = suppressions.load(&inner.schema).await.map_err(|e| {
                format!(
                    "suppression list `{}` could not be loaded, so nothing was read or sent: {e}",
                    suppressions.name()
                )
            })?;
            list.extend(loaded);
        }
        let report = SuppressionReport { listed: list.len() as u64, ..SuppressionReport::default() };
        Ok(Some(Self {
            list,
            deletable: inner.destination.capabilities().supports(Op::Delete),
            handled: HashSet::new(),
            found: HashSet::new(),
            report,
        }))
    }

    /// The listed keys.
    pub(super) fn listed_keys(&self) -> Vec<Key> {
        self.list.keys().cloned().collect()
    }

    /// Whether `key` is suppressed: listed, or found by an identifier in this run.
    pub(super) fn holds(&self, key: &Key) -> bool {
        self.list.contains_key(key) || self.found.contains(key)
    }

    /// Whether `record` of `schema` is listed, by key or identifier.
    pub(super) fn matches(&self, schema: &Schema, record: &Record) -> bool {
        self.list.matches(schema, record)
    }

    /// Takes the suppressed records out of `batch`; returns their keys (a record whose key
    /// cannot be built cannot be listed by key, and is left for the diff to refuse).
    pub(super) fn take_out(&mut self, batch: &mut RowBatch) -> Vec<Key> {
        if self.list.is_empty() {
            return Vec::new();
        }
        let schema = batch.schema.clone();
        let mut keys = Vec::new();
        batch.records.retain(|record| {
            if !self.list.matches(&schema, record) {
                return true;
            }
            match record.key(&schema) {
                Ok(key) => {
                    if !self.list.contains_key(&key) {
                        self.found.insert(key.clone());
                    }
                    keys.push(key);
                    false
                }
                Err(_) => true,
            }
        });
        self.report.kept_out += keys.len() as u64;
        keys
    }

    /// Of `keys`, those whose removal this run has not dealt with yet (now marked dealt with).
    pub(super) fn not_handled(&mut self, keys: Vec<Key>) -> Vec<Key> {
        keys.into_iter().filter(|k| self.handled.insert(k.clone())).collect()
    }

    /// The run's report, with the note for what the destination cannot remove.
    pub(super) fn finish(mut self, destination: &str) -> SuppressionReport {
        if self.report.not_removable > 0 {
            self.report.note = Some(format!(
                "destination `{destination}` cannot delete records; {} keys whose consent was withdrawn may remain \
                 there: remove them by hand (the log names their key hashes)",
                self.report.not_removable
            ));
        }
        self.report
    }
}

/// The one place every suppression of a run is reported, by the reading side (kept out,
/// not removable) and the delivering side (removed, once the destination applied the
/// delete): the audit log line (the key's hash, never the key), the `rse_suppressed_total`
/// metric by outcome, and the progress stream's [`ProgressEvent::Suppressed`]. Anything
/// else that records per-key outcomes for the run (a status table) takes them from here.
/// A dry run changes nothing, so it audits nothing (its report still counts).
pub(super) fn audit(
    sync_id: &str,
    destination: &str,
    progress: &broadcast::Sender<ProgressEvent>,
    key: &Key,
    outcome: SuppressionOutcome,
) {
    let hash = key.redacted();
    info!(sync = sync_id, key = %hash, outcome = outcome.as_str(), "Consent withdrawn for this key.");
    metrics::counter!(
        SUPPRESSED_TOTAL,
        SYNC => sync_id.to_owned(),
        DESTINATION => destination_kind(destination).to_owned(),
        OUTCOME => outcome.as_str()
    )
    .increment(1);
    let _ = progress.send(ProgressEvent::Suppressed { key: hash, outcome });
}
