//! The version guard's answer: which changes the guard held back because their row holds a
//! newer version.

use rse_core::{ChangeBatch, ChangeOutcome, DestinationError, WriteOutcomes};
use tokio_postgres::types::ToSql;

use super::PostgresDestination;
use super::bind::{Column, column_len};
use super::plan::Statements;

impl PostgresDestination {
    /// Answers `Superseded` for the changes written in this transaction whose row holds a
    /// newer version than theirs (the version guard skipped them).
    pub(super) async fn mark_superseded(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        statements: &Statements,
        batch: &ChangeBatch,
        outcomes: &mut WriteOutcomes,
    ) -> Result<(), DestinationError> {
        let written: Vec<usize> = outcomes.unset().collect();
        let n = written.len();
        let mut keys: Vec<Column<'_>> = statements.key_binds.iter().map(|(_, b)| Column::new(*b, n)).collect();
        let mut versions = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        for &i in &written {
            let change = &batch.changes[i];
            let Ok(key) = change.key.decode() else { continue };
            let before = column_len(&keys);
            if key.len() == keys.len() && keys.iter_mut().zip(&key).all(|(c, v)| c.push_owned(v)) {
                versions.push(Some(i64::try_from(change.version).unwrap_or(i64::MAX)));
                positions.push(Some(i as i64));
            } else {
                keys.iter_mut().for_each(|c| c.truncate(before));
            }
        }
        keys.push(Column::Int(versions));
        keys.push(Column::Int(positions));
        let params: Vec<&(dyn ToSql + Sync)> = keys.iter().map(Column::as_sql).collect();
        let statement = tx.prepare_cached(sql).await.map_err(|e| self.classify(e, "preparing"))?;
        let rows = tx.query(&statement, &params).await.map_err(|e| self.classify(e, "finding superseded rows"))?;
        for row in rows {
            let (Ok(position), Ok(held)) = (row.try_get::<_, i64>(0), row.try_get::<_, i64>(1)) else { continue };
            let Ok(i) = usize::try_from(position) else { continue };
            let Some(change) = batch.changes.get(i) else { continue };
            let reason = format!("the table's row holds version {held}, newer than this change's {}", change.version);
            outcomes.set(i, ChangeOutcome::Superseded { reason });
        }
        Ok(())
    }
}
