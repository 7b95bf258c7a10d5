//! `credit-gateway config check`: everything a start or a reload would load, checked offline
//! before it reaches a running gateway (issue #30): the configuration file, every rule file of
//! the rulebook (mappings, calendar, sharing, disclosure, notice, objection and repair rules,
//! scoring profiles, agencies, operators), each agency's exchange folder (its inbox there and
//! writable, its mappings known and of a kind a file can be), the TLS material and every certificate's expiry, the
//! keys, and each destination's URL, formats and CA. Every problem is printed at once; the exit
//! status is 1 when any is an error (a package's `ExecReload` runs it before sending SIGHUP).

use std::process::ExitCode;

use crate::config::Config;

/// How many days before a certificate's end it is warned of.
const CERT_WARNING_DAYS: i64 = 30;

#[derive(Default)]
struct Findings {
    errors: Vec<String>,
    warnings: Vec<String>,
    checked: Vec<String>,
}

pub(super) fn run(config: &Config) -> ExitCode {
    let mut f = Findings::default();
    let now = crate::app::clock(config).now();
    rulebook(config, now, &mut f);
    tls(config, &mut f);
    certificates(config, now, &mut f);
    keys(config, now, &mut f);
    destinations(config, &mut f);
    folders(config, &mut f);
    for line in &f.checked {
        say!("ok: {line}");
    }
    for line in &f.warnings {
        say!("warning: {line}");
    }
    for line in &f.errors {
        say!("error: {line}");
    }
    say!(
        "{} error(s), {} warning(s)",
        f.errors.len(),
        f.warnings.len()
    );
    if f.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn rulebook(config: &Config, now: time::OffsetDateTime, f: &mut Findings) {
    match crate::rulebook::Rulebook::load(config) {
        Ok(book) => {
            f.checked.push(format!(
                "rules: {} mappings, calendar {}-{}, {} scoring profiles, {} agencies, {} operators",
                book.mappings.len(),
                book.calendar.known_years().start(),
                book.calendar.known_years().end(),
                book.profiles.len(),
                book.agencies.len(),
                book.operators.len()
            ));
            let live = crate::rulebook::Live::new(book, String::new());
            let files = crate::rulebook::in_force::Files::of(config);
            let today = now.to_offset(crate::calendar::CHINA_OFFSET).date();
            for w in crate::rulebook::in_force::warnings(&live, &files, today) {
                f.warnings.push(w.message);
            }
        }
        Err(errors) => f
            .errors
            .extend(errors.into_iter().map(|e| format!("rules: {e}"))),
    }
}

fn tls(config: &Config, f: &mut Findings) {
    let paths = [
        config.tls.client_ca_path(),
        config.tls.server_cert_path(),
        config.tls.server_key_path(),
    ];
    if config.tls.generate_dev_certs && paths.iter().all(|p| !p.exists()) {
        f.warnings.push(format!(
            "tls: no certificates in {}; development certificates are created at the first start (tls.generate_dev_certs): use your CA's for production",
            config.tls.certs_dir.display()
        ));
        return;
    }
    match crate::identity::tls::server_tls(
        &paths[0],
        &paths[1],
        &paths[2],
        config.tls.crl.as_deref(),
    ) {
        Ok(_) => f.checked.push(format!(
            "tls: server certificate {}, client CA {}{}",
            paths[1].display(),
            paths[0].display(),
            config
                .tls
                .crl
                .as_ref()
                .map(|c| format!(", revocation list {}", c.display()))
                .unwrap_or_default()
        )),
        Err(e) => f.errors.push(format!("tls: {e}")),
    }
}

/// Every certificate in use (`identity::expiry`): expired is an error, within 30 days a warning.
fn certificates(config: &Config, now: time::OffsetDateTime, f: &mut Findings) {
    let mut seen = 0;
    for (_, path, days) in crate::identity::expiry::days_left(config, now) {
        if days < 0 {
            f.errors.push(format!(
                "certificate {} has expired ({} days ago)",
                path.display(),
                -days
            ));
        } else if days <= CERT_WARNING_DAYS {
            f.warnings.push(format!(
                "certificate {} expires in {days} days",
                path.display()
            ));
        } else {
            seen += 1;
        }
    }
    for (_, path) in crate::identity::expiry::in_use(config) {
        if path.exists() && crate::identity::expiry::not_after(&path).is_none() {
            f.errors.push(format!(
                "certificate {}: not a PEM certificate",
                path.display()
            ));
        }
    }
    f.checked.push(format!(
        "certificates: {seen} valid for more than {CERT_WARNING_DAYS} days"
    ));
}

fn keys(config: &Config, now: time::OffsetDateTime, f: &mut Findings) {
    let source = config.key_source();
    if let crate::crypto::keyring::KeySource::File(path) = &source {
        if !path.exists() && config.crypto.generate_keys {
            f.warnings.push(format!(
                "keys: no key file at {}; one is created at the first start (crypto.generate_keys)",
                path.display()
            ));
            return;
        }
    }
    match crate::crypto::Keyring::load(&source, config.crypto.suite, false, now) {
        Ok(k) => f
            .checked
            .push(format!("keys: active data key {}", k.active_data_key())),
        Err(e) => f.errors.push(format!("keys: {e}")),
    }
}

fn destinations(config: &Config, f: &mut Findings) {
    let formats =
        match crate::delivery::format::Formats::load(&config.mappings.dir.join("outbound")) {
            Ok(formats) => formats,
            Err(e) => {
                f.errors.push(format!("outbound formats: {e}"));
                return;
            }
        };
    for d in &config.destinations {
        match crate::delivery::Destination::new(config, d, &formats, None) {
            Ok(_) => f
                .checked
                .push(format!("destination {}: {}", d.id, d.target())),
            Err(e) => f.errors.push(format!("destination {}: {e}", d.id)),
        }
    }
}

/// Each agency's exchange folder (`[agencies.folder]`, issue #29): the inbox is a folder the
/// gateway may write in (it creates `processing/`, `done/` and `rejected/` inside), and every
/// mapping it names exists. The settings' shape is `Config::validate`'s.
fn folders(config: &Config, f: &mut Findings) {
    let mappings = crate::rulebook::load_mappings(config).ok();
    for a in &config.agencies {
        let Some(folder) = &a.folder else { continue };
        let inbox = &folder.inbox;
        let mut ok = true;
        if !inbox.is_dir() {
            f.errors.push(format!(
                "agency {}: folder inbox {} is not a folder: create it (the gateway creates processing/, done/ and rejected/ inside it)",
                a.id,
                inbox.display()
            ));
            ok = false;
        } else {
            let probe = inbox.join(format!(".credit-gateway-check-{}", std::process::id()));
            match std::fs::write(&probe, b"") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => {
                    f.errors.push(format!(
                        "agency {}: folder inbox {} is not writable by this user: {e}",
                        a.id,
                        inbox.display()
                    ));
                    ok = false;
                }
            }
        }
        if let Some(set) = &mappings {
            let named = folder
                .mapping
                .iter()
                .chain(folder.routes.iter().map(|r| &r.mapping));
            for m in named {
                if set.get(m).is_none() {
                    f.errors.push(format!(
                        "agency {}: folder names mapping {m:?}, which is not loaded",
                        a.id
                    ));
                    ok = false;
                }
            }
        }
        if ok {
            f.checked.push(format!(
                "agency {}: folder {} (every {} ms{})",
                a.id,
                inbox.display(),
                folder.poll_interval_ms,
                if folder.require_check_file {
                    ", check files required"
                } else {
                    ""
                }
            ));
        }
    }
}
