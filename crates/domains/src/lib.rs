//! credit-gateway's domains: the credit exchange and the lifecycle of credit information
//! (Guangdong 粤医保规〔2023〕8号 "GD", Lhasa interim measures "LS").
//!
//! One module per domain concept:
//! - [`identity`]: which agency a certificate is, what it may do, TLS material;
//! - [`mapping`]: declarative source formats (`mappings/*.toml`) into canonical records;
//! - [`files`]: batch files (`.xlsx`, CSV in UTF-8 or GBK) as rows a mapping reads (issue #29);
//! - [`record`]: the canonical record, the 13 categories (GD Art. 8) and their validation;
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
//! - [`casework`]: what corrections, objections and repairs share as cases: the working-day
//!   deadline and its countdown, the flow's states and steps, the one tracker and its webhook;
//! - [`evaluation`]: the yearly credit evaluation and its grades (scoring profiles by region);
//! - [`exchange`]: the single writer's jobs: one group commit per step, audited;
//! - [`outbox`], [`delivery`]: the durable queues and the senders;
//! - [`audit`]: the tamper-evident hash chain of every exchange (GD Art. 12, LS Art. 43);
//! - [`reencrypt`]: stored values sealed again after a key rotation; [`backup`]: online backups;
//! - [`cluster`]: several nodes on one PostgreSQL: leases for the work done once;
//! - [`rulebook`]: the rule files in force, their reload and what governs a day;
//! - [`operators`]: who operators are, their roles and sessions; [`config`]: the one TOML file;
//! - [`command`]: what every domain's operator commands share (the query, the error).
//!
//! Never does: listen on a socket or answer an HTTP request of its own (the server crate mounts
//! what the domains export), or reach up into the server: this crate does not depend on it, so
//! an upward import does not compile (issue #28). The ground floor (`credit-gateway-core`) is
//! re-exported under its module names, so a domain writes `crate::store`, `crate::calendar`.

#![forbid(unsafe_code)]

pub use credit_gateway_core::{
    answer, calendar, clock, crypto, privacy, rule_window, store, subject, swap, telemetry,
};

pub mod archive;
pub mod audit;
pub mod backup;
pub mod casework;
pub mod cluster;
pub mod command;
pub mod config;
pub mod corrections;
pub mod delivery;
pub mod disclosure;
pub mod evaluation;
pub mod exchange;
pub mod files;
pub mod identity;
pub mod ledger;
pub mod lifecycle;
pub mod mapping;
pub mod objections;
pub mod operators;
pub mod outbox;
pub mod record;
pub mod reencrypt;
pub mod repairs;
pub mod rulebook;
pub mod sharing;
