//! The end of a run: the full refresh's `removeAll`, and Google's processing status of the
//! run's requests (`requestStatus:retrieve`) as the run's audience figures.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use rse_core::{AudienceReport, DestinationError, DestinationRunReport, MatchRate, RunEnd, RunInfo};
use serde_json::Value as Json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::wire::{self, DestinationStatus, RemoveAllRequest};
use super::{GoogleDataManagerDestination, Kind, Sent};
use crate::saas::SaasRequest;

/// Where the match rate comes from, in reports.
const SOURCE: &str = "Data Manager request status";

impl GoogleDataManagerDestination {
    pub(super) async fn finish(&self, run: &RunInfo, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        let requests = std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner));
        let mut report = AudienceReport::default();
        if run.full_resync && self.config.replace_on_full_resync {
            if end.delivered_all {
                self.remove_older_than(run.started_at_ms).await?;
                report.replaced = true;
            } else {
                report.note(
                    "full refresh not completed: not every change of the run was delivered, so members the run did \
                     not send again were left in the list; the next full_resync run removes them",
                );
            }
        }
        if !self.config.status_wait.is_zero() && !requests.is_empty() {
            self.report_statuses(&requests, &mut report).await;
        }
        Ok(DestinationRunReport::audience(report))
    }

    /// `removeAll` of every member last added before the run started (less the clock
    /// margin).
    async fn remove_older_than(&self, started_at_ms: u64) -> Result<(), DestinationError> {
        let start = UNIX_EPOCH + Duration::from_millis(started_at_ms);
        let as_of = start.checked_sub(self.config.refresh_clock_margin).unwrap_or(UNIX_EPOCH).min(SystemTime::now());
        let destination = self.destination();
        let body = RemoveAllRequest { destinations: [&destination], remove_as_of_time: Some(rfc3339(as_of)) };
        match self.post(&self.urls.remove_all, &body).await? {
            Sent::Accepted(_) => {
                info!(destination = %self.name, "Full refresh: members not sent since the run started removed.");
                Ok(())
            }
            Sent::Refused(error) => Err(match self.refusal(Kind::RemoveAll, &error) {
                DestinationError::InvalidBatch { message } => DestinationError::fatal(message),
                other => other,
            }),
        }
    }

    /// Polls the status of `requests` until each is processed or `status_wait` has passed,
    /// and adds what Google reports to `report`.
    async fn report_statuses(&self, requests: &[(String, Kind)], report: &mut AudienceReport) {
        let deadline = Instant::now() + self.config.status_wait;
        let mut pending: Vec<&(String, Kind)> = requests.iter().filter(|(_, kind)| *kind != Kind::RemoveAll).collect();
        let mut done: Vec<(Kind, DestinationStatus)> = Vec::new();
        loop {
            let mut still = Vec::new();
            let mut wait = self.config.status_poll_interval;
            let mut queue = pending.into_iter();
            while let Some(request) = queue.next() {
                match self.status(&request.0).await {
                    Ok(Some(status)) if status.status != "PROCESSING" => done.push((request.1, status)),
                    Ok(Some(_)) => still.push(request),
                    // Google does not know the request (it keeps statuses a while only).
                    Ok(None) => {}
                    // Reads have a quota too: wait, then go on with the rest.
                    Err(DestinationError::RateLimited { retry_after }) => {
                        wait = wait.max(retry_after.unwrap_or(wait));
                        still.push(request);
                        still.extend(queue.by_ref());
                    }
                    Err(error) => {
                        warn!(destination = %self.name, %error, "Reading the processing status failed; the run's report goes without it.");
                        report.note(format!("Google's processing status could not be read: {error}"));
                        let sent = requests.len();
                        return self.add_statuses(&done, sent, sent.saturating_sub(done.len()), report);
                    }
                }
            }
            pending = still;
            if pending.is_empty() || Instant::now() + wait > deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        let left = pending.len();
        self.add_statuses(&done, requests.len(), left, report);
    }

    /// The status of request `id`: `None` when Google does not know it.
    async fn status(&self, id: &str) -> Result<Option<DestinationStatus>, DestinationError> {
        let mut url = self.urls.status.clone();
        url.query_pairs_mut().append_pair("requestId", id);
        let answer = self.client.send(&SaasRequest::new(Method::GET, url)).await?;
        if answer.status().as_u16() == 400 {
            return Ok(None);
        }
        let answer = answer.success_or(&self.classifier)?;
        let body: Json = answer.json("the request status")?;
        Ok(wire::statuses(&body).into_iter().next())
    }

    fn add_statuses(&self, done: &[(Kind, DestinationStatus)], sent: usize, left: usize, report: &mut AudienceReport) {
        let mut failed_requests = 0;
        let mut dropped = 0u64;
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let (mut weight, mut low, mut high) = (0u64, 0u64, 0u64);
        for (kind, status) in done {
            if matches!(status.status.as_str(), "PARTIAL_SUCCESS" | "FAILED") {
                failed_requests += 1;
            }
            for (reason, n) in &status.errors {
                dropped += n;
                *reasons.entry(reason.clone()).or_default() += n;
            }
            if *kind == Kind::Ingest
                && let Some((lo, hi)) = status.match_rate_range.as_deref().and_then(wire::match_rate_bounds)
            {
                let n = status.records.max(1);
                weight += n;
                low += u64::from(lo) * n;
                high += u64::from(hi) * n;
            }
        }
        for (reason, n) in reasons {
            report.count_reason(reason, n);
        }
        report.platform_invalid += dropped;
        if dropped > 0 {
            report.note(format!(
                "Google did not process {dropped} member(s) of {failed_requests} request(s) of this run (reasons and \
                 counts in platform_reasons); it reports counts per request, never which members, so those rows \
                 cannot be named and stay recorded as delivered"
            ));
        }
        if left > 0 {
            report.note(format!(
                "Google had not finished processing {left} of the run's {sent} request(s) within status_wait ({}s): \
                 their figures are not in this report",
                self.config.status_wait.as_secs()
            ));
        }
        if let Some(lo) = low.checked_div(weight) {
            // The bounds weighted by each upload's members: the lower rounded down, the
            // upper up, so the range holds the true rate.
            let hi = high.div_ceil(weight);
            let (lo, hi) = (u8::try_from(lo).unwrap_or(100), u8::try_from(hi).unwrap_or(100));
            report.match_rate = Some(MatchRate::range(lo, hi, SOURCE, left == 0));
        }
    }
}

/// `t` as RFC 3339 UTC (`google.protobuf.Timestamp` in JSON).
fn rfc3339(t: SystemTime) -> String {
    let micros = t.duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    rse_core::time::format_timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_714_564_800_123)), "2024-05-01T12:00:00.123000Z");
    }
}
