//! Planning the writes into the table: creating it (and the ledger) on request, reading its
//! columns, and the statements for each schema of batches.

use std::sync::Arc;

use rse_core::{DestinationError, Schema};

use super::PostgresDestination;
use super::bind::{Bind, convert};
use crate::postgres::copy::{CopyType, column_takes};
use crate::postgres::sql::quote_ident;
use crate::postgres::types::pg_type;

/// The column of the version guard.
pub(super) const VERSION_COLUMN: &str = "_rse_version";

/// The statements for one schema.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) upsert: String,
    pub(super) delete: String,
    /// Under the version guard: the positions (`$last`, int8) of the changes whose row holds
    /// a newer version than theirs, given their keys and versions as the delete takes them.
    pub(super) superseded: Option<String>,
    /// The PostgreSQL array type each field is bound as.
    pub(super) binds: Vec<Bind>,
    pub(super) key_binds: Vec<(usize, Bind)>,
    /// The COPY of inserts, when the table takes it.
    pub(super) copy: Option<CopyPlan>,
}

/// The COPY statement for one schema and the type each field is written as.
#[derive(Debug)]
pub(super) struct CopyPlan {
    pub(super) sql: String,
    pub(super) types: Vec<CopyType>,
}

/// What the destination read of its table: whether it is a plain table (no rules), and the
/// type of each column, by name (`format_type`'s spelling).
#[derive(Debug, Default)]
pub(super) struct TableColumns {
    pub(super) plain: bool,
    pub(super) types: Vec<(String, String)>,
}

impl TableColumns {
    fn type_of(&self, column: &str) -> Option<&str> {
        self.types.iter().find(|(name, _)| name == column).map(|(_, t)| t.as_str())
    }
}

/// Whether a table is plain (an ordinary or partitioned table, without rules, which COPY
/// ignores, or row security, which it refuses), and its columns with their types; no rows
/// when it does not exist.
const TABLE_COLUMNS: &str = "SELECT c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT c.relrowsecurity, \
     a.attname::text, \
     format_type(a.atttypid, a.atttypmod) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
     WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";

impl PostgresDestination {
    /// Creates the schema, table and state table when asked to; once per destination.
    pub(super) async fn prepare(&self, schema: &Schema) -> Result<(), DestinationError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        let client = self.client().await?;
        if self.options.create_table || self.options.ledger {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&self.options.schema)))
                .await
                .map_err(|e| self.classify(e, "creating the schema"))?;
        }
        if self.options.create_table {
            let mut columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| {
                    format!(
                        "{} {}{}",
                        quote_ident(&f.name),
                        pg_type(&f.data_type),
                        if f.nullable { "" } else { " NOT NULL" }
                    )
                })
                .collect();
            if self.options.guard() {
                columns.push(format!("{} bigint", quote_ident(VERSION_COLUMN)));
            }
            let key: Vec<String> = schema.key_names().map(quote_ident).collect();
            columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
            let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", self.table(), columns.join(", "));
            client.batch_execute(&sql).await.map_err(|e| self.classify(e, "creating the table"))?;
        }
        if self.options.ledger {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} (sync_id text NOT NULL, key bytea NOT NULL, version bigint NOT NULL, \
                 fingerprint bytea, idempotency_key bytea NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (sync_id, key))",
                self.ledger_table()
            );
            client.batch_execute(&sql).await.map_err(|e| self.classify(e, "creating the ledger table"))?;
        }
        if self.options.copy_inserts {
            // A table that does not exist (yet) reads as no columns: no COPY, and the upsert
            // says what is missing.
            let rows = client
                .query(TABLE_COLUMNS, &[&self.table()])
                .await
                .map_err(|e| self.classify(e, "reading the table's columns"))?;
            let mut columns = TableColumns { plain: !rows.is_empty(), types: Vec::with_capacity(rows.len()) };
            for row in rows {
                columns.plain &= row.get::<_, bool>(0);
                columns.types.push((row.get(1), row.get(2)));
            }
            *self.columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = columns;
        }
        *ready = true;
        Ok(())
    }

    /// The COPY of inserts for `schema`, when the table is plain and every field's column
    /// reads the binary form the field is written in.
    fn copy_plan(&self, schema: &Schema) -> Option<CopyPlan> {
        let table = self.columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.options.copy_inserts || !table.plain {
            return None;
        }
        let mut types = Vec::with_capacity(schema.fields().len());
        let mut names = Vec::with_capacity(schema.fields().len() + 1);
        for field in schema.fields() {
            if !column_takes(pg_type(&field.data_type), table.type_of(&field.name)?) {
                return None;
            }
            types.push(CopyType::of(&field.data_type));
            names.push(quote_ident(&field.name));
        }
        if self.options.guard() {
            if !column_takes("bigint", table.type_of(VERSION_COLUMN)?) {
                return None;
            }
            names.push(quote_ident(VERSION_COLUMN));
        }
        let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", self.table(), names.join(", "));
        Some(CopyPlan { sql, types })
    }

    pub(super) fn statements(&self, schema: &Arc<Schema>) -> Arc<Statements> {
        let mut cache = self.statements.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, s)) = cache.iter().find(|(s, _)| Arc::ptr_eq(s, schema) || **s == **schema) {
            return s.clone();
        }
        let built = Arc::new(self.build_statements(schema));
        cache.push((schema.clone(), built.clone()));
        built
    }

    fn build_statements(&self, schema: &Schema) -> Statements {
        let guard = self.options.guard();
        let version = quote_ident(VERSION_COLUMN);
        let fields = schema.fields();
        let binds: Vec<Bind> = fields.iter().map(|f| Bind::of(&f.data_type)).collect();
        let mut params: Vec<String> =
            binds.iter().enumerate().map(|(i, b)| format!("${}::{}", i + 1, b.array_type())).collect();
        let mut aliases: Vec<String> = (0..fields.len()).map(|i| format!("c{i}")).collect();
        let mut names: Vec<String> = fields.iter().map(|f| quote_ident(&f.name)).collect();
        let mut exprs: Vec<String> =
            fields.iter().enumerate().map(|(i, f)| convert(&format!("u.c{i}"), &f.data_type)).collect();
        if guard {
            params.push(format!("${}::int8[]", fields.len() + 1));
            aliases.push("v".into());
            names.push(version.clone());
            exprs.push("u.v".into());
        }
        let key_set: Vec<usize> = schema.key_indices().to_vec();
        let key_names: Vec<String> = key_set.iter().map(|&i| quote_ident(&fields[i].name)).collect();
        let updates: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !key_set.contains(i))
            .map(|(_, n)| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let table = self.table();
        let conflict = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let mut s = format!("DO UPDATE SET {}", updates.join(", "));
            if guard {
                s.push_str(&format!(" WHERE {table}.{version} IS NULL OR {table}.{version} <= EXCLUDED.{version}"));
            }
            s
        };
        let upsert = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) {conflict}",
            names.join(", "),
            exprs.join(", "),
            params.join(", "),
            aliases.join(", "),
            key_names.join(", "),
        );
        // Deletes: the key columns, plus the version under the guard.
        let key_binds: Vec<(usize, Bind)> = key_set.iter().map(|&i| (i, binds[i])).collect();
        let mut dparams: Vec<String> =
            key_binds.iter().enumerate().map(|(j, (_, b))| format!("${}::{}", j + 1, b.array_type())).collect();
        let mut daliases: Vec<String> = (0..key_binds.len()).map(|j| format!("k{j}")).collect();
        let mut conds: Vec<String> = key_set
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                format!("t.{} = {}", quote_ident(&fields[i].name), convert(&format!("u.k{j}"), &fields[i].data_type))
            })
            .collect();
        if guard {
            dparams.push(format!("${}::int8[]", key_binds.len() + 1));
            daliases.push("v".into());
            conds.push(format!("(t.{version} IS NULL OR t.{version} <= u.v)"));
        }
        let delete = format!(
            "DELETE FROM {table} AS t USING unnest({}) AS u({}) WHERE {}",
            dparams.join(", "),
            daliases.join(", "),
            conds.join(" AND ")
        );
        // After the upsert and the delete, in the same transaction (the rows they skipped are
        // locked by them): a guarded row still newer than its change was not written.
        let superseded = guard.then(|| {
            let key_conds = &conds[..key_binds.len()];
            format!(
                "SELECT u.o, t.{version} FROM unnest({}, ${}::int8[]) AS u({}, o) JOIN {table} AS t ON {} \
                 WHERE t.{version} > u.v",
                dparams.join(", "),
                dparams.len() + 1,
                daliases.join(", "),
                key_conds.join(" AND ")
            )
        });
        Statements { upsert, delete, superseded, binds, key_binds, copy: self.copy_plan(schema) }
    }
}
