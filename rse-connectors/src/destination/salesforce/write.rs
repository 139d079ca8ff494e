//! One write: deletes by record id (those without one looked up by external id first), then
//! upserts by sObject Collections or, for a large batch, Bulk API 2.0; and what is answered
//! when a later request fails after earlier ones were acknowledged.

use rse_core::{ChangeBatch, ChangeOutcome, DestinationError, WriteOutcome, WriteOutcomes};
use tracing::debug;

use super::api::{Api, Session};
use super::config::SalesforceBulkOptions;
use super::jobs::BulkState;
use super::limits::Usage;
use super::records::{Plan, Shape};

/// Everything one write works with, and what it has learnt so far.
pub(super) struct Write<'a> {
    pub(super) api: &'a Api,
    pub(super) session: Session,
    pub(super) object: &'a str,
    pub(super) shape: &'a Shape,
    pub(super) batch: &'a ChangeBatch,
    pub(super) bulk: &'a SalesforceBulkOptions,
    pub(super) bulk_state: &'a BulkState,
    pub(super) outcomes: WriteOutcomes,
    /// The highest API usage the answers reported.
    pub(super) usage: Usage,
    /// Changes whose outcome an answer of Salesforce set.
    pub(super) acknowledged: usize,
}

impl Write<'_> {
    /// Sends what `plan` asks.
    pub(super) async fn send(&mut self, plan: Plan) -> Result<(), DestinationError> {
        let Plan { mut deletes, lookups, upserts } = plan;
        if !lookups.is_empty() {
            self.look_up(&lookups, &mut deletes).await?;
        }
        if !deletes.is_empty() {
            self.delete(&deletes).await?;
        }
        if upserts.is_empty() {
            return Ok(());
        }
        if self.bulk.enabled && upserts.len() >= self.bulk.min_records {
            self.upsert_bulk(&upserts).await
        } else {
            self.upsert_collections(&upserts).await
        }
    }

    /// The write's answer, given how sending ended.
    ///
    /// A write makes several requests (one per 200 records, or a Bulk job's). When one fails
    /// after Salesforce acknowledged others, the acknowledged changes are answered as
    /// applied, with their record ids, and the ones not sent yet as retryable rejections:
    /// the runner sends just those again (after the backoff it keeps for rejections, or
    /// not at all when the allowance is spent), rather than the whole batch, whose records
    /// would then come back as updated, not created. A failure that retrying cannot fix
    /// (`Fatal`, `Unauthorized`) is the write's error as it is: the run ends, and the next
    /// run sends the batch again (upserts by external id are safe to repeat).
    pub(super) fn finish(mut self, sent: Result<(), DestinationError>) -> Result<WriteOutcome, DestinationError> {
        if let Err(error) = sent {
            let resumable = matches!(
                error,
                DestinationError::Transient { .. }
                    | DestinationError::RateLimited { .. }
                    | DestinationError::QuotaExhausted { .. }
                    | DestinationError::InvalidBatch { .. }
            );
            if self.acknowledged == 0 || !resumable {
                return Err(error);
            }
            let unsent: Vec<usize> = self.outcomes.unset().collect();
            debug!(
                destination = %self.api.name(),
                acknowledged = self.acknowledged,
                unsent = unsent.len(),
                %error,
                "A request failed after others were acknowledged; answering the acknowledged ones."
            );
            let reason = format!("not sent yet: {error}");
            for position in unsent {
                self.outcomes.set(position, ChangeOutcome::Rejected { reason: reason.clone(), retryable: true });
            }
        }
        if let Some(quota) = self.usage.quota() {
            self.outcomes.set_quota(quota);
        }
        self.outcomes.finish(self.api.name())
    }
}
