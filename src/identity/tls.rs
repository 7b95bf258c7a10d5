//! rustls configurations, ring provider only (see CRATES.md: two providers compiled in make
//! rustls panic). TLS 1.2 and 1.3; the API requires a client certificate from the configured CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS set-up problem: the operator's files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {message}")]
    Certs { path: String, message: String },
    #[error("cannot read the private key from {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
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
    let provider = provider();
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone());
    if let Some(crl) = crl {
        let crls = rustls::pki_types::CertificateRevocationListDer::pem_file_iter(crl)
            .map_err(|e| TlsError::Certs {
                path: crl.display().to_string(),
                message: e.to_string(),
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certs {
                path: crl.display().to_string(),
                message: e.to_string(),
            })?;
        builder = builder.with_crls(crls);
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
/// connections use it while open ones keep theirs.
#[derive(Debug)]
pub struct Reloadable {
    current: std::sync::RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: std::sync::RwLock::new(config),
        }
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn replace(&self, config: Arc<ServerConfig>) {
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(p) => *p.into_inner() = config,
        }
    }
}
