//! The conformance suites against the in-memory implementations, directly and through
//! `Box<dyn>` and `Arc<dyn>`; later connectors run the same suites against real servers.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use rse_core::memory::{MemoryDestination, MemoryStateStore};
use rse_core::testing::{
    DestinationReadback, FaultyDestination, check_destination, check_state_store, check_transactional_state,
};
use rse_core::{BoxError, Destination, Key, Record, Schema, StateStore};

struct Readback(MemoryDestination);

#[async_trait]
impl DestinationReadback for Readback {
    async fn get(&self, _schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError> {
        Ok(self.0.records().get(key).cloned())
    }
}

#[tokio::test]
async fn memory_destination_conforms() {
    let dest = MemoryDestination::new();
    check_destination(&dest, Some(&Readback(dest.clone()))).await.unwrap();
    let boxed: Box<dyn Destination> = Box::new(dest.clone());
    check_destination(&boxed, Some(&Readback(dest.clone()))).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(dest.clone());
    check_destination(&shared, Some(&Readback(dest))).await.unwrap();
}

#[tokio::test]
async fn a_fault_wrapper_without_faults_conforms() {
    let dest = MemoryDestination::new();
    check_destination(&FaultyDestination::new(dest.clone()), Some(&Readback(dest))).await.unwrap();
}

#[tokio::test]
async fn the_suite_catches_a_destination_that_loses_writes() {
    /// Acknowledges everything, keeps nothing.
    struct Forgetful(MemoryDestination);
    #[async_trait]
    impl Destination for Forgetful {
        fn name(&self) -> &str {
            "forgetful"
        }
        fn capabilities(&self) -> rse_core::DestinationCapabilities {
            self.0.capabilities()
        }
        async fn check(&self) -> Result<(), rse_core::DestinationError> {
            Ok(())
        }
        async fn write(
            &self,
            batch: &rse_core::ChangeBatch,
        ) -> Result<rse_core::WriteOutcome, rse_core::DestinationError> {
            Ok(rse_core::WriteOutcome::all_applied(batch.len()))
        }
    }
    let dest = MemoryDestination::new();
    let err = check_destination(&Forgetful(dest.clone()), Some(&Readback(dest))).await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn memory_state_store_conforms() {
    let store = MemoryStateStore::new();
    check_state_store(&store).await.unwrap();
    let boxed: Box<dyn StateStore> = Box::new(store.clone());
    check_state_store(&boxed).await.unwrap();
    let shared: Arc<dyn StateStore> = Arc::new(store);
    check_state_store(&shared).await.unwrap();
}

#[tokio::test]
async fn an_exactly_once_memory_destination_conforms_directly_and_through_wrappers() {
    let store = MemoryStateStore::new();
    let dest = MemoryDestination::new().with_state_store(store.clone());
    check_transactional_state(&dest, &store, Some(&Readback(dest.clone()))).await.unwrap();
    check_destination(&dest, Some(&Readback(dest.clone()))).await.unwrap();
    let boxed: Box<dyn Destination> = Box::new(dest.clone());
    check_transactional_state(&boxed, &store, Some(&Readback(dest.clone()))).await.unwrap();
    let shared: Arc<dyn Destination> = Arc::new(FaultyDestination::new(dest.clone()));
    check_transactional_state(&shared, &store, Some(&Readback(dest.clone()))).await.unwrap();

    // Another store is not the one it commits into.
    let err = check_transactional_state(&dest, &MemoryStateStore::new(), None).await.unwrap_err();
    assert!(err.0.contains("state_store_name()"), "{err}");
    // A plain destination offers no exactly-once writes.
    let err = check_transactional_state(&MemoryDestination::new(), &store, None).await.unwrap_err();
    assert!(err.0.contains("transactional_state() is None"), "{err}");
}
