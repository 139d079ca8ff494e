//! Connection setup shared by the PostgreSQL destination and state store: the connection
//! string, TLS, and the pool with its timeouts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType, Timeouts};
use rse_core::BoxError;

pub use super::mode::SslMode;
use super::params::{self, SslParams};

/// How long connecting (TCP, TLS and authentication together) may take when neither the
/// options nor the URL's `connect_timeout` say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free connection of the pool by default.
pub const DEFAULT_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// PEM data given in memory or by file.
#[derive(Clone)]
#[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
enum Pem {
    Bytes(Vec<u8>),
    File(PathBuf),
}

#[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
impl Pem {
    fn load(&self, what: &str) -> Result<(Vec<u8>, String), SetupError> {
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

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Bytes(b) => write!(f, "<{} bytes of PEM>", b.len()),
            Pem::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How to connect to PostgreSQL, beyond the URL: timeouts and TLS. Shared by
/// [`PostgresDestination`](crate::postgres::PostgresDestination) (through
/// [`PostgresDestinationOptions::with_connect_options`](crate::postgres::PostgresDestinationOptions::with_connect_options))
/// and [`PostgresStateStore::connect_with`](crate::postgres::PostgresStateStore::connect_with).
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
/// ```no_run
/// use std::time::Duration;
/// use rse_connectors::postgres::{PostgresConnectOptions, SslMode};
///
/// let options = PostgresConnectOptions::new()
///     .with_ssl_mode(SslMode::VerifyFull)
///     .with_root_certificates_file("/etc/rse/db-ca.pem")
///     .with_connect_timeout(Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct PostgresConnectOptions {
    connect_timeout: Option<Duration>,
    pool_wait_timeout: Duration,
    ssl_mode: Option<SslMode>,
    root_certificates: Option<Pem>,
    client_certificate: Option<(Pem, Pem)>,
    accept_invalid_certificates: bool,
}

impl Default for PostgresConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresConnectOptions {
    /// The defaults: the URL's `sslmode` (else `prefer`), a connect timeout of the URL's
    /// `connect_timeout` or [`DEFAULT_CONNECT_TIMEOUT`], a pool wait of
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
        self.client_certificate = Some((Pem::Bytes(chain.into()), Pem::Bytes(key.into())));
        self
    }

    /// Presents the client certificate in the PEM files `chain` and `key` (read when the
    /// pool is built), over the URL's `sslcert`/`sslkey`.
    pub fn with_client_certificate_files(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((Pem::File(chain.into()), Pem::File(key.into())));
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

/// A connection setting that cannot work: the message says which and what to do.
#[derive(Debug)]
pub(crate) struct SetupError {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

impl SetupError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }
}

/// A pool and what it was built with, for messages.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) pool: Pool,
    /// `host:port/database`, for messages (never the user or password).
    pub(crate) target: String,
    pub(crate) ssl_mode: SslMode,
    pub(crate) connect_timeout: Duration,
    pub(crate) wait_timeout: Duration,
    /// The host name a certificate must carry under `verify-full`.
    #[cfg_attr(not(feature = "postgres-tls"), allow(dead_code))]
    pub(crate) host: String,
    /// The hosts, comma-separated, and the database named in the URL (empty when none).
    pub(crate) hosts: String,
    pub(crate) database: String,
}

/// Builds a pool of up to `max_size` connections to `url` (a `postgres://` URL or a
/// `key=value` string) under `options`. Connects lazily.
pub(crate) fn build_pool(
    url: &str,
    options: &PostgresConnectOptions,
    max_size: usize,
) -> Result<Connection, SetupError> {
    let (rest, ssl) = params::split(url).map_err(|m| SetupError::new(format!("the connection URL: {m}")))?;
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| SetupError {
        // The URL is not repeated: it may hold a password.
        message: format!(
            "the connection URL does not parse ({}); expected \
             postgres://user:password@host:port/database?sslmode=verify-full",
            with_causes(&e)
        ),
        source: Some(Box::new(e)),
    })?;
    let mode = match options.ssl_mode {
        Some(mode) => mode,
        None => ssl.mode.as_deref().map_or(Ok(SslMode::Prefer), SslMode::from_str).map_err(SetupError::new)?,
    };
    let connect_timeout =
        options.connect_timeout.or(config.get_connect_timeout().copied()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    config.connect_timeout(connect_timeout);
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = hosts.first().cloned().unwrap_or_default();
    let port = config.get_ports().first().map_or(String::new(), |p| format!(":{p}"));
    let hosts = hosts.join(",");
    let database = config.get_dbname().unwrap_or_default().to_owned();
    let target = format!("{hosts}{port}/{database}");
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = manager(config, mode, options, &ssl, manager_config)?;
    let pool = Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(options.pool_wait_timeout),
            // Creating is connecting: the whole of it, not only the TCP connect that
            // tokio-postgres's own timeout covers.
            create: Some(connect_timeout),
            // Fast recycling does no I/O; the bound is only a backstop.
            recycle: Some(connect_timeout),
        })
        .build()
        .map_err(|e| SetupError {
            message: format!("building the connection pool failed: {e}"),
            source: Some(Box::new(e)),
        })?;
    Ok(Connection {
        pool,
        target,
        ssl_mode: mode,
        connect_timeout,
        wait_timeout: options.pool_wait_timeout,
        host,
        hosts,
        database,
    })
}

#[cfg(feature = "postgres-tls")]
fn manager(
    config: tokio_postgres::Config,
    mode: SslMode,
    options: &PostgresConnectOptions,
    ssl: &SslParams,
    manager_config: ManagerConfig,
) -> Result<Manager, SetupError> {
    use super::tls::{Roots, TlsSetup, connector};
    if mode == SslMode::Disable {
        return Ok(Manager::from_config(config, tokio_postgres::NoTls, manager_config));
    }
    if options.accept_invalid_certificates && matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        return Err(SetupError::new(format!(
            "sslmode={mode} checks the server's certificate, and `with_danger_accept_invalid_certificates(true)` asks \
             not to: drop one of the two (verify-full with the server's CA in sslrootcert is the safe choice)"
        )));
    }
    let roots = match (&options.root_certificates, ssl.root_cert.as_deref()) {
        (Some(pem), _) => {
            let (pem, from) = pem.load("root certificate")?;
            Roots::Pem { pem, from }
        }
        (None, Some("system")) => Roots::System,
        (None, Some(path)) => {
            let (pem, from) = Pem::File(path.into()).load("root certificate (sslrootcert)")?;
            Roots::Pem { pem, from }
        }
        (None, None) => Roots::Public,
    };
    let client = match (&options.client_certificate, ssl.cert.as_deref(), ssl.key.as_deref()) {
        (Some((chain, key)), _, _) => Some((chain.load("client certificate")?.0, key.load("client key")?.0)),
        (None, Some(chain), Some(key)) => Some((
            Pem::File(chain.into()).load("client certificate (sslcert)")?.0,
            Pem::File(key.into()).load("client key (sslkey)")?.0,
        )),
        (None, None, None) => None,
        (None, _, _) => {
            return Err(SetupError::new(
                "the URL gives only one of sslcert and sslkey: a client certificate needs both",
            ));
        }
    };
    let tls = connector(TlsSetup { mode, roots, client, accept_invalid: options.accept_invalid_certificates })?;
    Ok(Manager::from_config(config, tls, manager_config))
}

#[cfg(not(feature = "postgres-tls"))]
fn manager(
    config: tokio_postgres::Config,
    mode: SslMode,
    options: &PostgresConnectOptions,
    ssl: &SslParams,
    manager_config: ManagerConfig,
) -> Result<Manager, SetupError> {
    let asks_for_tls = mode.requires_tls()
        || options.root_certificates.is_some()
        || options.client_certificate.is_some()
        || ssl.root_cert.is_some()
        || ssl.cert.is_some();
    if asks_for_tls && mode != SslMode::Disable {
        return Err(SetupError::new(format!(
            "sslmode={mode} (or a root or client certificate) needs TLS, and this build of rse-connectors has none: \
             enable its `postgres-tls` feature (`rse`'s `postgres-tls`)"
        )));
    }
    // `prefer` without TLS support is plaintext, as in libpq built without SSL.
    Ok(Manager::from_config(config, tokio_postgres::NoTls, manager_config))
}

/// `e` and its causes, `: `-separated (tokio-postgres prints only its own kind).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Why a connection could not be had.
pub(crate) enum Unconnected {
    /// Retrying may help (a timeout, all connections busy); the message says what happened.
    Transient(String),
    /// TLS failed in a way only a change of configuration fixes; the message says which.
    Tls(String, tokio_postgres::Error),
    /// The driver's error, for the caller's own classification.
    Backend(tokio_postgres::Error),
}

impl Connection {
    /// Explains a failure to get a connection from the pool.
    pub(crate) fn unconnected(&self, e: PoolError) -> Unconnected {
        match e {
            PoolError::Backend(e) => match self.tls_problem(&e) {
                Some(message) => Unconnected::Tls(message, e),
                None => Unconnected::Backend(e),
            },
            PoolError::Timeout(TimeoutType::Create) => Unconnected::Transient(format!(
                "connecting to {} timed out after {:?} (TCP, TLS and login together); check the host and port, and \
                 that the server answers (raise `PostgresConnectOptions::with_connect_timeout` for a slow link)",
                self.target, self.connect_timeout
            )),
            PoolError::Timeout(TimeoutType::Wait) => Unconnected::Transient(format!(
                "no connection to {} came free within {:?}: all of the pool's connections are in use; raise the pool \
                 size or `PostgresConnectOptions::with_pool_wait_timeout`",
                self.target, self.wait_timeout
            )),
            other => Unconnected::Transient(format!("the connection pool for {} failed: {other}", self.target)),
        }
    }

    /// A message for a TLS failure that only a change of configuration fixes, or `None`
    /// when `e` is not one.
    pub(crate) fn tls_problem(&self, e: &tokio_postgres::Error) -> Option<String> {
        let text = with_causes(e);
        if text.contains("server does not support TLS") {
            return Some(format!(
                "{} does not offer TLS, and sslmode={} refuses plaintext: turn on `ssl` on the server, or connect to one \
                 that has it (only on a network you trust, sslmode=prefer or disable accept plaintext)",
                self.target, self.ssl_mode
            ));
        }
        #[cfg(feature = "postgres-tls")]
        if let Some(r) = crate::tls::rustls_error(e) {
            return Some(self.explain_rustls(r));
        }
        if text.starts_with("error performing TLS handshake") && e.as_db_error().is_none() {
            // An I/O error mid-handshake (a reset) may pass; anything else is the setup.
            let io = std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>());
            if !io {
                return Some(format!("the TLS handshake with {} failed: {text}", self.target));
            }
        }
        None
    }

    #[cfg(feature = "postgres-tls")]
    fn explain_rustls(&self, e: &rustls::Error) -> String {
        use rustls::{AlertDescription, CertificateError};
        let target = &self.target;
        match e {
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => format!(
                "the TLS certificate of {target} is not issued for the host name `{}` ({e}): connect by a name the \
                 certificate lists, or use sslmode=verify-ca to check the CA only",
                self.host
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. } | CertificateError::NotValidYet,
            ) => format!(
                "the TLS certificate of {target} is expired or not yet valid ({e}): renew it on the server, or check \
                 this machine's clock"
            ),
            rustls::Error::InvalidCertificate(_) => format!(
                "the TLS certificate of {target} is not trusted ({e}): it is not signed by a CA rse trusts (public CAs \
                 unless sslrootcert says otherwise); give the CA that signed it with `sslrootcert=/path/to/ca.pem` in \
                 the URL or `PostgresConnectOptions::with_root_certificates_file`{}",
                if self.ssl_mode == SslMode::Require {
                    " (unlike libpq's, rse's sslmode=require checks the certificate's chain)"
                } else {
                    ""
                }
            ),
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::HandshakeFailure,
            ) => format!(
                "{target} refused the TLS handshake ({e}): if it asks for a client certificate, give one with \
                 sslcert/sslkey or `PostgresConnectOptions::with_client_certificate_files`, signed by a CA the server \
                 trusts"
            ),
            other => format!("the TLS handshake with {target} failed ({other}) under sslmode={}", self.ssl_mode),
        }
    }
}
