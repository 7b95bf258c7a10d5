//! rustls configurations, ring provider only (see CRATES.md: two providers compiled in make
//! rustls panic). TLS 1.2 and 1.3; the API requires a client certificate from the configured CA.
//!
//! Owns: the API's client-certificate verifier ([`AgencyVerifier`]: rustls'
//! `WebPkiClientVerifier` with the CA and the revocation list, plus one rule of ours, a subject
//! holding more than one common name is refused in the handshake, since an agency is identified by
//! its CN and two would make that ambiguous), and the [`Reloadable`] server configuration SIGHUP
//! swaps.
//!
//! Invariants: the verifier in force for new handshakes and the one open connections are checked
//! against at a reload are the same object ([`Reloadable::replace`] publishes both at once), so a
//! revocation list put in force at SIGHUP refuses new handshakes of a revoked certificate and
//! closes the connections it had open (`ingest` watches [`Reloadable::verifiers`]). Issue #31
//! item 5: SIGHUP used to rebuild from the `[tls]` paths captured at start, so a `tls.crl` first
//! added to the file later was never read; `app` now re-reads the file's `[tls]` section.
//!
//! Never does: accept a client certificate the CA did not sign, or one the list in force revokes.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

/// A TLS problem: the operator's files, or (the last two) a client certificate the CA signed that
/// is still refused, the certificate holder's to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {message}")]
    Certs { path: String, message: String },
    #[error("cannot read the private key from {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error(
        "the certificate subject holds {0} common names; an agency certificate holds at most one"
    )]
    CommonNames(usize),
    #[error("the certificate cannot be parsed")]
    Unparsable,
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Certs {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(roots)
}

/// The API server's configuration: client certificates required and verified against `client_ca`
/// (and the revocation list `crl`, when given).
pub fn server_config(
    client_ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_crl(client_ca, cert, key, None)
}

pub fn server_config_with_crl(
    client_ca: &Path,
    cert: &Path,
    key: &Path,
    crl: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(server_tls(client_ca, cert, key, crl)?.config)
}

/// The API server's configuration and the verifier inside it, built together from the files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<AgencyVerifier>,
}

pub fn server_tls(
    client_ca: &Path,
    cert: &Path,
    key: &Path,
    crl: Option<&Path>,
) -> Result<ServerTls, TlsError> {
    let provider = provider();
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone());
    if let Some(crl) = crl {
        let err = |message: String| TlsError::Certs {
            path: crl.display().to_string(),
            message,
        };
        let crls = rustls::pki_types::CertificateRevocationListDer::pem_file_iter(crl)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if crls.is_empty() {
            return Err(err("no revocation list found".into()));
        }
        builder = builder.with_crls(crls);
    }
    let verifier = Arc::new(AgencyVerifier {
        inner: builder
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        verifier,
    })
}

/// rustls' WebPKI verifier (CA, revocation list, validity, key usage) plus: a subject holding more
/// than one CN is refused (agencies are identified by their CN; the first of two is not an
/// identity).
#[derive(Debug)]
pub struct AgencyVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl AgencyVerifier {
    /// Whether a certificate chain accepted earlier (an open connection's) still holds under this
    /// verifier: same checks as a handshake at `now`.
    pub fn still_trusts(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> bool {
        match chain.split_first() {
            Some((end_entity, intermediates)) => self
                .verify_client_cert(end_entity, intermediates, now)
                .is_ok(),
            None => false,
        }
    }
}

/// A failed handshake as the log says it: our own refusals ([`AgencyVerifier`]) in words, not as
/// rustls' debug form of them.
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        _ => e.to_string(),
    }
}

/// At most one CN in the subject (none is allowed: such a certificate can still be named by its
/// fingerprint).
pub fn check_subject(der: &[u8]) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| TlsError::Unparsable)?;
    match cert.subject().iter_common_name().count() {
        0 | 1 => Ok(()),
        n => Err(TlsError::CommonNames(n)),
    }
}

impl ClientCertVerifier for AgencyVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_subject(end_entity.as_ref()).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The admin listener's HTTPS (`server.admin_tls`): the server certificate, no client
/// certificate (operators sign in), HTTP/1.1.
pub fn admin_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration presenting `cert`/`key` and trusting `server_ca` (delivery to the
/// platforms, the test suite, the load generator).
pub fn client_config(server_ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(server_ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// A client configuration without a client certificate (to show the handshake fails).
pub fn client_config_without_cert(server_ca: &Path) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(server_ca)?)
        .with_no_client_auth())
}

/// The server configuration in force; SIGHUP swaps in a new one built from the files, and new
/// connections use it. Open connections keep their session, but each is told of the new verifier
/// ([`Reloadable::verifiers`]) and closes itself when its certificate no longer passes it.
#[derive(Debug)]
pub struct Reloadable {
    current: std::sync::RwLock<Arc<ServerConfig>>,
    verifier: tokio::sync::watch::Sender<Arc<AgencyVerifier>>,
}

impl Reloadable {
    pub fn new(tls: ServerTls) -> Self {
        Self {
            current: std::sync::RwLock::new(tls.config),
            verifier: tokio::sync::watch::Sender::new(tls.verifier),
        }
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The verifier in force, and every later one as reloads put them in force.
    pub fn verifiers(&self) -> tokio::sync::watch::Receiver<Arc<AgencyVerifier>> {
        self.verifier.subscribe()
    }

    /// Put a new configuration in force: new handshakes use it first, then open connections are
    /// told of its verifier.
    pub fn replace(&self, tls: ServerTls) {
        match self.current.write() {
            Ok(mut c) => *c = tls.config,
            Err(p) => *p.into_inner() = tls.config,
        }
        self.verifier.send_replace(tls.verifier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cns(cns: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        for (i, cn) in cns.iter().enumerate() {
            // rcgen keeps one value per type: the second CN goes in under its bare OID.
            let ty = if i == 0 {
                rcgen::DnType::CommonName
            } else {
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 3])
            };
            dn.push(ty, *cn);
        }
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_subject_with_two_common_names_is_refused() {
        assert!(check_subject(&cert_with_cns(&["tax"])).is_ok());
        assert!(check_subject(&cert_with_cns(&[])).is_ok());
        assert!(matches!(
            check_subject(&cert_with_cns(&["tax", "medical_insurance"])),
            Err(TlsError::CommonNames(2))
        ));
        assert!(matches!(
            check_subject(b"not a certificate"),
            Err(TlsError::Unparsable)
        ));
        let refusal = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                TlsError::CommonNames(2),
            )))),
        );
        assert_eq!(
            describe_handshake_error(&refusal),
            "invalid peer certificate: the certificate subject holds 2 common names; an agency certificate holds at most one"
        );
    }
}
