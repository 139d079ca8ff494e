//! The rustls side of PostgreSQL TLS: trusted roots, one certificate check per `sslmode`,
//! client certificates.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::{SetupError, SslMode};

/// Where the trusted roots come from.
pub(crate) enum Roots {
    /// Mozilla's list of public CAs, compiled in (`webpki-roots`).
    Public,
    /// The operating system's store (`sslrootcert=system`).
    System,
    /// The certificates of a PEM file or buffer; `from` names it for messages.
    Pem { pem: Vec<u8>, from: String },
}

/// What the connector is built from.
pub(crate) struct TlsSetup {
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
    /// The client's certificate chain and private key, PEM.
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
    /// `require` without any certificate check, asked for by the host.
    pub(crate) accept_invalid: bool,
}

/// The connector for tokio-postgres: TLS 1.2 or 1.3 with ring, checking the server as
/// `mode` says.
pub(crate) fn connector(setup: TlsSetup) -> Result<MakeRustlsConnect, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::new(format!("setting up TLS failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match setup.mode {
        // `prefer` is opportunistic, as in libpq: encrypted against a passive listener, not
        // authenticated. `require` checks unless the host opted out.
        SslMode::Prefer => Arc::new(Unverified(provider)),
        SslMode::Require if setup.accept_invalid => Arc::new(Unverified(provider)),
        mode => {
            let roots = Arc::new(root_store(setup.roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| SetupError::new(format!("setting up TLS failed: {e}")))?;
            Arc::new(Verified { webpki, check_name: mode == SslMode::VerifyFull })
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match setup.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert).collect::<Result<Vec<_>, _>>().map_err(|e| {
                SetupError::new(format!("the client certificate (sslcert) is not a PEM certificate chain: {e}"))
            })?;
            if chain.is_empty() {
                return Err(SetupError::new("the client certificate (sslcert) holds no PEM certificate"));
            }
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                SetupError::new(format!(
                    "the client key (sslkey) is not an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                SetupError::new(format!("the client certificate and key (sslcert, sslkey) do not go together: {e}"))
            })?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: Roots) -> Result<RootCertStore, SetupError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Public => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(SetupError::new(format!(
                    "sslrootcert=system: no trusted certificate was found in the operating system's store{}; install \
                     the CA certificates (e.g. the `ca-certificates` package) or give the CA with sslrootcert=<file>",
                    found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
        }
        Roots::Pem { pem, from } => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| SetupError::new(format!("{from} is not a PEM certificate file: {e}")))?;
                store.add(cert).map_err(|e| {
                    SetupError::new(format!("{from} holds a certificate that cannot be a trusted root: {e}"))
                })?;
            }
            if store.is_empty() {
                return Err(SetupError::new(format!(
                    "{from} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
                )));
            }
        }
    }
    Ok(store)
}

/// The chain is checked against the roots; the host name only when `check_name`
/// (`verify-full`). webpki checks the name after the chain, so a name error means the
/// chain was good.
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

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signatures): encryption without knowing who is at the other end.
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
