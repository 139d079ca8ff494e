//! Canary runs: a sync restricted to a deterministic fraction of its keys.
//!
//! A new destination, mapping or transform can be tried on 1 % of the customers before
//! everyone: [`SyncOptions::with_canary`](crate::SyncOptions::with_canary) restricts each run
//! to the keys whose stable hash falls within the fraction, and widening the fraction at a
//! later run adds keys without moving any out.
//!
//! # Which keys are in
//! A key's position is its [`KeyHash`] — the first 8 bytes of the SHA-256 of
//! the key's encoded bytes (the order-preserving encoding of [`Key`], see
//! [`crate::key`]), read as a big-endian integer — divided by 2⁶⁴; the key is in a canary of
//! fraction `f` when its position is below `f`. The hash depends on nothing but the key's
//! values and types: the same key is in or out in every run, every process, every sync and
//! every rse version that keeps the key encoding. The hash is the one the report and the logs
//! show for a key (`rejected key 3fa1…`), so an operator can tell from it alone whether a key
//! is in a canary: `0x3fa1… / 2⁶⁴ ≈ 0.248` is in from 25 % on. A key in at a fraction is in
//! at every larger one.
//!
//! # What a canary run does
//! - Records whose key is outside the fraction are read and counted
//!   ([`CanaryReport::excluded`]), then left alone: not sent, not refused, not recorded.
//! - Keys outside the fraction are not deleted (in `Mirror`), and the delete guard weighs
//!   only the deletes and delivered keys inside it.
//! - Their state is untouched: their snapshot entries and earlier refusals stay as they are.
//! - Widening the fraction sends the newly included keys at the next run (they are new to
//!   the snapshot). Narrowing leaves what was sent in place: keys that fall out are neither
//!   updated nor deleted until the fraction covers them again (or the canary is removed).
//! - An incremental sync's cursor does not move while a canary is set, so the keys a later,
//!   wider run includes are still read (the diff still sends only what changed).
//! - Consent withdrawals ([`crate::suppression`]) apply to every key, inside the canary or not.

use serde::{Deserialize, Serialize};

use crate::key::{Key, KeyHash};
use crate::partition::Partition;

/// A deterministic fraction of keys, by a stable hash of each key (see the [module
/// docs](self)).
///
/// ```
/// # use rse_core::{Key, Value, canary::Canary};
/// let one_percent = Canary::new(0.01).unwrap();
/// let ten_percent = Canary::new(0.10).unwrap();
/// let keys: Vec<Key> = (0..10_000).map(|i| Key::from_values(&[Value::Int(i)])).collect();
/// let small = keys.iter().filter(|k| one_percent.contains(k)).count();
/// assert!((50..=150).contains(&small), "about 1 %: {small}");
/// // Every key in the 1 % is in the 10 %.
/// assert!(keys.iter().filter(|k| one_percent.contains(k)).all(|k| ten_percent.contains(k)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canary {
    fraction: f64,
    /// A partitioned sync's partition: only its keys are inside (see [`crate::partition`]).
    partition: Option<Partition>,
}

impl Canary {
    /// A canary of `fraction` of the keys; `None` unless the fraction is above 0 and at
    /// most 1 (a NaN is neither).
    pub fn new(fraction: f64) -> Option<Self> {
        (fraction > 0.0 && fraction <= 1.0).then_some(Self { fraction, partition: None })
    }

    /// The keys of one partition of a partitioned sync (all of them, or the canary's
    /// fraction of them): what a partition's run covers. The partition decides by the same
    /// key hash as the fraction.
    pub fn within(canary: Option<Self>, partition: Partition) -> Self {
        let fraction = canary.map_or(1.0, |c| c.fraction);
        Self { fraction, partition: Some(partition) }
    }

    /// The fraction.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Where `key` falls in `[0, 1)`: its [`KeyHash`] over 2⁶⁴.
    pub fn position(key: &Key) -> f64 {
        Self::position_of(key.redacted())
    }

    fn position_of(hash: KeyHash) -> f64 {
        // The top 53 bits: exactly representable, so the position is exact and below 1.
        (hash.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether `key` is inside the fraction (and the partition, for a partition's run).
    pub fn contains(&self, key: &Key) -> bool {
        self.excludes(key).is_none()
    }

    /// Why `key` is left out: `Some(true)` when it is in another partition, `Some(false)`
    /// when it is outside the fraction, `None` when it is inside. The key is hashed once.
    pub(crate) fn excludes(&self, key: &Key) -> Option<bool> {
        let hash = key.redacted();
        if self.partition.is_some_and(|p| !p.holds(hash)) {
            return Some(true);
        }
        (Self::position_of(hash) >= self.fraction).then_some(false)
    }
}

/// What a canary run left out.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CanaryReport {
    /// The fraction of keys the run covered.
    pub fraction: f64,
    /// Records read whose key is outside the fraction: neither sent nor recorded.
    pub excluded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn fractions_are_checked_and_nest() {
        for bad in [0.0, -0.5, 1.000_001, f64::NAN, f64::INFINITY] {
            assert!(Canary::new(bad).is_none(), "{bad}");
        }
        let all = Canary::new(1.0).unwrap();
        let keys: Vec<Key> = (0..5_000).map(|i| Key::from_values(&[Value::Int(i)])).collect();
        assert!(keys.iter().all(|k| all.contains(k)));
        let mut previous = 0;
        for f in [0.001, 0.01, 0.1, 0.5, 0.9] {
            let c = Canary::new(f).unwrap();
            let n = keys.iter().filter(|k| c.contains(k)).count();
            assert!(n >= previous);
            previous = n;
        }
    }

    #[test]
    fn the_position_is_the_key_hash_over_two_to_the_64() {
        let key = Key::from_values(&[Value::from("ada@example.com")]);
        let expected = key.redacted().0 as f64 / 2f64.powi(64);
        assert!((Canary::position(&key) - expected).abs() < 1e-12);
    }
}
