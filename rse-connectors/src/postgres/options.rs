//! How to connect to PostgreSQL beyond the URL: timeouts and TLS, as data (serde) with a
//! builder over it, and a `Debug` that shows no key or certificate bytes.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::connect::{DEFAULT_POOL_WAIT_TIMEOUT, SetupError};
use super::mode::SslMode;

/// PEM data given in memory or by file. In a configuration file: `{"file": "/path.pem"}`
/// or `{"pem": "-----BEGIN …"}`.
#[derive(Clone, Deserialize)]
#[serde(from = "PemData")]
#[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
pub(super) enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// [`Pem`] as written in a configuration.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum PemData {
    Pem(String),
    File(PathBuf),
}

impl From<PemData> for Pem {
    fn from(data: PemData) -> Self {
        match data {
            PemData::Pem(text) => Pem::Bytes(text.into_bytes()),
            PemData::File(path) => Pem::File(path),
        }
    }
}

impl Serialize for Pem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // PEM is ASCII: bytes that are not text were never a certificate or a key.
            Pem::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => serializer.serialize_newtype_variant("Pem", 0, "pem", text),
                Err(_) => Err(serde::ser::Error::custom("PEM data given in memory is not text")),
            },
            Pem::File(path) => serializer.serialize_newtype_variant("Pem", 1, "file", path),
        }
    }
}

#[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
impl Pem {
    pub(super) fn load(&self, what: &str) -> Result<(Vec<u8>, String), SetupError> {
        match self {
            Pem::Bytes(b) => Ok((b.clone(), format!("the {what} given in memory"))),
            Pem::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| SetupError::new(format!("cannot read the {what} file `{}`: {e}", path.display())))?;
                Ok((bytes, format!("the {what} file `{}`", path.display())))
            }
        }
    }
}

/// Never the bytes: a client key is a secret, and a certificate is noise in a log.
impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Bytes(b) => write!(f, "<{} bytes of PEM>", b.len()),
            Pem::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A client certificate chain and its private key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientCertificate {
    pub(super) chain: Pem,
    pub(super) key: Pem,
}

/// `Option<Duration>` as [`rse_core::config::duration`] writes a duration.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct Written(#[serde(with = "rse_core::config::duration")] Duration);

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => rse_core::config::duration::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Written>::deserialize(deserializer)?.map(|w| w.0))
    }
}

/// How to connect to PostgreSQL, beyond the URL: timeouts and TLS. Shared by
/// [`PostgresDestination`](crate::postgres::PostgresDestination) (through
/// [`PostgresDestinationOptions::with_connect_options`](crate::postgres::PostgresDestinationOptions::with_connect_options))
/// and [`PostgresStateStore`](crate::postgres::PostgresStateStore) (through
/// [`PostgresStateStoreOptions::with_connect_options`](crate::postgres::PostgresStateStoreOptions::with_connect_options)).
///
/// What is set here wins over the same setting in the URL.
///
/// # Trusted roots
/// A certificate is checked (under `require`, `verify-ca`, `verify-full`; see [`SslMode`])
/// against, in this order of precedence:
/// - [`with_root_certificates_pem`](Self::with_root_certificates_pem) or
///   [`with_root_certificates_file`](Self::with_root_certificates_file);
/// - `sslrootcert=<file>` in the URL (PEM), or `sslrootcert=system` for the operating
///   system's store;
/// - otherwise Mozilla's list of public CAs, compiled in (the `webpki-roots` crate), which
///   holds the CAs of providers that use public certificates but not the private CAs some
///   managed services sign with (download theirs and name it in `sslrootcert`).
///
/// Unlike libpq, rse does not read `~/.postgresql/root.crt`.
///
/// # Client certificates
/// [`with_client_certificate_pem`](Self::with_client_certificate_pem),
/// [`with_client_certificate_files`](Self::with_client_certificate_files), or
/// `sslcert=<file>&sslkey=<file>` in the URL: a PEM chain and an unencrypted PEM key.
///
/// # As data
/// The options read from and write to a configuration file (serde), every field optional,
/// an unknown one refused; durations as `"5s"`, PEM as `{"file": …}` or `{"pem": …}`.
/// `Debug` shows a path, never the bytes of a key or certificate.
///
/// ```no_run
/// use std::time::Duration;
/// use rse_connectors::postgres::{PostgresConnectOptions, SslMode};
///
/// let options = PostgresConnectOptions::new()
///     .with_ssl_mode(SslMode::VerifyFull)
///     .with_root_certificates_file("/etc/rse/db-ca.pem")
///     .with_connect_timeout(Duration::from_secs(5));
///
/// let same: PostgresConnectOptions = serde_json::from_str(
///     r#"{"ssl_mode": "verify-full", "root_certificates": {"file": "/etc/rse/db-ca.pem"}, "connect_timeout": "5s"}"#,
/// )?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConnectOptions {
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub(super) connect_timeout: Option<Duration>,
    #[serde(with = "rse_core::config::duration")]
    pub(super) pool_wait_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ssl_mode: Option<SslMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) root_certificates: Option<Pem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_certificate: Option<ClientCertificate>,
    #[serde(rename = "danger_accept_invalid_certificates")]
    pub(super) accept_invalid_certificates: bool,
}

impl Default for PostgresConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresConnectOptions {
    /// The defaults: the URL's `sslmode` (else `prefer`), a connect timeout of the URL's
    /// `connect_timeout` or [`DEFAULT_CONNECT_TIMEOUT`](super::DEFAULT_CONNECT_TIMEOUT), a pool wait of
    /// [`DEFAULT_POOL_WAIT_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            connect_timeout: None,
            pool_wait_timeout: DEFAULT_POOL_WAIT_TIMEOUT,
            ssl_mode: None,
            root_certificates: None,
            client_certificate: None,
            accept_invalid_certificates: false,
        }
    }

    /// How long opening one connection may take, TCP, TLS and authentication together
    /// (default: the URL's `connect_timeout`, else 10 s). A server that accepts and never
    /// answers fails after this long instead of hanging.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a caller waits for a free connection when all of the pool's are in use
    /// (default 30 s).
    pub fn with_pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// The TLS mode, over the URL's `sslmode` (see [`SslMode`]).
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----`
    /// blocks), over the URL's `sslrootcert`.
    pub fn with_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Trusts only the CA certificates in the PEM file at `path` (read when the pool is
    /// built), over the URL's `sslrootcert`.
    pub fn with_root_certificates_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates = Some(Pem::File(path.into()));
        self
    }

    /// Presents a client certificate: `chain` (PEM, the client's certificate first) and its
    /// unencrypted private `key` (PEM: PKCS#8, PKCS#1 or SEC1), over the URL's
    /// `sslcert`/`sslkey`. The key never appears in `Debug`.
    pub fn with_client_certificate_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_certificate =
            Some(ClientCertificate { chain: Pem::Bytes(chain.into()), key: Pem::Bytes(key.into()) });
        self
    }

    /// Presents the client certificate in the PEM files `chain` and `key` (read when the
    /// pool is built), over the URL's `sslcert`/`sslkey`.
    pub fn with_client_certificate_files(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate =
            Some(ClientCertificate { chain: Pem::File(chain.into()), key: Pem::File(key.into()) });
        self
    }

    /// Under `sslmode=require`, encrypts without checking the server's certificate at all
    /// (libpq's `require` without a root file). Anyone in the network path can then pose as
    /// the server and read every row: use it only for a server whose CA you cannot get, and
    /// prefer giving that CA. Refused with `verify-ca` and `verify-full`. Default off.
    pub fn with_danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.accept_invalid_certificates = accept;
        self
    }
}
