//! One write: the batch's members planned, removals then additions sent, Meta's answers
//! turned into outcomes and audience figures.

use rse_core::{ChangeBatch, DestinationError, QuotaFeedback, WriteOutcome, WriteOutcomes};
use serde_json::Value as Json;

use super::classify::Usage;
use super::run::{LastRow, ReplaceEnd, ReplaceFailure, SESSION_ROTATION, Session};
use super::wire::{self, Answer, Cells, SessionParam};
use super::{Edge, MetaAudienceDestination};
use crate::audience::{self, AudiencePlan};
use crate::saas::SaasRequest;

const FORM: &str = "application/x-www-form-urlencoded";

impl MetaAudienceDestination {
    /// Sends `rows` to `edge` (`/users`, added or removed); the answer read and its usage
    /// header as quota feedback.
    pub(super) async fn upload(
        &self,
        edge: Edge,
        schema: &[&'static str],
        rows: &[Vec<String>],
        session: Option<SessionParam>,
    ) -> Result<(Answer, Option<QuotaFeedback>), DestinationError> {
        let (method, url) = match edge {
            Edge::Add => (reqwest::Method::POST, self.urls.users.clone()),
            Edge::Remove => (reqwest::Method::DELETE, self.urls.users.clone()),
        };
        let request = SaasRequest::new(method, url).with_body(FORM, wire::form(schema, rows, session));
        let answer = self.client.send(&request).await?.success_or(&self.classifier)?;
        let quota = answer.header("x-business-use-case-usage").and_then(Usage::parse).map(|u| u.feedback());
        let json: Json = answer.json("the upload's answer")?;
        Ok((Answer::read(&json, &self.name)?, quota))
    }

    /// Sends `rows` to `/usersreplace` in the run's replace session.
    pub(super) async fn upload_replace(
        &self,
        schema: &[&'static str],
        rows: &[Vec<String>],
        session: SessionParam,
    ) -> Result<(Answer, Option<QuotaFeedback>), ReplaceFailure> {
        let request = SaasRequest::new(reqwest::Method::POST, self.urls.replace.clone())
            .with_body(FORM, wire::form(schema, rows, Some(session)));
        let answer = self.client.send(&request).await.map_err(ReplaceFailure::Other)?;
        if !answer.is_success() {
            let failure = answer.failure();
            if let Some(sub) = ReplaceFailure::ended(failure.json()) {
                return Err(ReplaceFailure::Ended(sub));
            }
            return Err(ReplaceFailure::Other(answer.error(&self.classifier)));
        }
        let quota = answer.header("x-business-use-case-usage").and_then(Usage::parse).map(|u| u.feedback());
        let json: Json = answer.json("the replace's answer").map_err(ReplaceFailure::Other)?;
        Ok((Answer::read(&json, &self.name).map_err(ReplaceFailure::Other)?, quota))
    }

    pub(super) async fn write_batch(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        let fields = self.bound(&batch.schema)?;
        let plan: AudiencePlan = audience::plan_batch(batch, &fields, &self.normalizer);
        let mut report = plan.report();
        let mut quota = None;
        let mut run = self.run.lock().await;
        let chunk = self.config.rows_per_request;

        // A removal row that holds no key naming a person on its own (an old city or date
        // of birth alone, of a member whose e-mail address stayed) would match no one, or the
        // wrong people: it is not sent.
        let removes: Vec<Cells> = plan
            .removes
            .iter()
            .flat_map(|m| super::rows_of(&m.ids))
            .filter(|cells| cells.iter().any(|(key, _)| super::IDENTIFYING_KEYS.contains(key)))
            .collect();
        let replacing = run.as_ref().and_then(|r| r.replace.as_ref()).is_some_and(|r| r.started && r.ended.is_none());
        if !removes.is_empty() && !replacing {
            // During a replace, whoever is not uploaded leaves the audience: no call.
            for part in removes.chunks(chunk) {
                let schema = wire::schema_of(part);
                let rows: Vec<Vec<String>> = part.iter().map(|c| wire::row(&schema, c)).collect();
                let (answer, q) = self.upload(Edge::Remove, &schema, &rows, None).await?;
                quota = q.or(quota);
                count(&mut report, run.as_mut().map(|r| &mut r.invalid), &answer);
            }
            if let Some(r) = run.as_mut() {
                r.removed_after_last_add = true;
            }
        }

        let adds: Vec<Cells> = plan.adds.iter().flat_map(|m| super::rows_of(&m.ids)).collect();
        for part in adds.chunks(chunk) {
            let schema = wire::schema_of(part);
            let rows: Vec<Vec<String>> = part.iter().map(|c| wire::row(&schema, c)).collect();
            let last = rows.last().map(|row| LastRow { schema: schema.clone(), row: row.clone() });
            // The full refresh's replace session, while it lasts.
            let replace = run.as_ref().and_then(|r| r.replace.as_ref()).filter(|r| r.ended.is_none());
            if let Some(param) = replace.map(|r| r.session.param()) {
                let started = replace.is_some_and(|r| r.started);
                match self.upload_replace(&schema, &rows, param).await {
                    Ok((answer, q)) => {
                        quota = q.or(quota);
                        if let Some(r) = run.as_mut() {
                            if let Some(replace) = r.replace.as_mut() {
                                replace.started = true;
                                replace.session.next_seq += 1;
                                replace.last = last;
                            }
                            count(&mut report, Some(&mut r.invalid), &answer);
                        }
                        continue;
                    }
                    Err(ReplaceFailure::Ended(_)) if started => {
                        // Meta ended the session (its 90 minutes): the audience holds what it
                        // uploaded; the rest goes through /users.
                        if let Some(replace) = run.as_mut().and_then(|r| r.replace.as_mut()) {
                            replace.ended = Some(ReplaceEnd::TimedOut);
                        }
                    }
                    Err(ReplaceFailure::Ended(_)) => {
                        return Err(DestinationError::transient(format!(
                            "{}: Meta refused the first batch of the replace session as ended; the batch will be sent again",
                            self.name
                        )));
                    }
                    Err(ReplaceFailure::Other(error)) => return Err(error),
                }
            }
            let param = run.as_mut().map(|r| {
                let stale = r.add.as_ref().is_none_or(|s| s.opened.elapsed() >= SESSION_ROTATION);
                if stale {
                    let generation = r.add_sessions.len().to_string();
                    let id = wire::session_id(&[
                        &r.sync_id,
                        &r.run_id.to_string(),
                        &self.config.audience_id,
                        "add",
                        &generation,
                    ]);
                    r.add = Some(Session::new(id));
                    r.add_sessions.push(id);
                }
                r.add.as_ref().map(Session::param)
            });
            let (answer, q) = self.upload(Edge::Add, &schema, &rows, param.flatten()).await?;
            quota = q.or(quota);
            if let Some(r) = run.as_mut() {
                if let Some(s) = r.add.as_mut() {
                    s.next_seq += 1;
                }
                r.last_add = last;
                r.removed_after_last_add = false;
                count(&mut report, Some(&mut r.invalid), &answer);
            } else {
                count(&mut report, None, &answer);
            }
        }
        drop(run);

        let mut outcomes: WriteOutcomes = plan.outcomes(batch);
        if let Some(q) = quota {
            outcomes.set_quota(q);
        }
        outcomes.set_audience(report);
        outcomes.finish(&self.name)
    }
}

/// Adds Meta's invalid rows and reasons to the write's report (and the run's count).
fn count(report: &mut rse_core::AudienceReport, run_invalid: Option<&mut u64>, answer: &Answer) {
    report.platform_invalid += answer.invalid;
    for (reason, n) in &answer.reasons {
        report.count_reason(reason.clone(), *n);
    }
    if let Some(total) = run_invalid {
        *total += answer.invalid;
    }
}
