//! The PostgreSQL source's TLS settings from its connection URL: `sslmode` (with rse's
//! meaning of each mode, the same as rse-connectors'), `sslrootcert`, `sslcert`, `sslkey`.
//!
//! tokio-postgres knows `sslmode` as `disable`/`prefer`/`require` only and refuses the
//! others, so they are taken out of the URL before it parses the rest. What each mode
//! checks:
//!
//! | mode | encrypted | server's certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | always | the chain to a trusted root (stricter than libpq) |
//! | `verify-ca` | always | the chain |
//! | `verify-full` | always | the chain and the host name |
//!
//! Trusted roots: `sslrootcert=<PEM file>`, `sslrootcert=system` (the operating system's),
//! else Mozilla's public CAs compiled in.

/// The TLS mode of a connection URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "disable" => Ok(Mode::Disable),
            "prefer" => Ok(Mode::Prefer),
            "require" => Ok(Mode::Require),
            "verify-ca" => Ok(Mode::VerifyCa),
            "verify-full" => Ok(Mode::VerifyFull),
            other => Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full (verify-full is \
                 recommended)"
            )),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Mode::Disable => tokio_postgres::config::SslMode::Disable,
            Mode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The TLS parameters of a URL.
#[derive(Debug, Clone)]
pub(crate) struct UrlTls {
    pub(crate) mode: Mode,
    pub(crate) root_cert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

/// The URL without its TLS parameters, and them. A URL and a `key=value` string are both
/// read; a string that reads as neither is returned whole, for tokio-postgres to refuse.
pub(crate) fn split(url: &str) -> Result<(String, UrlTls), String> {
    let mut mode = None;
    let mut tls = UrlTls { mode: Mode::Prefer, root_cert: None, cert: None, key: None };
    let mut take = |key: &str, value: String| {
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => tls.root_cert = Some(value),
            "sslcert" => tls.cert = Some(value),
            "sslkey" => tls.key = Some(value),
            _ => return false,
        }
        true
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let key = percent_decode(key).unwrap_or_default();
                    let decoded = percent_decode(value);
                    let ours = matches!(key.as_str(), "sslmode" | "sslrootcert" | "sslcert" | "sslkey");
                    match decoded {
                        Some(value) if ours => {
                            take(&key, value);
                        }
                        None if ours => return Err(format!("the value of `{key}` is not valid percent-encoded UTF-8")),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        key_values(url, &mut take).unwrap_or_else(|| url.to_owned())
    };
    if let Some(text) = mode {
        tls.mode = Mode::parse(&text)?;
    }
    Ok((rest, tls))
}

/// `key=value` pairs, a value single-quoted or not, `\` escaping the next character; the
/// pairs `take` does not keep are returned. `None` when the string does not read so.
fn key_values(conn: &str, take: &mut impl FnMut(&str, String) -> bool) -> Option<String> {
    let mut kept = String::with_capacity(conn.len());
    let mut chars = conn.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=')?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        loop {
            match chars.peek().map(|&(_, c)| c) {
                None if quoted => return None,
                None => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some('\'') if quoted => {
                    chars.next();
                    break;
                }
                Some('\\') => {
                    chars.next();
                    value.push(chars.next()?.1);
                }
                Some(c) => {
                    chars.next();
                    value.push(c);
                }
            }
        }
        let end = chars.peek().map_or(conn.len(), |&(i, _)| i);
        if !take(&key, value) {
            kept.push_str(&conn[start..end]);
            kept.push(' ');
        }
    }
    Some(kept.trim_end().to_owned())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(feature = "postgres-tls")]
pub(crate) use with_rustls::{client_config, explain};

#[cfg(feature = "postgres-tls")]
mod with_rustls {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::{Mode, UrlTls};

    fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} file `{path}`: {e}"))
    }

    /// The rustls setup the URL asks for, or `None` under `disable`.
    pub(crate) fn client_config(tls: &UrlTls) -> Result<Option<rustls::ClientConfig>, String> {
        if tls.mode == Mode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS failed: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = if tls.mode == Mode::Prefer {
            // Opportunistic, as libpq's `prefer`: encrypted, not authenticated.
            Arc::new(Unverified(provider))
        } else {
            let mut roots = RootCertStore::empty();
            match tls.root_cert.as_deref() {
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                Some("system") => {
                    let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                    if added == 0 {
                        return Err("sslrootcert=system: the operating system's store holds no trusted certificate; \
                                    install the CA certificates or give the CA with sslrootcert=<file>"
                            .to_owned());
                    }
                }
                Some(path) => {
                    let pem = read(path, "root certificate (sslrootcert)")?;
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert =
                            cert.map_err(|e| format!("sslrootcert `{path}` is not a PEM certificate file: {e}"))?;
                        roots
                            .add(cert)
                            .map_err(|e| format!("sslrootcert `{path}` holds an unusable certificate: {e}"))?;
                    }
                    if roots.is_empty() {
                        return Err(format!("sslrootcert `{path}` holds no PEM certificate"));
                    }
                }
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("setting up TLS failed: {e}"))?;
            Arc::new(Verified { webpki, check_name: tls.mode == Mode::VerifyFull })
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match (tls.cert.as_deref(), tls.key.as_deref()) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&read(cert, "client certificate (sslcert)")?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslcert `{cert}` is not a PEM certificate chain: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key, "client key (sslkey)")?)
                    .map_err(|e| format!("sslkey `{key}` is not an unencrypted PEM private key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("sslcert and sslkey do not go together: {e}"))?
            }
            _ => return Err("the URL gives only one of sslcert and sslkey: a client certificate needs both".to_owned()),
        };
        Ok(Some(config))
    }

    /// What to change, for a handshake that failed on a certificate; `None` otherwise.
    pub(crate) fn explain(e: &tokio_postgres::Error, mode: Mode) -> Option<String> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(c) = cause {
            let found = c.downcast_ref::<rustls::Error>().or_else(|| {
                c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
            });
            if let Some(r) = found {
                return Some(match r {
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                    ) => format!(
                        "the server's TLS certificate is not issued for the host in the URL ({r}); connect by a name \
                         it lists, or use sslmode=verify-ca to check the CA only"
                    ),
                    rustls::Error::InvalidCertificate(_) => format!(
                        "the server's TLS certificate is not trusted ({r}): it is not signed by a CA rse trusts \
                         (public CAs unless sslrootcert says otherwise); give the CA that signed it with \
                         `sslrootcert=/path/to/ca.pem` in the URL{}",
                        if mode == Mode::Require {
                            " (rse's sslmode=require checks the chain, unlike libpq's)"
                        } else {
                            ""
                        }
                    ),
                    other => format!("the TLS handshake failed ({other}) under sslmode={}", mode.as_str()),
                });
            }
            cause = c.source();
        }
        None
    }

    /// Checks the chain; the host name only when `check_name`.
    #[derive(Debug)]
    struct Verified {
        webpki: Arc<WebPkiServerVerifier>,
        check_name: bool,
    }

    impl ServerCertVerifier for Verified {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            // webpki checks the name after the chain: a name error means the chain was good.
            match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) if !self.check_name => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    }

    /// Any certificate, but the handshake signatures checked: encrypted, not authenticated.
    #[derive(Debug)]
    struct Unverified(Arc<CryptoProvider>);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
