//! Per-item answers of a batch request turned into the batch's outcomes, by position or by
//! key, refusing every answer that cannot be attributed.
//!
//! A vendor answers a batch with one result per item (Salesforce sObject Collections, in
//! order), or with results that name the item (HubSpot's `objectWriteTraceId`, the
//! external-id column of a Salesforce Bulk result file, whose row order is not
//! guaranteed). Either way, a change is applied only when a result says so: a change no
//! result accounts for is never taken as applied.
//!
//! # An answer that does not add up is a `Fatal` error
//! When the results do not match what was sent — fewer or more results than items, a key
//! that was not sent, an item reported twice, an item never reported — which changes the
//! vendor applied is unknown. Marking the unreported ones applied would lose them for good
//! (the runner never sends an applied change again), so none of the batch is recorded as
//! applied: the error is [`DestinationError::Fatal`], which ends the run, and the next run
//! sends the batch again — safe, since these writes are keyed upserts. It is not
//! `Transient`: the vendor answered, and the same request would most likely get the same
//! answer (an API version whose answer changed shape, a connector bug), so retrying would
//! only hide a broken contract behind a run that ends much later.
//!
//! ```
//! use rse_connectors::saas::{ItemResult, SentItems};
//! use rse_core::{ChangeOutcome, WriteOutcomes};
//!
//! // Changes 0 and 2 of the batch were sent (change 1 was refused before sending).
//! let mut outcomes = WriteOutcomes::new(3);
//! outcomes.rejected(1, "field `email` is empty");
//! let sent = SentItems::from(vec![0, 2]);
//! let answer = [true, false]; // what the vendor said of each item, in order
//! sent.record_by_position("vendor", &mut outcomes, &answer, |ok| {
//!     if *ok { ItemResult::Applied } else { ItemResult::rejected("refused (code=INVALID)") }
//! })?;
//! let outcome = outcomes.finish("vendor")?;
//! assert_eq!(outcome.outcomes[0], ChangeOutcome::Applied);
//! assert_eq!(outcome.outcomes[2], ChangeOutcome::rejected("refused (code=INVALID)"));
//!
//! // An answer with one result for two items attributes nothing.
//! let mut outcomes = WriteOutcomes::new(3);
//! assert!(sent.record_by_position("vendor", &mut outcomes, &[true], |_| ItemResult::Applied).is_err());
//! assert_eq!(outcomes.unset().count(), 3);
//! # Ok::<(), rse_core::DestinationError>(())
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rse_core::{ChangeOutcome, DestinationError, Receipt, WriteOutcomes};

/// What the vendor said of one item of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemResult {
    /// Applied.
    Applied,
    /// Applied, with what the vendor said it did (created, updated) and a memo to keep for
    /// the key (the vendor's record id).
    AppliedWith(Receipt),
    /// Refused, for `reason` (the vendor's codes, never values); `retryable` when the same
    /// change may succeed later (a lock, a row being updated by another process).
    Rejected {
        /// Why.
        reason: String,
        /// Whether sending it again may succeed.
        retryable: bool,
    },
}

impl ItemResult {
    /// Refused for good.
    pub fn rejected(reason: impl Into<String>) -> Self {
        ItemResult::Rejected { reason: reason.into(), retryable: false }
    }

    /// Refused for now: the runner sends it again.
    pub fn retryable(reason: impl Into<String>) -> Self {
        ItemResult::Rejected { reason: reason.into(), retryable: true }
    }

    fn set(self, outcomes: &mut WriteOutcomes, position: usize) {
        match self {
            ItemResult::Applied => outcomes.applied(position),
            ItemResult::AppliedWith(receipt) => outcomes.applied_with(position, receipt),
            ItemResult::Rejected { reason, retryable } => {
                outcomes.set(position, ChangeOutcome::Rejected { reason, retryable });
            }
        }
    }
}

/// The batch positions of the items of one request, in the request's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentItems {
    positions: Vec<usize>,
}

impl From<Vec<usize>> for SentItems {
    fn from(positions: Vec<usize>) -> Self {
        Self { positions }
    }
}

impl SentItems {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next item of the request is the batch's change at `batch_position`.
    pub fn push(&mut self, batch_position: usize) {
        self.positions.push(batch_position);
    }

    /// How many items were sent.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether none was sent.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The batch positions, in the request's order.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// Sets the outcome of each sent change from the result at the same place in
    /// `results`, as `read` says.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when `results` has another length than the items sent;
    /// nothing is set then (see the module docs for why it is `Fatal`).
    pub fn record_by_position<T>(
        &self,
        destination: &str,
        outcomes: &mut WriteOutcomes,
        results: &[T],
        mut read: impl FnMut(&T) -> ItemResult,
    ) -> Result<(), DestinationError> {
        if results.len() != self.positions.len() {
            return Err(unattributable(
                destination,
                &format!("holds {} results for {} items sent", results.len(), self.positions.len()),
            ));
        }
        for (&position, result) in self.positions.iter().zip(results) {
            read(result).set(outcomes, position);
        }
        Ok(())
    }
}

/// A map from the vendor's key of each item sent (an external id, a trace id) back to its
/// batch position.
#[derive(Debug, Clone, Default)]
pub struct KeyedItems {
    by_key: HashMap<String, usize>,
    /// In the order inserted, for messages.
    positions: Vec<usize>,
}

impl KeyedItems {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The item sent under `vendor_key` is the batch's change at `batch_position`.
    ///
    /// # Errors
    /// The batch position already sent under the same key: two items under one key
    /// cannot be told apart in the answer; refuse one of them first ([`super::BatchIdentities`]).
    pub fn insert(&mut self, vendor_key: impl Into<String>, batch_position: usize) -> Result<(), usize> {
        match self.by_key.entry(vendor_key.into()) {
            Entry::Occupied(first) => Err(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(batch_position);
                self.positions.push(batch_position);
                Ok(())
            }
        }
    }

    /// The batch position of the item sent under `vendor_key`.
    pub fn position(&self, vendor_key: &str) -> Option<usize> {
        self.by_key.get(vendor_key).copied()
    }

    /// How many items were sent.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether none was sent.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Sets the outcome of each change a result names by its key. Chain all the answer's
    /// lists (successes, failures, unprocessed) into one call: every item sent must be
    /// accounted for exactly once.
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] when a result names a key that was not sent, two
    /// results name the same item, or an item has no result; the message gives counts and
    /// batch positions, never the keys (they may be e-mail addresses). The outcomes set
    /// from the other results stay set, but the error fails the write as a whole.
    pub fn record<K: AsRef<str>>(
        &self,
        destination: &str,
        outcomes: &mut WriteOutcomes,
        results: impl IntoIterator<Item = (K, ItemResult)>,
    ) -> Result<(), DestinationError> {
        let mut reported: HashMap<usize, ()> = HashMap::with_capacity(self.positions.len());
        let (mut unknown, mut twice) = (0usize, 0usize);
        for (key, result) in results {
            let Some(&position) = self.by_key.get(key.as_ref()) else {
                unknown += 1;
                continue;
            };
            if reported.insert(position, ()).is_some() {
                twice += 1;
                continue;
            }
            result.set(outcomes, position);
        }
        let missing: Vec<usize> = self.positions.iter().copied().filter(|p| !reported.contains_key(p)).collect();
        if unknown == 0 && twice == 0 && missing.is_empty() {
            return Ok(());
        }
        let mut problems = Vec::new();
        if unknown > 0 {
            problems.push(format!("{unknown} results name an item that was not sent"));
        }
        if twice > 0 {
            problems.push(format!("{twice} results name an item already reported"));
        }
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(10).map(usize::to_string).collect();
            problems.push(format!(
                "{} of {} items sent have no result (batch positions {}{})",
                missing.len(),
                self.positions.len(),
                shown.join(", "),
                if missing.len() > 10 { ", …" } else { "" }
            ));
        }
        Err(unattributable(destination, &problems.join("; ")))
    }
}

fn unattributable(destination: &str, problem: &str) -> DestinationError {
    DestinationError::fatal(format!(
        "{destination}: the vendor's answer {problem}, so which changes it applied is unknown; none of the batch is \
         recorded as applied and the next run sends it again (the writes are keyed upserts, safe to repeat). This is \
         a change in the vendor's answer or a bug in the connector: check the API version"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_results_account_for_every_item_once() {
        let mut sent = KeyedItems::new();
        for (key, position) in [("a", 0), ("b", 1), ("c", 3)] {
            sent.insert(key, position).unwrap();
        }
        assert_eq!(sent.insert("a", 2), Err(0));

        let mut outcomes = WriteOutcomes::new(4);
        outcomes.rejected(2, "duplicate");
        sent.record(
            "v",
            &mut outcomes,
            [
                ("c", ItemResult::Applied),
                ("a", ItemResult::retryable("UNABLE_TO_LOCK_ROW")),
                ("b", ItemResult::Applied),
            ],
        )
        .unwrap();
        let outcome = outcomes.finish("v").unwrap();
        assert_eq!(
            outcome.outcomes[0],
            ChangeOutcome::Rejected { reason: "UNABLE_TO_LOCK_ROW".into(), retryable: true }
        );
        assert_eq!(outcome.outcomes[3], ChangeOutcome::Applied);

        for results in [
            vec![("a", ItemResult::Applied), ("b", ItemResult::Applied)],
            vec![
                ("a", ItemResult::Applied),
                ("b", ItemResult::Applied),
                ("c", ItemResult::Applied),
                ("zed@example.com", ItemResult::Applied),
            ],
            vec![
                ("a", ItemResult::Applied),
                ("b", ItemResult::Applied),
                ("c", ItemResult::Applied),
                ("c", ItemResult::rejected("x")),
            ],
        ] {
            let mut outcomes = WriteOutcomes::new(4);
            let error = sent.record("v", &mut outcomes, results).unwrap_err();
            assert!(matches!(error, DestinationError::Fatal { .. }));
            assert!(!error.to_string().contains("zed@"), "{error}");
        }
        let mut outcomes = WriteOutcomes::new(4);
        let error = sent.record("v", &mut outcomes, [("a", ItemResult::Applied)]).unwrap_err().to_string();
        assert!(error.contains("2 of 3 items sent have no result (batch positions 1, 3)"), "{error}");
        assert!(!outcomes.is_set(1) && !outcomes.is_set(3));
    }
}
