//! When the certificates the gateway uses end (issue #30: an expiring certificate had no metric,
//! so no alert could say so before agencies' handshakes failed).
//!
//! Owns: the list of certificates in use (the server certificate, the client CA, the client
//! certificates under `<certs_dir>/clients/`, the destinations' client certificates), each one's
//! end, and the gauge `gateway_certificate_days_left{certificate}` refreshed by [`watch`].
//!
//! Never does: read a private key, or judge a certificate's chain (TLS does that).

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::config::Config;

/// Every certificate file the gateway uses, with the label its gauge carries (a file name or a
/// destination's id, never a path that could hold a personal name).
pub fn in_use(config: &Config) -> Vec<(String, PathBuf)> {
    let mut out = vec![
        ("server".to_string(), config.tls.server_cert_path()),
        ("client_ca".to_string(), config.tls.client_ca_path()),
    ];
    if let Ok(rd) = std::fs::read_dir(config.tls.certs_dir.join("clients")) {
        let mut clients: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "pem")
                    && !p.to_string_lossy().ends_with("-key.pem")
            })
            .collect();
        clients.sort();
        for p in clients {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((format!("client:{stem}"), p));
        }
    }
    for d in &config.destinations {
        if let Some(p) = &d.client_cert {
            out.push((format!("destination:{}", d.id), p.clone()));
        }
    }
    out
}

/// The end of a PEM certificate's validity; `None` when the file is missing or no certificate.
pub fn not_after(path: &Path) -> Option<OffsetDateTime> {
    let bytes = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// Whole days from `now` to each certificate's end (negative once ended), for those that read.
pub fn days_left(config: &Config, now: OffsetDateTime) -> Vec<(String, PathBuf, i64)> {
    in_use(config)
        .into_iter()
        .filter_map(|(label, path)| {
            let end = not_after(&path)?;
            Some((label, path, (end - now).whole_days()))
        })
        .collect()
}

/// Publish `gateway_certificate_days_left` now and every `every` until `stop`. Judged on the
/// system clock: the one TLS checks certificates against.
pub async fn watch(
    config: Config,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let config2 = config.clone();
        let found =
            tokio::task::spawn_blocking(move || days_left(&config2, OffsetDateTime::now_utc()))
                .await
                .unwrap_or_default();
        for (label, _, days) in found {
            metrics::gauge!("gateway_certificate_days_left", "certificate" => label)
                .set(days as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = stop.changed() => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_are_found_with_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.tls.certs_dir = dir.path().to_path_buf();
        let now = OffsetDateTime::now_utc();
        crate::identity::certs::init(
            dir.path(),
            &["health".to_string()],
            &["localhost".to_string()],
            now,
        )
        .unwrap();
        let found = days_left(&config, now);
        let labels: Vec<&str> = found.iter().map(|(l, _, _)| l.as_str()).collect();
        assert!(
            labels.contains(&"server") && labels.contains(&"client:health"),
            "{labels:?}"
        );
        let server = found.iter().find(|(l, _, _)| l == "server").unwrap().2;
        // LEAF_VALIDITY_DAYS from an hour before now.
        assert!(
            (crate::identity::certs::LEAF_VALIDITY_DAYS - 1
                ..=crate::identity::certs::LEAF_VALIDITY_DAYS)
                .contains(&server),
            "{server}"
        );
    }
}
