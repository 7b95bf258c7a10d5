//! The publication ledger: what each platform holds of each record, on each channel, since when,
//! and the decision that put it there (LS Arts. 25-26: the rule, a hash of the rules files in force,
//! the fields withheld or masked, the legal-basis document).
//!
//! Owns the `led/`, `lak/` and `tmr/` key spaces, and [`Ledger::reconcile`], the one place that
//! turns "what a platform may hold now" (a [`Plan`]) into "what it must be sent": a publication
//! where one is now allowed (or its payload changed), a **withdrawal** where a platform holds what
//! it may no longer hold. Never silence: every (record, platform, channel) that was ever queued
//! stays in the ledger.
//!
//! On-disk layout (same tree as everything else, see `store`):
//!
//! | key | value |
//! |---|---|
//! | `led/{agency} \x1f {record_id}` | [`Ledger`]: per (destination, channel), every publication and withdrawal queued, in order; absent for a record never queued anywhere |
//! | `lak/{idempotency_key}` | `{"at": RFC 3339}`: when the platform acknowledged that share (first acknowledgement counts) |
//! | `tmr/{unix seconds, 20 digits} \x1f {agency} \x1f {record_id}` | `{}`: re-check the record then (see [`timers`]) |
//!
//! A record's ledger is the ledger's own (issue #28; format 6): before it, it was kept inside the
//! record's archive head (`rec/…`, member `publication`), and the format-6 step moved it here,
//! seeding the ledger of a record shared before the ledger existed from what its head noted
//! (`store::format`). The archive knows nothing of it. The writer stages it beside the head in the
//! same group (`exchange::Latest`, read ahead with the heads), so a group that changes a record and
//! its publications is one atomic, durable step; it is written only when a reconciliation queued
//! something (a re-check that changes nothing writes nothing).
//!
//! Invariants: a ledger event is written in the same atomic batch as its outbox entry (the single
//! writer stages both); acknowledgements are separate keys written by delivery, so the writer and
//! the delivery workers never overwrite each other; "held" means acknowledged by the platform, and
//! what a platform showed at any past instant is answered from these events and acknowledgements
//! alone ([`view`]), never from today's state.
//!
//! Ordering: withdrawals travel ahead of ordinary shares (outbox priority 0, like corrections). A
//! withdrawal of a publication still waiting in the queue also removes that queued entry, so a
//! platform never receives a publication after the withdrawal that superseded it.
//!
//! Never does: decide what is allowed (that is `sharing` with `disclosure` and `lifecycle`), send
//! anything (that is `delivery`), or read the clock (time comes in with the change).

pub mod agency;
pub mod ops;
pub mod query;
pub mod recheck;
pub mod stage;
pub mod timers;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::disclosure::Channel;
use crate::outbox::{self, Entry, Kind};
use crate::record::CanonicalRecord;
use crate::sharing::Plan;
use crate::store::{Store, StoreError, SEP};

/// Publication or withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Publish,
    Withdraw,
}

/// One publication or withdrawal queued for one platform and channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub action: Action,
    pub version: u32,
    pub idempotency_key: String,
    /// The outbox key it was queued under (a withdrawal removes a still-queued publication).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outbox_key: String,
    /// The sharing rule that allowed it (publication).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// Why the platform may no longer hold the record (withdrawal): a stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rules_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hash: Option<String>,
    /// Fields masked or dropped by the filter, `field (rule)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// The legal-basis document (type and number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_id: Option<String>,
    /// Carried over from a data directory written before the ledger existed: held since `at`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
}

/// Everything queued for one platform and channel, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holding {
    pub destination: String,
    pub channel: Channel,
    pub events: Vec<Event>,
}

impl Holding {
    /// Whether the platform holds (or is about to hold) a publication: the last event publishes.
    fn publishes(&self) -> Option<&Event> {
        self.events.last().filter(|e| e.action == Action::Publish)
    }
}

/// One record's ledger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub holdings: Vec<Holding>,
}

/// What one reconciliation queued, for the audit chain and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    pub record_id: String,
    pub destination: String,
    pub channel: Channel,
    pub action: Action,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Log and count what one reconciliation queued (publications and withdrawals, by cause).
pub fn report_queued(cause: &str, queued: &[Queued]) {
    use crate::telemetry::events;
    for q in queued {
        match q.action {
            Action::Publish => events::ledger_publication_queued(cause),
            Action::Withdraw => events::ledger_withdrawal_queued(
                cause,
                &q.record_id,
                &q.destination,
                q.channel.code(),
                q.reason.as_deref().unwrap_or_default(),
            ),
        }
    }
}

/// A correction driving a reconciliation: every platform gets the corrected record (or a
/// withdrawal) as a correction share, even when its payload did not change (GD Art. 31).
#[derive(Debug, Clone)]
pub struct CorrectionMark {
    pub id: String,
    pub marker: Value,
}

/// A change to reconcile.
pub struct Change<'a> {
    pub record: &'a CanonicalRecord,
    /// The key the store knows the record's subject by (`SubjectId::archive_key`).
    pub subject: &'a str,
    pub version: u32,
    pub plan: &'a Plan,
    pub now: OffsetDateTime,
    pub correction: Option<&'a CorrectionMark>,
    /// The record's marks changed: publications travel ahead of ordinary shares, as `marking`.
    pub marking: bool,
}

/// The key of a record's ledger.
pub fn ledger_key(agency: &str, record_id: &str) -> String {
    crate::store::keys::LedgerKey::encode_of(agency, record_id)
}

impl Ledger {
    /// A record's ledger as stored (empty when nothing was ever queued for it).
    pub fn read(store: &Store, agency: &str, record_id: &str) -> Result<Self, StoreError> {
        Ok(store
            .get_json::<Self>(&ledger_key(agency, record_id))?
            .unwrap_or_default())
    }

    /// Bring every platform in line with the plan: queue a publication where the record is allowed
    /// and the platform does not hold this version and payload, a withdrawal where it holds what it
    /// may no longer hold. `enqueue` stores an outbox entry and returns its key; `supersede` is told
    /// the key of a still-queued publication a withdrawal replaces.
    pub fn reconcile<E>(
        &mut self,
        change: &Change<'_>,
        mut enqueue: impl FnMut(&Entry) -> Result<String, E>,
        mut supersede: impl FnMut(&str),
    ) -> Result<Vec<Queued>, E> {
        let mut queued = Vec::new();
        for share in &change.plan.shares {
            let idx = self.holding_index(&share.destination, share.channel);
            let holding = &mut self.holdings[idx];
            let current = holding.publishes();
            let unchanged = current.is_some_and(|e| {
                e.version == change.version
                    && (e.legacy || e.payload_hash.as_deref() == Some(share.payload_hash.as_str()))
            });
            if unchanged && change.correction.is_none() && !change.marking {
                continue;
            }
            let source = outbox::ShareSource {
                version_key: crate::archive::version_key(
                    change.subject,
                    change.record.category,
                    &change.record.source.agency,
                    &change.record.source.record_id,
                    change.version,
                ),
                decision: share
                    .masked
                    .iter()
                    .map(|(field, rule)| (field.clone(), rule.to_string()))
                    .collect(),
                marks: share.marks.clone(),
                correction: change.correction.map(|m| m.marker.clone()),
                payload_hash: share.payload_hash.clone(),
            };
            let kind = if change.correction.is_some() {
                Kind::Correction
            } else if change.marking {
                Kind::Marking
            } else {
                Kind::Share
            };
            let extra = match (change.correction, holding.events.len()) {
                (Some(mark), _) => mark.id.clone(),
                (None, 0) => String::new(),
                (None, n) => format!("e{n}"),
            };
            let entry = entry_for(
                change,
                &share.destination,
                share.channel,
                kind,
                &share.rule,
                &extra,
                Payload::Source(source),
            );
            let outbox_key = enqueue(&entry)?;
            holding.events.push(Event {
                at: change.now,
                action: Action::Publish,
                version: change.version,
                idempotency_key: entry.idempotency_key,
                outbox_key,
                rule: share.rule.clone(),
                reason: None,
                rules_hash: change.plan.rules_hash.clone(),
                payload_hash: Some(share.payload_hash.clone()),
                masked: share
                    .masked
                    .iter()
                    .map(|(f, why)| format!("{f} ({why})"))
                    .collect(),
                basis: change.plan.basis.clone(),
                correction_id: change.correction.map(|m| m.id.clone()),
                legacy: false,
            });
            queued.push(Queued {
                record_id: change.record.source.record_id.clone(),
                destination: share.destination.clone(),
                channel: share.channel,
                action: Action::Publish,
                version: change.version,
                reason: None,
            });
        }
        for holding in &mut self.holdings {
            let allowed = change
                .plan
                .shares
                .iter()
                .any(|s| s.destination == holding.destination && s.channel == holding.channel);
            let Some(held_version) = holding.publishes().map(|e| e.version) else {
                continue;
            };
            if allowed {
                continue;
            }
            // Every publication since the last withdrawal may still be queued (v1 and v2 both
            // waiting): none may reach the platform after this withdrawal.
            for queued_publication in holding
                .events
                .iter()
                .rev()
                .take_while(|e| e.action == Action::Publish)
                .filter(|e| !e.outbox_key.is_empty())
            {
                supersede(&queued_publication.outbox_key);
            }
            let reason = change
                .plan
                .refusal_reason(&holding.destination, holding.channel)
                .to_string();
            let extra = match change.correction {
                Some(mark) => format!("{}w", mark.id),
                None => format!("e{}", holding.events.len()),
            };
            let payload = withdrawal_payload(change, held_version, &reason);
            let entry = entry_for(
                change,
                &holding.destination,
                holding.channel,
                Kind::Withdrawal,
                "withdrawal",
                &extra,
                Payload::Inline(payload),
            );
            let outbox_key = enqueue(&entry)?;
            holding.events.push(Event {
                at: change.now,
                action: Action::Withdraw,
                version: held_version,
                idempotency_key: entry.idempotency_key,
                outbox_key,
                rule: String::new(),
                reason: Some(reason.clone()),
                rules_hash: change.plan.rules_hash.clone(),
                payload_hash: None,
                masked: Vec::new(),
                basis: change.plan.basis.clone(),
                correction_id: change.correction.map(|m| m.id.clone()),
                legacy: false,
            });
            queued.push(Queued {
                record_id: change.record.source.record_id.clone(),
                destination: holding.destination.clone(),
                channel: holding.channel,
                action: Action::Withdraw,
                version: held_version,
                reason: Some(reason),
            });
        }
        Ok(queued)
    }

    fn holding_index(&mut self, destination: &str, channel: Channel) -> usize {
        match self
            .holdings
            .iter()
            .position(|h| h.destination == destination && h.channel == channel)
        {
            Some(i) => i,
            None => {
                self.holdings.push(Holding {
                    destination: destination.to_string(),
                    channel,
                    events: Vec::new(),
                });
                self.holdings.len() - 1
            }
        }
    }
}

/// What an entry carries: a payload of its own (a withdrawal) or the archived version it
/// shares.
enum Payload {
    Inline(Box<serde_json::value::RawValue>),
    Source(outbox::ShareSource),
}

fn entry_for(
    change: &Change<'_>,
    destination: &str,
    channel: Channel,
    kind: Kind,
    rule: &str,
    extra: &str,
    payload: Payload,
) -> Entry {
    let (payload, source) = match payload {
        Payload::Inline(raw) => (Some(raw), None),
        Payload::Source(source) => (None, Some(source)),
    };
    let record = change.record;
    Entry {
        idempotency_key: outbox::idempotency_key(
            destination,
            &record.source.agency,
            &record.source.record_id,
            change.version,
            channel,
            kind,
            extra,
        ),
        destination: destination.to_string(),
        channel,
        kind,
        agency: record.source.agency.clone(),
        record_id: record.source.record_id.clone(),
        version: change.version,
        rule: rule.to_string(),
        enqueued_at: change.now.to_offset(crate::calendar::CHINA_OFFSET),
        enqueued_unix: change.now.unix_timestamp(),
        correction_id: change.correction.map(|m| m.id.clone()),
        payload,
        source,
    }
}

/// What a platform receives to withdraw a record: its identity, never its content.
fn withdrawal_payload(
    change: &Change<'_>,
    version: u32,
    reason: &str,
) -> Box<serde_json::value::RawValue> {
    let record = change.record;
    let mut body = json!({
        "category": record.category.code(),
        "source": {
            "agency": record.source.agency,
            "record_id": record.source.record_id,
            "region": record.source.region.as_str(),
        },
        "withdrawn": {"version": version, "reason": reason},
    });
    if let Some(mark) = change.correction {
        body["correction"] = mark.marker.clone();
    }
    serde_json::value::to_raw_value(&body).unwrap_or_else(|_| empty_object())
}

/// Serializing a `Value` with string keys cannot fail; this only satisfies the type.
fn empty_object() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::NULL.to_owned()
}

/// Whether a queued (or dead-lettered) share of the ledger was superseded since: a later
/// publication or a withdrawal of the same record on the same platform and channel. Shares the
/// ledger does not know (notices, forwarded corrections, data from before the ledger) are not.
pub fn is_superseded(store: &Store, entry: &Entry) -> bool {
    if !matches!(entry.kind, Kind::Share | Kind::Correction | Kind::Marking) {
        return false;
    }
    let Ok(ledger) = Ledger::read(store, &entry.agency, &entry.record_id) else {
        return false;
    };
    ledger
        .holdings
        .iter()
        .filter(|h| h.destination == entry.destination && h.channel == entry.channel)
        .any(|h| {
            h.events
                .iter()
                .position(|e| e.idempotency_key == entry.idempotency_key)
                .is_some_and(|i| i + 1 < h.events.len())
        })
}

/// The acknowledgement key of one share.
pub fn ack_key(idempotency_key: &str) -> String {
    crate::store::keys::IdSpace::ShareAck.key(idempotency_key)
}

/// Writes that record when a platform acknowledged these shares. Each is written in the same
/// atomic batch that removes the share from the outbox, so a share is acknowledged once and its
/// key is never written twice: no read is needed.
pub fn acknowledgement_writes(entries: &[Entry], at: OffsetDateTime) -> Vec<(String, Vec<u8>)> {
    let at = crate::clock::rfc3339(at.to_offset(crate::calendar::CHINA_OFFSET));
    let value = crate::store::to_bytes(&json!({ "at": at }));
    entries
        .iter()
        .map(|e| (ack_key(&e.idempotency_key), value.clone()))
        .collect()
}

fn ack_time(store: &Store, event: &Event) -> Result<Option<OffsetDateTime>, StoreError> {
    if event.legacy {
        return Ok(Some(event.at));
    }
    let Some(v) = store.get_json::<Value>(&ack_key(&event.idempotency_key))? else {
        return Ok(None);
    };
    let text = v.get("at").and_then(Value::as_str).unwrap_or("");
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            key: ack_key(&event.idempotency_key),
            message: e.to_string(),
        })
}

/// One platform's copy of a record at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct HoldingView {
    pub destination: String,
    pub channel: Channel,
    /// `held` (acknowledged publication), `queued` (publication not yet acknowledged),
    /// `withdrawal_queued`, `withdrawn`, or `none` (nothing queued yet at that instant).
    pub state: &'static str,
    /// The version the platform showed at that instant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub showing_version: Option<u32>,
    /// Since when it showed it (its acknowledgement).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub showing_since: Option<OffsetDateTime>,
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    #[serde(flatten)]
    pub event: Event,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// What each platform held of a record at `as_of`, from the ledger's events and acknowledgements
/// up to that instant.
pub fn view(
    store: &Store,
    ledger: &Ledger,
    as_of: OffsetDateTime,
) -> Result<Vec<HoldingView>, StoreError> {
    let mut out = Vec::new();
    for h in &ledger.holdings {
        let mut events = Vec::new();
        for e in h.events.iter().filter(|e| e.at <= as_of) {
            let acked = ack_time(store, e)?.filter(|t| *t <= as_of);
            events.push(EventView {
                event: e.clone(),
                acknowledged_at: acked,
            });
        }
        // Withdrawals and corrections travel ahead of older shares, so acknowledgements can come
        // in another order than the events: what the platform showed is the last acknowledged.
        let shown = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.acknowledged_at.map(|t| (t, i, e)))
            .max_by_key(|(t, i, _)| (*t, *i))
            .map(|(_, _, e)| e);
        let (showing_version, showing_since) = match shown {
            Some(e) if e.event.action == Action::Publish => {
                (Some(e.event.version), e.acknowledged_at)
            }
            _ => (None, None),
        };
        let state = match events.last() {
            None => "none",
            Some(e) => match (e.event.action, e.acknowledged_at.is_some()) {
                (Action::Publish, true) => "held",
                (Action::Publish, false) => "queued",
                (Action::Withdraw, true) => "withdrawn",
                (Action::Withdraw, false) => "withdrawal_queued",
            },
        };
        out.push(HoldingView {
            destination: h.destination.clone(),
            channel: h.channel,
            state,
            showing_version,
            showing_since,
            events,
        });
    }
    Ok(out)
}

/// The timer key that re-checks a record at `at`.
/// The key space of the ledger's timers.
pub const TIMER_PREFIX: &str = "tmr/";

pub fn timer_key(at: OffsetDateTime, agency: &str, record_id: &str) -> String {
    crate::store::keys::instant_key(
        TIMER_PREFIX,
        at.unix_timestamp(),
        &format!("{agency}{SEP}{record_id}"),
    )
}

#[cfg(test)]
mod tests;
