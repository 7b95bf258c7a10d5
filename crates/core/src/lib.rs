//! credit-gateway's ground floor: what every domain stands on and that knows no domain.
//!
//! Owns: the one replaceable [`clock`]; the State Council working-day [`calendar`] (GD Art. 31's
//! three working days and every other deadline count on it); credit [`subject`]s and their
//! identifiers (USCC, resident ID, region codes: built only valid); national and international
//! [`crypto`]graphy and the keyring; the sealing of personal information at rest ([`privacy`]); the [`store`] seam (sled embedded, PostgreSQL for several
//! nodes), its key layout, formats and group commits; observation ([`telemetry`]: logs, metrics,
//! readiness); the dated, regional [`rule_window`] every rule file shares; the one shape of a
//! refusal ([`answer`]); and [`swap`], the value replaced whole on a reload.
//!
//! Never does: name a domain (a record's lifecycle, the ledger, objections, evaluation...). This
//! is enforced by the compiler: this crate does not depend on `credit-gateway-domains` or on the
//! server, so an upward import does not compile (issue #28).

#![forbid(unsafe_code)]

pub mod answer;
pub mod calendar;
pub mod clock;
pub mod crypto;
pub mod privacy;
pub mod rule_window;
pub mod store;
pub mod subject;
pub mod swap;
pub mod telemetry;
