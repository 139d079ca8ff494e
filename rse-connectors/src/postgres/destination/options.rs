//! The options of a PostgreSQL destination, as data (serde) with a builder over it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::postgres::PostgresConnectOptions;

/// Options of a [`PostgresDestination`](super::PostgresDestination).
///
/// They read from and write to a configuration file (serde): every field but `table` has a
/// default, an unknown field is refused, durations read as `"2m"` or `"500ms"`.
///
/// ```
/// use rse_connectors::PostgresDestinationOptions;
///
/// let options: PostgresDestinationOptions = serde_json::from_str(
///     r#"{"table": "customers", "schema": "crm", "version_guard": true, "write_timeout": "30s",
///         "connect": {"ssl_mode": "verify-full"}}"#,
/// )?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresDestinationOptions {
    pub(super) schema: String,
    pub(super) table: String,
    pub(super) create_table: bool,
    pub(super) version_guard: bool,
    #[serde(rename = "idempotency_ledger")]
    pub(super) ledger: bool,
    pub(super) ledger_table: String,
    pub(super) pool_size: usize,
    pub(super) max_batch_rows: usize,
    pub(super) copy_inserts: bool,
    pub(super) connect: PostgresConnectOptions,
    #[serde(with = "rse_core::config::duration")]
    pub(super) write_timeout: Duration,
}

/// The defaults, without a table: name one ([`new`](PostgresDestinationOptions::new), or
/// `table` in a configuration).
impl Default for PostgresDestinationOptions {
    fn default() -> Self {
        Self {
            schema: "public".into(),
            table: String::new(),
            create_table: false,
            version_guard: false,
            ledger: false,
            ledger_table: "_rse_applied".into(),
            pool_size: 4,
            max_batch_rows: 5_000,
            copy_inserts: true,
            connect: PostgresConnectOptions::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// How long one write may take by default before it fails as
/// [`DestinationError::Transient`](rse_core::DestinationError::Transient).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(120);

impl PostgresDestinationOptions {
    /// Writes into `table` of schema `public`.
    pub fn new(table: impl Into<String>) -> Self {
        Self { table: table.into(), ..Self::default() }
    }

    /// How to connect: TLS (roots, client certificate, the mode over the URL's
    /// `sslmode`), the connect timeout and the wait for a free connection. See
    /// [`PostgresConnectOptions`] and [`SslMode`](crate::postgres::SslMode).
    pub fn with_connect_options(mut self, options: PostgresConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// How long one write (a batch's transaction, from taking a connection to the commit)
    /// may take, default [`DEFAULT_WRITE_TIMEOUT`]. A write past it — a server or link that
    /// stopped answering, a lock held elsewhere — fails as [`DestinationError::Transient`](rse_core::DestinationError::Transient)
    /// and the runner retries it; its transaction was not committed, or (if the deadline
    /// fell during the commit) was, which the retry's upsert makes harmless. The pool's idle
    /// connections are then closed, so the retry does not land on a connection still stuck.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The PostgreSQL schema (namespace) of the table, default `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Creates the table (and the schema) from the batch's schema on first write when it
    /// does not exist: key columns as the primary key, plus `_rse_version` under the guard.
    pub fn with_create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Guards rows with an `_rse_version` column so a late, older change never overwrites
    /// a newer one (default off; see the module docs for why). The table needs the column:
    /// the destination adds it when it creates the table.
    pub fn with_version_guard(mut self, guard: bool) -> Self {
        self.version_guard = guard;
        self
    }

    /// Records each applied change's idempotency key in the same transaction as its row, and
    /// answers a change already recorded without applying it again (see the module docs).
    pub fn with_idempotency_ledger(mut self, ledger: bool) -> Self {
        self.ledger = ledger;
        self
    }

    /// The name of the ledger table (default `_rse_applied`, in the same schema).
    pub fn with_ledger_table(mut self, table: impl Into<String>) -> Self {
        self.ledger_table = table.into();
        self
    }

    /// Connections in the pool, and so writes at once (default 4).
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The most changes per write (default 5,000).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// Writes a batch's inserts (keys new to the sync) by binary COPY when the table allows
    /// it (default on; see the module docs). Off, every row goes by the upsert.
    pub fn with_copy_inserts(mut self, copy: bool) -> Self {
        self.copy_inserts = copy;
        self
    }

    pub(super) fn guard(&self) -> bool {
        self.version_guard
    }

    /// The options as the destination uses them: a table named, counts of at least 1 (as
    /// the builder keeps them; a configuration may say 0).
    ///
    /// # Errors
    /// What to set when no table is named.
    pub(super) fn checked(mut self) -> Result<Self, String> {
        if self.table.is_empty() {
            return Err("the options name no table: set `table` (`PostgresDestinationOptions::new(\"…\")`)".into());
        }
        self.pool_size = self.pool_size.max(1);
        self.max_batch_rows = self.max_batch_rows.max(1);
        Ok(self)
    }
}
