//! The idempotency ledger: each applied change's idempotency key, recorded in the same
//! transaction as its row, so a change re-sent after a lost acknowledgement is recognised.

use std::collections::HashSet;

use rse_core::{Change, ChangeBatch, DestinationError, Op};

use super::PostgresDestination;

impl PostgresDestination {
    /// Upserts the ledger's record of the changes at `indices` and returns the keys that
    /// were new or held another idempotency key (the changes to apply).
    pub(super) async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &ChangeBatch,
        indices: &[usize],
    ) -> Result<HashSet<Vec<u8>>, DestinationError> {
        if indices.is_empty() {
            return Ok(HashSet::new());
        }
        let changes: Vec<&Change> = indices.iter().map(|&i| &batch.changes[i]).collect();
        let keys: Vec<&[u8]> = changes.iter().map(|c| c.key.as_bytes()).collect();
        let versions: Vec<i64> = changes.iter().map(|c| i64::try_from(c.version).unwrap_or(i64::MAX)).collect();
        let fingerprints: Vec<Option<Vec<u8>>> =
            changes.iter().map(|c| (c.op != Op::Delete).then(|| c.fingerprint.to_bytes().to_vec())).collect();
        let idems: Vec<&[u8]> = changes.iter().map(|c| c.idempotency_key.0.as_slice()).collect();
        let sql = format!(
            "INSERT INTO {} AS s (sync_id, key, version, fingerprint, idempotency_key) \
             SELECT $1, k, v, f, i FROM unnest($2::bytea[], $3::int8[], $4::bytea[], $5::bytea[]) AS u(k, v, f, i) \
             ON CONFLICT (sync_id, key) DO UPDATE SET version = EXCLUDED.version, fingerprint = EXCLUDED.fingerprint, \
             idempotency_key = EXCLUDED.idempotency_key, applied_at = now() \
             WHERE s.idempotency_key IS DISTINCT FROM EXCLUDED.idempotency_key \
             RETURNING key",
            self.ledger_table()
        );
        let rows = tx
            .query(&sql, &[&&*batch.sync_id, &keys, &versions, &fingerprints, &idems])
            .await
            .map_err(|e| self.classify(e, "recording applied changes"))?;
        Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
    }
}
