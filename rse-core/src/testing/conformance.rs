//! Conformance suites: every implementation of a trait runs the same checks.
//!
//! Each suite is a plain async function over `&dyn Trait` returning `Err` with a message
//! naming the broken rule, so a connector author runs it from a test against a real server:
//!
//! ```no_run
//! # async fn demo(store: &dyn rse_core::StateStore) {
//! rse_core::testing::check_state_store(store).await.unwrap();
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::batch::ChangeBatchBuilder;
use crate::change::{Change, ChangeBatch, ChangeOutcome, Memo, Op, WriteOutcome};
use crate::destination::{CommittedWriteError, Destination, Held, ReadBack, TransactionalState};
use crate::error::{BoxError, StateError};
use crate::fingerprint::{Fingerprint, FingerprintAlgorithm, Fingerprinter};
use crate::key::Key;
use crate::record::Record;
use crate::report::{RunStatus, SyncReport};
use crate::runner::Mode;
use crate::schema::{Field, Schema};
use crate::state::{
    Lease, Pause, PendingChange, RejectedEntry, RejectionStage, SnapshotEntry, StateCommit, StateStore,
};
use crate::value::{DataType, Value};

use super::exact::{identical, identical_records};

/// A broken rule, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance: {0}")]
pub struct ConformanceError(pub String);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(ConformanceError(format!($($msg)+)));
        }
    };
}

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ConformanceError + '_ {
    move |e| ConformanceError(format!("{what}: {e}"))
}

/// A sync id no other run of a suite uses, so suites can share a real server.
pub fn unique_id(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{:x}_{:x}", nanos, fastrand::u64(..))
}

/// The schema the destination suite writes: `id` (int, key), `name` (string), `score`
/// (float), `active` (bool). A destination that needs a table can create it from this.
pub fn conformance_schema() -> Arc<Schema> {
    let fields = vec![
        Field::required("id", DataType::Int),
        Field::new("name", DataType::String),
        Field::new("score", DataType::Float),
        Field::new("active", DataType::Bool),
    ];
    #[allow(clippy::expect_used)] // A constant schema: distinct fields, and its key exists.
    Schema::new(fields, &["id"]).expect("the conformance schema is valid").into_arc()
}

/// Reads back what a destination holds, for suites that verify the data itself.
#[async_trait]
pub trait DestinationReadback: Send + Sync {
    /// The record the destination holds for `key` under `schema`, or `None`.
    ///
    /// # Errors
    /// Whatever reading back failed with.
    async fn get(&self, schema: &Schema, key: &Key) -> Result<Option<Record>, BoxError>;
}

fn record(id: i64, name: &str, score: f64) -> Record {
    Record::new(vec![Value::Int(id), Value::from(name), Value::Float(score), Value::Bool(id % 2 == 0)])
}

fn batch(sync_id: &str, schema: &Arc<Schema>, changes: Vec<(Op, Record, u64)>) -> ChangeBatch {
    changes
        .into_iter()
        .fold(ChangeBatchBuilder::new(schema, sync_id), |b, (op, record, version)| b.versioned(op, record, version))
        .build()
}

async fn write_all_applied(dest: &dyn Destination, batch: &ChangeBatch, what: &str) -> Result<(), ConformanceError> {
    let out = dest.write(batch).await.map_err(fail(what))?;
    ensure!(
        out.outcomes.len() == batch.changes.len(),
        "{what}: {} outcomes for {} changes; write must answer one per change",
        out.outcomes.len(),
        batch.changes.len()
    );
    for (i, o) in out.outcomes.iter().enumerate() {
        ensure!(*o == ChangeOutcome::Applied, "{what}: change {i} was not applied: {o:?}");
    }
    Ok(())
}

async fn expect_held(
    readback: Option<&dyn DestinationReadback>,
    schema: &Schema,
    record: &Record,
    present: bool,
    what: &str,
) -> Result<(), ConformanceError> {
    let Some(readback) = readback else { return Ok(()) };
    let key = record.key(schema).map_err(fail(what))?;
    let held = readback.get(schema, &key).await.map_err(|e| ConformanceError(format!("{what}: read back: {e}")))?;
    match (present, held) {
        (true, Some(got)) => ensure!(got == *record, "{what}: destination holds another record than written"),
        (true, None) => ensure!(false, "{what}: record missing from the destination"),
        (false, Some(_)) => ensure!(false, "{what}: deleted record still in the destination"),
        (false, None) => {}
    }
    Ok(())
}

/// Checks a destination against the `Destination` contract.
///
/// It writes to the key range `id` 1–1,000 of [`conformance_schema`] under a fresh sync id:
/// sane capabilities, `check()`, one outcome per change, inserts, updates, deletes (also
/// of a missing key), a repeated write of the same batch (a retry after a timeout) and a
/// batch of the declared maximum size. With `readback`, it verifies the records held. A
/// destination that offers [`Destination::read_back`] has it checked too: what was written
/// reads back fingerprint-equal, a key never written reads as absent, and its key listing
/// pages through every key once, ascending.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_destination(
    dest: &dyn Destination,
    readback: Option<&dyn DestinationReadback>,
) -> Result<(), ConformanceError> {
    let caps = dest.capabilities();
    ensure!(!caps.ops.is_empty(), "capabilities declare no operation");
    ensure!(caps.max_batch_rows > 0, "capabilities declare max_batch_rows = 0");
    ensure!(caps.max_batch_bytes > 0, "capabilities declare max_batch_bytes = 0");
    ensure!(caps.max_concurrency > 0, "capabilities declare max_concurrency = 0");
    if let Some(limit) = caps.rate_limit {
        ensure!(limit.requests > 0 && !limit.per.is_zero(), "rate limit must allow at least one request per period");
    }
    ensure!(!dest.name().is_empty(), "name() is empty");
    dest.check().await.map_err(fail("check()"))?;

    let sync_id = unique_id("conformance");
    let schema = conformance_schema();
    let empty = batch(&sync_id, &schema, Vec::new());
    let out = dest.write(&empty).await.map_err(fail("write of an empty batch"))?;
    ensure!(out.outcomes.is_empty(), "write of an empty batch answered {} outcomes", out.outcomes.len());

    let upsert_op = if caps.supports(Op::Insert) { Op::Insert } else { Op::Update };
    let writes_rows = caps.supports(Op::Insert) || caps.supports(Op::Update);
    if writes_rows {
        let rows: Vec<Record> = (1..=5).map(|i| record(i, &format!("name {i}"), i as f64 / 2.0)).collect();
        let first = batch(&sync_id, &schema, rows.iter().map(|r| (upsert_op, r.clone(), 0)).collect());
        write_all_applied(dest, &first, "first write").await?;
        for r in &rows {
            expect_held(readback, &schema, r, true, "after the first write").await?;
        }
        if let Some(read_back) = dest.read_back() {
            check_read_back(read_back, &sync_id, &schema, &rows).await?;
        }
        // A retry of the very same batch (the first answer was lost) must be safe.
        write_all_applied(dest, &first, "repeated write of the same batch").await?;
        for r in &rows {
            expect_held(readback, &schema, r, true, "after a repeated write").await?;
        }
        if caps.supports(Op::Update) {
            let changed = record(3, "changed", 9.5);
            write_all_applied(dest, &batch(&sync_id, &schema, vec![(Op::Update, changed.clone(), 1)]), "update")
                .await?;
            expect_held(readback, &schema, &changed, true, "after an update").await?;
        }
        if caps.supports(Op::Delete) {
            let gone = rows[0].clone();
            let delete = batch(&sync_id, &schema, vec![(Op::Delete, gone.clone(), 1)]);
            write_all_applied(dest, &delete, "delete").await?;
            expect_held(readback, &schema, &gone, false, "after a delete").await?;
            write_all_applied(dest, &delete, "delete of a key already deleted").await?;
            let never = batch(&sync_id, &schema, vec![(Op::Delete, record(999, "", 0.0), 0)]);
            write_all_applied(dest, &never, "delete of a key never written").await?;
        }
        let n = caps.max_batch_rows.min(1_000);
        let big: Vec<Record> = (1..=n as i64).map(|i| record(i, "bulk", 1.0)).collect();
        let big_batch = batch(&sync_id, &schema, big.iter().map(|r| (upsert_op, r.clone(), 7)).collect());
        if big_batch.changes.iter().map(Change::estimated_size).sum::<usize>() <= caps.max_batch_bytes {
            write_all_applied(dest, &big_batch, "batch of max_batch_rows changes").await?;
            if let Some(last) = big.last() {
                expect_held(readback, &schema, last, true, "after a full batch").await?;
            }
        }
    }
    if caps.supports(Op::Append) {
        let events = batch(&sync_id, &schema, vec![(Op::Append, record(500, "event", 1.0), 0)]);
        write_all_applied(dest, &events, "append").await?;
    }
    Ok(())
}

/// The read-back contract ([`ReadBack`]), on `rows` just written: each reads back
/// fingerprint-equal, a key never written reads as absent, and the keys walked page by page
/// (two a page) come each once, ascending, and include every row written.
async fn check_read_back(
    read_back: &dyn ReadBack,
    sync_id: &str,
    schema: &Schema,
    rows: &[Record],
) -> Result<(), ConformanceError> {
    let mut keys: Vec<Key> = rows.iter().map(|r| r.key(schema)).collect::<Result<_, _>>().map_err(fail("key"))?;
    keys.push(key(-7)); // no suite writes a negative id
    let held = read_back.read(sync_id, schema, &keys).await.map_err(fail("read_back().read"))?;
    ensure!(held.len() == keys.len(), "read_back().read answered {} for {} keys", held.len(), keys.len());
    let mut fingerprinter = Fingerprinter::new(FingerprintAlgorithm::default(), schema);
    for (i, (row, held)) in rows.iter().zip(&held).enumerate() {
        match held {
            Held::Record(got) => ensure!(
                fingerprinter.fingerprint(got) == fingerprinter.fingerprint(row),
                "read_back().read of row {i} gives another record than written ({got:?}); a record written and \
                 read back must fingerprint equal"
            ),
            other => ensure!(false, "read_back().read of row {i} just written gives {other:?}"),
        }
    }
    ensure!(
        held.last() == Some(&Held::Absent),
        "read_back().read of a key never written gives {:?}, not Absent",
        held.last()
    );
    let mut listed: Vec<Key> = Vec::new();
    loop {
        let page = read_back.keys(sync_id, schema, listed.last(), 2).await.map_err(fail("read_back().keys"))?;
        ensure!(page.len() <= 2, "read_back().keys answered {} keys for a limit of 2", page.len());
        for k in &page {
            ensure!(listed.last().is_none_or(|last| k > last), "read_back().keys is not strictly ascending");
            listed.push(k.clone());
        }
        if page.len() < 2 {
            break;
        }
    }
    for (i, k) in keys[..rows.len()].iter().enumerate() {
        ensure!(listed.contains(k), "read_back().keys does not list row {i} just written");
    }
    Ok(())
}

/// The state commit recording `outcomes` of `batch`: applied changes as snapshot entries,
/// refusals as rejections.
fn commit_of(batch: &ChangeBatch, written: &WriteOutcome) -> StateCommit {
    let outcomes = &written.outcomes;
    let mut commit =
        StateCommit { fingerprint_algorithm: Some(FingerprintAlgorithm::default()), ..StateCommit::default() };
    for (change, outcome) in batch.changes.iter().zip(outcomes) {
        match outcome {
            ChangeOutcome::Applied => commit.applied.push(SnapshotEntry {
                key: change.key.clone(),
                fingerprint: (change.op != Op::Delete).then_some(change.fingerprint),
                version: change.version + 1,
                pending: None,
                memo: None,
            }),
            ChangeOutcome::Rejected { reason, .. } | ChangeOutcome::Superseded { reason } => {
                commit.rejected.push(RejectedEntry {
                    key: change.key.clone(),
                    stage: RejectionStage::Destination,
                    op: Some(change.op),
                    fingerprint: Some(change.fingerprint),
                    version: change.version,
                    reason: reason.clone(),
                    attempts: 1,
                    record: change.record.clone(),
                    first_rejected_at: 1_700_000_000,
                    last_rejected_at: 1_700_000_000,
                })
            }
        }
    }
    commit
}

/// One transactional write whose commit records its outcomes; answers the outcomes and how
/// many times the commit was asked for.
async fn write_committing(
    dest: &dyn TransactionalState,
    batch: &ChangeBatch,
    lease: &Lease,
) -> (Result<Vec<ChangeOutcome>, CommittedWriteError>, usize) {
    let calls = AtomicUsize::new(0);
    let commit_for = |written: &WriteOutcome| {
        calls.fetch_add(1, Ordering::Relaxed);
        commit_of(batch, written)
    };
    let written = dest.write_committing(batch, lease, &commit_for).await.map(|out| out.outcomes);
    (written, calls.load(Ordering::Relaxed))
}

/// Checks an exactly-once destination against the [`TransactionalState`] contract, with the
/// state store it commits into.
///
/// Under a fresh sync id, on the key range `id` 1,001–1,009 of [`conformance_schema`]: the
/// destination offers the interface and names `store`; a write applies its rows and, in the
/// same transaction, the commit built once from its outcomes; a write under a lease that
/// was since taken over is refused as [`StateError::Fenced`] and leaves neither rows nor
/// state; a delete records a tombstone; an empty batch still commits its state. With
/// `readback`, it verifies the rows held.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_transactional_state(
    dest: &dyn Destination,
    store: &dyn StateStore,
    readback: Option<&dyn DestinationReadback>,
) -> Result<(), ConformanceError> {
    let Some(tx) = dest.transactional_state() else {
        return Err(ConformanceError(
            "transactional_state() is None: the destination offers no exactly-once writes".into(),
        ));
    };
    ensure!(
        tx.state_store_name() == store.name(),
        "state_store_name() is `{}` but the store is `{}`",
        tx.state_store_name(),
        store.name()
    );
    // Clear of the keys check_destination writes, so both suites can share a destination.
    const BASE: i64 = 1_000;
    let sync_id = unique_id("conformance_tx");
    let schema = conformance_schema();
    let ttl = Duration::from_secs(60);
    let lease = store.acquire_lease(&sync_id, "conformance", ttl).await.map_err(fail("acquire_lease"))?;
    let state_of = |id: i64| {
        let sync_id = sync_id.clone();
        async move {
            let got = store.get(&sync_id, &[key(id)]).await.map_err(fail("get"))?;
            Ok::<_, ConformanceError>(got.into_iter().next().flatten())
        }
    };

    // Rows and state together.
    let rows: Vec<Record> = (1..=3).map(|i| record(BASE + i, &format!("name {i}"), i as f64)).collect();
    let first = batch(&sync_id, &schema, rows.iter().map(|r| (Op::Insert, r.clone(), 0)).collect());
    let (written, calls) = write_committing(tx, &first, &lease).await;
    let outcomes = written.map_err(fail("write_committing"))?;
    ensure!(calls == 1, "write_committing asked for the commit {calls} times; it must ask exactly once");
    ensure!(outcomes.len() == 3, "write_committing answered {} outcomes for 3 changes", outcomes.len());
    ensure!(outcomes.iter().all(|o| *o == ChangeOutcome::Applied), "an insert was not applied: {outcomes:?}");
    for (change, r) in first.changes.iter().zip(&rows) {
        let entry = state_of(r.values[0].as_i64().unwrap_or_default()).await?;
        ensure!(
            entry.as_ref().and_then(|e| e.fingerprint) == Some(change.fingerprint),
            "the state does not hold the applied change's fingerprint after write_committing"
        );
        expect_held(readback, &schema, r, true, "after write_committing").await?;
    }

    // A lease taken over: neither rows nor state.
    store.release_lease(&lease).await.map_err(fail("release_lease"))?;
    let current = store.acquire_lease(&sync_id, "conformance-2", ttl).await.map_err(fail("acquire_lease"))?;
    let changed = record(BASE + 1, "changed", 10.0);
    let late =
        batch(&sync_id, &schema, vec![(Op::Update, changed.clone(), 1), (Op::Insert, record(BASE + 4, "new", 4.0), 0)]);
    let (written, _) = write_committing(tx, &late, &lease).await;
    ensure!(
        matches!(written, Err(CommittedWriteError::State(StateError::Fenced { .. }))),
        "a write under a lease since taken over must fail as StateError::Fenced, got {written:?}"
    );
    ensure!(state_of(BASE + 4).await?.is_none(), "a fenced write left state behind");
    let one = state_of(BASE + 1).await?;
    ensure!(one.and_then(|e| e.fingerprint) == Some(first.changes[0].fingerprint), "a fenced write changed the state");
    expect_held(readback, &schema, &rows[0], true, "after a fenced write (the row must be unchanged)").await?;
    expect_held(readback, &schema, &record(BASE + 4, "new", 4.0), false, "after a fenced write").await?;

    // A delete leaves a tombstone.
    let delete = batch(&sync_id, &schema, vec![(Op::Delete, rows[1].clone(), 1)]);
    let (written, _) = write_committing(tx, &delete, &current).await;
    written.map_err(fail("write_committing of a delete"))?;
    let two = state_of(BASE + 2).await?;
    ensure!(
        two.as_ref().is_some_and(|e| e.fingerprint.is_none() && e.version == 2),
        "a delete must leave a tombstone (no fingerprint, version 2), found {two:?}"
    );
    expect_held(readback, &schema, &rows[1], false, "after a transactional delete").await?;

    // An empty batch still commits what the runner asks.
    let empty = batch(&sync_id, &schema, Vec::new());
    let refusal = rejected(BASE + 9, "refused before sending");
    let commit_for = |_: &WriteOutcome| StateCommit { rejected: vec![refusal.clone()], ..StateCommit::default() };
    tx.write_committing(&empty, &current, &commit_for).await.map_err(fail("write_committing of an empty batch"))?;
    let listed = store.rejected(&sync_id, None, 10).await.map_err(fail("rejected"))?;
    ensure!(listed.iter().any(|r| r.key == key(BASE + 9)), "the state commit of an empty batch was not applied");
    store.release_lease(&current).await.map_err(fail("release_lease"))?;
    Ok(())
}

/// Scans follow the key byte order over keys of every kind: negative and huge integers,
/// strings with NULs and astral characters, floats, composites, a null.
async fn check_mixed_key_order(store: &dyn StateStore, ttl: Duration) -> Result<(), ConformanceError> {
    let sync_id = unique_id("conformance_mixed");
    let lease = store.acquire_lease(&sync_id, "runner-a", ttl).await.map_err(fail("lease of the mixed-key sync"))?;
    let mut keys: Vec<Key> = Vec::new();
    for i in [-1_000_000i64, -1, 0, 1, 255, 256, 1 << 40, i64::MIN, i64::MAX] {
        keys.push(Key::from_values(&[Value::Int(i)]));
        keys.push(Key::from_values(&[Value::from("a"), Value::Int(i)]));
    }
    for s in ["", "a", "a\u{0}", "a\u{0}b", "ab", "b", "é", "Z", "\u{10FFFF}"] {
        keys.push(Key::from_values(&[Value::from(s)]));
        keys.push(Key::from_values(&[Value::from(s), Value::from(s)]));
    }
    for f in [-1.5f64, -0.0, 0.5, 1e300, f64::NEG_INFINITY] {
        keys.push(Key::from_values(&[Value::Float(f)]));
    }
    keys.push(Key::from_values(&[Value::Null]));
    keys.sort();
    keys.dedup();
    let entries: Vec<SnapshotEntry> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| SnapshotEntry {
            key: k.clone(),
            fingerprint: fp(i as u128),
            version: 1,
            pending: None,
            memo: None,
        })
        .collect();
    let mut shuffled = entries.clone();
    fastrand::shuffle(&mut shuffled);
    let commit = StateCommit { applied: shuffled, ..StateCommit::default() };
    store.commit(&lease, commit).await.map_err(fail("commit of mixed keys"))?;
    let scanned = store.scan(&sync_id, None, 10_000).await.map_err(fail("scan of mixed keys"))?;
    ensure!(scanned == entries, "a scan of mixed keys is not in key byte order (or lost entries)");
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan(&sync_id, after.as_ref(), 4).await.map_err(fail("paged scan of mixed keys"))?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        walked.extend(page);
    }
    ensure!(walked == entries, "pages of 4 of mixed keys skip, repeat or reorder entries");
    store.release_lease(&lease).await.map_err(fail("release_lease"))?;
    Ok(())
}

fn fp(n: u128) -> Option<Fingerprint> {
    Some(Fingerprint(n))
}

fn key(i: i64) -> Key {
    Key::from_values(&[Value::Int(i)])
}

fn entry(i: i64, version: u64) -> SnapshotEntry {
    let fingerprint = fp((i as i128).unsigned_abs() * 31 + u128::from(version));
    SnapshotEntry { key: key(i), fingerprint, version, pending: None, memo: None }
}

fn rejected(i: i64, reason: &str) -> RejectedEntry {
    RejectedEntry {
        key: key(i),
        stage: RejectionStage::Destination,
        op: Some(Op::Update),
        fingerprint: fp(7),
        version: 1,
        reason: reason.to_owned(),
        attempts: 2,
        record: Some(Record::new(vec![Value::Int(i), Value::from("x")])),
        first_rejected_at: 1_700_000_000,
        last_rejected_at: 1_700_000_100,
    }
}

fn report(sync_id: &str, run_id: u64, status: RunStatus) -> SyncReport {
    let mut r = SyncReport::new(sync_id, Mode::Mirror);
    r.run_id = run_id;
    // Pinned, so a report built again for comparison equals the one recorded.
    r.started_at_ms = 1_700_000_000_000 + run_id;
    r.status = status;
    r.counts.read = run_id * 10;
    r
}

/// Memos round-trip with their entries: what `applied` writes (binary included), kept by
/// a later intent or settling of the key, replaced or cleared only by a later applied entry.
async fn check_memos(store: &dyn StateStore, lease: &Lease) -> Result<(), ConformanceError> {
    let sync_id = &lease.sync_id;
    let text = Memo::text("0031U00001abcdeQAA").map_err(fail("memo"))?;
    let binary = Memo::new(vec![0u8, 255, 7, 0, 128]).map_err(fail("memo"))?;
    let long = Memo::new(vec![b'x'; Memo::MAX_LEN]).map_err(fail("memo"))?;
    let with = |i, memo: &Memo| SnapshotEntry { memo: Some(memo.clone()), ..entry(i, 1) };
    let commit = StateCommit {
        applied: vec![with(501, &text), with(502, &binary), with(503, &long), entry(504, 1)],
        ..StateCommit::default()
    };
    store.commit(lease, commit).await.map_err(fail("commit of entries with memos"))?;
    let keys = [key(501), key(502), key(503), key(504)];
    let got = store.get(sync_id, &keys).await.map_err(fail("get"))?;
    let memos: Vec<Option<Memo>> = got.iter().map(|e| e.as_ref().and_then(|e| e.memo.clone())).collect();
    ensure!(
        memos == vec![Some(text.clone()), Some(binary.clone()), Some(long.clone()), None],
        "memos did not round-trip through get (text, binary, {} bytes, none): {memos:?}",
        Memo::MAX_LEN
    );
    let scanned = store.scan(sync_id, Some(&key(500)), 4).await.map_err(fail("scan"))?;
    ensure!(
        scanned.iter().find(|e| e.key == key(502)).and_then(|e| e.memo.clone()) == Some(binary.clone()),
        "a memo did not round-trip through scan"
    );
    // An intent and then settling it leave the memo as it was.
    let pending = PendingChange { op: Op::Delete, fingerprint: Fingerprint(1), version: 1 };
    store
        .commit(lease, StateCommit { intents: vec![(key(501), pending)], ..StateCommit::default() })
        .await
        .map_err(fail("commit of an intent"))?;
    let got = store.get(sync_id, &[key(501)]).await.map_err(fail("get"))?;
    ensure!(got[0].as_ref().and_then(|e| e.memo.clone()) == Some(text.clone()), "an intent on a key dropped its memo");
    store
        .commit(lease, StateCommit { settled: vec![(key(501), None)], ..StateCommit::default() })
        .await
        .map_err(fail("commit settling"))?;
    let got = store.get(sync_id, &[key(501)]).await.map_err(fail("get"))?;
    ensure!(got[0] == Some(with(501, &text)), "settling an intent changed the entry or its memo: {got:?}");
    // A later applied entry replaces the memo; a tombstone without one clears it.
    let tombstone = SnapshotEntry { fingerprint: None, ..entry(501, 2) };
    let commit = StateCommit { applied: vec![tombstone.clone(), with(502, &text)], ..StateCommit::default() };
    store.commit(lease, commit).await.map_err(fail("commit replacing memos"))?;
    let got = store.get(sync_id, &[key(501), key(502)]).await.map_err(fail("get"))?;
    ensure!(
        got == vec![Some(tombstone), Some(with(502, &text))],
        "an applied entry did not replace (or clear) the key's memo: {got:?}"
    );
    // A memo recorded with an intent: on a key that has an entry, and on a key new to the
    // sync (whose entry the intent creates); other columns stay as they were.
    let intent = PendingChange { op: Op::Update, fingerprint: Fingerprint(9), version: 1 };
    let new_key = PendingChange { op: Op::Insert, fingerprint: Fingerprint(10), version: 0 };
    let commit = StateCommit {
        intents: vec![(key(503), intent), (key(505), new_key)],
        memos: vec![(key(503), binary.clone()), (key(505), text.clone())],
        ..StateCommit::default()
    };
    store.commit(lease, commit).await.map_err(fail("commit of intents with memos"))?;
    let got = store.get(sync_id, &[key(503), key(505)]).await.map_err(fail("get"))?;
    let expected = vec![
        Some(SnapshotEntry { pending: Some(intent), memo: Some(binary.clone()), ..entry(503, 1) }),
        Some(SnapshotEntry {
            key: key(505),
            fingerprint: None,
            version: 0,
            pending: Some(new_key),
            memo: Some(text.clone()),
        }),
    ];
    ensure!(got == expected, "memos recorded with intents did not read back as recorded: {got:?}");
    // A memo for a key without an entry records nothing.
    let commit = StateCommit { memos: vec![(key(506), text.clone())], ..StateCommit::default() };
    store.commit(lease, commit).await.map_err(fail("commit of a memo alone"))?;
    let got = store.get(sync_id, &[key(506)]).await.map_err(fail("get"))?;
    ensure!(got == vec![None], "a memo for a key without an entry created one: {got:?}");
    // A refused insert of a new key leaves nothing behind, memo included.
    let commit = StateCommit { settled: vec![(key(505), None)], ..StateCommit::default() };
    store.commit(lease, commit).await.map_err(fail("commit settling"))?;
    let got = store.get(sync_id, &[key(505)]).await.map_err(fail("get"))?;
    ensure!(got == vec![None], "a refused insert of a new key left an entry: {got:?}");
    Ok(())
}

/// Pauses: taken and lifted without a lease while a runner holds it, the first pause kept,
/// exact round trips of who, why and when, no effect on the sync's other state or on the
/// runner's writes, isolation between syncs, and a sync never run.
async fn check_pauses(store: &dyn StateStore, lease: &Lease, other_sync: &str) -> Result<(), ConformanceError> {
    let sync_id = &lease.sync_id;
    ensure!(store.paused(sync_id).await.map_err(fail("paused"))?.is_none(), "a new sync reads as paused");
    ensure!(
        store.resume(sync_id).await.map_err(fail("resume"))?.is_none(),
        "resuming a sync never paused lifted a pause"
    );
    let before = store.scan(sync_id, None, 100).await.map_err(fail("scan"))?;
    let meta = store.meta(sync_id).await.map_err(fail("meta"))?;
    // Who and why as operators write them: quotes, a newline, non-ASCII, a long reason.
    let first = Pause {
        by: "Zoë O'Brien <oncall@example.com>".to_owned(),
        reason: format!("quota exhausted; \"RseQuotaExhausted\" fired\n{}", "see the incident ".repeat(40)),
        at_ms: 1_700_000_123_456,
    };
    // No lease: the operator acts while `lease`'s holder runs.
    let in_force = store.pause(sync_id, &first).await.map_err(fail("pause while a runner holds the lease"))?;
    ensure!(in_force == first, "pause did not return the pause it recorded: {in_force:?}");
    let read = store.paused(sync_id).await.map_err(fail("paused"))?;
    ensure!(read.as_ref() == Some(&first), "a pause did not round-trip exactly: {read:?}");
    let second = Pause { by: "scheduler".to_owned(), reason: "nightly freeze".to_owned(), at_ms: 1_800_000_000_000 };
    let in_force = store.pause(sync_id, &second).await.map_err(fail("pause of a paused sync"))?;
    ensure!(in_force == first, "pausing a paused sync replaced the first pause: {in_force:?}");
    ensure!(store.paused(other_sync).await.map_err(fail("paused"))?.is_none(), "a pause of one sync shows on another");
    ensure!(
        store.scan(sync_id, None, 100).await.map_err(fail("scan"))? == before
            && store.meta(sync_id).await.map_err(fail("meta"))? == meta,
        "pausing changed the sync's snapshot or metadata"
    );
    // The runner's lease and writes go on: the run stops itself when it sees the pause.
    let lease = store.renew_lease(lease, Duration::from_secs(30)).await.map_err(fail("renew_lease while paused"))?;
    store
        .commit(&lease, StateCommit { applied: vec![entry(9_001, 1)], ..StateCommit::default() })
        .await
        .map_err(fail("commit while paused"))?;
    let lifted = store.resume(sync_id).await.map_err(fail("resume"))?;
    ensure!(lifted == Some(first), "resume did not return the pause it lifted: {lifted:?}");
    ensure!(store.paused(sync_id).await.map_err(fail("paused"))?.is_none(), "a resumed sync still reads as paused");
    ensure!(store.resume(sync_id).await.map_err(fail("resume"))?.is_none(), "a second resume lifted a pause again");
    // A sync that has no state at all can be paused and resumed, and gains none.
    let never_run = unique_id("conformance_never_run");
    store.pause(&never_run, &second).await.map_err(fail("pause of a sync never run"))?;
    ensure!(
        store.paused(&never_run).await.map_err(fail("paused"))? == Some(second.clone()),
        "a pause of a sync never run did not read back"
    );
    ensure!(
        store.scan(&never_run, None, 10).await.map_err(fail("scan"))?.is_empty()
            && store.runs(&never_run, 10).await.map_err(fail("runs"))?.is_empty(),
        "pausing a sync never run gave it a snapshot or runs"
    );
    ensure!(
        store.resume(&never_run).await.map_err(fail("resume"))? == Some(second),
        "resuming a sync never run did not return its pause"
    );
    store
        .commit(&lease, StateCommit { forgotten: vec![key(9_001)], ..StateCommit::default() })
        .await
        .map_err(fail("commit forgetting"))?;
    Ok(())
}

/// Checks a state store against the `StateStore` contract, under fresh sync ids.
///
/// Leases (exclusive, fenced, expiring — this waits out a one-second lease), commits
/// (snapshot entries, tombstones, rejections, cursor, fingerprint algorithm), key-ordered
/// scans with paging, lookups, run history, pauses (without a lease) and isolation between
/// syncs; refused records and cursors holding NaN, infinities and `-0.0` read back bit for
/// bit. Takes a few seconds.
///
/// # Errors
/// A [`ConformanceError`] naming the first broken rule.
pub async fn check_state_store(store: &dyn StateStore) -> Result<(), ConformanceError> {
    let sync_id = unique_id("conformance");
    let other_sync = unique_id("conformance_other");
    let ttl = Duration::from_secs(30);

    let meta = store.meta(&sync_id).await.map_err(fail("meta of a new sync"))?;
    ensure!(
        meta.cursor.is_none() && meta.fingerprint_algorithm.is_none() && meta.pushdown_epoch.is_none(),
        "a new sync has metadata"
    );
    ensure!(store.scan(&sync_id, None, 10).await.map_err(fail("scan"))?.is_empty(), "a new sync has a snapshot");
    ensure!(store.runs(&sync_id, 10).await.map_err(fail("runs"))?.is_empty(), "a new sync has runs");

    // Leases.
    let lease = store.acquire_lease(&sync_id, "runner-a", ttl).await.map_err(fail("acquire_lease"))?;
    ensure!(lease.holder == "runner-a" && lease.sync_id == sync_id, "lease names another holder or sync");
    match store.acquire_lease(&sync_id, "runner-b", ttl).await {
        Err(StateError::LeaseHeld { holder, .. }) => {
            ensure!(holder == "runner-a", "LeaseHeld names `{holder}`, not the holder runner-a")
        }
        Err(e) => ensure!(false, "second acquire_lease failed with {e}, expected LeaseHeld"),
        Ok(_) => ensure!(false, "a second runner took a lease that is held"),
    }
    let lease = store.renew_lease(&lease, ttl).await.map_err(fail("renew_lease"))?;
    let other_lease = store.acquire_lease(&other_sync, "runner-a", ttl).await.map_err(fail("lease of another sync"))?;
    check_mixed_key_order(store, ttl).await?;
    check_pauses(store, &lease, &other_sync).await?;

    // Commits and ordered scans.
    let ids = [5i64, -3, 42, 0, 17, 1_000_000, -77, 8];
    let commit = StateCommit {
        applied: ids.iter().map(|&i| entry(i, 1)).collect(),
        cursor: Some(Value::Timestamp(1_700_000_000_000_000)),
        fingerprint_algorithm: Some(FingerprintAlgorithm::Xxh3_128),
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.map_err(fail("commit"))?;
    let all = store.scan(&sync_id, None, 100).await.map_err(fail("scan"))?;
    let mut want: Vec<SnapshotEntry> = ids.iter().map(|&i| entry(i, 1)).collect();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    ensure!(all == want, "scan did not return the committed entries in key order");
    let mut paged = Vec::new();
    let mut after: Option<Key> = None;
    loop {
        let page = store.scan(&sync_id, after.as_ref(), 3).await.map_err(fail("paged scan"))?;
        ensure!(page.len() <= 3, "scan returned {} entries for a limit of 3", page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        paged.extend(page);
    }
    ensure!(paged == want, "paging with `after` did not walk the snapshot in order exactly once");
    let got = store.get(&sync_id, &[key(42), key(43), key(-77)]).await.map_err(fail("get"))?;
    ensure!(
        got == vec![Some(entry(42, 1)), None, Some(entry(-77, 1))],
        "get did not return one answer per key, in order"
    );
    let meta = store.meta(&sync_id).await.map_err(fail("meta"))?;
    ensure!(meta.cursor == Some(Value::Timestamp(1_700_000_000_000_000)), "the cursor was not stored");
    ensure!(meta.fingerprint_algorithm == Some(FingerprintAlgorithm::Xxh3_128), "the algorithm was not stored");
    ensure!(store.scan(&other_sync, None, 10).await.map_err(fail("scan"))?.is_empty(), "syncs are not isolated");

    // Tombstones, rejections and their clearing.
    let tombstone = SnapshotEntry { key: key(5), fingerprint: None, version: 2, pending: None, memo: None };
    let commit = StateCommit {
        applied: vec![tombstone.clone(), entry(17, 2)],
        rejected: vec![rejected(42, "invalid email"), rejected(99, "quota"), rejected(17, "stale")],
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.map_err(fail("commit of tombstones and rejections"))?;
    let got = store.get(&sync_id, &[key(5), key(17)]).await.map_err(fail("get"))?;
    ensure!(got == vec![Some(tombstone), Some(entry(17, 2))], "tombstone or update not stored");
    let rej = store.rejected(&sync_id, None, 10).await.map_err(fail("rejected"))?;
    ensure!(rej.len() == 3, "expected 3 rejections, found {}", rej.len());
    ensure!(rej.windows(2).all(|w| w[0].key < w[1].key), "rejections not in key order");
    ensure!(rej.iter().any(|r| *r == rejected(42, "invalid email")), "a rejection did not round-trip exactly");
    let page = store.rejected(&sync_id, Some(&rej[0].key), 1).await.map_err(fail("rejected paging"))?;
    ensure!(page.len() == 1 && page[0].key == rej[1].key, "rejected paging with `after` is wrong");
    let commit =
        StateCommit { applied: vec![entry(42, 2)], cleared_rejections: vec![key(99)], ..StateCommit::default() };
    store.commit(&lease, commit).await.map_err(fail("commit clearing rejections"))?;
    let rej = store.rejected(&sync_id, None, 10).await.map_err(fail("rejected"))?;
    ensure!(
        rej.iter().map(|r| r.key.clone()).collect::<Vec<_>>() == vec![key(17)],
        "an applied entry or cleared_rejections did not remove its rejection"
    );
    // Intents: an unknown key gets an entry with only the pending change, a known one keeps
    // its fingerprint; an applied entry clears the pending change, and so does settling it.
    let pending = |v| PendingChange { op: Op::Update, fingerprint: Fingerprint(99), version: v };
    let commit = StateCommit {
        intents: vec![(key(77), pending(0)), (key(42), pending(2)), (key(-3), pending(1))],
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.map_err(fail("commit of intents"))?;
    let got = store.get(&sync_id, &[key(77), key(42)]).await.map_err(fail("get"))?;
    ensure!(
        got == vec![
            Some(SnapshotEntry { key: key(77), fingerprint: None, version: 0, pending: Some(pending(0)), memo: None }),
            Some(SnapshotEntry { pending: Some(pending(2)), ..entry(42, 2) })
        ],
        "intents were not recorded as pending changes (creating unknown keys at version 0): {got:?}"
    );
    let commit = StateCommit {
        applied: vec![entry(42, 3)],
        settled: vec![(key(-3), None), (key(77), None)],
        ..StateCommit::default()
    };
    store.commit(&lease, commit).await.map_err(fail("commit settling intents"))?;
    let got = store.get(&sync_id, &[key(42), key(-3), key(77)]).await.map_err(fail("get"))?;
    ensure!(
        got == vec![Some(entry(42, 3)), Some(entry(-3, 1)), None],
        "an applied entry or `settled` did not clear the pending change (an entry that was only an intent must go): {got:?}"
    );
    check_memos(store, &lease).await?;
    // The pushdown epoch: kept with the metadata, replaced by a later one, untouched by a
    // commit without one.
    for epoch in ["epoch-1", "epoch-2"] {
        let commit = StateCommit { pushdown_epoch: Some(epoch.to_owned()), ..StateCommit::default() };
        store.commit(&lease, commit).await.map_err(fail("commit of a pushdown epoch"))?;
    }
    store
        .commit(&lease, StateCommit { applied: vec![entry(42, 3)], ..StateCommit::default() })
        .await
        .map_err(fail("commit"))?;
    let meta = store.meta(&sync_id).await.map_err(fail("meta"))?;
    ensure!(meta.pushdown_epoch.as_deref() == Some("epoch-2"), "the pushdown epoch was not kept: {meta:?}");
    let commit = StateCommit { forgotten: vec![key(8)], ..StateCommit::default() };
    store.commit(&lease, commit).await.map_err(fail("commit forgetting"))?;
    ensure!(store.get(&sync_id, &[key(8)]).await.map_err(fail("get"))? == vec![None], "forgotten key still present");

    // A large commit.
    let big = StateCommit { applied: (10_000..20_000).map(|i| entry(i, 1)).collect(), ..StateCommit::default() };
    store.commit(&other_lease, big).await.map_err(fail("commit of 10,000 entries"))?;
    let scanned = store.scan(&other_sync, None, 20_000).await.map_err(fail("scan"))?;
    ensure!(scanned.len() == 10_000, "large commit: scanned {} of 10,000", scanned.len());
    ensure!(scanned.windows(2).all(|w| w[0].key < w[1].key), "large scan out of order");

    // Values that JSON cannot carry: a refused record and a cursor keep them bit for bit.
    let odd = [f64::NAN, -f64::NAN, f64::from_bits(0x7FF0_0000_0000_0001), f64::INFINITY, f64::NEG_INFINITY, -0.0];
    let mut values: Vec<Value> = odd.iter().map(|&f| Value::Float(f)).collect();
    values.push(Value::List(vec![Value::Float(f64::NAN), Value::Null]));
    let record = Record::new(values);
    let refusal = RejectedEntry { record: Some(record.clone()), ..rejected(3, "not a number") };
    let cursor = f64::from_bits(0xFFF8_0000_0000_0042);
    let commit = StateCommit { rejected: vec![refusal], cursor: Some(Value::Float(cursor)), ..StateCommit::default() };
    store.commit(&other_lease, commit).await.map_err(fail("commit of NaN and infinite floats"))?;
    let listed = store.rejected(&other_sync, None, 10).await.map_err(fail("rejected, of records holding NaN"))?;
    ensure!(
        listed.len() == 1 && listed[0].record.as_ref().is_some_and(|r| identical_records(r, &record)),
        "a refused record holding NaN, infinities and -0.0 did not round-trip bit for bit"
    );
    let meta = store.meta(&other_sync).await.map_err(fail("meta, of a NaN cursor"))?;
    ensure!(
        meta.cursor.as_ref().is_some_and(|c| identical(c, &Value::Float(cursor))),
        "a NaN cursor did not round-trip bit for bit"
    );

    // Run history.
    store.record_run(&lease, &report(&sync_id, lease.token, RunStatus::Running)).await.map_err(fail("record_run"))?;
    store
        .record_run(&lease, &report(&sync_id, lease.token, RunStatus::Succeeded))
        .await
        .map_err(fail("record_run replacing a run"))?;
    let runs = store.runs(&sync_id, 10).await.map_err(fail("runs"))?;
    ensure!(runs.len() == 1, "record_run of one run id twice kept {} runs", runs.len());
    ensure!(runs[0].status == RunStatus::Succeeded, "record_run did not replace the run");
    ensure!(runs[0] == report(&sync_id, lease.token, RunStatus::Succeeded), "the run did not round-trip exactly");

    // Release, re-acquire with a larger token; fencing of an expired holder.
    store.release_lease(&lease).await.map_err(fail("release_lease"))?;
    let short = store.acquire_lease(&sync_id, "runner-c", Duration::from_secs(1)).await.map_err(fail("re-acquire"))?;
    ensure!(short.token > lease.token, "fencing token did not grow ({} after {})", short.token, lease.token);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let taker = store.acquire_lease(&sync_id, "runner-d", ttl).await.map_err(fail("acquire after expiry"))?;
    ensure!(taker.token > short.token, "fencing token did not grow on takeover");
    let late = StateCommit { applied: vec![entry(12_345, 1)], ..StateCommit::default() };
    match store.commit(&short, late).await {
        Err(StateError::Fenced { .. }) => {}
        other => ensure!(false, "a late commit of a fenced holder was not refused as Fenced: {other:?}"),
    }
    ensure!(store.get(&sync_id, &[key(12_345)]).await.map_err(fail("get"))? == vec![None], "a fenced commit wrote");
    ensure!(
        matches!(store.renew_lease(&short, ttl).await, Err(StateError::Fenced { .. })),
        "renewal of a fenced lease was not refused"
    );
    ensure!(
        matches!(
            store.record_run(&short, &report(&sync_id, short.token, RunStatus::Cancelled)).await,
            Err(StateError::Fenced { .. })
        ),
        "record_run under a fenced lease was not refused"
    );
    store.release_lease(&short).await.map_err(fail("releasing a fenced lease"))?;
    store
        .commit(&taker, StateCommit { applied: vec![entry(1, 1)], ..StateCommit::default() })
        .await
        .map_err(fail("commit by the new holder"))?;
    store.release_lease(&taker).await.map_err(fail("release_lease"))?;
    store.release_lease(&other_lease).await.map_err(fail("release_lease"))?;
    Ok(())
}
