//! Sync modes and options.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drift::SchemaDriftPolicy;

use crate::change::Op;
use crate::fingerprint::FingerprintAlgorithm;

/// What a sync does with the diff.
///
/// Written in lower case in configuration (`"mirror"`); the capitalised names of reports
/// recorded by earlier versions are read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Insert new keys, update changed ones; never delete. The default.
    #[default]
    #[serde(alias = "Upsert")]
    Upsert,
    /// Insert only keys new to this sync; changed records are skipped.
    #[serde(alias = "Insert")]
    Insert,
    /// Update every new or changed record; the destination rejects keys it does not have
    /// (a CRM where records are created elsewhere).
    #[serde(alias = "Update")]
    Update,
    /// Upsert, and delete keys this sync delivered that the source no longer has.
    #[serde(alias = "Mirror")]
    Mirror,
    /// Append every new or changed record as an event.
    #[serde(alias = "Append")]
    Append,
}

impl Mode {
    /// The destination operations this mode sends.
    pub fn ops(self) -> &'static [Op] {
        match self {
            Mode::Upsert => &[Op::Insert, Op::Update],
            Mode::Insert => &[Op::Insert],
            Mode::Update => &[Op::Update],
            Mode::Mirror => &[Op::Insert, Op::Update, Op::Delete],
            Mode::Append => &[Op::Append],
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Upsert => "upsert",
            Mode::Insert => "insert",
            Mode::Update => "update",
            Mode::Mirror => "mirror",
            Mode::Append => "append",
        })
    }
}

/// The most deletes a `Mirror` run may send; above it, every delete is withheld and the
/// report says why. An empty source table must never wipe a CRM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MaxDeletes {
    /// At most this many deletes.
    Count(u64),
    /// At most this fraction (0.0–1.0) of the keys this sync has delivered.
    Fraction(f64),
    /// At most this fraction of the keys this sync has delivered, once a run deletes more
    /// than `floor` keys: on a small sync one delete is already a large fraction.
    FractionAbove {
        /// The fraction (0.0–1.0).
        fraction: f64,
        /// Runs deleting at most this many keys are not held to the fraction.
        floor: u64,
    },
}

/// How the diff finds changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffStrategy {
    /// `Merge` when the source can read in key order and the read is full, else `Hash`.
    #[default]
    Auto,
    /// Snapshot keys in memory; any source, any order.
    Hash,
    /// Source and snapshot walked side by side in key order; memory independent of size.
    Merge,
    /// The source's own diff in its warehouse (see [`crate::pushdown`]): only new, changed
    /// and vanished rows are read, each looked up in the state store. Needs a source that
    /// offers [`Source::pushdown`](crate::Source::pushdown), no incremental cursor, and
    /// transforms that keep key values and describe their configuration
    /// ([`Transform::config_digest`](crate::Transform::config_digest)); the sync refuses to
    /// build otherwise. The first run, and the first after a change of transforms, source
    /// columns, mode or fingerprint algorithm, a state reset or a `full_resync`, re-diffs
    /// the whole model (as `Auto` would) and records what it delivered; later runs read only
    /// what changed. `Auto` never picks it: it writes a table into the source's store.
    Pushdown,
}

/// Options of a sync. Built with `with_*` methods from [`SyncOptions::default`], or read
/// from a configuration file: every field is optional there (its default applies), an
/// unknown one is refused, and durations read as `"30s"` (see [`crate::config`]).
///
/// ```
/// # use std::time::Duration;
/// # use rse_core::{MaxDeletes, SyncOptions};
/// let options: SyncOptions =
///     serde_json::from_str(r#"{ "max_deletes": { "count": 100 }, "linger": "50ms" }"#).unwrap();
/// assert_eq!(options.max_deletes, Some(MaxDeletes::Count(100)));
/// assert_eq!(options.linger, Duration::from_millis(50));
/// assert_eq!(options.batch_rows, SyncOptions::default().batch_rows);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Send every record regardless of its fingerprint and rebuild the snapshot; never delete.
    /// A full resync that does not complete (a crash, a cancellation, a spent quota, a
    /// failure) is resumed by the sync's next run, which sends every record too, until one
    /// completes: a destination that replaces its contents on a full resync (an ad audience)
    /// must not be left with only part of them.
    pub full_resync: bool,
    /// Plan and report; send and commit nothing.
    pub dry_run: bool,
    /// In a dry run, have the destination check each planned batch without applying it
    /// ([`Destination::validate`](crate::Destination::validate): Google's `validateOnly`),
    /// and report what it would refuse. It costs the destination's API calls (and quota);
    /// a destination that cannot check is noted in the log and the run goes on unchecked.
    pub validate_dry_run: bool,
    /// The delete guard (`Mirror`); `None` allows any number of deletes. The default,
    /// [`DEFAULT_MAX_DELETES`], withholds a run's deletes when they would remove more than
    /// half of the keys this sync delivered (and more than ten): a model that lost most of its rows (a broken
    /// join, a filter gone wrong) must not wipe a CRM; ordinary churn goes through.
    pub max_deletes: Option<MaxDeletes>,
    /// Allow `Mirror` to delete everything when the source returns no record at all.
    pub allow_empty_source: bool,
    /// The most changes per write (the destination's own limit applies too).
    pub batch_rows: usize,
    /// The most estimated bytes per write (the destination's own limit applies too).
    pub batch_bytes: usize,
    /// How long a partial batch waits for more changes before it is sent. A run that reads
    /// only what changed through [`DiffStrategy::Pushdown`] sends a partial batch as soon as
    /// no other batch waits for a writer, when the destination declares no rate limit: the
    /// warehouse hands the changed rows out sparsely as its scan goes on, and lingering would
    /// only leave them to be written after it ends.
    #[serde(with = "crate::config::duration")]
    pub linger: Duration,
    /// The most writes at once (the destination's own limit applies too).
    pub max_concurrency: usize,
    /// Attempts per write before its changes are left for the next run.
    pub max_attempts: u32,
    /// The first retry's maximum backoff; it doubles per attempt up to `max_backoff`.
    #[serde(with = "crate::config::duration")]
    pub initial_backoff: Duration,
    /// The cap of the backoff.
    #[serde(with = "crate::config::duration")]
    pub max_backoff: Duration,
    /// Consecutive writes that exhaust their attempts before the circuit opens and the run
    /// ends cleanly.
    pub circuit_breaker_threshold: u32,
    /// The diff strategy.
    pub diff_strategy: DiffStrategy,
    /// The fingerprint algorithm; must match the one recorded with the state.
    pub fingerprint_algorithm: FingerprintAlgorithm,
    /// How many rejections the report samples.
    pub rejection_sample: usize,
    /// Lease time-to-live; the runner renews it at a third of this.
    ///
    /// Before each write the runner checks, on its monotonic clock, that it is still inside
    /// its lease as last renewed (the instant the renewal was sent, plus this TTL, minus a
    /// fifth of it), and writes nothing otherwise: a runner stalled past its lease (a long
    /// pause, a suspended VM) does not land an old write over the next holder's. A stall
    /// *between* that check and the write's arrival at the destination remains possible;
    /// the PostgreSQL destination's version guard (an older change never overwrites a newer
    /// one) and exactly-once destinations (the lease is checked inside the transaction that
    /// writes the rows) close it.
    #[serde(with = "crate::config::duration")]
    pub lease_ttl: Duration,
    /// Who this runner is, as shown to a second runner of the same sync.
    pub holder: String,
    /// Records per source batch requested.
    pub read_batch_size: usize,
    /// What a run does when the columns it reads differ from those last delivered.
    pub schema_drift: SchemaDriftPolicy,
    /// The longest a run waits on one rate limit (a `Retry-After`). A destination asking
    /// for longer ends the run as [`RunStatus::RateLimited`](crate::RunStatus::RateLimited),
    /// every unsent change kept for the next run, instead of holding the lease idle.
    #[serde(with = "crate::config::duration")]
    pub max_rate_limit_wait: Duration,
    /// The longest one write attempt may take. A write that has not answered by then is
    /// abandoned as a transient failure and retried under the same idempotency keys (its
    /// changes are recorded as pending first, so a write that did land is not lost), so
    /// a hung socket cannot stall a run while its lease keeps renewing.
    #[serde(with = "crate::config::duration")]
    pub write_timeout: Duration,
    /// The longest the source may take to send its next batch (a query's first page
    /// included; default 30 minutes, for a warehouse sorting a large model). A source that
    /// has not answered by then ends the run, with nothing deleted, rather than letting a
    /// hung socket hold the lease forever.
    #[serde(with = "crate::config::duration")]
    pub read_timeout: Duration,
    /// The share of each allowance a destination reports ([`QuotaFeedback`](crate::QuotaFeedback))
    /// this sync leaves for other integrations of the account, from 0 (use it all, the
    /// default) to below 1: at `0.2` a run stops when a fifth of the daily allowance is
    /// left, as [`RunStatus::QuotaExhausted`](crate::RunStatus::QuotaExhausted), and waits
    /// for the window to reset when a fifth of a short window is left.
    pub quota_reserve: f64,
    /// Restricts each run to a deterministic fraction of the keys (above 0, at most 1), by a
    /// stable hash of each key: `0.01` tries a change on 1 % of the customers first. Keys
    /// outside it are neither sent nor deleted and their state is untouched; widening it
    /// sends the keys it newly covers at the next run, narrowing it leaves what was sent in
    /// place. `None` (the default) covers every key. See [`crate::canary`] for the hash and
    /// the details.
    pub canary: Option<f64>,
    /// The timestamp column (of the records after transforms) that says when each record
    /// last changed in the source, e.g. `updated_at`. With it, each applied change records
    /// its latency from that time to the destination's acknowledgement
    /// ([`RECORD_LATENCY_SECONDS`](crate::metrics::RECORD_LATENCY_SECONDS)), and the newest
    /// change time acknowledged is kept as
    /// [`SOURCE_CHANGE_TIMESTAMP`](crate::metrics::SOURCE_CHANGE_TIMESTAMP): how fresh the
    /// destination is, not only how recently a run ended. A record whose column is null
    /// records nothing; deletes carry no record, so record nothing either. Checked when the
    /// sync is built: the column must exist and be a timestamp.
    pub change_time_field: Option<String>,
}

/// The default delete guard: at most half of the keys a sync delivered in one run, once a
/// run deletes more than ten.
pub const DEFAULT_MAX_DELETES: MaxDeletes = MaxDeletes::FractionAbove { fraction: 0.5, floor: 10 };

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            full_resync: false,
            dry_run: false,
            validate_dry_run: false,
            max_deletes: Some(DEFAULT_MAX_DELETES),
            allow_empty_source: false,
            batch_rows: 1_000,
            batch_bytes: 4 << 20,
            linger: Duration::from_millis(200),
            max_concurrency: 4,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            circuit_breaker_threshold: 3,
            diff_strategy: DiffStrategy::Auto,
            fingerprint_algorithm: FingerprintAlgorithm::default(),
            rejection_sample: 20,
            lease_ttl: Duration::from_secs(60),
            holder: default_holder(),
            read_batch_size: 1_024,
            schema_drift: SchemaDriftPolicy::Fail,
            max_rate_limit_wait: Duration::from_secs(300),
            write_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(1_800),
            quota_reserve: 0.0,
            canary: None,
            change_time_field: None,
        }
    }
}

impl SyncOptions {
    /// Sets [`canary`](Self::canary): `with_canary(0.01)` covers 1 % of the keys,
    /// `with_canary(None)` every key.
    pub fn with_canary(mut self, fraction: impl Into<Option<f64>>) -> Self {
        self.canary = fraction.into();
        self
    }
}

fn default_holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

macro_rules! with {
    ($(#[$doc:meta] $name:ident: $field:ident: $ty:ty),* $(,)?) => {
        impl SyncOptions {
            $(
                #[$doc]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

with! {
    /// Sets [`full_resync`](Self::full_resync).
    with_full_resync: full_resync: bool,
    /// Sets [`dry_run`](Self::dry_run).
    with_dry_run: dry_run: bool,
    /// Sets [`validate_dry_run`](Self::validate_dry_run).
    with_validate_dry_run: validate_dry_run: bool,
    /// Sets [`max_deletes`](Self::max_deletes).
    with_max_deletes: max_deletes: Option<MaxDeletes>,
    /// Sets [`allow_empty_source`](Self::allow_empty_source).
    with_allow_empty_source: allow_empty_source: bool,
    /// Sets [`batch_rows`](Self::batch_rows).
    with_batch_rows: batch_rows: usize,
    /// Sets [`batch_bytes`](Self::batch_bytes).
    with_batch_bytes: batch_bytes: usize,
    /// Sets [`linger`](Self::linger).
    with_linger: linger: Duration,
    /// Sets [`max_concurrency`](Self::max_concurrency).
    with_max_concurrency: max_concurrency: usize,
    /// Sets [`max_attempts`](Self::max_attempts).
    with_max_attempts: max_attempts: u32,
    /// Sets [`initial_backoff`](Self::initial_backoff).
    with_initial_backoff: initial_backoff: Duration,
    /// Sets [`max_backoff`](Self::max_backoff).
    with_max_backoff: max_backoff: Duration,
    /// Sets [`circuit_breaker_threshold`](Self::circuit_breaker_threshold).
    with_circuit_breaker_threshold: circuit_breaker_threshold: u32,
    /// Sets [`diff_strategy`](Self::diff_strategy).
    with_diff_strategy: diff_strategy: DiffStrategy,
    /// Sets [`fingerprint_algorithm`](Self::fingerprint_algorithm).
    with_fingerprint_algorithm: fingerprint_algorithm: FingerprintAlgorithm,
    /// Sets [`rejection_sample`](Self::rejection_sample).
    with_rejection_sample: rejection_sample: usize,
    /// Sets [`lease_ttl`](Self::lease_ttl).
    with_lease_ttl: lease_ttl: Duration,
    /// Sets [`holder`](Self::holder).
    with_holder: holder: String,
    /// Sets [`read_batch_size`](Self::read_batch_size).
    with_read_batch_size: read_batch_size: usize,
    /// Sets [`schema_drift`](Self::schema_drift).
    with_schema_drift: schema_drift: SchemaDriftPolicy,
    /// Sets [`quota_reserve`](Self::quota_reserve).
    with_quota_reserve: quota_reserve: f64,
    /// Sets [`max_rate_limit_wait`](Self::max_rate_limit_wait).
    with_max_rate_limit_wait: max_rate_limit_wait: Duration,
    /// Sets [`write_timeout`](Self::write_timeout).
    with_write_timeout: write_timeout: Duration,
    /// Sets [`read_timeout`](Self::read_timeout).
    with_read_timeout: read_timeout: Duration,
    /// Sets [`change_time_field`](Self::change_time_field).
    with_change_time_field: change_time_field: Option<String>,
}
