//! The state store's statements, built once per store with its schema quoted in.

use crate::postgres::sql::quote_ident;

/// The wall clock of the server, in milliseconds: every runner compares lease expiry on
/// the same clock, whatever its own host's says.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The statements, with the schema name quoted in.
pub(super) struct Sql {
    pub(super) fence: String,
    pub(super) ensure_sync: String,
    pub(super) lock_sync: String,
    pub(super) take_lease: String,
    pub(super) renew: String,
    pub(super) release: String,
    pub(super) meta: String,
    pub(super) scan_first: String,
    pub(super) scan_after: String,
    pub(super) get: String,
    pub(super) rejected_first: String,
    pub(super) rejected_after: String,
    pub(super) intents: String,
    pub(super) memos: String,
    pub(super) settle: String,
    pub(super) settle_remove: String,
    pub(super) clear_by_keys: String,
    pub(super) apply: String,
    pub(super) copy_snapshot: String,
    pub(super) reject: String,
    pub(super) forget: String,
    pub(super) cursor: String,
    pub(super) algorithm: String,
    pub(super) pushdown_epoch: String,
    pub(super) run: String,
    pub(super) prune_runs: String,
    pub(super) runs: String,
    pub(super) syncs: String,
    pub(super) pause: String,
    pub(super) resume: String,
    pub(super) paused: String,
    pub(super) reserve_quota: String,
}

impl Sql {
    /// The statements for the tables in `schema`.
    pub(super) fn new(schema: &str) -> Self {
        let s = &quote_ident(schema);
        let cols = "key, fingerprint, version, pending_op, pending_fingerprint, pending_version, memo";
        let sync_of = format!("(SELECT id FROM {s}.rse_syncs WHERE sync_id = $1)");
        Self {
            fence: format!("SELECT id, lease_token, last_token FROM {s}.rse_syncs WHERE sync_id = $1 FOR UPDATE"),
            ensure_sync: format!("INSERT INTO {s}.rse_syncs (sync_id) VALUES ($1) ON CONFLICT (sync_id) DO NOTHING"),
            lock_sync: format!(
                "SELECT last_token, lease_holder, lease_acquired_ms, lease_expires_ms, {NOW_MS} FROM {s}.rse_syncs
                 WHERE sync_id = $1 FOR UPDATE"
            ),
            take_lease: format!(
                "UPDATE {s}.rse_syncs SET last_token = $2, lease_holder = $3, lease_token = $2, lease_acquired_ms = $4,
                 lease_expires_ms = $5 WHERE sync_id = $1"
            ),
            renew: format!("UPDATE {s}.rse_syncs SET lease_expires_ms = {NOW_MS} + $2 WHERE id = $1 RETURNING lease_expires_ms"),
            release: format!(
                "UPDATE {s}.rse_syncs SET lease_holder = NULL, lease_token = NULL, lease_acquired_ms = NULL,
                 lease_expires_ms = NULL WHERE sync_id = $1 AND lease_token = $2"
            ),
            meta: format!(
                "SELECT fingerprint_algorithm, cursor_value, cursor, pushdown_epoch FROM {s}.rse_syncs WHERE sync_id = $1"
            ),
            scan_first: format!("SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} ORDER BY key LIMIT $2"),
            scan_after: format!(
                "SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} AND key > $3 ORDER BY key LIMIT $2"
            ),
            get: format!("SELECT {cols} FROM {s}.rse_snapshot WHERE sync = {sync_of} AND key = ANY($2)"),
            rejected_first: format!(
                "SELECT entry, record FROM {s}.rse_rejected WHERE sync = {sync_of} ORDER BY key LIMIT $2"
            ),
            rejected_after: format!(
                "SELECT entry, record FROM {s}.rse_rejected WHERE sync = {sync_of} AND key > $3 ORDER BY key LIMIT $2"
            ),
            intents: format!(
                "INSERT INTO {s}.rse_snapshot AS t ({cols}, sync)
                 SELECT k, NULL, 0, o, f, v, NULL, $1 FROM unnest($2::bytea[], $3::smallint[], $4::bytea[], $5::bigint[]) AS u(k, o, f, v)
                 ON CONFLICT (sync, key) DO UPDATE SET pending_op = EXCLUDED.pending_op,
                    pending_fingerprint = EXCLUDED.pending_fingerprint, pending_version = EXCLUDED.pending_version"
            ),
            memos: format!(
                "UPDATE {s}.rse_snapshot AS t SET memo = u.m
                 FROM unnest($2::bytea[], $3::bytea[]) AS u(k, m)
                 WHERE t.sync = $1 AND t.key = u.k"
            ),
            settle: format!(
                "UPDATE {s}.rse_snapshot AS t SET pending_op = u.o, pending_fingerprint = u.f, pending_version = u.v
                 FROM unnest($2::bytea[], $3::smallint[], $4::bytea[], $5::bigint[]) AS u(k, o, f, v)
                 WHERE t.sync = $1 AND t.key = u.k"
            ),
            settle_remove: format!(
                "DELETE FROM {s}.rse_snapshot WHERE sync = $1 AND key = ANY($2)
                 AND fingerprint IS NULL AND version = 0 AND pending_op IS NULL"
            ),
            clear_by_keys: format!("DELETE FROM {s}.rse_rejected WHERE sync = $1 AND key = ANY($2)"),
            apply: format!(
                "INSERT INTO {s}.rse_snapshot AS t ({cols}, sync)
                 SELECT k, fp, ver, o, f, v, m, $1
                 FROM unnest($2::bytea[], $3::bytea[], $4::bigint[], $5::smallint[], $6::bytea[], $7::bigint[], $8::bytea[])
                    AS u(k, fp, ver, o, f, v, m)
                 ON CONFLICT (sync, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, version = EXCLUDED.version,
                    pending_op = EXCLUDED.pending_op, pending_fingerprint = EXCLUDED.pending_fingerprint,
                    pending_version = EXCLUDED.pending_version, memo = EXCLUDED.memo"
            ),
            copy_snapshot: format!("COPY {s}.rse_snapshot (sync, {cols}) FROM STDIN (FORMAT binary)"),
            reject: format!(
                "INSERT INTO {s}.rse_rejected (sync, key, stage, reason, attempts, last_rejected_at, entry, record)
                 SELECT $1, k, st, r, a, l, e, rec
                 FROM unnest($2::bytea[], $3::text[], $4::text[], $5::integer[], $6::bigint[], $7::text[], $8::bytea[])
                    AS u(k, st, r, a, l, e, rec)
                 ON CONFLICT (sync, key) DO UPDATE SET stage = EXCLUDED.stage, reason = EXCLUDED.reason,
                    attempts = EXCLUDED.attempts, last_rejected_at = EXCLUDED.last_rejected_at, entry = EXCLUDED.entry,
                    record = EXCLUDED.record"
            ),
            forget: format!("DELETE FROM {s}.rse_snapshot WHERE sync = $1 AND key = ANY($2)"),
            cursor: format!("UPDATE {s}.rse_syncs SET cursor_value = $2, cursor = NULL WHERE id = $1"),
            algorithm: format!("UPDATE {s}.rse_syncs SET fingerprint_algorithm = $2 WHERE id = $1"),
            pushdown_epoch: format!("UPDATE {s}.rse_syncs SET pushdown_epoch = $2 WHERE id = $1"),
            run: format!(
                "INSERT INTO {s}.rse_runs (sync, run_id, started_at_ms, status, report) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sync, run_id) DO UPDATE SET started_at_ms = EXCLUDED.started_at_ms,
                    status = EXCLUDED.status, report = EXCLUDED.report"
            ),
            prune_runs: format!(
                "DELETE FROM {s}.rse_runs WHERE sync = $1 AND run_id NOT IN
                 (SELECT run_id FROM {s}.rse_runs WHERE sync = $1 ORDER BY run_id DESC LIMIT $2)"
            ),
            runs: format!(
                "SELECT r.run_id, r.started_at_ms, r.report FROM {s}.rse_runs r WHERE r.sync = {sync_of}
                 ORDER BY r.run_id DESC LIMIT $2"
            ),
            syncs: format!(
                "SELECT s.sync_id,
                    (SELECT count(*) FROM {s}.rse_snapshot WHERE sync = s.id),
                    (SELECT count(*) FROM {s}.rse_rejected WHERE sync = s.id),
                    s.lease_holder, s.lease_expires_ms, {NOW_MS}
                 FROM {s}.rse_syncs s ORDER BY s.sync_id"
            ),
            // A sync already paused keeps its pause: the no-op update returns the row in
            // force, even when another connection inserted it a moment before.
            pause: format!(
                "INSERT INTO {s}.rse_pauses AS t (sync_id, paused_by, reason, paused_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sync_id) DO UPDATE SET paused_by = t.paused_by
                 RETURNING paused_by, reason, paused_at_ms"
            ),
            resume: format!("DELETE FROM {s}.rse_pauses WHERE sync_id = $1 RETURNING paused_by, reason, paused_at_ms"),
            paused: format!("SELECT paused_by, reason, paused_at_ms FROM {s}.rse_pauses WHERE sync_id = $1"),
            reserve_quota: super::quota::reserve(schema),
        }
    }
}
