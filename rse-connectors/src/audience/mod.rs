//! Ad audiences: a sync's rows are the members of one audience on an ad platform (Google
//! Customer Match, Meta Custom Audiences), identified by personal data hashed the way each
//! platform matches it.
//!
//! - [`IdentifierKind`]: what a column holds (an email address, a phone number, a postal
//!   code…).
//! - [`Normalizer`]: one per platform, because the platforms disagree (Google wants phone
//!   numbers in E.164 *with* `+`, Meta digits only; Google's Data Manager API drops dots and
//!   `+tags` from Gmail addresses). Each turns a raw value into the exact form the platform
//!   hashes, and hashes it (SHA-256, lowercase hex when printed). A value that already is a
//!   SHA-256 digest (64 hex characters) is recognised and passed through, never hashed twice;
//!   identifiers the platform wants in clear (Meta `MADID`, `EXTERN_ID`, Google's mobile
//!   ids, country and postal codes) are passed through unhashed.
//! - [`AudienceFields`]: which columns hold which identifiers, and the members' consent.
//! - [`plan_batch`]: what a batch of changes means for the audience — the members to remove
//!   (all identifiers of a member that left the segment or withdrew consent, the old ones of
//!   a member whose identifiers changed, read from the key's memo, never derived again) and
//!   those to add — and [`AudiencePlan::outcomes`], the batch's answer with each member's
//!   identifiers as its key's memo and the run's audience figures.

mod fields;
mod member;
mod normalize;
mod plan;

pub use fields::{AudienceFields, BoundAudienceFields, Consent, text_of};
pub use member::MemberIds;
pub use normalize::{GoogleAdsNormalizer, GoogleDataManagerNormalizer, MetaNormalizer};
pub use plan::{AudiencePlan, ChangePlan, PlannedMember, intent_memo, memo_ids, plan_batch};

/// What an audience column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IdentifierKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A first (given) name.
    FirstName,
    /// A last (family) name.
    LastName,
    /// A city.
    City,
    /// A state, province or region.
    Region,
    /// A postal code.
    PostalCode,
    /// A country (ISO 3166-1 alpha-2, any case).
    Country,
    /// A date of birth (`YYYY-MM-DD`).
    DateOfBirth,
    /// A gender (`m`/`f`, or `male`/`female`, any case).
    Gender,
    /// A mobile advertising id (IDFA / AAID), sent unhashed.
    MobileId,
    /// The advertiser's own id for the person, sent unhashed.
    ExternalId,
    /// The year of a date of birth, for platforms that match it apart (Meta `DOBY`); derived
    /// from the [`DateOfBirth`](Self::DateOfBirth) column by
    /// [`Normalizer::normalize_into`], never mapped to a column of its own.
    BirthYear,
    /// The month of a date of birth (Meta `DOBM`); derived like [`BirthYear`](Self::BirthYear).
    BirthMonth,
    /// The day of a date of birth (Meta `DOBD`); derived like [`BirthYear`](Self::BirthYear).
    BirthDay,
}

impl IdentifierKind {
    /// Every kind, in a fixed order.
    pub const ALL: [IdentifierKind; 15] = [
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::FirstName,
        IdentifierKind::LastName,
        IdentifierKind::City,
        IdentifierKind::Region,
        IdentifierKind::PostalCode,
        IdentifierKind::Country,
        IdentifierKind::DateOfBirth,
        IdentifierKind::Gender,
        IdentifierKind::MobileId,
        IdentifierKind::ExternalId,
        IdentifierKind::BirthYear,
        IdentifierKind::BirthMonth,
        IdentifierKind::BirthDay,
    ];

    /// The kind's name in errors and configuration (`email`, `phone`, `first_name`…).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::FirstName => "first_name",
            IdentifierKind::LastName => "last_name",
            IdentifierKind::City => "city",
            IdentifierKind::Region => "region",
            IdentifierKind::PostalCode => "postal_code",
            IdentifierKind::Country => "country",
            IdentifierKind::DateOfBirth => "date_of_birth",
            IdentifierKind::Gender => "gender",
            IdentifierKind::MobileId => "mobile_id",
            IdentifierKind::ExternalId => "external_id",
            IdentifierKind::BirthYear => "birth_year",
            IdentifierKind::BirthMonth => "birth_month",
            IdentifierKind::BirthDay => "birth_day",
        }
    }
}

impl std::fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identifier in the form a platform receives it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Normalized {
    /// A SHA-256 digest of the normalised value (or a digest the source already held).
    Hashed([u8; 32]),
    /// A value sent in clear (a country or postal code, a mobile or external id), normalised.
    Plain(String),
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: a plain identifier is personal data.
        match self {
            Normalized::Hashed(_) => f.write_str("Hashed(..)"),
            Normalized::Plain(value) => write!(f, "Plain({} bytes)", value.len()),
        }
    }
}

/// Lowercase hex digits of every byte value, two per byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    table
};

impl Normalized {
    /// Appends the identifier as the platforms receive it in a hex-encoded request: a digest
    /// as 64 lowercase hex digits, a plain value as it is.
    pub fn write_hex(&self, out: &mut String) {
        match self {
            Normalized::Hashed(digest) => {
                let mut text = [0u8; 64];
                for (pair, byte) in text.chunks_exact_mut(2).zip(digest) {
                    pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
                }
                match std::str::from_utf8(&text) {
                    Ok(hex) => out.push_str(hex),
                    // Never taken: the table holds ASCII digits only.
                    Err(_) => out.extend(text.iter().map(|&b| char::from(b))),
                }
            }
            Normalized::Plain(value) => out.push_str(value),
        }
    }

    /// [`write_hex`](Self::write_hex) into a new string.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        self.write_hex(&mut out);
        out
    }

    /// The SHA-256 digest, when the identifier is hashed.
    pub fn digest(&self) -> Option<&[u8; 32]> {
        match self {
            Normalized::Hashed(digest) => Some(digest),
            Normalized::Plain(_) => None,
        }
    }

    /// The value, when the identifier is sent in clear.
    pub fn plain(&self) -> Option<&str> {
        match self {
            Normalized::Hashed(_) => None,
            Normalized::Plain(value) => Some(value),
        }
    }
}

/// Why a value cannot be used as an identifier. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct InvalidIdentifier {
    /// The kind of identifier.
    pub kind: IdentifierKind,
    /// What is wrong and what is expected, without the value.
    pub reason: String,
}

/// Facts from the rest of a row that a value's normal form depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowContext<'a> {
    /// The row's country (ISO 3166-1 alpha-2, any case), if the row has one: a phone
    /// number without a country code takes its calling code.
    pub country: Option<&'a str>,
}

/// Turns raw values into the identifiers one platform matches.
pub trait Normalizer: Send + Sync {
    /// The platform's name, for errors and logs.
    fn platform(&self) -> &'static str;

    /// Normalises and (where the platform wants it) hashes `raw`. An empty or blank value
    /// is `Ok(None)`: the row simply lacks that identifier.
    fn normalize(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
    ) -> Result<Option<Normalized>, InvalidIdentifier>;

    /// Normalises `raw` into the identifiers it makes, appended to `out`: one (what
    /// [`normalize`](Self::normalize) gives, the default) or, for a value a platform matches
    /// in parts, several (Meta's date of birth: `DOBY`, `DOBM` and `DOBD`).
    ///
    /// # Errors
    /// [`InvalidIdentifier`] as [`normalize`](Self::normalize).
    fn normalize_into(
        &self,
        kind: IdentifierKind,
        raw: &str,
        row: &RowContext<'_>,
        out: &mut Vec<(IdentifierKind, Normalized)>,
    ) -> Result<(), InvalidIdentifier> {
        if let Some(id) = self.normalize(kind, raw, row)? {
            out.push((kind, id));
        }
        Ok(())
    }
}
