//! The legal life of a record after it is shared: until when each channel may show it.
//!
//! Owns the time gates that sit on top of the disclosure filter:
//! - **public-notice periods** (national credit-repair measures, in force from 2026-04-01; GD Art.
//!   38(2); LS Art. 27): a record on the public channel is shown from its decision date until its
//!   window ends ([`notice`]), then withdrawn by itself; a record whose window ended before it
//!   arrived is never publicly noticed; minor misconduct (warnings, notices of criticism) never;
//! - **retention** (LS Art. 20): dishonesty records count and are shared for 3 years, then are
//!   withdrawn everywhere and marked expired in the archive;
//! - **exit** (LS Art. 20): nothing of a subject that left medical-insurance service (or died) is
//!   held by any platform until it re-enters;
//! - the durable timers ([`timers`]) that wake the gateway when a gate closes.
//!
//! Never does: read the clock (every function takes `now`), decide routing or filter fields (that
//! is `sharing` and `disclosure`), or write storage (the ledger and the writer do).

pub mod notice;

pub use notice::{NoticeRules, NoticeRulesError, Severity, Window};

use time::OffsetDateTime;

use crate::disclosure::Channel;
use crate::record::CanonicalRecord;

/// Whether a channel may hold a record at an instant, as far as time and the subject's standing go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Open; closes by itself at `until` (when known).
    Open { until: Option<OffsetDateTime> },
    /// Closed, for this reason (stable code, recorded in the ledger and the audit chain).
    Closed { reason: &'static str },
}

/// The subject's standing in the archive (LS Art. 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Exited,
}

/// The gate of one channel for one record at `now`.
pub fn gate(
    rules: &NoticeRules,
    record: &CanonicalRecord,
    channel: Channel,
    standing: Standing,
    now: OffsetDateTime,
) -> Gate {
    if standing == Standing::Exited {
        return Gate::Closed {
            reason: "subject_exited",
        };
    }
    let retention = rules.retention_end(record);
    if retention.is_some_and(|end| now >= end) {
        return Gate::Closed {
            reason: "retention_ended",
        };
    }
    if channel == Channel::PublicNotice {
        if let Some(w) = rules.window(record) {
            if w.from == w.until {
                return Gate::Closed {
                    reason: "minor_not_publicly_noticed",
                };
            }
            if now >= w.until {
                return Gate::Closed {
                    reason: "notice_period_ended",
                };
            }
            return Gate::Open {
                until: Some(retention.map_or(w.until, |r| r.min(w.until))),
            };
        }
    }
    Gate::Open { until: retention }
}

/// Whether a record has passed its retention at `now` (marked expired in the archive).
pub fn is_expired(rules: &NoticeRules, record: &CanonicalRecord, now: OffsetDateTime) -> bool {
    rules.retention_end(record).is_some_and(|end| now >= end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{validate, ValidationContext};
    use serde_json::json;
    use time::macros::datetime;

    fn penalty(decided: &str) -> CanonicalRecord {
        penalty_in("440106", decided)
    }

    fn penalty_in(region: &str, decided: &str) -> CanonicalRecord {
        let v = json!({
            "category": "administrative",
            "subject": {"kind": "institution", "role": "designated_medical_institution",
                        "id_type": "uscc", "id": "91310110666007217T", "name": "某医院"},
            "source": {"agency": "medical_insurance", "record_id": "r1", "region": region},
            "basis": {"doc_type": "penalty_decision", "doc_number": "罚〔2024〕1号", "decided_on": decided},
            "disclosure": {"class": "public"},
            "content": {"action": "penalty", "authority": "某医保局", "penalty_types": ["罚款"]}
        });
        validate(&v, &ValidationContext::default()).unwrap()
    }

    #[test]
    fn an_old_penalty_is_shared_with_government_but_not_noticed() {
        let rules = NoticeRules::builtin().unwrap();
        let r = penalty("2024-11-20");
        let now = datetime!(2026-11-25 10:00 +08:00);
        assert_eq!(
            gate(&rules, &r, Channel::PublicNotice, Standing::Active, now),
            Gate::Closed {
                reason: "notice_period_ended"
            }
        );
        assert_eq!(
            gate(&rules, &r, Channel::GovShare, Standing::Active, now),
            Gate::Open { until: None },
            "no retention rule governs Guangdong"
        );
        // A Lhasa penalty of 2024 counts for 3 years (LS Art. 20), then is shared nowhere.
        let lhasa = penalty_in("540102", "2024-11-20");
        assert_eq!(
            gate(&rules, &lhasa, Channel::GovShare, Standing::Active, now),
            Gate::Open {
                until: Some(datetime!(2027-11-20 00:00 +08:00))
            }
        );
        assert!(!is_expired(&rules, &lhasa, now));
        assert!(is_expired(
            &rules,
            &lhasa,
            datetime!(2027-11-20 00:00 +08:00)
        ));
        assert_eq!(
            gate(
                &rules,
                &lhasa,
                Channel::GovShare,
                Standing::Active,
                datetime!(2027-11-20 00:00 +08:00)
            ),
            Gate::Closed {
                reason: "retention_ended"
            }
        );
    }

    #[test]
    fn exit_closes_every_channel() {
        let rules = NoticeRules::builtin().unwrap();
        let r = penalty("2026-11-20");
        for channel in [Channel::PublicNotice, Channel::GovShare] {
            assert_eq!(
                gate(
                    &rules,
                    &r,
                    channel,
                    Standing::Exited,
                    datetime!(2026-11-25 10:00 +08:00)
                ),
                Gate::Closed {
                    reason: "subject_exited"
                }
            );
        }
    }
}
