//! The checks of one operation's `UserData`: one identifier per `UserIdentifier`, hashed
//! fields as 64 lowercase hex characters, a whole address with its country and postal code
//! in clear, a mobile id in its device form; and each identifier's key in the list.
//!
//! Follows offline_user_data.proto (`UserIdentifier`, `OfflineUserAddressInfo`),
//! offline_user_data_job_error.proto and the Google Ads API guide "Customer Match: upload
//! and manage lists" (see `jobs.rs`).
use serde_json::Value as Json;

use super::jobs::Rule;
use super::wire::error_at;

/// The key of one identifier, as the list holds it: `email:<hex>`, `phone:<hex>`,
/// `address:<first hex>:<last hex>:<country>:<postal>`, `mobile:<id>`, `user_id:<id>`.
pub fn key(identifier: &Json) -> Option<String> {
    let s = |v: &Json| v.as_str().map(str::to_owned);
    if let Some(h) = s(&identifier["hashedEmail"]) {
        return Some(format!("email:{h}"));
    }
    if let Some(h) = s(&identifier["hashedPhoneNumber"]) {
        return Some(format!("phone:{h}"));
    }
    if let Some(m) = s(&identifier["mobileId"]) {
        return Some(format!("mobile:{m}"));
    }
    if let Some(u) = s(&identifier["thirdPartyUserId"]) {
        return Some(format!("user_id:{u}"));
    }
    let a = &identifier["addressInfo"];
    if a.is_object() {
        let f = |name: &str| a[name].as_str().unwrap_or("").to_owned();
        return Some(format!(
            "address:{}:{}:{}:{}",
            f("hashedFirstName"),
            f("hashedLastName"),
            f("countryCode"),
            f("postalCode")
        ));
    }
    None
}

fn is_sha256_hex(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_mobile_id(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The errors of operation `i` (a `field` of `create` or `remove` holding `data`), located
/// as Google locates them, and the keys of its identifiers. The client's contract breaches
/// go to `violations`.
pub fn check_user_data(
    i: usize,
    field: &'static str,
    data: &Json,
    rule: Option<&Rule>,
    violations: &mut Vec<String>,
) -> (Vec<Json>, Vec<String>) {
    let at = |rest: &[(&'static str, Option<usize>)]| {
        let mut path = vec![("operations", Some(i))];
        path.extend_from_slice(rest);
        path
    };
    let mut op_errors = Vec::new();
    let mut ids = Vec::new();
    if data.get("userAttribute").is_some() {
        op_errors.push(error_at(
            "offlineUserDataJobError",
            "ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST",
            "Customer Match attributes are not applicable to this user list.",
            &at(&[(field, None), ("user_attribute", None)]),
        ));
    }
    if data.get("transactionAttribute").is_some() {
        violations.push(format!("operations[{i}]: transactionAttribute is for store sales"));
    }
    for (j, identifier) in data["userIdentifiers"].as_array().into_iter().flatten().enumerate() {
        let here = |leaf: &'static str| at(&[(field, None), ("user_identifiers", Some(j)), (leaf, None)]);
        for (name, leaf) in [("hashedEmail", "hashed_email"), ("hashedPhoneNumber", "hashed_phone_number")] {
            if let Some(v) = identifier[name].as_str()
                && !is_sha256_hex(v)
            {
                op_errors.push(error_at(
                    "offlineUserDataJobError",
                    "INVALID_SHA256_FORMAT",
                    "The SHA256 encoded value is malformed.",
                    &here(leaf),
                ));
            }
        }
        if let Some(m) = identifier["mobileId"].as_str()
            && !is_mobile_id(m)
        {
            op_errors.push(error_at(
                "offlineUserDataJobError",
                "INVALID_MOBILE_ID_FORMAT",
                "The mobile ID is malformed.",
                &here("mobile_id"),
            ));
        }
        if identifier["thirdPartyUserId"].as_str() == Some("") {
            op_errors.push(error_at(
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                "The user identifier is missing valid data.",
                &here("third_party_user_id"),
            ));
        }
        let address = &identifier["addressInfo"];
        if address.is_object() {
            for extra in ["city", "state", "hashedStreetAddress"] {
                if address.get(extra).is_some() {
                    violations.push(format!("operations[{i}]: addressInfo.{extra} is not for Customer Match"));
                }
            }
            for (name, leaf) in [("hashedFirstName", "hashed_first_name"), ("hashedLastName", "hashed_last_name")] {
                match address[name].as_str() {
                    Some(v) if is_sha256_hex(v) => {}
                    Some(_) => op_errors.push(error_at(
                        "offlineUserDataJobError",
                        "INVALID_SHA256_FORMAT",
                        "The SHA256 encoded value is malformed.",
                        &at(&[(field, None), ("user_identifiers", Some(j)), ("address_info", None), (leaf, None)]),
                    )),
                    None => op_errors.push(error_at(
                        "fieldError",
                        "REQUIRED",
                        "The required field was not present.",
                        &at(&[(field, None), ("user_identifiers", Some(j)), ("address_info", None), (leaf, None)]),
                    )),
                }
            }
            match address["countryCode"].as_str() {
                Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {}
                _ => op_errors.push(error_at(
                    "offlineUserDataJobError",
                    "INVALID_COUNTRY_CODE",
                    "The country code is invalid.",
                    &at(&[
                        (field, None),
                        ("user_identifiers", Some(j)),
                        ("address_info", None),
                        ("country_code", None),
                    ]),
                )),
            }
            match address["postalCode"].as_str() {
                Some(p) if !p.is_empty() => {
                    if is_sha256_hex(p) {
                        violations
                            .push(format!("operations[{i}]: addressInfo.postalCode is hashed; it is sent in clear"));
                    }
                }
                _ => op_errors.push(error_at(
                    "fieldError",
                    "REQUIRED",
                    "The required field was not present.",
                    &at(&[(field, None), ("user_identifiers", Some(j)), ("address_info", None), ("postal_code", None)]),
                )),
            }
        }
        if let Some(k) = key(identifier) {
            if let Some((family, code)) = rule.as_ref().and_then(|r| r(&k)) {
                op_errors.push(error_at(family, code, "The value was refused.", &here("value")));
            }
            ids.push(k);
        }
    }
    (op_errors, ids)
}
