//! The request and answer bodies of the Data Manager API, as its REST surface takes them
//! (proto3 JSON: camelCase names, enums by name, 64-bit integers as strings).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::config::ProductAccount;
use crate::audience::{IdentifierKind, Normalized};
use crate::destination::google::{ConsentSpelling, RequestConsent};

/// `ProductAccount` on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Account<'a> {
    account_type: &'static str,
    account_id: &'a str,
}

impl<'a> Account<'a> {
    pub(super) fn of(account: &'a ProductAccount) -> Self {
        Self { account_type: account.account_type.as_str(), account_id: &account.account_id }
    }
}

/// `Destination`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Destination<'a> {
    pub operating_account: Account<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_account: Option<Account<'a>>,
    pub product_destination_id: &'a str,
}

/// `Consent`.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConsentJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_user_data: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_personalization: Option<&'static str>,
}

impl ConsentJson {
    /// The consent as sent, or `None` when nothing is stated.
    pub(super) fn of(ad_user_data: Option<bool>, ad_personalization: Option<bool>) -> Option<Self> {
        let spell = |v: Option<bool>| v.map(|granted| ConsentSpelling::DataManager.status(granted));
        let c = Self { ad_user_data: spell(ad_user_data), ad_personalization: spell(ad_personalization) };
        (c.ad_user_data.is_some() || c.ad_personalization.is_some()).then_some(c)
    }

    pub(super) fn request(consent: Option<&RequestConsent>) -> Option<Self> {
        consent.and_then(|c| Self::of(c.ad_user_data, c.ad_personalization))
    }
}

/// One `UserIdentifier`: exactly one of its fields.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) enum UserIdentifier {
    EmailAddress(String),
    PhoneNumber(String),
    Address(AddressInfo),
}

/// `AddressInfo`: all four fields, names hashed, region and postal code in clear.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct AddressInfo {
    given_name: String,
    family_name: String,
    region_code: String,
    postal_code: String,
}

/// The data types of Customer Match: one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum DataType {
    /// `userData`: e-mail addresses, phone numbers, addresses.
    User,
    /// `mobileData`: mobile advertising ids.
    Mobile,
}

/// One `AudienceMember` of one data type.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Member {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_data: Option<MobileData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentJson>,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserData {
    pub user_identifiers: Vec<UserIdentifier>,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct MobileData {
    pub mobile_ids: Vec<String>,
}

/// Lowercase hex of a digest.
pub(super) fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// A member's identifiers as the Data Manager API takes them: the user data (e-mail
/// addresses and phone numbers, hashed; an address when its given name, family name,
/// country and postal code are all there) and the mobile ids, each a member of its own
/// data type. Identifiers Customer Match contact lists do not take (city, region, date of
/// birth, gender, external id) are left out; so is a part of an incomplete address.
pub(super) fn members<'a>(
    ids: impl Iterator<Item = (IdentifierKind, &'a Normalized)>,
    consent: Option<ConsentJson>,
) -> (Option<Member>, Option<Member>) {
    let mut user = Vec::new();
    let mut mobile = Vec::new();
    let (mut given, mut family, mut country, mut postal) = (None, None, None, None);
    for (kind, value) in ids {
        match (kind, value) {
            (IdentifierKind::Email, Normalized::Hashed(d)) => user.push(UserIdentifier::EmailAddress(hex(d))),
            (IdentifierKind::Phone, Normalized::Hashed(d)) => user.push(UserIdentifier::PhoneNumber(hex(d))),
            (IdentifierKind::FirstName, Normalized::Hashed(d)) => given = given.or(Some(hex(d))),
            (IdentifierKind::LastName, Normalized::Hashed(d)) => family = family.or(Some(hex(d))),
            (IdentifierKind::Country, Normalized::Plain(c)) => country = country.or(Some(c.to_ascii_uppercase())),
            (IdentifierKind::PostalCode, Normalized::Plain(p)) => postal = postal.or(Some(p.clone())),
            (IdentifierKind::MobileId, Normalized::Plain(id)) => mobile.push(id.clone()),
            _ => {}
        }
    }
    if let (Some(given_name), Some(family_name), Some(region_code), Some(postal_code)) =
        (given, family, country, postal)
    {
        user.push(UserIdentifier::Address(AddressInfo { given_name, family_name, region_code, postal_code }));
    }
    let user = (!user.is_empty()).then_some(Member {
        user_data: Some(UserData { user_identifiers: user }),
        mobile_data: None,
        consent,
    });
    let mobile = (!mobile.is_empty()).then_some(Member {
        user_data: None,
        mobile_data: Some(MobileData { mobile_ids: mobile }),
        consent,
    });
    (user, mobile)
}

/// `TermsOfService`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TermsOfService {
    pub customer_match_terms_of_service_status: &'static str,
}

/// `IngestAudienceMembersRequest`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct IngestRequest<'a> {
    pub destinations: [&'a Destination<'a>; 1],
    pub audience_members: &'a [Member],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentJson>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validate_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    pub terms_of_service: TermsOfService,
}

/// `RemoveAudienceMembersRequest`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RemoveRequest<'a> {
    pub destinations: [&'a Destination<'a>; 1],
    pub audience_members: &'a [Member],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validate_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
}

/// `RemoveAllAudienceMembersRequest`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RemoveAllRequest<'a> {
    pub destinations: [&'a Destination<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_as_of_time: Option<String>,
}

/// The answer of ingest, remove and removeAll: the request's id.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Accepted {
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One destination's status in `RetrieveRequestStatusResponse`, as far as the report
/// needs it.
#[derive(Debug, Default, Clone)]
pub(super) struct DestinationStatus {
    /// `requestStatus`.
    pub status: String,
    /// `errorInfo.errorCounts`: reason → records.
    pub errors: Vec<(String, u64)>,
    /// Members and identifiers received (ingest and remove statuses).
    pub records: u64,
    /// `uploadMatchRateRange`.
    pub match_rate_range: Option<String>,
}

fn count(value: Option<&Json>) -> u64 {
    match value {
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The statuses of a `RetrieveRequestStatusResponse` (in the request's destinations' order).
pub(super) fn statuses(body: &Json) -> Vec<DestinationStatus> {
    let per = body.get("requestStatusPerDestination").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
    per.iter()
        .map(|d| {
            let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_owned();
            let errors = d
                .pointer("/errorInfo/errorCounts")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .map(|e| (text(e.get("reason")), count(e.get("recordCount"))))
                .filter(|(reason, _)| crate::saas::classify::looks_like_identifier(reason))
                .collect();
            let ingest = d.get("audienceMembersIngestionStatus");
            let removal = d.get("audienceMembersRemovalStatus");
            let inner = ingest.or(removal).and_then(Json::as_object).and_then(|o| o.values().next());
            DestinationStatus {
                status: text(d.get("requestStatus")),
                errors,
                records: count(inner.and_then(|i| i.get("recordCount"))),
                match_rate_range: inner
                    .and_then(|i| i.get("uploadMatchRateRange"))
                    .and_then(Json::as_str)
                    .map(str::to_owned),
            }
        })
        .collect()
}

/// The bounds in percent of a `MatchRateRange`, or `None` for `UNKNOWN`, `NOT_ELIGIBLE` and
/// names this version does not know.
pub(super) fn match_rate_bounds(range: &str) -> Option<(u8, u8)> {
    Some(match range {
        "MATCH_RATE_RANGE_LESS_THAN_20" => (0, 19),
        "MATCH_RATE_RANGE_20_TO_30" => (20, 30),
        "MATCH_RATE_RANGE_31_TO_40" => (31, 40),
        "MATCH_RATE_RANGE_41_TO_50" => (41, 50),
        "MATCH_RATE_RANGE_51_TO_60" => (51, 60),
        "MATCH_RATE_RANGE_61_TO_70" => (61, 70),
        "MATCH_RATE_RANGE_71_TO_80" => (71, 80),
        "MATCH_RATE_RANGE_81_TO_90" => (81, 90),
        "MATCH_RATE_RANGE_91_TO_100" => (91, 100),
        _ => return None,
    })
}
