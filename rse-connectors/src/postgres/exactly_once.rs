//! Exactly-once: the PostgreSQL destination commits the sync's state into a
//! [`PostgresStateStore`] in the same transaction as each batch's rows.
//!
//! This is the one module that knows both the destination and the state store: the
//! destination sees what it commits with its rows only as a [`CommitWithRows`], and the
//! state store offers [`PostgresStateStore::commit_in`], a commit inside a transaction it
//! does not own.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use rse_core::{
    ChangeBatch, CommitFor, CommittedWriteError, Destination, DestinationError, Lease, Op, StateError, StateStore,
    WriteOutcome,
};
use tracing::debug;

use super::destination::{CommitWithRows, PostgresDestination, WithRows};
use super::state::{CommitInError, PostgresStateStore};

impl PostgresDestination {
    /// Exactly-once: commits the sync's state into `store` in the same transaction as each
    /// batch's rows (see the module docs). `store` must be in the destination's database;
    /// the first write checks it. Build the sync with the same store.
    pub fn with_state_store(self, store: PostgresStateStore) -> Self {
        self.committing_with_rows(Box::new(ExactlyOnce {
            store,
            checked: tokio::sync::Mutex::new(false),
            copy_conflicted: AtomicBool::new(false),
        }))
    }
}

/// The state store a destination commits into, and what it learnt of it.
struct ExactlyOnce {
    store: PostgresStateStore,
    /// Whether the store was checked to share the destination's database.
    checked: tokio::sync::Mutex<bool>,
    /// A COPY of snapshot rows met a key the snapshot already had (a deleted key's
    /// tombstone): the state of inserts goes by upsert from then on.
    copy_conflicted: AtomicBool,
}

#[async_trait]
impl CommitWithRows for ExactlyOnce {
    fn store(&self) -> Arc<dyn StateStore> {
        Arc::new(self.store.clone())
    }

    fn store_name(&self) -> &str {
        self.store.name()
    }

    /// Checks, once, that the state store is in the destination's database.
    async fn check(&self, destination: &PostgresDestination) -> Result<(), CommittedWriteError> {
        let mut checked = self.checked.lock().await;
        if *checked {
            return Ok(());
        }
        let ours = destination.database_identity().await?;
        let theirs = self.store.database_identity().await?;
        if ours != theirs {
            return Err(DestinationError::fatal(format!(
                "{}: exactly-once needs the state store `{}` in the destination's database, but it is on another one; \
                 connect both to the same database",
                destination.name(),
                self.store.name()
            ))
            .into());
        }
        *checked = true;
        Ok(())
    }

    async fn commit_in(
        &self,
        destination: &PostgresDestination,
        tx: &Transaction<'_>,
        batch: &ChangeBatch,
        (lease, commit_for): (&Lease, &CommitFor<'_>),
        written: &WriteOutcome,
    ) -> Result<WithRows, CommittedWriteError> {
        // Keys new to the sync have no snapshot row (but a deleted key's tombstone, which
        // the COPY finds): their snapshot rows go by COPY too.
        let new_keys: HashSet<&[u8]> = if destination.copies_inserts() && !self.copy_conflicted.load(Ordering::Relaxed)
        {
            batch.changes.iter().filter(|c| c.op == Op::Insert).map(|c| c.key.as_bytes()).collect()
        } else {
            HashSet::new()
        };
        // After the rows: the fence locks the sync's state row until the commit.
        match self.store.commit_in(tx, lease, commit_for(written), &new_keys).await {
            Ok(()) => Ok(WithRows::Committed),
            Err(CommitInError::SnapshotConflict) => {
                debug!(
                    destination = %destination.name(),
                    "An inserted key has a snapshot row; its state goes by upsert from now on."
                );
                self.copy_conflicted.store(true, Ordering::Relaxed);
                Ok(WithRows::WriteAgain)
            }
            // The connection failed: nothing was committed, and the whole write can be retried.
            Err(CommitInError::State(StateError::Unavailable { message, source })) => {
                Err(CommittedWriteError::Destination(DestinationError::Transient { message, source }))
            }
            Err(CommitInError::State(other)) => Err(CommittedWriteError::State(other)),
        }
    }
}
