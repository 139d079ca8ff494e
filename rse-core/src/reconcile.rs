//! Reconciliation: what a destination holds, compared with what the sync's state says it
//! acknowledged and with what the source holds now.
//!
//! A sync trusts its state: a record whose fingerprint matches the snapshot is not sent
//! again. When the destination loses or changes a record behind the sync's back (a restore
//! from backup, a person editing a row, another job deleting keys), no run notices.
//! [`SyncJob::verify`](crate::SyncJob::verify) reads the destination back (through
//! [`Destination::read_back`](crate::Destination::read_back)) and finds those records;
//! [`SyncJob::repair`](crate::SyncJob::repair) sends exactly them again.
//!
//! # What is compared
//! For each key checked there are three accounts, each fingerprinted exactly as a run
//! fingerprints records (the sync's algorithm, the columns last delivered):
//!
//! - **acknowledged** — the key's entry in the state: *live* with the fingerprint of the
//!   record the destination last acknowledged, a *tombstone* (this sync deleted the key), no
//!   entry (this sync never wrote the key), or *in doubt* (a change was sent and its outcome
//!   is not known: the run died, or the write failed ambiguously);
//! - **held** — what the destination holds, read back;
//! - **current** — the source's record now, read through the sync's transforms as a run
//!   reads it (a full read, even for an incremental sync).
//!
//! # The two comparisons
//! **Held against acknowledged** decides the mismatches ([`MismatchKind`]). They are what no
//! ordinary run would ever repair, because the state says the destination is right:
//!
//! - **missing**: the state says the destination holds the key (live), and it holds nothing;
//! - **stale**: the state says the destination holds the key (live), and it holds another
//!   record (one that fingerprints otherwise, or that cannot be read as a record of the
//!   schema); also a key this sync deleted (tombstone) that the destination holds again while
//!   the source has the key (the state says "nothing" where something is);
//! - **extra**: a key this sync wrote and then deleted (tombstone), which the source no longer
//!   has, and which the destination holds again.
//!
//! Every other key checked is *matched*: live and held as acknowledged, or a tombstone the
//! destination does not hold. Two kinds of keys are counted apart and never repaired:
//! *foreign* keys — the destination holds them and the state has no entry, so this sync
//! never wrote them (another writer's rows; `Mirror` never deletes them either) — and keys
//! *in doubt*, which the next run sends or deletes anyway.
//!
//! **Current against acknowledged** is not a mismatch: a record that changed in the source
//! since the last run, a new key, or (in `Mirror` mode) a live key the source no longer has,
//! is the next run's ordinary work. [`ReconcileReport::unsent`] counts those keys, whatever
//! the destination holds. The source is still what [`repair`](crate::SyncJob::repair) sends:
//! a missing or stale key gets its *current* record, not the acknowledged one.
//!
//! The mismatch ratio is `(missing + stale + extra) / checked`, where *checked* is every key
//! of the sample with a state entry not in doubt (live or tombstone).
//!
//! # Repair
//! [`SyncJob::repair`](crate::SyncJob::repair) is an ordinary run with two additions, so
//! every rule of a run holds for it unchanged (batching, pacing, idempotency keys, state
//! commits per acknowledged batch, the delete guard):
//!
//! 1. **Marking.** Under the run's lease, before the diff loads the snapshot, one state
//!    commit records a *pending change* on each key to repair whose entry has none: a marker
//!    whose fingerprint no record has, on the key's version. A pending change means "the
//!    destination may hold something other than the snapshot says" — what verify found —
//!    and the diff already knows what to do with one: a key the source has is sent again,
//!    as a new change on the next version (so under a new idempotency key, which a
//!    destination that honours keys does not drop as a repeat), and in `Mirror` mode a key
//!    the source no longer has is deleted.
//! 2. **Restriction.** The run reads and diffs the whole source as usual (a full read, even
//!    for an incremental sync, and no cursor committed: an incremental read would not return
//!    a repaired key's record), but plans changes only for the keys to repair. Every other
//!    change the diff finds waits for the next ordinary run, its state untouched; refusals
//!    met while reading are kept only for the repaired keys.
//!
//! When the run completes, the markers of keys it planned nothing for (a key the source no
//! longer has, in a mode that does not delete it; a delete the guard withheld) are taken
//! back in its final commit, so a repair leaves nothing in the state but what it sent. A
//! repair that does not complete (a crash, a failure, a cancellation) leaves its markers:
//! they are ordinary pending changes, verify counts those keys *in doubt*, and the next run
//! sends them again — it finishes the repair.
//!
//! Which keys are repaired depends on the mode: a missing or stale key gets its current
//! source record (an insert or an update, as the mode sends); `Insert` never rewrites a
//! record, so it re-sends only missing keys; only `Mirror` deletes extra keys. Foreign keys
//! and keys in doubt are never part of a repair.
//!
//! # Samples
//! [`VerifyOptions::with_sample`] checks a fraction of the keys chosen by a hash of each key
//! ([`VerifyOptions::in_sample`]): the same keys on every verify, so repeated verifies of an
//! unchanged sync agree, and the fraction is of every account at once (state, source and
//! destination), so no key is compared against an account that left it out.
//!
//! # Nothing personal in the text
//! The report's `Display`, its [`MismatchSample`]s and every log line carry key hashes
//! ([`KeyHash`]), never a key or a value. The report does carry the mismatched
//! [`Key`]s themselves ([`ReconcileReport::mismatches`]), for `repair`; a `Key` prints as
//! its hash too.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::{Key, KeyHash};
use crate::runner::Mode;

/// The seed of the hash that chooses a sample's keys; fixed, so that samples repeat.
const SAMPLE_SEED: u64 = 0x7273_655f_7665_7269; // "rse_veri"

/// Options of [`SyncJob::verify`](crate::SyncJob::verify), built with `with_*` methods from
/// [`VerifyOptions::default`] (every key, pages of 1,000) or read from a configuration file
/// (every field optional, an unknown one refused).
///
/// ```
/// # use rse_core::VerifyOptions;
/// let options: VerifyOptions = serde_json::from_str(r#"{ "sample": 0.01 }"#).unwrap();
/// assert_eq!(options, VerifyOptions::default().with_sample(0.01));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The fraction of keys checked, above 0 and at most 1 (every key, the default). Keys are
    /// chosen by hash (see [`in_sample`](Self::in_sample)), the same on every verify.
    pub sample: f64,
    /// Keys read back from the destination per call, and looked up in the state per call.
    pub read_batch: usize,
    /// Keys per page when walking the state and the destination's keys.
    pub page_size: usize,
    /// How many mismatched keys the report samples, as hashes, for its text and logs.
    pub samples: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self { sample: 1.0, read_batch: 1_000, page_size: 1_000, samples: 20 }
    }
}

impl VerifyOptions {
    /// Checks only `fraction` of the keys (above 0, at most 1), chosen by hash.
    pub fn with_sample(mut self, fraction: f64) -> Self {
        self.sample = fraction;
        self
    }

    /// Reads back this many keys per call (default 1,000).
    pub fn with_read_batch(mut self, keys: usize) -> Self {
        self.read_batch = keys;
        self
    }

    /// Walks the state and the destination's keys in pages of this many (default 1,000).
    pub fn with_page_size(mut self, keys: usize) -> Self {
        self.page_size = keys;
        self
    }

    /// Samples this many mismatched keys, hashed, in the report (default 20).
    pub fn with_samples(mut self, n: usize) -> Self {
        self.samples = n;
        self
    }

    /// Whether `key` is checked under this sample: xxh3-64 of the key's encoding (with a
    /// fixed seed), as a fraction of 2⁶⁴, is below [`sample`](Self::sample). Every key is
    /// checked at `1.0`.
    pub fn in_sample(&self, key: &Key) -> bool {
        if self.sample >= 1.0 {
            return true;
        }
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), SAMPLE_SEED);
        // 2⁶⁴ as a float; the fraction of the hash space below the threshold is `sample`.
        (hash as f64) < self.sample * 18_446_744_073_709_551_616.0
    }
}

/// How the destination differs from what the state says it acknowledged (see the
/// [module docs](self) for the exact definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MismatchKind {
    /// The state says the destination holds the key; it holds nothing.
    Missing,
    /// The destination holds another record than the state says it acknowledged.
    Stale,
    /// The destination holds a key this sync deleted and the source no longer has.
    Extra,
}

impl MismatchKind {
    /// `missing`, `stale` or `extra`: the metric label and the report's word.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Missing => "missing",
            MismatchKind::Stale => "stale",
            MismatchKind::Extra => "extra",
        }
    }
}

impl fmt::Display for MismatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mismatched key, for [`repair`](crate::SyncJob::repair). The key prints as its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The key.
    pub key: Key,
    /// How it differs.
    pub kind: MismatchKind,
}

/// One mismatched key as the report's text and logs show it: hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchSample {
    /// A hash of the key (the key itself may be personal data).
    pub key: KeyHash,
    /// How it differs.
    pub kind: MismatchKind,
}

/// What [`SyncJob::verify`](crate::SyncJob::verify) found; see the [module docs](self) for
/// what each count means.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// The sync.
    pub sync_id: String,
    /// The destination's name.
    pub destination: String,
    /// The sync's mode.
    pub mode: Mode,
    /// The fraction of keys checked.
    pub sample: f64,
    /// When the verify started (milliseconds since the Unix epoch).
    pub started_at_ms: u64,
    /// How long it took.
    pub duration: Duration,
    /// Keys compared: those of the sample with a state entry not in doubt.
    pub checked: u64,
    /// Of those, held as the state says.
    pub matched: u64,
    /// Live in the state, held by the destination not at all.
    pub missing: u64,
    /// Held as another record than the state says.
    pub stale: u64,
    /// Deleted by this sync, gone from the source, held by the destination again.
    pub extra: u64,
    /// Held by the destination, never written by this sync: counted, never repaired.
    pub foreign: u64,
    /// Keys whose last change is in doubt (sent, outcome unknown): not compared; the next
    /// run sends or deletes them anyway.
    pub in_doubt: u64,
    /// Keys whose current source record differs from what the state says was acknowledged
    /// (changed, new, or in `Mirror` mode gone from the source): the next run's ordinary
    /// work, not a mismatch.
    pub unsent: u64,
    /// Every mismatched key with its kind, in key order, for
    /// [`repair`](crate::SyncJob::repair).
    pub mismatches: Vec<Mismatch>,
    /// Up to [`VerifyOptions::samples`] mismatched keys, hashed.
    pub samples: Vec<MismatchSample>,
}

impl ReconcileReport {
    /// Missing, stale and extra keys together.
    pub fn mismatched(&self) -> u64 {
        self.missing + self.stale + self.extra
    }

    /// Mismatched keys over keys checked (0 when nothing was checked).
    pub fn mismatch_ratio(&self) -> f64 {
        if self.checked == 0 { 0.0 } else { self.mismatched() as f64 / self.checked as f64 }
    }

    /// Whether the destination holds exactly what the state says, for every key checked.
    pub fn is_clean(&self) -> bool {
        self.mismatched() == 0
    }
}

/// A short summary: counts, the ratio and the sampled keys as hashes; never a key or a value.
impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sample = if self.sample >= 1.0 {
            "every key".to_owned()
        } else {
            format!("a sample of {}% of keys", (self.sample * 1e6).round() / 1e4)
        };
        writeln!(
            f,
            "sync `{}` ({}) against `{}`, {sample}, in {:.1?}: {} checked, {} matched, {} missing, {} stale, {} extra \
             ({:.4}% mismatched)",
            self.sync_id,
            self.mode,
            self.destination,
            self.duration,
            self.checked,
            self.matched,
            self.missing,
            self.stale,
            self.extra,
            100.0 * self.mismatch_ratio()
        )?;
        write!(
            f,
            "  {} foreign (never written by this sync), {} in doubt, {} unsent (the next run's changes)",
            self.foreign, self.in_doubt, self.unsent
        )?;
        for sample in &self.samples {
            write!(f, "\n  {} key {}", sample.kind, sample.key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn a_sample_is_the_same_keys_every_time_and_about_its_fraction() {
        let options = VerifyOptions::default().with_sample(0.25);
        let keys: Vec<Key> = (0..4_000).map(|i| Key::from_values(&[Value::Int(i)])).collect();
        let first: Vec<bool> = keys.iter().map(|k| options.in_sample(k)).collect();
        let second: Vec<bool> = keys.iter().map(|k| options.clone().in_sample(k)).collect();
        assert_eq!(first, second);
        let n = first.iter().filter(|&&b| b).count();
        assert!((800..1_200).contains(&n), "{n} of 4000 at 25%");
        assert!(keys.iter().all(|k| VerifyOptions::default().in_sample(k)));
        // A smaller sample is a subset of a larger one.
        let tenth = VerifyOptions::default().with_sample(0.1);
        assert!(keys.iter().filter(|k| tenth.in_sample(k)).all(|k| options.in_sample(k)));
    }

    #[test]
    fn the_text_shows_counts_and_hashes_only() {
        let key = Key::from_values(&[Value::from("ada@example.com")]);
        let report = ReconcileReport {
            sync_id: "crm".into(),
            destination: "memory".into(),
            mode: Mode::Mirror,
            sample: 0.01,
            started_at_ms: 0,
            duration: Duration::from_millis(1500),
            checked: 200,
            matched: 199,
            missing: 1,
            stale: 0,
            extra: 0,
            foreign: 3,
            in_doubt: 0,
            unsent: 2,
            samples: vec![MismatchSample { key: key.redacted(), kind: MismatchKind::Missing }],
            mismatches: vec![Mismatch { key: key.clone(), kind: MismatchKind::Missing }],
        };
        let text = format!("{report}\n{report:?}");
        assert!(text.contains("a sample of 1% of keys"), "{text}");
        assert!(text.contains("200 checked, 199 matched, 1 missing, 0 stale, 0 extra (0.5000% mismatched)"), "{text}");
        assert!(text.contains(&format!("missing key {}", key.redacted())), "{text}");
        assert!(!text.contains("ada"), "{text}");
    }
}
