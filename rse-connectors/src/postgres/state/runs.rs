//! The run history, and the listings of syncs and runs an operator reads.

use rse_core::state::Lease;
use rse_core::{StateError, SyncReport};

use super::PostgresStateStore;
use crate::state::{RunRecord, SyncSummary, from_i64, from_json, time_from_ms, to_i64, to_json};

impl PostgresStateStore {
    pub(super) async fn record(&self, lease: &Lease, report: &SyncReport) -> Result<(), StateError> {
        let text = to_json("a run report", report)?;
        let status = to_json("a run status", &report.status)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("recording a run"))?;
        let id = self.fence(&tx, lease).await??;
        let (run_id, started) = (to_i64(report.run_id), to_i64(report.started_at_ms));
        tx.execute(
            &tx.prepare_cached(&self.sql.run).await.map_err(self.err("preparing a statement"))?,
            &[&id, &run_id, &started, &status, &text],
        )
        .await
        .map_err(self.err("recording a run"))?;
        tx.execute(
            &tx.prepare_cached(&self.sql.prune_runs).await.map_err(self.err("preparing a statement"))?,
            &[&id, &to_i64(self.run_retention as u64)],
        )
        .await
        .map_err(self.err("pruning old runs"))?;
        tx.commit().await.map_err(self.err("recording a run"))
    }

    /// Every sync the schema holds, with its counts and current lease, by sync id.
    ///
    /// # Errors
    /// As [`StateStore::scan`](rse_core::StateStore::scan).
    pub async fn list_syncs(&self) -> Result<Vec<SyncSummary>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(&client.prepare_cached(&self.sql.syncs).await.map_err(self.err("preparing a statement"))?, &[])
            .await
            .map_err(self.err("listing syncs"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let holder: Option<String> = r.get(3);
                let expires: Option<i64> = r.get(4);
                let now: i64 = r.get(5);
                SyncSummary {
                    sync_id: r.get(0),
                    entries: from_i64(r.get(1)),
                    rejected: from_i64(r.get(2)),
                    lease: holder.zip(expires).filter(|(_, e)| *e > now).map(|(h, e)| (h, time_from_ms(e))),
                }
            })
            .collect())
    }

    /// The latest `limit` runs of a sync with their ids and start times, newest first.
    ///
    /// # Errors
    /// As [`StateStore::runs`](rse_core::StateStore::runs).
    pub async fn list_runs(&self, sync_id: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let client = self.client().await?;
        let limit = to_i64(limit as u64);
        let rows = client
            .query(
                &client.prepare_cached(&self.sql.runs).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id, &limit],
            )
            .await
            .map_err(self.err("listing runs"))?;
        rows.iter()
            .map(|r| {
                let report: String = r.get(2);
                Ok(RunRecord {
                    sync_id: sync_id.to_owned(),
                    run_id: from_i64(r.get(0)),
                    started_at_ms: from_i64(r.get(1)),
                    report: from_json("a run report", &report)?,
                })
            })
            .collect()
    }
}
