//! rustls (with the `ring` provider) for PostgreSQL and Redis.
//!
//! PostgreSQL follows libpq's `sslmode`: `prefer` and `require` encrypt without
//! checking who answers, unless `sslrootcert` is given, which makes them check
//! the chain like `verify-ca` (libpq does the same when a root certificate is
//! present); `verify-ca` checks the chain and not the name; `verify-full` both.
//! Files are read on every connection, so a renewed certificate or CA is
//! picked up on the next reconnection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgTls, SslMode};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(path: &Path) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading CA certificates from {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
        store
            .add(cert)
            .with_context(|| format!("{} holds an unusable CA certificate", path.display()))?;
    }
    if store.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(store)
}

fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the client certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the client key {}", key.display()))?;
    Ok((chain, key))
}

/// The connector for tokio-postgres. tokio-postgres decides whether TLS is
/// used at all (from `sslmode`, passed to it as `disable`/`prefer`/`require`);
/// this decides what is checked when it is.
pub fn postgres(tls: &PgTls) -> Result<MakeRustlsConnect> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, &tls.root_cert) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => bail!(
            "sslmode={} needs sslrootcert=FILE, the CA that signed the server's certificate",
            if tls.mode == SslMode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            }
        ),
        (SslMode::VerifyFull, Some(ca)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
                .build()
                .context("building the certificate verifier")?
        }
        (SslMode::Disable | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(ca)) => {
            Arc::new(ChainOnly(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
                    .build()
                    .context("building the certificate verifier")?,
            ))
        }
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => {
            Arc::new(EncryptOnly(provider.clone()))
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key don't fit together")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("sslcert and sslkey go together: give both or neither"),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Where Redis's TLS files are: `OLACLICK_REDIS_CACERT` (when unset, the
/// Mozilla roots of webpki-roots: the redis crate would otherwise read the
/// system's store on every connection, 8 ms each), `OLACLICK_REDIS_CERT` and
/// `OLACLICK_REDIS_KEY` for a client certificate.
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl RedisTls {
    /// The certificates for `redis::Client::build_with_tls`, read now. The
    /// redis crate checks the chain and the host name (`rediss://` always
    /// verifies fully).
    pub fn certificates(&self) -> Result<redis::TlsCertificates> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
        };
        let root_cert = match &self.ca {
            // Parsed here too, so a file that is not a CA gives its name
            // rather than the redis crate's generic error.
            Some(ca) => {
                roots(ca)?;
                Some(read(ca, "OLACLICK_REDIS_CACERT")?)
            }
            None => None,
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "OLACLICK_REDIS_CERT")?,
                client_key: read(key, "OLACLICK_REDIS_KEY")?,
            }),
            (None, None) => None,
            _ => {
                bail!("OLACLICK_REDIS_CERT and OLACLICK_REDIS_KEY go together: set both or neither")
            }
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// A person-readable reason for a certificate failure found in an error
/// message, or None. rustls words them in Debug form (`UnknownIssuer`) or in
/// prose ("certificate not valid for name"), depending on the error.
pub fn explain(message: &str) -> Option<&'static str> {
    let reasons: [(&[&str], &str); 9] = [
        (
            &["unknownissuer", "unknown issuer"],
            "the server's certificate is not signed by a trusted CA (check the CA file)",
        ),
        (
            &["notvalidforname", "not valid for name"],
            "the server's certificate is not issued for the host name connected to",
        ),
        (&["expired"], "the server's certificate has expired"),
        (
            &["notvalidyet", "not valid yet"],
            "the server's certificate is not valid yet",
        ),
        (&["revoked"], "the server's certificate is revoked"),
        (
            &["badsignature", "bad signature"],
            "the server's certificate has a bad signature",
        ),
        (
            &["unsupportedsignaturealgorithm"],
            "the server's certificate uses an unsupported signature algorithm",
        ),
        (
            &["certificaterequired", "certificate required"],
            "the server requires a client certificate",
        ),
        (
            &["unknownca", "unknown ca"],
            "the server does not trust the client certificate",
        ),
    ];
    let message = message.to_lowercase();
    reasons
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| message.contains(n)))
        .map(|(_, reason)| *reason)
}

/// `verify-ca`: the chain must lead to the CA; the name is not checked.
/// WebPkiServerVerifier checks the chain before the name, so a name error
/// means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: encrypted, the certificate not checked
/// (libpq's meaning; it protects against eavesdropping, not impersonation).
/// The handshake signatures are still verified, so the session key belongs
/// to whoever holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
