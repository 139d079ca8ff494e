//! Connection setup shared by the PostgreSQL destination and state store: the connection
//! string, TLS, and the pool with its timeouts.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType, Timeouts};
use rse_core::BoxError;

pub use super::mode::SslMode;
#[cfg(feature = "postgres-tls")]
use super::options::Pem;
pub use super::options::PostgresConnectOptions;
use super::params::{self, SslParams};

/// How long connecting (TCP, TLS and authentication together) may take when neither the
/// options nor the URL's `connect_timeout` say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free connection of the pool by default.
pub const DEFAULT_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The TLS mode, unknown for a host's own pool.
    pub(crate) ssl_mode: Option<SslMode>,
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
        ssl_mode: Some(mode),
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
        (Some(given), _, _) => Some((given.chain.load("client certificate")?.0, given.key.load("client key")?.0)),
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

/// The server a connection is on, for messages: its address (or a socket), port and database.
const SERVER: &str = "SELECT coalesce(host(inet_server_addr()), 'a local socket'), coalesce(inet_server_port(), 0), \
     current_database()::text";

impl Connection {
    /// A host's own pool. A pool does not say where it connects, so the server is asked (its
    /// address, port and database, for messages and names); that is the first connection.
    ///
    /// # Errors
    /// Why no connection could be had, or the question failed.
    pub(crate) async fn adopt(pool: Pool) -> Result<Connection, Unconnected> {
        let timeouts = pool.timeouts();
        let mut connection = Connection {
            pool,
            target: "the host's connection pool".to_owned(),
            ssl_mode: None,
            // A timeout the pool does not have never fires: the values are for messages.
            connect_timeout: timeouts.create.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            wait_timeout: timeouts.wait.unwrap_or(DEFAULT_POOL_WAIT_TIMEOUT),
            host: String::new(),
            hosts: String::new(),
            database: String::new(),
        };
        let client = connection.pool.get().await.map_err(|e| connection.unconnected(e))?;
        let row = client.query_one(SERVER, &[]).await.map_err(Unconnected::Backend)?;
        let host: String = row.try_get(0).map_err(Unconnected::Backend)?;
        let port: i32 = row.try_get(1).map_err(Unconnected::Backend)?;
        let database: String = row.try_get(2).map_err(Unconnected::Backend)?;
        drop(client);
        connection.target = format!("{host}:{port}/{database}");
        connection.hosts = host.clone();
        connection.host = host;
        connection.database = database;
        Ok(connection)
    }

    /// The TLS mode, as messages name it.
    fn mode_text(&self) -> String {
        self.ssl_mode.map_or_else(|| "the pool's TLS settings".to_owned(), |mode| format!("sslmode={mode}"))
    }

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
                "{} does not offer TLS, and {} refuses plaintext: turn on `ssl` on the server, or connect to one \
                 that has it (only on a network you trust, sslmode=prefer or disable accept plaintext)",
                self.target,
                self.mode_text()
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
                if self.ssl_mode == Some(SslMode::Require) {
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
            other => format!("the TLS handshake with {target} failed ({other}) under {}", self.mode_text()),
        }
    }
}
