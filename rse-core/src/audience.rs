//! What an audience destination (an ad platform's customer list) reports about a run: members
//! added and removed, members withheld for lack of consent, what the platform refused, and
//! the match rate where the platform reports one. Carried by [`SyncReport::audience`]
//! (and so by the run history), summed over the run's writes.
//!
//! [`SyncReport::audience`]: crate::SyncReport::audience

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most notes an [`AudienceReport`] keeps (later ones are counted, not kept).
pub const MAX_NOTES: usize = 16;

/// A run's audience figures. Counts are of members (rows), except the identifier counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AudienceReport {
    /// Members sent to be added: new to the segment, or sent again with changed identifiers.
    pub members_added: u64,
    /// Members sent to be removed: gone from the segment, consent withdrawn, or the old
    /// identifiers of a member whose identifiers changed.
    pub members_removed: u64,
    /// Identifiers (hashed or plain) sent to be added.
    pub identifiers_added: u64,
    /// Identifiers sent to be removed.
    pub identifiers_removed: u64,
    /// Members of the segment not sent because they lack the consent the platform requires.
    pub withheld_no_consent: u64,
    /// Rows refused before sending because no identifier could be used (also counted as
    /// rejections, with the reason).
    pub no_identifier: u64,
    /// Entries the platform reported invalid without saying which rows they were (Meta's
    /// `num_invalid_entries`, Google's per-request error counts).
    pub platform_invalid: u64,
    /// The platform's reasons for what it refused or warned about (its reason codes, never a
    /// value), with counts.
    pub platform_reasons: BTreeMap<String, u64>,
    /// Facts a reader of the report needs, in words (at most [`MAX_NOTES`]).
    pub notes: Vec<String>,
    /// The match rate the platform reported for the run's uploads, when it reports one.
    pub match_rate: Option<MatchRate>,
    /// Whether a full refresh replaced the audience's membership with the run's members.
    pub replaced: bool,
}

impl AudienceReport {
    /// Adds `other`'s figures to these: counts are summed, reasons and notes joined, and
    /// `other`'s match rate (the later one) kept when it has one.
    pub fn merge(&mut self, other: AudienceReport) {
        self.members_added += other.members_added;
        self.members_removed += other.members_removed;
        self.identifiers_added += other.identifiers_added;
        self.identifiers_removed += other.identifiers_removed;
        self.withheld_no_consent += other.withheld_no_consent;
        self.no_identifier += other.no_identifier;
        self.platform_invalid += other.platform_invalid;
        for (reason, n) in other.platform_reasons {
            *self.platform_reasons.entry(reason).or_default() += n;
        }
        for note in other.notes {
            self.note(note);
        }
        if other.match_rate.is_some() {
            self.match_rate = other.match_rate;
        }
        self.replaced |= other.replaced;
    }

    /// Adds a note, once (a repeated note is kept once; past [`MAX_NOTES`] notes are dropped).
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Counts `n` entries the platform reported for `reason`.
    pub fn count_reason(&mut self, reason: impl Into<String>, n: u64) {
        *self.platform_reasons.entry(reason.into()).or_default() += n;
    }
}

impl std::fmt::Display for AudienceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} members added, {} removed", self.members_added, self.members_removed)?;
        if self.withheld_no_consent > 0 {
            write!(f, ", {} withheld (no consent)", self.withheld_no_consent)?;
        }
        if self.no_identifier > 0 {
            write!(f, ", {} without a usable identifier", self.no_identifier)?;
        }
        if self.platform_invalid > 0 {
            write!(f, ", {} invalid per the platform", self.platform_invalid)?;
        }
        if let Some(rate) = &self.match_rate {
            write!(f, ", match rate {rate}")?;
        }
        if self.replaced {
            f.write_str(", audience replaced")?;
        }
        Ok(())
    }
}

/// A platform's match rate: the share of uploaded members it matched to its users, as a
/// range (Google reports ranges such as 21–30 %) or exactly (`low == high`, from counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MatchRate {
    /// The lower bound, in percent.
    pub low_percent: u8,
    /// The upper bound, in percent.
    pub high_percent: u8,
    /// Members matched, where the platform gives a count.
    pub matched: Option<u64>,
    /// Members the platform received for the figure, where it gives a count.
    pub received: Option<u64>,
    /// Where the figure comes from (`Data Manager request status`, `offline user data job`,
    /// `Meta upload session`).
    pub source: String,
    /// Whether the platform has finished processing (an estimate otherwise).
    pub settled: bool,
}

impl MatchRate {
    /// A range of `low`–`high` percent (clamped to 0–100, in order).
    pub fn range(low: u8, high: u8, source: impl Into<String>, settled: bool) -> Self {
        let (low, high) = (low.min(100), high.min(100));
        let (low_percent, high_percent) = if low <= high { (low, high) } else { (high, low) };
        Self { low_percent, high_percent, matched: None, received: None, source: source.into(), settled }
    }

    /// `matched` of `received` members (rounded down to a whole percent; 0 when nothing
    /// was received).
    pub fn counted(matched: u64, received: u64, source: impl Into<String>, settled: bool) -> Self {
        let percent = (u128::from(matched.min(received)) * 100).checked_div(u128::from(received)).unwrap_or(0) as u8;
        Self {
            low_percent: percent,
            high_percent: percent,
            matched: Some(matched),
            received: Some(received),
            source: source.into(),
            settled,
        }
    }
}

impl std::fmt::Display for MatchRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.low_percent == self.high_percent {
            write!(f, "{} %", self.low_percent)?;
        } else {
            write!(f, "{}–{} %", self.low_percent, self.high_percent)?;
        }
        if let (Some(m), Some(r)) = (self.matched, self.received) {
            write!(f, " ({m} of {r})")?;
        }
        write!(f, " [{}{}]", self.source, if self.settled { "" } else { ", still processing" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_sums_counts_joins_reasons_and_keeps_the_later_match_rate() {
        let mut a = AudienceReport { members_added: 2, ..AudienceReport::default() };
        a.count_reason("INVALID_FORMAT", 1);
        a.note("n1");
        a.match_rate = Some(MatchRate::range(21, 30, "x", false));
        let mut b = AudienceReport { members_added: 3, members_removed: 1, ..AudienceReport::default() };
        b.count_reason("INVALID_FORMAT", 2);
        b.note("n1");
        b.note("n2");
        b.match_rate = Some(MatchRate::counted(50, 200, "y", true));
        a.merge(b);
        assert_eq!((a.members_added, a.members_removed), (5, 1));
        assert_eq!(a.platform_reasons["INVALID_FORMAT"], 3);
        assert_eq!(a.notes, vec!["n1".to_owned(), "n2".to_owned()]);
        assert_eq!(a.match_rate.as_ref().map(|m| m.low_percent), Some(25));
        a.merge(AudienceReport::default());
        assert_eq!(a.match_rate.as_ref().map(|m| m.source.as_str()), Some("y"));
        assert_eq!(a.to_string(), "5 members added, 1 removed, match rate 25 % (50 of 200) [y]");
    }

    #[test]
    fn a_range_is_clamped_and_ordered() {
        let r = MatchRate::range(130, 90, "s", true);
        assert_eq!((r.low_percent, r.high_percent), (90, 100));
        assert_eq!(MatchRate::counted(5, 0, "s", true).low_percent, 0);
    }
}
