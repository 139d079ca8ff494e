//! The state tables and their versioned migrations.

use rse_core::StateError;

use super::PostgresStateStore;
use crate::postgres::sql::quote_ident;

/// Versioned migrations, each run once per schema in order; `{s}` is the quoted schema.
const MIGRATIONS: &[&str] = &[
    // 1: syncs (metadata and lease), snapshot, rejected set, run history.
    "CREATE TABLE {s}.rse_syncs (
        id bigserial PRIMARY KEY,
        sync_id text NOT NULL UNIQUE,
        fingerprint_algorithm text,
        cursor text,
        last_token bigint NOT NULL DEFAULT 0,
        lease_holder text,
        lease_token bigint,
        lease_acquired_ms bigint,
        lease_expires_ms bigint
    );
    CREATE TABLE {s}.rse_snapshot (
        sync bigint NOT NULL,
        key bytea NOT NULL,
        fingerprint bytea,
        version bigint NOT NULL,
        pending_op smallint,
        pending_fingerprint bytea,
        pending_version bigint,
        PRIMARY KEY (sync, key)
    );
    CREATE TABLE {s}.rse_rejected (
        sync bigint NOT NULL,
        key bytea NOT NULL,
        stage text NOT NULL,
        reason text NOT NULL,
        attempts integer NOT NULL,
        last_rejected_at bigint NOT NULL,
        entry text NOT NULL,
        PRIMARY KEY (sync, key)
    );
    CREATE TABLE {s}.rse_runs (
        sync bigint NOT NULL,
        run_id bigint NOT NULL,
        started_at_ms bigint NOT NULL,
        status text NOT NULL,
        report text NOT NULL,
        PRIMARY KEY (sync, run_id)
    );",
    // 2: room in each page of the snapshot, so that a batch's intent and then its
    // acknowledgement update rows in place (HOT updates: no index entry, and the old
    // versions are pruned as pages are read) instead of leaving dead rows that every later
    // scan wades through until a vacuum.
    "ALTER TABLE {s}.rse_snapshot SET (fillfactor = 70);",
    // 3: refused records and cursors in the exact binary form (`codec.rs`), which keeps NaN
    // and infinities that JSON cannot. Rows written before keep the record inside `entry`
    // and the cursor in `cursor`, and are read from there; new writes fill these columns.
    "ALTER TABLE {s}.rse_rejected ADD COLUMN record bytea;
    ALTER TABLE {s}.rse_syncs ADD COLUMN cursor_value bytea;",
    // 4: the memo a destination keeps per key (a CRM's record id); none for rows written before.
    "ALTER TABLE {s}.rse_snapshot ADD COLUMN memo bytea;",
    // 5: operators' pauses, one row per paused sync (by sync id: a sync never run can be
    // paused); resuming deletes the row.
    "CREATE TABLE IF NOT EXISTS {s}.rse_pauses (
        sync_id text PRIMARY KEY,
        paused_by text NOT NULL,
        reason text NOT NULL,
        paused_at_ms bigint NOT NULL
    );",
    // 6: the epoch of a pushdown sync's last complete full re-diff; none for syncs before.
    "ALTER TABLE {s}.rse_syncs ADD COLUMN pushdown_epoch text;",
];

impl PostgresStateStore {
    /// Creates the schema when missing and applies the migrations this rse knows, once
    /// per schema however many processes start together.
    pub(super) async fn migrate(&self) -> Result<(), StateError> {
        let quoted = &quote_ident(&self.schema);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err("starting the migration"))?;
        // Two processes starting together: the second waits here, then finds nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('rse-state-migrations:' || $1))", &[&self.schema])
            .await
            .map_err(self.err("waiting for the migration lock"))?;
        // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        // exists; a role granted only the schema must not need it.
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&self.schema])
            .await
            .map_err(self.err("looking for the schema"))?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {quoted}")).await.map_err(self.err("creating the schema"))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {quoted}.rse_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(self.err("creating the migrations table"))?;
        let current: i32 = tx
            .query_one(&format!("SELECT coalesce(max(version), 0) FROM {quoted}.rse_migrations"), &[])
            .await
            .map_err(self.err("reading the schema version"))?
            .get(0);
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if current > known {
            return Err(StateError::Incompatible {
                message: format!(
                    "{}: the state in schema {} was written by a newer rse (schema version {current}; this rse knows up to {known}); upgrade rse, or point the store at another schema",
                    self.name, self.schema
                ),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.batch_execute(&sql.replace("{s}", quoted))
                .await
                .map_err(self.err(&format!("applying migration {version}")))?;
            tx.execute(&format!("INSERT INTO {quoted}.rse_migrations (version) VALUES ($1)"), &[&version])
                .await
                .map_err(self.err("recording the migration"))?;
        }
        tx.batch_execute(&super::quota::table(&self.schema))
            .await
            .map_err(self.err("creating the shared quota's table"))?;
        tx.commit().await.map_err(self.err("committing the migration"))
    }
}
