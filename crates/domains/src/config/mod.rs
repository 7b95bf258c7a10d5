//! The gateway's configuration: one TOML file (`credit-gateway.toml`), every field optional, every
//! default a named constant, unknown fields refused. The whole file is validated at start-up and
//! every problem reported at once (the process exits non-zero).
//!
//! With no file at all the gateway runs on embedded defaults: API on 127.0.0.1:8443 (mutual TLS),
//! admin on 127.0.0.1:9090 (loopback, plain HTTP), sled under `./data`, development certificates in
//! `./certs`, mappings from `./mappings` (or the built-in copies), and the six default agencies
//! below. `credit-gateway.example.toml` shows every default.

pub mod example;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::telemetry::{LogConfig, DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_FILE_MB};

pub const DEFAULT_CONFIG_FILE: &str = "credit-gateway.toml";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "data";
pub const DEFAULT_CERTS_DIR: &str = "certs";
pub const DEFAULT_MAPPINGS_DIR: &str = "mappings";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// `server.max_inflight_mb`.
pub const DEFAULT_MAX_INFLIGHT_MB: u64 = 4;
/// `server.inflight_wait_ms`.
pub const DEFAULT_INFLIGHT_WAIT_MS: u64 = 5_000;
/// `ingest.max_records_per_batch`.
pub const DEFAULT_MAX_RECORDS_PER_BATCH: usize = 10_000;
/// `ingest.max_values_per_batch`.
pub const DEFAULT_MAX_VALUES_PER_BATCH: usize = 1_000_000;
/// `ingest.max_object_members`.
pub const DEFAULT_MAX_OBJECT_MEMBERS: usize = 1_000;
/// `ingest.max_listed_rejections`.
pub const DEFAULT_MAX_LISTED_REJECTIONS: usize = 1_000;
/// `ingest.max_file_mb`.
pub const DEFAULT_MAX_FILE_MB: u64 = 256;
/// `ingest.max_file_rows`.
pub const DEFAULT_MAX_FILE_ROWS: usize = 1_000_000;
/// `ingest.max_xlsx_unpacked_mb`.
pub const DEFAULT_MAX_XLSX_UNPACKED_MB: u64 = 256;
/// `ingest.files_at_once`.
pub const DEFAULT_FILES_AT_ONCE: usize = 2;
/// `ingest.file_read_timeout_ms`.
pub const DEFAULT_FILE_READ_TIMEOUT_MS: u64 = 600_000;
/// `storage.min_free_mb`.
pub const DEFAULT_MIN_FREE_MB: u64 = 256;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Connections not yet established (in their TLS handshake) at once.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;
/// An established connection is closed gracefully after this long (5 minutes).
pub const DEFAULT_MAX_CONNECTION_AGE_MS: u64 = 300_000;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 200;
pub const DEFAULT_BURST: u32 = 400;
/// A real code from an early pilot area that fails the GB 32100 check (MISSION.md).
pub const DEFAULT_USCC_EXCEPTIONS: [&str; 1] = ["91350211M00013FA1N"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// What one batch may cost: records, parsed values, members, receipt size (issue #31).
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub tls: TlsConfig,
    pub validation: ValidationConfig,
    pub mappings: MappingsConfig,
    pub log: LogConfig,
    /// The agencies allowed to connect. Giving any replaces the whole default list.
    pub agencies: Vec<AgencyConfig>,
    pub sharing: SharingConfig,
    pub corrections: CorrectionsConfig,
    pub lifecycle: LifecycleConfig,
    pub objections: ObjectionsConfig,
    pub repairs: RepairsConfig,
    pub evaluation: EvaluationConfig,
    /// Commercial cryptography: the algorithm suite and where the keys come from.
    pub crypto: CryptoConfig,
    /// Who may sign in to the operator console and the operator API (password hashes, argon2id).
    pub operators: Vec<OperatorConfig>,
    /// The public credit platforms shares are delivered to. Giving any replaces the defaults.
    pub destinations: Vec<DestinationConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingConfig {
    /// Which accepted records are shared, on which channel (default `<mappings.dir>/rules/sharing.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// The disclosure filter per channel, LS Arts. 24-27 (default `<mappings.dir>/rules/disclosure.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<PathBuf>,
    /// Public-notice periods, severity and retention (default `<mappings.dir>/rules/public-notice.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_notice: Option<PathBuf>,
    /// First retry delay; doubles on every failure (with jitter) up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// A delivery request not answered by then counts as failed and is retried.
    pub request_timeout_ms: u64,
    /// How often an idle delivery worker looks for new shares (new shares also wake it at once).
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrectionsConfig {
    /// GD Art. 31: corrections reach the platforms within this many working days.
    pub working_days: u32,
    /// One `YYYY.toml` per year of the State Council holiday schedule (default
    /// `<mappings.dir>/calendar`, else the built-in 2024-2026 files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar_dir: Option<PathBuf>,
    /// Agencies whose information is the medical-insurance side's own: their corrections travel
    /// along the chain to the credit platforms. Corrections of anyone else's information are
    /// forwarded to the destinations with role `medical_insurance_platform`.
    pub medical_insurance_agencies: Vec<String>,
    /// How often deadlines are checked (metrics, warnings).
    pub check_interval_ms: u64,
    /// Optional plain-HTTP URL POSTed a JSON alert when a correction has less than one working day
    /// left or is overdue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
    /// TEST BUILDS ONLY (the `test-clock` feature): the clock is set by hand through `POST
    /// /dangerous/clock?set=RFC3339` on the admin port (the host's CLI token only) instead of
    /// following the system clock. A release build refuses to start with it on.
    pub dangerous_manual_clock: bool,
}

/// Objections (GD Arts. 32-34; LS Arts. 21-23).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectionsConfig {
    /// Filing window and review deadlines by region (default `<mappings.dir>/rules/objections.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// Credit platforms that may forward objections about information the gateway provided
    /// (besides the agencies in `corrections.medical_insurance_agencies`).
    pub forwarders: Vec<String>,
    /// How often review deadlines are checked (metrics, warnings).
    pub check_interval_ms: u64,
    /// Optional plain-HTTP URL POSTed a JSON alert when a review has less than one working day
    /// left or is overdue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
}

impl Default for ObjectionsConfig {
    fn default() -> Self {
        Self {
            rules: None,
            forwarders: vec!["provincial_credit_platform".into()],
            check_interval_ms: 60_000,
            alert_webhook: None,
        }
    }
}

/// Credit repair (GD Arts. 35-39; LS Arts. 36-42).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairsConfig {
    /// Deadlines and eligibility rules (default `<mappings.dir>/rules/repair.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// How often decisions are checked and finished publicities completed.
    pub check_interval_ms: u64,
    /// Optional plain-HTTP URL POSTed a JSON alert when a decision has less than one working day
    /// left or is overdue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
}

impl Default for RepairsConfig {
    fn default() -> Self {
        Self {
            rules: None,
            check_interval_ms: 60_000,
            alert_webhook: None,
        }
    }
}

/// What an operator may do (see `crate::operators`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Reads, with personal identifiers masked.
    Viewer,
    /// Reads (masked) and the gateway-side actions: replay, exits, objections, repairs, publication.
    Operator,
    /// Reads with full values (each one audited) and audit verification.
    Auditor,
    /// The level above (复核, GD Art. 34): resolves the objections under its review; reads masked.
    Reviewer,
}

/// One operator who signs in to the console.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub name: String,
    pub role: OperatorRole,
    /// An argon2id PHC string (`credit-gateway operators hash-password` prints one).
    pub password_hash: String,
}

/// Credit evaluation (GD Arts. 17-22, 29; LS Arts. 19-21, 27, 30).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Compute grades from the archive. Off: nothing is evaluated, queried or published.
    pub enabled: bool,
    /// The scoring profiles folder (default `<mappings.dir>/scoring`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<PathBuf>,
    /// The agency id results, published results and linked records are recorded under.
    pub agency: String,
    /// How often changed subjects and due evaluation timers are taken up.
    pub check_interval_ms: u64,
    /// Subjects evaluated per step of the yearly cycle.
    pub cycle_batch: usize,
    /// Pause between two steps of the yearly cycle (spreads a province's re-evaluation out).
    pub cycle_pace_ms: u64,
    /// Ed25519 public keys (PEM) of the authorized-query token issuers (GD Art. 21). None: the
    /// authorized query answers 503 authorization_not_configured.
    pub authorization_keys: Vec<PathBuf>,
    /// Accepted `iss` values of authorization tokens.
    pub authorization_issuers: Vec<String>,
    /// Agencies that may publish a year's results through the API (LS Art. 24: the city medical
    /// security department publishes).
    pub publishers: Vec<String>,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            profiles: None,
            agency: "credit_evaluation".into(),
            check_interval_ms: 2_000,
            cycle_batch: 256,
            cycle_pace_ms: 0,
            authorization_keys: Vec::new(),
            authorization_issuers: vec!["medical_insurance_platform".into()],
            publishers: vec!["medical_insurance".into()],
        }
    }
}

/// The legal life of shared records: public-notice periods, retention, exit (publication ledger).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How often due timers (ends of notice periods and retention) are fired.
    pub check_interval_ms: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 60_000,
        }
    }
}

impl Default for CorrectionsConfig {
    fn default() -> Self {
        Self {
            working_days: 3,
            calendar_dir: None,
            medical_insurance_agencies: vec!["medical_insurance".into()],
            check_interval_ms: 60_000,
            alert_webhook: None,
            dangerous_manual_clock: false,
        }
    }
}

/// What a destination is in the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationRole {
    /// A public credit information platform (GD Art. 6): receives shares by region and rule.
    #[default]
    CreditPlatform,
    /// The medical-insurance information platform: receives corrections of information that came
    /// from outside agencies (GD Art. 31).
    MedicalInsurancePlatform,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    #[serde(default)]
    pub role: DestinationRole,
    /// Short id: `[a-z0-9_]+`.
    pub id: String,
    pub name: String,
    /// How shares reach the platform: `https` (POSTed batches, the default) or `file` (batch
    /// files in `outgoing_dir`, answered by feedback files in `feedback_dir`: GB/T 39443-2020's
    /// file interface, docs/integrate/files-out.md).
    #[serde(default, skip_serializing_if = "DestinationKind::is_https")]
    pub kind: DestinationKind,
    /// HTTPS endpoint that accepts share batches (POST); empty for a `file` destination.
    #[serde(default)]
    pub url: String,
    /// The 6-digit division code this platform serves: a province code (`440000`) receives every
    /// record of the province, a city code (`440100`) those of the city and its districts.
    pub region: String,
    /// CA that signed the platform's server certificate (default `<certs_dir>/ca.pem`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The gateway's client certificate for this platform (default the development
    /// `<certs_dir>/clients/credit-gateway.pem` and its key).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Delivery requests per second.
    #[serde(default = "default_dest_rps")]
    pub requests_per_second: u32,
    /// Shares per delivery request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// An outbound mapping id in `mappings/outbound/` that renders this platform's format;
    /// canonical JSON when absent. HTTPS destinations only.
    #[serde(default)]
    pub format: Option<String>,
    /// `file` destinations: the folder the gateway writes batch files and their manifests into
    /// (the platform's pick-up folder, e.g. a front-end server's exchange folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_dir: Option<PathBuf>,
    /// `file` destinations: the folder the platform writes its feedback files into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_dir: Option<PathBuf>,
    /// `file` destinations: the sender code that starts every file name
    /// (`{sender}_{destination}_{yyyyMMddHHmmss}_{seq}`); `[A-Za-z0-9-]+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sender: Option<String>,
    /// `file` destinations: a file is written once `batch_size` shares wait, or when the first
    /// of fewer has waited this long (urgent shares: corrections, withdrawals, marks, never wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_wait_ms: Option<u64>,
    /// `file` destinations: a file without feedback this long after it was written (on the
    /// gateway's clock) counts as a failed attempt: taken back if not picked up, and retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_timeout_ms: Option<u64>,
}

/// How a destination receives its shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// Batches POSTed over mutual-TLS HTTPS (GB/T 39443-2020's service interface).
    #[default]
    Https,
    /// Batch files in an outgoing folder, feedback files back (GB/T 39443-2020's file interface).
    File,
}

impl DestinationKind {
    fn is_https(&self) -> bool {
        *self == DestinationKind::Https
    }
}

/// Default sender code in outgoing file names.
pub const DEFAULT_FILE_SENDER: &str = "credit-gateway";
/// Default longest wait before a batch file with fewer than `batch_size` shares is written.
pub const DEFAULT_BATCH_WAIT_MS: u64 = 60_000;
/// Default time a platform has to answer a file with its feedback file.
pub const DEFAULT_FEEDBACK_TIMEOUT_MS: u64 = 3_600_000;

impl DestinationConfig {
    pub fn is_file(&self) -> bool {
        self.kind == DestinationKind::File
    }
    pub fn file_sender(&self) -> &str {
        self.file_sender.as_deref().unwrap_or(DEFAULT_FILE_SENDER)
    }
    pub fn batch_wait_ms(&self) -> u64 {
        self.batch_wait_ms.unwrap_or(DEFAULT_BATCH_WAIT_MS)
    }
    pub fn feedback_timeout_ms(&self) -> u64 {
        self.feedback_timeout_ms
            .unwrap_or(DEFAULT_FEEDBACK_TIMEOUT_MS)
    }
    /// Where this destination is reached, for operators.
    pub fn target(&self) -> String {
        match (&self.kind, &self.outgoing_dir) {
            (DestinationKind::File, Some(dir)) => format!("file:{}", dir.display()),
            _ => self.url.clone(),
        }
    }
}

pub const DEFAULT_DEST_RPS: u32 = 100;
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Subject CN of the gateway's own development client certificate (for delivery).
pub const GATEWAY_CLIENT_CN: &str = "credit-gateway";

fn default_dest_rps() -> u32 {
    DEFAULT_DEST_RPS
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl Default for SharingConfig {
    fn default() -> Self {
        Self {
            rules: None,
            disclosure: None,
            public_notice: None,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            request_timeout_ms: 10_000,
            poll_interval_ms: 500,
        }
    }
}

/// The default platforms (GD Art. 6): the provincial public credit platform and the Guangzhou
/// city platform, on the ports the reference receiver uses in the README demo.
pub fn default_destinations() -> Vec<DestinationConfig> {
    let dest = |id: &str, name: &str, url: &str, region: &str| DestinationConfig {
        role: DestinationRole::CreditPlatform,
        id: id.into(),
        name: name.into(),
        url: url.into(),
        region: region.into(),
        ca: None,
        client_cert: None,
        client_key: None,
        requests_per_second: DEFAULT_DEST_RPS,
        batch_size: DEFAULT_BATCH_SIZE,
        format: None,
        kind: DestinationKind::Https,
        outgoing_dir: None,
        feedback_dir: None,
        file_sender: None,
        batch_wait_ms: None,
        feedback_timeout_ms: None,
    };
    let mut mi = dest(
        "medical_insurance_platform",
        "广东省医疗保障信息平台",
        "https://localhost:9445/v1/shares",
        "440000",
    );
    mi.role = DestinationRole::MedicalInsurancePlatform;
    vec![
        dest(
            "provincial",
            "广东省公共信用信息平台",
            "https://localhost:9443/v1/shares",
            "440000",
        ),
        dest(
            "guangzhou",
            "广州市公共信用信息平台",
            "https://localhost:9444/v1/shares",
            "440100",
        ),
        mi,
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The agency API (HTTPS, client certificate required).
    pub listen: String,
    /// Health, metrics, the operator API and the console.
    pub admin_listen: String,
    /// Serve the admin listener over HTTPS with the server certificate. Required for any address
    /// other than loopback: passwords and session cookies never cross a network in clear.
    pub admin_tls: bool,
    /// Larger request bodies get 413 without being read whole.
    pub max_body_bytes: u64,
    /// Established connections at once. One beyond waits up to `header_read_timeout_ms` for a
    /// place (still counted in `max_handshakes`), then is closed.
    pub max_connections: usize,
    /// Open connections one agency may hold, so that one agency (or a stolen certificate) cannot
    /// take every slot; beyond it a new connection is answered `503 agency_connections_full`
    /// and closed. Certificates naming no agency share 8 slots and get only `403 unknown_agency`.
    pub max_connections_per_agency: usize,
    /// Request bodies being read, parsed and committed at once, in MiB (declared lengths; an
    /// undeclared body counts as `max_body_bytes`). When full, a push waits up to
    /// `inflight_wait_ms`, then gets `503 busy` with `Retry-After`. Bounds the memory of work in
    /// flight whatever the number of clients. 0: unbounded.
    pub max_inflight_mb: u64,
    pub inflight_wait_ms: u64,
    /// A client that has not sent its request headers by then is disconnected.
    pub header_read_timeout_ms: u64,
    /// A request body not fully received by then gets 408.
    pub body_read_timeout_ms: u64,
    /// A TLS handshake (counted from the accept, so a silent connection too) not finished by
    /// then is dropped.
    pub tls_handshake_timeout_ms: u64,
    /// Connections not yet established (from accept to the end of the TLS handshake) at once.
    /// When full, a new connection is never kept waiting: the oldest silent one (no byte yet),
    /// else the oldest in its handshake, is closed to make room. So a flood of silent TCP
    /// connections cannot keep agencies out, and open sockets stay under
    /// `max_connections + max_handshakes`.
    pub max_handshakes: usize,
    /// An established connection is closed gracefully (in-flight requests finish) after this
    /// long, so none outlives a revocation, a configuration change or a rebalancing for longer.
    pub max_connection_age_ms: u64,
    /// On SIGTERM/ctrl-c, in-flight requests get this long to finish.
    pub shutdown_grace_ms: u64,
}

/// The bounds of one batch. With them, what a batch costs follows from the configuration, not
/// from what a sender writes: 300 KB of `[{},{},...]` (100,000 records) held 1.1 GiB before them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Records in one batch. One more and the batch is refused whole (`413 too_many_records`)
    /// before any record is mapped or validated.
    pub max_records_per_batch: usize,
    /// JSON values (objects, arrays, strings, numbers...) the records of one batch may hold, or
    /// XML elements and attributes of one document: bounds the memory of parsing. Over it:
    /// `413 document_limit`.
    pub max_values_per_batch: usize,
    /// Members of one JSON object or array, children of one XML element. A record over it is
    /// rejected; outside the records, the document is refused (`413 document_limit`).
    pub max_object_members: usize,
    /// Rejected records listed one by one in a receipt and its audit entry; the rest are counted
    /// by field and reason (`rejected_not_listed`).
    pub max_listed_rejections: usize,
    /// The largest file `POST /v1/files` takes (issue #29), `.xlsx` or CSV, in MiB. It is written
    /// to the data directory as it arrives (never held in memory) and removed once taken.
    pub max_file_mb: u64,
    /// Records (non-blank rows) of one file; one more refuses the file (`413 file_limit`) before
    /// anything of it is stored.
    pub max_file_rows: usize,
    /// What an `.xlsx`'s parts may unpack to together, in MiB (a ZIP bomb is refused before
    /// anything is unpacked). calamine holds the shared-string table, part of it, in memory
    /// while the file is read.
    pub max_xlsx_unpacked_mb: u64,
    /// Files received and read at once; another waits `server.inflight_wait_ms`, then gets
    /// `503 busy`.
    pub files_at_once: usize,
    /// A file's body must arrive within this long (its size allows more than
    /// `server.body_read_timeout_ms`); else `408 body_timeout`.
    pub file_read_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_records_per_batch: DEFAULT_MAX_RECORDS_PER_BATCH,
            max_values_per_batch: DEFAULT_MAX_VALUES_PER_BATCH,
            max_object_members: DEFAULT_MAX_OBJECT_MEMBERS,
            max_listed_rejections: DEFAULT_MAX_LISTED_REJECTIONS,
            max_file_mb: DEFAULT_MAX_FILE_MB,
            max_file_rows: DEFAULT_MAX_FILE_ROWS,
            max_xlsx_unpacked_mb: DEFAULT_MAX_XLSX_UNPACKED_MB,
            files_at_once: DEFAULT_FILES_AT_ONCE,
            file_read_timeout_ms: DEFAULT_FILE_READ_TIMEOUT_MS,
        }
    }
}

impl IngestConfig {
    /// The parsing limits of one batch.
    pub fn limits(&self) -> crate::mapping::Limits {
        crate::mapping::Limits {
            max_records: self.max_records_per_batch,
            max_members: self.max_object_members,
            max_values: self.max_values_per_batch,
            ..crate::mapping::Limits::default()
        }
    }

    /// The bounds of one file.
    pub fn file_bounds(&self) -> crate::files::Bounds {
        crate::files::Bounds {
            max_rows: self.max_file_rows,
            max_unpacked_bytes: self.max_xlsx_unpacked_mb.saturating_mul(1024 * 1024),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// `national` (SM3 chain, SM2 signatures, SM4-GCM at rest, HMAC-SM3 lookup) or
    /// `international` (SHA-256, Ed25519, AES-256-GCM, HMAC-SHA-256). A change takes effect at the
    /// next start: new entries, signatures and sealed values use the new suite; older ones stay
    /// verifiable and readable.
    pub suite: crate::crypto::Suite,
    /// The key file (TOML, mode 0600); default `<tls.certs_dir>/gateway-keys.toml`. Keep it out
    /// of the data directory's backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A program (and its arguments) that prints the key file on standard output: the hook for a
    /// KMS or a crypto card. When given, the key file is not read or written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_command: Vec<String>,
    /// Create the key file, and any key the suite lacks, at start (the embedded defaults, like
    /// `tls.generate_dev_certs`).
    pub generate_keys: bool,
    /// Values looked at per step by the background re-encryption after a rotation.
    pub reencrypt_batch: usize,
    /// Pause between its steps (ms), so ingestion keeps the writer.
    pub reencrypt_pace_ms: u64,
}

impl Default for CryptoConfig {
    fn default() -> Self {
        Self {
            suite: crate::crypto::Suite::National,
            key_file: None,
            key_command: Vec::new(),
            generate_keys: true,
            reencrypt_batch: 500,
            reencrypt_pace_ms: 50,
        }
    }
}

impl Config {
    /// Where the keys come from.
    pub fn key_source(&self) -> crate::crypto::keyring::KeySource {
        if self.crypto.key_command.is_empty() {
            crate::crypto::keyring::KeySource::File(self.key_file())
        } else {
            crate::crypto::keyring::KeySource::Command(self.crypto.key_command.clone())
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.crypto
            .key_file
            .clone()
            .unwrap_or_else(|| self.tls.certs_dir.join("gateway-keys.toml"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sled` (embedded, one process, the default) or `postgres` (several nodes on one
    /// database; `postgres_url` says where).
    pub engine: StorageEngine,
    /// The PostgreSQL database when `engine = "postgres"`
    /// (`postgres://user:password@host:5432/credit`); when absent, the environment variable
    /// `CREDIT_GATEWAY_POSTGRES_URL` (keeps the password out of the file). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    /// Connections each node keeps to PostgreSQL (its writer has one more).
    pub postgres_pool_size: usize,
    /// The CA certificate (PEM) of the database server: connections then use TLS, checking the
    /// server's certificate and host name (add `sslmode=require` to the URL to refuse a server
    /// without TLS). Absent: no TLS (a database on the same host or a private network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_ca: Option<PathBuf>,
    /// This node's name in the delivery and timer leases (default: host name and process id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How long a node's leases (a destination's deliveries, timers, evaluation) last without
    /// renewal: after a node dies, another takes its work over within this time.
    pub lease_ttl_ms: u64,
    /// The sled database folder; with PostgreSQL, the node's local folder (admin address, CLI
    /// token, manual clock of the tests).
    pub data_dir: PathBuf,
    /// What an acknowledgement survives: `process_crash` (sled's flush, sync_file_range on Linux)
    /// or `power_loss` (also fsync the data file in every group commit; slower, see docs/operate/hardening.md and docs/benchmarks/).
    pub durability: crate::store::Durability,
    /// sled's page cache in MiB: most of the gateway's memory. Larger caches help archive reads.
    pub cache_mb: u64,
    /// Free space (MiB) kept on the data directory's filesystem: below it new work gets `503
    /// storage_full`, `/readyz` is not ready and the gateway will not start, so sled never meets a
    /// full disk; above it again the gateway resumes by itself.
    pub min_free_mb: u64,
    /// A commit or flush running longer than this makes the gateway not ready, with an error log
    /// and `gateway_commit_stuck_seconds`, until it finishes.
    pub commit_stuck_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Where development certificates are created when absent, and read from.
    pub certs_dir: PathBuf,
    /// CA that signs agency client certificates (default `<certs_dir>/ca.pem`).
    pub client_ca: Option<PathBuf>,
    /// Server certificate chain and key (default `<certs_dir>/server.pem`, `server-key.pem`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Create a development CA and certificates in `certs_dir` when they are absent. Turn off in
    /// production, where the operator provides real certificates.
    pub generate_dev_certs: bool,
    /// A certificate revocation list (PEM) for agency client certificates; revoked certificates
    /// fail the handshake. Reloaded with the certificates on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Real unified social credit codes that fail the GB 32100 check but must be accepted.
    pub uscc_exceptions: Vec<String>,
    /// Real resident ID numbers that fail the GB 11643 check but must be accepted.
    pub resident_id_exceptions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingsConfig {
    /// Mapping files; when the folder does not exist the built-in copies are used.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// Short id: `[a-z0-9_]+`; it becomes `source.agency` of every record the agency sends.
    pub id: String,
    pub name: String,
    /// Identify the agency by its client certificate's subject common name...
    #[serde(default)]
    pub cert_subject_cn: Option<String>,
    /// ...or by the SHA-256 fingerprint of the certificate (hex, colons allowed).
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// Mapping ids the agency may push.
    #[serde(default)]
    pub mappings: Vec<String>,
    /// May read subject archives (`GET /v1/subjects/...`).
    #[serde(default)]
    pub read_archive: bool,
    /// May correct records other agencies provided. Reading archives never implies it; the
    /// agencies in `corrections.medical_insurance_agencies` may always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub correct_others: bool,
    #[serde(default = "default_rps")]
    pub requests_per_second: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// The agency's watched exchange folder on a front-end server (前置机), when it hands in
    /// files by dropping them there (`[agencies.folder]`, docs/integrate/files.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderConfig>,
}

/// `folder.poll_interval_ms`.
pub const DEFAULT_FOLDER_POLL_INTERVAL_MS: u64 = 2_000;
/// `folder.settle_ms`.
pub const DEFAULT_FOLDER_SETTLE_MS: u64 = 1_000;

/// An agency's watched exchange folder (issue #29): files dropped in `inbox` are taken as if
/// handed in through `POST /v1/files` by the agency, each answered by a feedback file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The folder files are dropped in. The gateway creates `processing/`, `done/` and
    /// `rejected/` inside it (one filesystem, so every move is an atomic rename).
    pub inbox: PathBuf,
    /// The mapping of a file no `routes` pattern names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// File-name patterns (`*` any characters, `?` one), tried in order: the first that matches
    /// gives the file's mapping (`{ pattern = "*许可*.xlsx", mapping = "mi-licences" }`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<FolderRoute>,
    /// The charset of the agency's CSV files: `utf-8` or `gbk` (also gb2312, gb18030). Unset: a
    /// CSV must be UTF-8 (with or without a BOM), else it is refused with `charset_required`;
    /// the gateway never guesses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_charset: Option<String>,
    /// The worksheet of an `.xlsx` to read; unset: the first visible one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// A data file is taken only with its check file (`NAME.chk`: digest and record count)
    /// beside it. Off: a check file is verified when there is one.
    #[serde(default)]
    pub require_check_file: bool,
    /// How often the inbox is looked at.
    #[serde(default = "default_folder_poll")]
    pub poll_interval_ms: u64,
    /// A file must look the same (size and modification time) on two looks at least this far
    /// apart before it is taken: a file written in place under its final name is not taken
    /// half-written. 0: taken at the first look (temp names and check files only).
    #[serde(default = "default_folder_settle")]
    pub settle_ms: u64,
}

/// One file-name pattern of a folder and the mapping of the files it matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderRoute {
    pub pattern: String,
    pub mapping: String,
}

fn default_folder_poll() -> u64 {
    DEFAULT_FOLDER_POLL_INTERVAL_MS
}
fn default_folder_settle() -> u64 {
    DEFAULT_FOLDER_SETTLE_MS
}

fn default_rps() -> u32 {
    DEFAULT_REQUESTS_PER_SECOND
}
fn default_burst() -> u32 {
    DEFAULT_BURST
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN.into(),
            admin_listen: DEFAULT_ADMIN_LISTEN.into(),
            admin_tls: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_agency: DEFAULT_MAX_CONNECTIONS / 2,
            max_inflight_mb: DEFAULT_MAX_INFLIGHT_MB,
            inflight_wait_ms: DEFAULT_INFLIGHT_WAIT_MS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            tls_handshake_timeout_ms: DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_connection_age_ms: DEFAULT_MAX_CONNECTION_AGE_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
        }
    }
}

/// Where the gateway's state lives (`storage.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageEngine {
    /// sled in `storage.data_dir`: zero set-up, one process.
    #[default]
    Sled,
    /// PostgreSQL 15 or later (or an engine speaking its protocol): several nodes.
    Postgres,
}

/// The environment variable read when `storage.postgres_url` is absent.
pub const POSTGRES_URL_ENV: &str = "CREDIT_GATEWAY_POSTGRES_URL";

impl StorageConfig {
    /// The PostgreSQL URL: the file's, else the environment's.
    pub fn postgres_url(&self) -> Option<String> {
        self.postgres_url
            .clone()
            .or_else(|| std::env::var(POSTGRES_URL_ENV).ok())
            .filter(|u| !u.trim().is_empty())
    }

    /// This node's name in leases: `storage.node` (or host name and process id), with a random
    /// part of its own, so two processes never hold a lease as one (a configuration copied
    /// between hosts, containers with the same host name).
    pub fn node_name(&self) -> String {
        let name = self.node.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "node".into());
            format!("{host}-{}", std::process::id())
        });
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("{name}-{}", &unique[..8])
    }

    /// The PostgreSQL URL with its password replaced, for display.
    pub fn redacted_url(url: &str) -> String {
        if let Some((scheme, rest)) = url.split_once("://") {
            if let Some((credentials, host)) = rest.rsplit_once('@') {
                if let Some((user, _)) = credentials.split_once(':') {
                    return format!("{scheme}://{user}:***@{host}");
                }
            }
            return url.to_string();
        }
        // key=value form
        url.split_whitespace()
            .map(|part| match part.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            engine: StorageEngine::Sled,
            postgres_url: None,
            postgres_pool_size: 16,
            postgres_ca: None,
            node: None,
            lease_ttl_ms: 15_000,
            data_dir: DEFAULT_DATA_DIR.into(),
            durability: crate::store::Durability::ProcessCrash,
            cache_mb: crate::store::DEFAULT_CACHE_MB,
            min_free_mb: DEFAULT_MIN_FREE_MB,
            commit_stuck_ms: 30_000,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certs_dir: DEFAULT_CERTS_DIR.into(),
            client_ca: None,
            cert: None,
            key: None,
            generate_dev_certs: true,
            crl: None,
        }
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            uscc_exceptions: DEFAULT_USCC_EXCEPTIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            resident_id_exceptions: Vec::new(),
        }
    }
}

impl Default for MappingsConfig {
    fn default() -> Self {
        Self {
            dir: DEFAULT_MAPPINGS_DIR.into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            tls: TlsConfig::default(),
            validation: ValidationConfig::default(),
            mappings: MappingsConfig::default(),
            log: LogConfig::default(),
            agencies: default_agencies(),
            sharing: SharingConfig::default(),
            corrections: CorrectionsConfig::default(),
            lifecycle: LifecycleConfig::default(),
            objections: ObjectionsConfig::default(),
            repairs: RepairsConfig::default(),
            evaluation: EvaluationConfig::default(),
            crypto: CryptoConfig::default(),
            operators: Vec::new(),
            destinations: default_destinations(),
        }
    }
}

/// The default agencies (GD Art. 10): the medical-insurance platform, health, tax, market
/// supervision, a court, and the provincial public credit platform.
pub fn default_agencies() -> Vec<AgencyConfig> {
    let agency = |id: &str, name: &str, mappings: &[&str], read_archive: bool| AgencyConfig {
        id: id.into(),
        name: name.into(),
        cert_subject_cn: Some(id.into()),
        cert_sha256: None,
        mappings: mappings.iter().map(|s| s.to_string()).collect(),
        read_archive,
        correct_others: false,
        requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
        burst: DEFAULT_BURST,
        folder: None,
    };
    vec![
        agency(
            "medical_insurance",
            "医疗保障信息平台",
            &[
                "canonical",
                "mi-penalties",
                "mi-licences",
                "mi-agreement-performance",
                "mi-commitments",
                "mi-evaluations",
            ],
            true,
        ),
        agency(
            "health",
            "卫生健康委员会",
            &["health-practitioner-qualifications"],
            false,
        ),
        agency("tax", "税务局", &["tax-major-violations"], false),
        agency(
            "market_supervision",
            "市场监督管理局",
            &["market-registration", "market-abnormal-operation"],
            false,
        ),
        agency(
            "court",
            "中级人民法院",
            &["court-dishonest-debtors", "court-judgments"],
            false,
        ),
        agency(
            "provincial_credit_platform",
            "省公共信用信息平台",
            &["canonical"],
            false,
        ),
    ]
}

impl FolderConfig {
    /// What is wrong with this folder's settings, without looking at the disk or the mappings
    /// (`config check` does both).
    pub fn problems(&self, agency: &AgencyConfig) -> Vec<String> {
        let mut out = Vec::new();
        if self.inbox.as_os_str().is_empty() {
            out.push("inbox must name a folder".to_string());
        }
        if self.poll_interval_ms == 0 {
            out.push("poll_interval_ms must be above 0".to_string());
        }
        if self.mapping.is_none() && self.routes.is_empty() {
            out.push("give mapping, or routes naming a mapping per file-name pattern".to_string());
        }
        let named = self
            .mapping
            .iter()
            .chain(self.routes.iter().map(|r| &r.mapping));
        for m in named {
            if !agency.mappings.iter().any(|a| a == m) {
                out.push(format!(
                    "mapping {m:?} is not one of the agency's mappings ({}): a folder takes only what the agency may push",
                    agency.mappings.join(", ")
                ));
            }
        }
        for r in &self.routes {
            if r.pattern.trim().is_empty() {
                out.push("a route's pattern is empty".to_string());
            }
        }
        if let Some(c) = &self.csv_charset {
            if crate::files::Charset::from_label(c).is_err() {
                out.push(format!("csv_charset {c:?}: use utf-8 or gbk"));
            }
        }
        out
    }

    /// The mapping of a file name: the first route whose pattern matches, else `mapping`.
    pub fn mapping_for(&self, name: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| glob_matches(&r.pattern, name))
            .map(|r| r.mapping.as_str())
            .or(self.mapping.as_deref())
    }
}

/// A file-name pattern: `*` any characters (none too), `?` one character, anything else itself
/// (ASCII case ignored: `*.XLSX` is `*.xlsx`).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let n: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    // The classic two-pointer match with backtracking to the last `*`: linear in practice,
    // never exponential.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// A configuration problem: the operator's fault; fix the file and restart.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Load `path` if given, else `credit-gateway.toml` in the working directory if present, else
    /// the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text).map_err(|e| {
                vec![ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }]
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Config::default(),
            Err(source) => {
                return Err(vec![ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                }])
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut bad = |m: String| errs.push(ConfigError::Invalid(m));
        if self.server.listen.parse::<SocketAddr>().is_err() {
            bad(format!(
                "server.listen {:?} is not an address:port",
                self.server.listen
            ));
        }
        match self.server.admin_listen.parse::<SocketAddr>() {
            Err(_) => bad(format!(
                "server.admin_listen {:?} is not an address:port",
                self.server.admin_listen
            )),
            // Passwords and session cookies must not cross a network in clear.
            Ok(addr) if !addr.ip().is_loopback() && !self.server.admin_tls => bad(format!(
                "server.admin_listen {:?} is not a loopback address: set server.admin_tls = true (operators sign in with passwords, which never cross a network in clear), or listen on 127.0.0.1 or [::1]",
                self.server.admin_listen
            )),
            Ok(_) => {}
        }
        if self.server.max_body_bytes == 0 {
            bad("server.max_body_bytes must be above 0".into());
        }
        if self.ingest.max_records_per_batch == 0
            || self.ingest.max_values_per_batch == 0
            || self.ingest.max_object_members == 0
        {
            bad("ingest.max_records_per_batch, max_values_per_batch and max_object_members must be above 0".into());
        }
        if self.ingest.max_file_mb == 0
            || self.ingest.max_file_rows == 0
            || self.ingest.max_xlsx_unpacked_mb == 0
            || self.ingest.files_at_once == 0
            || self.ingest.file_read_timeout_ms == 0
        {
            bad("ingest.max_file_mb, max_file_rows, max_xlsx_unpacked_mb, files_at_once and file_read_timeout_ms must be above 0".into());
        }
        if self.storage.engine == StorageEngine::Postgres && self.storage.postgres_url().is_none() {
            bad(format!(
                "storage.engine = \"postgres\" needs storage.postgres_url (or the environment variable {POSTGRES_URL_ENV})"
            ));
        }
        if self.storage.lease_ttl_ms < 1_000 {
            bad("storage.lease_ttl_ms must be at least 1000".into());
        }
        if self.evaluation.agency.trim().is_empty()
            || self.agencies.iter().any(|a| a.id == self.evaluation.agency)
        {
            bad(format!(
                "evaluation.agency {:?} must be a non-empty id no connecting agency uses: results are recorded under it",
                self.evaluation.agency
            ));
        }
        let mut names = std::collections::HashSet::new();
        for o in &self.operators {
            if o.name.trim().is_empty() || !names.insert(o.name.as_str()) {
                bad(format!(
                    "operators: the name {:?} is empty or given twice",
                    o.name
                ));
            }
            if argon2::PasswordHash::new(&o.password_hash).is_err() {
                bad(format!(
                    "operators: {:?}: password_hash is not a PHC string (use `credit-gateway operators hash-password`)",
                    o.name
                ));
            }
        }
        if self.evaluation.cycle_batch == 0 || self.evaluation.check_interval_ms == 0 {
            bad("evaluation.cycle_batch and evaluation.check_interval_ms must be above 0".into());
        }
        if self.server.max_connections == 0 {
            bad("server.max_connections must be above 0".into());
        }
        if self.server.max_connections_per_agency == 0 {
            bad("server.max_connections_per_agency must be above 0".into());
        }
        if self.server.max_handshakes == 0 {
            bad("server.max_handshakes must be above 0".into());
        }
        if self.server.max_connection_age_ms < 1_000 {
            bad("server.max_connection_age_ms must be at least 1000".into());
        }
        if self.server.tls_handshake_timeout_ms == 0 {
            bad("server.tls_handshake_timeout_ms must be above 0".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bad(format!(
                "log.format {:?}: use text or json",
                self.log.format
            ));
        }
        if self.log.max_file_mb == 0 {
            bad("log.max_file_mb must be at least 1".into());
        }
        if self.log.max_files == 0 {
            bad("log.max_files must be at least 1".into());
        }
        if matches!(&self.log.file, Some(f) if f.file_name().is_none()) {
            bad("log.file must name a file (such as /var/log/credit-gateway/gateway.log)".into());
        }
        if self.agencies.is_empty() {
            bad("at least one [[agencies]] entry is needed".into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut inboxes = std::collections::HashSet::new();
        for a in &self.agencies {
            if a.id.is_empty()
                || !a
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                bad(format!("agency id {:?} must be [a-z0-9_]+", a.id));
            }
            if !seen.insert(a.id.clone()) {
                bad(format!("agency id {:?} appears twice", a.id));
            }
            if a.cert_subject_cn.is_none() && a.cert_sha256.is_none() {
                bad(format!(
                    "agency {:?}: give cert_subject_cn or cert_sha256",
                    a.id
                ));
            }
            if let Some(fp) = &a.cert_sha256 {
                if normalize_fingerprint(fp).is_none() {
                    bad(format!(
                        "agency {:?}: cert_sha256 must be 64 hex digits",
                        a.id
                    ));
                }
            }
            if a.requests_per_second == 0 || a.burst == 0 {
                bad(format!(
                    "agency {:?}: requests_per_second and burst must be above 0",
                    a.id
                ));
            }
            if let Some(folder) = &a.folder {
                for problem in folder.problems(a) {
                    bad(format!("agency {:?}: folder: {problem}", a.id));
                }
                if !inboxes.insert(folder.inbox.clone()) {
                    bad(format!(
                        "agency {:?}: folder: inbox {} is another agency's too: each agency has its own (the folder says who sent a file)",
                        a.id,
                        folder.inbox.display()
                    ));
                }
            }
        }
        let mut dest_ids = std::collections::HashSet::new();
        for d in &self.destinations {
            if d.id.is_empty()
                || !d
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                bad(format!("destination id {:?} must be [a-z0-9_]+", d.id));
            }
            if !dest_ids.insert(d.id.clone()) {
                bad(format!("destination id {:?} appears twice", d.id));
            }
            match d.kind {
                DestinationKind::Https => {
                    if !d.url.starts_with("https://") {
                        bad(format!("destination {:?}: url must be https://", d.id));
                    }
                    if d.outgoing_dir.is_some()
                        || d.feedback_dir.is_some()
                        || d.file_sender.is_some()
                        || d.batch_wait_ms.is_some()
                        || d.feedback_timeout_ms.is_some()
                    {
                        bad(format!(
                            "destination {:?}: outgoing_dir, feedback_dir, file_sender, batch_wait_ms and feedback_timeout_ms are for kind = \"file\"",
                            d.id
                        ));
                    }
                }
                DestinationKind::File => {
                    if !d.url.is_empty() || d.format.is_some() {
                        bad(format!(
                            "destination {:?}: a file destination has no url or format (its files are 双公示 CSV and canonical JSON lines)",
                            d.id
                        ));
                    }
                    match (&d.outgoing_dir, &d.feedback_dir) {
                        (Some(out), Some(back)) if out == back => bad(format!(
                            "destination {:?}: outgoing_dir and feedback_dir must differ",
                            d.id
                        )),
                        (Some(_), Some(_)) => {}
                        _ => bad(format!(
                            "destination {:?}: kind = \"file\" needs outgoing_dir and feedback_dir",
                            d.id
                        )),
                    }
                    let sender = d.file_sender();
                    if sender.is_empty()
                        || !sender
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        bad(format!(
                            "destination {:?}: file_sender {sender:?} must be [A-Za-z0-9-]+",
                            d.id
                        ));
                    }
                    if d.feedback_timeout_ms() == 0 {
                        bad(format!(
                            "destination {:?}: feedback_timeout_ms must be above 0",
                            d.id
                        ));
                    }
                }
            }
            if crate::subject::RegionCode::parse(&d.region).is_err() {
                bad(format!(
                    "destination {:?}: region {:?} is not a 6-digit division code",
                    d.id, d.region
                ));
            }
            if d.batch_size == 0 || d.requests_per_second == 0 {
                bad(format!(
                    "destination {:?}: batch_size and requests_per_second must be above 0",
                    d.id
                ));
            }
        }
        if self.corrections.working_days == 0 {
            bad("corrections.working_days must be above 0".into());
        }
        if self.sharing.retry_base_ms == 0 || self.sharing.retry_max_ms < self.sharing.retry_base_ms
        {
            bad("sharing.retry_base_ms must be above 0 and at most retry_max_ms".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    pub fn client_ca_path(&self) -> PathBuf {
        self.tls.client_ca_path()
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.tls.server_cert_path()
    }

    pub fn sharing_rules_path(&self) -> PathBuf {
        self.sharing
            .rules
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("rules").join("sharing.toml"))
    }

    pub fn disclosure_rules_path(&self) -> PathBuf {
        self.sharing
            .disclosure
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("rules").join("disclosure.toml"))
    }

    pub fn public_notice_rules_path(&self) -> PathBuf {
        self.sharing
            .public_notice
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("rules").join("public-notice.toml"))
    }

    pub fn objection_rules_path(&self) -> PathBuf {
        self.objections
            .rules
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("rules").join("objections.toml"))
    }

    pub fn repair_rules_path(&self) -> PathBuf {
        self.repairs
            .rules
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("rules").join("repair.toml"))
    }

    pub fn scoring_profiles_dir(&self) -> PathBuf {
        self.evaluation
            .profiles
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("scoring"))
    }

    pub fn calendar_dir(&self) -> PathBuf {
        self.corrections
            .calendar_dir
            .clone()
            .unwrap_or_else(|| self.mappings.dir.join("calendar"))
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.tls.server_key_path()
    }
}

impl TlsConfig {
    pub fn client_ca_path(&self) -> PathBuf {
        self.client_ca
            .clone()
            .unwrap_or_else(|| self.certs_dir.join("ca.pem"))
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.cert
            .clone()
            .unwrap_or_else(|| self.certs_dir.join("server.pem"))
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.key
            .clone()
            .unwrap_or_else(|| self.certs_dir.join("server-key.pem"))
    }
}

/// Lower-case hex without separators, or None.
pub fn normalize_fingerprint(fp: &str) -> Option<String> {
    let hex: String = fp
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_is_never_shown() {
        assert_eq!(
            StorageConfig::redacted_url(
                "postgres://gw:s3cret@db.example:5432/credit?sslmode=require"
            ),
            "postgres://gw:***@db.example:5432/credit?sslmode=require"
        );
        assert_eq!(
            StorageConfig::redacted_url("postgres://gw@db.example/credit"),
            "postgres://gw@db.example/credit"
        );
        assert_eq!(
            StorageConfig::redacted_url("host=db user=gw password=s3cret dbname=credit"),
            "host=db user=gw password=*** dbname=credit"
        );
    }

    #[test]
    fn two_processes_never_share_a_lease_holder_name() {
        let config = StorageConfig {
            node: Some("gw-1".into()),
            ..Default::default()
        };
        let (a, b) = (config.node_name(), config.node_name());
        assert!(a.starts_with("gw-1-") && b.starts_with("gw-1-"));
        assert_ne!(a, b);
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn example_file_matches_defaults() {
        let text = include_str!("../../../../credit-gateway.example.toml");
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        !r.starts_with('#')
                            && !r.starts_with(' ')
                            && !r.is_empty()
                            && (r.contains(" = ") || r.starts_with('['))
                    })
                    .unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: Config = toml::from_str(&uncommented).expect("the commented example parses");
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    /// A file destination needs its two folders and no url; an HTTPS one takes no folder keys;
    /// a configuration without any file destination serializes as before (issue #29).
    #[test]
    fn file_destinations_are_checked() {
        let base = "[[destinations]]\nid = \"files\"\nname = \"f\"\nregion = \"440000\"\n";
        let ok: Config = toml::from_str(&format!(
            "{base}kind = \"file\"\noutgoing_dir = \"/tmp/out\"\nfeedback_dir = \"/tmp/back\"\nbatch_wait_ms = 5\n"
        ))
        .unwrap();
        ok.validate().expect("a file destination validates");
        let d = &ok.destinations[0];
        assert!(d.is_file());
        assert_eq!(d.file_sender(), DEFAULT_FILE_SENDER);
        assert_eq!(d.feedback_timeout_ms(), DEFAULT_FEEDBACK_TIMEOUT_MS);
        assert_eq!(d.target(), "file:/tmp/out");
        let bad = |extra: &str| {
            let cfg: Config = toml::from_str(&format!("{base}{extra}")).unwrap();
            cfg.validate().unwrap_err().len()
        };
        assert_eq!(
            bad("kind = \"file\"\noutgoing_dir = \"/tmp/out\"\n"),
            1,
            "no feedback_dir"
        );
        assert_eq!(
            bad("kind = \"file\"\nurl = \"https://x/\"\noutgoing_dir = \"/a\"\nfeedback_dir = \"/a\"\nfile_sender = \"a_b\"\n"),
            3,
            "a url, the same folder twice, an underscore in the sender"
        );
        assert_eq!(
            bad("url = \"https://x/\"\noutgoing_dir = \"/a\"\n"),
            1,
            "folders on HTTPS"
        );
        assert!(!toml::to_string(&Config::default())
            .unwrap()
            .contains("kind"));
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "[server]\nlisten = \"nowhere\"\nmax_body_bytes = 0\n[log]\nformat = \"xml\"\n";
        let cfg: Config = toml::from_str(text).unwrap();
        assert_eq!(cfg.validate().unwrap_err().len(), 3);
        assert!(
            toml::from_str::<Config>("[server]\nlisen = \"x\"\n").is_err(),
            "unknown fields refused"
        );
    }

    #[test]
    fn a_folder_is_read_from_its_agency_and_checked() {
        let text = r#"
[[agencies]]
id = "county_mi"
name = "县医保局"
cert_subject_cn = "county_mi"
mappings = ["mi-penalties", "mi-licences"]
[agencies.folder]
inbox = "/srv/exchange/county_mi/in"
mapping = "mi-penalties"
routes = [{ pattern = "*许可*", mapping = "mi-licences" }]
csv_charset = "gbk"
require_check_file = true
"#;
        let cfg: Config = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        let folder = cfg.agencies[0].folder.as_ref().unwrap();
        assert_eq!(folder.poll_interval_ms, DEFAULT_FOLDER_POLL_INTERVAL_MS);
        assert_eq!(
            folder.mapping_for("2025年行政许可.XLSX"),
            Some("mi-licences")
        );
        assert_eq!(folder.mapping_for("行政处罚.csv"), Some("mi-penalties"));
        // A mapping the agency may not push, a charset the gateway does not read, no mapping.
        let bad = text
            .replace("\"mi-licences\" }", "\"court-judgments\" }")
            .replace("\"gbk\"", "\"big5\"");
        let cfg: Config = toml::from_str(&bad).unwrap();
        let errors: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("court-judgments"), "{errors:?}");
        assert!(errors[1].contains("big5"), "{errors:?}");
        assert!(toml::from_str::<Config>(&text.replace("inbox", "inbx")).is_err());
    }

    #[test]
    fn glob_patterns_match_whole_names() {
        assert!(glob_matches("*.xlsx", "行政处罚.XLSX"));
        assert!(glob_matches("*许可*", "2025年行政许可表.csv"));
        assert!(glob_matches("cf_??.csv", "CF_01.csv"));
        assert!(!glob_matches("cf_??.csv", "CF_1.csv"));
        assert!(!glob_matches("*.csv", "a.csv.part"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
    }
}
