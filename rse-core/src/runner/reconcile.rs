//! Reconciliation in the runner: `verify` (a dry read of the source, a walk of the state,
//! the destination read back) and `repair` (a run restricted to the mismatched keys).
//!
//! How a repair restricts a run — the keys' state entries marked pending in one commit
//! under the lease, then a run that plans changes for those keys only, the unused marks
//! taken back at its end — is described in [`crate::reconcile`]; this module does it, and
//! `verify.rs` the comparison.

mod verify;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

pub(super) use self::verify::verify;
use super::{Mode, SyncInner, run};
use crate::change::Op;
use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::key::Key;
use crate::reconcile::{MismatchKind, ReconcileReport};
use crate::report::SyncReport;
use crate::state::{Lease, PendingChange, StateCommit};

/// The fingerprint of a repair's marker: no record fingerprints so (2⁻¹²⁸), so the diff
/// sees every marked key as changed.
pub(super) const REPAIR_MARK: Fingerprint = Fingerprint(0x7273_655f_7265_7061_6972_5f6d_6172_6b21);

/// The keys a repair run is restricted to, and those whose entry it marked.
#[derive(Debug)]
pub(crate) struct Restriction {
    keys: HashSet<Key>,
    marked: Mutex<Vec<Key>>,
}

impl Restriction {
    /// Whether the run may plan a change for `key`.
    pub(super) fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }
}

fn reconcile_error(inner: &SyncInner, message: String) -> Error {
    Error::Reconcile { sync_id: inner.id.to_string(), message, source: None }
}

/// [`SyncJob::repair`](crate::SyncJob::repair): an ordinary run restricted to the report's
/// keys (see the module docs).
pub(super) async fn repair(
    inner: &SyncInner,
    report: &ReconcileReport,
    cancel: CancellationToken,
) -> Result<SyncReport, Error> {
    if report.sync_id != *inner.id {
        return Err(reconcile_error(
            inner,
            format!("the report is of sync `{}`; repair a sync with its own verify's report", report.sync_id),
        ));
    }
    if inner.mode == Mode::Append {
        return Err(reconcile_error(inner, "an `append` sync has no records to repair".to_owned()));
    }
    if inner.options.dry_run {
        return Err(reconcile_error(
            inner,
            "the sync is configured as a dry run, and a repair sends; verify shows what differs".to_owned(),
        ));
    }
    if let Some(run_id) = run::unfinished_full_resync(inner).await? {
        return Err(reconcile_error(
            inner,
            format!(
                "run {run_id} was a full resync that did not complete; run the sync to finish it (it sends every \
                 record), then verify again"
            ),
        ));
    }
    let keys: HashSet<Key> = report
        .mismatches
        .iter()
        .filter(|m| match (m.kind, inner.mode) {
            // The mode never rewrites a record it inserted.
            (MismatchKind::Stale, Mode::Insert) => false,
            // Only `Mirror` deletes.
            (MismatchKind::Extra, mode) => mode == Mode::Mirror,
            _ => true,
        })
        .map(|m| m.key.clone())
        .collect();
    let mut options = inner.options.clone();
    options.full_resync = false;
    let restriction = Restriction { keys, marked: Mutex::default() };
    let span = info_span!(
        "sync_repair",
        sync = %inner.id,
        mode = %inner.mode,
        keys = restriction.keys.len(),
        run = tracing::field::Empty,
        read = tracing::field::Empty,
        applied = tracing::field::Empty,
        rejected = tracing::field::Empty,
        unchanged = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let repairing = SyncInner { options, cursor_index: None, restrict: Some(Arc::new(restriction)), ..inner.clone() };
    run::run_in_span(&repairing, cancel, span.clone()).instrument(span).await
}

/// Marks the restricted keys' entries as pending, in one commit under the run's lease, so
/// the diff sees them changed (see the module docs). A key with a change already pending
/// is left as it is: the diff sends it again anyway.
pub(super) async fn mark(inner: &SyncInner, lease: &Lease, restriction: &Restriction) -> Result<(), Error> {
    let mut keys: Vec<Key> = restriction.keys.iter().cloned().collect();
    keys.sort();
    let mut commit = StateCommit::default();
    for chunk in keys.chunks(super::run::PAGE) {
        let entries = inner.state.get(&inner.id, chunk).await?;
        for (key, entry) in chunk.iter().zip(entries) {
            if let Some(entry) = entry.filter(|e| e.pending.is_none()) {
                let marker = PendingChange { op: Op::Update, fingerprint: REPAIR_MARK, version: entry.version };
                commit.intents.push((key.clone(), marker));
            }
        }
    }
    let marked: Vec<Key> = commit.intents.iter().map(|(k, _)| k.clone()).collect();
    if !commit.is_empty() {
        inner.state.commit(lease, commit).await?;
    }
    debug!(sync = %inner.id, keys = keys.len(), marked = marked.len(), "Marked the keys to repair.");
    *restriction.marked.lock().unwrap_or_else(PoisonError::into_inner) = marked;
    Ok(())
}

/// The markers to take back at the end of a complete repair: those of keys it planned no
/// change for (each goes back to nothing pending).
pub(super) fn unmark(restriction: &Restriction, planned: &HashSet<Key>) -> Vec<(Key, Option<PendingChange>)> {
    let marked = restriction.marked.lock().unwrap_or_else(PoisonError::into_inner);
    marked.iter().filter(|k| !planned.contains(*k)).map(|k| (k.clone(), None)).collect()
}
