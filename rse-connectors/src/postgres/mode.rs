//! The TLS modes of a PostgreSQL connection (`sslmode`) and what each checks in rse.

use std::fmt;
use std::str::FromStr;

/// Whether and how a connection uses TLS: the `sslmode` of the connection URL, or
/// [`PostgresConnectOptions::with_ssl_mode`](super::PostgresConnectOptions::with_ssl_mode).
///
/// The names are libpq's; what they mean in rse (rustls, certificates checked against the
/// roots described on [`PostgresConnectOptions`](super::PostgresConnectOptions)):
///
/// | mode | encrypted | server's certificate checked |
/// |---|---|---|
/// | `disable` | never | — |
/// | `prefer` (the default) | when the server offers TLS, else plaintext | **no**: anyone in the path can pose as the server |
/// | `require` | always: a server without TLS is refused | **yes**, the chain to a trusted root (as `verify-ca`), unless [`with_danger_accept_invalid_certificates`](super::PostgresConnectOptions::with_danger_accept_invalid_certificates) |
/// | `verify-ca` | always | the chain |
/// | `verify-full` | always | the chain **and** that it names the host connected to |
///
/// Use `verify-full` for any server reached over a network you do not control. `require`
/// checks more than libpq's (which, without a root certificate file, checks nothing): a
/// managed server whose certificate comes from its provider's own CA needs that CA in
/// `sslrootcert`. `prefer` is libpq's default and rse's when the URL says nothing; it keeps
/// a passive listener from reading rows, nothing more. libpq's `allow` is not supported.
///
/// Every mode but `disable` needs the `postgres-tls` feature; without it `prefer`
/// connects in plaintext, as libpq built without SSL does, and the others are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS without checking the server's certificate when the server offers it, plaintext
    /// otherwise.
    #[default]
    Prefer,
    /// TLS, the certificate's chain checked (unless the host opts out).
    Require,
    /// TLS, the certificate's chain checked.
    VerifyCa,
    /// TLS, the certificate's chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The name in a connection URL (`verify-full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection in this mode is refused unless it is encrypted.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In a configuration file: the name in a connection URL (`"verify-full"`).
impl serde::Serialize for SslMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SslMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => {
                Err("sslmode=allow is not supported; use prefer (TLS when the server offers it) or disable".into())
            }
            other => Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full (verify-full is \
                 recommended)"
            )),
        }
    }
}
