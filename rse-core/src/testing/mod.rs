//! The testing kit: fakes with fault injection and the conformance suites.

pub use crate::memory::{Delivery, MemoryDestination, MemorySource, MemoryStateStore};
