//! The casework core (issue #28): what corrections (GD Art. 31), objections (LS Arts. 21-23) and
//! credit repairs (LS Arts. 36-42) have in common as cases with a deadline, written once so a
//! deadline bug is fixed once.
//!
//! Owns:
//! - [`deadline`]: a case's deadline counted in working days on the State Council calendar
//!   ([`crate::calendar`], never `+ n days`), estimated past the last known year and made exact
//!   later ([`deadline::CaseDeadline`], [`deadline::make_exact`]); the countdown of an open case
//!   (seconds and working days left, at risk under one working day: [`deadline::Countdown`]); and
//!   the warnings given once before and once past a deadline ([`deadline::Warnings`]);
//! - [`flow`]: the [`flow::CaseFlow`] trait each domain implements: its states in order, the
//!   phase of each (a deadline runs, overdue, waiting, closed), its terminal states, and the
//!   steps each state allows with the duty ([`flow::Duty`]) that may take them; the one lock a
//!   step on an objection or a repair holds ([`flow::step`]); the context every step gets
//!   ([`flow::Context`]);
//! - [`tracker`]: the one periodic scan ([`tracker::Tracker`]) parameterised by the domain
//!   ([`tracker::Tracked`]): it lists the cases, lets the domain make provisional deadlines exact
//!   and take its due steps, counts cases by state into the gauges, warns once per deadline and
//!   fires the webhook;
//! - [`webhook`]: the one webhook sender; [`family`]: the one naming scheme of what the trackers
//!   export (gauges, webhook events and payloads, failure lines);
//! - [`refused`]: how a flow's refusal is answered ([`refused::Refused`]): each flow names the
//!   status and code of its own refusals in one match; a deadline the calendar cannot count and
//!   a failed store are answered here, alike for the three.
//!
//! Never does: write a case (every step is its domain's `flow` step, written and audited by the
//! writer), decide a state (the domain computes it from its stored status, the time and, for a
//! repair, whether an objection is open), choose a rule or a number of working days (the
//! domain's rules do), or read the system clock (time comes from [`crate::clock`]).
//!
//! Invariants:
//! - a deadline is 23:59:59 +08:00 of the n-th working day after the China date it is counted
//!   from; past the last known calendar year it is provisional and stored with its basis, and
//!   becomes exact only on a calendar that covers it, changing only the deadline fields;
//! - a case is overdue when `now` is strictly after its deadline; an open case is at risk when
//!   less than one working day is left ([`crate::calendar::Calendar::working_days_left`] < 1);
//! - each deadline warns at most once as near and once as overdue per tracker run;
//! - metric names, labels, webhook payloads and log events are exactly those each domain's
//!   tracker had before this core (dashboards, alert receivers and tests depend on them).
//!
//! Where the three domains differ, the difference is a parameter, kept as it was:
//! - gauges ([`family::Family`]): objections and repairs export one labelled family
//!   `gateway_{cases}{state=...}` with every state set (0 when none); corrections export one
//!   unlabelled gauge per tracked state, `gateway_corrections_{state}`, for `pending`, `overdue`
//!   and `delivered_late` only (the names predate the labelled scheme and dashboards use them).
//!   All three export `gateway_{cases}_nearest_deadline_seconds`;
//! - webhook payloads: `{"event", "{case}_id", "deadline", "deadline_provisional"}`, with the
//!   event `{case}_deadline_near` / `{case}_overdue` for objections and repairs and the bare
//!   `deadline_near` / `overdue` plus the `record_id` for corrections; a failed webhook is logged
//!   with the case id for objections and repairs, with the webhook's address for corrections;
//! - warnings: objections and repairs warn once per (case, deadline), so a new deadline (a
//!   review by the level above, an extension) warns again; corrections once per case
//!   ([`deadline::OncePer`]). The log event and counter of a warning stay the domain's own
//!   (`telemetry::events::objection_deadline`, `repair_deadline`, the correction's lines);
//! - corrections that cannot be read are logged and counted
//!   (`gateway_correction_tracking_failures_total`), objections and repairs are skipped silently
//!   until the next scan; corrections also publish the calendar's coverage before each scan;
//! - provisional deadlines are made exact per objection or repair through its flow step, for
//!   corrections in one batch write (a correction object is written once, see `corrections`);
//! - only repairs take a step in the scan: completing a repair whose publicity ended (GD Art. 38).
//!
//! The warnings' memory is [`deadline::Warnings`], with the [`deadline::OncePer`] parameter:
//! keyed by deadline only, a correction would be warned again after its provisional deadline was
//! made exact, so corrections are warned once per case. (The calendar's own copy of this memory,
//! keyed by deadline only, was removed with this core.)

pub mod deadline;
pub mod family;
pub mod flow;
pub mod refused;
pub mod tracker;
pub mod webhook;

pub use deadline::{passed, CaseDeadline, Countdown, Due, OncePer, Warnings};
pub use flow::{step, CaseFlow, Context, Duty, Phase, StepHeld};
pub use refused::Refused;
pub use tracker::{Family, Scan, Tracked, Tracker, Webhook};
