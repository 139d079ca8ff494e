//! What spans a run: its upload sessions, the replace flow of a full refresh, and the
//! run's end (closing sessions, reading the match rate).

use std::time::{Duration, Instant};

use rse_core::{AudienceReport, DestinationError, DestinationRunReport, MatchRate, RunEnd, RunInfo};
use serde_json::Value as Json;
use tracing::{debug, warn};

use super::MetaAudienceDestination;
use super::classify::{GraphError, REPLACE_FINISHED, REPLACE_TIMED_OUT};
use super::wire::{SessionParam, session_id};
use crate::saas::SaasRequest;

/// A `/users` session is rotated after this long: Meta ends a session 90 minutes after its
/// first batch and may discard later batches.
pub(super) const SESSION_ROTATION: Duration = Duration::from_secs(60 * 60);

/// Stages of a session that mean Meta has finished matching it. Meta documents `stage` as
/// "Status of the session" without listing values; these are the words a finished session
/// is taken to read.
const DONE_STAGES: [&str; 3] = ["finished", "completed", "done"];

/// One upload session: its id and the next `batch_seq`, which grows only when a batch is
/// acknowledged (a batch sent again after a lost answer keeps its number).
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub id: i64,
    pub next_seq: i64,
    pub opened: Instant,
}

impl Session {
    pub fn new(id: i64) -> Self {
        Self { id, next_seq: 1, opened: Instant::now() }
    }

    /// The session parameter of the next batch.
    pub fn param(&self) -> SessionParam {
        SessionParam { id: self.id, batch_seq: self.next_seq, last: false }
    }
}

/// How a replace session ended before the run's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplaceEnd {
    /// Meta answered that its 90 minutes were over (2650/1870158), or that it had ended:
    /// the audience holds what the session uploaded; the rest went through `/users`.
    TimedOut,
}

/// The last row a session received, sent again with `last_batch_flag` to close it.
#[derive(Debug, Clone)]
pub(super) struct LastRow {
    pub schema: Vec<&'static str>,
    pub row: Vec<String>,
}

/// The replace flow of a full refresh.
#[derive(Debug, Clone)]
pub(super) struct Replace {
    pub session: Session,
    /// Meta acknowledged batch 1: the audience is being replaced, so removals need no call.
    pub started: bool,
    pub ended: Option<ReplaceEnd>,
    pub last: Option<LastRow>,
}

/// What the destination keeps between `begin_run` and `finish_run`.
#[derive(Debug, Clone)]
pub(super) struct RunState {
    pub sync_id: String,
    pub run_id: u64,
    pub replace: Option<Replace>,
    /// The `/users` add session in use, and every one the run used.
    pub add: Option<Session>,
    pub add_sessions: Vec<i64>,
    pub last_add: Option<LastRow>,
    /// A removal went out after the last add: re-sending that add to close its session
    /// could restore an identifier the removal took out.
    pub removed_after_last_add: bool,
    /// Rows Meta dropped as invalid, this run.
    pub invalid: u64,
}

impl MetaAudienceDestination {
    /// Opens the run: its sessions are derived from the sync and run ids.
    pub(super) async fn open_run(&self, run: &RunInfo) {
        let audience = self.config.audience_id.as_str();
        let run_id = run.run_id.to_string();
        let replace = (run.full_resync && self.config.replace_on_full_resync).then(|| Replace {
            session: Session::new(session_id(&[&run.sync_id, &run_id, audience, "replace"])),
            started: false,
            ended: None,
            last: None,
        });
        *self.run.lock().await = Some(RunState {
            sync_id: run.sync_id.to_string(),
            run_id: run.run_id,
            replace,
            add: None,
            add_sessions: Vec::new(),
            last_add: None,
            removed_after_last_add: false,
            invalid: 0,
        });
    }

    /// Closes what the run opened and reports on it.
    pub(super) async fn close_run(&self, end: &RunEnd) -> Result<DestinationRunReport, DestinationError> {
        let Some(state) = self.run.lock().await.take() else {
            return Ok(DestinationRunReport::default());
        };
        let mut report = AudienceReport::default();
        let mut read = Vec::new();
        // Rows sent twice to close a session: taken out of the received count again.
        let mut resent = 0u64;
        if let Some(replace) = &state.replace {
            resent += self.close_replace(replace, end, &mut report).await;
            if replace.started {
                read.push(replace.session.id);
            }
        }
        if let (Some(session), Some(last)) = (&state.add, &state.last_add)
            && !state.removed_after_last_add
        {
            let param = SessionParam { last: true, ..session.param() };
            match self.upload(super::Edge::Add, &last.schema, std::slice::from_ref(&last.row), Some(param)).await {
                Ok(_) => resent += 1,
                Err(error) => {
                    debug!(destination = %self.name, %error, "Could not mark the add session's last batch; Meta closes it after 90 minutes.");
                }
            }
        }
        read.extend(&state.add_sessions);
        if state.invalid > 0 {
            report.note(format!(
                "Meta reports invalid entries without a row index: {} rows of this run were dropped by Meta and cannot be named",
                state.invalid
            ));
        }
        if !read.is_empty() {
            match self.match_rate(&read, resent).await {
                Ok(rate) => report.match_rate = rate,
                Err(error) => {
                    warn!(destination = %self.name, %error, "Could not read the run's upload sessions.");
                    report.note(format!("the match rate could not be read: {error}"));
                }
            }
        }
        Ok(DestinationRunReport::audience(report))
    }

    /// Closes the replace session; returns how many rows it sent again to do so.
    async fn close_replace(&self, replace: &Replace, end: &RunEnd, report: &mut AudienceReport) -> u64 {
        let mut resent = 0;
        match (replace.started, replace.ended, &replace.last) {
            (false, _, _) | (true, _, None) => {
                report.note("the full refresh uploaded no member, so nothing replaced the audience (removals went through /users)");
            }
            (true, Some(ReplaceEnd::TimedOut), _) => report.note(
                "the replace session ran past Meta's 90 minutes: Meta replaced the audience with the members uploaded until then, and the rest were added through /users",
            ),
            (true, None, Some(last)) => {
                // Closed whether or not every change was delivered: Meta ends an open replace
                // 90 minutes after its first batch with the same result (the audience holds
                // what was uploaded), and blocks /users until then.
                let param = SessionParam { last: true, ..replace.session.param() };
                let mut closed = false;
                for attempt in 1..=3 {
                    match self.upload_replace(&last.schema, std::slice::from_ref(&last.row), param).await {
                        Ok(_) => {
                            closed = true;
                            resent = 1;
                            break;
                        }
                        Err(ReplaceFailure::Ended(sub)) if sub == REPLACE_FINISHED => {
                            closed = true;
                            break;
                        }
                        Err(ReplaceFailure::Ended(_)) => {
                            report.note("the replace session ran past Meta's 90 minutes before it was closed: Meta replaced the audience with the members uploaded");
                            return resent;
                        }
                        Err(ReplaceFailure::Other(error)) => {
                            debug!(destination = %self.name, attempt, %error, "Closing the replace session failed.");
                            if attempt < 3 {
                                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                            } else {
                                report.note(format!(
                                    "the replace session could not be closed ({error}); Meta ends it 90 minutes after its first batch and the audience then holds the members uploaded"
                                ));
                            }
                        }
                    }
                }
                if closed && end.delivered_all {
                    report.replaced = true;
                } else if closed {
                    report.note(
                        "the full refresh did not deliver every change: Meta replaced the audience with the members uploaded, so members not uploaded in this run are gone from it until the next run, which resumes the full refresh and uploads every member again",
                    );
                }
            }
        }
        resent
    }

    /// The match rate of `sessions` (summed), from Meta's sessions edge, less the `resent`
    /// rows that closed sessions (each a repeat of a row already counted).
    async fn match_rate(&self, sessions: &[i64], resent: u64) -> Result<Option<MatchRate>, DestinationError> {
        let (mut received, mut matched, mut settled) = (0u64, 0u64, true);
        for id in sessions {
            let mut url = self.urls.sessions.clone();
            url.query_pairs_mut()
                .append_pair("session_id", &id.to_string())
                .append_pair("fields", "session_id,num_received,num_matched,num_invalid_entries,stage,progress");
            let answer = self.client.send(&SaasRequest::get(url)).await?.success_or(&self.classifier)?;
            let json: Json = answer.json("the sessions edge")?;
            let Some(entry) = json
                .get("data")
                .and_then(Json::as_array)
                .and_then(|d| d.iter().find(|e| e.get("session_id").and_then(number).is_some_and(|s| s == *id as u64)))
            else {
                settled = false;
                continue;
            };
            received += entry.get("num_received").and_then(number).unwrap_or(0);
            matched += entry.get("num_matched").and_then(number).unwrap_or(0);
            let stage = entry.get("stage").and_then(Json::as_str).unwrap_or("");
            let done = DONE_STAGES.iter().any(|s| stage.eq_ignore_ascii_case(s))
                || entry.get("progress").and_then(number) == Some(100);
            settled &= done;
        }
        let received = received.saturating_sub(resent);
        Ok((received > 0).then(|| {
            MatchRate::counted(
                matched.min(received),
                received,
                "Meta upload sessions (num_matched / num_received)",
                settled,
            )
        }))
    }
}

fn number(v: &Json) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// Why a `/usersreplace` call failed.
#[derive(Debug)]
pub(super) enum ReplaceFailure {
    /// Meta says the session is over (2650 with this subcode: timed out or finished).
    Ended(u64),
    Other(DestinationError),
}

impl ReplaceFailure {
    /// The subcode of an answer saying the session is over, if it says so.
    pub(super) fn ended(json: Option<&Json>) -> Option<u64> {
        let e = GraphError::read(json?)?;
        (e.code == 2650).then_some(e.subcode).flatten().filter(|s| [REPLACE_TIMED_OUT, REPLACE_FINISHED].contains(s))
    }
}
