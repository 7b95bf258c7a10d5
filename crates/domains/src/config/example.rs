//! `credit-gateway config example`: the default configuration as a file, every line commented
//! out and every setting documented. `credit-gateway.example.toml` is its output (a test keeps
//! them equal).

use super::Config;

/// One line of documentation per setting, shown above it in the example file.
const SETTING_DOCS: &[(&str, &str)] = &[
    ("server", "The agency API (HTTPS, client certificate required) and the admin endpoints."),
    ("server.listen", "Agency API address."),
    ("server.admin_listen", "Health, metrics, the operator API and the console (/console); loopback unless admin_tls."),
    ("server.admin_tls", "HTTPS on the admin listener with the server certificate: required off loopback (operators sign in with passwords)."),
    (".operators", "Operators of the console and operator API: [[operators]] name, role (viewer | operator | reviewer | auditor) and password_hash (credit-gateway operators hash-password); see the end of this file."),
    ("server.max_body_bytes", "Larger request bodies get 413 without being read whole."),
    ("server.max_connections", "Established connections; one beyond waits up to header_read_timeout_ms for a place (still counted in max_handshakes), then is closed."),
    ("server.max_connections_per_agency", "One agency's share of them; certificates naming no agency share 8."),
    ("server.max_inflight_mb", "Request bodies in flight at once (until committed), bounding the memory of work in flight; when full a push waits inflight_wait_ms, then gets 503 busy. 0: unbounded."),
    ("server.header_read_timeout_ms", "A client that has sent nothing (right after the TLS handshake too) or not all its request headers by then is disconnected."),
    ("server.body_read_timeout_ms", "A request body not received by then gets 408."),
    ("server.tls_handshake_timeout_ms", "A TLS handshake not finished by then (counted from the accept: a silent connection too) is dropped."),
    ("server.max_handshakes", "Connections still in their TLS handshake at once; when full, the oldest silent one (else the oldest) is closed to make room, so silent sockets never keep agencies waiting."),
    ("server.max_connection_age_ms", "An established connection is closed gracefully after this long (in-flight requests finish); connections whose client certificate a SIGHUP reload no longer accepts are closed at once."),
    ("server.shutdown_grace_ms", "On SIGTERM/ctrl-c, in-flight requests get this long to finish."),
    ("ingest", "What one batch may cost (issue #31): peak memory follows from these and server.max_inflight_mb, not from what a sender writes (docs/operate/hardening.md)."),
    ("ingest.max_records_per_batch", "Records in one batch; one more and the batch is refused whole (413 too_many_records) before any record is validated."),
    ("ingest.max_values_per_batch", "JSON values (or XML elements and attributes) one batch may hold: bounds the memory of parsing (413 document_limit)."),
    ("ingest.max_object_members", "Members of one JSON object or array, children of one XML element: a record over it is rejected, a document refused."),
    ("ingest.max_listed_rejections", "Rejected records listed one by one in a receipt and its audit entry; the rest are counted by field and reason."),
    ("ingest.max_file_mb", "The largest .xlsx or CSV file POST /v1/files takes (docs/integrate/files.md); written to the data directory as it arrives, never held in memory, removed once taken; larger: 413 payload_too_large."),
    ("ingest.max_file_rows", "Records (non-blank rows) of one file; one more refuses the file (413 file_limit) before anything of it is stored. A file is stored in chunks of at most max_records_per_batch rows (and 2,000)."),
    ("ingest.max_xlsx_unpacked_mb", "What an .xlsx's parts may unpack to together (a ZIP bomb is refused before anything is unpacked); its shared-string table, part of it, is held in memory while the file is read."),
    ("ingest.files_at_once", "Files received and read at once; another waits server.inflight_wait_ms, then gets 503 busy."),
    ("ingest.file_read_timeout_ms", "A file's body must arrive within this long, else 408 body_timeout (server.body_read_timeout_ms is for pushes)."),
    ("storage", "Where the gateway's state lives: sled (embedded, the default) or PostgreSQL (several nodes); postgres_url = \"postgres://user:password@host/db?sslmode=require\" (or the environment variable CREDIT_GATEWAY_POSTGRES_URL), postgres_ca = \"db-ca.pem\" (TLS to the database) and node = \"name\" are optional."),
    ("storage.engine", "sled (one process, zero set-up) or postgres (several nodes on one database)."),
    ("storage.postgres_pool_size", "Connections each node keeps to PostgreSQL (its writer has one more)."),
    ("storage.lease_ttl_ms", "How long a node's leases (deliveries per destination, timers, evaluation) last unrenewed: a dead node's work moves to another within this time."),
    ("storage.data_dir", "The sled database folder; with PostgreSQL the node's local folder (admin address, CLI token)."),
    ("storage.durability", "process_crash (sled flush, survives kill -9) or power_loss (also fsync every group commit)."),
    ("storage.cache_mb", "sled's page cache, most of the gateway's memory."),
    ("storage.commit_stuck_ms", "A commit or flush running longer makes the gateway not ready (error log, gateway_commit_stuck_seconds) until it ends."),
    ("storage.min_free_mb", "Free space kept on the data filesystem: below it, 503 storage_full and not ready (and no start), so sled never meets a full disk."),
    ("tls", "Certificates. crl = \"certs/crl.pem\" adds a revocation list; SIGHUP reads this section of the file again and reloads them all (connections of a certificate no longer accepted are closed)."),
    ("tls.certs_dir", "Development certificates are created here when absent, and read from here."),
    ("tls.generate_dev_certs", "Create a development CA and certificates when absent; false in production."),
    ("validation", "Identifiers."),
    ("validation.uscc_exceptions", "Real unified social credit codes that fail the GB 32100 check but must be accepted."),
    ("validation.resident_id_exceptions", "Real resident ID numbers that fail the GB 11643 check but must be accepted."),
    ("mappings", "Mapping files (mappings/README.md); the built-in copies are used when the folder is absent."),
    ("mappings.dir", "Also holds rules/ (sharing, disclosure, public-notice), outbound/ (formats) and calendar/."),
    ("log", "Logs go to stderr (journald under systemd); file = \"/var/log/credit-gateway/gateway.log\" writes them to that file instead, rotated by size (read at start only; docs/operate/packaging.md)."),
    ("log.format", "text or json."),
    ("log.filter", "A tracing filter such as info or credit_gateway=debug; RUST_LOG overrides it."),
    ("log.max_file_mb", "With file: the size (MiB) past which gateway.log becomes gateway.log.1 (lines are never split)."),
    ("log.max_files", "With file: rotated files kept (gateway.log.1 ... gateway.log.N); older ones are deleted."),
    ("sharing", "Delivery to the platforms; rules =, disclosure = and public_notice = override mappings/rules/*.toml (SIGHUP reloads them)."),
    ("sharing.retry_base_ms", "First retry delay; doubles with jitter on every failure."),
    ("sharing.retry_max_ms", "Longest retry delay."),
    ("sharing.request_timeout_ms", "A delivery not answered by then is retried."),
    ("sharing.poll_interval_ms", "How often an idle worker looks for shares (new shares also wake it)."),
    ("corrections", "GD Art. 31; calendar_dir = and alert_webhook = (plain HTTP) are optional."),
    ("corrections.working_days", "Corrections must reach the platforms within this many working days."),
    ("corrections.medical_insurance_agencies", "Whose information travels along the chain; others' corrections go to the medical-insurance platform."),
    ("corrections.check_interval_ms", "How often deadlines are checked (metrics, warnings)."),
    ("corrections.dangerous_manual_clock", "TEST BUILDS ONLY (feature test-clock): time is set through POST /dangerous/clock on the admin port; a release build refuses to start with it on."),
    ("lifecycle", "Public-notice periods, retention and exit (LS Arts. 20, 27): the publication ledger's timers."),
    ("lifecycle.check_interval_ms", "How often due timers (ends of notice periods and retention) are fired."),
    ("objections", "GD Arts. 32-34, LS Arts. 21-23; rules = (deadlines file) and alert_webhook = (plain HTTP) are optional."),
    ("objections.forwarders", "Credit platforms that may forward objections (the medical-insurance agencies always may)."),
    ("objections.check_interval_ms", "How often review deadlines are checked (metrics, warnings)."),
    ("repairs", "Credit repair, GD Arts. 35-39, LS Arts. 36-42; rules = (deadlines and eligibility) and alert_webhook = are optional."),
    ("repairs.check_interval_ms", "How often decisions are checked and finished publicities completed."),
    ("evaluation", "Credit evaluation, GD Arts. 17-22, 29; LS Arts. 19-21, 27, 30; profiles = (scoring profiles folder, default <mappings.dir>/scoring) is optional."),
    ("evaluation.enabled", "Compute grades from the archive, answer authorized queries, run the yearly cycle."),
    ("evaluation.agency", "The agency id results, published results and linked records are recorded under (no connecting agency may use it)."),
    ("evaluation.check_interval_ms", "How often changed subjects and due evaluation timers are taken up."),
    ("evaluation.cycle_batch", "Subjects evaluated per step of the yearly cycle."),
    ("evaluation.cycle_pace_ms", "Pause between steps of the yearly cycle (spreads a province's re-evaluation out)."),
    ("evaluation.authorization_keys", "Ed25519 public keys (PEM) of the authorized-query token issuers (GD Art. 21); see `credit-gateway authz keygen`."),
    ("evaluation.authorization_issuers", "Accepted `iss` values of authorization tokens."),
    ("evaluation.publishers", "Agencies that may publish a year's results through the API (LS Art. 24)."),
    ("agencies", "Who may connect. Giving any [[agencies]] replaces the whole default list."),
    ("agencies.id", "Becomes source.agency of every record the agency sends."),
    ("agencies.cert_subject_cn", "Identify by client certificate subject CN (or cert_sha256 = \"<hex fingerprint>\")."),
    ("agencies.mappings", "Mapping ids the agency may push."),
    ("agencies.read_archive", "May read subject archives (GET /v1/subjects/...); correct_others = true also lets it correct other agencies' records."),
    ("agencies.requests_per_second", "Rate limit; over it, 429 with Retry-After."),
    ("destinations", "Platforms shares go to. Giving any [[destinations]] replaces the defaults."),
    ("destinations.role", "credit_platform (by region and rules) or medical_insurance_platform (corrections of outside information)."),
    ("destinations.url", "HTTPS endpoint; ca =, client_cert =, client_key = default to the development certificates."),
    ("destinations.region", "A province code receives the whole province, a city code its city."),
    ("destinations.batch_size", "Shares per delivery request."),
    ("destinations.format", "An outbound format in mappings/outbound/ instead of canonical JSON (e.g. shuanggongshi-xml)."),
];

/// The default configuration as a file with every line commented out, each setting documented.
pub fn example_config() -> String {
    let body = toml::to_string(&Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# credit-gateway configuration. Every setting is shown with its default, commented out.\n\
         # Copy to credit-gateway.toml and uncomment what you change. Unknown keys are refused.\n\
         # Printed by `credit-gateway config example`.\n\n",
    );
    let mut section = String::new();
    let mut documented_sections = std::collections::HashSet::new();
    for line in body.lines() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        let header = line.trim_matches(|c| c == '[' || c == ']');
        if line.starts_with('[') {
            section = header.to_string();
            if documented_sections.insert(section.clone()) {
                if let Some((_, doc)) = SETTING_DOCS.iter().find(|(k, _)| *k == section) {
                    out.push_str(&format!("## {doc}\n"));
                }
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            let path = format!("{section}.{}", key.trim());
            if let Some((_, doc)) = SETTING_DOCS.iter().find(|(k, _)| *k == path) {
                // Repeated tables ([[agencies]]) are documented at their first entry only.
                if documented_sections.insert(path) {
                    out.push_str(&format!("#   {doc}\n"));
                }
            }
        }
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(
        "\n## An operator (give as many as needed; the hash is printed by\n\
         ## `echo 'their password' | credit-gateway operators hash-password`).\n\
         ##   [[operators]]\n\
         ##   name = \"zhang.san\"\n\
         ##   role = \"operator\"\n\
         ##   password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$...\"\n",
    );
    out
}
