//! Operators' pauses: one row per paused sync, written without a lease.

use rse_core::StateError;
use rse_core::state::Pause;
use tokio_postgres::Row;

use super::PostgresStateStore;
use crate::state::{from_i64, to_i64};

fn pause_of(row: &Row) -> Pause {
    Pause { by: row.get(0), reason: row.get(1), at_ms: from_i64(row.get(2)) }
}

impl PostgresStateStore {
    pub(super) async fn put_pause(&self, sync_id: &str, pause: &Pause) -> Result<Pause, StateError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&self.sql.pause).await.map_err(self.err("preparing a statement"))?;
        let row = client
            .query_one(&statement, &[&sync_id, &pause.by, &pause.reason, &to_i64(pause.at_ms)])
            .await
            .map_err(self.err("pausing a sync"))?;
        Ok(pause_of(&row))
    }

    pub(super) async fn lift_pause(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&self.sql.resume).await.map_err(self.err("preparing a statement"))?;
        let row = client.query_opt(&statement, &[&sync_id]).await.map_err(self.err("resuming a sync"))?;
        Ok(row.as_ref().map(pause_of))
    }

    pub(super) async fn read_pause(&self, sync_id: &str) -> Result<Option<Pause>, StateError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&self.sql.paused).await.map_err(self.err("preparing a statement"))?;
        let row = client.query_opt(&statement, &[&sync_id]).await.map_err(self.err("reading a sync's pause"))?;
        Ok(row.as_ref().map(pause_of))
    }
}
