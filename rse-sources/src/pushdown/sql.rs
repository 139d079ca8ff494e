//! The statements of the warehouse-side diff, written for each dialect.

use rse_core::SourceError;

use super::{Dialect, HASH_COLUMN, KeyRange, PushdownSql, SYNCS_TABLE, Statement};

/// The hash table's autovacuum settings on PostgreSQL (see `create_hash_table`).
const PG_VACUUM: &str = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02";

impl PushdownSql {
    fn q(&self, name: &str) -> String {
        self.dialect.quote(name)
    }

    fn hash_table(&self) -> String {
        self.dialect.qualified(&self.table.schema, &self.table.name)
    }

    fn syncs_table(&self) -> String {
        self.dialect.qualified(&self.table.schema, SYNCS_TABLE)
    }

    fn key_list(&self, alias: Option<&str>) -> String {
        let names: Vec<String> = self
            .key
            .iter()
            .map(|k| match alias {
                Some(a) => format!("{a}.{}", self.q(&k.name)),
                None => self.q(&k.name),
            })
            .collect();
        names.join(", ")
    }

    /// `a.k1 = b.k1 AND a.k2 = b.k2`.
    fn key_match(&self, a: &str, b: &str) -> String {
        let terms: Vec<String> = self.key.iter().map(|k| format!("{a}.{q} = {b}.{q}", q = self.q(&k.name))).collect();
        terms.join(" AND ")
    }

    fn order_by(&self, alias: &str) -> String {
        let terms: Vec<String> = self.key.iter().map(|k| self.dialect.order_term(alias, k)).collect();
        terms.join(", ")
    }

    fn sync_param(&self, n: usize) -> String {
        match self.dialect {
            Dialect::BigQuery => "@sync_id".to_owned(),
            d => d.placeholder(n),
        }
    }

    /// Creates the syncs table (one row per sync: its hash table and epoch) if it is missing.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn create_syncs_table(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let t = self.dialect.text_type();
        let sql = match self.dialect {
            Dialect::BigQuery => format!(
                "CREATE TABLE IF NOT EXISTS {} (sync_id {t} NOT NULL, hash_table {t} NOT NULL, epoch {t})",
                self.syncs_table()
            ),
            _ => format!(
                "CREATE TABLE IF NOT EXISTS {} (sync_id {t} NOT NULL PRIMARY KEY, hash_table {t} NOT NULL UNIQUE, epoch {t})",
                self.syncs_table()
            ),
        };
        Ok(Statement::new(sql, []))
    }

    /// Adds the sync's row to the syncs table if it has none (epoch `NULL`). Binds the sync id
    /// and the hash table's name. On PostgreSQL a second sync whose id maps to the same hash
    /// table fails on the `UNIQUE` constraint instead of sharing it.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn register_sync(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let syncs = self.syncs_table();
        let params = ["sync_id: text".to_owned(), "hash_table: text".to_owned()];
        let sql = match self.dialect {
            Dialect::Postgres => {
                format!("INSERT INTO {syncs} (sync_id, hash_table) VALUES ($1, $2) ON CONFLICT (sync_id) DO NOTHING")
            }
            Dialect::Redshift => format!(
                "INSERT INTO {syncs} (sync_id, hash_table) SELECT $1, $2 \
                 WHERE NOT EXISTS (SELECT 1 FROM {syncs} WHERE sync_id = $1)"
            ),
            Dialect::Snowflake => format!(
                "MERGE INTO {syncs} AS s USING (SELECT ? AS sync_id, ? AS hash_table) AS n ON s.sync_id = n.sync_id \
                 WHEN NOT MATCHED THEN INSERT (sync_id, hash_table) VALUES (n.sync_id, n.hash_table)"
            ),
            Dialect::BigQuery => format!(
                "MERGE {syncs} AS s USING (SELECT @sync_id AS sync_id, @hash_table AS hash_table) AS n \
                 ON s.sync_id = n.sync_id WHEN NOT MATCHED THEN INSERT (sync_id, hash_table) VALUES (n.sync_id, n.hash_table)"
            ),
        };
        Ok(Statement::new(sql, params))
    }

    /// Creates the hash table if it is missing (on PostgreSQL with autovacuum set to tidy it
    /// at 1 % dead rows rather than the default 20 %: every changed row leaves two dead
    /// versions, and a 10 M-row table's re-runs slowed round by round while they waited): the key columns typed like the model's and
    /// `rse_hash`, keyed by the key columns. With every key type given, a plain
    /// `CREATE TABLE`; otherwise (not on Redshift) a `CREATE TABLE … AS SELECT` of no rows from
    /// the model, which copies the types exactly, plus a unique index on PostgreSQL.
    ///
    /// # Errors
    /// As [`PushdownSql::check`]; [`SourceError::Unsupported`] on Redshift without the key
    /// types (its `CREATE TABLE AS` has no `IF NOT EXISTS`).
    pub fn create_hash_table(&self) -> Result<Vec<Statement>, SourceError> {
        self.check()?;
        let d = self.dialect;
        let table = self.hash_table();
        let hash = self.q(HASH_COLUMN);
        let hash_type = d.hash_type();
        let keys = self.key_list(None);
        let typed = self.key.iter().all(|k| k.sql_type.is_some());
        if typed {
            let types = self.key_types("creating the hash table")?;
            let columns: Vec<String> =
                self.key.iter().zip(&types).map(|(k, t)| format!("{} {t} NOT NULL", self.q(&k.name))).collect();
            let columns = columns.join(", ");
            let sql = match d {
                Dialect::Postgres => format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({columns}, {hash} {hash_type}, PRIMARY KEY ({keys})) \
                     WITH ({PG_VACUUM})"
                ),
                Dialect::Snowflake => {
                    format!("CREATE TABLE IF NOT EXISTS {table} ({columns}, {hash} {hash_type}, PRIMARY KEY ({keys}))")
                }
                Dialect::BigQuery => format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({columns}, {hash} {hash_type}) CLUSTER BY {}",
                    self.cluster_keys()
                ),
                Dialect::Redshift => format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({columns}, {hash} {hash_type}, PRIMARY KEY ({keys})) \
                     DISTKEY ({first}) SORTKEY ({keys})",
                    first = self.q(&self.key[0].name)
                ),
            };
            return Ok(vec![Statement::new(sql, [])]);
        }
        let from = d.model_from(&self.model);
        let selected = self.key_list(Some("m"));
        Ok(match d {
            Dialect::Postgres => {
                let index = self.q(&format!("{}_key", self.table.name));
                vec![
                    Statement::new(
                        format!(
                            "CREATE TABLE IF NOT EXISTS {table} WITH ({PG_VACUUM}) AS SELECT {selected}, \
                             NULL::{hash_type} AS {hash} FROM {from} WITH NO DATA"
                        ),
                        [],
                    ),
                    Statement::new(format!("CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({keys})"), []),
                ]
            }
            Dialect::Snowflake => vec![Statement::new(
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} AS SELECT {selected}, CAST(NULL AS {hash_type}) AS {hash} \
                     FROM {from} LIMIT 0"
                ),
                [],
            )],
            Dialect::BigQuery => vec![Statement::new(
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} CLUSTER BY {} AS SELECT {selected}, \
                     CAST(NULL AS {hash_type}) AS {hash} FROM {from} LIMIT 0",
                    self.cluster_keys()
                ),
                [],
            )],
            Dialect::Redshift => {
                self.key_types("creating the hash table")?;
                Vec::new()
            }
        })
    }

    /// BigQuery clusters by at most four columns.
    fn cluster_keys(&self) -> String {
        let names: Vec<String> = self.key.iter().take(4).map(|k| self.q(&k.name)).collect();
        names.join(", ")
    }

    /// The epoch of the sync's last complete full re-diff: one row with one text column
    /// (`NULL` while a full re-diff is in progress), or no row before the sync's first run.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn read_epoch(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let sql = format!("SELECT epoch FROM {} WHERE sync_id = {}", self.syncs_table(), self.sync_param(1));
        Ok(Statement::new(sql, ["sync_id: text".to_owned()]))
    }

    /// Sets the sync's epoch (`NULL` to clear it before a full re-diff).
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn write_epoch(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let syncs = self.syncs_table();
        let (sql, params) = match self.dialect {
            Dialect::BigQuery => (
                format!("UPDATE {syncs} SET epoch = @epoch WHERE sync_id = @sync_id"),
                ["epoch: text or NULL", "sync_id: text"],
            ),
            Dialect::Snowflake => {
                (format!("UPDATE {syncs} SET epoch = ? WHERE sync_id = ?"), ["epoch: text or NULL", "sync_id: text"])
            }
            _ => {
                (format!("UPDATE {syncs} SET epoch = $2 WHERE sync_id = $1"), ["sync_id: text", "epoch: text or NULL"])
            }
        };
        Ok(Statement::new(sql, params.map(str::to_owned)))
    }

    /// Forgets every hash without dropping a key (the destination may hold it): the first
    /// step of a full re-diff, after the epoch is cleared.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn forget_hashes(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let hash = self.q(HASH_COLUMN);
        Ok(Statement::new(format!("UPDATE {} SET {hash} = NULL WHERE {hash} IS NOT NULL", self.hash_table()), []))
    }

    /// The model's rows whose key has no row with the same hash in the hash table (new keys,
    /// changed rows, unknown hashes), in key order unless turned off
    /// ([`PushdownSql::with_key_order`]): the model's columns, then `rse_hash`.
    /// One anti-join.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn changed_rows(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let hash = self.dialect.row_hash(&self.columns);
        let sql = format!(
            "SELECT m.*, {hash} AS {hash_col} FROM {from} \
             WHERE {range}NOT EXISTS (SELECT 1 FROM {table} AS h WHERE {matched} AND h.{hash_col} = {hash}){order}",
            hash_col = self.q(HASH_COLUMN),
            from = self.dialect.model_from(&self.model),
            range = self.range_and("m")?,
            table = self.hash_table(),
            matched = self.key_match("h", "m"),
            order = self.order_clause(&self.order_by("m")),
        );
        Ok(Statement::new(sql, self.range_params()))
    }

    /// ` ORDER BY <order>` when the reads keep key order, else nothing.
    fn order_clause(&self, order: &str) -> String {
        if self.key_order { format!(" ORDER BY {order}") } else { String::new() }
    }

    /// The key range's condition on alias `alias`, or `None` for every key.
    fn range_condition(&self, alias: &str) -> Result<Option<String>, SourceError> {
        let Some(first) = self.key.first() else { return Ok(None) };
        let column = format!("{alias}.{}", self.q(&first.name));
        if self.range == KeyRange::Null {
            return Ok(Some(format!("{column} IS NULL")));
        }
        if self.range == KeyRange::All {
            return Ok(None);
        }
        let ty = self.key_types("reading a slice of the keys")?[0];
        let text = self.dialect.text_type();
        let bound = |name: &str, n: usize| {
            let p = match self.dialect {
                Dialect::BigQuery => format!("@{name}"),
                d => d.placeholder(n),
            };
            format!("CAST(CAST({p} AS {text}) AS {ty})")
        };
        Ok(Some(match self.range {
            KeyRange::Below => format!("{column} < {}", bound("upper", 1)),
            KeyRange::Between => format!("{column} >= {} AND {column} < {}", bound("lower", 1), bound("upper", 2)),
            _ => format!("{column} >= {}", bound("lower", 1)),
        }))
    }

    /// What the key range's bounds bind.
    fn range_params(&self) -> Vec<String> {
        let first = self.key.first().map(|k| k.name.as_str()).unwrap_or_default();
        let bound = |name: &str| format!("{name}: text (a value of `{first}`)");
        match self.range {
            KeyRange::All | KeyRange::Null => Vec::new(),
            KeyRange::Below => vec![bound("upper")],
            KeyRange::Between => vec![bound("lower"), bound("upper")],
            KeyRange::From => vec![bound("lower")],
        }
    }

    /// ` WHERE <the key range on alias>`, or nothing for every key.
    fn range_where(&self, alias: &str) -> Result<String, SourceError> {
        Ok(self.range_condition(alias)?.map(|c| format!(" WHERE {c}")).unwrap_or_default())
    }

    /// `<the key range on alias> AND `, or nothing for every key.
    fn range_and(&self, alias: &str) -> Result<String, SourceError> {
        Ok(self.range_condition(alias)?.map(|c| format!("{c} AND ")).unwrap_or_default())
    }

    /// The changed rows and the vanished keys in one pass: one full outer join of the model
    /// (with its row hashes) and the hash table on the key, keeping the rows whose hash differs
    /// or is unknown and the keys the model lacks, in key order. Columns: the model's, then
    /// `rse_hash`; a vanished key's row has `rse_hash` `NULL`, its key in the key columns and
    /// every other column `NULL`.
    ///
    /// Each table is read once, where [`changed_rows`](Self::changed_rows) and
    /// [`vanished_keys`](Self::vanished_keys) read the model twice and the hash table twice:
    /// on the PostgreSQL development server (2 cores, heavily loaded) 3.4 s against 5.5 s for
    /// the pair at 1 M rows, where a bare `COPY` of key and hash took 2.7 s. PostgreSQL 15
    /// runs a full join on one process; [`PushdownSql::with_key_range`] cuts it into slices
    /// that several connections read at once. A model column may not be called `rse_hash` or
    /// `rse_present` here.
    ///
    /// # Errors
    /// As [`PushdownSql::check`]; [`SourceError::Other`] when a model column is called
    /// `rse_hash` or `rse_present`.
    pub fn diff_rows(&self) -> Result<Statement, SourceError> {
        self.check()?;
        if let Some(c) = self.columns.iter().find(|c| c.name == HASH_COLUMN || c.name == "rse_present") {
            return Err(SourceError::Other {
                message: format!(
                    "model column `{}` has a name the warehouse-side diff uses itself; rename it in a query model",
                    c.name
                ),
                source: None,
            });
        }
        let hash = self.q(HASH_COLUMN);
        let mut selected: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let q = self.q(&c.name);
                if self.key.iter().any(|k| k.name == c.name) {
                    format!("COALESCE(m.{q}, h.{q}) AS {q}")
                } else {
                    format!("m.{q}")
                }
            })
            .collect();
        selected.push(format!("m.{hash}"));
        let order: Vec<String> = self
            .key
            .iter()
            .map(|k| {
                let q = self.q(&k.name);
                self.dialect.order_expr(&format!("COALESCE(m.{q}, h.{q})"), k.text)
            })
            .collect();
        let sql = format!(
            "SELECT {selected} FROM (SELECT m.*, TRUE AS rse_present, {row_hash} AS {hash} FROM {from}{range}) AS m \
             FULL OUTER JOIN {table} ON {matched} \
             WHERE m.rse_present IS NULL OR h.{hash} IS NULL OR h.{hash} <> m.{hash}{order}",
            selected = selected.join(", "),
            row_hash = self.dialect.row_hash(&self.columns),
            from = self.dialect.model_from(&self.model),
            range = self.range_where("m")?,
            table = match self.range_condition("h")? {
                Some(range) => format!("(SELECT * FROM {} AS h WHERE {range}) AS h", self.hash_table()),
                None => format!("{} AS h", self.hash_table()),
            },
            matched = self.key_match("h", "m"),
            order = self.order_clause(&order.join(", ")),
        );
        let mut params = self.range_params();
        if self.dialect == Dialect::Snowflake {
            // Positional `?`: the bounds once for the model, once for the hash table.
            params.extend(self.range_params());
        }
        Ok(Statement::new(sql, params))
    }

    /// Every row of the model with its hash, in key order (a full re-diff).
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn all_rows(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let sql = format!(
            "SELECT m.*, {} AS {} FROM {}{}{}",
            self.dialect.row_hash(&self.columns),
            self.q(HASH_COLUMN),
            self.dialect.model_from(&self.model),
            self.range_where("m")?,
            self.order_clause(&self.order_by("m")),
        );
        Ok(Statement::new(sql, self.range_params()))
    }

    /// The keys in the hash table that the model no longer has, in key order: the key
    /// columns. One anti-join.
    ///
    /// # Errors
    /// As [`PushdownSql::check`].
    pub fn vanished_keys(&self) -> Result<Statement, SourceError> {
        self.check()?;
        let sql = format!(
            "SELECT {keys} FROM {table} AS h WHERE {range}NOT EXISTS (SELECT 1 FROM {from} WHERE {matched}){order}",
            keys = self.key_list(Some("h")),
            table = self.hash_table(),
            range = self.range_and("h")?,
            from = self.dialect.model_from(&self.model),
            matched = self.key_match("m", "h"),
            order = self.order_clause(&self.order_by("h")),
        );
        Ok(Statement::new(sql, self.range_params()))
    }

    /// Sets each key's hash to `NULL`, inserting the key when it is missing (before a change
    /// goes out: the destination may hold the key from then on, and until the change is
    /// acknowledged its version there is unknown). `rows` is the batch's size, used by
    /// Redshift's one-placeholder-per-value form only.
    ///
    /// Binds, per dialect: PostgreSQL one `text[]` per key column (each key rendered as the
    /// column type's text input); Snowflake one JSON array of arrays of the key values;
    /// BigQuery `@rows`, an array of structs with the key columns; Redshift the key values row
    /// by row.
    ///
    /// # Errors
    /// As [`PushdownSql::check`]; [`SourceError::Unsupported`] when a key type is needed and
    /// not given, or `rows` is 0 on Redshift.
    pub fn record_intents(&self, rows: usize) -> Result<Statement, SourceError> {
        self.check()?;
        let table = self.hash_table();
        let keys = self.key_list(None);
        let hash = self.q(HASH_COLUMN);
        let matched = self.key_match("h", "d");
        match self.dialect {
            Dialect::Postgres => {
                let (source, params) = self.pg_unnest(false)?;
                // The `WHERE` spares rows whose hash is already unknown a rewrite.
                let sql = format!(
                    "INSERT INTO {table} AS h ({keys}) SELECT {} FROM {source} ON CONFLICT ({keys}) \
                     DO UPDATE SET {hash} = NULL WHERE h.{hash} IS NOT NULL",
                    self.key_list(Some("d"))
                );
                Ok(Statement::new(sql, params))
            }
            Dialect::Snowflake => {
                let source = self.snowflake_rows(false)?;
                let sql = format!(
                    "MERGE INTO {table} AS h USING ({source}) AS d ON {matched} \
                     WHEN MATCHED AND h.{hash} IS NOT NULL THEN UPDATE SET h.{hash} = NULL \
                     WHEN NOT MATCHED THEN INSERT ({keys}) VALUES ({})",
                    self.key_list(Some("d"))
                );
                Ok(Statement::new(sql, [self.json_param(false)]))
            }
            Dialect::BigQuery => {
                let sql = format!(
                    "MERGE {table} AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON {matched} \
                     WHEN MATCHED AND h.{hash} IS NOT NULL THEN UPDATE SET {hash} = NULL \
                     WHEN NOT MATCHED THEN INSERT ({keys}) VALUES ({})",
                    self.key_list(Some("d"))
                );
                Ok(Statement::new(sql, [self.struct_param(false)]))
            }
            Dialect::Redshift => {
                let (source, params) = self.redshift_rows(rows, false)?;
                let matched = self.key_match(&table, "d");
                let sql = format!(
                    "MERGE INTO {table} USING ({source}) AS d ON {matched} \
                     WHEN MATCHED THEN UPDATE SET {hash} = NULL \
                     WHEN NOT MATCHED THEN INSERT ({keys}) VALUES ({})",
                    self.key_list(Some("d"))
                );
                Ok(Statement::new(sql, params))
            }
        }
    }

    /// Records what the destination acknowledged: each key with its new hash (upserted) or
    /// with `NULL` (deleted from the destination: its row is removed). PostgreSQL and
    /// Redshift take two statements, the deletions (`deletes` keys) then the upserts
    /// (`upserts` keys, keys then hash), either skipped by the caller when it has none;
    /// Snowflake and BigQuery one `MERGE` of both, a `NULL` hash meaning delete. Binds as
    /// [`PushdownSql::record_intents`] does, plus the hash (`int8[]` on PostgreSQL).
    ///
    /// # Errors
    /// As [`PushdownSql::record_intents`].
    pub fn record_delivered(&self, upserts: usize, deletes: usize) -> Result<Vec<Statement>, SourceError> {
        self.check()?;
        let table = self.hash_table();
        let keys = self.key_list(None);
        let hash = self.q(HASH_COLUMN);
        let matched = self.key_match("h", "d");
        let d_keys = self.key_list(Some("d"));
        match self.dialect {
            Dialect::Postgres => {
                let (deleted, delete_params) = self.pg_unnest(false)?;
                let (upserted, upsert_params) = self.pg_unnest(true)?;
                Ok(vec![
                    Statement::new(format!("DELETE FROM {table} AS h USING {deleted} WHERE {matched}"), delete_params),
                    Statement::new(
                        format!(
                            "INSERT INTO {table} ({keys}, {hash}) SELECT {d_keys}, d.{hash} FROM {upserted} \
                             ON CONFLICT ({keys}) DO UPDATE SET {hash} = EXCLUDED.{hash}"
                        ),
                        upsert_params,
                    ),
                ])
            }
            Dialect::Snowflake => {
                let source = self.snowflake_rows(true)?;
                Ok(vec![Statement::new(
                    format!(
                        "MERGE INTO {table} AS h USING ({source}) AS d ON {matched} \
                         WHEN MATCHED AND d.{hash} IS NULL THEN DELETE \
                         WHEN MATCHED THEN UPDATE SET h.{hash} = d.{hash} \
                         WHEN NOT MATCHED AND d.{hash} IS NOT NULL THEN INSERT ({keys}, {hash}) VALUES ({d_keys}, d.{hash})"
                    ),
                    [self.json_param(true)],
                )])
            }
            Dialect::BigQuery => Ok(vec![Statement::new(
                format!(
                    "MERGE {table} AS h USING (SELECT * FROM UNNEST(@rows)) AS d ON {matched} \
                     WHEN MATCHED AND d.{hash} IS NULL THEN DELETE \
                     WHEN MATCHED THEN UPDATE SET {hash} = d.{hash} \
                     WHEN NOT MATCHED AND d.{hash} IS NOT NULL THEN INSERT ({keys}, {hash}) VALUES ({d_keys}, d.{hash})"
                ),
                [self.struct_param(true)],
            )]),
            Dialect::Redshift => {
                let mut out = Vec::new();
                if deletes > 0 {
                    let (source, params) = self.redshift_rows(deletes, false)?;
                    let matched = self.key_match(&table, "d");
                    out.push(Statement::new(
                        format!("DELETE FROM {table} USING ({source}) AS d WHERE {matched}"),
                        params,
                    ));
                }
                if upserts > 0 {
                    let (source, params) = self.redshift_rows(upserts, true)?;
                    let matched = self.key_match(&table, "d");
                    out.push(Statement::new(
                        format!(
                            "MERGE INTO {table} USING ({source}) AS d ON {matched} \
                             WHEN MATCHED THEN UPDATE SET {hash} = d.{hash} \
                             WHEN NOT MATCHED THEN INSERT ({keys}, {hash}) VALUES ({d_keys}, d.{hash})"
                        ),
                        params,
                    ));
                }
                Ok(out)
            }
        }
    }

    /// PostgreSQL: `unnest($1::text[], …) AS u(k…)` cast to the key types, as a subquery `d`.
    fn pg_unnest(&self, with_hash: bool) -> Result<(String, Vec<String>), SourceError> {
        let types = self.key_types("writing keys")?;
        let mut arrays = Vec::new();
        let mut names = Vec::new();
        let mut casts = Vec::new();
        let mut params = Vec::new();
        for (i, (k, t)) in self.key.iter().zip(&types).enumerate() {
            let q = self.q(&k.name);
            arrays.push(format!("${}::text[]", i + 1));
            casts.push(format!("u.{q}::{t} AS {q}"));
            names.push(q);
            params.push(format!("{}: text[]", k.name));
        }
        if with_hash {
            let h = self.q(HASH_COLUMN);
            arrays.push(format!("${}::int8[]", self.key.len() + 1));
            casts.push(format!("u.{h}"));
            names.push(h);
            params.push(format!("{HASH_COLUMN}: int8[]"));
        }
        let sql =
            format!("(SELECT {} FROM unnest({}) AS u({})) AS d", casts.join(", "), arrays.join(", "), names.join(", "));
        Ok((sql, params))
    }

    /// Snowflake: the rows of one bound JSON array of arrays.
    fn snowflake_rows(&self, with_hash: bool) -> Result<String, SourceError> {
        let types = self.key_types("writing keys")?;
        let mut columns: Vec<String> = self
            .key
            .iter()
            .zip(&types)
            .enumerate()
            .map(|(i, (k, t))| format!("value[{i}]::{t} AS {}", self.q(&k.name)))
            .collect();
        if with_hash {
            columns.push(format!(
                "value[{}]::{} AS {}",
                self.key.len(),
                Dialect::Snowflake.hash_type(),
                self.q(HASH_COLUMN)
            ));
        }
        Ok(format!("SELECT {} FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))", columns.join(", ")))
    }

    fn json_param(&self, with_hash: bool) -> String {
        let mut items: Vec<&str> = self.key.iter().map(|k| k.name.as_str()).collect();
        if with_hash {
            items.push("rse_hash or null");
        }
        format!("rows: JSON array of [{}]", items.join(", "))
    }

    fn struct_param(&self, with_hash: bool) -> String {
        let mut items: Vec<String> =
            self.key.iter().map(|k| format!("{} {}", k.name, k.sql_type.as_deref().unwrap_or("<key type>"))).collect();
        if with_hash {
            items.push(format!("{HASH_COLUMN} INT64"));
        }
        format!("rows: ARRAY<STRUCT<{}>>", items.join(", "))
    }

    /// Redshift: `SELECT $1::T AS k … UNION ALL SELECT $3::T, …`, one placeholder per value.
    fn redshift_rows(&self, rows: usize, with_hash: bool) -> Result<(String, Vec<String>), SourceError> {
        let types = self.key_types("writing keys")?;
        if rows == 0 {
            return Err(SourceError::Unsupported(
                "a Redshift write statement needs at least one row; skip empty batches".to_owned(),
            ));
        }
        let mut selects = Vec::with_capacity(rows);
        let mut params = Vec::new();
        let mut n = 0;
        for row in 0..rows {
            let mut values = Vec::new();
            for (k, t) in self.key.iter().zip(&types) {
                n += 1;
                let alias = if row == 0 { format!(" AS {}", self.q(&k.name)) } else { String::new() };
                values.push(format!("${n}::{t}{alias}"));
                params.push(format!("{}[{row}]: {t}", k.name));
            }
            if with_hash {
                n += 1;
                let alias = if row == 0 { format!(" AS {}", self.q(HASH_COLUMN)) } else { String::new() };
                values.push(format!("${n}::BIGINT{alias}"));
                params.push(format!("{HASH_COLUMN}[{row}]: BIGINT"));
            }
            selects.push(format!("SELECT {}", values.join(", ")));
        }
        Ok((selects.join(" UNION ALL "), params))
    }
}
