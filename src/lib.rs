//! credit-gateway: the data-exchange gateway between the medical-insurance (医保) information
//! platform, the agencies that push records (health, tax, market supervision, courts...) and the
//! public credit information platforms (Guangdong 粤医保规〔2023〕8号 "GD", Lhasa interim
//! measures "LS").
//!
//! One module per domain concept:
//! - [`ingest`]: the mutual-TLS API agencies push batches to, and receipts;
//! - [`identity`]: which agency a certificate is, what it may do, TLS material;
//! - [`mapping`]: declarative source formats (`mappings/*.toml`) into canonical records;
//! - [`files`]: batch files (`.xlsx`, CSV in UTF-8 or GBK) as rows a mapping reads (issue #29);
//! - [`record`]: the canonical record, the 13 categories (GD Art. 8) and their validation;
//! - [`subject`]: credit subjects and their identifiers (USCC, resident ID, region codes);
//! - [`archive`]: the per-subject credit archive with version history (GD Art. 9, LS Art. 14);
//! - [`sharing`], [`disclosure`]: which platform may hold what, on which channel (GD Art. 6, LS
//!   Arts. 24-27);
//! - [`lifecycle`]: public-notice periods, retention and exit: until when (LS Arts. 20, 27; GD Art.
//!   38);
//! - [`ledger`]: the publication ledger: what each platform holds, withdrawals, timers;
//! - [`objections`]: 异议 and the marks that travel with shares (LS Arts. 21-23, GD Arts. 32-34);
//! - [`repairs`]: 信用修复, its eligibility, publicity and completion (LS Arts. 36-42, GD Arts.
//!   35-39);
//! - [`corrections`]: corrections within three working days (GD Art. 31), on the [`calendar`];
//! - [`outbox`], [`delivery`]: the durable queues and the senders;
//! - [`audit`]: the tamper-evident hash chain of every exchange (GD Art. 12, LS Art. 43);
//! - [`store`]: the storage seam, sled (embedded) and PostgreSQL (several nodes), the key layout
//!   and the single group-commit writer;
//! - [`cluster`]: several nodes on one PostgreSQL: leases for the work done once;
//! - [`operator`]: the operator server (admin listener, sign-in, sessions, CSRF, masking, the
//!   operator API's route table and the console); [`operators`]: who operators are and their roles;
//! - [`config`], [`telemetry`] (observation only: logs, metrics, readiness), [`clock`]: operating
//!   the gateway.
//!
//! Below the domains: [`rule_window`], the dated, regional window every rule file shares (when
//! and where a rule governs, and which rule governs a region on a day).

#![forbid(unsafe_code)]

pub mod answer;
pub mod app;
pub mod archive;
pub mod audit;
pub mod backup;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod corrections;
pub mod crypto;
pub mod delivery;
pub mod disclosure;
pub mod evaluation;
pub mod exchange;
pub mod files;
pub mod identity;
pub mod ingest;
pub mod ledger;
pub mod lifecycle;
pub mod mapping;
pub mod objections;
pub mod operator;
pub mod operators;
pub mod outbox;
pub mod privacy;
pub mod record;
pub mod repairs;
pub mod rule_window;
pub mod rulebook;
pub mod sharing;
pub mod store;
pub mod subject;
pub mod swap;
pub mod telemetry;
