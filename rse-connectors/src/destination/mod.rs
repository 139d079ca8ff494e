//! Reference destinations, one module and cargo feature each.
//!
//! Each writes only its I/O and classifies its errors into [`rse_core::DestinationError`];
//! batching, retries, rate limiting and acknowledgement stay in the runner.

#[cfg(feature = "google")]
pub mod google;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "hubspot")]
pub mod hubspot;
#[cfg(feature = "meta")]
pub mod meta;
#[cfg(feature = "nats")]
pub mod nats;
/// The PostgreSQL destination, at its former path; it lives in [`crate::postgres`] with the
/// state store and the connection setup they share.
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use crate::postgres::{COPY_MIN_ROWS, DEFAULT_WRITE_TIMEOUT, PostgresDestination, PostgresDestinationOptions};
}
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "salesforce")]
pub mod salesforce;
mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "redis", feature = "nats"))]
mod template;

pub use secret::Secret;
