//! A secret string whose `Debug` and `Display` never show it, given inline or by reference.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A credential (an HMAC key, a bearer token, a header holding an API key): `Debug` and
/// `Display` print `***`, so a configuration can be logged whole.
///
/// In a configuration file a secret is written inline, as a string, or by reference, so
/// that the file itself holds none:
///
/// | written | the secret is |
/// |---|---|
/// | `"s3cret"` | the string |
/// | `{"env": "HOOK_SECRET"}` | the environment variable `HOOK_SECRET`, read when the configuration is read |
/// | `{"file": "/run/secrets/hook"}` | the file's contents without one trailing line break (as a mounted secret usually ends), read when the configuration is read |
///
/// A secret read by reference is written back as the same reference; one given inline is
/// written back inline — a serialized configuration holds every inline secret.
///
/// ```
/// # #[cfg(feature = "http")] {
/// use rse_connectors::Secret;
/// let inline: Secret = serde_json::from_str(r#""s3cret""#).unwrap();
/// assert_eq!((inline.expose(), format!("{inline:?}").as_str()), ("s3cret", r#""***""#));
///
/// let unset = serde_json::from_str::<Secret>(r#"{ "env": "RSE_DOC_NO_SUCH_VARIABLE" }"#).unwrap_err();
/// assert!(unset.to_string().contains("`RSE_DOC_NO_SUCH_VARIABLE`, which holds a secret, is not set"));
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: Origin,
}

/// Where a secret was read from.
#[derive(Clone, PartialEq, Eq)]
enum Origin {
    Inline,
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), origin: Origin::Inline }
    }

    /// The environment variable `name`, read now.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] naming the variable when it is not set, `InvalidData`
    /// when it is not Unicode.
    pub fn from_env(name: &str) -> io::Result<Self> {
        let value = std::env::var(name).map_err(|e| {
            let kind = match e {
                std::env::VarError::NotPresent => io::ErrorKind::NotFound,
                std::env::VarError::NotUnicode(_) => io::ErrorKind::InvalidData,
            };
            let problem = if kind == io::ErrorKind::NotFound { "is not set" } else { "is not Unicode" };
            io::Error::new(kind, format!("the environment variable `{name}`, which holds a secret, {problem}"))
        })?;
        Ok(Self { value, origin: Origin::Env(name.to_owned()) })
    }

    /// The contents of the file at `path`, read now, without one trailing `\n` or `\r\n`.
    ///
    /// # Errors
    /// The I/O error, its message naming the file (never its contents).
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let mut value = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read the secret file `{}`: {e}", path.display())))?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Ok(Self { value, origin: Origin::File(path.to_path_buf()) })
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Where it comes from is not secret, and says which one it is.
        match &self.origin {
            Origin::Inline => f.write_str("\"***\""),
            Origin::Env(name) => write!(f, "*** (env {name})"),
            Origin::File(path) => write!(f, "*** (file {})", path.display()),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(any(feature = "http", feature = "redis", feature = "nats", feature = "sqlite", feature = "postgres"))]
mod serde_impl {
    use std::fmt;
    use std::path::PathBuf;

    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Origin, Secret};

    impl Serialize for Secret {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match &self.origin {
                Origin::Inline => serializer.serialize_str(&self.value),
                Origin::Env(name) => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("env", name)?;
                    map.end()
                }
                Origin::File(path) => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("file", path)?;
                    map.end()
                }
            }
        }
    }

    impl<'de> Deserialize<'de> for Secret {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(SecretVisitor)
        }
    }

    struct SecretVisitor;

    impl<'de> Visitor<'de> for SecretVisitor {
        type Value = Secret;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a secret: a string, {"env": "VARIABLE"} or {"file": "/path"}"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
            Ok(Secret::new(v))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
            Ok(Secret::new(v))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
            let Some(kind) = map.next_key::<String>()? else {
                return Err(de::Error::custom(
                    r#"a secret reference names `env` or `file`, e.g. {"env": "HOOK_SECRET"}"#,
                ));
            };
            let secret = match kind.as_str() {
                "env" => Secret::from_env(&map.next_value::<String>()?),
                "file" => Secret::from_file(map.next_value::<PathBuf>()?),
                other => return Err(de::Error::unknown_field(other, &["env", "file"])),
            }
            .map_err(de::Error::custom)?;
            if let Some(extra) = map.next_key::<String>()? {
                return Err(de::Error::custom(format!(
                    "a secret reference has one entry, `{kind}`; `{extra}` is one too many"
                )));
            }
            Ok(secret)
        }
    }
}
