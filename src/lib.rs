//! credit-gateway: the data-exchange gateway between the medical-insurance (医保) information
//! platform, the agencies that push records (health, tax, market supervision, courts...) and the
//! public credit information platforms (Guangdong 粤医保规〔2023〕8号 "GD", Lhasa interim
//! measures "LS").
//!
//! Three layers, each a crate, so that the compiler refuses an upward import (issue #28; the
//! whole picture is `docs/architecture.md`):
//! 1. `credit-gateway-core` (`crates/core`): clock, working-day calendar, subjects and
//!    identifiers, cryptography, the storage seam, observation, the rule window, the answer shape;
//! 2. `credit-gateway-domains` (`crates/domains`): the credit domains, each in its folder with
//!    its flow, rules, stored records, operator commands and errors;
//! 3. this crate, the server: [`ingest`] (the mutual-TLS agency API, receipts, files and the
//!    watched folders), [`operator`] (the admin listener, sign-in, sessions, CSRF, masking, the
//!    operator API's route table and the console), [`app`] (the wiring: start, tasks, stop) and
//!    [`cli`].
//!
//! Every module of the layers below is re-exported here under its name (`credit_gateway::ledger`,
//! `credit_gateway::store`), so paths read the same in every layer.

#![forbid(unsafe_code)]

pub use credit_gateway_domains::*;

pub mod app;
pub mod cli;
pub mod ingest;
pub mod node;
pub mod operator;
