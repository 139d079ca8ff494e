//! An operator's pause and resume of a sync, and how a run honours them.
//!
//! The pause lives in the state store, so it reaches every process that runs the sync. A
//! run checks it before it takes the lease, and a run in flight polls it in the background
//! (once a second, not per record or batch); a pause seen there stops the run at its next
//! batch boundary, as a cancellation does: nothing more is read or sent, the writes in
//! flight finish and what they acknowledged is committed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{SyncInner, SyncJob};
use crate::error::{ConfigError, Error};
use crate::metrics::{PAUSED, SYNC};
use crate::report::{ProgressEvent, RunStatus, SyncReport};
use crate::state::Pause;

/// How often a run in flight reads the sync's pause.
pub(super) const PAUSE_POLL: Duration = Duration::from_secs(1);

impl SyncJob {
    /// Pauses the sync, in its state store, and returns the pause in force. A partition's
    /// job pauses that partition only; pausing the sync unpartitioned (a job built without
    /// [`partition`](crate::SyncBuilder::partition)) stops every partition.
    ///
    /// Needs no lease: it works while a run holds it, from any process sharing the state
    /// store. A later run returns at once with [`RunStatus::Paused`] (not recorded in the run
    /// history); a run in flight notices within about a second, stops at its next batch
    /// boundary, waits for its writes in flight, commits what they acknowledged and ends
    /// `Paused`. A dry run still runs while the sync is paused: it sends and commits nothing.
    /// A sync already paused keeps its first pause (who, why, since when), which is returned.
    ///
    /// `by` names who pauses (a person, a team, a system) and `reason` why, for whoever
    /// finds the sync paused; both show in the runs' status and the log.
    ///
    /// ```
    /// # use rse_core::{*, memory::*};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let schema = Schema::new(vec![Field::required("id", DataType::Int)], &["id"])?;
    /// # let sync = SyncJob::builder("crm")
    /// #     .source(MemorySource::new(schema.into_arc(), vec![Record::new(vec![1.into()])]))
    /// #     .destination(MemoryDestination::new())
    /// #     .state(MemoryStateStore::new())
    /// #     .build()
    /// #     .await?;
    /// sync.pause("oncall@example.com", "CRM answers 401 since 09:12; rotating the token").await?;
    /// let report = sync.run().await?;
    /// assert!(matches!(report.status, RunStatus::Paused { .. }));
    /// let lifted = sync.resume().await?;
    /// assert_eq!(lifted.map(|p| p.by), Some("oncall@example.com".to_owned()));
    /// assert_eq!(sync.run().await?.status, RunStatus::Succeeded);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `by` is blank; [`Error::State`] when the store cannot be
    /// reached (the sync is then not paused).
    pub async fn pause(&self, by: &str, reason: &str) -> Result<Pause, Error> {
        let inner = &self.inner;
        if by.trim().is_empty() {
            return Err(Error::Config(ConfigError::InvalidOption {
                sync_id: inner.id.to_string(),
                option: "pause.by",
                message: "is blank; name who pauses the sync (a person, a team or a system), so that whoever finds \
                          it paused knows whom to ask"
                    .to_owned(),
            }));
        }
        let pause = inner.state.pause(&inner.id, &Pause::new(by.trim(), reason)).await?;
        info!(sync = %inner.id, by = %pause.by, reason = %pause.reason, since_ms = pause.at_ms, "Sync paused.");
        paused_gauge(&inner.id, true);
        Ok(pause)
    }

    /// Lifts the sync's pause; returns the pause lifted, or `None` when it was not paused.
    /// The next run completes what a run stopped by the pause left undone.
    ///
    /// # Errors
    /// [`Error::State`] when the store cannot be reached (the sync then stays paused).
    pub async fn resume(&self) -> Result<Option<Pause>, Error> {
        let inner = &self.inner;
        let lifted = inner.state.resume(&inner.id).await?;
        if let Some(pause) = &lifted {
            info!(sync = %inner.id, by = %pause.by, since_ms = pause.at_ms, "Sync resumed.");
        }
        paused_gauge(&inner.id, false);
        Ok(lifted)
    }

    /// The sync's pause, or `None` when it is not paused. For a partition: its own pause, or
    /// else the whole sync's, which its runs honour too.
    ///
    /// # Errors
    /// [`Error::State`] when the store cannot be reached.
    pub async fn paused(&self) -> Result<Option<Pause>, Error> {
        let pause = pause_in_force(&self.inner).await?;
        paused_gauge(&self.inner.id, pause.is_some());
        Ok(pause)
    }
}

fn paused_gauge(sync_id: &str, paused: bool) {
    metrics::gauge!(PAUSED, SYNC => sync_id.to_owned()).set(if paused { 1.0 } else { 0.0 });
}

/// The pause a run honours: the sync's own, or for a partition its own or the whole
/// sync's (under the sync's own id), so that pausing the sync stops every partition.
async fn pause_in_force(inner: &SyncInner) -> Result<Option<Pause>, crate::StateError> {
    let own = inner.state.paused(&inner.id).await?;
    if own.is_some() || inner.base_id == inner.id {
        return Ok(own);
    }
    inner.state.paused(&inner.base_id).await
}

/// The status of a run stopped by `pause`.
pub(super) fn paused_status(pause: &Pause) -> RunStatus {
    RunStatus::Paused { by: pause.by.clone(), reason: pause.reason.clone() }
}

/// The report of a run of a paused sync, which returns before taking the lease; `None`
/// when the sync is not paused (or the run is a dry run, which runs while paused).
pub(super) async fn paused_run(inner: &SyncInner) -> Result<Option<SyncReport>, Error> {
    if inner.options.dry_run {
        return Ok(None);
    }
    let Some(pause) = pause_in_force(inner).await? else {
        paused_gauge(&inner.id, false);
        return Ok(None);
    };
    paused_gauge(&inner.id, true);
    info!(sync = %inner.id, by = %pause.by, reason = %pause.reason, "The sync is paused; the run does nothing.");
    let mut report = SyncReport::new(&inner.id, inner.mode);
    report.status = paused_status(&pause);
    let _ = inner.progress.send(ProgressEvent::Finished { status: report.status.clone() });
    Ok(Some(report))
}

/// Polls the sync's pause every [`PAUSE_POLL`] until `done`; a pause found stops the run
/// (`stop`) and is returned. A store that cannot answer is logged once and polled again: the
/// run's own commits notice an unreachable store.
pub(super) async fn watch_pause(inner: &SyncInner, stop: CancellationToken, done: CancellationToken) -> Option<Pause> {
    let mut warned = false;
    loop {
        tokio::select! {
            () = done.cancelled() => return None,
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(PAUSE_POLL) => {}
        }
        let answer = tokio::select! {
            () = done.cancelled() => return None,
            answer = tokio::time::timeout(PAUSE_POLL, pause_in_force(inner)) => answer,
        };
        match answer {
            Ok(Ok(Some(pause))) => {
                info!(sync = %inner.id, by = %pause.by, reason = %pause.reason, "The sync was paused; stopping at the next batch boundary.");
                paused_gauge(&inner.id, true);
                stop.cancel();
                return Some(pause);
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) if !warned => {
                warned = true;
                warn!(sync = %inner.id, %error, "Reading the sync's pause failed; trying again.");
            }
            Err(_) if !warned => {
                warned = true;
                warn!(sync = %inner.id, "Reading the sync's pause did not answer in time; trying again.");
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}
