//! The gateway's keys: the lookup key (the keyed hash that finds a subject whose identifier is
//! sealed), the data keys (sealing at rest; one active, the older ones kept to read what they
//! sealed) and the signing keys (one per suite in use; older ones kept in the public key file).
//!
//! Keys come from a key file (`crypto.key_file`, TOML, mode 0600, generated on first start by the
//! embedded defaults) or from a key command (`crypto.key_command`: a program that prints the same
//! TOML on its standard output; the hook for a KMS or a crypto card's export).
//!
//! Never does: write a key anywhere but the key file, or print one.
//!
//! Invariant: the lookup key never changes once data exists (subjects' keys in the store are its
//! keyed hashes); data and signing keys are only ever added, never removed by the gateway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::signed::PublicKeyFile;
use super::soft::{SoftSealer, SoftSigner};
use super::{CryptoError, Sealer, Signer, Suite};

/// Why the keys cannot be loaded or changed. Always the operator's: no retry helps until the key
/// file or command is fixed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
    #[error("the key command failed: {0}")]
    Command(String),
    #[error("the keys have no {what} for the {suite} suite: {hint}")]
    Missing {
        what: &'static str,
        suite: Suite,
        hint: &'static str,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The key file as stored.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The key file format (1).
    pub format: u32,
    /// The keyed hash's suite (HMAC-SM3 or HMAC-SHA-256), fixed with the lookup key.
    pub lookup_suite: Suite,
    /// Hex, 32 bytes.
    pub lookup: String,
    /// The data key new values are sealed with.
    pub active_data_key: String,
    #[serde(default)]
    pub data_key: Vec<StoredKey>,
    #[serde(default)]
    pub signing_key: Vec<StoredKey>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    pub id: String,
    pub suite: Suite,
    /// Hex.
    pub secret: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
}

// Debug never prints a secret: only ids, suites and dates.
impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("format", &self.format)
            .field("lookup_suite", &self.lookup_suite)
            .field("active_data_key", &self.active_data_key)
            .field("data_key", &self.data_key)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("suite", &self.suite)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.current();
        f.debug_struct("Keyring")
            .field("suite", &keys.suite)
            .field("active_data_key", &keys.active)
            .field("keys", &keys.fingerprints.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

const HEADER: &str = "# credit-gateway key file: the lookup key, the data keys that seal personal information at rest,\n\
# and the signing keys of receipts, checkpoints and deliveries. Keep it out of the data directory's\n\
# backups and readable only by the gateway: without it, sealed data cannot be read.\n";

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Command(Vec<String>),
}

/// The gateway's keys as loaded, shared by everything that seals, opens or signs; replaced whole
/// when the key file is reloaded (SIGHUP), so a rotation takes effect without a restart.
#[derive(Clone)]
pub struct Keyring {
    current: Arc<std::sync::RwLock<Arc<Keys>>>,
}

/// One generation of the keys (what [`Keyring::current`] hands out).
pub struct Keys {
    suite: Suite,
    lookup_suite: Suite,
    lookup: Arc<Vec<u8>>,
    active: String,
    sealers: Arc<HashMap<String, Arc<dyn Sealer>>>,
    signer: Arc<dyn Signer>,
    public: Arc<PublicKeyFile>,
    /// Key id -> a fingerprint of its secret (`lookup` for the lookup key): what the store
    /// records, so that a node started with other keys than the data was sealed under is refused
    /// instead of sealing under keys its peers cannot open.
    fingerprints: Arc<std::collections::BTreeMap<String, String>>,
}

impl Keyring {
    fn holding(keys: Keys) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(Arc::new(keys))),
        }
    }

    /// The keys in force now (hold the returned value for one operation, not longer).
    pub fn current(&self) -> Arc<Keys> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Put the keys of `reloaded` in force. The lookup key and the suite cannot change (the
    /// first names every stored person, the second is the configuration's): such a reload is
    /// refused and the keys in force stay.
    pub fn replace_with(&self, reloaded: &Keyring) -> Result<(), KeyringError> {
        let (now, next) = (self.current(), reloaded.current());
        if now.fingerprints.get("lookup") != next.fingerprints.get("lookup") {
            return Err(KeyringError::Invalid {
                path: "reloaded keys".into(),
                message: "the lookup key differs: it names every stored person and never changes"
                    .into(),
            });
        }
        if now.suite != next.suite {
            return Err(KeyringError::Invalid {
                path: "reloaded keys".into(),
                message: "the suite changes only with a restart".into(),
            });
        }
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(())
    }

    /// The suite signatures and new audit entries use.
    pub fn suite(&self) -> Suite {
        self.current().suite
    }

    /// The public keys of every signing key (`credit-gateway keys public`).
    pub fn public_keys(&self) -> PublicKeyFile {
        (*self.current().public).clone()
    }

    pub fn active_data_key(&self) -> String {
        self.current().active.clone()
    }

    /// See [`Keys::lookup_token`].
    pub fn lookup_token(&self, data: &[u8]) -> String {
        self.current().lookup_token(data)
    }

    /// See [`Keys::fingerprints`].
    pub fn fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        (*self.current().fingerprints).clone()
    }

    /// Load the keys for `suite`. With a key file and `generate`, a missing file is created and a
    /// missing key for `suite` is added (the embedded defaults); otherwise a missing key is an
    /// error naming what to do.
    pub fn load(
        source: &KeySource,
        suite: Suite,
        generate: bool,
        now: time::OffsetDateTime,
    ) -> Result<Self, KeyringError> {
        let file = match source {
            KeySource::Command(argv) => run_command(argv)?,
            KeySource::File(path) => {
                let mut file = match read_file(path)? {
                    Some(f) => f,
                    None if generate => KeyFile::new(suite, now),
                    None => {
                        return Err(KeyringError::Read {
                            path: path.display().to_string(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                "no such file (crypto.generate_keys is off)",
                            ),
                        })
                    }
                };
                if generate && file.complete_for(suite, now) | !path.exists() {
                    write_file(path, &file)?;
                }
                file
            }
        };
        Self::from_file(&file, suite, "key command")
    }

    pub fn from_file(file: &KeyFile, suite: Suite, origin: &str) -> Result<Self, KeyringError> {
        let invalid = |message: String| KeyringError::Invalid {
            path: origin.into(),
            message,
        };
        if file.format != 1 {
            return Err(invalid(format!(
                "format {} is not known (1 is)",
                file.format
            )));
        }
        let lookup = hex::decode(&file.lookup).map_err(|_| invalid("lookup is not hex".into()))?;
        if lookup.len() < 16 {
            return Err(invalid("the lookup key has fewer than 16 bytes".into()));
        }
        // Ids name keys in every stored value and signature header: plain, short and unique.
        let mut seen = std::collections::HashSet::new();
        for k in file.data_key.iter().chain(&file.signing_key) {
            let plain = !k.id.is_empty()
                && k.id.len() <= 64
                && k.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !plain {
                return Err(invalid(format!(
                    "key id {:?}: 1 to 64 letters, digits, '-' or '_'",
                    k.id
                )));
            }
            if k.id == "lookup" {
                return Err(invalid(
                    "key id \"lookup\" is reserved (it names the lookup key)".into(),
                ));
            }
            if !seen.insert(k.id.as_str()) {
                return Err(invalid(format!("key id {} is used twice", k.id)));
            }
        }
        let mut fingerprints = std::collections::BTreeMap::new();
        fingerprints.insert(
            "lookup".to_string(),
            fingerprint(file.lookup_suite, &lookup),
        );
        let mut sealers: HashMap<String, Arc<dyn Sealer>> = HashMap::new();
        for k in &file.data_key {
            let secret = hex::decode(&k.secret)
                .map_err(|_| invalid(format!("data key {} is not hex", k.id)))?;
            fingerprints.insert(k.id.clone(), fingerprint(k.suite, &secret));
            sealers.insert(
                k.id.clone(),
                Arc::new(SoftSealer::from_secret(k.suite, &k.id, &secret)?),
            );
        }
        if !sealers.contains_key(&file.active_data_key) {
            return Err(invalid(format!(
                "the active data key {:?} is not in the file",
                file.active_data_key
            )));
        }
        let mut signers = Vec::new();
        for k in &file.signing_key {
            let secret = hex::decode(&k.secret)
                .map_err(|_| invalid(format!("signing key {} is not hex", k.id)))?;
            signers.push((k.created, SoftSigner::from_secret(k.suite, &k.id, &secret)?));
        }
        let public = PublicKeyFile {
            gateway: "credit-gateway".into(),
            keys: signers
                .iter()
                .map(|(_, s)| PublicKeyFile::describe(s))
                .collect(),
        };
        // The newest signing key of the suite signs.
        signers.sort_by_key(|(created, _)| *created);
        let signer = signers
            .into_iter()
            .rev()
            .map(|(_, s)| s)
            .find(|s| s.suite() == suite)
            .ok_or(KeyringError::Missing {
                what: "signing key",
                suite,
                hint: "run `credit-gateway keys rotate`, or add one to the key command's output",
            })?;
        Ok(Self::holding(Keys {
            suite,
            lookup_suite: file.lookup_suite,
            lookup: Arc::new(lookup),
            active: file.active_data_key.clone(),
            sealers: Arc::new(sealers),
            signer: Arc::new(signer),
            public: Arc::new(public),
            fingerprints: Arc::new(fingerprints),
        }))
    }

    /// A keyring of fresh keys held only in memory (tests and benchmarks).
    pub fn ephemeral(suite: Suite) -> Self {
        let file = KeyFile::new(suite, time::OffsetDateTime::UNIX_EPOCH);
        Self::from_file(&file, suite, "memory").expect("fresh keys are valid")
    }
}

impl Keys {
    pub fn signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    /// The public keys of every signing key.
    pub fn public_keys(&self) -> &PublicKeyFile {
        &self.public
    }

    /// The active data key's sealer.
    pub fn sealer(&self) -> &dyn Sealer {
        self.sealers[&self.active].as_ref()
    }

    pub fn active_data_key(&self) -> &str {
        &self.active
    }

    /// The sealer of a data key by id, to open what it sealed.
    pub fn sealer_for(&self, id: &str) -> Option<&dyn Sealer> {
        self.sealers.get(id).map(|s| s.as_ref())
    }

    /// The keyed hash of `data` under the lookup key, hex, 128 bits: enough to never collide
    /// among a province's subjects, short enough for keys.
    pub fn lookup_token(&self, data: &[u8]) -> String {
        hex::encode(&self.lookup_suite.keyed_hash(&self.lookup, data)[..16])
    }

    /// Key id -> fingerprint of the lookup key (`lookup`) and of every data key: equal
    /// fingerprints mean equal keys; a fingerprint reveals nothing of its key.
    pub fn fingerprints(&self) -> &std::collections::BTreeMap<String, String> {
        &self.fingerprints
    }
}

/// 64 bits of the keyed hash of a fixed label under the key: enough to tell two keys apart.
fn fingerprint(suite: Suite, secret: &[u8]) -> String {
    hex::encode(&suite.keyed_hash(secret, b"credit-gateway key fingerprint v1")[..8])
}

impl KeyFile {
    /// Fresh keys for `suite`.
    pub fn new(suite: Suite, now: time::OffsetDateTime) -> Self {
        let lookup: [u8; 32] = rand::random();
        let mut file = KeyFile {
            format: 1,
            lookup_suite: suite,
            lookup: hex::encode(lookup),
            active_data_key: String::new(),
            data_key: Vec::new(),
            signing_key: Vec::new(),
        };
        file.complete_for(suite, now);
        file
    }

    /// Add what `suite` lacks: an active data key of the suite, and a signing key. True when
    /// something was added.
    pub fn complete_for(&mut self, suite: Suite, now: time::OffsetDateTime) -> bool {
        let mut added = false;
        let active_suite = self
            .data_key
            .iter()
            .find(|k| k.id == self.active_data_key)
            .map(|k| k.suite);
        if active_suite != Some(suite) {
            self.add_data_key(suite, now);
            added = true;
        }
        if !self.signing_key.iter().any(|k| k.suite == suite) {
            self.add_signing_key(suite, now);
            added = true;
        }
        added
    }

    /// A new signing key of `suite` (the newest of a suite signs). Returns its id.
    pub fn add_signing_key(&mut self, suite: Suite, now: time::OffsetDateTime) -> String {
        let id = fresh_id("s", now);
        self.signing_key.push(StoredKey {
            id: id.clone(),
            suite,
            secret: hex::encode(SoftSigner::generate_secret(suite)),
            created: now,
        });
        id
    }

    /// A new data key of `suite`, made active. Returns its id.
    pub fn add_data_key(&mut self, suite: Suite, now: time::OffsetDateTime) -> String {
        let id = fresh_id("d", now);
        self.data_key.push(StoredKey {
            id: id.clone(),
            suite,
            secret: hex::encode(SoftSealer::generate_secret(suite)),
            created: now,
        });
        self.active_data_key = id.clone();
        id
    }
}

/// `d-20261205-3fa9c1`: kind, day, random part (ids must never repeat across rotations).
fn fresh_id(kind: &str, now: time::OffsetDateTime) -> String {
    let random: [u8; 3] = rand::random();
    format!(
        "{kind}-{:04}{:02}{:02}-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        hex::encode(random)
    )
}

pub fn read_file(path: &Path) -> Result<Option<KeyFile>, KeyringError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyringError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| KeyringError::Invalid {
            path: path.display().to_string(),
            message: e.message().to_string(),
        })
}

/// Write the key file atomically (a new file renamed over the old), readable by its owner only.
pub fn write_file(path: &Path, file: &KeyFile) -> Result<(), KeyringError> {
    let err = |source| KeyringError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = format!(
        "{HEADER}{}",
        toml::to_string(file).map_err(|e| err(std::io::Error::other(e.to_string())))?
    );
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

fn run_command(argv: &[String]) -> Result<KeyFile, KeyringError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| KeyringError::Command("crypto.key_command is empty".into()))?;
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| KeyringError::Command(format!("cannot run {program}: {e}")))?;
    if !output.status.success() {
        return Err(KeyringError::Command(format!(
            "{program} exited with {}",
            output.status
        )));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| KeyringError::Command(format!("{program} printed no UTF-8 text")))?;
    toml::from_str(&text).map_err(|e| KeyringError::Invalid {
        path: format!("the output of {program}"),
        message: e.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_loads_and_rotation_keeps_old_keys_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let source = KeySource::File(path.clone());
        let first = Keyring::load(&source, Suite::National, true, now).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed =
            crate::crypto::sealed::seal(first.current().sealer(), &serde_json::json!("secret"))
                .unwrap();
        let mut file = read_file(&path).unwrap().unwrap();
        let new = file.add_data_key(Suite::National, now);
        write_file(&path, &file).unwrap();
        let second = Keyring::load(&source, Suite::National, false, now).unwrap();
        assert_eq!(second.active_data_key(), new);
        assert_ne!(first.active_data_key(), new);
        let second_keys = second.current();
        let opened = crate::crypto::sealed::open(&sealed, |id| second_keys.sealer_for(id)).unwrap();
        assert_eq!(opened, serde_json::json!("secret"));
        // The lookup key never changes with a rotation.
        assert_eq!(first.lookup_token(b"x"), second.lookup_token(b"x"));
        // Switching suite adds a signing key and a data key of the new suite; the old stay.
        let third = Keyring::load(&source, Suite::International, true, now).unwrap();
        assert_eq!(third.current().signer().suite(), Suite::International);
        assert_eq!(third.public_keys().keys.len(), 2);
        assert!(third.current().sealer_for(&new).is_some());
    }

    #[test]
    fn a_key_command_that_lacks_the_suites_signing_key_is_refused() {
        let file = KeyFile::new(Suite::International, time::OffsetDateTime::UNIX_EPOCH);
        let err = Keyring::from_file(&file, Suite::National, "test").unwrap_err();
        assert!(err.to_string().contains("signing key"), "{err}");
    }
}
