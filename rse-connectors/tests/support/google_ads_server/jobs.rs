//! Customer Match user lists and the offline user data jobs that change them: create,
//! addOperations (with partial failure), run, and the job's lifecycle PENDING → RUNNING →
//! SUCCESS | FAILED, applying the job's operations to the list at SUCCESS.
//!
//! Follows the protos (offline_user_data_job_service.proto, offline_user_data.proto,
//! offline_user_data_job_error.proto: `removeAll` first, no create and remove in one job,
//! nothing after run, a unique external id per customer, at most 100,000 identifiers per
//! request and 20 per operation), saas-contracts.md §3a and §8 (OUDJ row), and the Google Ads
//! API guide "Customer Match: upload and manage lists" (hashed fields are SHA-256 lowercase
//! hex; `countryCode` and `postalCode` are sent in clear; an address needs first name, last
//! name, country and postal code). A list is modelled as the set of identifiers it holds:
//! a create operation adds each of its identifiers, a remove deletes each, removeAll clears.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::identifiers;
use super::limits::Limits;
use super::wire::{FAILURE_TYPE, METADATA_TYPE, Reply, error, error_at, request_id};

/// A rule for one identifier (its key, see [`identifiers::key`]): `Some((family, code))` refuses the
/// operation holding it with that `GoogleAdsError` code.
pub type Rule = Arc<dyn Fn(&str) -> Option<(&'static str, &'static str)> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running { ticks_left: u32 },
    Success,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Running { .. } => "RUNNING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Remove,
}

/// One accepted operation, its identifiers as keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create { ids: Vec<String>, ad_user_data_denied: bool },
    Remove { ids: Vec<String> },
    RemoveAll,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub resource_name: String,
    pub external_id: Option<i64>,
    pub list_id: String,
    pub user_list: String,
    pub job_consent: Option<Json>,
    pub match_preview: bool,
    pub status: Status,
    pub kind: Option<Kind>,
    pub ops: Vec<Op>,
    pub match_rate: Option<&'static str>,
    /// `addOperations` calls accepted (whole or in part).
    pub add_requests: u64,
}

#[derive(Debug, Clone)]
pub struct UserList {
    pub id: String,
    pub name: String,
    pub members: BTreeSet<String>,
}

fn int64(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The match-rate bucket of `matched` out of `total`.
pub fn bucket(matched: usize, total: usize) -> &'static str {
    let pct = (matched * 100).checked_div(total).unwrap_or(0);
    match pct {
        0..=19 => "MATCH_RANGE_LESS_THAN_20",
        20..=30 => "MATCH_RANGE_20_TO_30",
        31..=40 => "MATCH_RANGE_31_TO_40",
        41..=50 => "MATCH_RANGE_41_TO_50",
        51..=60 => "MATCH_RANGE_51_TO_60",
        61..=70 => "MATCH_RANGE_61_TO_70",
        71..=80 => "MATCH_RANGE_71_TO_80",
        81..=90 => "MATCH_RANGE_81_TO_90",
        _ => "MATCH_RANGE_91_TO_100",
    }
}

pub struct Jobs {
    pub customer: String,
    pub lists: BTreeMap<String, UserList>,
    pub jobs: BTreeMap<u64, Job>,
    next_id: u64,
    /// Polls (search calls) a job stays RUNNING before it finishes; 0 finishes at run.
    pub ticks_to_finish: u32,
    /// The next jobs to finish end FAILED, nothing applied.
    pub fail_next: u32,
    /// Identifier keys Google "knows": a create operation holding one counts as matched.
    pub known: BTreeSet<String>,
    /// Identifiers allowed per addOperations request.
    pub identifiers_per_request: usize,
    pub rule: Option<Rule>,
    /// The customer is not allowlisted for Customer Match through this API.
    pub not_allowlisted: bool,
    /// Create operations not applied because `adUserData` was DENIED.
    pub consent_denied: u64,
    /// Operations refused by addOperations, by error code.
    pub refused_ops: BTreeMap<String, u64>,
}

impl Jobs {
    pub fn new(customer: &str) -> Jobs {
        Jobs {
            customer: customer.to_owned(),
            lists: BTreeMap::new(),
            jobs: BTreeMap::new(),
            next_id: 41_000_000_001,
            ticks_to_finish: 2,
            fail_next: 0,
            known: BTreeSet::new(),
            identifiers_per_request: 100_000,
            rule: None,
            not_allowlisted: false,
            consent_denied: 0,
            refused_ops: BTreeMap::new(),
        }
    }

    pub fn list_resource(&self, id: &str) -> String {
        format!("customers/{}/userLists/{id}", self.customer)
    }

    fn job_mut(&mut self, customer: &str, id: &str) -> Result<&mut Job, Reply> {
        let found = id.parse::<u64>().ok().filter(|_| customer == self.customer).and_then(|id| self.jobs.get_mut(&id));
        found.ok_or_else(|| {
            Reply::ads(
                404,
                "NOT_FOUND",
                vec![error("requestError", "RESOURCE_NOT_FOUND", "The requested resource was not found.")],
            )
        })
    }

    fn customer_check(&self, customer: &str) -> Result<(), Reply> {
        if customer.len() != 10 || !customer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reply::one("requestError", "INVALID_CUSTOMER_ID", "The customer ID is invalid."));
        }
        if customer != self.customer {
            return Err(Reply::one(
                "authorizationError",
                "USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer.",
            ));
        }
        Ok(())
    }

    /// `POST /v25/customers/{customer}/offlineUserDataJobs:create`; the body already matches
    /// the contract. Pushes the client's contract breaches to `violations`.
    pub fn create(&mut self, customer: &str, body: &Json, violations: &mut Vec<String>) -> Reply {
        if let Err(reply) = self.customer_check(customer) {
            return reply;
        }
        if self.not_allowlisted {
            return Reply::one(
                "notAllowlistedError",
                "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
                "Customer is not allowlisted for accessing this feature.",
            );
        }
        let job = &body["job"];
        for output_only in ["id", "status", "failureReason", "operationMetadata"] {
            if job.get(output_only).is_some() {
                violations.push(format!("create: job.{output_only} is output only"));
                return Reply::ads(
                    400,
                    "INVALID_ARGUMENT",
                    vec![error_at(
                        "fieldError",
                        "IMMUTABLE_FIELD",
                        "The field is output only.",
                        &[("job", None), (output_only, None)],
                    )],
                );
            }
        }
        match job["type"].as_str() {
            Some("CUSTOMER_MATCH_USER_LIST") => {}
            other => {
                violations.push(format!("create: job.type {other:?}; this server holds Customer Match lists only"));
                return Reply::ads(
                    400,
                    "INVALID_ARGUMENT",
                    vec![error_at(
                        "fieldError",
                        "REQUIRED",
                        "The required field was not present.",
                        &[("job", None), ("type", None)],
                    )],
                );
            }
        }
        let user_list = job["customerMatchUserListMetadata"]["userList"].as_str().unwrap_or("").to_owned();
        let list_id = user_list
            .strip_prefix(&format!("customers/{}/userLists/", self.customer))
            .filter(|id| self.lists.contains_key(*id))
            .map(str::to_owned);
        let Some(list_id) = list_id else {
            return Reply::one(
                "offlineUserDataJobError",
                "INVALID_USER_LIST_ID",
                "The user list ID provided for the job is invalid.",
            );
        };
        let external_id = match job.get("externalId") {
            None => None,
            Some(v) => match int64(v) {
                Some(id) => Some(id),
                None => {
                    violations.push(format!("create: externalId {v} is not an int64"));
                    return Reply::one("fieldError", "INVALID_VALUE", "The field's value is invalid.");
                }
            },
        };
        if let Some(ext) = external_id
            && self.jobs.values().any(|j| j.external_id == Some(ext))
        {
            return Reply::one(
                "offlineUserDataJobError",
                "EXTERNAL_UPDATE_ID_ALREADY_EXISTS",
                "The external update ID already exists.",
            );
        }
        if body["validateOnly"] == true {
            return Reply::json(200, json!({}), "CreateOfflineUserDataJobResponse");
        }
        let id = self.next_id;
        self.next_id += 1;
        let resource_name = format!("customers/{}/offlineUserDataJobs/{id}", self.customer);
        self.jobs.insert(
            id,
            Job {
                id,
                resource_name: resource_name.clone(),
                external_id,
                list_id,
                user_list,
                job_consent: job["customerMatchUserListMetadata"].get("consent").cloned(),
                match_preview: body["enableMatchRateRangePreview"] == true,
                status: Status::Pending,
                kind: None,
                ops: Vec::new(),
                match_rate: None,
                add_requests: 0,
            },
        );
        Reply::json(200, json!({"resourceName": resource_name}), "CreateOfflineUserDataJobResponse")
    }

    /// `POST /v25/customers/{customer}/offlineUserDataJobs/{id}:addOperations`.
    pub fn add_operations(
        &mut self,
        customer: &str,
        id: &str,
        body: &Json,
        limits: &mut Limits,
        violations: &mut Vec<String>,
    ) -> Reply {
        let identifiers_per_request = self.identifiers_per_request;
        let rule = self.rule.clone();
        let (status, job_kind, job_has_ops, job_denied) = match self.job_mut(customer, id) {
            Ok(job) => (
                job.status,
                job.kind,
                !job.ops.is_empty(),
                job.job_consent.as_ref().is_some_and(|c| c["adUserData"] == "DENIED"),
            ),
            Err(reply) => return reply,
        };
        if status != Status::Pending {
            violations.push(format!("addOperations on job {id} after it was run"));
            return Reply::one(
                "offlineUserDataJobError",
                "JOB_ALREADY_STARTED",
                "Once the upload job is started, new operations cannot be added.",
            );
        }
        let operations = body["operations"].as_array().cloned().unwrap_or_default();
        if operations.is_empty() {
            violations.push("addOperations without operations".into());
            return Reply::one("requestError", "OPERATION_REQUIRED", "At least one operation is required.");
        }
        let identifiers: usize = operations
            .iter()
            .map(|op| op["create"].get("userIdentifiers").or(op["remove"].get("userIdentifiers")))
            .map(|ids| ids.and_then(Json::as_array).map_or(0, Vec::len))
            .sum();
        if identifiers > identifiers_per_request {
            violations
                .push(format!("addOperations with {identifiers} identifiers (at most {identifiers_per_request})"));
            return Reply::one(
                "offlineUserDataJobError",
                "TOO_MANY_USER_IDENTIFIERS",
                "Maximum number of user identifiers allowed per request is 100,000 and per operation is 20.",
            );
        }
        if let Err(reply) = limits.spend(operations.len() as u64) {
            return reply;
        }
        let partial = body["enablePartialFailure"] == true;
        let mut kind = job_kind;
        let mut errors = Vec::new();
        let mut accepted = Vec::new();
        for (i, op) in operations.iter().enumerate() {
            let at = |rest: &[(&'static str, Option<usize>)]| {
                let mut path = vec![("operations", Some(i))];
                path.extend_from_slice(rest);
                path
            };
            if op.get("removeAll").is_some() {
                if op["removeAll"] != true {
                    violations.push(format!("operations[{i}]: removeAll is false"));
                }
                if i != 0 || job_has_ops {
                    violations.push(format!("operations[{i}]: removeAll is not the job's first operation"));
                    errors.push(error_at(
                        "offlineUserDataJobError",
                        "INVALID_OPERATION_ORDER",
                        "When a remove-all operation is provided, it has to be the first operation of the operation list.",
                        &at(&[("remove_all", None)]),
                    ));
                } else {
                    accepted.push(Op::RemoveAll);
                }
                continue;
            }
            let (this, field, data) = match (op.get("create"), op.get("remove")) {
                (Some(d), _) => (Kind::Create, "create", d),
                (_, Some(d)) => (Kind::Remove, "remove", d),
                _ => unreachable!("the contract requires one of create, remove, removeAll"),
            };
            if kind.is_some_and(|k| k != this) {
                violations.push(format!("operations[{i}]: {field} in a job that holds the other kind"));
                errors.push(error_at(
                    "offlineUserDataJobError",
                    "CONFLICTING_OPERATION",
                    "Mixing creation and removal of offline data in the same job is not allowed.",
                    &at(&[(field, None)]),
                ));
                continue;
            }
            let (op_errors, ids) = identifiers::check_user_data(i, field, data, rule.as_ref(), violations);
            if op_errors.is_empty() {
                kind.get_or_insert(this);
                let consent = data.get("consent").map(|c| c["adUserData"] == "DENIED");
                accepted.push(match this {
                    Kind::Create => Op::Create { ids, ad_user_data_denied: consent.unwrap_or(job_denied) },
                    Kind::Remove => Op::Remove { ids },
                });
            } else {
                errors.extend(op_errors);
            }
        }
        for e in &errors {
            let code = e["errorCode"].as_object().and_then(|o| o.values().next()).and_then(Json::as_str).unwrap_or("?");
            *self.refused_ops.entry(code.to_owned()).or_default() += 1;
        }
        let Ok(job) = self.job_mut(customer, id) else { unreachable!("found above") };
        if !errors.is_empty() && !partial {
            return Reply::ads(400, "INVALID_ARGUMENT", errors);
        }
        if body["validateOnly"] != true {
            job.kind = kind;
            job.ops.extend(accepted);
            job.add_requests += 1;
        }
        if errors.is_empty() {
            return Reply::json(200, json!({}), "AddOfflineUserDataJobOperationsResponse");
        }
        let first = errors[0]["message"].as_str().unwrap_or("").to_owned();
        Reply::json(
            200,
            json!({"partialFailureError": {
                "code": 3,
                "message": format!("{first} (and {} more)", errors.len() - 1),
                "details": [{"@type": FAILURE_TYPE, "errors": errors, "requestId": request_id()}],
            }}),
            "AddOfflineUserDataJobOperationsResponse",
        )
    }

    /// `POST /v25/customers/{customer}/offlineUserDataJobs/{id}:run`.
    pub fn run(&mut self, customer: &str, id: &str, body: &Json) -> Reply {
        let ticks = self.ticks_to_finish;
        let (list_id, job_id) = match self.job_mut(customer, id) {
            Ok(job) if job.status != Status::Pending => {
                return Reply::one(
                    "offlineUserDataJobError",
                    "JOB_ALREADY_STARTED",
                    "Once the upload job is started, new operations cannot be added.",
                );
            }
            Ok(job) => (job.list_id.clone(), job.id),
            Err(reply) => return reply,
        };
        let busy = self.jobs.values().any(|j| j.list_id == list_id && matches!(j.status, Status::Running { .. }));
        if busy {
            return Reply::one(
                "databaseError",
                "CONCURRENT_MODIFICATION",
                "Multiple requests were attempting to modify the same resource at once. Retry the request.",
            );
        }
        if body["validateOnly"] == true {
            return self.operation(job_id);
        }
        let rate = self.match_rate(job_id);
        let job = self.jobs.get_mut(&job_id).expect("found above");
        job.status = Status::Running { ticks_left: ticks };
        job.match_rate = rate;
        if ticks == 0 {
            self.finish(job_id);
        }
        self.operation(job_id)
    }

    fn operation(&self, job_id: u64) -> Reply {
        let job = &self.jobs[&job_id];
        let mut metadata = json!({"@type": METADATA_TYPE});
        if let Some(rate) = job.match_rate {
            metadata["matchRateRange"] = json!(rate);
        }
        Reply::json(
            200,
            json!({"name": format!("customers/{}/operations/{}", self.customer, job.id), "metadata": metadata, "done": false}),
            "google.longrunning.Operation",
        )
    }

    /// The match rate of a job's create operations, when it asked for the preview.
    fn match_rate(&self, job_id: u64) -> Option<&'static str> {
        let job = &self.jobs[&job_id];
        let creates: Vec<&Vec<String>> = job
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Create { ids, .. } => Some(ids),
                _ => None,
            })
            .collect();
        if !job.match_preview || creates.is_empty() {
            return None;
        }
        let matched = creates.iter().filter(|ids| ids.iter().any(|k| self.known.contains(k))).count();
        Some(bucket(matched, creates.len()))
    }

    /// One poll: every running job comes one step nearer its end.
    pub fn tick(&mut self) {
        let running: Vec<u64> =
            self.jobs.values().filter(|j| matches!(j.status, Status::Running { .. })).map(|j| j.id).collect();
        for id in running {
            let job = self.jobs.get_mut(&id).expect("listed");
            if let Status::Running { ticks_left } = &mut job.status {
                *ticks_left = ticks_left.saturating_sub(1);
                if *ticks_left == 0 {
                    self.finish(id);
                }
            }
        }
    }

    fn finish(&mut self, id: u64) {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            self.jobs.get_mut(&id).expect("a job").status = Status::Failed;
            return;
        }
        let job = self.jobs.get_mut(&id).expect("a job");
        job.status = Status::Success;
        let ops = job.ops.clone();
        let list = self.lists.get_mut(&job.list_id).expect("the job's list exists");
        for op in ops {
            match op {
                Op::RemoveAll => list.members.clear(),
                Op::Remove { ids } => {
                    for k in ids {
                        list.members.remove(&k);
                    }
                }
                Op::Create { ad_user_data_denied: true, .. } => self.consent_denied += 1,
                Op::Create { ids, .. } => list.members.extend(ids),
            }
        }
    }
}
