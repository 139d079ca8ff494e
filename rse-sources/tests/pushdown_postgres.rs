//! The warehouse-side diff on a real PostgreSQL: what `PostgresSource`'s pushdown hands out
//! after changes, deletions, forgotten hashes and acknowledgements, and the errors that say
//! what to fix.
//!
//! The server is `RSE_POSTGRES_URL` (default the local one); each test works in its own
//! schemas and drops them. Unreachable: skipped, or failed when `CI=true`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::TryStreamExt;
use rse_core::testing::unique_id;
use rse_core::{Key, PushdownSource, ReadRequest, RowHash, Source, SourceError, Value};
use rse_sources::Model;
use rse_sources::postgres::PostgresSource;
use tokio_postgres::Client;

#[path = "../../rse-connectors/tests/support/pg.rs"]
mod pg;

/// A model schema and a pushdown schema of the test's own, dropped at the end.
struct World {
    client: Client,
    url: String,
    models: String,
    state: String,
}

impl World {
    async fn new() -> Option<Self> {
        let (client, url) = (pg::connect().await?, pg::url());
        let models = unique_id("rse_pd_model");
        let state = unique_id("rse_pd_state");
        client.batch_execute(&format!("CREATE SCHEMA \"{models}\"; CREATE SCHEMA \"{state}\"")).await.unwrap();
        Some(Self { client, url, models, state })
    }

    async fn exec(&self, sql: &str) {
        self.client.batch_execute(&format!("SET search_path TO \"{}\"; {sql}", self.models)).await.unwrap();
    }

    fn source(&self, model: Model, key: &[&str]) -> PostgresSource {
        PostgresSource::from_url(&self.url, model)
            .unwrap()
            .with_key(key.iter().map(|k| (*k).to_owned()))
            .with_pushdown_schema(&self.state)
    }

    /// A source on `model` whose connections carry `application_name`, so that the test can
    /// count them.
    fn named_source(&self, model: Model, key: &[&str], application_name: &str) -> PostgresSource {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}application_name={application_name}", self.url);
        PostgresSource::from_url(&url, model)
            .unwrap()
            .with_key(key.iter().map(|k| (*k).to_owned()))
            .with_pushdown_schema(&self.state)
    }

    /// How many connections named `application_name` the server has.
    async fn connections(&self, application_name: &str) -> i64 {
        self.client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&application_name])
            .await
            .unwrap()
            .get(0)
    }

    async fn drop(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE; DROP SCHEMA \"{}\" CASCADE", self.models, self.state))
            .await
            .unwrap();
    }
}

/// What one diff read handed out: each row's values with its hash, and the vanished keys.
#[derive(Debug, Default)]
struct Diff {
    rows: Vec<(Vec<Value>, RowHash)>,
    vanished: Vec<Key>,
}

impl Diff {
    fn keys(&self, key_columns: &[usize]) -> Vec<Vec<Value>> {
        self.rows.iter().map(|(v, _)| key_columns.iter().map(|&i| v[i].clone()).collect()).collect()
    }

    fn delivered(&self, key_columns: &[usize]) -> Vec<(Key, Option<RowHash>)> {
        self.rows.iter().map(|(v, h)| (Key::from_values(key_columns.iter().map(|&i| &v[i])), Some(h.clone()))).collect()
    }
}

async fn diff(source: &dyn PushdownSource, sync: &str, full: bool) -> Diff {
    let request = ReadRequest::full().with_order_by_key(true).with_batch_size(2);
    let stream = if full { source.read_full(sync, request).await } else { source.read_changed(sync, request).await };
    collect(stream.unwrap().try_collect().await.unwrap())
}

fn collect(batches: Vec<rse_core::PushdownBatch>) -> Diff {
    let mut out = Diff::default();
    for b in batches {
        assert_eq!(b.rows.records.len(), b.hashes.len());
        for (r, h) in b.rows.records.into_iter().zip(b.hashes) {
            out.rows.push((r.values, h));
        }
        out.vanished.extend(b.vanished);
    }
    out
}

/// Acknowledges every row of `diff` as the runner would: intents, then hashes.
async fn deliver(source: &dyn PushdownSource, sync: &str, diff: &Diff, key_columns: &[usize]) {
    let delivered = diff.delivered(key_columns);
    let keys: Vec<Key> = delivered.iter().map(|(k, _)| k.clone()).collect();
    source.record_intents(sync, &keys).await.unwrap();
    source.record_delivered(sync, &delivered).await.unwrap();
}

/// An unordered diff read of what changed, as the lookup diff asks for one, `batch_size` rows
/// a batch.
fn unordered(batch_size: usize) -> ReadRequest {
    ReadRequest::full().with_order_by_key(false).with_batch_size(batch_size)
}

/// The changed rows and vanished keys of one unordered read, collected.
async fn read_unordered(source: &dyn PushdownSource, sync: &str, batch_size: usize) -> Diff {
    collect(source.read_changed(sync, unordered(batch_size)).await.unwrap().try_collect().await.unwrap())
}

/// A first run as the runner makes one: every row read (rse's table is empty), delivered, and
/// the full re-diff completed, which analyzes rse's table so that later reads can be cut.
async fn first_run(source: &dyn PushdownSource, sync: &str, batch_size: usize) -> Diff {
    assert_eq!(source.epoch(sync).await.unwrap(), None);
    let first = read_unordered(source, sync, batch_size).await;
    deliver(source, sync, &first, &[0]).await;
    source.complete(sync, "epoch-1").await.unwrap();
    first
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

#[tokio::test]
async fn a_rerun_hands_out_exactly_the_new_changed_and_vanished_rows_in_key_order() {
    let Some(world) = World::new().await else { return };
    // A text key under a locale collation where one exists, so that only COLLATE "C" gives
    // rse's byte order ("B" before "a").
    let icu = world.client.query("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'", &[]).await.unwrap();
    let collate = if icu.is_empty() { "" } else { r#"COLLATE "und-x-icu""# };
    world
        .exec(&format!(
            "CREATE TABLE people (region text {collate}, id int8, name text, score float8, tags jsonb, doc json,
               seen timestamptz, PRIMARY KEY (region, id));
             INSERT INTO people VALUES
               ('a', 1, 'Ann', 1.5, '{{\"x\": 1}}', '[1, 2]', '2024-01-01 00:00:00+00'),
               ('a', 2, 'Bob', NULL, NULL, NULL, NULL),
               ('B', 1, 'Cid', 2.5, '[]', '{{}}', '2024-01-02 00:00:00+00'),
               ('B', 2, 'Dee', 3.5, '{{}}', '\"text\"', '2024-01-03 00:00:00+00'),
               ('c', 7, 'Eve', 0, '{{}}', '1', '2024-01-04 00:00:00+00');"
        ))
        .await;
    let source = world.source(Model::qualified(&world.models, "people"), &["region", "id"]);
    let pushdown = source.pushdown().expect("pushdown is on");
    let key = [0, 1];
    let sync = "people-to-crm";

    assert_eq!(pushdown.epoch(sync).await.unwrap(), None, "a new sync has no epoch");
    let first = diff(pushdown, sync, false).await;
    assert_eq!(
        first.keys(&key),
        vec![
            vec![s("B"), Value::Int(1)],
            vec![s("B"), Value::Int(2)],
            vec![s("a"), Value::Int(1)],
            vec![s("a"), Value::Int(2)],
            vec![s("c"), Value::Int(7)]
        ],
        "every row is new, in rse's key order"
    );
    assert!(first.vanished.is_empty());
    // The rows are the plain read's rows, hashes beside them.
    let plain: Vec<_> =
        source.read(ReadRequest::full().with_order_by_key(true)).await.unwrap().try_collect().await.unwrap();
    let plain: Vec<Vec<Value>> = plain.into_iter().flat_map(|b| b.records).map(|r| r.values).collect();
    assert_eq!(first.rows.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(), plain);

    deliver(pushdown, sync, &first, &key).await;
    let unchanged = diff(pushdown, sync, false).await;
    assert!(unchanged.rows.is_empty() && unchanged.vanished.is_empty(), "nothing changed: {unchanged:?}");

    // A change in a plain column, a value set to NULL, a NULL set to a value, a change inside
    // a json document (no column says when a row changed), a new row, a deleted row.
    world
        .exec(
            "UPDATE people SET name = 'Ann2' WHERE region = 'a' AND id = 1;
             UPDATE people SET score = NULL WHERE region = 'B' AND id = 1;
             UPDATE people SET score = 9 WHERE region = 'a' AND id = 2;
             UPDATE people SET doc = '\"other\"' WHERE region = 'B' AND id = 2;
             INSERT INTO people VALUES ('A', 3, 'New', 1, NULL, NULL, NULL);
             DELETE FROM people WHERE region = 'c';",
        )
        .await;
    let second = diff(pushdown, sync, false).await;
    assert_eq!(
        second.keys(&key),
        vec![
            vec![s("A"), Value::Int(3)],
            vec![s("B"), Value::Int(1)],
            vec![s("B"), Value::Int(2)],
            vec![s("a"), Value::Int(1)],
            vec![s("a"), Value::Int(2)]
        ]
    );
    assert_eq!(second.rows[3].0[2], s("Ann2"));
    assert_eq!(second.vanished, vec![Key::from_values([&s("c"), &Value::Int(7)])]);
    // A changed row's hash differs from the one delivered; an unchanged row's is the same.
    let hash_of = |d: &Diff, region: &str, id: i64| {
        d.rows.iter().find(|(v, _)| v[0] == s(region) && v[1] == Value::Int(id)).map(|(_, h)| h.clone())
    };
    assert_ne!(hash_of(&first, "a", 1), hash_of(&second, "a", 1));

    // Acknowledge the changes and the delete: nothing left to hand out.
    deliver(pushdown, sync, &second, &key).await;
    pushdown.record_delivered(sync, &[(second.vanished[0].clone(), None)]).await.unwrap();
    let settled = diff(pushdown, sync, false).await;
    assert!(settled.rows.is_empty() && settled.vanished.is_empty(), "{settled:?}");

    // An intent without an acknowledgement (a crash in between) leaves the key unknown,
    // whether it was known before or not: it is read again, and a delete of it is not missed.
    let bob = Key::from_values([&s("a"), &Value::Int(2)]);
    pushdown.record_intents(sync, std::slice::from_ref(&bob)).await.unwrap();
    assert_eq!(diff(pushdown, sync, false).await.keys(&key), vec![vec![s("a"), Value::Int(2)]]);
    pushdown.record_delivered(sync, &[(bob.clone(), None)]).await.unwrap();
    pushdown.record_intents(sync, std::slice::from_ref(&bob)).await.unwrap();
    pushdown.record_intents(sync, std::slice::from_ref(&bob)).await.unwrap();
    assert_eq!(diff(pushdown, sync, false).await.keys(&key), vec![vec![s("a"), Value::Int(2)]]);
    world.exec("DELETE FROM people WHERE region = 'a' AND id = 2").await;
    let gone = diff(pushdown, sync, false).await;
    assert!(gone.rows.is_empty());
    assert_eq!(gone.vanished, vec![bob]);
    world.drop().await;
}

#[tokio::test]
async fn a_full_rediff_forgets_hashes_keeps_keys_and_records_its_epoch() {
    let Some(world) = World::new().await else { return };
    world.exec("CREATE TABLE t (id int4 PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g").await;
    let source = world.source(Model::qualified(&world.models, "t"), &["id"]);
    let pushdown = source.pushdown().unwrap();
    let sync = "full";
    assert_eq!(pushdown.epoch(sync).await.unwrap(), None);
    let all = diff(pushdown, sync, true).await;
    assert_eq!(all.rows.len(), 5);
    deliver(pushdown, sync, &all, &[0]).await;
    pushdown.complete(sync, "epoch-1").await.unwrap();
    assert_eq!(pushdown.epoch(sync).await.unwrap().as_deref(), Some("epoch-1"));
    assert!(diff(pushdown, sync, false).await.rows.is_empty());
    // Completing rewrote the table in key order (a full re-diff leaves it bloated and
    // shuffled) and gathered its statistics; autovacuum tidies it early.
    let (clustered, analyzed, options): (bool, bool, Vec<String>) = {
        let row = world
            .client
            .query_one(
                &format!(
                    "SELECT i.indisclustered, EXISTS (SELECT 1 FROM pg_statistic WHERE starelid = c.oid), \
                     coalesce(c.reloptions, '{{}}') \
                     FROM \"{}\".rse_pushdown_syncs p JOIN pg_namespace n ON n.nspname = $1 \
                     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.hash_table \
                     JOIN pg_index i ON i.indrelid = c.oid WHERE p.sync_id = $2",
                    world.state
                ),
                &[&world.state, &sync],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert!(clustered && analyzed, "clustered {clustered}, analyzed {analyzed}");
    assert!(options.iter().any(|o| o == "autovacuum_vacuum_scale_factor=0.01"), "{options:?}");

    pushdown.begin_full(sync).await.unwrap();
    assert_eq!(pushdown.epoch(sync).await.unwrap(), None, "a full re-diff in progress clears the epoch");
    // Every hash is unknown now: every row is read again, and no key was dropped, so a
    // key deleted meanwhile is still reported as vanished.
    world.exec("DELETE FROM t WHERE id = 5").await;
    let after = diff(pushdown, sync, false).await;
    assert_eq!(after.rows.len(), 4);
    assert_eq!(after.vanished, vec![Key::from_values([&Value::Int(5)])]);
    // The full read hands out every row with the same hashes as before (stable).
    let full = diff(pushdown, sync, true).await;
    assert!(full.vanished.is_empty());
    for (row, hash) in &full.rows {
        let before = all.rows.iter().find(|(v, _)| v[0] == row[0]).map(|(_, h)| h);
        assert_eq!(before, Some(hash));
    }
    // Two syncs of one model keep separate tables.
    assert_eq!(diff(pushdown, "other-sync", false).await.rows.len(), 4);
    world.drop().await;
}

#[tokio::test]
async fn a_diff_read_by_three_connections_hands_out_each_key_once_on_one_snapshot() {
    let Some(world) = World::new().await else { return };
    // A key that may be NULL (no primary key, a unique index), so that the NULL keys are read
    // as a slice of their own.
    world
        .exec(
            "CREATE TABLE t (id int8, v text); CREATE UNIQUE INDEX ON t (id);
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g",
        )
        .await;
    let app = unique_id("rse_pd_readers");
    let source = |readers| {
        world.named_source(Model::qualified(&world.models, "t"), &["id"], &app).with_pushdown_readers(readers)
    };
    let (three, one) = (source(3), source(1));
    let sync = "sliced";
    let pushdown = three.pushdown().unwrap();
    // The end of a full re-diff analyzes rse's table: its histogram places the cuts.
    let first = first_run(pushdown, sync, 2).await;
    assert_eq!(first.rows.len(), 3000, "rse's table is empty: one slice, every row");
    let table: String = world
        .client
        .query_one(&format!("SELECT hash_table FROM \"{}\".rse_pushdown_syncs", world.state), &[])
        .await
        .unwrap()
        .get(0);
    let histogram: Vec<i64> = world
        .client
        .query_one(
            "SELECT histogram_bounds::text::int8[] FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = 'id'",
            &[&world.state, &table],
        )
        .await
        .unwrap()
        .get(0);
    let last = histogram.len() - 1;
    let (b1, b2) = (histogram[last / 3], histogram[2 * last / 3]);
    assert!(1 < b1 && b1 + 1 < b2 && b2 < 3000, "cuts inside the keys: {b1}, {b2}");

    // Changes at both cuts and beside them, at both ends, beyond both ends, deletes at and
    // beside a cut, and a row without a key.
    world
        .exec(&format!(
            "UPDATE t SET v = 'changed' WHERE id IN (1, {b1} - 1, {b1}, {b2}, {b2} + 1, 3000);
             DELETE FROM t WHERE id IN (2, {b1} + 1, {b2} - 1);
             INSERT INTO t VALUES (-7, 'below'), (0, 'zero'), (4000, 'above'), (NULL, 'no key');"
        ))
        .await;
    let mut stream = pushdown.read_changed(sync, unordered(2)).await.unwrap();
    let head = stream.try_next().await.unwrap().expect("a first batch");
    // While the read is open: the session's connection and one per slice.
    assert_eq!(world.connections(&app).await, 4, "the session and three readers");
    // An edit now is in no slice's snapshot.
    world.exec("UPDATE t SET v = 'too late' WHERE id = 1500").await;
    let mut batches = vec![head];
    batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    let sliced = collect(batches);

    let sorted = |d: &Diff| {
        let mut keys: Vec<Option<i64>> = d
            .rows
            .iter()
            .map(|(v, _)| match &v[0] {
                Value::Int(i) => Some(*i),
                Value::Null => None,
                other => panic!("an int8 key holds {other:?}"),
            })
            .collect();
        keys.sort_unstable();
        let mut vanished: Vec<Key> = d.vanished.clone();
        vanished.sort_unstable();
        (keys, vanished)
    };
    let (keys, vanished) = sorted(&sliced);
    let mut expected =
        vec![None, Some(-7), Some(0), Some(1), Some(b1 - 1), Some(b1), Some(b2), Some(b2 + 1), Some(3000)];
    expected.push(Some(4000));
    expected.sort_unstable();
    assert_eq!(keys, expected, "each changed key once, the NULL key too, nothing edited after the snapshot");
    let id = |i: i64| Key::from_values([&Value::Int(i)]);
    let mut gone = vec![id(2), id(b1 + 1), id(b2 - 1)];
    gone.sort_unstable();
    assert_eq!(vanished, gone);

    // One connection reads the same diff (the late edit aside).
    world.exec("UPDATE t SET v = 'v1500' WHERE id = 1500").await;
    let whole = one.pushdown().unwrap();
    assert_eq!(whole.epoch(sync).await.unwrap().as_deref(), Some("epoch-1"));
    let single = read_unordered(whole, sync, 2).await;
    assert_eq!(sorted(&single), sorted(&sliced));
    whole.finish(sync).await;
    pushdown.finish(sync).await;
    world.drop().await;
}

#[tokio::test]
async fn text_keys_under_a_locale_collation_are_cut_as_the_model_compares_them() {
    let Some(world) = World::new().await else { return };
    // A collation whose order is not the bytes' ("B" between "a" and "c"), where one exists.
    let icu = world.client.query("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'", &[]).await.unwrap();
    let collate = if icu.is_empty() { "" } else { r#"COLLATE "und-x-icu""# };
    world
        .exec(&format!(
            "CREATE TABLE t (code text {collate} PRIMARY KEY, v int8);
             INSERT INTO t SELECT (ARRAY['a', 'B', 'c', 'D', 'é', 'F'])[g % 6 + 1] || g, g FROM generate_series(1, 3000) g"
        ))
        .await;
    let app = unique_id("rse_pd_text");
    let source = |readers| {
        world.named_source(Model::qualified(&world.models, "t"), &["code"], &app).with_pushdown_readers(readers)
    };
    let (three, one) = (source(3), source(1));
    let sync = "text-keys";
    let sliced = three.pushdown().unwrap();
    first_run(sliced, sync, 7).await;
    world
        .exec(
            "UPDATE t SET v = -v WHERE v % 97 = 0;
             DELETE FROM t WHERE v % 89 = 0;
             INSERT INTO t VALUES ('', 0), ('A', 0), ('b', 0), ('É', 0), ('zz', 0), ('ZZ', 0);",
        )
        .await;
    let keys = |d: &Diff| {
        let mut rows: Vec<String> = d
            .rows
            .iter()
            .map(|(v, _)| match &v[0] {
                Value::String(s) => s.clone(),
                other => panic!("a text key holds {other:?}"),
            })
            .collect();
        rows.sort_unstable();
        let mut vanished = d.vanished.clone();
        vanished.sort_unstable();
        (rows, vanished)
    };
    let mut stream = sliced.read_changed(sync, unordered(7)).await.unwrap();
    let mut batches = vec![stream.try_next().await.unwrap().expect("a first batch")];
    assert_eq!(world.connections(&app).await, 4, "the session and three readers");
    batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    let by_three = keys(&collect(batches));
    let whole = one.pushdown().unwrap();
    whole.epoch(sync).await.unwrap();
    let by_one = keys(&read_unordered(whole, sync, 7).await);
    let updated = (1..=3000).filter(|v| v % 97 == 0 && v % 89 != 0).count();
    assert_eq!(by_one.0.len(), updated + 6, "the updates and the new keys");
    assert_eq!(by_one.1.len(), (1..=3000).filter(|v| v % 89 == 0).count());
    let mut distinct = by_three.0.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), by_three.0.len(), "a key was read twice");
    assert_eq!(by_three, by_one, "three slices read what one connection reads");
    whole.finish(sync).await;
    sliced.finish(sync).await;
    world.drop().await;
}

/// The backends of `state`'s pushdown session (the last statement of each names the schema).
async fn kill_sessions(world: &World) -> u64 {
    let rows = world
        .client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND position($1 in query) > 0",
            &[&world.state],
        )
        .await
        .unwrap();
    rows.len() as u64
}

#[tokio::test]
async fn a_run_outlives_its_connection_dying_and_a_dropped_table_comes_back_next_run() {
    let Some(world) = World::new().await else { return };
    world.exec("CREATE TABLE t (id int4 PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 4) g").await;
    let source = world.source(Model::qualified(&world.models, "t"), &["id"]);
    let pushdown = source.pushdown().unwrap();
    let sync = "outlives";
    assert_eq!(pushdown.epoch(sync).await.unwrap(), None);
    let all = diff(pushdown, sync, false).await;
    // A key twice in one write (two outcomes of one key in a page) is written once, the
    // last outcome counting.
    let one = Key::from_values([&Value::Int(1)]);
    let keys: Vec<Key> = all.delivered(&[0]).into_iter().map(|(k, _)| k).chain([one.clone()]).collect();
    pushdown.record_intents(sync, &keys).await.unwrap();
    let mut delivered = all.delivered(&[0]);
    delivered.insert(0, (one.clone(), None));
    pushdown.record_delivered(sync, &delivered).await.unwrap();
    assert!(diff(pushdown, sync, false).await.rows.is_empty(), "the later outcome (a hash) counted");

    // The server ends the connection the run writes through: the write that finds it gone
    // fails (its rows are read again next run), and the next call connects again.
    assert!(kill_sessions(&world).await >= 1, "the session's connection was found");
    world.exec("UPDATE t SET v = 'changed' WHERE id = 2").await;
    let changed = diff(pushdown, sync, false).await;
    assert_eq!(changed.keys(&[0]), vec![vec![Value::Int(2)]]);
    let ids = [Key::from_values([&Value::Int(2)])];
    if pushdown.record_intents(sync, &ids).await.is_err() {
        pushdown.record_intents(sync, &ids).await.expect("the next call connects again");
    }
    pushdown.record_delivered(sync, &changed.delivered(&[0])).await.unwrap();
    assert!(diff(pushdown, sync, false).await.rows.is_empty());
    pushdown.complete(sync, "epoch-1").await.unwrap();

    // A write the server refuses says it was a write of rse's table, not a read of the model.
    let table: String = world
        .client
        .query_one(
            &format!("SELECT hash_table FROM \"{}\".rse_pushdown_syncs WHERE sync_id = $1", world.state),
            &[&sync],
        )
        .await
        .unwrap()
        .get(0);
    world
        .client
        .batch_execute(&format!(
            "CREATE FUNCTION \"{state}\".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON \"{state}\".\"{table}\" FOR EACH STATEMENT EXECUTE FUNCTION \"{state}\".refuse();",
            state = world.state
        ))
        .await
        .unwrap();
    let err = pushdown.record_intents(sync, &ids).await.unwrap_err().to_string();
    assert!(err.contains("writing rse's hash table") && err.contains("refused") && !err.contains("reading"), "{err}");
    world.client.batch_execute(&format!("DROP TRIGGER refuse ON \"{}\".\"{table}\"", world.state)).await.unwrap();
    pushdown.finish(sync).await;

    // Between runs the hash table is dropped: the next run's first call creates it again
    // without an epoch (the keys the destination holds are gone from it, so the run must
    // re-diff in full), and every row reads as new.
    world.client.batch_execute(&format!("DROP TABLE \"{}\".\"{table}\"", world.state)).await.unwrap();
    assert_eq!(pushdown.epoch(sync).await.unwrap(), None);
    assert_eq!(diff(pushdown, sync, false).await.rows.len(), 4);
    world.drop().await;
}

#[tokio::test]
async fn a_query_model_with_quoted_names_and_a_composite_key() {
    let Some(world) = World::new().await else { return };
    world
        .exec(
            "CREATE TABLE src (\"Tenant Id\" int8, \"we\"\"ird\" varchar(10), amount numeric(12, 2), d date);
             INSERT INTO src VALUES (2, 'x', 1.50, '2024-02-29'), (1, 'y', 2.00, NULL), (1, 'x', NULL, '2024-01-01');",
        )
        .await;
    let query = format!(
        "SELECT \"Tenant Id\", \"we\"\"ird\", amount, d FROM \"{}\".src WHERE amount IS DISTINCT FROM 0",
        world.models
    );
    let source = world.source(Model::query(query), &["Tenant Id", "we\"ird"]);
    let pushdown = source.pushdown().unwrap();
    let sync = "query \"model\"";
    let first = diff(pushdown, sync, false).await;
    let text = |t: &str| s(t);
    assert_eq!(
        first.keys(&[0, 1]),
        vec![vec![Value::Int(1), text("x")], vec![Value::Int(1), text("y")], vec![Value::Int(2), text("x")]]
    );
    deliver(pushdown, sync, &first, &[0, 1]).await;
    world.exec("UPDATE src SET amount = 0 WHERE \"Tenant Id\" = 2; UPDATE src SET d = '2025-01-01' WHERE \"we\"\"ird\" = 'y'").await;
    let second = diff(pushdown, sync, false).await;
    assert_eq!(second.keys(&[0, 1]), vec![vec![Value::Int(1), text("y")]]);
    assert_eq!(second.vanished, vec![Key::from_values([&Value::Int(2), &text("x")])], "filtered out by the query");
    world.drop().await;
}

#[tokio::test]
async fn a_missing_schema_names_the_schema_and_how_to_create_it() {
    let Some(world) = World::new().await else { return };
    world.exec("CREATE TABLE t (id int4 PRIMARY KEY)").await;
    let source = PostgresSource::from_url(&world.url, Model::qualified(&world.models, "t"))
        .unwrap()
        .with_key(["id"])
        .with_pushdown_schema("rse_no_such_schema");
    let err = source.pushdown().unwrap().epoch("s").await.unwrap_err();
    assert!(matches!(err, SourceError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`rse_no_such_schema`") && text.contains("CREATE SCHEMA"), "{text}");
    // Without a pushdown schema the source offers no pushdown.
    let plain = PostgresSource::from_url(&world.url, Model::qualified(&world.models, "t")).unwrap().with_key(["id"]);
    assert!(plain.pushdown().is_none());
    world.drop().await;
}

#[tokio::test]
async fn no_permission_on_the_schema_says_what_to_grant() {
    let Some(world) = World::new().await else { return };
    let role = unique_id("rse_pd_reader");
    world
        .exec(&format!(
            "CREATE TABLE t (id int4 PRIMARY KEY); CREATE ROLE \"{role}\" LOGIN;
             GRANT USAGE ON SCHEMA \"{m}\" TO \"{role}\"; GRANT SELECT ON t TO \"{role}\";
             GRANT USAGE ON SCHEMA \"{s}\" TO \"{role}\";",
            m = world.models,
            s = world.state
        ))
        .await;
    let config: tokio_postgres::Config = world.url.parse().unwrap();
    let mut config = config;
    config.user(&role);
    let source = PostgresSource::new(config, Model::qualified(&world.models, "t"))
        .with_key(["id"])
        .with_pushdown_schema(&world.state);
    let err = source.pushdown().unwrap().epoch("s").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("GRANT USAGE, CREATE ON SCHEMA") && text.contains(&world.state), "{text}");
    world.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", world.models)).await.unwrap();
    world
        .client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE; DROP ROLE \"{role}\"", world.state))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_refusing_more_connections_gets_the_diff_read_on_one() {
    let Some(world) = World::new().await else { return };
    // A role allowed two connections: the session's and one reader's, of the three asked for.
    let role = unique_id("rse_pd_two");
    world
        .exec(&format!(
            "CREATE TABLE t (id int8 PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;
             CREATE ROLE \"{role}\" LOGIN CONNECTION LIMIT 2;
             GRANT USAGE ON SCHEMA \"{m}\" TO \"{role}\"; GRANT SELECT ON t TO \"{role}\";
             GRANT USAGE, CREATE ON SCHEMA \"{s}\" TO \"{role}\";",
            m = world.models,
            s = world.state
        ))
        .await;
    let mut config: tokio_postgres::Config = world.url.parse().unwrap();
    config.user(&role);
    let source = PostgresSource::new(config, Model::qualified(&world.models, "t"))
        .with_key(["id"])
        .with_pushdown_schema(&world.state)
        .with_pushdown_readers(3);
    let pushdown = source.pushdown().unwrap();
    let sync = "two-connections";
    first_run(pushdown, sync, 100).await;
    world.exec("UPDATE t SET v = 'changed' WHERE id % 500 = 0; DELETE FROM t WHERE id IN (1, 3000)").await;
    let changed = read_unordered(pushdown, sync, 100).await;
    let mut keys: Vec<i64> = changed
        .keys(&[0])
        .iter()
        .map(|k| match k[0] {
            Value::Int(i) => i,
            ref other => panic!("an int8 key holds {other:?}"),
        })
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, vec![500, 1000, 1500, 2000, 2500]);
    let mut vanished = changed.vanished.clone();
    vanished.sort();
    assert_eq!(vanished, vec![Key::from_values([&Value::Int(1)]), Key::from_values([&Value::Int(3000)])]);
    pushdown.finish(sync).await;
    drop(source);
    world.client.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", world.models)).await.unwrap();
    world
        .client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE; DROP ROLE \"{role}\"", world.state))
        .await
        .unwrap();
}
