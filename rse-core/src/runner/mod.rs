//! The runner: a sync built from its four parts, and what one run of it does.

mod consume;
mod deliver;
mod layout;
mod lease;
mod operator;
mod options;
mod outcome;
mod pace;
mod plan;
mod prior;
mod produce;
mod pushdown;
mod quota;
mod reconcile;
mod run;
mod suppress;
mod telemetry;

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use options::{DEFAULT_MAX_DELETES, DiffStrategy, MaxDeletes, Mode, SyncOptions};

use crate::destination::Destination;
use crate::error::{ConfigError, Error};
use crate::observe::{Observers, OutcomeObserver};
use crate::partition::Partition;
use crate::reconcile::{ReconcileReport, VerifyOptions};
use crate::report::{ProgressEvent, SyncReport};
use crate::schema::Schema;
use crate::shared_quota::SharedQuota;
use crate::source::Source;
use crate::state::StateStore;
use crate::suppression::Suppressions;
use crate::transform::Transform;
use crate::value::DataType;

/// A sync: one model delivered to one destination, with its state. (Named `SyncJob` so
/// that `use rse::*` does not shadow the standard library's `Sync` marker trait.)
///
/// Built with [`SyncJob::builder`]; each [`run`](SyncJob::run) reads the source, diffs against
/// what the destination acknowledged, delivers the changes and commits state per
/// acknowledged batch.
///
/// ```
/// # use std::sync::Arc;
/// # use rse_core::{*, memory::*};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let schema = Schema::new(vec![Field::required("id", DataType::Int), Field::new("score", DataType::Float)], &["id"])?;
/// let source = MemorySource::new(schema.into_arc(), vec![Record::new(vec![1.into(), 0.8.into()])]);
/// let destination = MemoryDestination::new();
/// let sync = SyncJob::builder("scores")
///     .source(source)
///     .destination(destination.clone())
///     .state(MemoryStateStore::new())
///     .build()
///     .await?;
/// let report = sync.run().await?;
/// assert_eq!(report.counts.applied.insert, 1);
/// assert_eq!(sync.run().await?.counts.unchanged, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SyncJob {
    inner: Arc<SyncInner>,
}

#[derive(Clone)]
struct SyncInner {
    /// The id the state lives under: the sync's, or its partition's (`crm#p2of4`).
    id: Arc<str>,
    /// The sync's own id (the same as `id` unless partitioned): a pause under it stops every
    /// partition, and it names the shared quota's schedule.
    base_id: Arc<str>,
    /// The partition this job runs, if the sync is partitioned.
    partition: Option<Partition>,
    /// The request schedule shared with the sync's other runners.
    shared_quota: Option<Arc<dyn SharedQuota>>,
    source: Arc<dyn Source>,
    transforms: Vec<Arc<dyn Transform>>,
    destination: Arc<dyn Destination>,
    state: Arc<dyn StateStore>,
    mode: Mode,
    options: SyncOptions,
    /// The schema after every transform: what the destination receives.
    schema: Arc<Schema>,
    /// The schema's field index of the source's cursor column.
    cursor_index: Option<usize>,
    use_merge: bool,
    /// With the pushdown strategy: the epoch of this configuration (see [`crate::pushdown`]).
    pushdown_epoch: Option<Arc<str>>,
    progress: broadcast::Sender<ProgressEvent>,
    /// Told each batch's committed outcomes and each run's report.
    observers: Observers,
    /// Withdrawn consent, loaded at every run.
    suppressions: Vec<Arc<dyn Suppressions>>,
    /// A repair's keys: the run plans changes for these only (see `reconcile.rs`).
    restrict: Option<Arc<reconcile::Restriction>>,
    /// The sync's metrics, their labels and what carries over from run to run.
    telemetry: Arc<telemetry::SyncTelemetry>,
}

impl SyncInner {
    /// A run's handle on the sync's metrics (silent in a dry run).
    fn metrics(&self) -> telemetry::RunMetrics {
        telemetry::RunMetrics::new(self.telemetry.clone(), self.options.dry_run)
    }

    /// The keys a run covers: the canary's fraction and the partition's share; `None` for
    /// every key.
    fn key_filter(&self) -> Option<crate::canary::Canary> {
        let canary = self.options.canary.and_then(crate::canary::Canary::new);
        match self.partition {
            Some(partition) => Some(crate::canary::Canary::within(canary, partition)),
            None => canary,
        }
    }
}

impl std::fmt::Debug for SyncJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncJob")
            .field("id", &self.inner.id)
            .field("source", &self.inner.source.name())
            .field("destination", &self.inner.destination.name())
            .field("state", &self.inner.state.name())
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

impl SyncJob {
    /// Starts building the sync `id`. The id names the sync's state: two syncs with the
    /// same id share (and fight over) one snapshot.
    pub fn builder(id: impl Into<String>) -> SyncBuilder {
        SyncBuilder {
            id: id.into(),
            source: None,
            transforms: Vec::new(),
            destination: None,
            state: None,
            mode: Mode::default(),
            options: SyncOptions::default(),
            key: None,
            observers: Vec::new(),
            suppressions: Vec::new(),
            partition: None,
            shared_quota: None,
        }
    }

    /// The id the sync's state lives under: the sync's own, or for a partitioned sync its
    /// partition's (`"crm#p2of4"`, see [`Partition::sync_id`]).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The sync's own id, without a partition's suffix.
    pub fn base_id(&self) -> &str {
        &self.inner.base_id
    }

    /// The partition this job runs, if the sync is partitioned.
    pub fn partition(&self) -> Option<Partition> {
        self.inner.partition
    }

    /// The schema the destination receives (after transforms).
    pub fn schema(&self) -> &Arc<Schema> {
        &self.inner.schema
    }

    /// The sync's options.
    pub fn options(&self) -> &SyncOptions {
        &self.inner.options
    }

    /// The sync's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The source the sync reads, for a host that checks or describes it apart from a run
    /// (a command's `check`, which reads the schema again).
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.inner.source
    }

    /// The destination the sync writes, for a host that checks it apart from a run
    /// ([`Destination::check`]: reachability and credentials, no write).
    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.inner.destination
    }

    /// The state store the sync keeps its snapshot, leases, runs and pauses in (the one
    /// given to the builder, or the exactly-once destination's own): what a host reads for
    /// status and history, or pauses and resumes the sync through.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.inner.state
    }

    /// A stream of progress events of every later run.
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.inner.progress.subscribe()
    }

    /// Runs the sync once.
    ///
    /// A run that ends early but cleanly — circuit open, a source that failed mid-read, a
    /// lost lease — returns `Ok` with a report whose status says why; everything the
    /// destination acknowledged before that is committed.
    ///
    /// # Errors
    /// [`Error::State`] when the lease cannot be taken (another runner holds it) or the
    /// state cannot be read; [`Error::FingerprintMismatch`] when the state was
    /// fingerprinted with another algorithm.
    pub async fn run(&self) -> Result<SyncReport, Error> {
        self.run_with_cancel(CancellationToken::new()).await
    }

    /// Runs the sync once; cancelling `cancel` stops reading and sending, waits for the
    /// writes in flight, commits what they acknowledged and returns a `Cancelled` report.
    ///
    /// Dropping the returned future instead stops at once, as a crash would: the next run
    /// sends again whatever was not committed, under the same idempotency keys.
    ///
    /// # Errors
    /// As for [`run`](SyncJob::run).
    pub async fn run_with_cancel(&self, cancel: CancellationToken) -> Result<SyncReport, Error> {
        run::run(&self.inner, cancel).await
    }

    /// Compares what the destination holds with what the state says it acknowledged, and
    /// the source with the state: the keys `missing`, `stale` or `extra` at the destination,
    /// those it holds that this sync never wrote, and the next run's pending work (see
    /// [`crate::reconcile`] for the exact definitions). Reads only: no lease is taken,
    /// nothing is written, the destination is read through [`Destination::read_back`], and
    /// the source through the sync's transforms as a run reads it (a full read). Sets the
    /// `rse_reconcile_*` gauges.
    ///
    /// Memory grows with the keys of the sample: each key and its fingerprint, about 100 bytes
    /// a key (100 MB for a million keys checked).
    ///
    /// A run that commits while verify reads may make a key look mismatched; verify drops a
    /// mismatch whose state entry changed meanwhile, and a repair of one that slips through
    /// re-sends one record. Verify between runs for an exact account.
    ///
    /// ```
    /// # use rse_core::{*, memory::*};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let schema = Schema::new(vec![Field::required("id", DataType::Int), Field::new("score", DataType::Float)], &["id"])?;
    /// let rows = vec![Record::new(vec![1.into(), 0.8.into()]), Record::new(vec![2.into(), 0.4.into()])];
    /// let destination = MemoryDestination::new();
    /// let sync = SyncJob::builder("scores")
    ///     .source(MemorySource::new(schema.into_arc(), rows))
    ///     .destination(destination.clone())
    ///     .state(MemoryStateStore::new())
    ///     .build()
    ///     .await?;
    /// sync.run().await?;
    /// destination.remove(&Key::from_values(&[Value::Int(2)])); // lost behind the sync's back
    ///
    /// let found = sync.verify(&VerifyOptions::default()).await?;
    /// assert_eq!((found.checked, found.missing), (2, 1));
    /// let repaired = sync.repair(&found).await?; // sends key 2 again, nothing else
    /// assert_eq!(repaired.counts.applied.total(), 1);
    /// assert!(sync.verify(&VerifyOptions::default()).await?.is_clean());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Reconcile`] when the destination cannot read back, the mode is `Append`, the
    /// source cannot be read or its columns changed since they were last delivered, or the
    /// destination's read fails; [`Error::State`] when the state cannot be read;
    /// [`Error::FingerprintMismatch`] when the state was fingerprinted with another
    /// algorithm; [`Error::Config`] for options out of range.
    pub async fn verify(&self, options: &VerifyOptions) -> Result<ReconcileReport, Error> {
        reconcile::verify(&self.inner, options).await
    }

    /// Sends again exactly the keys `report` found mismatched, as an ordinary run sends:
    /// under the lease, with the same batching, pacing, idempotency keys, state commits and
    /// delete guard. A missing or stale key gets its current source record (as the mode
    /// sends it: an insert or an update); an extra key is deleted in `Mirror` mode. Nothing
    /// else is sent: other changes the source has wait for the next run. Under `Insert`
    /// stale keys are left (the mode never rewrites a record), and outside `Mirror` extra
    /// keys are (only `Mirror` deletes); a key the source no longer has is sent nothing
    /// unless the mode deletes it. Returns the run's report, kept in the run history.
    ///
    /// How the run is restricted (the keys' state entries marked as pending in one commit
    /// under the lease, then a run that plans changes for those keys only) is described in
    /// [`crate::reconcile`]; a repair that does not complete is finished by the next run.
    ///
    /// # Errors
    /// [`Error::Reconcile`] for a report of another sync, an `Append` or dry-run sync, or a
    /// full resync that has not completed (run the sync first); otherwise as
    /// [`run`](SyncJob::run).
    pub async fn repair(&self, report: &ReconcileReport) -> Result<SyncReport, Error> {
        reconcile::repair(&self.inner, report, CancellationToken::new()).await
    }
}

/// Builds a [`SyncJob`]; [`build`](SyncBuilder::build) checks the whole configuration.
#[must_use = "a builder does nothing until built"]
pub struct SyncBuilder {
    id: String,
    source: Option<Arc<dyn Source>>,
    transforms: Vec<Arc<dyn Transform>>,
    destination: Option<Arc<dyn Destination>>,
    state: Option<Arc<dyn StateStore>>,
    mode: Mode,
    options: SyncOptions,
    key: Option<Vec<String>>,
    observers: Vec<Arc<dyn OutcomeObserver>>,
    suppressions: Vec<Arc<dyn Suppressions>>,
    partition: Option<Partition>,
    shared_quota: Option<Arc<dyn SharedQuota>>,
}

impl std::fmt::Debug for SyncBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncBuilder").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SyncBuilder {
    /// The source to read.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Appends a transform to the chain.
    pub fn transform(mut self, transform: impl Transform + 'static) -> Self {
        self.transforms.push(Arc::new(transform));
        self
    }

    /// The destination to deliver to.
    pub fn destination(mut self, destination: impl Destination + 'static) -> Self {
        self.destination = Some(Arc::new(destination));
        self
    }

    /// The state store. Optional with an exactly-once destination
    /// ([`Destination::transactional_state`]): the store it commits into is used.
    pub fn state(mut self, state: impl StateStore + 'static) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// The mode (default [`Mode::Upsert`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The options.
    pub fn options(mut self, options: SyncOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a list of keys and identifiers whose consent was withdrawn, loaded at every
    /// run (several lists add up): their records are never sent, and the destination's
    /// copies are deleted (in any mode, past the delete guard) where it can delete. See
    /// [`crate::suppression`].
    pub fn suppressions(mut self, suppressions: impl Suppressions + 'static) -> Self {
        self.suppressions.push(Arc::new(suppressions));
        self
    }

    /// Overrides the key columns the source declares (named as the source names them).
    pub fn key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Attaches an observer told each batch's per-record outcomes once they are committed,
    /// and each run's report (a status write-back, an audit log); several may be attached.
    /// See [`observe`](crate::observe) for what it is told and when.
    pub fn observer(mut self, observer: impl OutcomeObserver + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Runs one partition of the sync: only the keys whose hash falls in `partition`'s share
    /// are planned, sent, deleted and recorded, under the partition's own state, lease,
    /// history and pause (`"<id>#p<i>of<N>"`). Run every partition, each in its own process
    /// or host (a Kubernetes Indexed Job's pods), with the same id and count; see
    /// [`crate::partition`] for the key split, the delete guard and re-partitioning.
    ///
    /// ```
    /// # use rse_core::{*, memory::*};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let schema = Schema::new(vec![Field::required("id", DataType::Int)], &["id"])?.into_arc();
    /// let rows: Vec<Record> = (0..100).map(|i| Record::new(vec![i.into()])).collect();
    /// let (destination, state) = (MemoryDestination::new(), MemoryStateStore::new());
    /// let mut applied = 0;
    /// for index in 0..4 {
    ///     let sync = SyncJob::builder("scores")
    ///         .source(MemorySource::new(schema.clone(), rows.clone()))
    ///         .destination(destination.clone())
    ///         .state(state.clone())
    ///         .partition(Partition::new(index, 4)?)
    ///         .build()
    ///         .await?;
    ///     assert_eq!(sync.id(), format!("scores#p{index}of4"));
    ///     applied += sync.run().await?.counts.applied.insert;
    /// }
    /// assert_eq!(applied, 100, "each key sent once, by its own partition");
    /// # Ok(()) }
    /// ```
    pub fn partition(mut self, partition: impl Into<Option<Partition>>) -> Self {
        self.partition = partition.into();
        self
    }

    /// Paces every write to the destination's [`RateLimit`](crate::RateLimit) through a
    /// schedule shared with every other runner of the sync (its other partitions, in other
    /// processes or hosts), named by the sync's own id: together they send at most the
    /// limit. See [`crate::shared_quota`]. Without a rate limit declared by the destination
    /// it does nothing.
    pub fn shared_quota(mut self, quota: impl SharedQuota + 'static) -> Self {
        self.shared_quota = Some(Arc::new(quota));
        self
    }

    /// Checks the configuration and builds the sync. Reads the source's schema.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting at fault: a missing part, no key columns, an
    /// unknown field in a transform, a mode the destination does not support, a zero batch
    /// size, a delete fraction outside 0–1, the merge strategy on a source that cannot
    /// read in key order, an exactly-once destination that commits into another state
    /// store than the sync's, a change-time column that is not a timestamp column of the
    /// records after transforms, or a sync id that ends like a partition's (`#p2of4`).
    pub async fn build(self) -> Result<SyncJob, ConfigError> {
        if Partition::split_sync_id(&self.id).is_some() {
            return Err(invalid(
                &self.id,
                "sync id",
                "ends like the id of a partition's state (`#p<index>of<count>`), which rse keeps for partitioned \
                 syncs; rename the sync"
                    .to_owned(),
            ));
        }
        let base_id: Arc<str> = self.id.as_str().into();
        let sync_id = self.partition.map_or_else(|| self.id.clone(), |p| p.sync_id(&self.id));
        let missing = |part| ConfigError::Missing { sync_id: sync_id.clone(), part };
        let source = self.source.ok_or_else(|| missing("source"))?;
        let destination = self.destination.ok_or_else(|| missing("destination"))?;
        // An exactly-once destination brings its own store.
        let state = self
            .state
            .or_else(|| destination.transactional_state().and_then(|t| t.state_store()))
            .ok_or_else(|| missing("state"))?;
        let options = self.options;
        check_options(&sync_id, &options)?;

        let mut source_schema =
            source.schema().await.map_err(|source| ConfigError::Source { sync_id: sync_id.clone(), source })?;
        if let Some(key) = &self.key {
            let keyed = Schema::clone(&source_schema).with_key(key);
            source_schema =
                keyed.map_err(|source| ConfigError::Schema { sync_id: sync_id.clone(), source })?.into_arc();
        }
        let capabilities = source.capabilities();
        let cursor_index = match &capabilities.cursor_field {
            Some(field) => Some(
                source_schema
                    .require(field, &format!("cursor column of source `{}`", source.name()))
                    .map_err(|source| ConfigError::Schema { sync_id: sync_id.clone(), source })?,
            ),
            None => None,
        };
        let mut schema = source_schema.clone();
        let mut keys_kept = true;
        for t in &self.transforms {
            keys_kept &= t.keeps_key_values(&schema);
            schema = t
                .output_schema(&schema)
                .map_err(|source| ConfigError::Transform { sync_id: sync_id.clone(), source })?;
        }
        if schema.key_indices().is_empty() {
            return Err(ConfigError::NoKey { sync_id, available: schema.field_names() });
        }
        check_change_time(&sync_id, &options, &schema)?;

        destination.check_schema(&schema).map_err(|source| ConfigError::Destination {
            sync_id: sync_id.clone(),
            destination: destination.name().to_owned(),
            source,
        })?;
        let dest_caps = destination.capabilities();
        for op in self.mode.ops() {
            if !dest_caps.supports(*op) {
                return Err(ConfigError::UnsupportedMode {
                    sync_id,
                    mode: self.mode.to_string(),
                    op: op.to_string(),
                    destination: destination.name().to_owned(),
                    supported: dest_caps.ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
        if dest_caps.max_batch_rows == 0 || dest_caps.max_concurrency == 0 || dest_caps.max_batch_bytes == 0 {
            return Err(ConfigError::InvalidOption {
                sync_id,
                option: "destination capabilities",
                message: format!(
                    "of `{}` declare a zero batch size or concurrency; a destination must accept at least one change per write",
                    destination.name()
                ),
            });
        }

        if let Some(transactional) = destination.transactional_state()
            && transactional.state_store_name() != state.name()
        {
            return Err(ConfigError::StateStoreMismatch {
                sync_id,
                destination: destination.name().to_owned(),
                expected: transactional.state_store_name().to_owned(),
                given: state.name().to_owned(),
            });
        }

        let incremental = cursor_index.is_some() && self.mode != Mode::Mirror;
        let use_merge = match options.diff_strategy {
            DiffStrategy::Hash => false,
            // A transform that rewrites key values (a cast, a hash) breaks the source's key
            // order, which the merge diff relies on.
            DiffStrategy::Auto => capabilities.ordered_by_key && !incremental && keys_kept,
            // A full re-diff runs as `Auto` would.
            DiffStrategy::Pushdown => capabilities.ordered_by_key && keys_kept,
            DiffStrategy::Merge => {
                if !capabilities.ordered_by_key {
                    return Err(invalid(
                        &sync_id,
                        "diff_strategy",
                        format!("is merge, but source `{}` cannot read in key order; use Hash or Auto", source.name()),
                    ));
                }
                if incremental {
                    return Err(invalid(
                        &sync_id,
                        "diff_strategy",
                        "is merge, but the source reads incrementally from a cursor; use Hash or Auto".to_owned(),
                    ));
                }
                true
            }
        };

        let pushdown_epoch = match options.diff_strategy {
            DiffStrategy::Pushdown => Some(
                pushdown_epoch(&sync_id, source.as_ref(), &source_schema, &self.transforms, self.mode, &options)?
                    .into(),
            ),
            _ => None,
        };
        if pushdown_epoch.is_some() {
            if self.partition.is_some() {
                return Err(invalid(
                    &sync_id,
                    "diff_strategy",
                    "is pushdown, but the sync is partitioned: each partition would read every other partition's \
                     rows as new at every run; run pushdown syncs unpartitioned, or use Auto"
                        .to_owned(),
                ));
            }
            if incremental {
                return Err(invalid(
                    &sync_id,
                    "diff_strategy",
                    format!(
                        "is pushdown, but source `{}` reads incrementally from a cursor; pushdown already reads only \
                         what changed: drop the cursor column, or use Auto",
                        source.name()
                    ),
                ));
            }
            if let Some(t) = self.transforms.iter().find(|t| !t.keeps_key_values(&source_schema)) {
                return Err(invalid(
                    &sync_id,
                    "diff_strategy",
                    format!(
                        "is pushdown, but transform `{}` may rewrite key values, and pushdown matches the source's \
                         keys with the delivered ones; rewrite the key in the model's SQL, or use Auto",
                        t.name()
                    ),
                ));
            }
        }

        let (progress, _) = broadcast::channel(1024);
        let id: Arc<str> = sync_id.into();
        let telemetry = Arc::new(telemetry::SyncTelemetry::new(&id, destination.name()));
        Ok(SyncJob {
            inner: Arc::new(SyncInner {
                id,
                base_id,
                partition: self.partition,
                shared_quota: self.shared_quota,
                source,
                transforms: self.transforms,
                destination,
                state,
                mode: self.mode,
                options,
                schema,
                cursor_index,
                use_merge,
                pushdown_epoch,
                progress,
                observers: Observers::new(self.observers),
                suppressions: self.suppressions,
                restrict: None,
                telemetry,
            }),
        })
    }
}

/// The epoch of a pushdown sync's configuration: a digest of everything that shapes the
/// records after transforms (the source's columns, each transform's configuration, the mode
/// and the fingerprint algorithm). Refuses a source without pushdown and a transform that
/// cannot describe its configuration.
fn pushdown_epoch(
    sync_id: &str,
    source: &dyn Source,
    source_schema: &Schema,
    transforms: &[Arc<dyn Transform>],
    mode: Mode,
    options: &SyncOptions,
) -> Result<String, ConfigError> {
    use sha2::{Digest, Sha256};
    if source.pushdown().is_none() {
        return Err(invalid(
            sync_id,
            "diff_strategy",
            format!(
                "is pushdown, but source `{}` cannot diff in its store as configured (a SQL source needs a \
                 schema for rse's tables first: PostgresSource::with_pushdown_schema, `pushdown_schema` in a \
                 configuration file); or use Auto",
                source.name()
            ),
        ));
    }
    let mut digest = Sha256::new();
    let mut part = |label: &str, text: &str| {
        digest.update((label.len() as u64).to_be_bytes());
        digest.update(label.as_bytes());
        digest.update((text.len() as u64).to_be_bytes());
        digest.update(text.as_bytes());
    };
    part("rse pushdown epoch", "1");
    part("fingerprint", &options.fingerprint_algorithm.to_string());
    part("mode", &mode.to_string());
    for field in source_schema.fields() {
        part("field", &format!("{}:{}:{}", field.name, field.data_type, field.nullable));
    }
    part("key", &source_schema.key_names().collect::<Vec<_>>().join(","));
    for t in transforms {
        let Some(config) = t.config_digest() else {
            return Err(invalid(
                sync_id,
                "diff_strategy",
                format!(
                    "is pushdown, but transform `{}` cannot describe its configuration, so a change to it would go \
                     unnoticed; implement Transform::config_digest for it, or use Auto",
                    t.name()
                ),
            ));
        };
        part("transform", t.name());
        part("config", &config);
    }
    Ok(digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect())
}

fn invalid(sync_id: &str, option: &'static str, message: String) -> ConfigError {
    ConfigError::InvalidOption { sync_id: sync_id.to_owned(), option, message }
}

/// The change-time column must be a timestamp column of the records the destination receives.
fn check_change_time(sync_id: &str, options: &SyncOptions, schema: &Schema) -> Result<(), ConfigError> {
    let Some(name) = &options.change_time_field else { return Ok(()) };
    match schema.index_of(name).and_then(|i| schema.field(i)) {
        None => Err(invalid(
            sync_id,
            "change_time_field",
            format!(
                "names `{name}`, which is not a column of the records after transforms (columns: {}); name the \
                 timestamp column that says when a record last changed",
                schema.field_names()
            ),
        )),
        Some(field) if field.data_type != DataType::Timestamp => Err(invalid(
            sync_id,
            "change_time_field",
            format!(
                "names `{name}`, a {} column; it must name a timestamp column (cast it with a transform if the \
                 source reads it as another type)",
                field.data_type
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn check_options(sync_id: &str, o: &SyncOptions) -> Result<(), ConfigError> {
    let positive = [
        ("batch_rows", o.batch_rows == 0),
        ("batch_bytes", o.batch_bytes == 0),
        ("max_concurrency", o.max_concurrency == 0),
        ("max_attempts", o.max_attempts == 0),
        ("read_batch_size", o.read_batch_size == 0),
        ("lease_ttl", o.lease_ttl.is_zero()),
        ("circuit_breaker_threshold", o.circuit_breaker_threshold == 0),
    ];
    for (option, zero) in positive {
        if zero {
            return Err(invalid(sync_id, option, "must be greater than zero".to_owned()));
        }
    }
    if let Some(MaxDeletes::Fraction(f) | MaxDeletes::FractionAbove { fraction: f, .. }) = o.max_deletes
        && !(0.0..=1.0).contains(&f)
    {
        return Err(invalid(sync_id, "max_deletes", format!("fraction must be within 0.0–1.0, got {f}")));
    }
    if let Some(fraction) = o.canary
        && crate::canary::Canary::new(fraction).is_none()
    {
        return Err(invalid(
            sync_id,
            "canary",
            format!(
                "is {fraction}; it is the fraction of keys a run covers, above 0 and at most 1 (0.01 is 1 %, 1 is \
                 every key)"
            ),
        ));
    }
    if !(0.0..1.0).contains(&o.quota_reserve) {
        return Err(invalid(
            sync_id,
            "quota_reserve",
            format!(
                "is {}; it is the share of a reported allowance left for other integrations, from 0 (none) to below 1 \
                 (0.2 leaves a fifth)",
                o.quota_reserve
            ),
        ));
    }
    Ok(())
}
