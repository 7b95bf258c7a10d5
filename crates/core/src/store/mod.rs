//! Durable storage, engine-neutral: the [`Engine`] seam (an ordered key-value space with atomic
//! write sets, a durable flush and a monotonic id source), the group-commit pipeline
//! ([`Committer`], generic over a [`Stager`]), the key codecs ([`keys`]), the data directory's
//! format and its migrations ([`format`]), and free-space watching ([`space`]). The embedded
//! engine is sled ([`sled`]); the shared one, for several nodes, is PostgreSQL ([`postgres`]:
//! the same key-value space in one table); unit tests run on an in-memory one (`memory`, compiled
//! for tests only). Every domain module reads and writes through [`Store`].
//!
//! Why one writer: accepted batches write archive versions, record heads, the records' ledgers,
//! outbox entries, the audit entry and the receipt together. One thread stages every group (see
//! `exchange`), so idempotency checks are race-free and the audit chain has no fork, and many requests share one
//! flush (group commit). With several nodes on one database, the engine makes the writers of all
//! nodes take turns ([`Engine::begin_group`]), so this holds across nodes too. The engine applies each group's write set atomically, so after a crash
//! (kill -9) either all of a group is there or none of it.
//!
//! On-disk layout, format 6 (keys are UTF-8; `\x1f` separates parts, a character identifiers may
//! not hold; each space has its typed codec in [`keys`]; [`format`] lists what each format
//! changed):
//!
//! | prefix | key | value (JSON) | owner |
//! |---|---|---|---|
//! | `rec/` | `agency \x1f record_id` | `archive::RecordHead`: subject, category, latest version, content hash, expiry, marks | archive |
//! | `led/` | `agency \x1f record_id` (as its head's) | `ledger::Ledger`: what each platform holds of the record, per destination and channel, every publication and withdrawal queued (format 6; before it, inside the head) | ledger |
//! | `arc/` | `subject_key \x1f category# \x1f agency \x1f record_id \x1f version(10 digits)` | `archive::Version` | archive |
//! | `sub/` | `subject_key` (`uscc:9131...`) | `archive::SubjectEntry` | archive |
//! | `exi/` | `subject_key` | `{}` while the subject is exited (LS Art. 20) | archive |
//! | `chg/` | sequence (20 digits) | the subjects one group commit changed (the change log), until a follower (evaluation) takes the entry up | archive |
//! | `aud/` | sequence (20 digits) | `audit::Entry` | audit |
//! | `rcp/` | receipt id | the receipt sent to the agency (a batch's, a file's, a folder file's refusal) | ingest |
//! | `fsh/` | `agency \x1f sha256` | `{receipt_id, mapping}`: the first receipt of a file's bytes, so the same file again stores nothing twice (additive: no format step) | ingest |
//! | `out/`, `dlq/` | see `outbox` | queued shares (by reference to `arc/` since format 3), dead letters | outbox |
//! | `cor/`, `cod/`, `cop/` | see `corrections` | corrections, their acknowledgements and the pick-up of the files carrying them | corrections |
//! | `ofs/` | `destination \x1f file name` | a batch file written for a file destination, awaiting its feedback (see `delivery::file`) | delivery |
//! | `lak/`, `tmr/` | see `ledger` | acknowledgements of shares, re-check timers | ledger |
//! | `evt/` | `unix seconds(20) \x1f subject_key` | `{}`: re-evaluate then (a record leaves its validity) | evaluation |
//! | `lnk/` | `listing agency \x1f listing record_id \x1f link record_id` | `{}`: the linked records of joint punishment a listing made | evaluation |
//! | `evc/` | year (4 digits) | the yearly cycle's progress and cursor | evaluation |
//! | `obj/`, `rep/` | see `objections`, `repairs` | objections and repairs | objections, repairs |
//! | `meta/` | `format`, `keys` | the data directory's format version ([`format`]); the fingerprints of the keys its data is sealed under ([`at_rest::check`]) | store |
//!
//! Durability: an acknowledgement is sent only after a flush that began after its group was
//! applied. sled flushes with `sync_file_range` on Linux: this survives a process crash, not every
//! power loss. With `storage.durability = "power_loss"` every group commit also `fsync`s sled's
//! data file, so an acknowledged batch survives losing power too.
//!
//! Never does: interpret record content, or decide what to store (the domain modules build the
//! writes; `exchange` stages them; this module orders, applies and flushes them). It imports no
//! domain module.

pub mod at_rest;
pub mod commit;
pub mod engine;
pub mod format;
pub mod keys;
/// The in-memory engine the unit tests of the layers above run on: tests only (this crate's, and
/// the layers' above through their dev-dependency's `memory-engine` feature).
#[cfg(any(test, feature = "memory-engine"))]
pub mod memory;
pub mod postgres;
pub mod sled;
pub mod space;

pub use at_rest::AtRest;
pub use commit::{Committer, CommitterHandle, Progress, Stager};
pub use engine::{Engine, Exclusive, Pair, WriteSet};

use std::path::Path;
use std::sync::Arc;

/// A storage failure. Never the sender's fault; a retry may help, except for `Corrupt` and
/// `NewerFormat`, which need an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] ::sled::Error),
    /// The database engine (PostgreSQL) failed or cannot be reached; a retry may help.
    #[error("database: {0}")]
    Database(String),
    #[error("stored value at {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error("the writer has stopped (shutting down)")]
    WriterGone,
    /// Free space would fall below the reserve (`storage.min_free_mb`): refused before the
    /// engine writes anything. A retry helps once space is freed.
    #[error("free disk space is below the reserve ({free_mb} MiB free, {needed_mb} MiB needed): nothing was written")]
    DiskFull { free_mb: u64, needed_mb: u64 },
    /// An earlier write failed and the engine's memory may be ahead of its disk: nothing more
    /// is written until a restart (the operator's; the gateway restarts itself).
    #[error("the data directory is fenced after a failed write ({0}): restart to recover what is durable")]
    Fenced(String),
    #[error("the commit failed: {0}")]
    CommitFailed(String),
    #[error("cannot start the writer thread: {0}")]
    Spawn(std::io::Error),
    /// The operator's: this binary is older than the data directory.
    #[error("the data directory is in format {found}, written by a newer release; this release reads up to format {known}: run the newer release (or restore a backup made for this one)")]
    NewerFormat { found: u32, known: u32 },
    /// Sealing or opening a value at rest failed: the key file lacks a key stored data names, or
    /// a sealed value was altered. The operator's; no retry helps.
    #[error("value at {key} cannot be sealed or opened: {message}")]
    Sealing { key: String, message: String },
    /// The operator's: this node's keys are not the keys the stored data was sealed under.
    #[error("the keys do not match the stored data: {message}. Every node of a database needs the same key file: copy it from the node that created the data (or that rotated last), never generate a new one")]
    KeysDiffer { message: String },
}

impl StoreError {
    /// A value that does not decode, named by its key (never its personal content).
    pub fn corrupt(key: &[u8], message: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            key: printable(&String::from_utf8_lossy(key)),
            message: message.to_string(),
        }
    }
}

/// The opened store: an engine behind the [`Engine`] seam, with typed (JSON) access.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// Seals what is personal before a write and opens it after a read (`privacy`); `None` only
    /// in unit tests of lower layers and in tools that copy stored bytes as they are.
    at_rest: Option<Arc<dyn AtRest>>,
    /// The gateway's keys (signing, the audit chain's suite); `None` in unit tests of lower
    /// layers (the chain then hashes with SHA-256 and nothing is signed).
    keys: Option<crate::crypto::Keyring>,
    /// The free-space reserve every write set is checked against before the engine sees it.
    reserve: Option<Arc<space::DiskGuard>>,
}

/// What an acknowledgement survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// sled's flush (sync_file_range): survives a crash of the process.
    #[default]
    ProcessCrash,
    /// Also fsync the data file in every group commit: survives a power loss.
    PowerLoss,
}

pub const SEP: char = '\x1f';

/// sled's page cache, in MiB (`storage.cache_mb`).
pub const DEFAULT_CACHE_MB: u64 = 128;

/// The writers' turn ([`Store::begin_group`]) held by code that is not the writer, ended when
/// dropped.
struct WriterTurn<'a>(&'a Store);

impl<'a> WriterTurn<'a> {
    fn take(store: &'a Store) -> Result<Self, StoreError> {
        store.begin_group()?;
        Ok(Self(store))
    }
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        self.0.end_group();
    }
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Durability::ProcessCrash)
    }

    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_tuned(dir, durability, DEFAULT_CACHE_MB, None)
    }

    /// Open (or create) the embedded sled store under `dir`, migrating an older format.
    pub fn open_tuned(
        dir: &Path,
        durability: Durability,
        cache_mb: u64,
        at_rest: Option<Arc<dyn AtRest>>,
    ) -> Result<Self, StoreError> {
        // A compaction a crash interrupted is finished (or undone) first.
        sled::compact::recover(dir).map_err(|e| StoreError::Sled(::sled::Error::Io(e)))?;
        let engine = sled::SledEngine::open(dir, durability, cache_mb)?;
        Self::over_protected(Arc::new(engine), at_rest)
    }

    /// Connect to PostgreSQL (schema brought up to date), migrating an older format.
    pub fn open_postgres(
        options: &postgres::Options,
        at_rest: Option<Arc<dyn AtRest>>,
    ) -> Result<Self, StoreError> {
        let engine = postgres::PostgresEngine::open(options)?;
        Self::over_protected(Arc::new(engine), at_rest)
    }

    /// A store over any engine; the format is checked and migrated first.
    pub fn over(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        Self::over_protected(engine, None)
    }

    /// A store whose values pass through `at_rest` (sealed on write, opened on read); the format
    /// is checked and migrated first (with the protection, so a migration seals what it writes).
    pub fn over_protected(
        engine: Arc<dyn Engine>,
        at_rest: Option<Arc<dyn AtRest>>,
    ) -> Result<Self, StoreError> {
        let store = Self {
            engine,
            at_rest,
            keys: None,
            reserve: None,
        };
        // One node at a time checks the keys and migrates (nodes starting together on one
        // database), and the keys are checked before a migration seals anything.
        let _held = store.exclusive("open")?;
        let found = format::found(&store)?;
        {
            // The writers' turn too: a running node's writer may be retiring a data key in the
            // same record (the re-encryption), and neither update may be lost.
            let _turn = WriterTurn::take(&store)?;
            // Data of format 4 and later may be sealed: keys it does not open are refused even
            // before anything is recorded (a directory from the release that began sealing).
            let new_keys = at_rest::check(&store, found >= 4)?;
            // Recorded before a migration seals anything, so a migration interrupted and
            // resumed under other keys is refused (never a directory sealed under two sets).
            // Never written into a directory of a newer format, which is refused unchanged.
            if let Some(keys) = new_keys.filter(|_| found <= format::CURRENT) {
                at_rest::record(&store, &keys)?;
            }
        }
        format::open(&store)?;
        Ok(store)
    }

    /// This store with the gateway's keys (signatures, the audit chain's suite).
    pub fn with_keys(mut self, keys: crate::crypto::Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// This store checking `guard` before every write set: a set that would leave less than the
    /// reserve free is refused ([`StoreError::DiskFull`]) before the engine writes a byte, so
    /// sled never meets ENOSPC however fast the disk fills between two periodic checks.
    pub fn with_reserve(mut self, guard: Arc<space::DiskGuard>) -> Self {
        self.reserve = Some(guard);
        self
    }

    /// Why the engine accepts no more writes (see [`Engine::fenced`]).
    pub fn fenced(&self) -> Option<String> {
        self.engine.fenced()
    }

    fn within_reserve(&self, writes: &WriteSet) -> Result<(), StoreError> {
        match &self.reserve {
            Some(guard) => guard.admit(writes.bytes()),
            None => Ok(()),
        }
    }

    pub fn keys(&self) -> Option<&crate::crypto::Keyring> {
        self.keys.as_ref()
    }

    /// The suite new audit entries are hashed with.
    pub fn suite(&self) -> crate::crypto::Suite {
        self.keys
            .as_ref()
            .map(|k| k.suite())
            .unwrap_or(crate::crypto::Suite::International)
    }

    /// The protection at rest, if any.
    pub fn at_rest(&self) -> Option<&Arc<dyn AtRest>> {
        self.at_rest.as_ref()
    }

    /// The keyed hash a lookup key is stored under (`None` without protection at rest).
    pub fn lookup_token(&self, data: &[u8]) -> Option<String> {
        self.at_rest.as_ref().map(|a| a.lookup_token(data))
    }

    /// A token for a value that may be personal or secret, safe for logs and the audit chain:
    /// `k:` and the keyed hash with the store's lookup key (nobody without the key can test a
    /// guess against it), or `sha256:` and an unkeyed digest in a store without keys.
    pub fn private_token(&self, data: &[u8]) -> String {
        match self.lookup_token(data) {
            Some(token) => format!("k:{token}"),
            None => {
                use sha2::Digest;
                format!("sha256:{}", hex::encode(&sha2::Sha256::digest(data)[..16]))
            }
        }
    }

    /// Stored bytes as the writer wrote them (opened when sealed).
    fn reveal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.at_rest {
            Some(a) if at_rest::is_sealed(&stored) => a.reveal(key, stored),
            _ => Ok(stored),
        }
    }

    fn reveal_pair(&self, pair: Result<Pair, StoreError>) -> Result<Pair, StoreError> {
        let (k, v) = pair?;
        let v = self.reveal(&k, v)?;
        Ok((k, v))
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.engine.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(key.as_bytes(), &self.reveal(key.as_bytes(), bytes)?).map(Some),
        }
    }

    /// The stored bytes of a key.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine
            .get(key)?
            .map(|v| self.reveal(key, v))
            .transpose()
    }

    /// The bytes as stored (sealed values left sealed): for copying a store as it is.
    pub fn get_stored(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get(key)
    }

    /// Every pair under a prefix as stored (sealed values left sealed).
    pub fn scan_stored(&self, prefix: &[u8]) -> engine::Pairs<'_> {
        self.engine.scan_prefix(prefix)
    }

    /// Several keys' values at once, in the order asked.
    pub fn get_many_json<T: serde::de::DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let raw: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let values = self.engine.get_many(&raw)?;
        keys.iter()
            .zip(values)
            .map(|(k, v)| {
                v.map(|bytes| decode(k.as_bytes(), &self.reveal(k.as_bytes(), bytes)?))
                    .transpose()
            })
            .collect()
    }

    /// Several keys' stored bytes at once (opened when sealed), in the order asked.
    pub fn get_many_raw(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let values = self.engine.get_many(keys)?;
        keys.iter()
            .zip(values)
            .map(|(k, v)| v.map(|bytes| self.reveal(k, bytes)).transpose())
            .collect()
    }

    /// Every (key, value) under a prefix, in key order.
    pub fn scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.engine.scan_prefix(prefix.as_bytes()) {
            let (k, v) = self.reveal_pair(item)?;
            let value = decode(&k, &v)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), value));
        }
        Ok(out)
    }

    /// Every stored pair under a prefix, lazily, in key order.
    pub fn scan_raw(&self, prefix: &[u8]) -> engine::Pairs<'_> {
        Box::new(
            self.engine
                .scan_prefix(prefix)
                .map(move |p| self.reveal_pair(p)),
        )
    }

    /// Every key under a prefix, lazily, in key order.
    pub fn keys_under<'a>(
        &'a self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + 'a {
        self.engine.scan_prefix(prefix).map(|p| p.map(|(k, _)| k))
    }

    /// How many keys lie under a prefix.
    pub fn count_under(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.engine.scan_prefix(prefix) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Every stored pair with `start <= key < end`, lazily, in key order.
    pub fn range_raw(&self, start: &[u8], end: Option<&[u8]>) -> engine::Pairs<'_> {
        Box::new(
            self.engine
                .range(start, end)
                .map(move |p| self.reveal_pair(p)),
        )
    }

    /// Every pair in a range as stored (sealed values left sealed).
    pub fn range_stored(&self, start: &[u8], end: Option<&[u8]>) -> engine::Pairs<'_> {
        self.engine.range(start, end)
    }

    /// The last key under a prefix.
    pub fn last_under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Option<(String, T)>, StoreError> {
        match self.engine.last_under(prefix.as_bytes())? {
            None => Ok(None),
            Some((k, v)) => {
                let v = self.reveal(&k, v)?;
                let value = decode(&k, &v)?;
                Ok(Some((String::from_utf8_lossy(&k).into_owned(), value)))
            }
        }
    }

    /// Apply a write set atomically (not yet durable: see [`Store::flush`]).
    pub fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.within_reserve(&writes)?;
        match &self.at_rest {
            Some(a) => self.engine.apply(writes.protect(a.as_ref())?),
            None => self.engine.apply(writes),
        }
    }

    /// A value as it must be stored (through the protection at rest, when the store has one),
    /// for a producer that prepares values off the writer and puts them with
    /// [`WriteSet::put_stored`]. `key` names the value in errors.
    pub fn protect_value(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.at_rest {
            Some(a) => a.protect(key, value),
            None => Ok(value),
        }
    }

    /// Apply a write set whose values are already as they must be stored (a copy of stored
    /// bytes, or values the re-encryption sealed itself).
    pub fn apply_stored(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.within_reserve(&writes)?;
        self.engine.apply(writes)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    /// A number never handed out before (outbox sequence numbers).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.engine.next_id()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.engine.size_on_disk()
    }

    /// See [`Engine::begin_group`].
    pub fn begin_group(&self) -> Result<bool, StoreError> {
        self.engine.begin_group()
    }

    /// See [`Engine::end_group`].
    pub fn end_group(&self) {
        self.engine.end_group()
    }

    /// Take or renew a named lease (see [`Engine::lease`]).
    pub fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.engine.lease(name, holder, ttl)
    }

    pub fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.engine.release(name, holder)
    }

    /// Whether other gateway processes may share this store.
    pub fn shared(&self) -> bool {
        self.engine.shared()
    }

    /// See [`Engine::raise_ids`].
    pub fn raise_ids(&self, floor: u64) -> Result<(), StoreError> {
        self.engine.raise_ids(floor)
    }

    /// See [`Engine::ping`].
    pub fn ping(&self) -> Result<(), StoreError> {
        self.engine.ping()
    }

    /// See [`Engine::exclusive`].
    pub fn exclusive(&self, name: &str) -> Result<Exclusive, StoreError> {
        self.engine.exclusive(name)
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }
}

/// Decode a stored JSON value; one that does not decode is `Corrupt`, naming its key.
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// Keys shown in errors never carry a personal identifier in clear.
/// A key as errors and logs may show it: its space and no subject (a key naming a person in
/// clear, as before format 4, shows only its space).
pub fn printable_key(key: &[u8]) -> String {
    printable(&String::from_utf8_lossy(key))
}

fn printable(key: &str) -> String {
    let prefix: String = key.chars().take_while(|c| *c != SEP).take(40).collect();
    if ["sub/", "arc/", "chg/", "exi/", "evt/"]
        .iter()
        .any(|space| prefix.starts_with(space))
    {
        return format!("{}…", &prefix[..4]);
    }
    prefix
}

/// Encode a JSON value for storage.
pub fn to_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
