//! Writing a batch: one transaction with the ledger, the COPY of inserts, the upsert and
//! the delete, then what is committed with the rows (exactly-once), then the commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use rse_core::{
    ChangeBatch, CommitFor, CommittedWriteError, DestinationError, Lease, StateStore, WriteOutcome, WriteOutcomes,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tracing::debug;

use super::PostgresDestination;
use super::bind::{Column, column_len};
use crate::postgres::classify::upsert_would_do;
use crate::postgres::copy::copy_in;

/// What a batch's transaction commits besides its rows: under exactly-once, the sync's
/// state (`exactly_once.rs`). The destination knows it only through this trait, so that it
/// does not depend on the state store.
#[async_trait]
pub(crate) trait CommitWithRows: Send + Sync {
    /// The state store committed into.
    fn store(&self) -> Arc<dyn StateStore>;

    /// Its name.
    fn store_name(&self) -> &str;

    /// Checks, before writing, that it can commit in `destination`'s transactions.
    async fn check(&self, destination: &PostgresDestination) -> Result<(), CommittedWriteError>;

    /// Commits, in `tx` after the rows of `batch` and before the commit, the state `commit`
    /// builds from the write's answer.
    async fn commit_in(
        &self,
        destination: &PostgresDestination,
        tx: &Transaction<'_>,
        batch: &ChangeBatch,
        commit: (&Lease, &CommitFor<'_>),
        written: &WriteOutcome,
    ) -> Result<WithRows, CommittedWriteError>;
}

/// How the commit of what goes with the rows ended.
pub(crate) enum WithRows {
    /// Committed in the transaction, which may commit.
    Committed,
    /// Not committed, and the transaction must not be: write the batch again.
    WriteAgain,
}

/// How one attempt at a batch ended.
enum Attempt {
    Written(WriteOutcome),
    /// The server refused the COPY where the upsert would do (a key already in the table,
    /// or a table the COPY cannot write, SQLSTATE given); nothing was committed.
    CopyRefused(String),
    /// What commits with the rows asked for the batch again; nothing was committed.
    Again,
}

impl PostgresDestination {
    /// Writes a batch in one transaction, with the state commit `commit` builds from the
    /// outcomes when given (exactly-once); again by upsert alone when its COPY met a key
    /// already in the table.
    pub(super) async fn apply(
        &self,
        batch: &ChangeBatch,
        commit: Option<(&Lease, &CommitFor<'_>)>,
    ) -> Result<WriteOutcome, CommittedWriteError> {
        let mut copy_rows = self.options.copy_inserts && !self.copy_conflicted.load(Ordering::Relaxed);
        loop {
            match self.apply_once(batch, commit, copy_rows).await? {
                Attempt::Written(outcome) => return Ok(outcome),
                Attempt::CopyRefused(code) => {
                    debug!(
                        destination = %self.name,
                        sqlstate = %code,
                        "The server refused the COPY of inserts (23505: a key new to the sync is already in the \
                         table); inserts go by upsert from now on."
                    );
                    self.copy_conflicted.store(true, Ordering::Relaxed);
                    copy_rows = false;
                }
                Attempt::Again => {}
            }
        }
    }

    async fn apply_once(
        &self,
        batch: &ChangeBatch,
        commit: Option<(&Lease, &CommitFor<'_>)>,
        copy_rows: bool,
    ) -> Result<Attempt, CommittedWriteError> {
        let with_rows = match (commit, self.with_rows.as_deref()) {
            (None, _) => None,
            (Some(commit), Some(with)) => Some((commit, with)),
            (Some(_), None) => {
                return Err(DestinationError::fatal(format!("{}: no state store to commit into", self.name)).into());
            }
        };
        if batch.changes.is_empty() && with_rows.is_none() {
            return Ok(Attempt::Written(WriteOutcome::default()));
        }
        if let Some((_, with)) = with_rows {
            with.check(self).await?;
        }
        if !batch.changes.is_empty() {
            self.prepare(&batch.schema).await?;
        }
        let statements = self.statements(&batch.schema);
        let mut outcomes = WriteOutcomes::new(batch.changes.len());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.classify(e, "beginning a transaction"))?;

        // Values that do not fit their column are rejected here, before any SQL.
        let all: Vec<usize> = (0..batch.changes.len()).collect();
        let mut encoded = self.encode(&statements, batch, &mut outcomes, &all, copy_rows);

        if self.options.ledger {
            // Record the valid changes first, in one statement that also says which are new:
            // a key whose recorded idempotency key is this change's is left alone and not
            // returned, so the change is answered `Applied` without touching its row.
            let valid: Vec<usize> = all.iter().copied().filter(|&i| !outcomes.is_set(i)).collect();
            let fresh = self.record(&tx, batch, &valid).await?;
            if fresh.len() < valid.len() {
                let todo: Vec<usize> =
                    valid.iter().copied().filter(|&i| fresh.contains(batch.changes[i].key.as_bytes())).collect();
                for &i in &valid {
                    if !fresh.contains(batch.changes[i].key.as_bytes()) {
                        outcomes.applied(i);
                    }
                }
                encoded = self.encode(&statements, batch, &mut outcomes, &todo, copy_rows);
            }
        }
        if let (Some(rows), Some(plan)) = (encoded.copied.filter(|r| r.len() > 0), &statements.copy) {
            match copy_in(&tx, &plan.sql, rows.finish()).await {
                Ok(()) => {}
                Err(e) if e.code().is_some_and(upsert_would_do) => {
                    return Ok(Attempt::CopyRefused(e.code().map_or("", SqlState::code).to_owned()));
                }
                Err(e) => return Err(self.classify(e, "copying new rows").into()),
            }
        }
        let mut skipped = false;
        let upserts = column_len(&encoded.upsert);
        if upserts > 0 {
            let params: Vec<&(dyn ToSql + Sync)> = encoded.upsert.iter().map(Column::as_sql).collect();
            let statement = tx.prepare_cached(&statements.upsert).await.map_err(|e| self.classify(e, "preparing"))?;
            let written = tx.execute(&statement, &params).await.map_err(|e| self.classify(e, "upserting rows"))?;
            skipped |= written < upserts as u64;
        }
        let deletes = column_len(&encoded.delete);
        if deletes > 0 {
            let params: Vec<&(dyn ToSql + Sync)> = encoded.delete.iter().map(Column::as_sql).collect();
            let statement = tx.prepare_cached(&statements.delete).await.map_err(|e| self.classify(e, "preparing"))?;
            let removed = tx.execute(&statement, &params).await.map_err(|e| self.classify(e, "deleting rows"))?;
            // A delete of a key not in the table removes nothing and is applied all the same.
            skipped |= removed < deletes as u64;
        }
        if skipped && let Some(sql) = &statements.superseded {
            self.mark_superseded(&tx, sql, &statements, batch, &mut outcomes).await?;
        }
        let Some((commit, with)) = with_rows else {
            tx.commit().await.map_err(|e| self.classify(e, "committing"))?;
            // Every change not refused or superseded above was written by the transaction.
            outcomes.rest_applied();
            return Ok(Attempt::Written(outcomes.finish(&self.name)?));
        };
        // Exactly-once: the state records as applied every change not refused or superseded,
        // in this transaction, so they are applied exactly when it commits.
        outcomes.rest_applied();
        let written = outcomes.finish(&self.name)?;
        if let WithRows::WriteAgain = with.commit_in(self, &tx, batch, commit, &written).await? {
            return Ok(Attempt::Again);
        }
        tx.commit().await.map_err(|e| self.classify(e, "committing"))?;
        Ok(Attempt::Written(written))
    }
}
