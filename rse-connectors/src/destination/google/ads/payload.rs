//! A member's identifiers as one `UserData`: `hashedEmail`, `hashedPhoneNumber`,
//! `addressInfo{hashedFirstName, hashedLastName, countryCode, postalCode}` (all four or
//! none: Customer Match matches an address only whole), `mobileId`, `thirdPartyUserId`;
//! at most 20, one per `UserIdentifier`, and the member's consent.
//!
//! Cities, regions, dates of birth and genders are not Customer Match identifiers of the
//! Google Ads API and are not sent.

use serde_json::{Value as Json, json};

use super::config::MAX_IDENTIFIERS_PER_MEMBER;
use crate::audience::{Consent, IdentifierKind, MemberIds, Normalized};
use crate::destination::google::{ConsentSpelling, RequestConsent};

/// Lowercase hex of a digest.
pub(super) fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn text(value: &Normalized) -> String {
    match value {
        Normalized::Hashed(digest) => hex(digest),
        Normalized::Plain(text) => text.clone(),
    }
}

const ADDRESS: [IdentifierKind; 4] =
    [IdentifierKind::FirstName, IdentifierKind::LastName, IdentifierKind::Country, IdentifierKind::PostalCode];

/// The `userIdentifiers` of `ids`. An address goes when `ids` holds one of its four parts
/// and `whole` (the member's full identifiers: for a remove, those last sent) holds all
/// four, so a changed first name removes the address it was sent in.
pub(super) fn user_identifiers(ids: &MemberIds, whole: &MemberIds) -> Vec<Json> {
    let mut out = Vec::new();
    for (kind, value) in ids.iter() {
        let identifier = match kind {
            IdentifierKind::Email => json!({"hashedEmail": text(value)}),
            IdentifierKind::Phone => json!({"hashedPhoneNumber": text(value)}),
            IdentifierKind::MobileId => json!({"mobileId": text(value)}),
            IdentifierKind::ExternalId => json!({"thirdPartyUserId": text(value)}),
            _ => continue,
        };
        out.push(identifier);
    }
    if ids.iter().any(|(kind, _)| ADDRESS.contains(&kind)) {
        let part = |wanted: IdentifierKind| whole.get(wanted).map(text);
        if let [Some(first), Some(last), Some(country), Some(postal)] = ADDRESS.map(part) {
            out.push(json!({"addressInfo": {
                "hashedFirstName": first,
                "hashedLastName": last,
                "countryCode": country.to_ascii_uppercase(),
                "postalCode": postal,
            }}));
        }
    }
    out.truncate(MAX_IDENTIFIERS_PER_MEMBER);
    out
}

/// `GRANTED`/`DENIED` of a consent signal, when known.
fn status(signal: Option<Option<bool>>) -> Option<&'static str> {
    signal.flatten().map(|granted| ConsentSpelling::GoogleAds.status(granted))
}

/// The job-level `Consent` of `consent`, when it states any.
pub(super) fn job_consent(consent: Option<&RequestConsent>) -> Option<Json> {
    let consent = consent?;
    let mut signals = serde_json::Map::new();
    if let Some(s) = status(Some(consent.ad_user_data)) {
        signals.insert("adUserData".to_owned(), json!(s));
    }
    if let Some(s) = status(Some(consent.ad_personalization)) {
        signals.insert("adPersonalization".to_owned(), json!(s));
    }
    (!signals.is_empty()).then_some(Json::Object(signals))
}

/// One `UserData`, with the member's consent when any signal is known.
pub(super) fn user_data(identifiers: Vec<Json>, consent: &Consent) -> Json {
    let mut data = json!({ "userIdentifiers": identifiers });
    let mut signals = serde_json::Map::new();
    if let Some(s) = status(consent.ad_user_data) {
        signals.insert("adUserData".to_owned(), json!(s));
    }
    if let Some(s) = status(consent.ad_personalization) {
        signals.insert("adPersonalization".to_owned(), json!(s));
    }
    if !signals.is_empty() {
        data["consent"] = Json::Object(signals);
    }
    data
}
