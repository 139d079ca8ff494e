//! A run of a pushdown sync: whether it reads only what changed or re-diffs in full, and
//! the writes that keep the source's delivered table true (see [`crate::pushdown`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use super::SyncInner;
use crate::error::SourceError;
use crate::key::Key;
use crate::pushdown::{PushdownSource, RowHash};
use crate::source::Source;
use crate::state::{Lease, SyncMeta};

/// Keys are written to the delivered table in pages of this many.
const PAGE: usize = 10_000;

/// How one run uses the pushdown source.
#[derive(Debug)]
pub(super) struct PushdownPlan {
    /// The epoch of the sync's configuration.
    pub epoch: Arc<str>,
    /// Why the run re-diffs in full; `None` when it reads only what changed.
    pub full: Option<String>,
    /// Whether the run writes to the delivered table (not in a dry run).
    pub record: bool,
    /// The run cannot start: the delivered table could not be prepared.
    pub error: Option<String>,
    /// Writes to the delivered table that failed after delivery.
    pub failures: AtomicU64,
}

impl PushdownPlan {
    /// Whether the run reads only what changed (and diffs by lookups).
    pub fn changed_only(&self) -> bool {
        self.full.is_none() && self.error.is_none()
    }

    /// Whether a full re-diff may be completed (its epoch set): it read the whole model,
    /// could prepare the table, and recorded every hash. A key delivered without its hash
    /// recorded would be missing from the table (a full re-diff records no intents), and a
    /// later delete of it missed; such a run leaves the next one a full re-diff instead.
    pub fn completes(&self) -> bool {
        self.full.is_some() && self.record && self.error.is_none() && self.failures.load(Ordering::Relaxed) == 0
    }

    /// Records that changes for `keys` are about to go out, in a run that reads only what
    /// changed. A full re-diff records none: its `begin_full` cleared the epoch and left the
    /// hash of every key the destination may hold unknown, so the delivered table is not read
    /// again until `complete`, which needs every change of the run settled (delivered or
    /// refused) and every hash recorded (see [`Self::completes`]); a crash or a failure leaves
    /// the next run a full re-diff, which reads the model, not the table. That spares a first
    /// run one write per key of the model.
    ///
    /// # Errors
    /// The reason, when the write failed: the changes must not go out.
    pub async fn intents(&self, source: &dyn Source, sync_id: &str, keys: &[Key]) -> Result<(), String> {
        if !self.record || keys.is_empty() || self.full.is_some() {
            return Ok(());
        }
        let pushdown = pushdown_of(source)?;
        for chunk in keys.chunks(PAGE) {
            pushdown.record_intents(sync_id, chunk).await.map_err(|e| {
                format!(
                    "source `{}`: recording the keys about to be sent in its delivered table failed, so they were \
                     not sent: {e}",
                    source.name()
                )
            })?;
        }
        Ok(())
    }

    /// Records what the destination acknowledged (and the state committed); a failure is
    /// logged and counted: those rows are read again next run.
    pub async fn delivered(&self, source: &dyn Source, sync_id: &str, delivered: &[(Key, Option<RowHash>)]) {
        if !self.record || delivered.is_empty() {
            return;
        }
        let Ok(pushdown) = pushdown_of(source) else { return };
        for chunk in delivered.chunks(PAGE) {
            if let Err(error) = pushdown.record_delivered(sync_id, chunk).await {
                self.failures.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                warn!(sync = %sync_id, rows = chunk.len(), %error, "Recording delivered rows in the source's table failed; they are read again next run.");
            }
        }
    }
}

/// The source's pushdown interface (checked when the sync was built).
pub(super) fn pushdown_of(source: &dyn Source) -> Result<&dyn PushdownSource, String> {
    source.pushdown().ok_or_else(|| format!("source `{}` no longer offers pushdown", source.name()))
}

/// Decides how the run uses the pushdown source and, for a full re-diff that writes,
/// prepares the delivered table: clears its epoch and hashes, then adds every key the
/// destination may hold (so that a later delete of one is found), paged from the snapshot.
pub(super) async fn plan(inner: &SyncInner, epoch: &Arc<str>, meta: &SyncMeta, lease: Option<&Lease>) -> PushdownPlan {
    let record = lease.is_some() && !inner.options.dry_run;
    let mut plan = PushdownPlan { epoch: epoch.clone(), full: None, record, error: None, failures: AtomicU64::new(0) };
    let prepared = async {
        let source = pushdown_of(inner.source.as_ref())?;
        let stored = source.epoch(&inner.id).await.map_err(|e| failed(inner, "reading its epoch", &e))?;
        plan.full = full_reason(inner.options.full_resync, epoch, meta.pushdown_epoch.as_deref(), stored.as_deref());
        if let Some(reason) = &plan.full {
            info!(sync = %inner.id, %reason, "This run re-diffs the whole model.");
            if plan.record {
                source.begin_full(&inner.id).await.map_err(|e| failed(inner, "starting a full re-diff", &e))?;
                seed(inner, source).await?;
            }
        }
        Ok::<(), String>(())
    };
    if let Err(reason) = prepared.await {
        plan.error = Some(reason);
    }
    plan
}

/// Why a run re-diffs in full, or `None` when the configuration, the state and the
/// delivered table agree on the epoch.
fn full_reason(full_resync: bool, epoch: &str, state: Option<&str>, table: Option<&str>) -> Option<String> {
    Some(
        match (state, table) {
            _ if full_resync => "a full resync was asked for",
            (None, _) => "the state holds no pushdown epoch (a first run, or a new or reset state store)",
            (Some(s), _) if s != epoch => {
                "the transforms, source columns, mode or fingerprint algorithm changed since the last full re-diff"
            }
            (_, None) => "the source's delivered table has no complete epoch (new, or a full re-diff did not complete)",
            (_, Some(t)) if t != epoch => "the source's delivered table was completed under another configuration",
            _ => return None,
        }
        .to_owned(),
    )
}

/// Adds every key the snapshot says the destination may hold to the delivered table.
async fn seed(inner: &SyncInner, source: &dyn PushdownSource) -> Result<(), String> {
    let mut after: Option<Key> = None;
    loop {
        let page = inner
            .state
            .scan(&inner.id, after.as_ref(), PAGE)
            .await
            .map_err(|e| format!("reading the snapshot to prepare a full re-diff failed: {e}"))?;
        let done = page.len() < PAGE;
        after = page.last().map(|e| e.key.clone());
        let keys: Vec<Key> = page.into_iter().filter(|e| e.may_exist()).map(|e| e.key).collect();
        if !keys.is_empty() {
            source
                .record_intents(&inner.id, &keys)
                .await
                .map_err(|e| failed(inner, "adding the keys the destination holds", &e))?;
        }
        if done || after.is_none() {
            return Ok(());
        }
    }
}

fn failed(inner: &SyncInner, what: &str, error: &SourceError) -> String {
    format!("source `{}`: {what} in its delivered table failed: {error}", inner.source.name())
}

#[cfg(test)]
mod tests {
    use super::full_reason;

    #[test]
    fn pushdown_only_when_all_three_epochs_agree() {
        assert_eq!(full_reason(false, "e", Some("e"), Some("e")), None);
        assert!(full_reason(true, "e", Some("e"), Some("e")).unwrap().contains("full resync"));
        assert!(full_reason(false, "e", None, Some("e")).unwrap().contains("state"));
        assert!(full_reason(false, "e", Some("d"), Some("e")).unwrap().contains("transforms"));
        assert!(full_reason(false, "e", Some("e"), None).unwrap().contains("no complete epoch"));
        assert!(full_reason(false, "e", Some("e"), Some("d")).unwrap().contains("another configuration"));
    }
}
