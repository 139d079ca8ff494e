//! Verify: the source read as a dry run reads it, the state walked page by page, each entry
//! judged against what the destination reads back, the destination's keys listed for those
//! this sync never wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use super::reconcile_error;
use crate::destination::{Held, ReadBack};
use crate::diff::{DiffError, DiffOutput, Differ, InvalidRecord, duplicate_reason};
use crate::drift::SchemaSummary;
use crate::error::{ConfigError, Error};
use crate::fingerprint::{Fingerprint, FingerprintAlgorithm, Fingerprinter};
use crate::key::Key;
use crate::metrics as m;
use crate::reconcile::{Mismatch, MismatchKind, MismatchSample, ReconcileReport, VerifyOptions};
use crate::record::Record;
use crate::runner::deliver::RunSchema;
use crate::runner::prior::PriorRejections;
use crate::runner::produce::{Produced, Producer};
use crate::runner::{Mode, SyncInner};
use crate::schema::Schema;
use crate::state::SnapshotEntry;

/// The source's records now, by key (only keys in the sample): their fingerprints, or
/// [`REFUSED`] for a key whose row a transform refused (the source has it, with nothing to
/// send). A plain fingerprint, not an `Option`: 16 bytes less a key.
type Current = HashMap<Key, Fingerprint>;

/// The source has the key, and a transform refused its row (no record fingerprints so).
const REFUSED: Fingerprint = Fingerprint(0x7273_655f_7265_6675_7365_645f_7265_6321);

/// A differ that diffs nothing: it fingerprints the sample's records as the run's differ
/// would, for verify to compare.
struct CollectCurrent {
    options: VerifyOptions,
    algorithm: FingerprintAlgorithm,
    fingerprinter: Option<(Schema, Fingerprinter)>,
    current: Arc<Mutex<Current>>,
}

#[async_trait]
impl Differ for CollectCurrent {
    fn strategy(&self) -> &'static str {
        "verify"
    }

    async fn push(
        &mut self,
        schema: &Schema,
        records: Vec<Record>,
        seen: Vec<Key>,
        out: &mut DiffOutput,
    ) -> Result<(), DiffError> {
        let (_, fingerprinter) = match self.fingerprinter.take() {
            Some((s, f)) if s == *schema => self.fingerprinter.insert((s, f)),
            _ => self.fingerprinter.insert((schema.clone(), Fingerprinter::new(self.algorithm, schema))),
        };
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        for key in seen {
            if self.options.in_sample(&key) {
                current.entry(key).or_insert(REFUSED);
            }
        }
        for record in records {
            let key = match record.key(schema) {
                Ok(key) => key,
                Err(e) => {
                    out.invalid.push(InvalidRecord { key: None, record, reason: e.to_string() });
                    continue;
                }
            };
            if !self.options.in_sample(&key) {
                continue;
            }
            if current.contains_key(&key) {
                // As the run's diff does: the first occurrence counts, later ones are refused.
                out.invalid.push(InvalidRecord { key: Some(key), record, reason: duplicate_reason(schema) });
                continue;
            }
            let fingerprint = fingerprinter.fingerprint(&record);
            current.insert(key, fingerprint);
        }
        Ok(())
    }

    async fn finish(&mut self, _out: &mut DiffOutput) -> Result<(), DiffError> {
        Ok(())
    }
}

/// Reads the source as a dry run would (the sync's transforms, key checks and schema
/// check, a full read) and fingerprints the sample's records; the schema they were
/// fingerprinted under (the columns last delivered) comes with them.
async fn read_current(inner: &SyncInner, options: &VerifyOptions) -> Result<(Current, Arc<Schema>), Error> {
    let mut dry = inner.options.clone();
    dry.dry_run = true;
    dry.validate_dry_run = false;
    dry.full_resync = false;
    let (progress, _) = broadcast::channel(1);
    // No cursor: the whole source, even for an incremental sync. Progress goes nowhere: a
    // verify is not a run.
    let reading = SyncInner { options: dry, cursor_index: None, restrict: None, progress, ..inner.clone() };
    let recorded = inner.state.runs(&inner.id, 8).await?.into_iter().find_map(|r| r.schema);
    let expected = recorded.unwrap_or_else(|| SchemaSummary::of(&inner.schema));
    let run_schema = RunSchema::new(inner.schema.clone());
    let current = Arc::new(Mutex::new(Current::new()));
    let differ = CollectCurrent {
        options: options.clone(),
        algorithm: inner.options.fingerprint_algorithm,
        fingerprinter: None,
        current: current.clone(),
    };
    let producer = Producer::new(
        &reading,
        None,
        Arc::new(PriorRejections::default()),
        CancellationToken::new(),
        None,
        expected,
        run_schema.clone(),
    );
    // A dry run sends nothing down the channel.
    let (tx, _rx) = mpsc::channel(1);
    let produced: Produced = producer.run(Box::new(differ), tx).await;
    if let Some((_, reason)) = produced.read_error {
        return Err(reconcile_error(
            inner,
            format!("the source could not be read as a run reads it, so nothing was compared: {reason}"),
        ));
    }
    if let Some(drift) = produced.drift.filter(|d| !d.is_reorder_only()) {
        return Err(reconcile_error(
            inner,
            format!(
                "the model's columns changed since they were last delivered ({drift}), so the state's fingerprints \
                 do not describe today's records; run the sync, then verify"
            ),
        ));
    }
    let current = std::mem::take(&mut *current.lock().unwrap_or_else(PoisonError::into_inner));
    Ok((current, run_schema.get()))
}

/// What verify tallies.
#[derive(Default)]
struct Tally {
    checked: u64,
    matched: u64,
    foreign: u64,
    in_doubt: u64,
    unsent: u64,
    /// Each mismatch with the state entry it was judged against.
    mismatches: Vec<(Mismatch, SnapshotEntry)>,
}

/// The walk over the state: each entry judged against what the destination holds.
struct Judge<'a> {
    inner: &'a SyncInner,
    read_back: &'a dyn ReadBack,
    schema: &'a Schema,
    fingerprinter: Fingerprinter,
    current: Current,
    tally: Tally,
}

impl Judge<'_> {
    /// Reads back the keys of `entries` (none in doubt) and judges each.
    async fn judge(&mut self, entries: Vec<SnapshotEntry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let keys: Vec<Key> = entries.iter().map(|e| e.key.clone()).collect();
        let held = self.read_back.read(&self.inner.id, self.schema, &keys).await.map_err(|e| Error::Reconcile {
            sync_id: self.inner.id.to_string(),
            message: format!("reading back from destination `{}` failed: {e}", self.inner.destination.name()),
            source: Some(Box::new(e)),
        })?;
        if held.len() != keys.len() {
            return Err(reconcile_error(
                self.inner,
                format!(
                    "destination `{}` read back {} records for {} keys; it must answer one per key",
                    self.inner.destination.name(),
                    held.len(),
                    keys.len()
                ),
            ));
        }
        for (entry, held) in entries.into_iter().zip(held) {
            let current = self.current.remove(&entry.key);
            let has_current = current.is_some();
            let current = current.filter(|f| *f != REFUSED);
            self.tally.checked += 1;
            let kind = match (entry.fingerprint, held) {
                (Some(_), Held::Absent) => Some(MismatchKind::Missing),
                (Some(acknowledged), Held::Record(record)) => {
                    (self.fingerprinter.fingerprint(&record) != acknowledged).then_some(MismatchKind::Stale)
                }
                (Some(_), Held::Unreadable(_)) => Some(MismatchKind::Stale),
                (None, Held::Absent) => None,
                (None, _) if has_current => Some(MismatchKind::Stale),
                (None, _) => Some(MismatchKind::Extra),
            };
            let unsent = match (entry.fingerprint, current) {
                (Some(acknowledged), Some(now)) => now != acknowledged,
                (Some(_), None) => !has_current && self.inner.mode == Mode::Mirror,
                (None, now) => now.is_some(),
            };
            self.tally.unsent += u64::from(unsent);
            match kind {
                Some(kind) => {
                    debug!(key = %entry.key, %kind, "Reconciliation mismatch.");
                    self.tally.mismatches.push((Mismatch { key: entry.key.clone(), kind }, entry));
                }
                None => self.tally.matched += 1,
            }
        }
        Ok(())
    }
}

/// [`SyncJob::verify`](crate::SyncJob::verify).
pub(in crate::runner) async fn verify(inner: &SyncInner, options: &VerifyOptions) -> Result<ReconcileReport, Error> {
    let started = std::time::Instant::now();
    let started_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    check_options(inner, options)?;
    if inner.mode == Mode::Append {
        return Err(reconcile_error(
            inner,
            "an `append` sync's destination holds events, not one record per key; there is nothing to compare a key \
             with"
                .to_owned(),
        ));
    }
    let Some(read_back) = inner.destination.read_back() else {
        return Err(reconcile_error(
            inner,
            format!(
                "destination `{}` cannot read back what it holds (`Destination::read_back` is None); verify needs \
                 one that can: PostgreSQL, SQLite (a keyed table), Redis or memory",
                inner.destination.name()
            ),
        ));
    };
    let meta = inner.state.meta(&inner.id).await?;
    if let Some(stored) = meta.fingerprint_algorithm
        && stored != inner.options.fingerprint_algorithm
    {
        return Err(Error::FingerprintMismatch {
            sync_id: inner.id.to_string(),
            stored: stored.to_string(),
            configured: inner.options.fingerprint_algorithm.to_string(),
        });
    }
    let span = info_span!("sync_verify", sync = %inner.id, sample = options.sample);
    async {
        let (current, schema) = read_current(inner, options).await?;
        let mut judge = Judge {
            inner,
            read_back,
            schema: &schema,
            fingerprinter: Fingerprinter::new(inner.options.fingerprint_algorithm, &schema),
            current,
            tally: Tally::default(),
        };

        // The state, page by page: every entry of the sample judged against the destination.
        let mut after: Option<Key> = None;
        let mut batch = Vec::with_capacity(options.read_batch);
        loop {
            let page = inner.state.scan(&inner.id, after.as_ref(), options.page_size).await?;
            let full = page.len() == options.page_size;
            after = page.last().map(|e| e.key.clone());
            for entry in page.into_iter().filter(|e| options.in_sample(&e.key)) {
                if entry.pending.is_some() {
                    judge.tally.in_doubt += 1;
                    judge.current.remove(&entry.key);
                    continue;
                }
                batch.push(entry);
                if batch.len() >= options.read_batch {
                    judge.judge(std::mem::take(&mut batch)).await?;
                }
            }
            if !full {
                break;
            }
        }
        judge.judge(batch).await?;
        // What the source has and the state does not: new keys, the next run's inserts.
        judge.tally.unsent += judge.current.values().filter(|f| **f != REFUSED).count() as u64;
        judge.current = Current::new();

        judge.tally.foreign = count_foreign(inner, read_back, &schema, options).await?;
        let mut tally = judge.tally;
        drop_moved(inner, options, &mut tally).await?;
        Ok(report(inner, options, tally, started_at_ms, started.elapsed()))
    }
    .instrument(span)
    .await
}

fn check_options(inner: &SyncInner, options: &VerifyOptions) -> Result<(), Error> {
    let invalid = |option: &'static str, message: String| {
        Error::Config(ConfigError::InvalidOption { sync_id: inner.id.to_string(), option, message })
    };
    if !(options.sample > 0.0 && options.sample <= 1.0) {
        return Err(invalid(
            "verify sample",
            format!("is {}; it is the fraction of keys checked, above 0 and at most 1 (every key)", options.sample),
        ));
    }
    if options.read_batch == 0 || options.page_size == 0 {
        return Err(invalid("verify read_batch and page_size", "must be greater than zero".to_owned()));
    }
    Ok(())
}

/// Keys the destination holds that this sync never wrote (no state entry), in the sample.
async fn count_foreign(
    inner: &SyncInner,
    read_back: &dyn ReadBack,
    schema: &Schema,
    options: &VerifyOptions,
) -> Result<u64, Error> {
    let mut foreign = 0;
    let mut after: Option<Key> = None;
    loop {
        let page = read_back.keys(&inner.id, schema, after.as_ref(), options.page_size).await.map_err(|e| {
            Error::Reconcile {
                sync_id: inner.id.to_string(),
                message: format!("listing the keys destination `{}` holds failed: {e}", inner.destination.name()),
                source: Some(Box::new(e)),
            }
        })?;
        let full = page.len() >= options.page_size;
        if let Some(last) = page.last() {
            if after.as_ref().is_some_and(|a| a >= last) {
                return Err(reconcile_error(
                    inner,
                    format!(
                        "destination `{}` listed keys that do not follow the page before; a read-back must list \
                         each key once, in ascending order",
                        inner.destination.name()
                    ),
                ));
            }
            after = Some(last.clone());
        }
        // A partition's verify counts only its own keys: the others are its siblings'.
        let sampled: Vec<Key> = page
            .into_iter()
            .filter(|k| options.in_sample(k) && inner.partition.is_none_or(|p| p.contains(k)))
            .collect();
        for chunk in sampled.chunks(options.read_batch) {
            let entries = inner.state.get(&inner.id, chunk).await?;
            foreign += entries.iter().filter(|e| e.is_none()).count() as u64;
        }
        if !full {
            break;
        }
    }
    Ok(foreign)
}

/// Drops the mismatches whose state entry changed while verify read (a run committed in
/// between): they were judged against an account that no longer holds.
async fn drop_moved(inner: &SyncInner, options: &VerifyOptions, tally: &mut Tally) -> Result<(), Error> {
    let mut kept = Vec::with_capacity(tally.mismatches.len());
    for chunk in tally.mismatches.chunks(options.read_batch) {
        let keys: Vec<Key> = chunk.iter().map(|(m, _)| m.key.clone()).collect();
        let now = inner.state.get(&inner.id, &keys).await?;
        for ((mismatch, before), now) in chunk.iter().zip(now) {
            if now.as_ref() == Some(before) {
                kept.push((mismatch.clone(), before.clone()));
            } else {
                tally.checked -= 1;
            }
        }
    }
    tally.mismatches = kept;
    Ok(())
}

fn report(
    inner: &SyncInner,
    options: &VerifyOptions,
    tally: Tally,
    started_at_ms: u64,
    duration: std::time::Duration,
) -> ReconcileReport {
    let mut mismatches: Vec<Mismatch> = tally.mismatches.into_iter().map(|(m, _)| m).collect();
    mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    let count = |kind| mismatches.iter().filter(|m| m.kind == kind).count() as u64;
    let report = ReconcileReport {
        sync_id: inner.id.to_string(),
        destination: inner.destination.name().to_owned(),
        mode: inner.mode,
        sample: options.sample,
        started_at_ms,
        duration,
        checked: tally.checked,
        matched: tally.matched,
        missing: count(MismatchKind::Missing),
        stale: count(MismatchKind::Stale),
        extra: count(MismatchKind::Extra),
        foreign: tally.foreign,
        in_doubt: tally.in_doubt,
        unsent: tally.unsent,
        samples: mismatches
            .iter()
            .take(options.samples)
            .map(|m| MismatchSample { key: m.key.redacted(), kind: m.kind })
            .collect(),
        mismatches,
    };
    let sync = inner.id.to_string();
    for kind in [MismatchKind::Missing, MismatchKind::Stale, MismatchKind::Extra] {
        let n = match kind {
            MismatchKind::Missing => report.missing,
            MismatchKind::Stale => report.stale,
            MismatchKind::Extra => report.extra,
        };
        metrics::gauge!(m::RECONCILE_MISMATCHES, m::SYNC => sync.clone(), m::KIND => kind.as_str()).set(n as f64);
    }
    metrics::gauge!(m::RECONCILE_CHECKED, m::SYNC => sync.clone()).set(report.checked as f64);
    metrics::gauge!(m::RECONCILE_MISMATCH_RATIO, m::SYNC => sync).set(report.mismatch_ratio());
    info!(
        sync = %inner.id,
        checked = report.checked,
        missing = report.missing,
        stale = report.stale,
        extra = report.extra,
        foreign = report.foreign,
        in_doubt = report.in_doubt,
        unsent = report.unsent,
        ratio = report.mismatch_ratio(),
        "Reconciliation finished."
    );
    report
}
