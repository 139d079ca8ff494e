//! What a batch of changes means for an audience: which members to remove, which to add,
//! and what each change leaves as its key's memo.

use std::collections::BTreeMap;

use rse_core::{AudienceReport, Change, ChangeBatch, DestinationError, Memo, Op, Receipt, Record, WriteOutcomes};

use super::fields::{BoundAudienceFields, Consent, text_of};
use super::member::MemberIds;
use super::{Normalizer, RowContext};

/// A member to send: to add (every current identifier) or to remove (identifiers no longer
/// current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMember {
    /// The position of its change in the batch.
    pub change: usize,
    /// Its identifiers.
    pub ids: MemberIds,
    /// Its consent (for platforms that take consent per member).
    pub consent: Consent,
}

/// What one change of the batch comes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePlan {
    /// The memo to hand back once the change is applied: the identifiers the member is left
    /// with (none for a delete).
    pub memo: Option<Memo>,
    /// Why the change is refused before anything is sent (no usable identifier).
    pub refused: Option<String>,
    /// The row is in the segment but lacks the consent the platform requires: it is not
    /// sent (and its identifiers sent earlier are removed).
    pub withheld: bool,
    /// Why the platform refused it, set by the destination with
    /// [`AudiencePlan::refuse`].
    pub platform_refused: Option<String>,
}

/// The members a batch adds and removes. A destination sends every removal before any
/// addition, marks what the platform refused with [`refuse`](Self::refuse), and answers the
/// batch with [`outcomes`](Self::outcomes).
#[derive(Debug, Clone, Default)]
pub struct AudiencePlan {
    /// Members whose identifiers leave the audience: all of a deleted member's, or those a
    /// member no longer has.
    pub removes: Vec<PlannedMember>,
    /// Members to add, with every current identifier (adding one that is there already is
    /// harmless on every platform).
    pub adds: Vec<PlannedMember>,
    /// One per change of the batch, in order.
    pub changes: Vec<ChangePlan>,
    /// Values left out of members because they could not be used, by kind and reason.
    pub unusable: BTreeMap<String, u64>,
}

/// The identifiers of `record`, or why there is none; `Ok(None)` when its consent does not
/// allow sending it.
fn identifiers(
    record: &Record,
    fields: &BoundAudienceFields,
    normalizer: &dyn Normalizer,
    unusable: &mut BTreeMap<String, u64>,
) -> Result<Option<(MemberIds, Consent)>, String> {
    let consent = fields.consent_of(record);
    if !consent.allows_sending() {
        return Ok(None);
    }
    let country = fields.country_of(record);
    let row = RowContext { country: country.as_deref() };
    let mut ids = Vec::with_capacity(fields.columns().len());
    let mut problems: Vec<String> = Vec::new();
    for &(kind, index) in fields.columns() {
        let Some(value) = record.get(index) else { continue };
        let text = match text_of(value) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(what) => {
                let reason = format!("{kind}: the column holds {what}");
                *unusable.entry(reason.clone()).or_default() += 1;
                problems.push(reason);
                continue;
            }
        };
        match normalizer.normalize_into(kind, &text, &row, &mut ids) {
            Ok(()) => {}
            Err(invalid) => {
                let reason = invalid.to_string();
                *unusable.entry(reason.clone()).or_default() += 1;
                problems.push(reason);
            }
        }
    }
    if ids.is_empty() {
        let why = if problems.is_empty() { "every identifier column is empty".to_owned() } else { problems.join("; ") };
        return Err(format!("no usable identifier for {}: {why}", normalizer.platform()));
    }
    Ok(Some((MemberIds::new(ids), consent)))
}

/// The identifiers a key's memo holds (none when it has no memo, or one of another kind).
pub fn memo_ids(memo: Option<&Memo>) -> MemberIds {
    memo.and_then(MemberIds::from_memo).unwrap_or_default()
}

/// The memo to record with `change`'s intent ([`rse_core::Destination::intent_memo`]): the
/// identifiers the member had and those it is about to be sent with, so that whichever the
/// platform ends up holding can be removed later.
pub fn intent_memo(fields: &BoundAudienceFields, normalizer: &dyn Normalizer, change: &Change) -> Option<Memo> {
    if change.op == Op::Delete {
        return None;
    }
    let record = change.record.as_ref()?;
    let (new, _) = identifiers(record, fields, normalizer, &mut BTreeMap::new()).ok()??;
    let old = memo_ids(change.memo.as_ref());
    if new.is_subset(&old) {
        return None;
    }
    // Past the memo's size the new identifiers alone are kept: the old ones are then
    // removed only if the write lands (practically never: ~100 identifiers).
    old.union(&new).to_memo().or_else(|_| new.to_memo()).ok()
}

/// Plans `batch` for an audience whose members are identified by `fields`, normalised by
/// `normalizer`.
pub fn plan_batch(batch: &ChangeBatch, fields: &BoundAudienceFields, normalizer: &dyn Normalizer) -> AudiencePlan {
    let mut plan = AudiencePlan { changes: Vec::with_capacity(batch.len()), ..AudiencePlan::default() };
    for (i, change) in batch.changes.iter().enumerate() {
        let old = memo_ids(change.memo.as_ref());
        let mut step = ChangePlan::default();
        let current = match (change.op, &change.record) {
            (Op::Delete, _) | (_, None) => None,
            (_, Some(record)) => match identifiers(record, fields, normalizer, &mut plan.unusable) {
                Ok(Some(member)) => Some(member),
                Ok(None) => {
                    step.withheld = true;
                    None
                }
                Err(reason) => {
                    step.refused = Some(reason);
                    plan.changes.push(step);
                    continue;
                }
            },
        };
        let new = current.as_ref().map(|(ids, _)| ids.clone()).unwrap_or_default();
        let gone = old.minus(&new);
        if !gone.is_empty() {
            plan.removes.push(PlannedMember { change: i, ids: gone, consent: Consent::default() });
        }
        if let Some((ids, consent)) = current {
            plan.adds.push(PlannedMember { change: i, ids, consent });
        }
        if change.op != Op::Delete {
            match new.to_memo() {
                Ok(memo) => step.memo = Some(memo),
                Err(error) => step.refused = Some(error.to_string()),
            }
        }
        plan.changes.push(step);
    }
    plan
}

impl AudiencePlan {
    /// Marks change `i` refused by the platform, for `reason` (the platform's reason code
    /// and the field, never a value). Its members count as not sent.
    pub fn refuse(&mut self, i: usize, reason: impl Into<String>) {
        if let Some(step) = self.changes.get_mut(i) {
            step.platform_refused.get_or_insert_with(|| reason.into());
        }
    }

    /// Whether change `i` is refused (before sending, or by the platform).
    pub fn is_refused(&self, i: usize) -> bool {
        self.changes.get(i).is_some_and(|s| s.refused.is_some() || s.platform_refused.is_some())
    }

    /// The batch's answer once every request went through: refused changes with their
    /// reasons, the rest applied with their memos; and the audience figures of what was
    /// applied ([`report`](Self::report)). A destination with figures of its own merges
    /// them into `report()` and sets the sum with `WriteOutcomes::set_audience`.
    pub fn outcomes(&self, batch: &ChangeBatch) -> WriteOutcomes {
        let mut outcomes = WriteOutcomes::new(batch.len());
        for (i, (change, step)) in batch.changes.iter().zip(&self.changes).enumerate() {
            if let Some(reason) = step.refused.as_ref().or(step.platform_refused.as_ref()) {
                outcomes.rejected(i, reason.clone());
                continue;
            }
            match (&step.memo, change.op) {
                (Some(memo), op) if op != Op::Delete => {
                    outcomes.applied_with(i, Receipt::default().with_memo(memo.clone()))
                }
                _ => outcomes.applied(i),
            }
        }
        outcomes.set_audience(self.report());
        outcomes
    }

    /// The audience figures of the batch: members and identifiers added and removed (of
    /// changes not refused), members withheld for consent, rows without a usable identifier,
    /// and a note on values left out of their members.
    pub fn report(&self) -> AudienceReport {
        let mut report = AudienceReport::default();
        for step in &self.changes {
            if step.refused.is_some() {
                report.no_identifier += 1;
            } else if step.platform_refused.is_none() {
                report.withheld_no_consent += u64::from(step.withheld);
            }
        }
        for member in self.removes.iter().filter(|m| !self.is_refused(m.change)) {
            report.members_removed += 1;
            report.identifiers_removed += member.ids.len() as u64;
        }
        for member in self.adds.iter().filter(|m| !self.is_refused(m.change)) {
            report.members_added += 1;
            report.identifiers_added += member.ids.len() as u64;
        }
        let unusable: u64 = self.unusable.values().sum();
        if unusable > 0 {
            let reasons: Vec<String> = self.unusable.iter().map(|(reason, n)| format!("{reason} ({n})")).collect();
            report.note(format!(
                "values that could not be used as identifiers were left out of their members: {}",
                reasons.join("; ")
            ));
        }
        report
    }

    /// [`outcomes`](Self::outcomes), finished for `destination`.
    ///
    /// # Errors
    /// Never in practice: every slot is set.
    pub fn finish(&self, batch: &ChangeBatch, destination: &str) -> Result<rse_core::WriteOutcome, DestinationError> {
        self.outcomes(batch).finish(destination)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rse_core::testing::ChangeBatchBuilder;
    use rse_core::{ChangeOutcome, DataType, Field, Schema, Value};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::audience::{AudienceFields, IdentifierKind, InvalidIdentifier, Normalized};

    /// Lower-cased and hashed; an email needs an `@`.
    struct Plain;

    impl Normalizer for Plain {
        fn platform(&self) -> &'static str {
            "test"
        }

        fn normalize(
            &self,
            kind: IdentifierKind,
            raw: &str,
            _row: &RowContext<'_>,
        ) -> Result<Option<Normalized>, InvalidIdentifier> {
            let text = raw.trim().to_lowercase();
            if text.is_empty() {
                return Ok(None);
            }
            if kind == IdentifierKind::Email && !text.contains('@') {
                return Err(InvalidIdentifier { kind, reason: "not an email address".into() });
            }
            Ok(Some(Normalized::Hashed(Sha256::digest(text.as_bytes()).into())))
        }
    }

    fn schema() -> Arc<Schema> {
        Schema::new(
            vec![
                Field::required("id", DataType::Int),
                Field::new("email", DataType::String),
                Field::new("phone", DataType::String),
                Field::new("consent", DataType::Bool),
            ],
            &["id"],
        )
        .unwrap()
        .into_arc()
    }

    fn row(id: i64, email: &str, phone: &str, consent: bool) -> Record {
        let text = |s: &str| if s.is_empty() { Value::Null } else { Value::String(s.into()) };
        Record::new(vec![Value::Int(id), text(email), text(phone), Value::Bool(consent)])
    }

    fn hashed(text: &str) -> Normalized {
        Normalized::Hashed(Sha256::digest(text.as_bytes()).into())
    }

    fn ids(pairs: &[(IdentifierKind, &str)]) -> MemberIds {
        MemberIds::new(pairs.iter().map(|(k, v)| (*k, hashed(v))))
    }

    fn fields() -> BoundAudienceFields {
        AudienceFields::new().email("email").phone("phone").consent("consent").bind(&schema()).unwrap()
    }

    use IdentifierKind::{Email, Phone};

    #[test]
    fn members_are_added_removed_and_moved_to_new_identifiers_by_their_memos() {
        let before = ids(&[(Email, "old@x.com"), (Phone, "+1555")]).to_memo().unwrap();
        let gone = ids(&[(Email, "gone@x.com")]).to_memo().unwrap();
        let batch = ChangeBatchBuilder::new(&schema(), "audience")
            .change(Op::Insert, row(1, "New@X.com", "", true))
            .versioned(Op::Update, row(2, "new@x.com", "+1555", true), 1)
            .with_memo(before)
            .versioned(Op::Delete, row(3, "", "", true), 1)
            .with_memo(gone)
            .build();
        let plan = plan_batch(&batch, &fields(), &Plain);
        assert_eq!(plan.adds.len(), 2);
        assert_eq!(plan.adds[0].ids, ids(&[(Email, "new@x.com")]));
        assert_eq!(plan.adds[1].ids, ids(&[(Email, "new@x.com"), (Phone, "+1555")]));
        // Only the identifier that changed leaves; the whole deleted member leaves.
        assert_eq!(
            plan.removes.iter().map(|m| (m.change, m.ids.clone())).collect::<Vec<_>>(),
            vec![(1, ids(&[(Email, "old@x.com")])), (2, ids(&[(Email, "gone@x.com")]))]
        );
        let out = plan.finish(&batch, "test").unwrap();
        assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 3]);
        let memo = |i: usize| out.receipt(i).and_then(|r| r.memo.clone()).map(|m| MemberIds::from_memo(&m).unwrap());
        assert_eq!(memo(1), Some(ids(&[(Email, "new@x.com"), (Phone, "+1555")])));
        assert_eq!(memo(2), None, "a delete leaves no memo");
        let figures = out.audience.unwrap();
        assert_eq!((figures.members_added, figures.members_removed), (2, 2));
        assert_eq!((figures.identifiers_added, figures.identifiers_removed), (3, 2));
    }

    #[test]
    fn a_member_without_consent_is_not_sent_and_loses_what_it_had() {
        let before = ids(&[(Email, "a@x.com")]).to_memo().unwrap();
        let batch = ChangeBatchBuilder::new(&schema(), "audience")
            .versioned(Op::Update, row(1, "a@x.com", "", false), 1)
            .with_memo(before)
            .change(Op::Insert, row(2, "b@x.com", "", false))
            .build();
        let plan = plan_batch(&batch, &fields(), &Plain);
        assert!(plan.adds.is_empty());
        assert_eq!(plan.removes.len(), 1);
        let out = plan.finish(&batch, "test").unwrap();
        assert_eq!(out.outcomes, vec![ChangeOutcome::Applied; 2]);
        let memo = out.receipt(0).and_then(|r| r.memo.clone()).unwrap();
        assert_eq!(MemberIds::from_memo(&memo), Some(MemberIds::default()));
        let figures = out.audience.unwrap();
        assert_eq!((figures.withheld_no_consent, figures.members_removed, figures.members_added), (2, 1, 0));
    }

    #[test]
    fn a_row_without_a_usable_identifier_is_refused_naming_the_column_not_the_value() {
        let batch = ChangeBatchBuilder::new(&schema(), "audience")
            .change(Op::Insert, row(1, "no-at-sign.example", "", true))
            .change(Op::Insert, row(2, "ok@x.com", "", true))
            .build();
        let mut plan = plan_batch(&batch, &fields(), &Plain);
        assert_eq!(plan.adds.len(), 1);
        plan.refuse(1, "INVALID_FORMAT at userIdentifiers[0]");
        let out = plan.finish(&batch, "test").unwrap();
        let ChangeOutcome::Rejected { reason, .. } = &out.outcomes[0] else { panic!("{:?}", out.outcomes) };
        assert!(reason.contains("email: not an email address") && !reason.contains("no-at-sign"), "{reason}");
        assert!(
            matches!(&out.outcomes[1], ChangeOutcome::Rejected { reason, .. } if reason.starts_with("INVALID_FORMAT"))
        );
        let figures = out.audience.unwrap();
        assert_eq!((figures.no_identifier, figures.members_added), (1, 0));
    }

    #[test]
    fn the_intent_memo_covers_the_old_and_the_new_identifiers() {
        let before = ids(&[(Email, "old@x.com")]);
        let batch = ChangeBatchBuilder::new(&schema(), "audience")
            .versioned(Op::Update, row(1, "new@x.com", "", true), 1)
            .with_memo(before.to_memo().unwrap())
            .versioned(Op::Update, row(2, "old@x.com", "", true), 1)
            .with_memo(before.to_memo().unwrap())
            .build();
        let memo = intent_memo(&fields(), &Plain, &batch.changes[0]).unwrap();
        assert_eq!(MemberIds::from_memo(&memo), Some(ids(&[(Email, "old@x.com"), (Email, "new@x.com")])));
        assert_eq!(intent_memo(&fields(), &Plain, &batch.changes[1]), None, "nothing new to cover");
    }
}
