//! Customer Match lists and the rules of `audienceMembers:ingest`, `:remove` and `:removeAll`
//! that the protos state only in comments, or not at all (SOURCE.md "Not in the protos"):
//! digests encoded as `encoding` says, Terms of Service accepted, one data type per request,
//! the per-request limits, complete addresses, known user lists; and what processing does
//! with each member (consent, matching) for `requestStatus:retrieve`.
//!
//! Follows ingestion_service.proto, audience.proto, user_data.proto, consent.proto,
//! terms_of_service.proto, error.proto (`ErrorReason` names), match_rate.proto and
//! request_status_per_destination.proto of google/ads/datamanager/v1, and saas-contracts.md
//! §3b. A list holds identifiers keyed by kind and value (`email:<hex>`, `phone:<hex>`,
//! `address:<given hex>:<family hex>:<region>:<postal>`, `mobile:<id>`), each with the time
//! it was last added, which `removeAsOfTime` compares against ("only audience members last
//! added before this time will be removed").
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use serde_json::{Value as Json, json};

use super::wire::Violation;

/// At most this many members per request (`TOO_MANY_AUDIENCE_MEMBERS`).
pub const MAX_MEMBERS: usize = 10_000;
/// At most this many identifiers per member (`TOO_MANY_USER_IDENTIFIERS`).
pub const MAX_IDENTIFIERS: usize = 10;
/// At most this many destinations per request (`TOO_MANY_DESTINATIONS`).
pub const MAX_DESTINATIONS: usize = 10;

/// An operating or login account: `accountType` and `accountId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account {
    pub account_type: String,
    pub account_id: String,
}

impl Account {
    pub fn google_ads(id: &str) -> Account {
        Account { account_type: "GOOGLE_ADS".into(), account_id: id.into() }
    }

    fn from_json(value: &Json) -> Option<Account> {
        Some(Account {
            account_type: value.get("accountType")?.as_str()?.to_owned(),
            account_id: value.get("accountId")?.as_str()?.to_owned(),
        })
    }
}

/// One Customer Match user list.
#[derive(Debug, Default)]
pub struct UserList {
    /// The account that owns the list; requests must name it as `operatingAccount`.
    pub owner: Option<Account>,
    /// Accounts that may act for the owner as `loginAccount` (besides the owner itself).
    pub managers: Vec<Account>,
    /// Identifier key → when it was last added.
    pub members: HashMap<String, SystemTime>,
    /// In lean mode: 64-bit fingerprints of the identifier keys, nothing else.
    pub fingerprints: HashSet<u64>,
}

/// The data type of a request's members (`AudienceMember.data` oneof).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    User,
    Mobile,
    /// Pair, user id, PPID, composite, Google user id, partner-provided id: not Customer
    /// Match contact data.
    Other(&'static str),
}

/// One member as received: its identifier keys and its own consent.
#[derive(Debug, Clone)]
pub struct Member {
    pub ids: Vec<String>,
    /// `adUserData` after member-level consent overrides the request's.
    pub ad_user_data: Option<String>,
}

/// A request's members, checked.
pub struct Parsed {
    pub kind: Option<DataKind>,
    pub members: Vec<Member>,
    pub identifiers: u64,
}

/// Every identifier of `body.audienceMembers`, checked by the hand-coded rules; the
/// violations name fields as Google does (`audience_members[3].user_data.user_identifiers[0]`).
pub fn parse_members(
    body: &Json,
    ingest: bool,
    refused: &HashMap<String, &'static str>,
) -> Result<Parsed, Vec<Violation>> {
    let mut violations = Vec::new();
    let members = body.get("audienceMembers").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
    if members.len() > MAX_MEMBERS {
        return Err(vec![Violation::new(
            "audience_members",
            "TOO_MANY_AUDIENCE_MEMBERS",
            format!("Maximum number of audience members allowed per request is {MAX_MEMBERS}."),
        )]);
    }
    let encoding = body.get("encoding").and_then(Json::as_str);
    let request_consent = body.get("consent").and_then(|c| c.get("adUserData")).and_then(Json::as_str);
    let mut kinds: Vec<DataKind> = Vec::new();
    let mut parsed = Vec::with_capacity(members.len());
    let mut identifiers = 0u64;
    for (i, member) in members.iter().enumerate() {
        let kind = data_kind(member);
        if let Some(kind) = kind
            && !kinds.contains(&kind)
        {
            kinds.push(kind);
        }
        let ad_user_data = member
            .get("consent")
            .and_then(|c| c.get("adUserData"))
            .and_then(Json::as_str)
            .or(request_consent)
            .map(str::to_owned);
        let mut ids = Vec::new();
        let base = match kind {
            Some(DataKind::User) => format!("audience_members[{i}].user_data.user_identifiers"),
            Some(DataKind::Mobile) => format!("audience_members[{i}].mobile_data.mobile_ids"),
            _ => format!("audience_members[{i}]"),
        };
        match kind {
            Some(DataKind::User) => {
                let list = member["userData"]["userIdentifiers"].as_array().map(Vec::as_slice).unwrap_or_default();
                if list.len() > MAX_IDENTIFIERS {
                    violations.push(Violation::new(
                        base.clone(),
                        "TOO_MANY_USER_IDENTIFIERS",
                        format!("Maximum number of user identifiers allowed per audience member is {MAX_IDENTIFIERS}."),
                    ));
                }
                // Without an encoding the request is refused once, below.
                if let Some(encoding) = encoding {
                    for (j, identifier) in list.iter().enumerate() {
                        match user_identifier(identifier, encoding, &format!("{base}[{j}]")) {
                            Ok(key) => ids.push(key),
                            Err(v) => violations.push(v),
                        }
                    }
                }
            }
            Some(DataKind::Mobile) => {
                let list = member["mobileData"]["mobileIds"].as_array().map(Vec::as_slice).unwrap_or_default();
                if list.len() > MAX_IDENTIFIERS {
                    violations.push(Violation::new(
                        base.clone(),
                        "TOO_MANY_USER_IDENTIFIERS",
                        format!("Maximum number of mobile ids allowed per audience member is {MAX_IDENTIFIERS}."),
                    ));
                }
                for (j, id) in list.iter().enumerate() {
                    match id.as_str() {
                        // The protos give no format (IDFA and AAID are UUIDs, but other device ids
                        // are taken too): non-empty, at most 100 characters, nothing unprintable.
                        Some(id) if !id.is_empty() && id.len() <= 100 && !id.chars().any(char::is_control) => {
                            ids.push(format!("mobile:{id}"));
                        }
                        _ => violations.push(Violation::new(
                            format!("{base}[{j}]"),
                            "INVALID_MOBILE_ID_FORMAT",
                            "Mobile ID format is not valid.",
                        )),
                    }
                }
            }
            Some(DataKind::Other(name)) => violations.push(Violation::new(
                format!("audience_members[{i}].{name}"),
                "INVALID_USER_LIST_TYPE",
                "Type of the user list is not applicable for this request: the destination is a Customer Match \
                 contact list.",
            )),
            None => violations.push(Violation::new(
                format!("audience_members[{i}]"),
                "INVALID_AUDIENCE_MEMBER",
                "This audience member is not valid: it carries no data.",
            )),
        }
        for (j, key) in ids.iter().enumerate() {
            if let Some(reason) = refused.get(key) {
                violations.push(Violation::new(
                    format!("{base}[{j}]"),
                    reason,
                    "This identifier is refused by the server's configured rule.",
                ));
            }
        }
        identifiers += ids.len() as u64;
        parsed.push(Member { ids, ad_user_data });
    }
    if kinds.len() > 1 {
        violations.insert(
            0,
            Violation::new(
                "audience_members",
                "MULTIPLE_DATA_TYPES_NOT_ALLOWED",
                "Multiple data types are not allowed to be ingested in a single request.",
            ),
        );
    }
    let user_data = kinds.contains(&DataKind::User);
    if user_data && encoding.is_none() {
        violations.insert(
            0,
            Violation::new("encoding", "REQUIRED_FIELD_MISSING", "Encoding is required for UserData uploads."),
        );
    }
    let customer_match = user_data || kinds.contains(&DataKind::Mobile);
    let tos =
        body.get("termsOfService").and_then(|t| t.get("customerMatchTermsOfServiceStatus")).and_then(Json::as_str);
    if ingest && customer_match && tos != Some("ACCEPTED") {
        violations.insert(
            0,
            Violation::new(
                "terms_of_service.customer_match_terms_of_service_status",
                "TERMS_AND_CONDITIONS_NOT_SIGNED",
                "Required terms and conditions are not accepted.",
            ),
        );
    }
    if violations.is_empty() {
        Ok(Parsed { kind: kinds.first().copied(), members: parsed, identifiers })
    } else {
        Err(violations)
    }
}

fn data_kind(member: &Json) -> Option<DataKind> {
    const OTHERS: [(&str, &str); 6] = [
        ("pairData", "pair_data"),
        ("userIdData", "user_id_data"),
        ("ppidData", "ppid_data"),
        ("compositeData", "composite_data"),
        ("googleUserIdData", "google_user_id_data"),
        ("partnerProvidedIdData", "partner_provided_id_data"),
    ];
    if member.get("userData").is_some() {
        return Some(DataKind::User);
    }
    if member.get("mobileData").is_some() {
        return Some(DataKind::Mobile);
    }
    OTHERS.iter().find(|(json_name, _)| member.get(*json_name).is_some()).map(|(_, name)| DataKind::Other(name))
}

fn user_identifier(identifier: &Json, encoding: &str, field: &str) -> Result<String, Violation> {
    if let Some(value) = identifier.get("emailAddress") {
        return Ok(format!("email:{}", digest(value, encoding, &format!("{field}.email_address"))?));
    }
    if let Some(value) = identifier.get("phoneNumber") {
        return Ok(format!("phone:{}", digest(value, encoding, &format!("{field}.phone_number"))?));
    }
    let Some(address) = identifier.get("address") else {
        return Err(Violation::new(field, "REQUIRED_FIELD_MISSING", "A user identifier must hold one identifier."));
    };
    for name in ["givenName", "familyName", "regionCode", "postalCode"] {
        if address.get(name).and_then(Json::as_str).is_none_or(str::is_empty) {
            return Err(Violation::new(
                format!("{field}.address.{}", snake(name)),
                "REQUIRED_FIELD_MISSING",
                "AddressInfo requires given_name, family_name, region_code and postal_code.",
            ));
        }
    }
    let given = digest(&address["givenName"], encoding, &format!("{field}.address.given_name"))?;
    let family = digest(&address["familyName"], encoding, &format!("{field}.address.family_name"))?;
    let region = address["regionCode"].as_str().unwrap_or_default();
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Violation::new(
            format!("{field}.address.region_code"),
            "INVALID_REGION_CODE",
            "The region code is not valid: an ISO 3166-1 alpha-2 code is expected.",
        ));
    }
    let postal = address["postalCode"].as_str().unwrap_or_default();
    let postal_ok = if region == "US" {
        let b = postal.as_bytes();
        (b.len() == 5 && b.iter().all(u8::is_ascii_digit))
            || (b.len() == 10 && b[5] == b'-' && b[..5].iter().chain(&b[6..]).all(u8::is_ascii_digit))
    } else {
        postal.len() <= 16 && postal.bytes().all(|c| c.is_ascii_alphanumeric() || c == b' ' || c == b'-')
    };
    if !postal_ok {
        return Err(Violation::new(
            format!("{field}.address.postal_code"),
            "INVALID_POSTAL_CODE",
            "Postal code is not valid.",
        ));
    }
    Ok(format!("address:{given}:{family}:{region}:{postal}"))
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A hashed identifier as lowercase hex: 64 lowercase hex characters under `HEX`, or the
/// base64 of 32 bytes under `BASE64`.
fn digest(value: &Json, encoding: &str, field: &str) -> Result<String, Violation> {
    let text = value.as_str().unwrap_or_default();
    match encoding {
        "BASE64" => {
            let Some(bytes) = base64_decode(text) else {
                return Err(Violation::new(field, "INVALID_BASE64_ENCODING", "The base64 encoded value is malformed."));
            };
            if bytes.len() != 32 {
                return Err(Violation::new(field, "INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed."));
            }
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }
        _ => {
            if text.is_empty() || !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Violation::new(field, "INVALID_HEX_ENCODING", "The HEX encoded value is malformed."));
            }
            if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(Violation::new(field, "INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed."));
            }
            Ok(text.to_owned())
        }
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6).then_some(out)
}

/// The 64-bit fingerprint lean mode keeps of an identifier key.
pub fn fingerprint(key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The destinations of a request, in order, each with its list id and accounts.
pub struct Target {
    pub json: Json,
    pub list: String,
    pub operating: Option<Account>,
    pub login: Option<Account>,
}

pub fn targets(body: &Json) -> Vec<Target> {
    body.get("destinations")
        .and_then(Json::as_array)
        .map(|ds| {
            ds.iter()
                .map(|d| Target {
                    json: d.clone(),
                    list: d.get("productDestinationId").and_then(Json::as_str).unwrap_or_default().to_owned(),
                    operating: d.get("operatingAccount").and_then(Account::from_json),
                    login: d.get("loginAccount").and_then(Account::from_json),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What `requestStatus:retrieve` reports of one accepted request.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub endpoint: &'static str,
    pub destinations: Vec<Json>,
    pub kind: Option<DataKind>,
    pub records: u64,
    pub identifiers: u64,
    /// Members with at least one identifier among the known Google users.
    pub matched: u64,
    /// `ProcessingErrorReason` → members it dropped.
    pub errors: BTreeMap<&'static str, u64>,
    /// `PROCESSING` answers still to give.
    pub polls_left: u32,
}

impl Submitted {
    /// The `RetrieveRequestStatusResponse` body now.
    pub fn status(&self) -> Json {
        let per: Vec<Json> = self
            .destinations
            .iter()
            .map(|destination| {
                if self.polls_left > 0 {
                    return json!({"destination": destination, "requestStatus": "PROCESSING"});
                }
                let failed: u64 = self.errors.values().sum();
                let status = if failed == 0 {
                    "SUCCESS"
                } else if failed >= self.records {
                    "FAILED"
                } else {
                    "PARTIAL_SUCCESS"
                };
                let mut entry = json!({"destination": destination, "requestStatus": status,
                                       "warningInfo": {"warningCounts": []}});
                if failed > 0 {
                    let counts: Vec<Json> = self
                        .errors
                        .iter()
                        .map(|(reason, n)| json!({"recordCount": n.to_string(), "reason": reason}))
                        .collect();
                    entry["errorInfo"] = json!({"errorCounts": counts});
                }
                let (records, ids) = (self.records.to_string(), self.identifiers.to_string());
                match (self.endpoint, self.kind) {
                    ("ingest", Some(DataKind::Mobile)) => {
                        entry["audienceMembersIngestionStatus"] =
                            json!({"mobileDataIngestionStatus": {"recordCount": records, "mobileIdCount": ids}});
                    }
                    ("ingest", _) => {
                        entry["audienceMembersIngestionStatus"] = json!({"userDataIngestionStatus": {
                            "recordCount": records, "userIdentifierCount": ids,
                            "uploadMatchRateRange": match_rate_range(self.matched, self.records)}});
                    }
                    ("remove", Some(DataKind::Mobile)) => {
                        entry["audienceMembersRemovalStatus"] =
                            json!({"mobileDataRemovalStatus": {"recordCount": records, "mobileIdCount": ids}});
                    }
                    ("remove", _) => {
                        entry["audienceMembersRemovalStatus"] =
                            json!({"userDataRemovalStatus": {"recordCount": records, "userIdentifierCount": ids}});
                    }
                    _ => entry["removeAllAudienceMembersStatus"] = json!({}),
                }
                entry
            })
            .collect();
        json!({ "requestStatusPerDestination": per })
    }
}

/// The `MatchRateRange` of `matched` members out of `records`, by match_rate.proto's
/// intervals (`[0, 20)`, `[20, 31)`, `[31, 41)` … `[91, 100]`).
pub fn match_rate_range(matched: u64, records: u64) -> &'static str {
    if records == 0 {
        return "MATCH_RATE_RANGE_UNKNOWN";
    }
    match matched * 100 / records {
        0..20 => "MATCH_RATE_RANGE_LESS_THAN_20",
        20..31 => "MATCH_RATE_RANGE_20_TO_30",
        31..41 => "MATCH_RATE_RANGE_31_TO_40",
        41..51 => "MATCH_RATE_RANGE_41_TO_50",
        51..61 => "MATCH_RATE_RANGE_51_TO_60",
        61..71 => "MATCH_RATE_RANGE_61_TO_70",
        71..81 => "MATCH_RATE_RANGE_71_TO_80",
        81..91 => "MATCH_RATE_RANGE_81_TO_90",
        _ => "MATCH_RATE_RANGE_91_TO_100",
    }
}
