//! `RedisDestination`: one hash per key for online serving (feature caches, personalisation).
//!
//! Each record becomes the hash at its key template (e.g. `features:{user_id}`), one hash
//! field per schema field in its [`value_to_text`] form
//! (decimals exact, bytes as base64, timestamps RFC 3339); a null value has no field.
//!
//! # rse removes only what it wrote
//! A hash may be shared: another writer can keep its own fields under the same key. An
//! upsert therefore never replaces the whole hash. It sets the record's non-null fields and
//! removes exactly the fields rse wrote last time and no longer writes — a field dropped
//! from the mapping (a column removed from the model must not leave its personal data
//! behind) and a field whose value is now null — and leaves every other field alone, even
//! one named like a field rse once wrote and no longer does.
//!
//! To know which fields it wrote, rse keeps their names in the hash itself, in the field
//! `_rse_fields`, as a JSON array of strings in schema order (e.g. `["id","tier"]`). JSON
//! because a field name may hold any character, so no delimiter would be unambiguous; the
//! list lives in the hash rather than beside it so that it expires, moves (Redis Cluster
//! slot) and is deleted with the hash, and readers that `HGETALL` the hash see it too. A
//! schema with a field of that name is refused.
//!
//! A hash without a readable list — written by a version of rse before the list existed,
//! or whose list another writer overwrote with something that is not a JSON array — cannot
//! tell rse's old fields from other writers': the write removes only the current schema's
//! fields that are null (as earlier versions did) and keeps everything else, including a
//! field dropped from the mapping before this version. From that write on the hash has its
//! list.
//!
//! Each upsert is one server-side script per key (read the list, `HDEL` what rse no longer
//! writes, `HSET` the fields and the new list, and `EXPIRE` when a TTL is set, so the TTL is
//! set again on every write; without a TTL the key's expiry is left as it is), so a reader
//! never sees the hash half written. A key that holds something other than a hash is
//! refused (`WRONGTYPE`), not replaced. A delete is `DEL` of the whole key, other writers'
//! fields included: the hash exists for the record, and the record is gone. Every command
//! of a batch goes in one pipelined round trip. (The script is Lua, run with `EVALSHA`: a
//! server that forbids scripts refuses the writes with `NOPERM`, reported as
//! [`DestinationError::Unauthorized`].)
//!
//! With [`RedisDestinationOptions::with_atomic`] (the default) the batch is wrapped in
//! `MULTI`/`EXEC`: readers see all of it or none of it. Without it, each key's commands
//! succeed or fail on their own and failures come back per key.
//!
//! Writes are plain overwrites, so a re-sent batch leaves the same hashes: safe to retry.
//!
//! # Reading back
//! The hashes read back for reconciliation ([`Destination::read_back`], used by
//! `SyncJob::verify`): the fields rse listed in `_rse_fields`, each from its text form, as
//! the exact value written. Keys are found by `SCAN` on the key template, one full scan per
//! page of keys (Redis keeps no order to page through).
//!
//! # Keys
//! Key values are escaped where the template inserts them, so that two different keys
//! never share a Redis key: `%`, `:`, `{` and `}` — and the first character of any literal
//! text between two key placeholders, such as `-` in `{tenant}-{user}` — are written as
//! `%` and two upper-case hex digits per UTF-8 byte (`a:b` becomes `a%3Ab`). `{sync_id}` is
//! inserted as it is. A value without those characters (digits, letters, `-`, `_`, `.`,
//! `@`, …) is inserted unchanged, so keys written before this escaping existed stay where
//! they are; only keys whose values held such a character move (they were the ones that
//! could collide). A template that puts two key placeholders side by side, or separates
//! them only by text starting with a letter, a digit or `%`, cannot keep keys apart and is
//! refused.
//!
//! Braces are escaped because Redis Cluster hashes only the `{…}` part of a key when there
//! is one: a value with braces would otherwise choose its key's slot.
//!
//! # TLS
//! A `rediss://` URL connects with TLS (feature `redis-tls`: rustls with ring) and always
//! checks the server's certificate chain and host name; the `#insecure` suffix some
//! clients accept is refused. The trusted roots are Mozilla's public CAs, compiled in,
//! unless [`RedisDestinationOptions::with_root_certificates_pem`] (or `_file`) names the CA
//! that signed the server's certificate; a client certificate goes with
//! [`RedisDestinationOptions::with_client_certificate_pem`].

use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RetryMethod};
use rse_core::{
    ChangeBatch, ChangeOutcome, Destination, DestinationCapabilities, DestinationError, Op, ReadBack, Schema, Value,
    WriteOutcome, WriteOutcomes,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::template::{TemplatePart, fill_template, parse_template};

mod read_back;
use crate::encode::value_to_text;

/// The hash field listing the fields rse wrote last (see the module docs).
const FIELDS_LIST: &str = "_rse_fields";

/// Writes a record into the hash at `KEYS[1]`, removing only the fields rse wrote before
/// and no longer writes. `ARGV`: the TTL in seconds (0: leave the expiry as it is), the
/// name of the list field, the new list (JSON), the count `n` of the schema's null fields,
/// those `n` names (removed instead when the hash has no readable list), then the
/// field/value pairs. One script, so the write is atomic without `MULTI`; it refuses a key
/// of another type as `HSET` would.
const WRITE_HASH: &str = "local key = KEYS[1]
local kind = redis.call('TYPE', key).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE the key holds a ' .. kind .. ', not a hash')
end
local first = 5 + tonumber(ARGV[4])
local written = {}
for i = first, #ARGV, 2 do
  written[ARGV[i]] = true
end
local listed = redis.call('HGET', key, ARGV[2])
local before = nil
if listed and string.find(listed, '^%s*%[') then
  local ok, names = pcall(cjson.decode, listed)
  if ok and type(names) == 'table' then
    before = names
  end
end
if before then
  for _, name in ipairs(before) do
    if type(name) == 'string' and not written[name] and name ~= ARGV[2] then
      redis.call('HDEL', key, name)
    end
  end
elseif kind == 'hash' then
  for i = 5, first - 1 do
    redis.call('HDEL', key, ARGV[i])
  end
end
for i = first, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', key, ARGV[2], ARGV[3])
if ARGV[1] ~= '0' then
  redis.call('EXPIRE', key, ARGV[1])
end
return 1
";

/// Options of a [`RedisDestination`], built with `with_*` methods from [`new`](Self::new)
/// or read from a configuration file.
///
/// In a file only `key_template` is required; every other field takes the default `new`
/// gives it, an unknown field is refused, and the TTL reads as `"30s"`, `"1d"`.
/// Certificates are PEM given inline or by file, `{"pem": "-----BEGIN …"}` or
/// `{"file": "/etc/rse/ca.pem"}`; `Debug` never shows PEM contents.
///
/// ```
/// use rse_connectors::RedisDestinationOptions;
/// let options: RedisDestinationOptions = serde_json::from_str(
///     r#"{
///         "key_template": "features:{user_id}",
///         "ttl": "1d",
///         "client_certificate": { "chain": { "file": "/etc/rse/client.pem" }, "key": { "file": "/etc/rse/client.key" } }
///     }"#,
/// )?;
/// assert_eq!(options, RedisDestinationOptions::new("features:{user_id}")
///     .with_ttl(std::time::Duration::from_secs(86_400))
///     .with_client_certificate_files("/etc/rse/client.pem", "/etc/rse/client.key"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisDestinationOptions {
    key_template: String,
    #[serde(default, with = "crate::options::option_duration", skip_serializing_if = "Option::is_none")]
    ttl: Option<Duration>,
    #[serde(default = "yes")]
    atomic: bool,
    #[serde(default = "default_max_batch_rows")]
    max_batch_rows: usize,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root_certificates: Option<Pem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_certificate: Option<ClientCertificate>,
}

fn yes() -> bool {
    true
}

fn default_max_batch_rows() -> usize {
    1_000
}

fn default_max_concurrency() -> usize {
    4
}

/// PEM data given in memory or by file; `Debug` shows no contents.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Pem {
    /// PEM text (it is ASCII).
    #[serde(rename = "pem", with = "pem_text")]
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Bytes(b) => write!(f, "<{} bytes of PEM>", b.len()),
            Pem::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// PEM bytes as text in configuration.
mod pem_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(pem: &[u8], s: S) -> Result<S::Ok, S::Error> {
        // PEM is ASCII; anything else in it is unusable either way.
        s.serialize_str(&String::from_utf8_lossy(pem))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

/// A client certificate chain and its unencrypted private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientCertificate {
    chain: Pem,
    key: Pem,
}

impl RedisDestinationOptions {
    /// Hashes at `key_template`: `{column}` is replaced by that key column's value (text
    /// form) and `{sync_id}` by the sync's id, e.g. `"features:{user_id}"`.
    ///
    /// Key values are escaped where they are inserted (`:` as `%3A`, …) so that distinct
    /// keys get distinct Redis keys; simple values are inserted unchanged. See the module
    /// docs.
    pub fn new(key_template: impl Into<String>) -> Self {
        Self {
            key_template: key_template.into(),
            ttl: None,
            atomic: true,
            max_batch_rows: default_max_batch_rows(),
            max_concurrency: default_max_concurrency(),
            root_certificates: None,
            client_certificate: None,
        }
    }

    /// Over `rediss://`, trusts only the CA certificates in `pem` (PEM blocks) instead of
    /// the public CAs.
    pub fn with_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(Pem::Bytes(pem.into()));
        self
    }

    /// Over `rediss://`, trusts only the CA certificates in the PEM file at `path` (read
    /// when connecting) instead of the public CAs.
    pub fn with_root_certificates_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates = Some(Pem::File(path.into()));
        self
    }

    /// Over `rediss://`, presents a client certificate: `chain` and its unencrypted
    /// private `key`, both PEM. The key never appears in `Debug`.
    pub fn with_client_certificate_pem(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_certificate =
            Some(ClientCertificate { chain: Pem::Bytes(chain.into()), key: Pem::Bytes(key.into()) });
        self
    }

    /// Over `rediss://`, presents the client certificate in the PEM files `chain` and `key`
    /// (unencrypted), read when connecting.
    pub fn with_client_certificate_files(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate =
            Some(ClientCertificate { chain: Pem::File(chain.into()), key: Pem::File(key.into()) });
        self
    }

    /// Every written hash expires `ttl` after its last write.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Whether a batch is applied atomically with `MULTI`/`EXEC` (default `true`); without
    /// it, failures are reported per key.
    pub fn with_atomic(mut self, atomic: bool) -> Self {
        self.atomic = atomic;
        self
    }

    /// The most changes per write (default 1,000).
    pub fn with_max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// The most writes at once (default 4).
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
}

/// Writes one hash per key; see the module docs.
pub struct RedisDestination {
    name: String,
    options: RedisDestinationOptions,
    connection: ConnectionManager,
    /// The SHA-1 of [`WRITE_HASH`], as the server computed it when first loading it.
    script_sha: tokio::sync::OnceCell<String>,
}

impl fmt::Debug for RedisDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDestination")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisDestination {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS:
    /// see the module docs).
    ///
    /// # Errors
    /// [`DestinationError::Fatal`] for a URL that does not parse, a `rediss://` URL without
    /// the `redis-tls` feature, certificates given for a plain `redis://` URL, or a server
    /// whose certificate is not trusted; `Transient` when the server cannot be reached,
    /// `Unauthorized` when it refuses the password. The URL is not repeated in the error:
    /// it may hold a password.
    pub async fn connect(url: &str, options: RedisDestinationOptions) -> Result<Self, DestinationError> {
        let name = destination_name(&options);
        let client = client(&name, url, &options)?;
        Self::manage(name, client, options).await
    }

    /// Connects through `client`, one the host built (its own TLS setup, a Unix socket, a
    /// RESP3 protocol choice), with the destination's bounded reconnection: two attempts,
    /// 5 s to connect, 30 s for an answer.
    ///
    /// The options' certificates are not used: the client's own TLS setup applies. A
    /// client built for `rediss://` by the redis crate checks the server's certificate
    /// unless it was built `#insecure`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), but for parsing a URL.
    pub async fn from_client(
        client: redis::Client,
        options: RedisDestinationOptions,
    ) -> Result<Self, DestinationError> {
        Self::manage(destination_name(&options), client, options).await
    }

    /// Writes through `connection`, a connection manager the host already shares, as it is
    /// configured (its reconnection attempts and timeouts, not the destination's). Nothing
    /// is sent until the first `check` or `write`.
    pub fn from_connection_manager(connection: ConnectionManager, options: RedisDestinationOptions) -> Self {
        Self { name: destination_name(&options), options, connection, script_sha: tokio::sync::OnceCell::new() }
    }

    async fn manage(
        name: String,
        client: redis::Client,
        options: RedisDestinationOptions,
    ) -> Result<Self, DestinationError> {
        let tls = matches!(client.get_connection_info().addr(), redis::ConnectionAddr::TcpTls { .. });
        // Few reconnection attempts and bounded waits: retrying is the runner's job, and a
        // write must fail (as `Transient`) rather than hang while Redis is down.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)));
        let connection = ConnectionManager::new_with_config(client, config).await.map_err(|e| {
            #[cfg(feature = "redis-tls")]
            if let Some(tls) = crate::tls::rustls_error(&e) {
                return DestinationError::Fatal { message: untrusted(&name, tls), source: Some(Box::new(e)) };
            }
            if tls && e.is_io_error() {
                // A port that does not speak TLS closes the handshake.
                let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                return DestinationError::Transient {
                    message: format!(
                        "{name}: connecting over TLS failed ({detail}); check that the port in the `rediss://` URL is \
                         the server's TLS port"
                    ),
                    source: Some(Box::new(e)),
                };
            }
            classify(&name, "connecting", &e)
        })?;
        Ok(Self { name, options, connection, script_sha: tokio::sync::OnceCell::new() })
    }

    fn template(&self, schema: &Schema) -> Result<KeyTemplate, DestinationError> {
        if schema.fields().iter().any(|f| f.name == FIELDS_LIST) {
            return Err(DestinationError::fatal(format!(
                "{}: the schema has a field `{FIELDS_LIST}`, the name of the hash field in which rse lists the \
                 fields it wrote; rename that field in the mapping",
                self.name
            )));
        }
        KeyTemplate::parse(&self.options.key_template, schema)
            .map_err(|m| DestinationError::fatal(format!("{}: {m}", self.name)))
    }

    /// The SHA-1 that `EVALSHA` names [`WRITE_HASH`] by, asked of the server once.
    async fn script_sha(&self) -> Result<&str, DestinationError> {
        let sha = self
            .script_sha
            .get_or_try_init(|| async {
                let mut conn = self.connection.clone();
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(WRITE_HASH)
                    .query_async::<String>(&mut conn)
                    .await
                    .map_err(|e| classify(&self.name, "SCRIPT LOAD of the hash write", &e))
            })
            .await?;
        Ok(sha)
    }
}

/// A parsed key template and the characters escaped in the key values it inserts.
struct KeyTemplate {
    parts: Vec<TemplatePart>,
    /// Beyond `%`, `:`, `{` and `}`: the first character of each literal between two key
    /// placeholders.
    separators: Vec<char>,
}

impl KeyTemplate {
    fn parse(template: &str, schema: &Schema) -> Result<KeyTemplate, String> {
        let parts = parse_template(template, schema)?;
        let mut separators = Vec::new();
        let key_at: Vec<usize> =
            parts.iter().enumerate().filter(|(_, p)| matches!(p, TemplatePart::KeyColumn(_))).map(|(i, _)| i).collect();
        // Between two key placeholders, the first character after the first one must be one
        // its escaped value cannot hold, so the value's end is where that character is.
        for pair in key_at.windows(2) {
            let first = match parts.get(pair[0] + 1) {
                Some(TemplatePart::Literal(text)) => text.chars().next(),
                _ => None,
            };
            match first {
                Some(c) if !c.is_ascii_alphanumeric() && c != '%' => separators.push(c),
                _ => {
                    return Err(format!(
                        "key template `{template}` does not keep its key columns apart, so different keys could \
                         share a Redis key; put a separator that starts with neither a letter, a digit nor `%` \
                         (such as `:`) between every two key placeholders"
                    ));
                }
            }
        }
        Ok(KeyTemplate { parts, separators })
    }

    /// The Redis key of a record with these key values.
    fn key(&self, sync_id: &str, key_values: &[Value]) -> String {
        fill_template(&self.parts, sync_id, key_values, |text| self.escape(text))
    }

    /// `text` with `%`, `:`, braces and the template's separators percent-encoded, per UTF-8 byte.
    fn escape(&self, text: &str) -> String {
        let escaped = |c: char| matches!(c, '%' | ':' | '{' | '}') || self.separators.contains(&c);
        if !text.contains(escaped) {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if escaped(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// `redis:<key template>`, as reports show it.
fn destination_name(options: &RedisDestinationOptions) -> String {
    format!("redis:{}", options.key_template)
}

/// The client for `url`, with the options' certificates over `rediss://`.
fn client(name: &str, url: &str, options: &RedisDestinationOptions) -> Result<redis::Client, DestinationError> {
    let tls = url.starts_with("rediss://");
    let certificates = options.root_certificates.is_some() || options.client_certificate.is_some();
    if certificates && !tls {
        return Err(DestinationError::fatal(format!(
            "{name}: certificates are set but the URL is plain `redis://`; use `rediss://` to connect with TLS"
        )));
    }
    if tls && !cfg!(feature = "redis-tls") {
        return Err(DestinationError::fatal(format!(
            "{name}: a `rediss://` URL needs TLS, and this build of rse-connectors has none: enable its `redis-tls` \
             feature (`rse`'s `redis-tls`)"
        )));
    }
    let unparsed =
        |e: RedisError| DestinationError::fatal(format!("{name}: the connection URL does not parse: {:?}", e.kind()));
    #[cfg(feature = "redis-tls")]
    if tls {
        // The redis crate builds its TLS setup from the process's rustls provider; ring
        // unless the host installed another.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let load = |pem: &Pem, what: &str| match pem {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                DestinationError::fatal(format!("{name}: cannot read the {what} file `{}`: {e}", path.display()))
            }),
        };
        let root_cert = options.root_certificates.as_ref().map(|p| load(p, "root certificate")).transpose()?;
        let client_tls = match &options.client_certificate {
            Some(ClientCertificate { chain, key }) => Some(redis::ClientTlsConfig {
                client_cert: load(chain, "client certificate")?,
                client_key: load(key, "client key")?,
            }),
            None => None,
        };
        if root_cert.is_some() || client_tls.is_some() {
            return redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls, root_cert }).map_err(|e| {
                DestinationError::fatal(format!(
                    "{name}: the TLS certificates cannot be used ({:?}{}); give PEM certificates and an \
                     unencrypted PEM key",
                    e.kind(),
                    e.detail().map(|d| format!(": {d}")).unwrap_or_default()
                ))
            });
        }
    }
    redis::Client::open(url).map_err(unparsed)
}

/// The message for a handshake that failed on the server's certificate or ours.
#[cfg(feature = "redis-tls")]
fn untrusted(name: &str, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "{name}: the server's TLS certificate is not issued for the host in the URL ({e}); connect by a name the \
             certificate lists"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "{name}: the server's TLS certificate is not trusted ({e}): it is not signed by a CA rse trusts (the public \
             CAs unless set otherwise); give the CA that signed it with \
             `RedisDestinationOptions::with_root_certificates_file`"
        ),
        other => format!(
            "{name}: the TLS handshake failed ({other}); check the server's TLS setup and the client certificate"
        ),
    }
}

/// Maps a Redis error onto the runner's classes; the message names the failure kind only.
fn classify(name: &str, doing: &str, e: &RedisError) -> DestinationError {
    let message =
        format!("{name}: {doing} failed: {:?}{}", e.kind(), e.code().map(|c| format!(" ({c})")).unwrap_or_default());
    if matches!(e.kind(), ErrorKind::AuthenticationFailed)
        || e.code().is_some_and(|c| c == "NOAUTH" || c == "WRONGPASS" || c == "NOPERM")
    {
        return DestinationError::Unauthorized { message };
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return DestinationError::transient(message);
    }
    match e.retry_method() {
        RetryMethod::NoRetry => DestinationError::fatal(message),
        _ => DestinationError::transient(message),
    }
}

#[async_trait]
impl Destination for RedisDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DestinationCapabilities {
        DestinationCapabilities::new([Op::Insert, Op::Update, Op::Delete])
            .with_max_batch_rows(self.options.max_batch_rows.max(1))
            .with_max_concurrency(self.options.max_concurrency.max(1))
            .with_transactional(self.options.atomic)
    }

    async fn check(&self) -> Result<(), DestinationError> {
        let mut conn = self.connection.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| classify(&self.name, "PING", &e))?;
        // Writes need the script: a server that forbids scripts should fail here, not mid-run.
        self.script_sha().await?;
        Ok(())
    }

    async fn write(&self, batch: &ChangeBatch) -> Result<WriteOutcome, DestinationError> {
        if batch.changes.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let template = self.template(&batch.schema)?;
        let mut outcomes = WriteOutcomes::new(batch.changes.len());
        let mut pipe = redis::pipe();
        if self.options.atomic {
            pipe.atomic();
        } else {
            pipe.ignore_errors();
        }
        let sha = self.script_sha().await?;
        // Loaded again with every batch (it is small): a restarted or flushed server has
        // forgotten it, and EVALSHA would fail.
        pipe.cmd("SCRIPT").arg("LOAD").arg(WRITE_HASH).ignore();
        // The change of each command, to map per-command results back.
        let mut owners: Vec<usize> = Vec::new();
        let ttl = self.options.ttl.map_or(0, |t| t.as_secs().max(1));
        for (i, change) in batch.changes.iter().enumerate() {
            let Ok(key_values) = change.key.decode() else {
                outcomes.rejected(i, "key could not be decoded");
                continue;
            };
            let key = template.key(&batch.sync_id, &key_values);
            match (change.op, &change.record) {
                (Op::Delete, _) => {
                    pipe.del(&key);
                    owners.push(i);
                }
                (_, Some(record)) => {
                    let mut set = Vec::with_capacity(record.values.len());
                    let mut nulls = Vec::new();
                    for (f, v) in batch.schema.fields().iter().zip(&record.values) {
                        match value_to_text(v) {
                            Some(text) => set.push((f.name.as_str(), text)),
                            None => nulls.push(f.name.as_str()),
                        }
                    }
                    let list = Json::from(set.iter().map(|(name, _)| *name).collect::<Vec<_>>()).to_string();
                    let write = pipe.cmd("EVALSHA").arg(sha).arg(1).arg(&key).arg(ttl);
                    write.arg(FIELDS_LIST).arg(list).arg(nulls.len()).arg(&nulls);
                    for (name, text) in set {
                        write.arg(name).arg(text);
                    }
                    owners.push(i);
                }
                (op, None) => outcomes.rejected(i, format!("{op} without a record")),
            }
        }
        if owners.is_empty() {
            // Every change was refused above; nothing to send.
            return outcomes.finish(&self.name);
        }
        let mut conn = self.connection.clone();
        if self.options.atomic {
            pipe.query_async::<()>(&mut conn).await.map_err(|e| classify(&self.name, "MULTI/EXEC of the batch", &e))?;
            // `EXEC` answered: the whole transaction, every command sent, is applied.
            outcomes.rest_applied();
        } else {
            let results: Vec<redis::RedisResult<redis::Value>> =
                pipe.query_async(&mut conn).await.map_err(|e| classify(&self.name, "pipeline of the batch", &e))?;
            // One result per command sent, each standing for its change alone; a change
            // without a result stays unset and fails the write rather than pass as applied.
            for (owner, result) in owners.iter().zip(results) {
                match result {
                    Ok(_) => outcomes.applied(*owner),
                    Err(e) => {
                        let retryable = !matches!(e.retry_method(), RetryMethod::NoRetry);
                        let reason =
                            format!("{:?}{}", e.kind(), e.code().map(|c| format!(" ({c})")).unwrap_or_default());
                        outcomes.set(*owner, ChangeOutcome::Rejected { reason, retryable });
                    }
                }
            }
        }
        outcomes.finish(&self.name)
    }

    /// The hashes read back (see `read_back.rs`).
    fn read_back(&self) -> Option<&dyn ReadBack> {
        Some(self)
    }
}
