//! PostgreSQL: the destination, the state store, and what they share.
//!
//! - Shared, below both: connection setup (`connect.rs`: the URL, including the `sslmode`,
//!   `sslrootcert`, `sslcert` and `sslkey` parameters tokio-postgres does not read, TLS and
//!   the pool with its timeouts; `options.rs`: what the URL does not say), one
//!   classification of the server's errors (`classify.rs`), identifier quoting (`sql.rs`),
//!   the type mapping (`types.rs`) and the binary COPY encoder (`copy.rs`). [`PostgresDestination`] and [`PostgresStateStore`]
//!   connect through the same code, so they understand the same URLs and
//!   [`PostgresConnectOptions`] the same way; see [`SslMode`] for what each TLS mode checks.
//! - `destination/`: [`PostgresDestination`], split by role.
//! - `state/`: [`PostgresStateStore`], split by role.
//! - `exactly_once.rs`: the destination committing the store's state in its own
//!   transaction, the one module that knows both.
//! - `status.rs`: the status write-back's tables ([`crate::status`]) in PostgreSQL.

mod classify;
pub(crate) mod connect;
mod copy;
mod destination;
mod exactly_once;
mod mode;
mod options;
mod params;
mod sql;
mod state;
mod status;
#[cfg(feature = "postgres-tls")]
mod tls;
mod types;

pub use connect::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_WAIT_TIMEOUT, PostgresConnectOptions, SslMode};
pub use copy::COPY_MIN_ROWS;
pub use destination::{DEFAULT_WRITE_TIMEOUT, PostgresDestination, PostgresDestinationOptions};
pub use state::{DEFAULT_STATE_SCHEMA, PostgresStateStore, PostgresStateStoreOptions};
