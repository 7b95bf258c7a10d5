//! Key codecs: one typed key per key space, each with the one encoding and the one decoding of
//! its keys, so no module rebuilds or splits a key by hand. Encodings are byte-for-byte those of
//! earlier formats (the data directory's keys never change meaning).
//!
//! Parts are separated by `\x1f`, a character identifiers may not hold; numbers that order a
//! queue (sequence numbers, versions, instants) have a fixed width, so byte order is their
//! order. The table of spaces is in `store`'s documentation.
//!
//! Never does: know what a key's value holds (the owning module's type does).

mod instant;

pub use instant::{due_bound, instant_key, parse_instant_key};

use super::SEP;

/// A key space's typed key.
pub trait Key: Sized {
    fn encode(&self) -> String;
    /// `None` for a key of another space or of another shape.
    fn decode(key: &str) -> Option<Self>;
}

fn parts<'a>(key: &'a str, space: &str) -> Option<Vec<&'a str>> {
    Some(key.strip_prefix(space)?.split(SEP).collect())
}

fn fixed<T: std::str::FromStr>(text: &str, width: usize) -> Option<T> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `rec/{agency}\x1f{record_id}`: a source record's head.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordKey {
    pub agency: String,
    pub record_id: String,
}

impl Key for RecordKey {
    fn encode(&self) -> String {
        format!("rec/{}{SEP}{}", self.agency, self.record_id)
    }
    fn decode(key: &str) -> Option<Self> {
        let (agency, record_id) = key.strip_prefix("rec/")?.split_once(SEP)?;
        Some(Self {
            agency: agency.into(),
            record_id: record_id.into(),
        })
    }
}

/// `led/{agency}\x1f{record_id}`: a source record's publication ledger (what each platform holds
/// of it), the ledger's own since format 6; the same parts as its head's [`RecordKey`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LedgerKey {
    pub agency: String,
    pub record_id: String,
}

impl LedgerKey {
    pub const PREFIX: &'static str = "led/";

    pub fn encode_of(agency: &str, record_id: &str) -> String {
        format!("led/{agency}{SEP}{record_id}")
    }
}

impl Key for LedgerKey {
    fn encode(&self) -> String {
        Self::encode_of(&self.agency, &self.record_id)
    }
    fn decode(key: &str) -> Option<Self> {
        let (agency, record_id) = key.strip_prefix(Self::PREFIX)?.split_once(SEP)?;
        Some(Self {
            agency: agency.into(),
            record_id: record_id.into(),
        })
    }
}

/// `arc/{subject}\x1f{category:02}\x1f{agency}\x1f{record_id}\x1f{version:010}`: one version, in
/// its subject's archive, by category, oldest version first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionKey {
    pub subject: String,
    /// The category's number (1-13).
    pub category: u8,
    pub agency: String,
    pub record_id: String,
    pub version: u32,
}

impl VersionKey {
    /// Every version of a subject's archive lies under this prefix.
    pub fn subject_prefix(subject: &str) -> String {
        format!("arc/{subject}{SEP}")
    }
}

impl Key for VersionKey {
    fn encode(&self) -> String {
        format!(
            "arc/{}{SEP}{:02}{SEP}{}{SEP}{}{SEP}{:010}",
            self.subject, self.category, self.agency, self.record_id, self.version
        )
    }
    fn decode(key: &str) -> Option<Self> {
        let p = parts(key, "arc/")?;
        let [subject, category, agency, record_id, version] = p.as_slice() else {
            return None;
        };
        Some(Self {
            subject: subject.to_string(),
            category: fixed(category, 2)?,
            agency: agency.to_string(),
            record_id: record_id.to_string(),
            version: fixed(version, 10)?,
        })
    }
}

/// A key naming one subject by its archive key, in one of the subject spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubjectKey {
    pub space: SubjectSpace,
    pub subject: String,
}

/// The spaces keyed by a subject alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubjectSpace {
    /// `sub/`: the subject's entry.
    Entry,
    /// `exi/`: present while the subject is exited (LS Art. 20).
    Exited,
}

impl SubjectSpace {
    pub fn prefix(self) -> &'static str {
        match self {
            SubjectSpace::Entry => "sub/",
            SubjectSpace::Exited => "exi/",
        }
    }
}

impl SubjectKey {
    pub fn entry(subject: &str) -> String {
        format!("sub/{subject}")
    }
    pub fn exited(subject: &str) -> String {
        format!("exi/{subject}")
    }
}

impl Key for SubjectKey {
    fn encode(&self) -> String {
        format!("{}{}", self.space.prefix(), self.subject)
    }
    fn decode(key: &str) -> Option<Self> {
        [SubjectSpace::Entry, SubjectSpace::Exited]
            .into_iter()
            .find_map(|space| {
                let subject = key.strip_prefix(space.prefix())?;
                (!subject.is_empty() && !subject.contains(SEP)).then(|| Self {
                    space,
                    subject: subject.into(),
                })
            })
    }
}

/// A key ordered by a sequence number alone: `aud/{seq:020}` (the audit chain) or
/// `chg/{seq:020}` (the change log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeqKey {
    pub space: SeqSpace,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeqSpace {
    Audit,
    ChangeLog,
}

impl SeqSpace {
    pub fn prefix(self) -> &'static str {
        match self {
            SeqSpace::Audit => "aud/",
            SeqSpace::ChangeLog => "chg/",
        }
    }
}

impl SeqKey {
    pub fn audit(seq: u64) -> String {
        Self {
            space: SeqSpace::Audit,
            seq,
        }
        .encode()
    }
    pub fn change_log(seq: u64) -> String {
        Self {
            space: SeqSpace::ChangeLog,
            seq,
        }
        .encode()
    }
}

impl Key for SeqKey {
    fn encode(&self) -> String {
        format!("{}{:020}", self.space.prefix(), self.seq)
    }
    fn decode(key: &str) -> Option<Self> {
        [SeqSpace::Audit, SeqSpace::ChangeLog]
            .into_iter()
            .find_map(|space| {
                Some(Self {
                    space,
                    seq: fixed(key.strip_prefix(space.prefix())?, 20)?,
                })
            })
    }
}

/// How soon a queued entry leaves: urgent ones (corrections, withdrawals, notices, markings)
/// before any backlog of ordinary shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Urgent,
    Normal,
}

/// `out/{destination}\x1f{0|1}\x1f{seq:020}`: an entry waiting for its platform, urgent first,
/// then in commit order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboxKey {
    pub destination: String,
    pub priority: Priority,
    pub seq: u64,
}

impl OutboxKey {
    /// Every entry waiting for `destination`.
    pub fn queue_prefix(destination: &str) -> String {
        format!("out/{destination}{SEP}")
    }
    /// Every urgent entry waiting for `destination`.
    pub fn urgent_prefix(destination: &str) -> String {
        format!("out/{destination}{SEP}0{SEP}")
    }
}

impl Key for OutboxKey {
    fn encode(&self) -> String {
        let p = match self.priority {
            Priority::Urgent => '0',
            Priority::Normal => '1',
        };
        format!("out/{}{SEP}{p}{SEP}{:020}", self.destination, self.seq)
    }
    fn decode(key: &str) -> Option<Self> {
        let p = parts(key, "out/")?;
        let [destination, priority, seq] = p.as_slice() else {
            return None;
        };
        Some(Self {
            destination: destination.to_string(),
            priority: match *priority {
                "0" => Priority::Urgent,
                "1" => Priority::Normal,
                _ => return None,
            },
            seq: fixed(seq, 20)?,
        })
    }
}

/// `dlq/{destination}\x1f{seq:020}`: a dead letter, under the sequence number it was queued with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetterKey {
    pub destination: String,
    pub seq: u64,
}

impl DeadLetterKey {
    pub fn prefix(destination: &str) -> String {
        format!("dlq/{destination}{SEP}")
    }
}

impl Key for DeadLetterKey {
    fn encode(&self) -> String {
        format!("dlq/{}{SEP}{:020}", self.destination, self.seq)
    }
    fn decode(key: &str) -> Option<Self> {
        let p = parts(key, "dlq/")?;
        let [destination, seq] = p.as_slice() else {
            return None;
        };
        Some(Self {
            destination: destination.to_string(),
            seq: fixed(seq, 20)?,
        })
    }
}

/// `cod/{correction}\x1f{destination}`: a correction acknowledged by one platform (GD Art. 31).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CorrectionDeliveredKey {
    pub correction: String,
    pub destination: String,
}

impl CorrectionDeliveredKey {
    pub fn prefix(correction: &str) -> String {
        format!("cod/{correction}{SEP}")
    }
}

impl Key for CorrectionDeliveredKey {
    fn encode(&self) -> String {
        format!("cod/{}{SEP}{}", self.correction, self.destination)
    }
    fn decode(key: &str) -> Option<Self> {
        let (correction, destination) = key.strip_prefix("cod/")?.split_once(SEP)?;
        Some(Self {
            correction: correction.into(),
            destination: destination.into(),
        })
    }
}

/// `cop/{correction}\x1f{destination}`: a file destination took the file carrying a correction
/// out of its outgoing folder (picked up), before its feedback acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CorrectionPickedUpKey {
    pub correction: String,
    pub destination: String,
}

impl CorrectionPickedUpKey {
    pub fn prefix(correction: &str) -> String {
        format!("cop/{correction}{SEP}")
    }
}

impl Key for CorrectionPickedUpKey {
    fn encode(&self) -> String {
        format!("cop/{}{SEP}{}", self.correction, self.destination)
    }
    fn decode(key: &str) -> Option<Self> {
        let (correction, destination) = key.strip_prefix("cop/")?.split_once(SEP)?;
        Some(Self {
            correction: correction.into(),
            destination: destination.into(),
        })
    }
}

/// `ofs/{destination}\x1f{file name}`: a batch file written for a file destination and not yet
/// answered by its feedback file (the shares it holds stay in the outbox until then).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentFileKey {
    pub destination: String,
    pub file: String,
}

impl SentFileKey {
    pub fn prefix(destination: &str) -> String {
        format!("ofs/{destination}{SEP}")
    }
}

impl Key for SentFileKey {
    fn encode(&self) -> String {
        format!("ofs/{}{SEP}{}", self.destination, self.file)
    }
    fn decode(key: &str) -> Option<Self> {
        let (destination, file) = key.strip_prefix("ofs/")?.split_once(SEP)?;
        Some(Self {
            destination: destination.into(),
            file: file.into(),
        })
    }
}

/// `lnk/{agency}\x1f{record_id}\x1f{link_id}`: a record of joint punishment a listing made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkKey {
    pub agency: String,
    pub record_id: String,
    pub link: String,
}

impl Key for LinkKey {
    fn encode(&self) -> String {
        format!(
            "lnk/{}{SEP}{}{SEP}{}",
            self.agency, self.record_id, self.link
        )
    }
    fn decode(key: &str) -> Option<Self> {
        let p = parts(key, "lnk/")?;
        let [agency, record_id, link] = p.as_slice() else {
            return None;
        };
        Some(Self {
            agency: agency.to_string(),
            record_id: record_id.to_string(),
            link: link.to_string(),
        })
    }
}

/// `fsh/{agency}\x1f{sha256}`: the file an agency handed in with these bytes (issue #29), so the
/// same file handed in again stores nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileDigestKey {
    pub agency: String,
    /// The file's SHA-256, lower-case hex.
    pub sha256: String,
}

impl FileDigestKey {
    pub fn encode_of(agency: &str, sha256: &str) -> String {
        format!("fsh/{agency}{SEP}{sha256}")
    }
}

impl Key for FileDigestKey {
    fn encode(&self) -> String {
        Self::encode_of(&self.agency, &self.sha256)
    }
    fn decode(key: &str) -> Option<Self> {
        let (agency, sha256) = key.strip_prefix("fsh/")?.split_once(SEP)?;
        Some(Self {
            agency: agency.into(),
            sha256: sha256.into(),
        })
    }
}

/// `evc/{year:04}`: a yearly evaluation cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CycleKey(pub i32);

impl Key for CycleKey {
    fn encode(&self) -> String {
        format!("evc/{:04}", self.0)
    }
    fn decode(key: &str) -> Option<Self> {
        fixed(key.strip_prefix("evc/")?, 4).map(CycleKey)
    }
}

/// A key of a space where one identifier is the whole key: `cor/` corrections, `obj/`
/// objections, `rep/` repairs, `rcp/` receipts, `lak/` acknowledgements of shares (by
/// idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdKey {
    pub space: IdSpace,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdSpace {
    Correction,
    Objection,
    Repair,
    Receipt,
    ShareAck,
}

impl IdSpace {
    pub const ALL: [IdSpace; 5] = [
        IdSpace::Correction,
        IdSpace::Objection,
        IdSpace::Repair,
        IdSpace::Receipt,
        IdSpace::ShareAck,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            IdSpace::Correction => "cor/",
            IdSpace::Objection => "obj/",
            IdSpace::Repair => "rep/",
            IdSpace::Receipt => "rcp/",
            IdSpace::ShareAck => "lak/",
        }
    }

    pub fn key(self, id: &str) -> String {
        format!("{}{id}", self.prefix())
    }
}

impl Key for IdKey {
    fn encode(&self) -> String {
        self.space.key(&self.id)
    }
    fn decode(key: &str) -> Option<Self> {
        IdSpace::ALL.into_iter().find_map(|space| {
            let id = key.strip_prefix(space.prefix())?;
            (!id.is_empty()).then(|| Self {
                space,
                id: id.into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Identifier parts as they occur: anything but the separator, never empty.
    fn part() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:_\\-〔〕号医保罚]{1,24}"
    }

    fn roundtrip<K: Key + PartialEq + std::fmt::Debug>(k: K) -> Result<(), TestCaseError> {
        let encoded = k.encode();
        prop_assert_eq!(K::decode(&encoded), Some(k));
        Ok(())
    }

    proptest! {
        #[test]
        fn record_keys_roundtrip(agency in part(), record_id in part()) {
            roundtrip(RecordKey { agency: agency.clone(), record_id: record_id.clone() })?;
            roundtrip(LedgerKey { agency, record_id })?;
        }

        #[test]
        fn version_keys_roundtrip_and_versions_sort_in_order(subject in part(), category in 1u8..=13, agency in part(), record_id in part(), a in 1u32..u32::MAX, b in 1u32..u32::MAX) {
            let key = |version| VersionKey { subject: subject.clone(), category, agency: agency.clone(), record_id: record_id.clone(), version };
            roundtrip(key(a))?;
            prop_assert_eq!(a < b, key(a).encode() < key(b).encode());
            prop_assert!(key(a).encode().starts_with(&VersionKey::subject_prefix(&subject)));
        }

        #[test]
        fn subject_keys_roundtrip(subject in part(), exited in any::<bool>()) {
            let space = if exited { SubjectSpace::Exited } else { SubjectSpace::Entry };
            roundtrip(SubjectKey { space, subject: subject.clone() })?;
            prop_assert_eq!(SubjectKey::entry(&subject), SubjectKey { space: SubjectSpace::Entry, subject }.encode());
        }

        #[test]
        fn sequence_keys_roundtrip_and_sort_in_sequence(a in any::<u64>(), b in any::<u64>(), log in any::<bool>()) {
            let space = if log { SeqSpace::ChangeLog } else { SeqSpace::Audit };
            roundtrip(SeqKey { space, seq: a })?;
            prop_assert_eq!(a < b, SeqKey { space, seq: a }.encode() < SeqKey { space, seq: b }.encode());
        }

        #[test]
        fn outbox_keys_roundtrip_and_sort_urgent_first_then_in_commit_order(destination in part(), a in any::<u64>(), b in any::<u64>(), ua in any::<bool>(), ub in any::<bool>()) {
            let key = |urgent: bool, seq| OutboxKey { destination: destination.clone(), priority: if urgent { Priority::Urgent } else { Priority::Normal }, seq };
            roundtrip(key(ua, a))?;
            // The queue is read in key order: that order must be (priority, sequence).
            prop_assert_eq!(key(ua, a).cmp(&key(ub, b)), key(ua, a).encode().cmp(&key(ub, b).encode()));
            prop_assert!(key(ua, a).encode().starts_with(&OutboxKey::queue_prefix(&destination)));
            prop_assert_eq!(key(true, a).encode().starts_with(&OutboxKey::urgent_prefix(&destination)), true);
        }

        #[test]
        fn dead_letter_keys_roundtrip_in_order(destination in part(), a in any::<u64>(), b in any::<u64>()) {
            let key = |seq| DeadLetterKey { destination: destination.clone(), seq };
            roundtrip(key(a))?;
            prop_assert_eq!(a < b, key(a).encode() < key(b).encode());
        }

        #[test]
        fn correction_link_cycle_and_id_keys_roundtrip(a in part(), b in part(), c in part(), year in 1000i32..=9999, space in 0usize..5) {
            roundtrip(CorrectionDeliveredKey { correction: a.clone(), destination: b.clone() })?;
            roundtrip(CorrectionPickedUpKey { correction: a.clone(), destination: b.clone() })?;
            roundtrip(SentFileKey { destination: a.clone(), file: b.clone() })?;
            roundtrip(LinkKey { agency: a.clone(), record_id: b.clone(), link: c })?;
            roundtrip(FileDigestKey { agency: a.clone(), sha256: b.clone() })?;
            roundtrip(CycleKey(year))?;
            roundtrip(IdKey { space: IdSpace::ALL[space], id: a })?;
        }
    }

    #[test]
    fn encodings_are_those_of_earlier_formats() {
        assert_eq!(
            SeqKey::audit(7),
            "aud/00000000000000000007",
            "the audit chain's keys"
        );
        assert_eq!(
            OutboxKey {
                destination: "provincial".into(),
                priority: Priority::Normal,
                seq: 42
            }
            .encode(),
            "out/provincial\u{1f}1\u{1f}00000000000000000042"
        );
        assert_eq!(
            VersionKey {
                subject: "uscc:91310110666007217T".into(),
                category: 8,
                agency: "medical_insurance".into(),
                record_id: "R1".into(),
                version: 2
            }
            .encode(),
            "arc/uscc:91310110666007217T\u{1f}08\u{1f}medical_insurance\u{1f}R1\u{1f}0000000002"
        );
        assert_eq!(CycleKey(2026).encode(), "evc/2026");
        assert_eq!(
            LedgerKey::encode_of("medical_insurance", "R1"),
            "led/medical_insurance\u{1f}R1",
            "the ledger's key beside its head's, rec/medical_insurance\u{1f}R1"
        );
        assert_eq!(LedgerKey::decode("rec/medical_insurance\u{1f}R1"), None);
        assert_eq!(
            OutboxKey::decode("out/p\u{1f}2\u{1f}00000000000000000001"),
            None
        );
        assert_eq!(
            SeqKey::decode("chg/uscc:91310110666007217T"),
            None,
            "a format-2 change key"
        );
    }
}
