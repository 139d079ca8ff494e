//! PostgreSQL connection setup shared by the destination and the state store.
//!
//! One place parses the connection URL (including the `sslmode`, `sslrootcert`, `sslcert`
//! and `sslkey` parameters tokio-postgres does not read), sets up TLS and builds the pool
//! with its timeouts; [`PostgresDestination`](crate::destination::postgres::PostgresDestination)
//! and [`PostgresStateStore`](crate::state::PostgresStateStore) both connect through it, so
//! they understand the same URLs and [`PostgresConnectOptions`] the same way. See
//! [`SslMode`] for what each TLS mode checks.

pub(crate) mod connect;
mod mode;
mod params;
#[cfg(feature = "postgres-tls")]
mod tls;

pub use connect::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_WAIT_TIMEOUT, PostgresConnectOptions, SslMode};
