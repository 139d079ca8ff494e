//! Committing a batch's state: intents, settled and applied entries, refusals, forgotten
//! keys and the cursor, in the store's own transaction or in a destination's.

use std::collections::HashSet;

use rse_core::StateError;
use rse_core::state::{Lease, SnapshotEntry, StateCommit};
use tokio_postgres::types::ToSql;

use super::{PostgresStateStore, key_bytes};
use crate::postgres::classify::is_unique_violation;
use crate::postgres::copy::{COPY_MIN_ROWS, CopyRows, copy_in};
use crate::state::{PendingColumns, cursor_bytes, last_per_key, pending_columns, rejected_columns, stage_name, to_i64};

/// Why [`PostgresStateStore::commit_in`] failed; either way the transaction must be rolled
/// back.
#[derive(Debug)]
pub(crate) enum CommitInError {
    /// The state could not be committed.
    State(StateError),
    /// A key given as new has a snapshot row: commit again without copying.
    SnapshotConflict,
}

impl From<StateError> for CommitInError {
    fn from(e: StateError) -> Self {
        CommitInError::State(e)
    }
}

impl PostgresStateStore {
    /// [`StateStore::commit`](rse_core::StateStore::commit): [`commit_in`](Self::commit_in) in a transaction of its own.
    pub(super) async fn commit_own(&self, lease: &Lease, commit: StateCommit) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("committing state"))?;
        match self.commit_in(&tx, lease, commit, &HashSet::new()).await {
            Ok(()) => {}
            Err(CommitInError::State(e)) => return Err(e),
            Err(CommitInError::SnapshotConflict) => {
                return Err(StateError::Other { message: "a snapshot copy without copied keys".into(), source: None });
            }
        }
        tx.commit().await.map_err(self.err("committing state"))
    }

    /// Applies `commit` inside `tx`, a transaction on this store's database, after locking
    /// the sync's row and checking the lease: [`StateStore::commit`](rse_core::StateStore::commit) without its own
    /// transaction, so a destination in the same database commits rows and state together.
    /// Nothing is committed here; the caller commits or rolls back `tx`.
    ///
    /// Applied entries of the keys in `new_keys` — keys the caller knows to have no snapshot
    /// row — are written by binary COPY when there are at least [`COPY_MIN_ROWS`] of them. If
    /// one has a row after all, the COPY fails and so does the transaction:
    /// [`CommitInError::SnapshotConflict`] says to roll back and commit again without it.
    pub(crate) async fn commit_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        lease: &Lease,
        commit: StateCommit,
        new_keys: &HashSet<&[u8]>,
    ) -> Result<(), CommitInError> {
        // Encode first, so that a value that cannot be encoded writes nothing.
        let mut rejected = last_per_key(commit.rejected, |r| &r.key);
        let (rejected_json, records): (Vec<String>, Vec<Option<Vec<u8>>>) =
            rejected.iter_mut().map(rejected_columns).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
        let cursor = commit.cursor.as_ref().map(cursor_bytes).transpose()?;
        let intents = last_per_key(commit.intents, |(k, _)| k);
        let memos = last_per_key(commit.memos, |(k, _)| k);
        let settled = last_per_key(commit.settled, |(k, _)| k);
        let applied = last_per_key(commit.applied, |e| &e.key);
        let id = self.fence(tx, lease).await??;
        let run = |sql: &'static str| self.err(sql);

        if !intents.is_empty() {
            let keys: Vec<&[u8]> = intents.iter().map(|(k, _)| k.as_bytes()).collect();
            let cols: Vec<_> = intents.iter().map(|(_, p)| pending_columns(Some(p))).collect();
            let (ops, fps, versions) = split(&cols);
            tx.execute(
                &tx.prepare_cached(&self.sql.intents).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys, &ops, &fps, &versions],
            )
            .await
            .map_err(run("recording intents"))?;
        }
        if !memos.is_empty() {
            let keys: Vec<&[u8]> = memos.iter().map(|(k, _)| k.as_bytes()).collect();
            let values: Vec<&[u8]> = memos.iter().map(|(_, m)| m.as_bytes()).collect();
            tx.execute(
                &tx.prepare_cached(&self.sql.memos).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys, &values],
            )
            .await
            .map_err(run("recording memos"))?;
        }
        if !settled.is_empty() {
            let keys: Vec<&[u8]> = settled.iter().map(|(k, _)| k.as_bytes()).collect();
            let cols: Vec<_> = settled.iter().map(|(_, p)| pending_columns(p.as_ref())).collect();
            let (ops, fps, versions) = split(&cols);
            tx.execute(
                &tx.prepare_cached(&self.sql.settle).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys, &ops, &fps, &versions],
            )
            .await
            .map_err(run("settling intents"))?;
            tx.execute(
                &tx.prepare_cached(&self.sql.settle_remove).await.map_err(self.err("preparing a statement"))?,
                &[&id, &keys],
            )
            .await
            .map_err(run("settling intents"))?;
        }
        if !applied.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.clear_by_keys).await.map_err(self.err("preparing a statement"))?,
                &[&id, &applied.iter().map(|e| e.key.as_bytes()).collect::<Vec<_>>()],
            )
            .await
            .map_err(run("clearing rejections"))?;
        }
        let (copied, applied): (Vec<SnapshotEntry>, Vec<SnapshotEntry>) =
            if applied.iter().filter(|e| new_keys.contains(e.key.as_bytes())).count() >= COPY_MIN_ROWS {
                applied.into_iter().partition(|e| new_keys.contains(e.key.as_bytes()))
            } else {
                (Vec::new(), applied)
            };
        if !copied.is_empty() {
            let rows = snapshot_copy(id, &copied).ok_or_else(|| StateError::Other {
                message: format!("{}: a snapshot key is too long for PostgreSQL", self.name),
                source: None,
            })?;
            match copy_in(tx, &self.sql.copy_snapshot, rows).await {
                Ok(()) => {}
                Err(e) if is_unique_violation(&e) => return Err(CommitInError::SnapshotConflict),
                Err(e) => return Err(self.err("writing applied entries")(e).into()),
            }
        }
        if !applied.is_empty() {
            let keys: Vec<&[u8]> = applied.iter().map(|e| e.key.as_bytes()).collect();
            let fingerprints: Vec<Option<[u8; 16]>> =
                applied.iter().map(|e| e.fingerprint.map(|f| f.to_bytes())).collect();
            let fingerprints: Vec<Option<&[u8]>> = fingerprints.iter().map(|f| f.as_ref().map(|b| &b[..])).collect();
            let versions: Vec<i64> = applied.iter().map(|e| to_i64(e.version)).collect();
            let cols: Vec<_> = applied.iter().map(|e| pending_columns(e.pending.as_ref())).collect();
            let (ops, fps, pending_versions) = split(&cols);
            let memos: Vec<Option<&[u8]>> = applied.iter().map(|e| e.memo.as_ref().map(|m| m.as_bytes())).collect();
            let params: [&(dyn ToSql + Sync); 8] =
                [&id, &keys, &fingerprints, &versions, &ops, &fps, &pending_versions, &memos];
            tx.execute(&tx.prepare_cached(&self.sql.apply).await.map_err(self.err("preparing a statement"))?, &params)
                .await
                .map_err(run("writing applied entries"))?;
        }
        if !rejected.is_empty() {
            let keys: Vec<&[u8]> = rejected.iter().map(|r| r.key.as_bytes()).collect();
            let stages: Vec<&str> = rejected.iter().map(|r| stage_name(r.stage)).collect();
            let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
            let attempts: Vec<i32> = rejected.iter().map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX)).collect();
            let last: Vec<i64> = rejected.iter().map(|r| to_i64(r.last_rejected_at)).collect();
            let params: [&(dyn ToSql + Sync); 8] =
                [&id, &keys, &stages, &reasons, &attempts, &last, &rejected_json, &records];
            tx.execute(&tx.prepare_cached(&self.sql.reject).await.map_err(self.err("preparing a statement"))?, &params)
                .await
                .map_err(run("writing rejections"))?;
        }
        if !commit.cleared_rejections.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.clear_by_keys).await.map_err(self.err("preparing a statement"))?,
                &[&id, &key_bytes(&commit.cleared_rejections)],
            )
            .await
            .map_err(run("clearing rejections"))?;
        }
        if !commit.forgotten.is_empty() {
            tx.execute(
                &tx.prepare_cached(&self.sql.forget).await.map_err(self.err("preparing a statement"))?,
                &[&id, &key_bytes(&commit.forgotten)],
            )
            .await
            .map_err(run("forgetting keys"))?;
        }
        if let Some(cursor) = &cursor {
            tx.execute(
                &tx.prepare_cached(&self.sql.cursor).await.map_err(self.err("preparing a statement"))?,
                &[&id, cursor],
            )
            .await
            .map_err(run("moving the cursor"))?;
        }
        if let Some(algorithm) = commit.fingerprint_algorithm {
            tx.execute(
                &tx.prepare_cached(&self.sql.algorithm).await.map_err(self.err("preparing a statement"))?,
                &[&id, &algorithm.name()],
            )
            .await
            .map_err(run("recording the algorithm"))?;
        }
        if let Some(epoch) = &commit.pushdown_epoch {
            tx.execute(
                &tx.prepare_cached(&self.sql.pushdown_epoch).await.map_err(self.err("preparing a statement"))?,
                &[&id, epoch],
            )
            .await
            .map_err(run("recording the pushdown epoch"))?;
        }
        Ok(())
    }
}

/// Operation codes, fingerprints and versions of pending changes, as bound arrays.
type PendingArrays<'a> = (Vec<Option<i16>>, Vec<Option<&'a [u8]>>, Vec<Option<i64>>);

/// The binary COPY stream of `entries` as snapshot rows of sync `id`, in the column order of
/// `copy_snapshot`; `None` when a key or fingerprint is beyond what a field holds.
fn snapshot_copy(id: i64, entries: &[SnapshotEntry]) -> Option<bytes::Bytes> {
    let mut rows = CopyRows::with_capacity(entries.len() * 96);
    for e in entries {
        rows.row(8);
        rows.int8(id);
        if !rows.bytea(e.key.as_bytes()) {
            return None;
        }
        match e.fingerprint {
            Some(f) => {
                rows.bytea(&f.to_bytes());
            }
            None => rows.null(),
        }
        rows.int8(to_i64(e.version));
        let (op, fingerprint, version) = pending_columns(e.pending.as_ref());
        match op {
            Some(op) => rows.int2(op),
            None => rows.null(),
        }
        match fingerprint {
            Some(f) => {
                rows.bytea(&f);
            }
            None => rows.null(),
        }
        match version {
            Some(v) => rows.int8(v),
            None => rows.null(),
        }
        match &e.memo {
            Some(m) => {
                if !rows.bytea(m.as_bytes()) {
                    return None;
                }
            }
            None => rows.null(),
        }
    }
    Some(rows.finish())
}

/// Splits pending-change columns into the three arrays a statement binds.
fn split(cols: &[PendingColumns]) -> PendingArrays<'_> {
    let ops = cols.iter().map(|c| c.0).collect();
    let fps = cols.iter().map(|c| c.1.as_ref().map(|b| &b[..])).collect();
    let versions = cols.iter().map(|c| c.2).collect();
    (ops, fps, versions)
}
