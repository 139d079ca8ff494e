//! The lease: taken, renewed and released on the server's clock, and the fence every write
//! of the state passes.

use std::time::Duration;

use rse_core::StateError;
use rse_core::state::Lease;

use super::PostgresStateStore;
use crate::state::{from_i64, time_from_ms, to_i64, ttl_ms};

/// The outcome of a fence check: the sync's row id, or why the write is refused.
type Fence = Result<i64, StateError>;

impl PostgresStateStore {
    /// Locks the sync's row and checks the lease's token against the current one.
    pub(super) async fn fence(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        lease: &Lease,
    ) -> Result<Fence, StateError> {
        let row = tx
            .query_opt(
                &tx.prepare_cached(&self.sql.fence).await.map_err(self.err("preparing a statement"))?,
                &[&lease.sync_id],
            )
            .await
            .map_err(self.err("checking the lease"))?;
        Ok(match row {
            Some(row) => {
                let (id, token, last): (i64, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
                match token {
                    Some(t) if from_i64(t) == lease.token => Ok(id),
                    _ => Err(StateError::Fenced {
                        sync_id: lease.sync_id.clone(),
                        token: lease.token,
                        current: from_i64(token.unwrap_or(last)),
                    }),
                }
            }
            None => Err(StateError::Fenced { sync_id: lease.sync_id.clone(), token: lease.token, current: 0 }),
        })
    }

    pub(super) async fn take_lease(&self, sync_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("taking the lease"))?;
        tx.execute(
            &tx.prepare_cached(&self.sql.ensure_sync).await.map_err(self.err("preparing a statement"))?,
            &[&sync_id],
        )
        .await
        .map_err(self.err("registering the sync"))?;
        let row = tx
            .query_one(
                &tx.prepare_cached(&self.sql.lock_sync).await.map_err(self.err("preparing a statement"))?,
                &[&sync_id],
            )
            .await
            .map_err(self.err("taking the lease"))?;
        let (last, current, acquired, expires, now): (i64, Option<String>, Option<i64>, Option<i64>, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if let (Some(current), Some(acquired), Some(expires)) = (current, acquired, expires)
            && expires > now
        {
            // Dropping the transaction rolls it back.
            return Err(StateError::LeaseHeld {
                sync_id: sync_id.to_owned(),
                holder: current,
                since_secs: from_i64(now - acquired) / 1000,
                expires_in_secs: from_i64(expires - now) / 1000,
            });
        }
        let token = last + 1;
        let expires = now.saturating_add(ttl_ms(ttl));
        tx.execute(
            &tx.prepare_cached(&self.sql.take_lease).await.map_err(self.err("preparing a statement"))?,
            &[&sync_id, &token, &holder, &now, &expires],
        )
        .await
        .map_err(self.err("taking the lease"))?;
        tx.commit().await.map_err(self.err("taking the lease"))?;
        Ok(Lease {
            sync_id: sync_id.to_owned(),
            holder: holder.to_owned(),
            token: from_i64(token),
            acquired_at: time_from_ms(now),
            expires_at: time_from_ms(expires),
        })
    }

    pub(super) async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("renewing the lease"))?;
        let id = self.fence(&tx, lease).await??;
        let row = tx
            .query_one(
                &tx.prepare_cached(&self.sql.renew).await.map_err(self.err("preparing a statement"))?,
                &[&id, &ttl_ms(ttl)],
            )
            .await
            .map_err(self.err("renewing the lease"))?;
        let expires: i64 = row.get(0);
        tx.commit().await.map_err(self.err("renewing the lease"))?;
        Ok(Lease { expires_at: time_from_ms(expires), ..lease.clone() })
    }

    pub(super) async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute(&self.sql.release, &[&lease.sync_id, &to_i64(lease.token)])
            .await
            .map_err(self.err("releasing the lease"))?;
        Ok(())
    }
}
