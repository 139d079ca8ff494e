//! The options of a PostgreSQL state store, as data (serde) with a builder over it.

use serde::{Deserialize, Serialize};

use crate::postgres::PostgresConnectOptions;
use crate::state::DEFAULT_RUN_RETENTION;

/// The schema a store uses unless told otherwise.
pub const DEFAULT_STATE_SCHEMA: &str = "rse_state";

/// Options of a [`PostgresStateStore`](super::PostgresStateStore): the schema of its
/// tables, how many runs it keeps, its pool and how it connects.
///
/// A schema name alone converts into options (`connect(url, "rse_state")`). They read
/// from and write to a configuration file (serde): every field has a default, an unknown
/// one is refused.
///
/// ```
/// use rse_connectors::state::PostgresStateStoreOptions;
///
/// let options: PostgresStateStoreOptions =
///     serde_json::from_str(r#"{"schema": "crm_sync", "run_retention": 30, "connect": {"ssl_mode": "verify-full"}}"#)?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresStateStoreOptions {
    pub(super) schema: String,
    pub(super) run_retention: usize,
    pub(super) pool_size: usize,
    pub(super) connect: PostgresConnectOptions,
}

impl Default for PostgresStateStoreOptions {
    fn default() -> Self {
        Self::new(DEFAULT_STATE_SCHEMA)
    }
}

impl PostgresStateStoreOptions {
    /// The state tables in `schema` (created when missing), the last
    /// [`DEFAULT_RUN_RETENTION`] runs of each sync kept, a pool of 8 connections.
    pub fn new(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            run_retention: DEFAULT_RUN_RETENTION,
            pool_size: 8,
            connect: PostgresConnectOptions::new(),
        }
    }

    /// Keeps only the last `n` runs of each sync (default 100; at least 1).
    pub fn with_run_retention(mut self, n: usize) -> Self {
        self.run_retention = n.max(1);
        self
    }

    /// Connections in the pool (default 8; at least 1).
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// How to connect: TLS roots and client certificate, the TLS mode over the URL's
    /// `sslmode`, the connect timeout and the wait for a free connection.
    pub fn with_connect_options(mut self, options: PostgresConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// The options as the store uses them: a schema named, counts of at least 1.
    pub(super) fn checked(mut self) -> Result<Self, String> {
        if self.schema.is_empty() {
            return Err(format!("the options name no schema: set `schema` (default `{DEFAULT_STATE_SCHEMA}`)"));
        }
        self.run_retention = self.run_retention.max(1);
        self.pool_size = self.pool_size.max(1);
        Ok(self)
    }
}

impl From<&str> for PostgresStateStoreOptions {
    fn from(schema: &str) -> Self {
        Self::new(schema)
    }
}

impl From<&String> for PostgresStateStoreOptions {
    fn from(schema: &String) -> Self {
        Self::new(schema.as_str())
    }
}

impl From<String> for PostgresStateStoreOptions {
    fn from(schema: String) -> Self {
        Self::new(schema)
    }
}
