//! Custom audiences: what `/users` (add, remove) and `/usersreplace` do to an audience's
//! identifiers, the upload sessions, and the sessions edge that reports them.
//!
//! Follows Meta's references "Custom Audience Users" (`POST`/`DELETE
//! /{custom_audience_id}/users`: `payload` with `schema` and `data`, at most 10,000 rows,
//! optional `session`; answer `{audience_id, session_id, num_received, num_invalid_entries,
//! invalid_entry_samples}`; the operation_status 471 block, code 100 subcode 1713230),
//! "Custom Audience Usersreplace" (`session` required), "Custom Audience Session" (`GET
//! /{custom_audience_id}/sessions`: `session_id`, `num_received`, `num_matched`,
//! `num_invalid_entries`, `progress`, `stage`, `start_time`, `end_time`, numbers as numeric
//! strings), and the guide "Customer File Custom Audiences" (multi-key rows aligned to the
//! schema with unknown keys blank; `batch_seq` from 1; a replace session ends with
//! `last_batch_flag` or 90 minutes after its first batch, and then the audience holds what
//! the session uploaded; replace errors are code 2650 with subcodes 1870145 in progress,
//! 1870147 first batch missing, 1870158 timed out, 1870159 finished). Invalid rows are
//! dropped and counted, the call succeeds, no row index is given (saas-contracts.md §4).
//! An audience first filled with multi-key rows refuses single-key uploads with code 2650
//! (ME8).
//!
//! Choices of this server where Meta says nothing: `/users` during an open replace session
//! answers 2650/1870145 (Meta only says "don't"); a `/users` session is closed 90 minutes
//! after its first batch but its late batches are applied; `stage` reads `uploading`, then
//! `processing` for [`Audiences::settle_reads`] reads after the session closed, then
//! `finished` with `progress` 100 (Meta documents neither the stage values nor progress's
//! scale); a row whose cells are all blank is invalid.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};
use tokio::time::Instant;

use super::payload;
use super::wire::Reply;

/// Keys Meta wants SHA-256 hashed (64 lowercase hex digits).
pub const HASHED_KEYS: [&str; 13] =
    ["EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "COUNTRY"];
/// Keys sent in clear.
pub const PLAIN_KEYS: [&str; 2] = ["MADID", "EXTERN_ID"];
/// The most rows one call may carry.
pub const MAX_ROWS: usize = 10_000;

/// Which edge a call wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Add,
    Remove,
    Replace,
}

impl Edge {
    pub fn name(self) -> &'static str {
        match self {
            Edge::Add => "users (add)",
            Edge::Remove => "users (remove)",
            Edge::Replace => "usersreplace",
        }
    }
}

/// How the server treats rows with an invalid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidRows {
    /// Meta's behaviour: drop them, count them, succeed.
    #[default]
    Drop,
    /// Refuse the whole call with code 100.
    Reject,
}

/// What data an audience was filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    SingleKey,
    MultiKey,
}

#[derive(Debug, Clone)]
pub struct Audience {
    pub id: String,
    pub name: String,
    /// The ad account (numeric id) it belongs to.
    pub account: String,
    pub data: Option<DataKind>,
    /// Its identifiers, as (key, value).
    pub members: BTreeSet<(String, String)>,
    /// `operation_status` 471: membership edits are refused.
    pub restricted: bool,
    /// The replace session in progress.
    pub replacing: Option<i64>,
    /// Replaces completed.
    pub replaced: u32,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub audience: String,
    pub edge: Edge,
    /// Given by the client (`false`: Meta made one up for a call without `session`).
    pub declared: bool,
    pub started: Instant,
    pub started_at: SystemTime,
    pub batch_seqs: Vec<i64>,
    pub estimated_total: Option<i64>,
    pub received: u64,
    pub invalid: u64,
    pub matched: u64,
    /// When it ended: `last_batch_flag`, or the 90-minute limit.
    pub closed: Option<SystemTime>,
    pub timed_out: bool,
    /// A replace session's identifiers so far.
    pub uploaded: BTreeSet<(String, String)>,
    pub reads_after_close: u32,
}

/// One write call as the server understood it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub edge: Edge,
    pub audience: String,
    pub schema: Vec<String>,
    pub rows: usize,
    pub session: Option<Json>,
}

pub struct Audiences {
    pub by_id: BTreeMap<String, Audience>,
    /// By (ad account, session id): Meta wants session ids unique within an ad account.
    pub sessions: BTreeMap<(String, i64), Session>,
    /// Identifiers of people on the platform: a row with one of them counts as matched.
    pub known: BTreeSet<(String, String)>,
    /// Identifiers Meta will not take (a row holding one is dropped as invalid).
    pub refused: BTreeSet<(String, String)>,
    pub invalid_rows: InvalidRows,
    /// How long a session may run (90 minutes).
    pub session_window: Duration,
    /// Session reads that answer `processing` after a session closed.
    pub settle_reads: u32,
    /// Ad accounts on which the caller is not an admin (code 100, subcode 33).
    pub not_admin: BTreeSet<String>,
    pub sent: Vec<Sent>,
    /// Rows dropped as invalid, all calls.
    pub dropped: u64,
}

impl Default for Audiences {
    fn default() -> Self {
        Audiences {
            by_id: BTreeMap::new(),
            sessions: BTreeMap::new(),
            known: BTreeSet::new(),
            refused: BTreeSet::new(),
            invalid_rows: InvalidRows::Drop,
            session_window: Duration::from_secs(90 * 60),
            settle_reads: 0,
            not_admin: BTreeSet::new(),
            sent: Vec::new(),
            dropped: 0,
        }
    }
}

fn no_object(id: &str) -> Reply {
    Reply::error(
        100,
        Some(33),
        &format!(
            "Unsupported request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, \
             or does not support this operation."
        ),
    )
}

pub(super) fn invalid(message: &str) -> Reply {
    Reply::error(100, None, &format!("Invalid parameter: {message}"))
}

fn replace_error(subcode: u32, title: &str, message: &str) -> Reply {
    Reply::error_with(400, 2650, Some(subcode), "Failed to update the custom audience", Some((title, message)))
}

fn epoch(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
}

impl Audiences {
    /// The audience a call names, if the caller may use it.
    pub fn usable(&self, id: &str) -> Result<&Audience, Reply> {
        match self.by_id.get(id) {
            Some(a) if !self.not_admin.contains(&a.account) => Ok(a),
            _ => Err(no_object(id)),
        }
    }

    /// Ends sessions past their window: a replace session replaces the audience with what
    /// it uploaded (the guide's 1870158).
    pub fn tick(&mut self, now: Instant) {
        let window = self.session_window;
        let wall = SystemTime::now();
        for session in self.sessions.values_mut() {
            if session.closed.is_none() && now.duration_since(session.started) >= window {
                session.closed = Some(wall);
                session.timed_out = true;
                if session.edge == Edge::Replace
                    && let Some(a) = self.by_id.get_mut(&session.audience)
                    && a.replacing == Some(session.id)
                {
                    a.members = std::mem::take(&mut session.uploaded);
                    a.replacing = None;
                    a.replaced += 1;
                }
            }
        }
    }

    /// A write to `edge` of audience `id`.
    pub fn write(
        &mut self,
        edge: Edge,
        id: &str,
        params: &BTreeMap<String, String>,
        now: Instant,
        violations: &mut Vec<String>,
    ) -> Reply {
        let what = format!("{} {id}", edge.name());
        let audience = match self.usable(id) {
            Ok(a) => a.clone(),
            Err(reply) => return reply,
        };
        if audience.restricted {
            return Reply::error_with(
                400,
                100,
                Some(1_713_230),
                "Invalid parameter",
                Some((
                    "Audience Upload Blocked",
                    "Before updating user memberships, you must resolve integrity restrictions on this Data File \
                     Custom Audience. Go to Audience Manager to appeal the restrictions or create a new audience with \
                     updated data",
                )),
            );
        }
        let payload = match payload::payload(params, violations, &what) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let session = match payload::session_param(params, violations, &what) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        self.sent.push(Sent {
            edge,
            audience: id.to_owned(),
            schema: payload.schema.clone(),
            rows: payload.rows.len(),
            session: params.get("session").and_then(|s| serde_json::from_str(s).ok()),
        });
        if let Some(kind) = audience.data
            && kind != payload.kind
        {
            let source = if kind == DataKind::MultiKey { "FILE_IMPORTED.MULTI_HASHES" } else { "FILE_IMPORTED.HASHES" };
            return Reply::error(
                2650,
                None,
                &format!(
                    "Failed to update the custom audience: this audience was created from data source {source}; \
                     upload data of the same kind"
                ),
            );
        }
        let account = audience.account.clone();
        // Sessions: which one this call belongs to, and whether it may write.
        let key = session.as_ref().map(|s| (account.clone(), s.id));
        if let (Some(s), Some(key)) = (&session, &key)
            && let Some(existing) = self.sessions.get(key)
            && (existing.audience != id || existing.edge != edge)
        {
            violations.push(format!(
                "{what}: session {} was used before for {} of audience {} (ids must be unique in the ad account)",
                s.id,
                existing.edge.name(),
                existing.audience
            ));
            return invalid("session_id is already used by another upload in this ad account");
        }
        match edge {
            Edge::Replace => {
                let Some(s) = &session else {
                    violations.push(format!("{what}: no `session` (usersreplace requires one)"));
                    return Reply::error(100, None, "The parameter session is required");
                };
                if let Some(other) = audience.replacing
                    && other != s.id
                {
                    return replace_error(
                        1_870_145,
                        "Audience Update In Progress",
                        "A replace operation is already in progress for this audience. Wait until it has finished.",
                    );
                }
                let existing = key.as_ref().and_then(|k| self.sessions.get(k));
                match existing {
                    Some(e) if e.timed_out && s.batch_seq != 1 => {
                        return replace_error(
                            1_870_158,
                            "Replace Session Timed Out",
                            "The 90-minute limit of this replace session was reached; the audience was replaced \
                             with what was uploaded.",
                        );
                    }
                    Some(e) if e.closed.is_some() && s.batch_seq != 1 => {
                        return replace_error(
                            1_870_159,
                            "Replace Session Finished",
                            "This replace operation already finished with a batch marked last_batch_flag.",
                        );
                    }
                    None if s.batch_seq != 1 => {
                        return replace_error(
                            1_870_147,
                            "Invalid Upload Batch for Replace",
                            "The first batch_seq was not detected: start batch_seq at 1.",
                        );
                    }
                    _ => {}
                }
            }
            Edge::Add | Edge::Remove => {
                if audience.replacing.is_some() {
                    return replace_error(
                        1_870_145,
                        "Audience Update In Progress",
                        "This audience is being replaced; add or remove users when the replace has finished.",
                    );
                }
            }
        }
        // Rows.
        let mut valid = Vec::new();
        let mut samples = Map::new();
        let mut invalid_count = 0u64;
        for cells in &payload.rows {
            let mut reason = None;
            for (k, cell) in payload.schema.iter().zip(cells) {
                if let Some(r) = payload::bad_cell(k, cell) {
                    violations.push(format!("{what}: a malformed {k} value ({r})"));
                    reason = Some(r);
                    break;
                }
                if let Some(v) = cell.as_str()
                    && self.refused.contains(&(k.clone(), v.to_owned()))
                {
                    reason = Some("Invalid entry");
                    break;
                }
            }
            let ids: Vec<(String, String)> = payload
                .schema
                .iter()
                .zip(cells)
                .filter_map(|(k, c)| c.as_str().filter(|v| !v.is_empty()).map(|v| (k.clone(), v.to_owned())))
                .collect();
            if reason.is_none() && ids.is_empty() {
                reason = Some("Empty row: no identifier");
            }
            match reason {
                Some(r) => {
                    invalid_count += 1;
                    if samples.len() < 100 {
                        let sample = cells.iter().filter_map(Json::as_str).find(|v| !v.is_empty()).unwrap_or("");
                        samples.insert(sample.to_owned(), json!(r));
                    }
                }
                None => valid.push(ids),
            }
        }
        if invalid_count > 0 && self.invalid_rows == InvalidRows::Reject {
            return invalid(&format!("{invalid_count} entries are invalid"));
        }
        self.dropped += invalid_count;
        let matched = valid.iter().filter(|ids| ids.iter().any(|i| self.known.contains(i))).count() as u64;
        // Apply.
        let a = self.by_id.get_mut(id).expect("looked up above");
        a.data = Some(payload.kind);
        match edge {
            Edge::Add => a.members.extend(valid.iter().flatten().cloned()),
            Edge::Remove => {
                for i in valid.iter().flatten() {
                    a.members.remove(i);
                }
            }
            Edge::Replace => {}
        }
        let wall = SystemTime::now();
        let (session_id, declared) = match &session {
            Some(s) => (s.id, true),
            None => (fastrand::i64(1..i64::MAX), false),
        };
        let skey = (account, session_id);
        let restart = edge == Edge::Replace && session.as_ref().is_some_and(|s| s.batch_seq == 1);
        let entry = self.sessions.entry(skey.clone()).or_insert_with(|| Session {
            id: session_id,
            audience: id.to_owned(),
            edge,
            declared,
            started: now,
            started_at: wall,
            batch_seqs: Vec::new(),
            estimated_total: None,
            received: 0,
            invalid: 0,
            matched: 0,
            closed: None,
            timed_out: false,
            uploaded: BTreeSet::new(),
            reads_after_close: 0,
        });
        if restart {
            // "A new replace session starts when we receive a batch_seq of 1."
            entry.started = now;
            entry.started_at = wall;
            entry.received = 0;
            entry.invalid = 0;
            entry.matched = 0;
            entry.uploaded.clear();
            entry.closed = None;
            entry.timed_out = false;
        }
        if let Some(s) = &session {
            if entry.batch_seqs.is_empty() && s.batch_seq != 1 && edge != Edge::Replace {
                violations.push(format!("{what}: session {} starts at batch_seq {}, not 1", s.id, s.batch_seq));
            }
            entry.batch_seqs.push(s.batch_seq);
            entry.estimated_total = s.estimated_total.or(entry.estimated_total);
        }
        entry.received += payload.rows.len() as u64;
        entry.invalid += invalid_count;
        entry.matched += matched;
        if edge == Edge::Replace {
            entry.uploaded.extend(valid.iter().flatten().cloned());
        }
        let last = session.as_ref().is_none_or(|s| s.last);
        if last && entry.closed.is_none() {
            entry.closed = Some(wall);
        }
        let (received, closed) = (entry.received, entry.closed.is_some());
        if edge == Edge::Replace {
            let uploaded = entry.uploaded.clone();
            let a = self.by_id.get_mut(id).expect("looked up above");
            if closed {
                a.members = uploaded;
                a.replacing = None;
                a.replaced += 1;
            } else {
                a.replacing = Some(session_id);
            }
        }
        Reply::json(
            200,
            json!({
                "audience_id": id,
                "session_id": session_id.to_string(),
                "num_received": received,
                "num_invalid_entries": invalid_count,
                "invalid_entry_samples": samples,
            }),
        )
    }

    /// `GET /{audience_id}/sessions`, optionally one `session_id`.
    pub fn read_sessions(&mut self, id: &str, params: &BTreeMap<String, String>) -> Reply {
        let account = match self.usable(id) {
            Ok(a) => a.account.clone(),
            Err(reply) => return reply,
        };
        let only = params.get("session_id").and_then(|s| s.parse::<i64>().ok());
        let settle = self.settle_reads;
        let mut data = Vec::new();
        for ((acct, sid), s) in self.sessions.iter_mut().rev() {
            if *acct != account || s.audience != id || only.is_some_and(|o| o != *sid) {
                continue;
            }
            let (stage, progress) = match s.closed {
                None => ("uploading", 0),
                Some(_) if s.reads_after_close < settle => {
                    s.reads_after_close += 1;
                    ("processing", 50)
                }
                Some(_) => ("finished", 100),
            };
            let mut entry = json!({
                "session_id": sid.to_string(),
                "num_received": s.received.to_string(),
                "num_matched": s.matched.to_string(),
                "num_invalid_entries": s.invalid.to_string(),
                "stage": stage,
                "progress": progress.to_string(),
                "start_time": epoch(s.started_at),
            });
            if let Some(end) = s.closed {
                entry["end_time"] = json!(epoch(end));
            }
            data.push(entry);
        }
        Reply::json(200, json!({ "data": data }))
    }

    /// `GET /{audience_id}?fields=…`.
    pub fn read_audience(&self, id: &str, params: &BTreeMap<String, String>) -> Reply {
        let a = match self.usable(id) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let fields = params.get("fields").map(String::as_str).unwrap_or("id,name");
        let mut out = json!({ "id": a.id });
        for field in fields.split(',').map(str::trim) {
            let value = match field {
                "id" => continue,
                "name" => json!(a.name),
                "account_id" => json!(a.account),
                "subtype" => json!("CUSTOM"),
                "operation_status" if a.restricted => json!({"code": 471, "description": "Audience restricted"}),
                "operation_status" if a.replacing.is_some() => {
                    json!({"code": 300, "description": "replace_in_progress"})
                }
                "operation_status" => json!({"code": 200, "description": "Normal"}),
                "data_source" => match a.data {
                    Some(DataKind::MultiKey) => json!({"type": "FILE_IMPORTED", "sub_type": "MULTI_HASHES"}),
                    Some(DataKind::SingleKey) => json!({"type": "FILE_IMPORTED", "sub_type": "HASHES"}),
                    None => json!({"type": "UNKNOWN", "sub_type": "ANYTHING"}),
                },
                other => return Reply::error(100, None, &format!("Tried accessing nonexisting field ({other})")),
            };
            out[field] = value;
        }
        Reply::json(200, out)
    }
}
