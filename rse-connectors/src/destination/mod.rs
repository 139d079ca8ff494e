//! Reference destinations, one module and cargo feature each.
//!
//! Each writes only its I/O and classifies its errors into [`rse_core::DestinationError`];
//! batching, retries, rate limiting and acknowledgement stay in the runner.

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "redis", feature = "nats"))]
mod template;

pub use secret::Secret;
