//! One offline user data job from create to its end, safe to repeat after a crash or a lost
//! answer.
//!
//! The job's `externalId` is derived from the sync, the job's kind and the batch's changes
//! (their idempotency keys, sorted), and an attempt number: a batch sent again finds its
//! job (`EXTERNAL_UPDATE_ID_ALREADY_EXISTS`, then a search by external id) and continues
//! it:
//!
//! | job found | then |
//! |---|---|
//! | `PENDING` | add the operations again (a list is a set: a repeat adds nothing) and run; a full refresh's job is left and the next attempt's made, because `removeAll` must be a job's first operation |
//! | `RUNNING` | wait for it |
//! | `SUCCESS` | applied |
//! | `FAILED` | the next attempt's job |
//!
//! Operations Google refused in a job whose answer was lost after it ran are not known
//! again: those members count as applied (Google dropped their refused identifiers).

use rse_core::DestinationError;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::api::{Api, Created, JobState, JobStatus, RunStart};
use crate::saas::{PollOptions, PollOutcome, Probe, poll_until};

/// Jobs tried for one batch and kind before the batch fails as transient.
const MAX_ATTEMPTS: u32 = 4;

/// What a job does to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobKind {
    /// `create` operations: add members.
    Create,
    /// `remove` operations: remove identifiers.
    Remove,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            JobKind::Create => "create",
            JobKind::Remove => "remove",
        }
    }
}

/// A job to run: its operations, in requests of at most `identifiers_per_request`
/// identifiers, `removeAll` first when `remove_all`.
#[derive(Debug)]
pub(super) struct JobSpec {
    pub kind: JobKind,
    /// The seed of the external ids (see [`seed`]).
    pub seed: [u8; 32],
    /// One `UserData` per operation.
    pub operations: Vec<Json>,
    /// Identifiers per operation.
    pub sizes: Vec<usize>,
    pub remove_all: bool,
}

/// How a job ended.
#[derive(Debug, Default)]
pub(super) struct JobResult {
    /// `(operation index, code, reason)` of every operation Google refused.
    pub refused: Vec<(usize, String, String)>,
    /// The final (or last seen) match-rate range.
    pub match_rate: Option<String>,
    /// Whether the match rate is Google's final one (the job finished).
    pub settled: bool,
}

/// How the flow waits and sizes its requests.
#[derive(Debug, Clone)]
pub(super) struct Pace {
    pub identifiers_per_request: usize,
    pub poll: PollOptions,
    pub preview: bool,
}

/// The seed of a batch's external ids: SHA-256 over the sync id, the kind and the sorted
/// idempotency keys of the batch's changes.
pub(super) fn seed(sync_id: &str, kind: JobKind, keys: &mut [[u8; 16]]) -> [u8; 32] {
    keys.sort_unstable();
    let mut h = Sha256::new();
    h.update((sync_id.len() as u64).to_le_bytes());
    h.update(sync_id.as_bytes());
    h.update(kind.as_str().as_bytes());
    for key in keys.iter() {
        h.update(key);
    }
    h.finalize().into()
}

/// The external id of `attempt`: a positive int64 from the seed.
pub(super) fn external_id(seed: &[u8; 32], attempt: u32) -> i64 {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(attempt.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let id = (u64::from_be_bytes(bytes) >> 1) as i64;
    id.max(1)
}

/// Runs `spec` to its end (see the [module docs](self)).
pub(super) async fn execute(api: &Api, spec: &JobSpec, pace: &Pace) -> Result<JobResult, DestinationError> {
    let name = api.client.name().to_owned();
    for attempt in 0..MAX_ATTEMPTS {
        let external = external_id(&spec.seed, attempt);
        let (job, add) = match api.create(external, pace.preview).await? {
            Created::Job(job) => (job, true),
            Created::Exists => {
                let Some(found) = api.find(external).await? else {
                    return Err(DestinationError::transient(format!(
                        "{name}: job {external} exists but is not found yet; trying again"
                    )));
                };
                debug!(destination = %name, external, status = ?found.status, "Found the job of an earlier attempt.");
                match found.status {
                    JobStatus::Success => {
                        return Ok(JobResult { refused: Vec::new(), match_rate: found.match_rate, settled: true });
                    }
                    JobStatus::Failed => continue,
                    JobStatus::Pending if spec.remove_all => continue,
                    JobStatus::Pending => (found.resource_name, true),
                    JobStatus::Running => (found.resource_name, false),
                    JobStatus::Other(status) => {
                        return Err(DestinationError::transient(format!(
                            "{name}: job {external} is {status}; trying again"
                        )));
                    }
                }
            }
        };
        let mut result = JobResult::default();
        let mut started = !add;
        if add {
            match add_all(api, &job, spec, pace, &mut result).await? {
                true => {}
                // Already running: an earlier attempt added and ran it.
                false => started = true,
            }
        }
        if !started {
            run(api, &job, pace, &mut result).await?;
        }
        match wait(api, &job, pace).await? {
            Some(state) if state.status == JobStatus::Success => {
                result.match_rate = state.match_rate.or(result.match_rate);
                result.settled = true;
                return Ok(result);
            }
            Some(_) => {
                warn!(destination = %name, external, attempt, "The offline user data job FAILED; sending its operations in a new job.");
            }
            None => {
                return Err(DestinationError::transient(format!(
                    "{name}: job {external} was still running after `job_wait` ({:?}); the next attempt waits for it",
                    pace.poll.max_wait
                )));
            }
        }
    }
    Err(DestinationError::transient(format!(
        "{name}: {MAX_ATTEMPTS} offline user data jobs in a row FAILED for this batch; trying again later"
    )))
}

/// Sends the operations in requests of at most `identifiers_per_request` identifiers.
/// `Ok(false)` when the job turned out to be running already.
async fn add_all(
    api: &Api,
    job: &str,
    spec: &JobSpec,
    pace: &Pace,
    result: &mut JobResult,
) -> Result<bool, DestinationError> {
    let name = api.client.name();
    let mut requests: Vec<(usize, Vec<Json>)> = Vec::new();
    let mut identifiers = 0;
    for (i, (operation, size)) in spec.operations.iter().zip(&spec.sizes).enumerate() {
        let full =
            requests.last().is_none_or(|(_, ops)| !ops.is_empty() && identifiers + size > pace.identifiers_per_request);
        if full {
            requests.push((i, Vec::new()));
            identifiers = 0;
        }
        identifiers += size;
        let op = match spec.kind {
            JobKind::Create => json!({ "create": operation }),
            JobKind::Remove => json!({ "remove": operation }),
        };
        if let Some((_, ops)) = requests.last_mut() {
            ops.push(op);
        }
    }
    if spec.remove_all {
        // Alone in the first request: on its own, it is never refused for its position.
        requests.insert(0, (usize::MAX, vec![json!({"removeAll": true})]));
    }
    for (first, operations) in requests {
        let Some(refusals) = api.add(job, &operations).await? else { return Ok(false) };
        if !refusals.unlocated.is_empty() {
            return Err(DestinationError::InvalidBatch {
                message: format!(
                    "{name}: Google Ads refused operations without naming them ({})",
                    refusals.unlocated.join(", ")
                ),
            });
        }
        if first == usize::MAX {
            if let Some((_, (code, _))) = refusals.by_op.into_iter().next() {
                return Err(DestinationError::fatal(format!(
                    "{name}: Google Ads refused `removeAll` ({code}); turn off `replace_on_full_resync`"
                )));
            }
            continue;
        }
        for (index, (code, reason)) in refusals.by_op {
            result.refused.push((first + index, code, reason));
        }
    }
    Ok(true)
}

/// Runs the job, waiting for the list's other running job to end first.
async fn run(api: &Api, job: &str, pace: &Pace, result: &mut JobResult) -> Result<(), DestinationError> {
    let name = api.client.name();
    loop {
        match api.run(job).await? {
            RunStart::Started(rate) => {
                result.match_rate = rate;
                return Ok(());
            }
            RunStart::AlreadyStarted => return Ok(()),
            RunStart::Busy => {
                debug!(destination = %name, "Another job of the list is running; waiting for it.");
                let outcome = poll_until(&pace.poll, std::future::pending(), || async {
                    Ok(if api.list_busy().await? { Probe::Pending(()) } else { Probe::Done(()) })
                })
                .await?;
                if !matches!(outcome, PollOutcome::Done(())) {
                    return Err(DestinationError::transient(format!(
                        "{name}: another job of the list was still running after `job_wait`; trying again"
                    )));
                }
            }
        }
    }
}

/// Polls the job until it ends: `Some(state)` at SUCCESS or FAILED, `None` when
/// `job_wait` passed first.
async fn wait(api: &Api, job: &str, pace: &Pace) -> Result<Option<JobState>, DestinationError> {
    let name = api.client.name();
    let outcome = poll_until(&pace.poll, std::future::pending(), || async {
        let Some(state) = api.state(job).await? else {
            return Err(DestinationError::transient(format!("{name}: the job is not found yet")));
        };
        Ok(match state.status {
            JobStatus::Success | JobStatus::Failed => Probe::Done(state),
            _ => Probe::Pending(()),
        })
    })
    .await?;
    Ok(match outcome {
        PollOutcome::Done(state) => Some(state),
        _ => None,
    })
}

/// The match-rate range as percentages: `MATCH_RANGE_20_TO_30` → `(20, 30)`.
pub(super) fn match_range(range: &str) -> Option<(u8, u8)> {
    Some(match range {
        "MATCH_RANGE_LESS_THAN_20" => (0, 19),
        "MATCH_RANGE_20_TO_30" => (20, 30),
        "MATCH_RANGE_31_TO_40" => (31, 40),
        "MATCH_RANGE_41_TO_50" => (41, 50),
        "MATCH_RANGE_51_TO_60" => (51, 60),
        "MATCH_RANGE_61_TO_70" => (61, 70),
        "MATCH_RANGE_71_TO_80" => (71, 80),
        "MATCH_RANGE_81_TO_90" => (81, 90),
        "MATCH_RANGE_91_TO_100" => (91, 100),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_positive_deterministic_and_distinct() {
        let a = seed("s", JobKind::Create, &mut [[2; 16], [1; 16]]);
        let b = seed("s", JobKind::Create, &mut [[1; 16], [2; 16]]);
        let c = seed("s", JobKind::Remove, &mut [[1; 16], [2; 16]]);
        assert_eq!(a, b, "the order of the changes does not matter");
        assert_ne!(a, c, "the kind does");
        assert_eq!(external_id(&a, 0), external_id(&b, 0));
        assert_ne!(external_id(&a, 0), external_id(&a, 1));
        for attempt in 0..100 {
            assert!(external_id(&a, attempt) > 0);
        }
    }
}
