//! Helpers for describing syncs as data: durations written the way people write them.
//!
//! Options implement serde's `Serialize`/`Deserialize` so that a whole sync can live in a
//! configuration file. A duration there reads `"200ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`
//! or a plain number of seconds (`1.5`); it is written back in the largest whole unit.

/// `#[serde(with = "rse_core::config::duration_opt", default)]` for an optional
/// [`Duration`](std::time::Duration) field: absent or `null` is `None`, otherwise as
/// [`duration`].
pub mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some(d)` as [`duration::serialize`](super::duration::serialize) does, `None` as null.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads null as `None`, anything else as [`duration::deserialize`](super::duration::deserialize) does.
    ///
    /// # Errors
    /// As [`duration::deserialize`](super::duration::deserialize).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }
}

/// `#[serde(with = "rse_core::config::duration")]` for a [`Duration`](std::time::Duration)
/// field.
pub mod duration {
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes `d` as text in the largest unit that divides it (`"5m"`, `"200ms"`).
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*d))
    }

    /// Reads a duration from text with a unit or from a number of seconds.
    ///
    /// # Errors
    /// Text that is not a number followed by one of `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, or
    /// a negative or non-finite number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as \"200ms\", \"30s\", \"5m\", \"2h\", \"1d\", or a number of seconds")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_secs).map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| E::custom("a duration must be a finite, non-negative number"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).ok_or_else(|| {
                E::custom(format!(
                    "`{v}` is not a duration: write a number and a unit (ns, us, ms, s, m, h, d), e.g. \"30s\""
                ))
            })
        }
    }

    /// Parses `"30s"`-style text.
    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, unit) = text.split_at(split);
        let n: f64 = number.parse().ok()?;
        let seconds_per = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        Duration::try_from_secs_f64(n * seconds_per).ok()
    }

    /// Formats a duration in the largest unit that divides it.
    pub fn format(d: Duration) -> String {
        let nanos = d.as_nanos();
        let units: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        for (size, unit) in units {
            if nanos >= size && nanos.is_multiple_of(size) {
                return format!("{}{unit}", nanos / size);
            }
        }
        "0s".to_owned()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn durations_read_and_write_as_people_write_them() {
            assert_eq!(parse("200ms"), Some(Duration::from_millis(200)));
            assert_eq!(parse("1.5s"), Some(Duration::from_millis(1_500)));
            assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
            assert_eq!(parse("2 h"), Some(Duration::from_secs(7_200)));
            assert_eq!(parse("soon"), None);
            assert_eq!(parse("5 parsecs"), None);
            assert_eq!(format(Duration::from_secs(300)), "5m");
            assert_eq!(format(Duration::from_millis(1_500)), "1500ms");
            assert_eq!(format(Duration::ZERO), "0s");
            for d in [Duration::from_nanos(7), Duration::from_secs(86_400 * 3), Duration::from_millis(250)] {
                assert_eq!(parse(&format(d)), Some(d));
            }
        }
    }
}
