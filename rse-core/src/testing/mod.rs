//! The testing kit: in-memory fakes, fault injection and the conformance suites.
//!
//! Enabled by the `testing` feature. Connector authors run the conformance suites against
//! their implementations; the fault-injecting [`FaultyDestination`] drives the runner
//! through refusals, outages, rate limits and crashes.

mod conformance;
mod faults;

pub use conformance::{
    ConformanceError, DestinationReadback, check_destination, check_state_store, conformance_schema, unique_id,
};
pub use faults::FaultyDestination;

pub use crate::memory::{Delivery, MemoryDestination, MemorySource, MemoryStateStore};
