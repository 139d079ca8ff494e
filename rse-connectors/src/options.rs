//! Serde forms the connectors' options share.

/// `#[serde(default, with = "crate::options::option_duration")]` for an
/// `Option<Duration>`: `null` or absent for none, otherwise as `rse_core::config::duration`
/// writes a duration (`"30s"`).
pub(crate) mod option_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Text(#[serde(with = "rse_core::config::duration")] Duration);

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => rse_core::config::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
    }
}
