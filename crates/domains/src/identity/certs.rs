//! The development CA: `credit-gateway certs init` (and `serve` when `certs/` is empty) creates a
//! CA, a server certificate for localhost/127.0.0.1 and one client certificate per configured
//! agency (subject CN = agency id). Private keys are written 0600 and never committed.
//! Production deployments bring their own CA and set `tls.generate_dev_certs = false`.
//!
//! Validity: from an hour before issue (clock skew between hosts) for [`LEAF_VALIDITY_DAYS`]
//! (server and client certificates: 825 days, the CA/Browser Forum's former ceiling) and
//! [`CA_VALIDITY_DAYS`] for the CA. rcgen's default, 1975 to 4096, made a leaked development key
//! good for ever (issue #31 item 12). Issued against the system clock, the one rustls checks them
//! against, never the gateway's manual test clock.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Development server and client certificates are valid this long from issue.
pub const LEAF_VALIDITY_DAYS: i64 = 825;
/// The development CA is valid this long from issue.
pub const CA_VALIDITY_DAYS: i64 = 3_650;
/// Certificates start this long before the moment of issue (clock skew between hosts).
pub const BACKDATE: ::time::Duration = ::time::Duration::hours(1);

/// Set a certificate's validity: from `now - BACKDATE` for `days`.
fn valid_for(params: &mut CertificateParams, now: ::time::OffsetDateTime, days: i64) {
    params.not_before = now - BACKDATE;
    params.not_after = now + ::time::Duration::days(days);
}

/// The CA that signs development certificates.
pub type CaIssuer = Issuer<'static, KeyPair>;

/// A certificate problem: the operator's (files) or the environment's.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What `certs init` produced or found.
#[derive(Debug, Default)]
pub struct InitReport {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca-key.pem")
}
pub fn client_cert_path(dir: &Path, agency: &str) -> PathBuf {
    dir.join("clients").join(format!("{agency}.pem"))
}
pub fn client_key_path(dir: &Path, agency: &str) -> PathBuf {
    dir.join("clients").join(format!("{agency}-key.pem"))
}

/// Create whatever is missing: the CA (only when neither its certificate nor key exist), the
/// server certificate, and a client certificate for each agency id. Existing files are kept.
pub fn init(
    dir: &Path,
    agencies: &[String],
    server_names: &[String],
    now: ::time::OffsetDateTime,
) -> Result<InitReport, CertError> {
    let mut report = InitReport::default();
    std::fs::create_dir_all(dir.join("clients")).map_err(|source| CertError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let issuer = load_or_create_ca(dir, &mut report, now)?;
    let server_cert = dir.join("server.pem");
    if server_cert.exists() {
        report.kept.push(server_cert);
    } else {
        let mut params = CertificateParams::new(server_names.to_vec())?;
        params.distinguished_name = dn("credit-gateway");
        valid_for(&mut params, now, LEAF_VALIDITY_DAYS);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(
            &dir.join("server-key.pem"),
            &key.serialize_pem(),
            true,
            &mut report,
        )?;
        write(&server_cert, &cert.pem(), false, &mut report)?;
    }
    for agency in agencies {
        let path = client_cert_path(dir, agency);
        if path.exists() {
            report.kept.push(path);
            continue;
        }
        let (cert, key) = client_cert(&issuer, agency, now)?;
        write(&client_key_path(dir, agency), &key, true, &mut report)?;
        write(&path, &cert, false, &mut report)?;
    }
    Ok(report)
}

/// A client certificate (PEM cert, PEM key) with the given subject CN, signed by `issuer`, valid
/// for [`LEAF_VALIDITY_DAYS`] from `now`.
pub fn client_cert(
    issuer: &CaIssuer,
    cn: &str,
    now: ::time::OffsetDateTime,
) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn);
    valid_for(&mut params, now, LEAF_VALIDITY_DAYS);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub fn load_or_create_ca(
    dir: &Path,
    report: &mut InitReport,
    now: ::time::OffsetDateTime,
) -> Result<CaIssuer, CertError> {
    let (cert_path, key_path) = (ca_cert_path(dir), ca_key_path(dir));
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| CertError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let key = KeyPair::from_pem(&read(&key_path)?)?;
        let issuer = Issuer::from_ca_cert_pem(&read(&cert_path)?, key)?;
        report.kept.push(cert_path);
        return Ok(issuer);
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn("credit-gateway development CA");
    valid_for(&mut params, now, CA_VALIDITY_DAYS);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(&key_path, &key.serialize_pem(), true, report)?;
    write(&cert_path, &cert.pem(), false, report)?;
    Ok(Issuer::new(params, key))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "credit-gateway");
    dn
}

fn write(
    path: &Path,
    contents: &str,
    private: bool,
    report: &mut InitReport,
) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, contents).map_err(err)?;
    if private {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
    }
    report.created.push(path.to_path_buf());
    Ok(())
}

/// The subject common name of a DER certificate; `None` when it holds none, or more than one
/// (which the handshake refuses anyway, see `tls::AgencyVerifier`).
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut cns = cert.subject().iter_common_name();
    let cn = cns.next()?;
    if cns.next().is_some() {
        return None;
    }
    cn.as_str().ok().map(str::to_string)
}

/// Revoke the development client certificates of these subject names: (re)write `<dir>/crl.pem`,
/// signed by the development CA, listing them and every serial already listed there.
pub fn revoke(
    dir: &Path,
    names: &[String],
    now: ::time::OffsetDateTime,
) -> Result<PathBuf, CertError> {
    let mut report = InitReport::default();
    let issuer = load_or_create_ca(dir, &mut report, now)?;
    let crl_path = dir.join("crl.pem");
    let mut serials: Vec<Vec<u8>> = existing_revoked_serials(&crl_path);
    for name in names {
        let path = client_cert_path(dir, name);
        let pem = std::fs::read_to_string(&path).map_err(|e| CertError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
                CertError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| CertError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        if !serials.contains(&serial) {
            serials.push(serial);
        }
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + ::time::Duration::days(30),
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp().max(1) as u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .into_iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&s),
                revocation_time: now,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer)?;
    let mut report = InitReport::default();
    write(&crl_path, &crl.pem()?, false, &mut report)?;
    Ok(crl_path)
}

fn existing_revoked_serials(path: &Path) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let Ok(der) = rustls_pki_types::CertificateRevocationListDer::from_pem_file(path) else {
        return Vec::new();
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
        return Vec::new();
    };
    crl.iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_are_valid_from_an_hour_before_issue_for_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let now = ::time::macros::datetime!(2026-03-01 12:00 UTC);
        init(dir.path(), &["tax".into()], &["localhost".into()], now).unwrap();
        let validity = |path: PathBuf| {
            let der = rustls_pki_types::CertificateDer::from_pem_file(&path).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
            let v = cert.validity();
            (
                v.not_before.timestamp() - now.unix_timestamp(),
                v.not_after.timestamp() - now.unix_timestamp(),
            )
        };
        let day = 86_400;
        assert_eq!(validity(ca_cert_path(dir.path())), (-3_600, 3_650 * day));
        assert_eq!(validity(dir.path().join("server.pem")), (-3_600, 825 * day));
        assert_eq!(
            validity(client_cert_path(dir.path(), "tax")),
            (-3_600, 825 * day)
        );
    }
}
