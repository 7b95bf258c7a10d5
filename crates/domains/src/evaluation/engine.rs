//! One subject's evaluation as an atomic step: read its archive, score it under the profile in
//! force, build the new version of its result record (category 9) with its reasons, the grade
//! notice for the medical-insurance platform (GD Art. 22), the linked records of joint punishment
//! (GD Art. 29; LS Art. 30), and the timer for the day the result next changes by itself.
//!
//! Reads run on the caller's (blocking) thread; the writer applies the step. Nothing here writes.

use serde_json::{json, Map, Value};
use sha2::Digest;
use time::{Date, OffsetDateTime};

use super::profile::{Profile, Profiles};
use super::score::{self, Ended, Fact, Score};
use super::{ids, Grade};
use crate::archive::{self, MarkKind};
use crate::calendar::CHINA_OFFSET;
use crate::config::{DestinationConfig, DestinationRole};
use crate::disclosure::Channel;
use crate::ledger::stage::NewVersion;
use crate::lifecycle::Standing;
use crate::outbox::{self, Entry, Kind};
use crate::record::{validate_owned, CanonicalRecord, Category, ValidationContext};
use crate::sharing::Router;
use crate::store::{Store, StoreError};
use crate::subject::{IdentifierExceptions, SubjectKind};

/// Why a subject could not be evaluated. Storage: the operator's, a retry helps. Invalid: the
/// stored archive or the profile produced a result that does not validate (reported, skipped).
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The writer's answer reads as the storage failure it was before writes were typed.
impl From<crate::exchange::WriteError> for EvaluationError {
    fn from(e: crate::exchange::WriteError) -> Self {
        EvaluationError::Storage(e.into())
    }
}

/// Everything evaluating needs besides the subject.
#[derive(Clone)]
pub struct Engine {
    pub store: Store,
    pub profiles: crate::swap::Swap<Profiles>,
    pub router: crate::sharing::SharedRouter,
    pub exceptions: IdentifierExceptions,
    pub destinations: Vec<DestinationConfig>,
    /// The agency id results and linked records are recorded under.
    pub agency: String,
}

/// What one evaluation asks the writer to do.
#[derive(Default)]
pub struct Step {
    pub records: Vec<NewVersion>,
    pub marks: Vec<archive::MarkChange>,
    /// Records re-planned with their new marks (linked records that end with their listing).
    pub items: Vec<crate::ledger::stage::ReconcileItem>,
    /// `evt/` timer keys to write.
    pub timers: Vec<String>,
    /// Other writes of the step (the `lnk/` index).
    pub writes: Vec<(String, Vec<u8>)>,
    /// For the audit entry.
    pub summary: Option<Value>,
    /// Subjects not evaluated because no profile applies (a gap, issue #26), by the profile
    /// that ended (or "none"): counted by the worker, logged, kept with the cycle.
    pub gaps: std::collections::BTreeMap<String, u64>,
}

impl Step {
    pub fn absorb(&mut self, other: Step, summaries: &mut Vec<Value>) {
        self.records.extend(other.records);
        self.marks.extend(other.marks);
        self.items.extend(other.items);
        self.timers.extend(other.timers);
        self.writes.extend(other.writes);
        if let Some(s) = other.summary {
            summaries.push(s);
        }
        for (k, n) in other.gaps {
            *self.gaps.entry(k).or_default() += n;
        }
    }
}

/// A stored record as evaluation reads it.
struct Stored {
    fact: Fact,
    json: Value,
    received_at: Option<OffsetDateTime>,
    marks: Vec<archive::Mark>,
}

/// The result a subject holds for a year, as stored.
#[derive(Debug, Clone)]
pub struct Held {
    pub version: u32,
    pub content_hash: String,
    pub content: Map<String, Value>,
}

impl Held {
    pub fn grade(&self) -> Option<Grade> {
        self.content
            .get("grade")
            .and_then(Value::as_str)
            .and_then(Grade::parse)
    }

    fn carried_since(&self) -> Option<i32> {
        self.content
            .get("carried_since")
            .and_then(Value::as_i64)
            .map(|y| y as i32)
    }
}

/// `lnk/{listing agency}{SEP}{listing record id}{SEP}{link record id}`: the linked records of joint
/// punishment a listing made, so each can be ended with it whatever its records say later.
pub fn link_index_key(agency: &str, record_id: &str, link_id: &str) -> String {
    crate::store::keys::Key::encode(&crate::store::keys::LinkKey {
        agency: agency.into(),
        record_id: record_id.into(),
        link: link_id.into(),
    })
}

/// `evt/{unix:020}{SEP}{archive key}`: re-evaluate the subject at that instant.
pub fn timer_key(at: OffsetDateTime, archive_key: &str) -> String {
    crate::store::keys::instant_key(TIMER_PREFIX, at.unix_timestamp(), archive_key)
}

/// The key space of evaluation timers.
pub const TIMER_PREFIX: &str = "evt/";

/// The day and year of an instant on the calendar the regulations use (Beijing time).
pub fn today(now: OffsetDateTime) -> Date {
    now.to_offset(CHINA_OFFSET).date()
}

impl Engine {
    /// The id of a record the engine derives from a subject (`id_of` its archive key): the id an
    /// earlier release derived from the clear identifier when that record exists (format 5 keeps
    /// such ids, so platforms never get a second record), else the one from the keyed archive key
    /// (no new id is derived from a clear identifier).
    pub fn derived_id(
        &self,
        archive_key: &str,
        id_of: impl Fn(&str) -> String,
    ) -> Result<String, EvaluationError> {
        if let Some(clear) = archive::clear_name(&self.store, archive_key)? {
            let old = id_of(&clear);
            let head = archive::record_head_key(&self.agency, &old);
            if self.store.get_raw(head.as_bytes())?.is_some() {
                return Ok(old);
            }
        }
        Ok(id_of(archive_key))
    }

    /// The result `archive_key` holds for `year`, if any.
    pub fn held(&self, archive_key: &str, year: i32) -> Result<Option<Held>, EvaluationError> {
        let id = self.derived_id(archive_key, |k| ids::result(year, k))?;
        let Some((head, version)) = archive::current_version(&self.store, &self.agency, &id)?
        else {
            return Ok(None);
        };
        let json: Value =
            serde_json::from_str(version.record.get()).map_err(|e| StoreError::Corrupt {
                key: archive::record_head_key(&self.agency, &id),
                message: e.to_string(),
            })?;
        let content = json
            .get("content")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Some(Held {
            version: version.version,
            content_hash: head.content_hash,
            content,
        }))
    }

    /// Evaluate one subject for the cycle of `now`. `None`: nothing to do (no profile in force for
    /// it, exited, or no record of it).
    pub fn evaluate(
        &self,
        archive_key: &str,
        now: OffsetDateTime,
    ) -> Result<Step, EvaluationError> {
        self.evaluate_in(archive_key, now, None)
    }

    /// [`Self::evaluate`], limited to subjects whose region starts with `scope` (a re-evaluation
    /// of one region; joint punishment still follows the listing everywhere).
    pub fn evaluate_in(
        &self,
        archive_key: &str,
        now: OffsetDateTime,
        scope: Option<&str>,
    ) -> Result<Step, EvaluationError> {
        let mut step = Step::default();
        let Some(entry) = self
            .store
            .get_json::<archive::SubjectEntry>(&archive::subject_key(archive_key))?
        else {
            return Ok(step);
        };
        let entry_kind = match entry.kind.as_str() {
            "institution" => Some(SubjectKind::Institution),
            "individual" => Some(SubjectKind::Individual),
            _ => None,
        };
        // Joint punishment follows the listing whatever the grade does: an institution's listing
        // reaches its people, and its repair withdraws them, even when no profile is in force or the
        // institution has exited (GD Art. 29).
        let mut stored = None;
        if entry_kind == Some(SubjectKind::Institution) && self.has_listing(archive_key)? {
            let read = self.read(archive_key)?;
            self.joint_punishment(&read, &self.router.current(), now, &mut step)?;
            stored = Some(read);
        }
        if entry.is_exited() {
            // LS Art. 20: removed from view; the results stay and return with a re-entry.
            return Ok(step);
        }
        let profiles = self.profiles.current();
        // No profile applies to this kind of subject today: nothing more to read (the gap is
        // counted by region below only when one was ever configured for the kind).
        if entry_kind.is_some_and(|k| !profiles.any_applies(k, today(now))) {
            if let Some(k) = entry_kind {
                if let Some(p) = profiles
                    .all()
                    .map(|(p, _)| p)
                    .filter(|p| p.subject_kinds.contains(&k))
                    .max_by_key(|p| p.effective_until)
                {
                    step.gaps.insert(p.name.clone(), 1);
                }
            }
            return Ok(step);
        }
        let stored = match stored {
            Some(s) => s,
            None => self.read(archive_key)?,
        };
        let Some(latest) = latest_of(&stored) else {
            return Ok(step);
        };
        let day = today(now);
        let year = day.year();
        let kind = subject_kind(&latest.json);
        let region = latest
            .json
            .pointer("/source/region")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if scope.is_some_and(|s| !region.starts_with(s)) {
            return Ok(step);
        }
        let Some((profile, pending_since)) =
            kind.and_then(|k| profiles.applicable(&region, k, day))
        else {
            // The gap policy "stop": said in the cycle and the log, by the profile that ended.
            if let Some(ended) = kind.and_then(|k| profiles.last_ended(&region, k, day)) {
                step.gaps.insert(ended.name.clone(), 1);
            }
            return Ok(step);
        };
        let previous = self.held(archive_key, year - 1)?;
        let current = self.held(archive_key, year)?;
        let facts: Vec<Fact> = stored.iter().map(|s| s.fact.clone()).collect();
        let last_year = match &previous {
            Some(p) => p
                .grade()
                .map(|g| (g, p.carried_since().unwrap_or(year - 1))),
            None => score::unrecorded_year(profile, &facts, year - 1),
        };
        let cycle = score::cycle_for(profile, year, last_year);
        let result = score::score(profile, &facts, cycle, day);
        let told = current
            .as_ref()
            .and_then(Held::grade)
            .or_else(|| previous.as_ref().and_then(Held::grade));
        let changed = current.is_none() || told != Some(result.grade);
        let notified_on = if changed {
            Some(crate::record::format_date(day))
        } else {
            current
                .as_ref()
                .and_then(|c| c.content.get("notified_on"))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let mut content = self.content(profile, cycle, &result, notified_on);
        if let Some(ended) = pending_since {
            // The gap policy "successor_pending": the result says it was computed under a profile
            // past its end date (issue #26). Absent otherwise, so results under a profile in force
            // keep the content (and hash) of earlier releases.
            content.insert("profile_status".into(), json!("successor_pending"));
            content.insert(
                "profile_ended_on".into(),
                json!(crate::record::format_date(ended)),
            );
        }
        let record = self.result_record(archive_key, &latest.json, &region, year, content)?;
        let canonical = record.canonical_bytes();
        let router = self.router.current();
        let unchanged = current
            .as_ref()
            .is_some_and(|c| c.content_hash == hex::encode(sha2::Sha256::digest(&canonical)));
        if !unchanged {
            let plan = router.plan(&record, Standing::Active, now);
            let mut enqueue = Vec::new();
            if changed {
                let follows = current.as_ref().map(|c| c.version).unwrap_or(0);
                enqueue = self.grade_notice(&record, told, &result, profile, now, follows);
            }
            step.summary = Some(json!({
                "subject": ids::subject_token(archive_key),
                "record_id": record.source.record_id,
                "year": year,
                "grade": result.grade,
                "points": result.points,
                "previous_grade": told,
                "notice": changed,
            }));
            step.records.push(NewVersion {
                record,
                canonical,
                plan,
                origin: format!("evaluation:{}", profile.name),
                touches_subject: false,
                enqueue,
            });
        }
        if let Some(next) = result.next_change {
            step.timers.push(timer_key(
                crate::lifecycle::notice::start_of(next),
                archive_key,
            ));
        }
        Ok(step)
    }

    /// Whether the subject's archive holds any dishonesty-list record (keys only).
    fn has_listing(&self, archive_key: &str) -> Result<bool, EvaluationError> {
        let prefix = format!(
            "arc/{archive_key}{}{:02}{}",
            crate::store::SEP,
            Category::DishonestList.number(),
            crate::store::SEP
        );
        Ok(self
            .store
            .keys_under(prefix.as_bytes())
            .next()
            .transpose()?
            .is_some())
    }

    fn read(&self, archive_key: &str) -> Result<Vec<Stored>, EvaluationError> {
        let mut out = Vec::new();
        for (head, version, agency, record_id) in
            archive::current_records(&self.store, archive_key)?
        {
            if agency == self.agency && !record_id.starts_with("LINK-") {
                continue;
            }
            let json: Value =
                serde_json::from_str(version.record.get()).map_err(|e| StoreError::Corrupt {
                    key: archive::record_head_key(&agency, &record_id),
                    message: e.to_string(),
                })?;
            let received = Some(today(version.received_at));
            let Some(on) = fact_date(&json).or(received) else {
                continue;
            };
            let ended = if head.marks.iter().any(|m| m.kind == MarkKind::Eliminated) {
                Some(Ended::Eliminated)
            } else if head.marks.iter().any(|m| m.kind == MarkKind::Repaired) {
                Some(Ended::Repaired)
            } else if head.expired_at.is_some() {
                Some(Ended::Expired)
            } else {
                None
            };
            out.push(Stored {
                fact: Fact {
                    agency: agency.clone(),
                    record_id: record_id.clone(),
                    version: version.version,
                    category: head.category,
                    content: json
                        .get("content")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    on,
                    valid_until: json
                        .get("valid_until")
                        .and_then(Value::as_str)
                        .and_then(crate::record::parse_date),
                    ended,
                },
                json,
                received_at: Some(version.received_at),
                marks: head.marks,
            });
        }
        Ok(out)
    }

    fn content(
        &self,
        profile: &Profile,
        cycle: score::Cycle,
        result: &Score,
        notified_on: Option<String>,
    ) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("year".into(), json!(cycle.year));
        c.insert("points".into(), json!(result.points));
        c.insert("grade".into(), json!(result.grade));
        c.insert(
            "serious_dishonesty".into(),
            json!(result.serious_dishonesty),
        );
        c.insert("method".into(), json!(profile.method));
        c.insert(
            "method_wording".into(),
            json!(score::wording(profile.method)),
        );
        c.insert("profile".into(), json!(profile.name));
        c.insert("profile_source".into(), json!(profile.source));
        c.insert("base".into(), json!(profile.base));
        c.insert("carried_since".into(), json!(cycle.carried_since));
        c.insert("reasons".into(), json!(result.reasons));
        if result.serious_dishonesty {
            c.insert(
                "grade_rule".into(),
                json!(match profile.serious_dishonesty_value {
                    super::profile::ValueSource::Regulation =>
                        "GD Art. 20: a subject on the serious-dishonesty list is graded E",
                    super::profile::ValueSource::Example =>
                        "serious-dishonesty listing graded E (GD Art. 20, applied as the profile's example)",
                }),
            );
        }
        if let Some(on) = notified_on {
            c.insert("notified_on".into(), json!(on));
        }
        c
    }

    fn result_record(
        &self,
        archive_key: &str,
        latest: &Value,
        region: &str,
        year: i32,
        content: Map<String, Value>,
    ) -> Result<CanonicalRecord, EvaluationError> {
        let value = json!({
            "category": "evaluation_result",
            "subject": latest.get("subject").cloned().unwrap_or(Value::Null),
            "source": {
                "agency": self.agency,
                "record_id": self.derived_id(archive_key, |k| ids::result(year, k))?,
                "region": region,
            },
            // GD Art. 21, LS Art. 24: the working result is for authorized query; results are
            // published once a year (LS Art. 27, `publish`).
            "disclosure": {"class": "authorized_query"},
            "valid_from": format!("{year:04}-01-01"),
            "content": content,
        });
        self.validated(value)
    }

    fn validated(&self, value: Value) -> Result<CanonicalRecord, EvaluationError> {
        let ctx = ValidationContext {
            exceptions: self.exceptions.clone(),
            authenticated_agency: None,
            // A stored record, read again: the rules it was accepted by.
            incoming: false,
        };
        validate_owned(value, &ctx).map_err(|errs| {
            EvaluationError::Invalid(
                errs.into_iter()
                    .map(|e| format!("{}: {}", e.field, e.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }

    /// GD Art. 22: the medical-insurance platform tells the subject the result and, when it
    /// changes, the change with its reasons and basis. The notice date starts the objection window
    /// of LS Art. 21.
    fn grade_notice(
        &self,
        record: &CanonicalRecord,
        previous: Option<Grade>,
        result: &Score,
        profile: &Profile,
        now: OffsetDateTime,
        follows: u32,
    ) -> Vec<Entry> {
        let body = json!({
            "type": "evaluation_result",
            "subject": record.to_json().get("subject"),
            "record_id": record.source.record_id,
            "year": record.content.get("year"),
            "previous_grade": previous,
            "grade": result.grade,
            "points": result.points,
            "reasons": result.reasons,
            "basis": ["GD Art. 22", profile.source],
            "profile": profile.name,
            "notified_on": crate::record::format_date(today(now)),
            "objection": "LS Art. 21: an objection may be filed within 10 working days of this notice",
        });
        let Ok(payload) = serde_json::value::to_raw_value(&body) else {
            return Vec::new();
        };
        let hash = hex::encode(record.content_hash());
        self.destinations
            .iter()
            .filter(|d| d.role == DestinationRole::MedicalInsurancePlatform)
            .map(|d| Entry {
                idempotency_key: outbox::idempotency_key(
                    &d.id,
                    &record.source.agency,
                    &record.source.record_id,
                    0,
                    Channel::GovShare,
                    Kind::Notice,
                    // The version it follows: A -> B -> A on one day is two notices, not one.
                    &format!("grade-{follows}-{hash}"),
                ),
                destination: d.id.clone(),
                channel: Channel::GovShare,
                kind: Kind::Notice,
                agency: record.source.agency.clone(),
                record_id: record.source.record_id.clone(),
                version: 0,
                rule: "evaluation-grade-notice".into(),
                enqueued_at: now.to_offset(CHINA_OFFSET),
                enqueued_unix: now.unix_timestamp(),
                correction_id: None,
                payload: Some(payload.clone()),
                source: None,
            })
            .collect()
    }

    /// GD Art. 29, LS Art. 30: an institution on a serious-dishonesty list carries the listing into
    /// the archives of its legal representative, actual controller, principal and directly
    /// responsible persons; a repaired or eliminated listing takes the linked records with it.
    fn joint_punishment(
        &self,
        stored: &[Stored],
        router: &Router,
        now: OffsetDateTime,
        step: &mut Step,
    ) -> Result<(), EvaluationError> {
        // The persons any of the institution's records in force names: its registration, and
        // as often its penalties (双公示 CF_FRDB, CF_FR_ZJLX, CF_FR_ZJHM; issue #26 found a legal
        // representative named only in a penalty never linked).
        let registered: Vec<Person> = stored
            .iter()
            .filter(|s| s.fact.ended.is_none() && !s.fact.record_id.starts_with("LINK-"))
            .flat_map(|s| persons(&s.fact.content))
            .fold(Vec::new(), |mut all, p| {
                if !all.iter().any(|q: &Person| q.id == p.id) {
                    all.push(p);
                }
                all
            });
        for listing in stored.iter().filter(|s| {
            s.fact.category == Category::DishonestList && !s.fact.record_id.starts_with("LINK-")
        }) {
            // Who the listing reaches now: nobody once it is repaired, eliminated, expired or no
            // longer a serious listing (a correction).
            let mut people: Vec<(Person, String)> = Vec::new();
            if score::is_serious_listing(&listing.fact) && listing.fact.ended.is_none() {
                let mut named = persons(&listing.fact.content);
                for p in &registered {
                    if !named.iter().any(|q| q.id == p.id) {
                        named.push(p.clone());
                    }
                }
                for person in named {
                    let Ok(id) = crate::subject::SubjectId::parse(
                        person.id_type,
                        &person.id,
                        &self.exceptions,
                    ) else {
                        continue;
                    };
                    let link_id = self.derived_id(&id.archive_key(&self.store), |k| {
                        ids::link(&listing.fact.agency, &listing.fact.record_id, k)
                    })?;
                    people.push((person, link_id));
                }
            }
            // Every link this listing ever made, from its index, ends when it is no longer wanted.
            let held = self.links_of(&listing.fact.agency, &listing.fact.record_id)?;
            let (kind, mark_id) = match listing.fact.ended {
                Some(Ended::Repaired) => (
                    MarkKind::Repaired,
                    listing
                        .marks
                        .iter()
                        .find(|m| m.kind == MarkKind::Repaired)
                        .map(|m| m.id.clone()),
                ),
                Some(Ended::Eliminated) => (
                    MarkKind::Eliminated,
                    listing
                        .marks
                        .iter()
                        .find(|m| m.kind == MarkKind::Eliminated)
                        .map(|m| m.id.clone()),
                ),
                // Corrected to no longer serious, or the person no longer recorded for it.
                _ => (MarkKind::Eliminated, None),
            };
            let mark_id = mark_id
                .unwrap_or_else(|| format!("joint-punishment-ended:{}", listing.fact.record_id));
            for link_id in held
                .iter()
                .filter(|l| !people.iter().any(|(_, id)| id == *l))
            {
                let Some(head) =
                    self.store
                        .get_json::<archive::RecordHead>(&archive::record_head_key(
                            &self.agency,
                            link_id,
                        ))?
                else {
                    continue;
                };
                if head
                    .marks
                    .iter()
                    .any(|m| matches!(m.kind, MarkKind::Repaired | MarkKind::Eliminated))
                {
                    continue;
                }
                self.change_link_mark(
                    link_id,
                    None,
                    Some(archive::Mark {
                        kind,
                        id: mark_id.clone(),
                        since: now,
                    }),
                    router,
                    now,
                    step,
                )?;
            }
            for (person, link_id) in &people {
                let record = match self.linked_record(listing, person, link_id) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(record_id = %listing.fact.record_id, error = %e, "joint punishment: linked record not built");
                        continue;
                    }
                };
                let canonical = record.canonical_bytes();
                let head =
                    self.store
                        .get_json::<archive::RecordHead>(&archive::record_head_key(
                            &self.agency,
                            link_id,
                        ))?;
                // Listed again after a correction had ended it: the link stands again.
                let ended = format!("joint-punishment-ended:{}", listing.fact.record_id);
                if head
                    .as_ref()
                    .is_some_and(|h| h.marks.iter().any(|m| m.id == ended))
                {
                    self.change_link_mark(link_id, Some(ended), None, router, now, step)?;
                }
                if head.is_some_and(|h| {
                    h.content_hash == hex::encode(sha2::Sha256::digest(&canonical))
                }) {
                    continue;
                }
                let plan = router.plan(&record, Standing::Active, now);
                step.writes.push((
                    link_index_key(&listing.fact.agency, &listing.fact.record_id, link_id),
                    b"{}".to_vec(),
                ));
                step.records.push(NewVersion {
                    canonical,
                    record,
                    plan,
                    origin: format!("joint_punishment:{}", listing.fact.record_id),
                    touches_subject: true,
                    enqueue: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Set or remove a mark on a linked record, and re-plan it so every platform gets the
    /// difference (a withdrawal when it ends, a publication when it stands again).
    #[allow(clippy::too_many_arguments)]
    fn change_link_mark(
        &self,
        link_id: &str,
        remove: Option<String>,
        add: Option<archive::Mark>,
        router: &Router,
        now: OffsetDateTime,
        step: &mut Step,
    ) -> Result<(), EvaluationError> {
        if let Some(item) = crate::ledger::recheck::item(
            &self.store,
            router,
            &self.exceptions,
            &self.agency,
            link_id,
            None,
            now,
        )? {
            step.items.push(item);
        }
        step.marks.push(archive::MarkChange {
            agency: self.agency.clone(),
            record_id: link_id.to_string(),
            remove,
            add,
        });
        Ok(())
    }

    /// The linked records a listing made (`lnk/` index).
    fn links_of(&self, agency: &str, record_id: &str) -> Result<Vec<String>, EvaluationError> {
        let prefix = link_index_key(agency, record_id, "");
        let mut out = Vec::new();
        for key in self.store.keys_under(prefix.as_bytes()) {
            let key = key?;
            out.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    fn linked_record(
        &self,
        listing: &Stored,
        person: &Person,
        link_id: &str,
    ) -> Result<CanonicalRecord, EvaluationError> {
        let src = &listing.json;
        let content = &listing.fact.content;
        let mut value = json!({
            "category": "dishonest_list",
            "subject": {
                "kind": "individual",
                "role": person.role.code(),
                "id_type": person.id_type.code(),
                "id": person.id,
                "name": person.name,
            },
            "source": {
                "agency": self.agency,
                "record_id": link_id,
                "region": src.pointer("/source/region").cloned().unwrap_or(Value::Null),
            },
            "basis": src.get("basis").cloned().unwrap_or(Value::Null),
            "disclosure": src.get("disclosure").cloned().unwrap_or(json!({"class": "gov_share"})),
            "content": {
                "list_name": content.get("list_name").cloned().unwrap_or(Value::Null),
                "listed_on": content.get("listed_on").cloned().unwrap_or(Value::Null),
                "authority": content.get("authority").cloned().unwrap_or(Value::Null),
                "serious_dishonesty": true,
                "joint_punishment": "GD Art. 29; LS Art. 30",
                "linked_to": {
                    "agency": listing.fact.agency,
                    "record_id": listing.fact.record_id,
                    "institution_id": src.pointer("/subject/id"),
                    "institution_name": src.pointer("/subject/name"),
                    "role": person.role.code(),
                },
            },
        });
        for field in ["valid_from", "valid_until"] {
            if let Some(v) = src.get(field) {
                value[field] = v.clone();
            }
        }
        self.validated(value)
    }
}

/// A person recorded for an institution.
#[derive(Debug, Clone)]
struct Person {
    role: crate::subject::SubjectRole,
    id_type: crate::subject::IdType,
    id: String,
    name: String,
}

const PERSON_ROLES: [&str; 4] = [
    "legal_representative",
    "actual_controller",
    "principal",
    "responsible_person",
];

/// The persons a record names: `content.responsible_persons` (objects with role, id_type, id and
/// name) and the flat `legal_representative`, `legal_representative_id_type`,
/// `legal_representative_id` of the 双公示 standard (CF_FRDB, CF_FR_ZJLX, CF_FR_ZJHM).
fn persons(content: &Map<String, Value>) -> Vec<Person> {
    let mut out = Vec::new();
    if let Some(list) = content.get("responsible_persons").and_then(Value::as_array) {
        for p in list {
            let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::trim);
            let (Some(role), Some(id_type), Some(id)) =
                (field("role"), field("id_type"), field("id"))
            else {
                continue;
            };
            if !PERSON_ROLES.contains(&role) {
                continue;
            }
            if let (Some(role), Some(id_type)) = (
                crate::subject::SubjectRole::from_code(role),
                crate::subject::IdType::from_code(id_type),
            ) {
                out.push(Person {
                    role,
                    id_type,
                    id: id.to_string(),
                    name: field("name").unwrap_or_default().to_string(),
                });
            }
        }
    }
    let flat = |k: &str| content.get(k).and_then(Value::as_str).map(str::trim);
    if let (Some(id_type), Some(id)) = (
        flat("legal_representative_id_type"),
        flat("legal_representative_id"),
    ) {
        if let Some(id_type) = crate::subject::IdType::from_code(id_type) {
            if !out.iter().any(|p| p.id == id) {
                out.push(Person {
                    role: crate::subject::SubjectRole::LegalRepresentative,
                    id_type,
                    id: id.to_string(),
                    name: flat("legal_representative").unwrap_or_default().to_string(),
                });
            }
        }
    }
    out.retain(|p| p.id_type.kind() == SubjectKind::Individual);
    out
}

/// The record the subject's identity is taken from: its latest registration record, else its
/// latest record.
fn latest_of(stored: &[Stored]) -> Option<&Stored> {
    stored
        .iter()
        .filter(|s| s.fact.category == Category::Registration)
        .max_by(|a, b| a.received_at.cmp(&b.received_at))
        .or_else(|| {
            stored
                .iter()
                .max_by(|a, b| a.received_at.cmp(&b.received_at))
        })
}

fn subject_kind(json: &Value) -> Option<SubjectKind> {
    match json.pointer("/subject/kind").and_then(Value::as_str) {
        Some("institution") => Some(SubjectKind::Institution),
        Some("individual") => Some(SubjectKind::Individual),
        _ => None,
    }
}

/// The date the conduct was established (see [`Fact::on`]).
fn fact_date(json: &Value) -> Option<Date> {
    let date = |p: &str| {
        json.pointer(p)
            .and_then(Value::as_str)
            .and_then(crate::record::parse_date)
    };
    date("/basis/decided_on")
        .or_else(|| date("/content/listed_on"))
        .or_else(|| date("/content/awarded_on"))
        .or_else(|| date("/content/committed_on"))
        .or_else(|| date("/content/registered_on"))
        .or_else(|| date("/valid_from"))
}
