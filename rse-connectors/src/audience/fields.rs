//! Which columns of a sync's rows hold which identifiers, and the members' consent.

use std::borrow::Cow;

use rse_core::{DestinationError, Record, Schema, Value};
use serde::{Deserialize, Serialize};

use super::IdentifierKind;

/// Which source columns hold a member's identifiers and consent. Every identifier column is
/// optional, but at least one must be named.
///
/// ```
/// # use rse_connectors::audience::AudienceFields;
/// let fields = AudienceFields::new().email("email").phone("phone").country("country")
///     .default_country("US").ad_user_data_consent("consent_ad_user_data");
/// let parsed: AudienceFields = serde_json::from_str(
///     r#"{"email": "email", "phone": "phone", "country": "country", "default_country": "US",
///         "ad_user_data_consent": "consent_ad_user_data"}"#).unwrap();
/// assert_eq!(fields, parsed);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AudienceFields {
    /// Email address.
    pub email: Option<String>,
    /// Phone number (E.164, or national with the row's country).
    pub phone: Option<String>,
    /// First (given) name.
    pub first_name: Option<String>,
    /// Last (family) name.
    pub last_name: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State, province or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Country (ISO 3166-1 alpha-2); also the country of the row's phone number.
    pub country: Option<String>,
    /// Date of birth (a date column, or `YYYY-MM-DD` text).
    pub date_of_birth: Option<String>,
    /// Gender.
    pub gender: Option<String>,
    /// Mobile advertising id (IDFA / AAID), sent unhashed.
    pub mobile_id: Option<String>,
    /// The advertiser's own id for the person, sent unhashed.
    pub external_id: Option<String>,
    /// The country of rows whose `country` column is empty or not mapped (ISO 3166-1
    /// alpha-2): what a phone number without a country code is read in.
    pub default_country: Option<String>,
    /// Consent to the use of the member's data for advertising (Google `adUserData`): a
    /// boolean, or text such as `granted` / `denied`.
    pub ad_user_data_consent: Option<String>,
    /// Consent to personalised advertising (Google `adPersonalization`).
    pub ad_personalization_consent: Option<String>,
    /// Consent to be in the audience at all (any platform), for a host that keeps one flag.
    pub consent: Option<String>,
}

macro_rules! setters {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Sets [`", stringify!($name), "`](Self::", stringify!($name), ").")]
            pub fn $name(mut self, column: impl Into<String>) -> Self {
                self.$name = Some(column.into());
                self
            }
        )*
    };
}

impl AudienceFields {
    /// No column named yet.
    pub fn new() -> Self {
        Self::default()
    }

    setters!(
        email,
        phone,
        first_name,
        last_name,
        city,
        region,
        postal_code,
        country,
        date_of_birth,
        gender,
        mobile_id,
        external_id,
        default_country,
        ad_user_data_consent,
        ad_personalization_consent,
        consent,
    );

    /// The column of `kind`, if one is named.
    pub fn column(&self, kind: IdentifierKind) -> Option<&str> {
        match kind {
            IdentifierKind::Email => self.email.as_deref(),
            IdentifierKind::Phone => self.phone.as_deref(),
            IdentifierKind::FirstName => self.first_name.as_deref(),
            IdentifierKind::LastName => self.last_name.as_deref(),
            IdentifierKind::City => self.city.as_deref(),
            IdentifierKind::Region => self.region.as_deref(),
            IdentifierKind::PostalCode => self.postal_code.as_deref(),
            IdentifierKind::Country => self.country.as_deref(),
            IdentifierKind::DateOfBirth => self.date_of_birth.as_deref(),
            IdentifierKind::Gender => self.gender.as_deref(),
            IdentifierKind::MobileId => self.mobile_id.as_deref(),
            IdentifierKind::ExternalId => self.external_id.as_deref(),
            // Derived from `date_of_birth`.
            IdentifierKind::BirthYear | IdentifierKind::BirthMonth | IdentifierKind::BirthDay => None,
        }
    }

    /// The fields resolved against the sync's schema (after transforms).
    ///
    /// # Errors
    /// A `Fatal` [`DestinationError`] naming the setting and the column when a named column
    /// is not in the schema, or when no identifier column is named.
    pub fn bind(&self, schema: &Schema) -> Result<BoundAudienceFields, DestinationError> {
        let find = |setting: &str, column: &str| {
            schema.index_of(column).ok_or_else(|| {
                DestinationError::fatal(format!(
                    "audience field `{setting}` names the column `{column}`, which the sync's rows do not have \
                     (columns: {}); name one of them, or leave `{setting}` out",
                    schema.field_names()
                ))
            })
        };
        let mut columns = Vec::new();
        for kind in IdentifierKind::ALL {
            if let Some(column) = self.column(kind) {
                columns.push((kind, find(kind.as_str(), column)?));
            }
        }
        if columns.is_empty() {
            return Err(DestinationError::fatal(
                "the audience names no identifier column: set at least one of `email`, `phone`, `first_name` with \
                 `last_name`, `mobile_id` or `external_id` to the column that holds it",
            ));
        }
        let default_country = match self.default_country.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(code) if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(code.to_ascii_uppercase())
            }
            Some(_) => {
                return Err(DestinationError::fatal(
                    "audience field `default_country` must be an ISO 3166-1 alpha-2 code such as `US` or `DE`",
                ));
            }
        };
        let consent = |setting: &str, column: &Option<String>| column.as_deref().map(|c| find(setting, c)).transpose();
        Ok(BoundAudienceFields {
            country: columns.iter().find(|(k, _)| *k == IdentifierKind::Country).map(|(_, i)| *i),
            columns,
            default_country,
            ad_user_data: consent("ad_user_data_consent", &self.ad_user_data_consent)?,
            ad_personalization: consent("ad_personalization_consent", &self.ad_personalization_consent)?,
            consent: consent("consent", &self.consent)?,
        })
    }
}

/// [`AudienceFields`] resolved to column positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAudienceFields {
    columns: Vec<(IdentifierKind, usize)>,
    country: Option<usize>,
    default_country: Option<String>,
    ad_user_data: Option<usize>,
    ad_personalization: Option<usize>,
    consent: Option<usize>,
}

impl BoundAudienceFields {
    /// The identifier kinds mapped, with their column positions, in kind order.
    pub fn columns(&self) -> &[(IdentifierKind, usize)] {
        &self.columns
    }

    /// Whether `kind` is mapped.
    pub fn maps(&self, kind: IdentifierKind) -> bool {
        self.columns.iter().any(|(k, _)| *k == kind)
    }

    /// The row's country: its `country` column when filled, else the default country.
    pub fn country_of<'r>(&'r self, record: &'r Record) -> Option<Cow<'r, str>> {
        let own = self.country.and_then(|i| record.get(i)).and_then(|v| text_of(v).ok().flatten());
        match own {
            Some(text) if !text.trim().is_empty() => Some(text),
            _ => self.default_country.as_deref().map(Cow::Borrowed),
        }
    }

    /// The member's consent, from the consent columns that are mapped.
    pub fn consent_of(&self, record: &Record) -> Consent {
        let read = |column: Option<usize>| column.map(|i| record.get(i).and_then(granted));
        Consent {
            ad_user_data: read(self.ad_user_data),
            ad_personalization: read(self.ad_personalization),
            consent: read(self.consent),
        }
    }
}

/// A member's consent, per consent column: `None` when the column is not mapped,
/// `Some(None)` when the row's value is empty or not understood, else whether it is granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    /// Consent to the use of data for advertising (Google `adUserData`).
    pub ad_user_data: Option<Option<bool>>,
    /// Consent to personalised advertising (Google `adPersonalization`).
    pub ad_personalization: Option<Option<bool>>,
    /// Consent to be in the audience at all.
    pub consent: Option<Option<bool>>,
}

impl Consent {
    /// Whether every mapped consent is granted: a member is sent only then. An empty or
    /// unreadable value counts as not granted.
    pub fn allows_sending(&self) -> bool {
        [self.ad_user_data, self.ad_personalization, self.consent].into_iter().flatten().all(|v| v == Some(true))
    }
}

/// Whether a consent value grants: booleans, 1/0, and the words platforms and consent tools
/// use (`granted`, `consent_granted`, `yes`, `true`, `opt_in`…; their opposites deny).
fn granted(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Int(1) => Some(true),
        Value::Int(0) => Some(false),
        Value::String(text) => {
            let word = text.trim().to_ascii_lowercase().replace(['-', ' '], "_");
            match word.as_str() {
                "granted" | "consent_granted" | "yes" | "y" | "true" | "t" | "1" | "opt_in" | "opted_in" => Some(true),
                "denied" | "consent_denied" | "no" | "n" | "false" | "f" | "0" | "opt_out" | "opted_out" => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A value as identifier text: text as it is, whole numbers and decimals printed, dates as
/// `YYYY-MM-DD`; `Ok(None)` for SQL `NULL`.
///
/// # Errors
/// What the value is, when it cannot be an identifier (a float, bytes, JSON, a list…),
/// never the value itself.
pub fn text_of(value: &Value) -> Result<Option<Cow<'_, str>>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(Cow::Borrowed(text))),
        Value::Int(n) => Ok(Some(Cow::Owned(n.to_string()))),
        Value::Decimal(d) => Ok(Some(Cow::Owned(d.to_string()))),
        Value::Date(days) => Ok(Some(Cow::Owned(rse_core::time::format_date(*days)))),
        Value::Float(_) => Err("a floating-point number (store identifiers as text)"),
        Value::Bool(_) => Err("a boolean"),
        Value::Bytes(_) => Err("bytes (store identifiers as text)"),
        Value::Timestamp(_) => Err("a timestamp (use a date or text)"),
        Value::Json(_) => Err("a JSON document"),
        Value::List(_) => Err("a list"),
        _ => Err("a value of an unsupported type"),
    }
}

#[cfg(test)]
mod tests {
    use rse_core::{DataType, Field};

    use super::*;

    fn schema() -> Schema {
        Schema::new(
            vec![
                Field::required("id", DataType::Int),
                Field::new("mail", DataType::String),
                Field::new("cc", DataType::String),
                Field::new("ok", DataType::Bool),
            ],
            &["id"],
        )
        .unwrap()
    }

    #[test]
    fn binding_names_the_setting_and_the_missing_column() {
        let err = AudienceFields::new().email("email").bind(&schema()).unwrap_err().to_string();
        assert!(err.contains("`email`") && err.contains("columns: id, mail, cc, ok"), "{err}");
        let err = AudienceFields::new().consent("ok").bind(&schema()).unwrap_err().to_string();
        assert!(err.contains("no identifier column"), "{err}");
        let err = AudienceFields::new().email("mail").default_country("USA").bind(&schema()).unwrap_err().to_string();
        assert!(err.contains("default_country"), "{err}");
        let err = AudienceFields::new().email("mail").consent("agreed").bind(&schema()).unwrap_err().to_string();
        assert!(err.contains("`consent`") && err.contains("`agreed`"), "{err}");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let err = serde_json::from_str::<AudienceFields>(r#"{"emial": "mail"}"#).unwrap_err().to_string();
        assert!(err.contains("emial"), "{err}");
    }

    #[test]
    fn the_rows_country_falls_back_to_the_default() {
        let bound = AudienceFields::new().email("mail").country("cc").default_country("de").bind(&schema()).unwrap();
        let row = |cc: Value| Record::new(vec![Value::Int(1), Value::String("a@b.c".into()), cc, Value::Null]);
        assert_eq!(bound.country_of(&row(Value::String("FR".into()))).as_deref(), Some("FR"));
        assert_eq!(bound.country_of(&row(Value::Null)).as_deref(), Some("DE"));
        assert_eq!(bound.country_of(&row(Value::String(" ".into()))).as_deref(), Some("DE"));
    }

    #[test]
    fn consent_is_sent_only_when_every_mapped_column_grants() {
        let bound = AudienceFields::new().email("mail").ad_user_data_consent("ok").bind(&schema()).unwrap();
        let row = |ok: Value| Record::new(vec![Value::Int(1), Value::Null, Value::Null, ok]);
        assert!(bound.consent_of(&row(Value::Bool(true))).allows_sending());
        assert!(!bound.consent_of(&row(Value::Bool(false))).allows_sending());
        assert!(!bound.consent_of(&row(Value::Null)).allows_sending(), "unknown consent is not consent");
        let unmapped = AudienceFields::new().email("mail").bind(&schema()).unwrap();
        assert!(unmapped.consent_of(&row(Value::Null)).allows_sending());
        for (word, expected) in
            [("GRANTED", Some(true)), ("consent_denied", Some(false)), ("Opt-In", Some(true)), ("maybe", None)]
        {
            assert_eq!(granted(&Value::String(word.into())), expected, "{word}");
        }
    }
}
