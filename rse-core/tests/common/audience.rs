//! A fake ad audience: a set of identifiers. A member's identifiers come from its record;
//! those it was last sent with are kept (one per line) as its key's memo, and with
//! `intent_memos` recorded with each change's intent, as a real audience destination does.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rse_core::*;

/// Which identifiers a record has.
pub type IdsOf = fn(&Record) -> BTreeSet<String>;

/// The email column (index 1) alone.
pub fn emails(record: &Record) -> BTreeSet<String> {
    match record.get(1) {
        Some(Value::String(email)) => BTreeSet::from([email.clone()]),
        _ => BTreeSet::new(),
    }
}

/// Two identifiers per customer: one that never changes (the email) and one that changes
/// with the score, so a changed record keeps one identifier and replaces the other.
pub fn email_and_score(record: &Record) -> BTreeSet<String> {
    let mut ids = emails(record);
    if let (Some(email), Some(Value::Float(score))) = (ids.first().cloned(), record.get(2)) {
        ids.insert(format!("{email}/{score}"));
    }
    ids
}

#[derive(Clone)]
pub struct Audience {
    pub inner: Arc<Mutex<Inner>>,
    intent_memos: bool,
    ids_of: IdsOf,
}

#[derive(Default)]
pub struct Inner {
    pub members: BTreeSet<String>,
    /// Writes still to apply and then answer with a transient failure (a lost answer).
    pub lose_answers: u32,
    pub begun: Vec<u64>,
    pub finished: Vec<(u64, bool)>,
}

pub fn ids_in(memo: Option<&Memo>) -> BTreeSet<String> {
    memo.and_then(Memo::as_str).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

fn memo_of(ids: &BTreeSet<String>) -> Memo {
    Memo::text(&ids.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap()
}

impl Audience {
    pub fn new(intent_memos: bool, ids_of: IdsOf) -> Self {
        Self { inner: Arc::default(), intent_memos, ids_of }
    }

    pub fn members(&self) -> BTreeSet<String> {
        self.inner.lock().unwrap().members.clone()
    }

    /// The members `rows` should make.
    pub fn expected(&self, rows: &[Record]) -> BTreeSet<String> {
        rows.iter().flat_map(self.ids_of).collect()
    }

    fn current(&self, change: &Change) -> BTreeSet<String> {
        match (&change.op, &change.record) {
            (Op::Delete, _) | (_, None) => BTreeSet::new(),
            (_, Some(record)) => (self.ids_of)(record),
        }
    }
}

#[async_trait]
impl Destination for Audience {
    fn name(&self) -> &str {
        "audience"
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new(Op::ALL).with_memos(true)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }

    fn intent_memo(&self, _schema: &Schema, change: &Change) -> Option<Memo> {
        if !self.intent_memos {
            return None;
        }
        let mut ids = ids_in(change.memo.as_ref());
        ids.extend(self.current(change));
        Some(memo_of(&ids))
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let mut inner = self.inner.lock().unwrap();
        let mut outcomes = WriteOutcomes::new(batch.len());
        let mut figures = AudienceReport::default();
        for (i, change) in batch.changes.iter().enumerate() {
            let (old, new) = (ids_in(change.memo.as_ref()), self.current(change));
            for gone in old.difference(&new) {
                inner.members.remove(gone);
                figures.identifiers_removed += 1;
            }
            figures.members_removed += u64::from(!old.is_subset(&new));
            figures.members_added += u64::from(!new.is_empty());
            inner.members.extend(new.iter().cloned());
            match change.op {
                Op::Delete => outcomes.applied(i),
                _ => outcomes.applied_with(i, Receipt::updated().with_memo(memo_of(&new))),
            }
        }
        if inner.lose_answers > 0 {
            inner.lose_answers -= 1;
            return Err(DestinationError::Transient {
                message: "connection reset after the upload".into(),
                source: None,
            });
        }
        outcomes.set_audience(figures);
        outcomes.finish("audience")
    }

    async fn begin_run(&self, run: &RunInfo) -> Result<(), DestinationError> {
        self.inner.lock().unwrap().begun.push(run.run_id);
        Ok(())
    }

    async fn finish_run(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        let mut inner = self.inner.lock().unwrap();
        inner.finished.push((run.run_id, end.delivered_all));
        let n = inner.members.len() as u64;
        let mut report = AudienceReport::default();
        report.match_rate = Some(MatchRate::counted(n / 2, n, "test platform", true));
        Ok(DestinationRunReport::audience(report))
    }
}
