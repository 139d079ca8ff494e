//! One write: the batch planned by the audience module, the removes' job, then the adds'
//! job, and the outcomes mapped back to the changes by operation index.

use std::collections::BTreeMap;

use rse_core::{
    AudienceReport, ChangeBatch, DestinationError, DestinationRunReport, MatchRate, RunInfo, WriteOutcome,
    WriteOutcomes,
};
use serde_json::Value as Json;

use super::GoogleAdsDestination;
use super::job::{self, JobKind, JobResult, JobSpec, Pace};
use super::payload::{user_data, user_identifiers};
use crate::audience::{GoogleAdsNormalizer, PlannedMember, memo_ids, plan_batch};

/// Where the match rate comes from, in the report.
const MATCH_RATE_SOURCE: &str = "Google Ads offline user data job";

/// The operations of a job and the change each one stands for.
struct Built {
    operations: Vec<Json>,
    sizes: Vec<usize>,
    changes: Vec<usize>,
    identifiers: u64,
}

impl GoogleAdsDestination {
    pub(super) fn pace(&self) -> Pace {
        Pace {
            identifiers_per_request: self.config.identifiers_per_request,
            poll: self.poll_options(),
            preview: self.config.match_rate_preview,
        }
    }

    /// The operations of `members`; a remove's address is completed from the identifiers
    /// last sent (the change's memo).
    fn build(
        &self,
        batch: &ChangeBatch,
        members: &[PlannedMember],
        kind: JobKind,
        unsendable: &mut Vec<usize>,
    ) -> Built {
        let mut built = Built { operations: Vec::new(), sizes: Vec::new(), changes: Vec::new(), identifiers: 0 };
        for member in members {
            let last_sent = match kind {
                JobKind::Remove => batch.changes.get(member.change).map(|c| memo_ids(c.memo.as_ref())),
                JobKind::Create => None,
            };
            let whole = last_sent.as_ref().unwrap_or(&member.ids);
            let identifiers = user_identifiers(&member.ids, whole);
            if identifiers.is_empty() {
                if kind == JobKind::Create {
                    unsendable.push(member.change);
                }
                continue;
            }
            built.identifiers += identifiers.len() as u64;
            built.sizes.push(identifiers.len());
            built.operations.push(user_data(identifiers, &member.consent));
            built.changes.push(member.change);
        }
        built
    }

    async fn run_job(
        &self,
        batch: &ChangeBatch,
        kind: JobKind,
        built: &Built,
        remove_all: bool,
    ) -> Result<JobResult, DestinationError> {
        let mut keys: Vec<[u8; 16]> = batch.changes.iter().map(|c| c.idempotency_key.0).collect();
        let spec = JobSpec {
            kind,
            seed: job::seed(&batch.sync_id, kind, &mut keys),
            operations: built.operations.clone(),
            sizes: built.sizes.clone(),
            remove_all,
        };
        job::execute(&self.api, &spec, &self.pace()).await
    }

    pub(super) async fn write_batch(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.is_empty() {
            return WriteOutcomes::new(0).finish(&self.name);
        }
        let fields = self.bound(&batch.schema)?;
        let mut plan = plan_batch(batch, &fields, &GoogleAdsNormalizer);
        let mut extra = AudienceReport::default();
        let mut refused: BTreeMap<usize, String> = BTreeMap::new();
        let mut unsendable = Vec::new();

        let removes = self.build(batch, &plan.removes, JobKind::Remove, &mut unsendable);
        if !removes.operations.is_empty() {
            let result = self.run_job(batch, JobKind::Remove, &removes, false).await?;
            collect(&result, &removes, &mut refused, &mut extra);
        }
        let adds = self.build(batch, &plan.adds, JobKind::Create, &mut unsendable);
        let remove_all = self.replace_pending();
        if !adds.operations.is_empty() {
            let result = self.run_job(batch, JobKind::Create, &adds, remove_all).await?;
            collect(&result, &adds, &mut refused, &mut extra);
            if remove_all {
                self.replace_done();
                extra.replaced = true;
            }
            if let Some((low, high)) = result.match_rate.as_deref().and_then(job::match_range) {
                extra.match_rate = Some(MatchRate::range(low, high, MATCH_RATE_SOURCE, result.settled));
            }
        }
        for change in unsendable {
            refused.entry(change).or_insert_with(|| {
                "no identifier the Google Ads API takes for Customer Match: map an e-mail, phone, mobile id, \
                 external id, or a whole address (first name, last name, country and postal code)"
                    .to_owned()
            });
        }
        for (change, reason) in refused {
            plan.refuse(change, reason);
        }
        let mut outcomes = plan.outcomes(batch);
        let mut report = plan.report();
        report.merge(extra);
        outcomes.set_audience(report);
        outcomes.finish(&self.name)
    }

    /// A job holding `removeAll` alone: a full refresh whose run added no member.
    pub(super) async fn replace_only(&self, run: &RunInfo) -> Result<DestinationRunReport, DestinationError> {
        let mut run_key = [0u8; 16];
        run_key[..8].copy_from_slice(&run.run_id.to_le_bytes());
        let spec = JobSpec {
            kind: JobKind::Create,
            seed: job::seed(&run.sync_id, JobKind::Create, &mut [run_key]),
            operations: Vec::new(),
            sizes: Vec::new(),
            remove_all: true,
        };
        job::execute(&self.api, &spec, &self.pace()).await?;
        let mut report = AudienceReport::default();
        report.replaced = true;
        Ok(DestinationRunReport::audience(report))
    }
}

/// Records a job's refusals against the changes of its operations.
fn collect(result: &JobResult, built: &Built, refused: &mut BTreeMap<usize, String>, report: &mut AudienceReport) {
    for (op, code, reason) in &result.refused {
        if let Some(change) = built.changes.get(*op) {
            refused.entry(*change).or_insert_with(|| reason.clone());
            report.count_reason(code.clone(), 1);
        }
    }
}
