//! Reference destinations and durable state stores for rse.
//!
//! Each connector lives in its own module behind its own cargo feature. A destination
//! writes only its I/O and classifies its errors; batching, retries, rate limiting and
//! acknowledgement stay in the runner of [`rse_core`].
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use rse_core::{Destination, DestinationError, StateError, StateStore};

#[cfg(feature = "audience")]
pub mod audience;
pub mod destination;
#[cfg(feature = "encode")]
pub mod encode;
pub mod log_filter;
#[cfg(feature = "redis")]
mod options;
#[cfg(feature = "saas")]
pub mod saas;
pub use destination::Secret;
#[cfg(feature = "google")]
pub use destination::google::{
    self as google, GoogleAdsConfig, GoogleAdsDestination, GoogleDataManagerConfig, GoogleDataManagerDestination,
};
#[cfg(feature = "http")]
pub use destination::http::{
    BodyShape, HttpBody, HttpDestination, HttpDestinationConfig, HttpOpRequest, HttpTimeouts, RecordErrors,
};
#[cfg(feature = "hubspot")]
pub use destination::hubspot::{self as hubspot, HubSpotDestination, HubSpotDestinationConfig};
#[cfg(feature = "meta")]
pub use destination::meta::{self as meta, MetaAudienceConfig, MetaAudienceDestination};
#[cfg(feature = "nats")]
pub use destination::nats::{NatsDestination, NatsDestinationOptions};
#[cfg(feature = "redis")]
pub use destination::redis::{RedisDestination, RedisDestinationOptions};
#[cfg(feature = "salesforce")]
pub use destination::salesforce::{SalesforceBulkOptions, SalesforceDestination, SalesforceDestinationConfig};
#[cfg(feature = "sqlite")]
pub use destination::sqlite::{SqliteDestination, SqliteDestinationOptions, SqliteTableKind};

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConnectOptions, PostgresDestination, PostgresDestinationOptions, SslMode};

#[cfg(any(feature = "postgres", feature = "sqlite", feature = "redis"))]
mod read_back;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod state;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod status;
#[cfg(any(feature = "postgres-tls", feature = "redis-tls", feature = "nats"))]
mod tls;
