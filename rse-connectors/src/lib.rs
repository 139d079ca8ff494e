//! Reference destinations and durable state stores for rse.
//!
//! Each connector lives in its own module behind its own cargo feature. A destination
//! writes only its I/O and classifies its errors; batching, retries, rate limiting and
//! acknowledgement stay in the runner of [`rse_core`].

pub use rse_core::{Destination, DestinationError, StateStore, StateError};
