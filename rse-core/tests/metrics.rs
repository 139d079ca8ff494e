//! The metrics a run emits, read back from a recorder: names, kinds and labels as the catalog
//! says, counts that agree with the report, and the change-time option's checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::*;

/// id (key), email, score, changed_at (a timestamp), changed_on (a date).
fn schema() -> Arc<Schema> {
    Schema::new(
        vec![
            Field::required("id", DataType::Int),
            Field::new("email", DataType::String),
            Field::new("score", DataType::Float),
            Field::new("changed_at", DataType::Timestamp),
            Field::new("changed_on", DataType::Date),
        ],
        &["id"],
    )
    .unwrap()
    .into_arc()
}

async fn build_with_change_time(field: &str) -> Result<SyncJob, ConfigError> {
    SyncJob::builder("change-time-check")
        .source(MemorySource::new(schema(), Vec::new()))
        .destination(MemoryDestination::new())
        .state(MemoryStateStore::new())
        .options(SyncOptions::default().with_change_time_field(Some(field.to_owned())))
        .build()
        .await
}

#[tokio::test]
async fn the_change_time_column_must_be_a_timestamp_column_after_transforms() {
    assert!(build_with_change_time("changed_at").await.is_ok());

    let missing = build_with_change_time("updated_at").await.unwrap_err().to_string();
    assert!(missing.contains("change_time_field"), "{missing}");
    assert!(
        missing.contains("`updated_at`") && missing.contains("id, email, score, changed_at, changed_on"),
        "{missing}"
    );

    let date = build_with_change_time("changed_on").await.unwrap_err().to_string();
    assert!(date.contains("change_time_field") && date.contains("a date column"), "{date}");
    assert!(date.contains("timestamp"), "{date}");
}

#[test]
fn the_change_time_column_is_read_from_configuration() {
    let options: SyncOptions = serde_json::from_str(r#"{ "change_time_field": "changed_at" }"#).unwrap();
    assert_eq!(options.change_time_field.as_deref(), Some("changed_at"));
    assert_eq!(SyncOptions::default().change_time_field, None);
}
