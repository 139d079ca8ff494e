//! The runner's guards against losing or corrupting data: the delete guard, stale refused
//! records, key-rewriting transforms and schema drift, over the in-memory implementations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use futures::stream;
use rse_core::memory::{MemoryDestination, MemorySource, MemoryStateStore};
use rse_core::testing::FaultyDestination;
use rse_core::transform::{Cast, DropFields, Filter, HashPii};
use rse_core::*;

fn opts() -> SyncOptions {
    SyncOptions::default().with_batch_rows(10).with_linger(Duration::from_millis(5))
}

/// A source whose rows, schema and unreadable lines a test changes between runs.
#[derive(Clone)]
struct ScriptedSource {
    inner: Arc<Mutex<Scripted>>,
    capabilities: SourceCapabilities,
}

struct Scripted {
    schema: Arc<Schema>,
    rows: Vec<Record>,
    rejected: Vec<SourceRejection>,
}

impl ScriptedSource {
    fn new(schema: Arc<Schema>, rows: Vec<Record>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Scripted { schema, rows, rejected: Vec::new() })),
            capabilities: SourceCapabilities::default(),
        }
    }

    fn set(&self, schema: Arc<Schema>, rows: Vec<Record>, rejected: Vec<SourceRejection>) {
        *self.inner.lock().unwrap() = Scripted { schema, rows, rejected };
    }
}

#[async_trait]
impl Source for ScriptedSource {
    fn name(&self) -> &str {
        "scripted"
    }
    fn capabilities(&self) -> SourceCapabilities {
        self.capabilities.clone()
    }
    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(self.inner.lock().unwrap().schema.clone())
    }
    async fn read(&self, _request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let s = self.inner.lock().unwrap();
        let mut batch = RowBatch::new(s.schema.clone(), s.rows.clone());
        batch.rejected = s.rejected.clone();
        Ok(Box::pin(stream::iter(vec![Ok(batch)])))
    }
}

async fn mirror(source: impl Source + 'static, dest: &MemoryDestination, state: &MemoryStateStore) -> SyncJob {
    SyncJob::builder("guarded")
        .source(source)
        .destination(dest.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(opts().with_max_deletes(None))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn auto_strategy_uses_the_hash_diff_when_a_transform_rewrites_key_values() {
    // Cast to text reorders the keys (1, 10, 11, 12, 2, …) and HashPii scrambles them: a
    // merge diff over a key-ordered source would see them out of order and fail every run.
    for transform in [
        Arc::new(Cast::new("id", DataType::String)) as Arc<dyn Transform>,
        Arc::new(Cast::new("id", DataType::String).with_cast("email", DataType::String)),
    ] {
        let w = World::new(customers(12));
        let sync = SyncJob::builder("keys-rewritten")
            .source(w.source.clone())
            .transform(transform.clone())
            .destination(w.destination.clone())
            .state(w.state.clone())
            .options(opts())
            .build()
            .await
            .unwrap();
        let report = sync.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report}");
        assert_eq!(report.diff_strategy, "hash");
        assert_eq!(w.destination.records().len(), 12);
        assert_eq!(sync.run().await.unwrap().counts.unchanged, 12);
    }
    let schema = Schema::new(vec![Field::required("email", DataType::String)], &["email"]).unwrap().into_arc();
    let rows = (0..20).map(|i| Record::new(vec![format!("user{i:02}@example.com").into()])).collect();
    let dest = MemoryDestination::new();
    let sync = SyncJob::builder("hashed-key")
        .source(MemorySource::new(schema, rows))
        .transform(HashPii::email("email"))
        .destination(dest.clone())
        .state(MemoryStateStore::new())
        .options(opts())
        .build()
        .await
        .unwrap();
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(dest.records().len(), 20);
}

#[tokio::test]
async fn mirror_never_deletes_a_key_whose_source_row_could_not_be_read() {
    let source = ScriptedSource::new(customers_schema(), customers(5));
    let (dest, state) = (MemoryDestination::new(), MemoryStateStore::new());
    let sync = mirror(source.clone(), &dest, &state).await;
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 5);

    // Row 5's line is malformed: the source cannot say whose it is, so no key may be deleted.
    let malformed = SourceRejection::new("line 6 of `customers.csv`", "column `churn_score`: not a number");
    source.set(customers_schema(), customers(3), vec![malformed.clone()]);
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 0, "{report}");
    assert_eq!(report.counts.withheld, 2);
    assert!(report.withheld_reason.as_deref().unwrap().contains("could not be read"), "{report}");
    assert_eq!(dest.records().len(), 5);

    // When the source names the unreadable row's key, only that key is kept.
    source.set(customers_schema(), customers(3), vec![malformed.with_key(key(5))]);
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 1, "{report}");
    assert!(dest.records().contains_key(&key(5)));
    assert!(!dest.records().contains_key(&key(4)));
}

#[tokio::test]
async fn mirror_empty_source_guard_counts_rows_that_survive_transforms_and_key_checks() {
    let schema =
        Schema::new(vec![Field::required("id", DataType::Int), Field::new("consent", DataType::Bool)], &["id"])
            .unwrap()
            .into_arc();
    let row = |id: i64, consent: bool| Record::new(vec![Value::Int(id), Value::Bool(consent)]);
    let source = ScriptedSource::new(schema.clone(), (1..=4).map(|i| row(i, true)).collect());
    let (dest, state) = (MemoryDestination::new(), MemoryStateStore::new());
    let sync = SyncJob::builder("consented")
        .source(source.clone())
        .transform(Filter::consent("consent"))
        .destination(dest.clone())
        .state(state.clone())
        .mode(Mode::Mirror)
        .options(opts().with_max_deletes(None))
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 4);

    // Every row filtered out (a consent column that broke upstream): nothing may be wiped.
    source.set(schema.clone(), (1..=4).map(|i| row(i, false)).collect(), Vec::new());
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 0, "{report}");
    assert_eq!(report.counts.withheld, 4);
    assert_eq!(dest.records().len(), 4);

    // Every row null-keyed: same.
    let nulls = (1..=4).map(|_| Record::new(vec![Value::Null, Value::Bool(true)])).collect();
    source.set(schema, nulls, Vec::new());
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 0, "{report}");
    assert_eq!(dest.records().len(), 4);
}

#[tokio::test]
async fn the_default_delete_guard_withholds_a_mass_delete_and_the_status_says_so() {
    let w = World::new(customers(40));
    let sync = w.sync(Mode::Mirror, opts()).await;
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
    w.source.set_rows(customers(10));
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.delete, 0, "{report}");
    assert_eq!(report.counts.withheld, 30);
    assert!(matches!(report.status, RunStatus::DeletesWithheld { .. }), "{:?}", report.status);
    assert_eq!(w.destination.records().len(), 40);
    // A small share of deletes still goes through under the default guard.
    w.source.set_rows(customers(39));
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.delete, 1);
}

fn incremental(w: &World) -> MemorySource {
    w.source.clone().with_capabilities(SourceCapabilities::default().with_cursor_field("updated_at"))
}

#[tokio::test]
async fn incremental_a_refused_value_that_the_source_reverted_is_never_sent_later() {
    let w = World::new(vec![customer_at(1, 0.1, 100), customer_at(2, 0.2, 100)]);
    let faulty = FaultyDestination::new(w.destination.clone());
    // The destination does not receive `updated_at`: a row back to its old values is
    // unchanged for it, although the cursor moved.
    let sync = SyncJob::builder("customers")
        .source(incremental(&w))
        .transform(DropFields::new(["updated_at"]))
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 2);

    // a → bad: the destination refuses it.
    w.source.upsert(customer_at(1, 0.9, 200));
    faulty.reject_key(key(1), "churn_score out of range");
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.rejected.update, 1, "{report}");

    // bad → a again (a newer row at the source): the refused record is stale.
    w.source.upsert(customer_at(1, 0.1, 300));
    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.invalid, 0, "no key is repeated: {report}");
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(w.state.rejections("customers").is_empty(), "the stale refusal is cleared");

    // Later runs never apply the stale value.
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.total(), 0, "{report}");
    assert_eq!(w.destination.records()[&key(1)].values[2], Value::Float(0.1));
}

#[tokio::test]
async fn incremental_a_refused_record_superseded_at_the_source_is_replaced_by_the_newer_one() {
    let w = World::new(vec![customer_at(1, 0.1, 100)]);
    let faulty = FaultyDestination::new(w.destination.clone());
    let sync = SyncJob::builder("customers")
        .source(incremental(&w))
        .destination(faulty.clone())
        .state(w.state.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    sync.run().await.unwrap();
    w.source.upsert(customer_at(1, 0.9, 200));
    faulty.reject_key(key(1), "refused");
    sync.run().await.unwrap();
    w.source.upsert(customer_at(1, 0.5, 300));
    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.invalid, 0, "{report}");
    assert_eq!(report.counts.applied.update, 1, "{report}");
    assert_eq!(score_of(&w.destination.records()[&key(1)]), 0.5);
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.total(), 0, "{report}");
    assert_eq!(score_of(&w.destination.records()[&key(1)]), 0.5);
}

/// A destination that keeps each record by field name, as a CRM does: a value sent under
/// the wrong name shows.
#[derive(Clone, Default)]
struct NamedDestination {
    rows: Arc<Mutex<std::collections::BTreeMap<Key, std::collections::BTreeMap<String, Value>>>>,
    writes: Arc<Mutex<u64>>,
}

impl NamedDestination {
    fn row(&self, k: &Key) -> std::collections::BTreeMap<String, Value> {
        self.rows.lock().unwrap().get(k).cloned().unwrap_or_default()
    }
    fn writes(&self) -> u64 {
        *self.writes.lock().unwrap()
    }
}

#[async_trait]
impl Destination for NamedDestination {
    fn name(&self) -> &str {
        "named"
    }
    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new(Op::ALL)
    }
    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        *self.writes.lock().unwrap() += 1;
        let mut rows = self.rows.lock().unwrap();
        for change in &batch.changes {
            match &change.record {
                Some(record) => {
                    let named = batch.schema.fields().iter().map(|f| f.name.clone()).zip(record.values.clone());
                    rows.insert(change.key.clone(), named.collect());
                }
                None => {
                    rows.remove(&change.key);
                }
            }
        }
        Ok(WriteOutcome::all_applied(batch.len()))
    }
}

fn people(columns: &[&str]) -> Arc<Schema> {
    let fields = columns
        .iter()
        .map(|c| if *c == "id" { Field::required("id", DataType::Int) } else { Field::new(*c, DataType::String) })
        .collect();
    Schema::new(fields, &["id"]).unwrap().into_arc()
}

/// Rows of `columns`, each value naming its column and row (`email-1`).
fn people_rows(columns: &[&str], n: i64) -> Vec<Record> {
    (1..=n)
        .map(|i| {
            Record::new(
                columns.iter().map(|c| if *c == "id" { Value::Int(i) } else { format!("{c}-{i}").into() }).collect(),
            )
        })
        .collect()
}

async fn named_sync(
    source: &ScriptedSource,
    dest: &NamedDestination,
    state: &MemoryStateStore,
    o: SyncOptions,
) -> SyncJob {
    SyncJob::builder("people")
        .source(source.clone())
        .destination(dest.clone())
        .state(state.clone())
        .options(o)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn schema_drift_fails_the_run_before_sending_anything_and_names_the_columns() {
    let before = ["id", "email", "tier"];
    let source = ScriptedSource::new(people(&before), people_rows(&before, 3));
    let (dest, state) = (NamedDestination::default(), MemoryStateStore::new());
    let sync = named_sync(&source, &dest, &state, opts()).await;
    assert_eq!(sync.run().await.unwrap().status, RunStatus::Succeeded);
    let writes = dest.writes();

    // The view gains a column in the middle, and the rows change with it.
    let after = ["id", "name", "email", "tier"];
    source.set(people(&after), people_rows(&after, 3), Vec::new());
    let report = sync.run().await.unwrap();
    let RunStatus::Failed { reason, kind } = &report.status else { panic!("{report}") };
    assert_eq!(*kind, FailureKind::SchemaDrift);
    assert!(reason.contains("added `name`"), "{reason}");
    assert_eq!(report.schema_drift.as_ref().unwrap().added, ["name"]);
    assert_eq!(dest.writes(), writes, "nothing is sent");
    assert_eq!(dest.row(&key(1))["email"], Value::from("email-1"));

    // A restart with a sync built on the new columns still stops: the state remembers
    // what was delivered.
    let rebuilt = named_sync(&source, &dest, &state, opts()).await;
    let report = rebuilt.run().await.unwrap();
    assert!(matches!(report.status, RunStatus::Failed { kind: FailureKind::SchemaDrift, .. }), "{report}");
    assert_eq!(dest.writes(), writes);
}

#[tokio::test]
async fn schema_drift_proceed_resends_every_key_under_the_names_it_was_read_with() {
    let before = ["id", "email", "tier"];
    let source = ScriptedSource::new(people(&before), people_rows(&before, 3));
    let (dest, state) = (NamedDestination::default(), MemoryStateStore::new());
    let proceed = opts().with_schema_drift(SchemaDriftPolicy::Proceed);
    let sync = named_sync(&source, &dest, &state, proceed.clone()).await;
    sync.run().await.unwrap();

    let after = ["id", "name", "email", "tier"];
    source.set(people(&after), people_rows(&after, 3), Vec::new());
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.applied.update, 3);
    assert_eq!(report.schema_drift.as_ref().unwrap().added, ["name"]);
    for i in 1..=3 {
        let row = dest.row(&key(i));
        assert_eq!(row["name"], Value::from(format!("name-{i}")));
        assert_eq!(row["email"], Value::from(format!("email-{i}")));
        assert_eq!(row["tier"], Value::from(format!("tier-{i}")));
    }
    // The new columns are what the next run compares with.
    let report = sync.run().await.unwrap();
    assert_eq!(report.schema_drift, None);
    assert_eq!(report.counts.unchanged, 3);
}

#[tokio::test]
async fn schema_drift_that_only_reorders_columns_sends_nothing_when_proceeding() {
    let before = ["id", "email", "tier"];
    let source = ScriptedSource::new(people(&before), people_rows(&before, 3));
    let (dest, state) = (NamedDestination::default(), MemoryStateStore::new());
    let fail = named_sync(&source, &dest, &state, opts()).await;
    fail.run().await.unwrap();
    let reordered = ["id", "tier", "email"];
    source.set(people(&reordered), people_rows(&reordered, 3), Vec::new());
    let report = fail.run().await.unwrap();
    assert!(report.schema_drift.as_ref().unwrap().reordered, "{report}");
    assert!(matches!(report.status, RunStatus::Failed { kind: FailureKind::SchemaDrift, .. }), "{report}");

    let proceed = named_sync(&source, &dest, &state, opts().with_schema_drift(SchemaDriftPolicy::Proceed)).await;
    let report = proceed.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert_eq!(report.counts.unchanged, 3, "values matched by name did not change");
    assert_eq!(dest.row(&key(2))["tier"], Value::from("tier-2"));

    // A value that did change, after the reorder, goes under its own name.
    let mut rows = people_rows(&reordered, 3);
    rows[1].values[1] = "gold".into();
    source.set(people(&reordered), rows, Vec::new());
    let report = proceed.run().await.unwrap();
    assert_eq!(report.counts.applied.update, 1, "{report}");
    assert_eq!(dest.row(&key(2))["tier"], Value::from("gold"));
    assert_eq!(dest.row(&key(2))["email"], Value::from("email-2"));
}

#[tokio::test]
async fn schema_drift_of_the_key_columns_fails_even_when_proceeding() {
    let before = ["id", "email"];
    let source = ScriptedSource::new(people(&before), people_rows(&before, 2));
    let (dest, state) = (NamedDestination::default(), MemoryStateStore::new());
    let proceed = opts().with_schema_drift(SchemaDriftPolicy::Proceed);
    named_sync(&source, &dest, &state, proceed.clone()).await.run().await.unwrap();
    let rekeyed = Schema::clone(&people(&before)).with_key(&["email"]).unwrap().into_arc();
    source.set(rekeyed, people_rows(&before, 2), Vec::new());
    let report = named_sync(&source, &dest, &state, proceed).await.run().await.unwrap();
    let RunStatus::Failed { reason, kind: FailureKind::SchemaDrift } = &report.status else { panic!("{report}") };
    assert!(reason.contains("changed the key"), "{reason}");
}

#[tokio::test]
async fn incremental_a_refused_row_stays_refused_across_a_schema_change() {
    let w = World::new(vec![customer_at(1, 0.1, 100), customer_at(2, 0.2, 100)]);
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.reject_key(key(1), "refused");
    let build = |transforms: Vec<Arc<dyn Transform>>| {
        let mut b = SyncJob::builder("customers")
            .source(incremental(&w))
            .destination(faulty.clone())
            .state(w.state.clone())
            .options(opts().with_schema_drift(SchemaDriftPolicy::Proceed));
        for t in transforms {
            b = b.transform(t);
        }
        b.build()
    };
    let report = build(vec![]).await.unwrap().run().await.unwrap();
    assert_eq!(report.counts.rejected.insert, 1);

    // The mapping changes (a field dropped); key 1's row is not read again (the cursor
    // moved past it): its refusal must stay, not be counted as recovered.
    w.source.upsert(customer_at(2, 0.3, 200));
    let report =
        build(vec![Arc::new(DropFields::new(["email"])) as Arc<dyn Transform>]).await.unwrap().run().await.unwrap();
    assert_eq!(report.counts.recovered, 0, "{report}");
    let rejections = w.state.rejections("customers");
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].key, key(1));
    assert!(!w.destination.records().contains_key(&key(1)));
}

#[tokio::test]
async fn a_key_repeated_in_the_source_is_kept_among_the_rejections_until_fixed() {
    let mut rows = customers(3);
    rows.push(customer(2, 0.99));
    rows.push(customer(2, 0.98));
    let w = World::new(rows);
    let sync = w.sync(Mode::Upsert, opts()).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.invalid, 2);
    let rejections = w.state.rejections("customers");
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0].key, key(2));
    assert_eq!(rejections[0].stage, RejectionStage::Key);
    assert!(rejections[0].reason.contains("repeated"), "{}", rejections[0].reason);

    let report = sync.run().await.unwrap();
    assert_eq!(w.state.rejections("customers")[0].attempts, 2, "{report}");

    w.source.set_rows(customers(3));
    let report = sync.run().await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report}");
    assert!(w.state.rejections("customers").is_empty());
}

#[tokio::test]
async fn a_change_superseded_at_the_destination_is_reported_as_such_and_not_recorded_as_applied() {
    let w = World::new(customers(3));
    let faulty = FaultyDestination::new(w.destination.clone());
    faulty.supersede_key(key(2));
    let sync = w.sync_to(faulty.clone(), opts()).await;
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 2, "{report}");
    assert_eq!(report.counts.superseded, 1);
    assert_eq!(report.counts.rejected.total(), 0);
    assert_eq!(report.status, RunStatus::CompletedWithRejections);
    assert!(!w.state.snapshot("customers").iter().any(|e| e.key == key(2) && e.is_live()));
    let rejections = w.state.rejections("customers");
    assert!(rejections[0].reason.starts_with("superseded"), "{rejections:?}");

    // It is tried again each run, and lands once the destination takes it.
    faulty.lift();
    let report = sync.run().await.unwrap();
    assert_eq!(report.counts.applied.insert, 1, "{report}");
    assert!(w.state.rejections("customers").is_empty());
}

#[test]
fn sync_options_read_from_configuration_refuse_unknown_fields_and_round_trip() {
    let options: SyncOptions = serde_json::from_str(
        r#"{ "max_deletes": { "fraction_above": { "fraction": 0.2, "floor": 5 } }, "lease_ttl": "2m",
             "schema_drift": "proceed", "diff_strategy": "hash", "write_timeout": 30 }"#,
    )
    .unwrap();
    assert_eq!(options.max_deletes, Some(MaxDeletes::FractionAbove { fraction: 0.2, floor: 5 }));
    assert_eq!(options.lease_ttl, Duration::from_secs(120));
    assert_eq!(options.write_timeout, Duration::from_secs(30));
    assert_eq!(options.schema_drift, SchemaDriftPolicy::Proceed);
    let back: SyncOptions = serde_json::from_str(&serde_json::to_string(&options).unwrap()).unwrap();
    assert_eq!(back, options);

    let typo = serde_json::from_str::<SyncOptions>(r#"{ "max_delete": { "count": 1 } }"#).unwrap_err();
    assert!(typo.to_string().contains("max_delete"), "{typo}");
    let bad = serde_json::from_str::<SyncOptions>(r#"{ "linger": "soon" }"#).unwrap_err();
    assert!(bad.to_string().contains("not a duration"), "{bad}");
}

#[tokio::test]
async fn an_exactly_once_destination_brings_its_state_store_to_the_builder() {
    let w = World::exactly_once(customers(5));
    let sync = SyncJob::builder("customers")
        .source(w.source.clone())
        .destination(w.destination.clone())
        .options(opts())
        .build()
        .await
        .unwrap();
    assert_eq!(sync.run().await.unwrap().counts.applied.insert, 5);
    assert_eq!(w.state.snapshot("customers").len(), 5, "the state went to the destination's store");
    // Without a state store and without an exactly-once destination, the builder names it.
    let err = SyncJob::builder("s").source(w.source.clone()).destination(MemoryDestination::new()).build().await;
    assert!(err.unwrap_err().to_string().contains("state"));
}
