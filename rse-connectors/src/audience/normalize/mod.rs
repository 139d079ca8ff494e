//! The per-platform normalisers: the exact text each platform hashes, and its SHA-256.
//!
//! The rules come from the platforms' own pages, cited on each normaliser:
//!
//! - Google Data Manager API, "Format user data"
//!   (<https://developers.google.com/data-manager/api/devguides/concepts/formatting>) and the
//!   comments of its `AddressInfo` message (`google/ads/datamanager/v1/user_data.proto`);
//! - Google Ads API, "Customer Match" (<https://developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match>)
//!   and `OfflineUserAddressInfo`
//!   (<https://developers.google.com/google-ads/api/reference/rpc/v25/OfflineUserAddressInfo>);
//! - Meta Marketing API, Custom Audiences "Hashing and normalizing data"
//!   (<https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash>),
//!   whose rules the Conversions API's "Customer information parameters" page
//!   (<https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>)
//!   repeats with worked SHA-256 examples.
//!
//! What every normaliser shares:
//!
//! - Surrounding whitespace is trimmed first; a blank value is `Ok(None)`.
//! - A value of a hashed kind that is exactly 64 hex digits (any case, once trimmed) is
//!   **always** taken as a SHA-256 digest the source already computed and passed through as
//!   [`Normalized::Hashed`] without hashing it again. (No normalised identifier is 64 hex
//!   digits, except a 64-digit "phone number", which E.164 rules out anyway.)
//! - Hashing is SHA-256 over the normalised UTF-8 bytes (the `sha2` crate, which uses the
//!   CPU's SHA extensions when it has them).
//! - A kind the platform does not match on is `Ok(None)` whatever the value: the platform
//!   ignores it, so nothing is sent.
//! - Reasons in [`InvalidIdentifier`] say what is expected; they never hold the value.
//!
//! Normalising allocates nothing for a hashed identifier of up to 96 bytes (the work happens
//! in a stack buffer); a plain identifier is one `String`.

mod countries;
mod email;
mod hash;
mod phone;
mod scratch;
mod text;

use super::{IdentifierKind, InvalidIdentifier, Normalized, Normalizer, RowContext};
use hash::{hex_digest, sha256};
use scratch::Scratch;

/// Whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    DataManager,
    GoogleAds,
    Meta,
}

impl Platform {
    fn is_google(self) -> bool {
        matches!(self, Platform::DataManager | Platform::GoogleAds)
    }
}

/// Normalises `raw` as `platform` wants it.
fn normalize(
    platform: Platform,
    kind: IdentifierKind,
    raw: &str,
    row: &RowContext<'_>,
) -> Result<Option<Normalized>, InvalidIdentifier> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &'static str| InvalidIdentifier { kind, reason: reason.to_owned() };
    let google = platform.is_google();
    match kind {
        // Plain kinds first: never taken as digests.
        IdentifierKind::Country if google => {
            let [a, b] = text::country_code(value).map_err(invalid)?;
            Ok(Some(Normalized::Plain(String::from_iter([
                char::from(a.to_ascii_uppercase()),
                char::from(b.to_ascii_uppercase()),
            ]))))
        }
        IdentifierKind::PostalCode if google => {
            text::google_postal_code(value, row).map(|c| Some(Normalized::Plain(c))).map_err(invalid)
        }
        IdentifierKind::MobileId if platform == Platform::Meta => Ok(Some(Normalized::Plain(value.to_lowercase()))),
        IdentifierKind::MobileId | IdentifierKind::ExternalId => Ok(Some(Normalized::Plain(value.to_owned()))),
        // Kinds Google does not match Customer Match members on.
        IdentifierKind::City | IdentifierKind::Region | IdentifierKind::DateOfBirth | IdentifierKind::Gender
            if google =>
        {
            Ok(None)
        }
        // Derived from a date of birth by `normalize_into`; a column of their own is not
        // taken (a year alone hashed is indistinguishable from any other text).
        IdentifierKind::BirthYear | IdentifierKind::BirthMonth | IdentifierKind::BirthDay if google => Ok(None),
        IdentifierKind::BirthYear | IdentifierKind::BirthMonth | IdentifierKind::BirthDay => Err(invalid(
            "the parts of a date of birth are derived from the date: map the date (YYYY-MM-DD) as `date_of_birth`",
        )),
        IdentifierKind::DateOfBirth => {
            // Meta has no single date-of-birth key (see `MetaNormalizer::birth_parts`); a value
            // that is neither a digest nor a date still shows as invalid.
            if hex_digest(value).is_none() {
                text::birth_date(value).map_err(invalid)?;
            }
            Ok(None)
        }
        _ => {
            if let Some(digest) = hex_digest(value) {
                return Ok(Some(Normalized::Hashed(digest)));
            }
            // Meta's low-cardinality keys: digests computed once.
            match kind {
                IdentifierKind::Country => {
                    let code = text::country_code(value).map_err(invalid)?;
                    return Ok(hash::two_letters(&code).map(Normalized::Hashed));
                }
                IdentifierKind::Gender => {
                    return text::gender(value).map(|g| Some(Normalized::Hashed(hash::one_letter(g)))).map_err(invalid);
                }
                _ => {}
            }
            let mut out = Scratch::new();
            let written = match kind {
                IdentifierKind::Email => {
                    email::normalize(value, platform == Platform::DataManager, platform == Platform::Meta, &mut out)
                }
                IdentifierKind::Phone => phone::normalize(value, row.country, google, &mut out),
                IdentifierKind::FirstName if google => text::google_name(value, text::NamePart::Given, &mut out),
                IdentifierKind::LastName if google => text::google_name(value, text::NamePart::Family, &mut out),
                IdentifierKind::FirstName | IdentifierKind::LastName | IdentifierKind::City => {
                    text::letters_only(value, &mut out)
                }
                IdentifierKind::Region => text::meta_region(value, row, &mut out),
                IdentifierKind::PostalCode => text::meta_zip(value, row, &mut out),
                // Handled above; kept so that a new kind must be decided here.
                IdentifierKind::Country
                | IdentifierKind::Gender
                | IdentifierKind::DateOfBirth
                | IdentifierKind::BirthYear
                | IdentifierKind::BirthMonth
                | IdentifierKind::BirthDay
                | IdentifierKind::MobileId
                | IdentifierKind::ExternalId => return Ok(None),
            };
            written.map_err(invalid)?;
            let digest = hash::two_letters(out.as_bytes()).unwrap_or_else(|| sha256(out.as_bytes()));
            Ok(Some(Normalized::Hashed(digest)))
        }
    }
}

/// Google Customer Match through the Data Manager API (`audienceMembers:ingest`).
///
/// Rules, from Data Manager's "Format user data" page
/// (<https://developers.google.com/data-manager/api/devguides/concepts/formatting>, the
/// newest snapshot, which adds the `+tag` rule to the older dots-only one) and the field
/// comments of `AddressInfo` in `google/ads/datamanager/v1/user_data.proto`:
///
/// - **Email** (hashed): every whitespace removed, lowercased; for `gmail.com` and
///   `googlemail.com` only, every `.` of the local part removed and a `+` with everything
///   after it dropped (`cloudy.sanfrancisco+shopping@gmail.com` → `cloudysanfrancisco@gmail.com`);
///   other domains keep dots and `+tags` (`user.name+NYC@Example.com` →
///   `user.name+nyc@example.com`). Exactly one `@` with something on either side, else
///   invalid.
/// - **Phone** (hashed): E.164 with `+` (`(800)555-0100` in the US → `+18005550100`); see
///   [the phone rules](#phone-numbers).
/// - **First / last name** (hashed, `given_name` / `family_name`): lowercased, trimmed, no
///   punctuation (the proto's words), runs of inner whitespace as one space, a leading title
///   (`Mrs.`, `Dr` …) dropped from a first name and trailing suffixes (`Jr.`, `III`, `PhD` …)
///   from a last name, as the page asks.
/// - **Country** (plain, `region_code`): ISO 3166-1 alpha-2, uppercased (`us` → `US`); any
///   other value is invalid.
/// - **Postal code** (plain): trimmed, inner whitespace as one space; when the row's country
///   is the US, 5 digits or ZIP+4 (`94303-5300`; 9 digits get their hyphen), else invalid.
/// - **Mobile id** (plain, `MobileData`) and **external id** (plain, `UserIdData`): trimmed.
/// - **City, region, date of birth, gender**: `Ok(None)`; Customer Match does not use them.
///
/// # Phone numbers
///
/// Digits are kept; spaces and `( ) - . /` are dropped; anything else (letters, an
/// extension) makes the number invalid rather than guessed at. A number written with a
/// leading `+` or `00` carries its country code (a `(0)` after it, as in `+44 (0)20 …`, is
/// dropped). Otherwise it is a national number of the row's country ([`RowContext::country`]):
/// its trunk prefix (`0` in most countries, `1` in North America, `8` in Russia; none in
/// Italy, where the `0` belongs to the number) is dropped and the country's calling code put
/// in front; a national number that already starts with the calling code and has at least 8
/// digits after it, in a country whose numbers are dialled nationally with a trunk prefix it
/// lacks, is taken as international (`447911123456` in the UK). Without `+`, `00` or a row
/// country the number is invalid: Google would accept it and never match it. The result has
/// 7 to 15 digits (E.164).
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleDataManagerNormalizer;

impl Normalizer for GoogleDataManagerNormalizer {
    fn platform(&self) -> &'static str {
        "Google Data Manager"
    }

    fn normalize(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
    ) -> Result<Option<Normalized>, InvalidIdentifier> {
        normalize(Platform::DataManager, kind, raw, row)
    }
}

/// Google Customer Match through the Google Ads API (`OfflineUserDataJobService`).
///
/// The same rules as [`GoogleDataManagerNormalizer`] except for email addresses: the Google
/// Ads API's Customer Match guide
/// (<https://developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match>)
/// asks only to trim and lowercase, says Gmail addresses are accepted with their dots, and its
/// sample code applies no Gmail rule, so **email** here is every whitespace removed and
/// lowercased, dots and `+tags` kept on every domain. Names follow `OfflineUserAddressInfo`
/// (<https://developers.google.com/google-ads/api/reference/rpc/v25/OfflineUserAddressInfo>:
/// lowercase, extra spaces removed, a last name without punctuation) together with the newer
/// Data Manager wording (no punctuation in either name, no titles or suffixes), as both APIs
/// feed the same matching. `country_code` and `postal_code` are sent unhashed; mobile ids
/// (`mobile_id`) and external ids (`third_party_user_id`) trimmed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleAdsNormalizer;

impl Normalizer for GoogleAdsNormalizer {
    fn platform(&self) -> &'static str {
        "Google Ads"
    }

    fn normalize(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
    ) -> Result<Option<Normalized>, InvalidIdentifier> {
        normalize(Platform::GoogleAds, kind, raw, row)
    }
}

/// Meta Custom Audiences (`/{audience_id}/users`, multi-key schema).
///
/// Rules, from the Custom Audiences "Hashing and normalizing data" table
/// (<https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash>)
/// and the Conversions API's "Customer information parameters"
/// (<https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>),
/// which states the same rules with worked SHA-256 examples:
///
/// - **`EMAIL`** (hashed): trimmed (whitespace and, as Meta's Business SDK does, dots at
///   either end), every inner whitespace removed, lowercased; no Gmail rule. Exactly one `@`
///   with something on either side, else invalid.
/// - **`PHONE`** (hashed): digits only — no `+`, no leading zeros — with the country code:
///   the [Google phone rules](GoogleDataManagerNormalizer#phone-numbers) give the
///   international number, written without its `+` (`(650)555-1212` in the US →
///   `16505551212`). Without `+`, `00` or a row country, the digits are taken as already
///   starting with the country code, which is the form Meta asks for.
/// - **`FN`, `LN`, `CT`** (hashed): lowercased letters only — punctuation, spaces and digits
///   removed. Letters outside `a`–`z` are **kept**, as UTF-8 (`Valéry` → `valéry`, `정` →
///   `정`): Meta's documentation allows UTF-8 and gives these very examples, whereas its
///   Business SDK strips everything but `a`–`z`; this normaliser follows the documentation.
///   Combining marks are kept with their letters; text should be in NFC, as typed text
///   usually is.
/// - **`ST`** (hashed): letters only, lowercased; a US state's name becomes its 2-letter ANSI
///   code (`New York` → `ny`) when the row's country is the US or unknown.
/// - **`ZIP`** (hashed): lowercase, no spaces or hyphens; in the US (the row's country, or no
///   country and a value shaped like a ZIP code) the first 5 digits (`94035-1234` → `94035`).
/// - **`COUNTRY`** (hashed): ISO 3166-1 alpha-2, lowercased.
/// - **`GEN`** (hashed): `m` or `f` (also from `male` / `female`); anything else is invalid.
/// - **`DOBY`, `DOBM`, `DOBD`**: [`MetaNormalizer::birth_parts`]. Custom Audiences have no
///   single date-of-birth key, so [`Normalizer::normalize`] returns `Ok(None)` for a
///   date of birth (and `InvalidIdentifier` for a value that is not a date), and
///   [`Normalizer::normalize_into`] makes the three keys from it.
/// - **`MADID`** (plain): lowercased, hyphens kept, not hashed.
/// - **`EXTERN_ID`** (plain): trimmed, not hashed (Meta matches it as sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaNormalizer;

impl MetaNormalizer {
    /// A date of birth as Meta's `DOBY`, `DOBM` and `DOBD` keys, each normalised (`YYYY`,
    /// `MM`, `DD`, zero-padded) and hashed, in that order.
    ///
    /// Accepts `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD` or `YYYYMMDD`, optionally followed by
    /// a time (`T…` or a space), with a year from 1900 to the current year as Meta asks.
    /// A blank value is `Ok(None)`.
    ///
    /// # Errors
    ///
    /// [`InvalidIdentifier`] for anything else, including a 64-hex digest: a hashed date
    /// cannot be split into its parts.
    pub fn birth_parts(raw: &str) -> Result<Option<[[u8; 32]; 3]>, InvalidIdentifier> {
        let value = raw.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let invalid =
            |reason: &'static str| InvalidIdentifier { kind: IdentifierKind::DateOfBirth, reason: reason.to_owned() };
        if hex_digest(value).is_some() {
            return Err(invalid(
                "a hashed date of birth cannot be split into Meta's DOBY, DOBM and DOBD keys; \
                 map the date itself (YYYY-MM-DD)",
            ));
        }
        let date = text::birth_date(value).map_err(invalid)?;
        Ok(Some(hash::date_parts(date.year, date.month, date.day)))
    }
}

impl Normalizer for MetaNormalizer {
    fn platform(&self) -> &'static str {
        "Meta"
    }

    fn normalize(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
    ) -> Result<Option<Normalized>, InvalidIdentifier> {
        normalize(Platform::Meta, kind, raw, row)
    }

    /// As [`normalize`](Normalizer::normalize), except that a date of birth makes Meta's
    /// three keys (`DOBY`, `DOBM`, `DOBD`: [`MetaNormalizer::birth_parts`]) as the kinds
    /// [`BirthYear`](IdentifierKind::BirthYear), [`BirthMonth`](IdentifierKind::BirthMonth)
    /// and [`BirthDay`](IdentifierKind::BirthDay).
    fn normalize_into(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
        out: &mut Vec<(IdentifierKind, Normalized)>,
    ) -> Result<(), InvalidIdentifier> {
        if kind == IdentifierKind::DateOfBirth {
            if let Some([year, month, day]) = Self::birth_parts(raw)? {
                out.extend([
                    (IdentifierKind::BirthYear, Normalized::Hashed(year)),
                    (IdentifierKind::BirthMonth, Normalized::Hashed(month)),
                    (IdentifierKind::BirthDay, Normalized::Hashed(day)),
                ]);
            }
            return Ok(());
        }
        if let Some(id) = self.normalize(kind, raw, row)? {
            out.push((kind, id));
        }
        Ok(())
    }
}
