//! One vendor record per batch: changes that resolve to the same vendor record (the same
//! lower-cased e-mail, the same external id) are refused but the first.
//!
//! # Why
//! Two source rows with different keys can name one vendor record: two customer rows
//! with the same e-mail address are one HubSpot contact. Sent in one batch:
//! - HubSpot refuses a batch upsert with two inputs for one record, as a whole, and for
//!   good (saas-contracts §1); Salesforce refuses the same external id twice in one request
//!   (`DUPLICATE_EXTERNAL_ID`, §2). One pair would fail every batch it lands in.
//! - Where a vendor takes both, the record ends up holding whichever it applied last, and
//!   the next run that changes either row flips it again.
//!
//! So the first change goes, and each other one is rejected (not retryable: sending it
//! later would overwrite the first's values) with a reason naming the change it collides
//! with by its batch position and key hash — never the identity, which is personal data.
//! The fix is in the model: make the identity unique.
//!
//! ```
//! use rse_connectors::saas::BatchIdentities;
//! use rse_core::{Key, Value, WriteOutcomes};
//!
//! let mut seen = BatchIdentities::new("HubSpot contact", "email");
//! let mut outcomes = WriteOutcomes::new(2);
//! let (k0, k1) = (Key::from_values(&[Value::Int(1)]), Key::from_values(&[Value::Int(2)]));
//! assert!(seen.claim_or_reject(&mut outcomes, 0, &k0, "ada@example.com"));
//! assert!(!seen.claim_or_reject(&mut outcomes, 1, &k1, "ada@example.com"));
//! assert!(outcomes.is_set(1) && !outcomes.is_set(0));
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rse_core::{ChangeOutcome, Key, KeyHash, WriteOutcomes};

/// A change that resolves to a vendor record an earlier change of the batch already
/// claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The batch position of the change that goes.
    pub first: usize,
    /// Why this one is refused (names `first` by position and key hash, never the identity).
    pub reason: String,
}

/// The vendor identities claimed so far in one batch.
#[derive(Debug, Clone)]
pub struct BatchIdentities {
    record: String,
    by: String,
    seen: HashMap<String, (usize, KeyHash)>,
}

impl BatchIdentities {
    /// For vendor records called `record` (e.g. `"HubSpot contact"`) identified by `by`
    /// (e.g. `"email"`, or `"Rse_Ext_Id__c"`).
    pub fn new(record: impl Into<String>, by: impl Into<String>) -> Self {
        Self { record: record.into(), by: by.into(), seen: HashMap::new() }
    }

    /// Claims `identity` (already normalized as the vendor matches it, e.g. lower-cased)
    /// for the change at `position` with `key`.
    ///
    /// # Errors
    /// A [`Duplicate`] when an earlier change claimed it.
    pub fn claim(&mut self, position: usize, key: &Key, identity: &str) -> Result<(), Duplicate> {
        match self.seen.entry(identity.to_owned()) {
            Entry::Vacant(slot) => {
                slot.insert((position, key.redacted()));
                Ok(())
            }
            Entry::Occupied(first) => {
                let (first, first_key) = *first.get();
                Err(Duplicate {
                    first,
                    reason: format!(
                        "another change of this batch (position {first}, key {first_key}) resolves to the same {} by `{}`; \
                         only the first is sent, since the vendor refuses two writes to one record in a batch, or keeps \
                         whichever came last. Two source rows share this `{}`: make it unique in the model",
                        self.record, self.by, self.by
                    ),
                })
            }
        }
    }

    /// [`claim`](Self::claim), rejecting the change in `outcomes` when it is a duplicate;
    /// returns whether it is to be sent.
    pub fn claim_or_reject(
        &mut self,
        outcomes: &mut WriteOutcomes,
        position: usize,
        key: &Key,
        identity: &str,
    ) -> bool {
        match self.claim(position, key, identity) {
            Ok(()) => true,
            Err(duplicate) => {
                outcomes.set(position, ChangeOutcome::rejected(duplicate.reason));
                false
            }
        }
    }

    /// How many identities were claimed.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use rse_core::Value;

    use super::*;

    #[test]
    fn the_first_goes_and_the_reason_names_it_without_the_identity() {
        let mut seen = BatchIdentities::new("HubSpot contact", "email");
        let keys: Vec<Key> = (0..3).map(|i| Key::from_values(&[Value::Int(i)])).collect();
        seen.claim(0, &keys[0], "ada@example.com").unwrap();
        seen.claim(1, &keys[1], "bob@example.com").unwrap();
        let duplicate = seen.claim(2, &keys[2], "ada@example.com").unwrap_err();
        assert_eq!(duplicate.first, 0);
        assert!(duplicate.reason.contains(&format!("position 0, key {}", keys[0].redacted())), "{}", duplicate.reason);
        assert!(duplicate.reason.contains("same HubSpot contact by `email`"), "{}", duplicate.reason);
        assert!(!duplicate.reason.contains("ada@"), "{}", duplicate.reason);
        assert_eq!(seen.len(), 2);
    }
}
