//! The credit archive (GD Art. 9, LS Art. 14): one archive per subject, keyed by its unified
//! social credit code or personal ID, holding every record by category with its full version
//! history.
//!
//! Owns: the `rec/`, `arc/` and `sub/` key spaces (see `store` for the layout), the idempotency
//! rule and reading a subject's archive.
//!
//! Idempotency: a record's identity is (source agency, source record id). The same record with the
//! same content (sha256 of its canonical JSON) creates nothing; with changed content it becomes
//! the next version.
//!
//! Invariant: versions are never overwritten or deleted, whatever happens to what platforms may
//! show. A record past its retention (LS Art. 20: dishonesty records count for 3 years) stays with
//! every version and is marked `expired_at` in its head: kept for audit, never shared again. A
//! subject that exits (退出医保服务, death) keeps its whole archive, marked `exited` and hidden from
//! agencies' reads; re-entry shows it again (LS Art. 20: "退出前的信用评价信息将恢复"). Nothing
//! here decides what platforms hold: that is the publication ledger (`ledger`).
//!
//! A record's subject is whatever its current version says (issue #31): the same source record
//! sent again for another subject (the natural way to correct a wrong attribution) moves it.
//! Its earlier versions stay under the first subject's keys (versions are never rewritten), but
//! the first subject's archive, evaluation, exit and repairs no longer count it
//! ([`records_of`] reads the head), its archive lists it apart as no longer its own, and both
//! subjects are marked changed so both are evaluated again. The move is audited (`ingest`).
//!
//! Never does: write to sled itself. [`Staging`] computes the writes and the single writer in
//! `store` commits them, so two concurrent batches cannot both create "version 1".

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::record::{CanonicalRecord, Category};
use crate::store::keys::{Key, RecordKey, SeqKey, SeqSpace, SubjectKey, SubjectSpace, VersionKey};
use crate::store::{to_bytes, Store, StoreError};
use crate::subject::SubjectId;

/// The latest state of one source record.
///
/// What platforms hold of it is not here: the publication ledger keeps that under its own key
/// (`led/`, see `ledger`). Heads of formats before 6 carried it (`publication`, and `shared` before
/// the ledger existed); the format-6 step moved it out, and a member this type does not know is
/// ignored on read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordHead {
    pub subject: String,
    pub category: Category,
    pub version: u32,
    pub content_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
    /// When the record passed its retention (LS Art. 20): kept for audit, never shared again.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub expired_at: Option<time::OffsetDateTime>,
    /// Marks on the record in force: 异议标注 while an objection is reviewed (LS Art. 23), or the
    /// elimination an upheld objection orders. They travel with every share of the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
}

/// A mark on an archived record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub kind: MarkKind,
    /// The objection that set it.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: time::OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// 异议标注: under objection (LS Art. 23).
    Objection,
    /// An upheld objection found no bad credit information: "应及时消除其相关记录" (LS Art. 23). The
    /// versions stay; no platform may hold the record.
    Eliminated,
    /// 修复: a completed credit repair (LS Art. 40 "在信用档案里进行'修复'标注"). The record stays
    /// in the archive ("不撤销其失信记录"); it stops being noticed and shared (Order No. 36 Art. 3).
    Repaired,
}

/// A change to one record's marks.
#[derive(Debug, Clone)]
pub struct MarkChange {
    pub agency: String,
    pub record_id: String,
    /// Marks set by this objection id are removed first...
    pub remove: Option<String>,
    /// ...then this one is added.
    pub add: Option<Mark>,
}

/// One stored version of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: time::OffsetDateTime,
    pub receipt_id: String,
    pub content_hash: String,
    /// The canonical record exactly as hashed (stored and served verbatim).
    pub record: Box<serde_json::value::RawValue>,
}

/// A record's canonical bytes made ready before the writer takes them: their content hash and
/// the record as stored (through the protection at rest). The single writer is the gateway's
/// limit; whatever a record needs that depends on nothing but the record is done here, on the
/// request's own thread, and the writer only copies it into the version.
///
/// Invariant: `stored` is exactly what the protection at rest makes of the canonical bytes, so a
/// version holding it is stored as it is (`WriteSet::put_stored`); the version's other members
/// (number, time, receipt id, hash) are the gateway's own and never personal. Sealed under the
/// data key in force when prepared; the writer re-seals it if a key reload came in between.
#[derive(Debug, Clone)]
pub struct Prepared {
    content_hash: String,
    stored: Box<serde_json::value::RawValue>,
}

impl Prepared {
    pub fn new(store: &Store, canonical: &[u8]) -> Result<Self, StoreError> {
        let content_hash = hex::encode(sha2::Sha256::digest(canonical));
        let stored = store.protect_value(b"arc/", canonical.to_vec())?;
        let text = String::from_utf8(stored).map_err(|e| StoreError::Corrupt {
            key: "canonical record".into(),
            message: e.to_string(),
        })?;
        let stored =
            serde_json::value::RawValue::from_string(text).map_err(|e| StoreError::Corrupt {
                key: "canonical record".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            content_hash,
            stored,
        })
    }

    /// The sha256 of the canonical bytes, hex: what idempotency compares.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }
}

/// What the archive knows of a subject besides its records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubjectEntry {
    pub kind: String,
    pub id_type: String,
    pub name: String,
    /// `active`, or `exited` (退出医保服务, death): hidden until it re-enters (LS Art. 20).
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
    /// The exit (or re-entry) in force: date, reason and who said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_change: Option<StandingChange>,
    /// A person whose evaluation records (`EVAL-`, `PUB-`, `LINK-`) were named, before format 4,
    /// from the clear identifier: that identifier, so those records keep their ids (a platform
    /// holding `PUB-2026-…` never receives a second published result for the same year). Set
    /// only by the format-5 migration; sealed at rest like every personal identifier. Only records
    /// that already exist under such an id keep it: new ones are named from the keyed archive key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_before_sealing: Option<ClearName>,
}

/// A subject's identifier as earlier releases named it (`id_type:id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearName {
    pub id_type: String,
    pub id: String,
}

/// The clear form earlier releases derived `archive_key`'s evaluation record ids from, for a
/// person named so before format 4 ([`SubjectEntry::named_before_sealing`]).
pub fn clear_name(store: &Store, archive_key: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .get_json::<SubjectEntry>(&SubjectKey::entry(archive_key))?
        .and_then(|entry| entry.clear_name()))
}

/// An exit from, or re-entry into, medical-insurance service (LS Art. 20).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StandingChange {
    /// `left_service`, `death` or `reentered`.
    pub reason: String,
    /// The date it took effect (YYYY-MM-DD).
    pub on: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl SubjectEntry {
    /// See [`clear_name`].
    pub fn clear_name(&self) -> Option<String> {
        self.named_before_sealing
            .as_ref()
            .map(|n| format!("{}:{}", n.id_type, n.id))
    }

    pub fn is_exited(&self) -> bool {
        self.status == EXITED
    }
}

/// `SubjectEntry::status` of a subject that left medical-insurance service or died.
pub const EXITED: &str = "exited";

/// Key of a subject's entry.
pub fn subject_key(archive_key: &str) -> String {
    SubjectKey::entry(archive_key)
}

/// `exi/{archive_key}`: present while the subject is exited, so the writer knows every exited
/// subject without scanning all subjects at start.
pub fn exited_key(archive_key: &str) -> String {
    SubjectKey::exited(archive_key)
}

/// Every exited subject's archive key.
pub fn exited_subjects(store: &Store) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for item in store.keys_under(SubjectSpace::Exited.prefix().as_bytes()) {
        let k = item?;
        let key = String::from_utf8_lossy(&k);
        let subject =
            SubjectKey::decode(&key).ok_or_else(|| StoreError::corrupt(&k, "not a subject key"))?;
        out.insert(subject.subject);
    }
    Ok(out)
}

/// What happened to one accepted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    New,
    Updated,
    Unchanged,
}

/// The writes of one group commit, with the heads it has already changed, so a record repeated
/// within the group is seen as the version the group just wrote. Heads are written once, at
/// [`Staging::into_write_set`].
#[derive(Default)]
pub struct Staging {
    heads: HashMap<String, RecordHead>,
    /// Heads and subject entries read ahead for the group's records in one request each (see
    /// [`Staging::read_ahead`]).
    read: HashMap<String, Option<RecordHead>>,
    read_subjects: HashMap<String, Option<SubjectEntry>>,
    dirty: Vec<String>,
    subjects: HashMap<String, SubjectEntry>,
    /// Subjects whose archive this group changes (a version, a mark, an expiry, a standing).
    touched: std::collections::BTreeSet<String>,
    /// The group's place in the change log: `chg/{change_seq}` lists the touched subjects.
    pub change_seq: u64,
    pub writes: Vec<(String, Vec<u8>)>,
    /// Versions whose values are already as stored ([`Prepared`]).
    stored: Vec<(String, Vec<u8>)>,
}

/// The change log (format 3): `chg/{seq:020}` lists (JSON array) the subjects whose archive one
/// group commit changed, one key per group in commit order, until whoever follows changes (the
/// evaluation worker) takes the entry up and removes it. One sequential write per group instead
/// of one scattered write per subject; a subject changed again after a follower read the log is
/// in a later entry, so no change is lost.
pub fn change_log_key(seq: u64) -> String {
    SeqKey::change_log(seq)
}

/// Whether a `chg/` key is a change-log entry (format 3) rather than a format-2 subject key.
pub fn is_change_log_key(key: &str) -> bool {
    SeqKey::decode(key).is_some_and(|k| k.space == SeqSpace::ChangeLog)
}

/// The oldest change-log entries, until they name at least `limit` subjects: their keys and the
/// subjects (each once).
pub fn changed_subjects(
    store: &Store,
    limit: usize,
) -> Result<(Vec<String>, std::collections::BTreeSet<String>), StoreError> {
    let (mut keys, mut subjects) = (Vec::new(), std::collections::BTreeSet::new());
    for item in store.scan_raw(b"chg/") {
        let (k, v) = item?;
        let listed: Vec<String> = crate::store::decode(&k, &v)?;
        keys.push(String::from_utf8_lossy(&k).into_owned());
        subjects.extend(listed);
        if subjects.len() >= limit {
            break;
        }
    }
    Ok((keys, subjects))
}

/// Read the keys not read yet in one request, into `read` (a missing key as `None`).
fn read_missing<T: serde::de::DeserializeOwned>(
    store: &Store,
    keys: impl Iterator<Item = String>,
    read: &mut HashMap<String, Option<T>>,
) -> Result<(), StoreError> {
    let mut keys: Vec<String> = keys.filter(|k| !read.contains_key(k)).collect();
    keys.sort_unstable();
    keys.dedup();
    let found = store.get_many_json::<T>(&keys)?;
    read.extend(keys.into_iter().zip(found));
    Ok(())
}

/// A record a group is about to stage, for [`Staging::read_ahead`].
pub struct Incoming {
    pub agency: String,
    pub record_id: String,
    /// The subject's archive key and name as the record gives them.
    pub subject: String,
    pub name: String,
}

impl Incoming {
    pub fn of(record: &CanonicalRecord, store: &Store) -> Self {
        Self {
            agency: record.source.agency.clone(),
            record_id: record.source.record_id.clone(),
            subject: record.subject.id.archive_key(store),
            name: record.subject.name.clone(),
        }
    }
}

/// Subjects the writer knows to be stored with this name (saves a read per record); bounded.
#[derive(Default)]
pub struct SubjectCache(HashMap<String, u64>);

const SUBJECT_CACHE_LIMIT: usize = 200_000;

impl SubjectCache {
    fn knows(&self, key: &str, name: &str) -> bool {
        self.0.get(key) == Some(&name_hash(name))
    }

    fn remember(&mut self, key: &str, name: &str) {
        if self.0.len() >= SUBJECT_CACHE_LIMIT {
            self.0.clear();
        }
        self.0.insert(key.to_string(), name_hash(name));
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl Staging {
    /// Read the heads of the records the group is about to stage, and the entries of their
    /// subjects the writer does not know, in one request each (a database engine answers many
    /// keys in one round trip; the writer holds the store meanwhile, so they cannot change before
    /// they are used).
    pub fn read_ahead(
        &mut self,
        store: &Store,
        subjects: &SubjectCache,
        records: &[Incoming],
    ) -> Result<(), StoreError> {
        let heads = records
            .iter()
            .map(|r| record_head_key(&r.agency, &r.record_id))
            .filter(|k| !self.heads.contains_key(k));
        read_missing(store, heads, &mut self.read)?;
        let entries = records
            .iter()
            .filter(|r| !subjects.knows(&r.subject, &r.name))
            .map(|r| SubjectKey::entry(&r.subject))
            .filter(|k| !self.subjects.contains_key(k));
        read_missing(store, entries, &mut self.read_subjects)?;
        Ok(())
    }

    /// The records of `records` whose head [`Staging::read_ahead`] found stored: records seen
    /// before, whose other state (the publication ledger's) a follower may read ahead too.
    pub fn stored<'r>(&self, records: &'r [Incoming]) -> Vec<&'r Incoming> {
        records
            .iter()
            .filter(|r| {
                matches!(
                    self.read.get(&record_head_key(&r.agency, &r.record_id)),
                    Some(Some(_))
                )
            })
            .collect()
    }

    /// Stage one accepted record; returns its outcome, its version and its head as it was before.
    /// `canonical` is the record's canonical bytes ([`CanonicalRecord::canonical_bytes`]),
    /// computed by the caller outside the writer thread.
    // Eight plain arguments on the writer's hot path, each a different thing the group owns; a
    // struct of borrowed fields would only rename them (issue #28 tracks typed writer jobs).
    #[allow(clippy::too_many_arguments)]
    pub fn stage(
        &mut self,
        store: &Store,
        subjects: &mut SubjectCache,
        record: &CanonicalRecord,
        prepared: &Prepared,
        receipt_id: &str,
        now: time::OffsetDateTime,
        touch: bool,
    ) -> Result<(Outcome, u32, Option<RecordHead>), StoreError> {
        let head_key = record_head_key(&record.source.agency, &record.source.record_id);
        let previous = match (self.heads.get(&head_key), self.read.remove(&head_key)) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(read)) => read,
            (None, None) => store.get_json::<RecordHead>(&head_key)?,
        };
        let hash = prepared.content_hash.clone();
        if let Some(prev) = &previous {
            if prev.content_hash == hash {
                return Ok((Outcome::Unchanged, prev.version, previous.clone()));
            }
        }
        let version = previous.as_ref().map(|p| p.version + 1).unwrap_or(1);
        let subject = record.subject.id.archive_key(store);
        // A move: the subject it leaves changes too (its evaluation no longer counts it).
        if let Some(prev) = previous.as_ref().filter(|p| p.subject != subject) {
            if touch {
                self.touched.insert(prev.subject.clone());
            }
        }
        let head = RecordHead {
            subject: subject.clone(),
            category: record.category,
            version,
            content_hash: hash.clone(),
            updated_at: now,
            expired_at: previous.as_ref().and_then(|p| p.expired_at),
            marks: previous
                .as_ref()
                .map(|p| p.marks.clone())
                .unwrap_or_default(),
        };
        let entry = Version {
            version,
            received_at: now,
            receipt_id: receipt_id.to_string(),
            content_hash: hash,
            record: prepared.stored.clone(),
        };
        // Stored as it is: the record in it passed through the protection at rest already.
        self.stored.push((
            version_key(
                &subject,
                record.category,
                &record.source.agency,
                &record.source.record_id,
                version,
            ),
            to_bytes(&entry),
        ));
        if !self.heads.contains_key(&head_key) {
            self.dirty.push(head_key.clone());
        }
        self.heads.insert(head_key, head);
        if touch {
            self.touched.insert(subject.clone());
        }
        if !subjects.knows(&subject, &record.subject.name) {
            self.stage_subject(store, record, &subject, now)?;
            subjects.remember(&subject, &record.subject.name);
        }
        let outcome = if previous.is_some() {
            Outcome::Updated
        } else {
            Outcome::New
        };
        Ok((outcome, version, previous))
    }

    /// The head of a record as this group sees it.
    pub fn head(
        &mut self,
        store: &Store,
        agency: &str,
        record_id: &str,
    ) -> Result<Option<RecordHead>, StoreError> {
        let key = record_head_key(agency, record_id);
        match self.heads.get(&key) {
            Some(h) => Ok(Some(h.clone())),
            None => store.get_json::<RecordHead>(&key),
        }
    }

    /// Write a subject entry (an exit or re-entry) so that later records of this group see it.
    pub fn put_subject(&mut self, archive_key: &str, entry: SubjectEntry) {
        let key = subject_key(archive_key);
        self.writes.push((key.clone(), to_bytes(&entry)));
        self.subjects.insert(key, entry);
        self.touched.insert(archive_key.to_string());
    }

    /// Apply a change to a record's marks.
    pub fn change_marks(&mut self, store: &Store, change: &MarkChange) -> Result<(), StoreError> {
        let key = record_head_key(&change.agency, &change.record_id);
        let Some(mut head) = self.head(store, &change.agency, &change.record_id)? else {
            return Ok(());
        };
        if let Some(id) = &change.remove {
            head.marks.retain(|m| &m.id != id);
        }
        if let Some(mark) = &change.add {
            head.marks.push(mark.clone());
        }
        self.touched.insert(head.subject.clone());
        if !self.heads.contains_key(&key) {
            self.dirty.push(key.clone());
        }
        self.heads.insert(key, head);
        Ok(())
    }

    /// Mark a record expired (past its retention, LS Art. 20) once; its versions stay.
    pub fn mark_expired(
        &mut self,
        store: &Store,
        agency: &str,
        record_id: &str,
        at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        let key = record_head_key(agency, record_id);
        let Some(mut head) = self.head(store, agency, record_id)? else {
            return Ok(());
        };
        if head.expired_at.is_some() {
            return Ok(());
        }
        head.expired_at = Some(at);
        self.touched.insert(head.subject.clone());
        if !self.heads.contains_key(&key) {
            self.dirty.push(key.clone());
        }
        self.heads.insert(key, head);
        Ok(())
    }

    /// Every write of the group into `set`: versions, subjects, then the final state of each
    /// changed head.
    pub fn into_write_set(mut self, set: &mut crate::store::WriteSet) {
        for (k, v) in std::mem::take(&mut self.stored) {
            set.put_stored(k, v);
        }
        for (k, v) in self.into_writes() {
            set.put(k, v);
        }
    }

    /// Every write of the group: versions, subjects, then the final state of each changed head.
    /// (Versions prepared off the writer are put apart, see [`Staging::into_write_set`].)
    fn into_writes(mut self) -> Vec<(String, Vec<u8>)> {
        let touched = std::mem::take(&mut self.touched);
        if !touched.is_empty() {
            self.writes
                .push((change_log_key(self.change_seq), to_bytes(&touched)));
        }
        for key in std::mem::take(&mut self.dirty) {
            if let Some(head) = self.heads.get(&key) {
                let bytes = to_bytes(head);
                self.writes.push((key, bytes));
            }
        }
        self.writes
    }

    fn stage_subject(
        &mut self,
        store: &Store,
        record: &CanonicalRecord,
        key: &str,
        now: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        let sub_key = SubjectKey::entry(key);
        let existing = match (
            self.subjects.get(&sub_key),
            self.read_subjects.remove(&sub_key),
        ) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(read)) => read,
            (None, None) => store.get_json::<SubjectEntry>(&sub_key)?,
        };
        let entry = match existing {
            Some(mut e) => {
                if e.name == record.subject.name {
                    return Ok(());
                }
                e.name = record.subject.name.clone();
                e.updated_at = now;
                e
            }
            None => SubjectEntry {
                kind: serde_json::to_value(record.subject.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                id_type: record.subject.id.id_type().code().to_string(),
                name: record.subject.name.clone(),
                status: "active".into(),
                first_seen: now,
                updated_at: now,
                standing_change: None,
                named_before_sealing: None,
            },
        };
        self.writes.push((sub_key.clone(), to_bytes(&entry)));
        self.subjects.insert(sub_key, entry);
        Ok(())
    }
}

/// A subject's archive as returned by `GET /v1/subjects/{id_type}/{id}`.
#[derive(Debug, Serialize)]
pub struct SubjectArchive {
    pub subject: SubjectEntry,
    pub id: String,
    /// Category code -> records of that category, each with every version, oldest first.
    pub categories: std::collections::BTreeMap<String, Vec<RecordHistory>>,
    /// Records whose earlier versions were filed here but whose current version is filed
    /// elsewhere (moved to another subject, or to another category): history, not the
    /// subject's own. Who holds it now is not said here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_longer_current: Vec<RecordHistory>,
}

#[derive(Debug, Serialize)]
pub struct RecordHistory {
    pub agency: String,
    pub record_id: String,
    pub current_version: u32,
    /// Past its retention (LS Art. 20): kept for audit, shared nowhere.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub expired_at: Option<time::OffsetDateTime>,
    /// 异议标注, 修复 and the elimination an upheld objection orders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    pub versions: Vec<Version>,
}

/// A subject's archive as agencies may see it: nothing while the subject has exited (LS Art. 20:
/// removed from view until it re-enters; its records stay, and return with it).
pub fn visible_subject(
    store: &Store,
    id: &SubjectId,
) -> Result<Option<SubjectArchive>, StoreError> {
    Ok(read_subject(store, id)?.filter(|a| !a.subject.is_exited()))
}

/// Read a subject's whole archive; `None` when the gateway has no record of it.
pub fn read_subject(store: &Store, id: &SubjectId) -> Result<Option<SubjectArchive>, StoreError> {
    let key = id.archive_key(store);
    let Some(subject) = store.get_json::<SubjectEntry>(&SubjectKey::entry(&key))? else {
        return Ok(None);
    };
    let mut categories: std::collections::BTreeMap<String, Vec<RecordHistory>> = Default::default();
    for (k, version) in store.scan::<Version>(&VersionKey::subject_prefix(&key))? {
        let Some(VersionKey {
            category: number,
            agency,
            record_id,
            ..
        }) = VersionKey::decode(&k)
        else {
            return Err(StoreError::corrupt(k.as_bytes(), "not a version key"));
        };
        let category = Category::ALL
            .get(usize::from(number).wrapping_sub(1))
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| number.to_string());
        let list = categories.entry(category).or_default();
        match list.last_mut() {
            Some(h) if h.agency == *agency && h.record_id == *record_id => {
                h.current_version = version.version;
                h.versions.push(version);
            }
            _ => list.push(RecordHistory {
                agency: agency.to_string(),
                record_id: record_id.to_string(),
                current_version: version.version,
                expired_at: None,
                marks: Vec::new(),
                versions: vec![version],
            }),
        }
    }
    let mut no_longer_current = Vec::new();
    for (category, list) in categories.iter_mut() {
        let mut own = Vec::with_capacity(list.len());
        for mut history in std::mem::take(list) {
            let head = store
                .get_json::<RecordHead>(&record_head_key(&history.agency, &history.record_id))?;
            match head {
                Some(head) if head.subject == key && head.category.code() == category => {
                    history.expired_at = head.expired_at;
                    history.marks = head.marks;
                    own.push(history);
                }
                // Filed here once; its current version is filed elsewhere.
                Some(_) => no_longer_current.push(history),
                None => own.push(history),
            }
        }
        *list = own;
    }
    categories.retain(|_, list| !list.is_empty());
    Ok(Some(SubjectArchive {
        subject,
        id: id.as_str().to_string(),
        categories,
        no_longer_current,
    }))
}

/// The (agency, record id) of every record that is the subject's own now: filed under its
/// archive key and with a head that names it (a record moved to another subject keeps its
/// earlier versions here, but is no longer this subject's; see the module doc).
pub fn records_of(store: &Store, archive_key: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for item in store.keys_under(VersionKey::subject_prefix(archive_key).as_bytes()) {
        let k = item?;
        let Some(VersionKey {
            agency, record_id, ..
        }) = VersionKey::decode(&String::from_utf8_lossy(&k))
        else {
            return Err(StoreError::corrupt(&k, "not a version key"));
        };
        if !seen.insert((agency.clone(), record_id.clone())) {
            continue;
        }
        let own = store
            .get_json::<RecordHead>(&record_head_key(&agency, &record_id))?
            .is_some_and(|head| head.subject == archive_key);
        if own {
            out.push((agency, record_id));
        }
    }
    Ok(out)
}

impl Staging {
    /// Whether this group changes the subject's archive.
    pub fn touches(&self, archive_key: &str) -> bool {
        self.touched.contains(archive_key)
    }
}

/// The current version of every record in a subject's archive, with its head, in key order.
pub fn current_records(
    store: &Store,
    archive_key: &str,
) -> Result<Vec<(RecordHead, Version, String, String)>, StoreError> {
    let mut out = Vec::new();
    for (agency, record_id) in records_of(store, archive_key)? {
        if let Some((head, version)) = current_version(store, &agency, &record_id)? {
            out.push((head, version, agency, record_id));
        }
    }
    Ok(out)
}

/// The latest version of a record, with its head.
pub fn current_version(
    store: &Store,
    agency: &str,
    record_id: &str,
) -> Result<Option<(RecordHead, Version)>, StoreError> {
    let Some(head) = store.get_json::<RecordHead>(&record_head_key(agency, record_id))? else {
        return Ok(None);
    };
    let key = version_key(
        &head.subject,
        head.category,
        agency,
        record_id,
        head.version,
    );
    Ok(store.get_json::<Version>(&key)?.map(|v| (head, v)))
}

/// Number of stored record versions (for the load generator): a store that cannot be read says
/// so rather than counting nothing.
pub fn count_versions(store: &Store) -> Result<usize, StoreError> {
    store.count_under(b"arc/")
}

pub fn record_head_key(agency: &str, record_id: &str) -> String {
    RecordKey {
        agency: agency.into(),
        record_id: record_id.into(),
    }
    .encode()
}

/// `arc/{subject} \x1f {category:02} \x1f {agency} \x1f {record_id} \x1f {version:010}`.
pub fn version_key(
    subject: &str,
    category: Category,
    agency: &str,
    record_id: &str,
    version: u32,
) -> String {
    VersionKey {
        subject: subject.into(),
        category: category.number(),
        agency: agency.into(),
        record_id: record_id.into(),
        version,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{validate, ValidationContext};
    use crate::store::{memory, WriteSet};
    use serde_json::json;
    use time::macros::datetime;

    const HOSPITAL: &str = "91310110666007217T";
    const CLINIC: &str = "91350100M000100Y43";
    const T0: time::OffsetDateTime = datetime!(2026-11-25 10:00 +08:00);

    fn penalty(record_id: &str, uscc: &str, authority: &str) -> CanonicalRecord {
        validate(
            &json!({
                "category": "administrative",
                "subject": {"kind": "institution", "role": "designated_medical_institution",
                            "id_type": "uscc", "id": uscc, "name": "某医院"},
                "source": {"agency": "medical_insurance", "record_id": record_id, "region": "440106"},
                "basis": {"doc_type": "penalty_decision", "doc_number": "罚〔2026〕1号", "decided_on": "2026-11-01"},
                "disclosure": {"class": "public"},
                "content": {"action": "penalty", "authority": authority, "penalty_types": ["罚款"]}
            }),
            &ValidationContext::default(),
        )
        .expect("a valid test record")
    }

    fn honor(record_id: &str, uscc: &str) -> CanonicalRecord {
        validate(
            &json!({
                "category": "honor",
                "subject": {"kind": "institution", "role": "other_enterprise",
                            "id_type": "uscc", "id": uscc, "name": "某医院"},
                "source": {"agency": "medical_insurance", "record_id": record_id, "region": "440106"},
                "disclosure": {"class": "public"},
                "content": {"honor_name": "诚信单位", "awarded_by": "某医保局", "awarded_on": "2024-01-01"}
            }),
            &ValidationContext::default(),
        )
        .expect("a valid test record")
    }

    /// Stage `records` as one group commit and apply it; each record's outcome and version, and
    /// how many writes the group made.
    fn commit(
        store: &Store,
        records: &[&CanonicalRecord],
        now: time::OffsetDateTime,
    ) -> (Vec<(Outcome, u32)>, usize) {
        let mut staging = Staging {
            change_seq: store.next_id().unwrap(),
            ..Staging::default()
        };
        let mut subjects = SubjectCache::default();
        let mut out = Vec::new();
        for record in records {
            let prepared = Prepared::new(store, &record.canonical_bytes()).unwrap();
            let (outcome, version, _) = staging
                .stage(store, &mut subjects, record, &prepared, "rcp-1", now, true)
                .unwrap();
            out.push((outcome, version));
        }
        let mut writes = WriteSet::default();
        staging.into_write_set(&mut writes);
        let n = writes.len();
        store.apply(writes).unwrap();
        (out, n)
    }

    /// Apply what `change` stages to one record's head, as its own group.
    fn with_staging(store: &Store, change: impl FnOnce(&mut Staging)) {
        let mut staging = Staging {
            change_seq: store.next_id().unwrap(),
            ..Staging::default()
        };
        change(&mut staging);
        let mut writes = WriteSet::default();
        staging.into_write_set(&mut writes);
        store.apply(writes).unwrap();
    }

    fn head(store: &Store, record_id: &str) -> RecordHead {
        store
            .get_json::<RecordHead>(&record_head_key("medical_insurance", record_id))
            .unwrap()
            .expect("the record's head")
    }

    fn subject(uscc: &str) -> SubjectId {
        penalty("x", uscc, "a").subject.id
    }

    fn changed(store: &Store) -> std::collections::BTreeSet<String> {
        changed_subjects(store, usize::MAX).unwrap().1
    }

    #[test]
    fn a_new_record_becomes_version_1_with_its_head_subject_and_change_log_entry() {
        let (store, _) = memory::store();
        let record = penalty("r1", HOSPITAL, "某医保局");
        let (outcomes, _) = commit(&store, &[&record], T0);
        assert_eq!(outcomes, vec![(Outcome::New, 1)]);

        let h = head(&store, "r1");
        let key = format!("uscc:{HOSPITAL}");
        assert_eq!((h.subject.as_str(), h.version), (key.as_str(), 1));
        assert_eq!(h.category, Category::Administrative);
        assert_eq!(
            h.content_hash,
            hex::encode(sha2::Sha256::digest(record.canonical_bytes()))
        );
        assert_eq!(h.updated_at, T0);
        let v1 = version_key(&key, Category::Administrative, "medical_insurance", "r1", 1);
        let version = store.get_json::<Version>(&v1).unwrap().expect("version 1");
        assert_eq!((version.version, version.receipt_id.as_str()), (1, "rcp-1"));
        assert_eq!(version.record.get().as_bytes(), record.canonical_bytes());
        let entry = store
            .get_json::<SubjectEntry>(&subject_key(&key))
            .unwrap()
            .expect("the subject's entry");
        assert_eq!(
            (entry.name.as_str(), entry.status.as_str()),
            ("某医院", "active")
        );
        assert_eq!(changed(&store), [key].into());
    }

    #[test]
    fn the_same_content_again_stores_nothing_and_changed_content_is_version_2() {
        let (store, engine) = memory::store();
        commit(&store, &[&penalty("r1", HOSPITAL, "某医保局")], T0);
        let before = engine.keys(b"");

        let (outcomes, writes) = commit(&store, &[&penalty("r1", HOSPITAL, "某医保局")], T0);
        assert_eq!(outcomes, vec![(Outcome::Unchanged, 1)]);
        assert_eq!(
            writes, 0,
            "an unchanged record writes nothing, not even the change log"
        );
        assert_eq!(engine.keys(b""), before);

        let later = T0 + time::Duration::hours(1);
        let changed_record = penalty("r1", HOSPITAL, "另一医保局");
        let (outcomes, _) = commit(&store, &[&changed_record], later);
        assert_eq!(outcomes, vec![(Outcome::Updated, 2)]);
        let h = head(&store, "r1");
        assert_eq!((h.version, h.updated_at), (2, later));
        let (current_head, current) = current_version(&store, "medical_insurance", "r1")
            .unwrap()
            .unwrap();
        assert_eq!((current_head.version, current.version), (2, 2));
        assert_eq!(
            current.record.get().as_bytes(),
            changed_record.canonical_bytes()
        );
        // Version 1 is never overwritten.
        let versions = engine.keys(format!("arc/uscc:{HOSPITAL}").as_bytes());
        assert_eq!(versions.len(), 2);
        assert_eq!(count_versions(&store).unwrap(), 2);
    }

    #[test]
    fn a_record_repeated_in_one_group_is_its_next_version_not_a_second_version_1() {
        let (store, _) = memory::store();
        let first = penalty("r1", HOSPITAL, "某医保局");
        let second = penalty("r1", HOSPITAL, "另一医保局");
        let (outcomes, _) = commit(&store, &[&first, &second, &second], T0);
        assert_eq!(
            outcomes,
            vec![
                (Outcome::New, 1),
                (Outcome::Updated, 2),
                (Outcome::Unchanged, 2)
            ]
        );
        assert_eq!(head(&store, "r1").version, 2);
        assert_eq!(count_versions(&store).unwrap(), 2);
    }

    #[test]
    fn a_record_sent_for_another_subject_moves_there_and_both_subjects_change() {
        let (store, engine) = memory::store();
        let (hospital, clinic) = (format!("uscc:{HOSPITAL}"), format!("uscc:{CLINIC}"));
        commit(&store, &[&penalty("r1", HOSPITAL, "某医保局")], T0);
        // The follower takes the first change up.
        let mut w = WriteSet::default();
        for k in engine.keys(b"chg/") {
            w.remove(k);
        }
        store.apply(w).unwrap();

        let (outcomes, _) = commit(&store, &[&penalty("r1", CLINIC, "某医保局")], T0);
        assert_eq!(outcomes, vec![(Outcome::Updated, 2)]);
        assert_eq!(head(&store, "r1").subject, clinic);
        assert_eq!(changed(&store), [hospital.clone(), clinic.clone()].into());
        // The first version stays where it was filed; the subject no longer counts it.
        assert_eq!(engine.keys(format!("arc/{hospital}").as_bytes()).len(), 1);
        assert!(records_of(&store, &hospital).unwrap().is_empty());
        assert_eq!(
            records_of(&store, &clinic).unwrap(),
            vec![("medical_insurance".to_string(), "r1".to_string())]
        );
        let old = read_subject(&store, &subject(HOSPITAL)).unwrap().unwrap();
        assert!(old.categories.is_empty(), "{:?}", old.categories);
        assert_eq!(old.no_longer_current.len(), 1);
        assert_eq!(old.no_longer_current[0].record_id, "r1");
        let new = read_subject(&store, &subject(CLINIC)).unwrap().unwrap();
        assert_eq!(new.categories["administrative"][0].current_version, 2);
        assert!(current_records(&store, &hospital).unwrap().is_empty());
    }

    #[test]
    fn read_subject_groups_records_by_category_with_every_version_oldest_first() {
        let (store, _) = memory::store();
        assert!(read_subject(&store, &subject(HOSPITAL)).unwrap().is_none());
        commit(
            &store,
            &[
                &penalty("p1", HOSPITAL, "某医保局"),
                &penalty("p2", HOSPITAL, "某医保局"),
                &honor("h1", HOSPITAL),
                &penalty("other", CLINIC, "某医保局"),
            ],
            T0,
        );
        commit(&store, &[&penalty("p1", HOSPITAL, "另一医保局")], T0);
        let archive = read_subject(&store, &subject(HOSPITAL)).unwrap().unwrap();
        let categories: Vec<&str> = archive.categories.keys().map(String::as_str).collect();
        assert_eq!(categories, vec!["administrative", "honor"]);
        let admin = &archive.categories["administrative"];
        let ids: Vec<&str> = admin.iter().map(|h| h.record_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["p1", "p2"],
            "the clinic's record is not the hospital's"
        );
        assert_eq!(admin[0].current_version, 2);
        let versions: Vec<u32> = admin[0].versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, vec![1, 2]);
        assert_eq!(archive.categories["honor"][0].record_id, "h1");
        assert!(archive.no_longer_current.is_empty());
    }

    #[test]
    fn marks_are_added_and_removed_by_objection_and_read_with_the_archive() {
        let (store, _) = memory::store();
        commit(&store, &[&penalty("r1", HOSPITAL, "某医保局")], T0);
        let mark = Mark {
            kind: MarkKind::Objection,
            id: "obj-1".into(),
            since: T0,
        };
        with_staging(&store, |s| {
            s.change_marks(
                &store,
                &MarkChange {
                    agency: "medical_insurance".into(),
                    record_id: "r1".into(),
                    remove: None,
                    add: Some(mark.clone()),
                },
            )
            .unwrap();
            assert!(s.touches(&format!("uscc:{HOSPITAL}")));
        });
        assert_eq!(head(&store, "r1").marks, vec![mark.clone()]);
        let archive = read_subject(&store, &subject(HOSPITAL)).unwrap().unwrap();
        assert_eq!(archive.categories["administrative"][0].marks, vec![mark]);

        // Resolved: the objection's mark goes, the elimination it ordered comes, in one change.
        let eliminated = Mark {
            kind: MarkKind::Eliminated,
            id: "obj-1".into(),
            since: T0,
        };
        with_staging(&store, |s| {
            s.change_marks(
                &store,
                &MarkChange {
                    agency: "medical_insurance".into(),
                    record_id: "r1".into(),
                    remove: Some("obj-1".into()),
                    add: Some(eliminated.clone()),
                },
            )
            .unwrap();
        });
        let h = head(&store, "r1");
        assert_eq!(h.marks, vec![eliminated]);
        assert_eq!(h.version, 1, "a mark makes no new version");
        // A mark on a record the archive does not hold changes nothing.
        with_staging(&store, |s| {
            s.change_marks(
                &store,
                &MarkChange {
                    agency: "medical_insurance".into(),
                    record_id: "unknown".into(),
                    remove: None,
                    add: Some(mark_for("obj-2")),
                },
            )
            .unwrap();
            assert!(s.writes.is_empty());
        });
        assert!(store
            .get_raw(record_head_key("medical_insurance", "unknown").as_bytes())
            .unwrap()
            .is_none());
    }

    fn mark_for(id: &str) -> Mark {
        Mark {
            kind: MarkKind::Objection,
            id: id.into(),
            since: T0,
        }
    }

    #[test]
    fn expiry_is_marked_once_keeps_every_version_and_survives_a_new_version() {
        let (store, _) = memory::store();
        commit(&store, &[&penalty("r1", HOSPITAL, "某医保局")], T0);
        let expired = T0 + time::Duration::days(3 * 365);
        with_staging(&store, |s| {
            s.mark_expired(&store, "medical_insurance", "r1", expired)
                .unwrap()
        });
        assert_eq!(head(&store, "r1").expired_at, Some(expired));
        // Marked once: a later pass does not move the date.
        with_staging(&store, |s| {
            s.mark_expired(
                &store,
                "medical_insurance",
                "r1",
                expired + time::Duration::days(1),
            )
            .unwrap();
            assert!(!s.touches(&format!("uscc:{HOSPITAL}")));
        });
        assert_eq!(head(&store, "r1").expired_at, Some(expired));
        let archive = read_subject(&store, &subject(HOSPITAL)).unwrap().unwrap();
        let history = &archive.categories["administrative"][0];
        assert_eq!(history.expired_at, Some(expired));
        assert_eq!(
            history.versions.len(),
            1,
            "an expired record keeps its versions"
        );

        let (outcomes, _) = commit(&store, &[&penalty("r1", HOSPITAL, "另一医保局")], T0);
        assert_eq!(outcomes, vec![(Outcome::Updated, 2)]);
        assert_eq!(head(&store, "r1").expired_at, Some(expired));
    }
}
