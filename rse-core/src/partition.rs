//! Partitioned syncs: one sync split into `N` partitions by a stable hash of its key, each
//! run on its own (in another process or host) under its own lease and state.
//!
//! A sync too large for one process, or one whose destination allows more throughput than
//! one runner uses, is split with [`SyncBuilder::partition`](crate::SyncBuilder::partition):
//! partition `i` of `N` reads the whole source and keeps the records whose key falls in its
//! share. Every scheduler that starts `N` copies of a program works: a Kubernetes Indexed
//! Job (the completion index is the partition, [`Partition::from_env`]) or any other with
//! `--partition i/N` ([`Partition::parse`]).
//!
//! # Which keys a partition holds
//! A key's [`KeyHash`] (the hash a [canary](crate::canary) reads, the one
//! reports and logs show) read as a fraction `h / 2⁶⁴` of the key space; partition `i` of
//! `N` holds the keys with `⌊h·N / 2⁶⁴⌋ = i`, an exact integer computation. So every key is
//! in exactly one partition, the same one in every run, process and host; and partition
//! `i` of `N` is exactly partitions `2i` and `2i + 1` of `2N`.
//!
//! # State
//! A partition's state lives under its own sync id, [`Partition::sync_id`]:
//! `"<sync>#p<i>of<N>"` (`"crm#p2of4"`). A sync id that ends like one is refused when a sync
//! is built, partitioned or not, so a user's id never names a partition's state. Leases,
//! snapshots, rejections, run history and pauses are per partition; a pause of the sync as
//! a whole (under its own id, `"crm"`) stops every partition too.
//!
//! # What a partition's run does
//! - Records whose key is outside the partition are read and counted
//!   ([`PartitionReport::excluded`]), then dropped before the diff.
//! - The diff's snapshot holds only the partition's keys, so a `Mirror` run deletes only
//!   keys of its own partition.
//! - The delete guard holds for the sync as a whole: see
//!   [`Partition::max_deletes`]. Its other checks apply per partition: a partition whose
//!   share of the source is empty deletes nothing unless
//!   [`allow_empty_source`](crate::SyncOptions::allow_empty_source) is set, and rows whose
//!   key is unknown withhold every partition's deletes (the key may be any partition's).
//! - Metrics and logs name the partition's sync id (`sync="crm#p2of4"`).
//! - A destination's request rate is shared by every partition through a
//!   [`SharedQuota`](crate::shared_quota::SharedQuota) (PostgreSQL's in `rse-connectors`).
//!
//! # Changing the number of partitions
//! A partition's state only knows its own keys: partition `1` of `8` starting with an empty
//! state while `crm#p0of4` holds its keys would send them all again and never delete those
//! the source lost. So a partition whose state is empty looks for another layout of the
//! same sync first (the sync unpartitioned, or partitioned in up to
//! [`MAX_PARTITIONS`] under another count: the partition holding the start of its share)
//! and refuses to run, naming it. To re-partition: pause the sync, let the runs end, forget
//! the earlier layout's snapshots ([`forget_snapshot`] of each `"<sync>#p<i>of<N>"`, or of
//! the unpartitioned id), resume, then run each new partition once with
//! [`full_resync`](crate::SyncOptions::full_resync). An unpartitioned sync whose state is
//! empty makes the same check for partitions.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::key::{Key, KeyHash};
use crate::runner::MaxDeletes;
use crate::state::{StateCommit, StateStore};

/// The most partitions a sync may be split into.
pub const MAX_PARTITIONS: u32 = 128;

/// The environment variable a Kubernetes Indexed Job sets to the pod's completion index.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The environment variable [`Partition::from_env`] reads the partition count from.
pub const PARTITION_COUNT: &str = "RSE_PARTITION_COUNT";

/// Partition `index` (from 0) of `count`: the keys whose hash falls in its share (see the
/// [module docs](self)).
///
/// ```
/// # use rse_core::{Key, Value, partition::Partition};
/// let p = Partition::parse("2/4").unwrap();
/// assert_eq!((p.index, p.count), (2, 4));
/// assert_eq!(p.sync_id("crm"), "crm#p2of4");
/// let key = Key::from_values(&[Value::Int(42)]);
/// let all: Vec<Partition> = (0..4).map(|i| Partition::new(i, 4).unwrap()).collect();
/// assert_eq!(all.iter().filter(|p| p.contains(&key)).count(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Partition {
    /// Which partition, from 0 to `count - 1` (a Kubernetes completion index).
    pub index: u32,
    /// How many partitions the sync is split into (1 to [`MAX_PARTITIONS`]).
    pub count: u32,
}

/// Why a partition could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PartitionError(String);

impl Partition {
    /// Partition `index` of `count`.
    ///
    /// # Errors
    /// When `count` is 0 or above [`MAX_PARTITIONS`], or `index` is not below `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, PartitionError> {
        if count == 0 || count > MAX_PARTITIONS {
            return Err(PartitionError(format!(
                "a partition count of {count} is out of range; split a sync into 1 to {MAX_PARTITIONS} partitions"
            )));
        }
        if index >= count {
            return Err(PartitionError(format!(
                "partition {index} of {count} does not exist; partitions count from 0, so the last of {count} is {}",
                count - 1
            )));
        }
        Ok(Self { index, count })
    }

    /// Reads `"i/N"` (`"2/4"`: the third of four, counting from 0), the form of
    /// `--partition`.
    ///
    /// # Errors
    /// When the text is not two whole numbers around a `/`, or they are out of range (see
    /// [`new`](Self::new)).
    pub fn parse(text: &str) -> Result<Self, PartitionError> {
        let malformed = || {
            PartitionError(format!(
                "`{text}` is not a partition; write it as INDEX/COUNT with the index from 0, e.g. `0/4` to `3/4`"
            ))
        };
        let (index, count) = text.trim().split_once('/').ok_or_else(malformed)?;
        let index = index.trim().parse().map_err(|_| malformed())?;
        let count = count.trim().parse().map_err(|_| malformed())?;
        Self::new(index, count)
    }

    /// The partition of a Kubernetes Indexed Job's pod: the index from
    /// [`JOB_COMPLETION_INDEX`], the count from [`PARTITION_COUNT`] (set it to the Job's
    /// `completions`). `None` when neither is set (an unpartitioned run).
    ///
    /// # Errors
    /// When only one is set, or either is not a number in range.
    pub fn from_env() -> Result<Option<Self>, PartitionError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `var`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, PartitionError> {
        let number = |name: &str, text: String| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| PartitionError(format!("{name} is `{text}`; it must be a whole number")))
        };
        match (var(JOB_COMPLETION_INDEX), var(PARTITION_COUNT)) {
            (None, None) => Ok(None),
            (Some(index), Some(count)) => {
                Self::new(number(JOB_COMPLETION_INDEX, index)?, number(PARTITION_COUNT, count)?).map(Some)
            }
            (Some(_), None) => Err(PartitionError(format!(
                "{JOB_COMPLETION_INDEX} is set but {PARTITION_COUNT} is not; set {PARTITION_COUNT} to the Job's \
                 completions"
            ))),
            (None, Some(_)) => Err(PartitionError(format!(
                "{PARTITION_COUNT} is set but {JOB_COMPLETION_INDEX} is not; run as a Kubernetes Indexed Job \
                 (completionMode: Indexed), or pass the partition as INDEX/COUNT"
            ))),
        }
    }

    /// Which partition of `count` `key` is in.
    pub fn of(key: &Key, count: u32) -> u32 {
        Self::of_hash(key.redacted(), count)
    }

    fn of_hash(hash: KeyHash, count: u32) -> u32 {
        u32::try_from((u128::from(hash.0) * u128::from(count)) >> 64).unwrap_or(0)
    }

    /// Whether `key` is in this partition.
    pub fn contains(&self, key: &Key) -> bool {
        self.holds(key.redacted())
    }

    /// Whether the key whose hash is `hash` is in this partition.
    pub(crate) fn holds(&self, hash: KeyHash) -> bool {
        Self::of_hash(hash, self.count) == self.index
    }

    /// The sync id the partition's state lives under: `"<sync>#p<i>of<N>"`.
    pub fn sync_id(&self, sync: &str) -> String {
        format!("{sync}#p{}of{}", self.index, self.count)
    }

    /// Splits a partition's sync id into the sync's own id and the partition; `None` for an
    /// id that does not end like one.
    pub fn split_sync_id(id: &str) -> Option<(&str, Self)> {
        let (base, suffix) = id.rsplit_once("#p")?;
        let (index, count) = suffix.split_once("of")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(index) || !digits(count) {
            return None;
        }
        let partition = Self { index: index.parse().ok()?, count: count.parse().ok()? };
        Some((base, partition))
    }

    /// This partition's share of the sync's delete guard, so that the partitions together
    /// stay within it:
    /// - [`MaxDeletes::Count`]`(n)` is split: partition `i` may delete `⌊n/N⌋`, plus one for
    ///   the first `n mod N` partitions, so the shares add up to exactly `n`. A count below
    ///   `N` leaves some partitions a share of 0 (any delete there is withheld); prefer a
    ///   fraction for a partitioned sync.
    /// - [`MaxDeletes::Fraction`]`(f)` stays `f`: each partition weighs its deletes against
    ///   the keys it delivered, so the sum of deletes is at most `f` times the sum of the
    ///   keys delivered: the sync's own limit, exactly.
    /// - [`MaxDeletes::FractionAbove`] keeps its fraction and splits its floor as a count:
    ///   the sync deletes at most its floor plus `f` of the keys delivered.
    pub fn max_deletes(&self, max: MaxDeletes) -> MaxDeletes {
        match max {
            MaxDeletes::Count(n) => MaxDeletes::Count(self.share(n)),
            MaxDeletes::Fraction(f) => MaxDeletes::Fraction(f),
            MaxDeletes::FractionAbove { fraction, floor } => {
                MaxDeletes::FractionAbove { fraction, floor: self.share(floor) }
            }
        }
    }

    /// This partition's share of `n`: the shares of all partitions add up to `n`.
    fn share(&self, n: u64) -> u64 {
        let count = u64::from(self.count);
        n / count + u64::from(u64::from(self.index) < n % count)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Forgets every snapshot entry of the state under `sync_id` (a partition of an earlier
/// layout, `"crm#p0of4"`, or the sync unpartitioned, `"crm"`), under its lease taken as
/// `holder`; returns how many entries were forgotten. Once every state of the earlier layout
/// is forgotten, the new layout's partitions may run: run each once with
/// [`full_resync`](crate::SyncOptions::full_resync), so that the destination gets every key
/// from the partition that now owns it. Pause the sync first: a run of the earlier layout
/// holding the lease makes this fail, and one starting afterwards would find nothing.
///
/// The destination is not touched: what the earlier layout delivered stays there, and the
/// new partitions' full resyncs update it. Keys the source lost before the change are not
/// deleted by the new layout (no state records them any more).
///
/// # Errors
/// [`StateError::LeaseHeld`] while a run holds the state's
/// lease; otherwise when the store cannot be reached.
pub async fn forget_snapshot(state: &dyn StateStore, sync_id: &str, holder: &str) -> Result<u64, StateError> {
    const PAGE: usize = 10_000;
    let lease = state.acquire_lease(sync_id, holder, Duration::from_secs(60)).await?;
    let mut forgotten = 0u64;
    let outcome = async {
        loop {
            let page = state.scan(sync_id, None, PAGE).await?;
            if page.is_empty() {
                return Ok(forgotten);
            }
            forgotten += page.len() as u64;
            let keys = page.into_iter().map(|e| e.key).collect();
            state.renew_lease(&lease, Duration::from_secs(60)).await?;
            state.commit(&lease, StateCommit { forgotten: keys, ..StateCommit::default() }).await?;
        }
    }
    .await;
    let _ = state.release_lease(&lease).await;
    outcome
}

/// What a partition's run covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// The partition.
    pub partition: Partition,
    /// Records read whose key is in another partition: dropped before the diff.
    pub excluded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn keys(n: i64) -> Vec<Key> {
        (0..n).map(|i| Key::from_values(&[Value::Int(i), Value::from(format!("k{i}"))])).collect()
    }

    #[test]
    fn every_key_is_in_exactly_one_partition_and_shares_are_even() {
        let keys = keys(4_000);
        for count in [1, 2, 3, 4, 7, 16] {
            let parts: Vec<Partition> = (0..count).map(|i| Partition::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for key in &keys {
                let holders: Vec<_> = parts.iter().filter(|p| p.contains(key)).collect();
                assert_eq!(holders.len(), 1, "{key:?} under {count} partitions");
                sizes[holders[0].index as usize] += 1;
            }
            let expected = keys.len() / count as usize;
            // Within 5 standard deviations of an even split.
            let slack = 5.0 * (expected as f64).sqrt() + 1.0;
            assert!(sizes.iter().all(|s| (*s as f64 - expected as f64).abs() <= slack), "{count}: {sizes:?}");
        }
    }

    #[test]
    fn the_partition_of_a_key_is_stable_and_doubling_splits_each_partition_in_two() {
        // Fixed keys, fixed partitions: the hash must never move a key (state would be lost).
        let pinned: Vec<u32> = keys(8).iter().map(|k| Partition::of(k, 4)).collect();
        assert_eq!(pinned, keys(8).iter().map(|k| Partition::of(k, 4)).collect::<Vec<_>>());
        let key = Key::from_values(&[Value::from("ada@example.com")]);
        let h = key.redacted().0;
        assert_eq!(Partition::of(&key, 4), (h >> 62) as u32, "the top two bits pick one of four");
        for key in keys(5_000) {
            assert_eq!(Partition::of(&key, 8) / 2, Partition::of(&key, 4));
        }
    }

    #[test]
    fn text_and_environment_forms_are_checked() {
        assert_eq!(Partition::parse(" 3/4 ").unwrap(), Partition { index: 3, count: 4 });
        assert_eq!("0/1".parse::<Partition>().unwrap(), Partition { index: 0, count: 1 });
        for (bad, says) in [
            ("4/4", "partitions count from 0"),
            ("1/0", "out of range"),
            ("1/129", "out of range"),
            ("2", "INDEX/COUNT"),
            ("a/4", "INDEX/COUNT"),
            ("-1/4", "INDEX/COUNT"),
        ] {
            let error = Partition::parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let env = |index: Option<&str>, count: Option<&str>| {
            Partition::from_vars(|name| match name {
                JOB_COMPLETION_INDEX => index.map(str::to_owned),
                PARTITION_COUNT => count.map(str::to_owned),
                _ => None,
            })
        };
        assert_eq!(env(None, None).unwrap(), None);
        assert_eq!(env(Some("2"), Some("4")).unwrap(), Some(Partition { index: 2, count: 4 }));
        assert!(env(Some("2"), None).unwrap_err().to_string().contains("RSE_PARTITION_COUNT is not"));
        assert!(env(None, Some("4")).unwrap_err().to_string().contains("completionMode: Indexed"));
        assert!(env(Some("x"), Some("4")).unwrap_err().to_string().contains("whole number"));
    }

    #[test]
    fn partition_ids_round_trip_and_ordinary_ids_are_not_partitions() {
        let p = Partition::new(2, 4).unwrap();
        assert_eq!(Partition::split_sync_id(&p.sync_id("crm#eu")), Some(("crm#eu", p)));
        for id in ["crm", "crm#eu", "crm#p", "crm#p2", "crm#p2of", "crm#pxof4", "crm#p2of4x", "p2of4"] {
            assert_eq!(Partition::split_sync_id(id), None, "{id}");
        }
    }

    #[test]
    fn delete_guard_shares_add_up_to_the_sync_limit() {
        for (n, count) in [(100u64, 4u32), (10, 3), (2, 4), (0, 2), (7, 7)] {
            let shares: u64 = (0..count)
                .map(|i| match Partition::new(i, count).unwrap().max_deletes(MaxDeletes::Count(n)) {
                    MaxDeletes::Count(s) => s,
                    other => panic!("a count stays a count: {other:?}"),
                })
                .sum();
            assert_eq!(shares, n, "{n} over {count}");
        }
        let p = Partition::new(1, 4).unwrap();
        assert_eq!(p.max_deletes(MaxDeletes::Fraction(0.2)), MaxDeletes::Fraction(0.2));
        assert_eq!(
            p.max_deletes(MaxDeletes::FractionAbove { fraction: 0.5, floor: 10 }),
            MaxDeletes::FractionAbove { fraction: 0.5, floor: 3 }
        );
    }
}
