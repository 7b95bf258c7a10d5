//! The seam between the gateway and a storage engine: an ordered key-value space with atomic
//! write sets, a durable flush and a monotonic id source. sled implements it ([`super::sled`]),
//! PostgreSQL too ([`super::postgres`]), and the unit tests run on an in-memory one (`memory`,
//! compiled for tests only); every domain module reads and writes through [`super::Store`],
//! never through an engine.
//!
//! Invariants an engine keeps:
//! - keys are compared as bytes, and scans return them in that order (queues and timers rely
//!   on it);
//! - [`Engine::apply`] makes a whole [`WriteSet`] visible at once, or none of it, also across a
//!   crash;
//! - after [`Engine::flush`] returns, everything applied before it survives a crash of the
//!   process (and a power loss when the engine was opened for it);
//! - [`Engine::next_id`] never returns the same number twice, across restarts; numbers taken by
//!   the writer between [`Engine::begin_group`] and [`Engine::apply`] grow in commit order, also
//!   across the nodes that share an engine (queue order is commit order);
//! - between [`Engine::begin_group`] and [`Engine::end_group`] no other writer, in this process
//!   or another, applies anything: the writer's reads and its write set form one serial step.
//!
//! An engine several processes share (PostgreSQL) also offers named leases, so that work done
//! once (a destination's deliveries, timers) is done by one node at a time; an embedded engine
//! (sled) is opened by one process, which holds every lease.
//!
//! Never does: interpret a key or a value.

use super::StoreError;

/// One key and its value, as stored.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A lazily read, ordered run of pairs.
pub type Pairs<'a> = Box<dyn Iterator<Item = Result<Pair, StoreError>> + Send + 'a>;

/// What a storage engine offers the gateway.
pub trait Engine: Send + Sync + std::fmt::Debug {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Several keys at once, answered in the order asked (one round trip where the engine is a
    /// server).
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Pairs<'_>;
    /// Every pair with `start <= key < end` (`end` unbounded when `None`), in key order.
    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Pairs<'_>;
    /// The greatest pair under `prefix`.
    fn last_under(&self, prefix: &[u8]) -> Result<Option<Pair>, StoreError>;
    /// Apply a write set atomically.
    fn apply(&self, writes: WriteSet) -> Result<(), StoreError>;
    /// Make everything applied so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// A number never returned before.
    fn next_id(&self) -> Result<u64, StoreError>;
    /// Bytes the engine occupies on disk (0 when it cannot tell).
    fn size_on_disk(&self) -> u64;

    /// Why this engine accepts no more writes, once a write or flush failed in a way that may
    /// leave its memory ahead of its disk (`None` while it is sound). An engine whose failed
    /// write is rolled back whole (PostgreSQL) is never fenced.
    fn fenced(&self) -> Option<String> {
        None
    }

    /// The writer starts a group: wait until no other writer runs. Returns whether another
    /// writer (another node) committed since this one last did, so what the writer keeps in
    /// memory (the audit head, subjects' standing) must be reloaded first.
    fn begin_group(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The writer's group is applied or abandoned: other writers may go on.
    fn end_group(&self) {}
    /// Take or renew the lease `name` for `holder` until `ttl` from now (the engine's clock);
    /// whether `holder` holds it.
    fn lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Give a lease up before it expires (a node that stops).
    fn release(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether other processes may share this engine (leases then matter).
    fn shared(&self) -> bool {
        false
    }
    /// Reserve numbers so that [`Engine::next_id`] returns only numbers above `floor` (a copy
    /// from another engine keeps its numbers).
    fn raise_ids(&self, _floor: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// Hold the named exclusive section until the returned guard drops: one holder at a time
    /// across every process sharing the engine (within one process the caller serializes).
    fn exclusive(&self, _name: &str) -> Result<Exclusive, StoreError> {
        Ok(Exclusive::default())
    }
    /// Whether the engine answers, on a connection of the probe's own (never waiting behind the
    /// pool's work), for readiness.
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The engine's name, for logs and the status page.
    fn name(&self) -> &'static str;
}

/// An exclusive section held (see [`Engine::exclusive`]); released when dropped.
#[derive(Default)]
pub struct Exclusive {
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Exclusive {
    pub fn holding(guard: impl std::any::Any + Send + Sync) -> Self {
        Self {
            _held: Some(Box::new(guard)),
        }
    }
}

/// Writes and removals applied together. A key both written and removed in one set is removed
/// (a publication queued and superseded within one group commit must not survive it); a key
/// written twice keeps its last value.
#[derive(Debug, Default)]
pub struct WriteSet {
    puts: Vec<Pair>,
    /// For each put: whether its value is already as it must be stored ([`WriteSet::put_stored`]).
    stored: Vec<bool>,
    removes: Vec<Vec<u8>>,
}

impl WriteSet {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.puts.push((key.into(), value.into()));
        self.stored.push(false);
    }

    /// A value already passed through the protection at rest (prepared off the writer, see
    /// `Store::protect_value`): [`WriteSet::protect`] leaves it as it is.
    pub fn put_stored(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.puts.push((key.into(), value.into()));
        self.stored.push(true);
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.removes.push(key.into());
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.removes.is_empty()
    }

    /// The set with every value passed through the protection at rest (once: a value put with
    /// [`WriteSet::put_stored`] already was). A value prepared before a key reload and sealed
    /// under the previous data key is re-sealed under the active one here, so everything applied
    /// is under the key in force when it is applied, as if it had been protected now (the
    /// re-encryption retires a key only after a pass that found no value under it).
    pub fn protect(mut self, at_rest: &dyn super::AtRest) -> Result<Self, StoreError> {
        for ((k, v), stored) in self.puts.iter_mut().zip(&self.stored) {
            let value = std::mem::take(v);
            *v = if !stored {
                at_rest.protect(k, value)?
            } else if at_rest.stale(&value) {
                at_rest.reseal(k, value)?
            } else {
                value
            };
        }
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.puts.len() + self.removes.len()
    }

    /// Bytes of keys and values the set writes (what it may take on disk, before the engine's
    /// own overhead).
    pub fn bytes(&self) -> u64 {
        let puts: usize = self.puts.iter().map(|(k, v)| k.len() + v.len()).sum();
        let removes: usize = self.removes.iter().map(Vec::len).sum();
        (puts + removes) as u64
    }

    /// The set as an engine applies it: removals, then the writes of keys not removed, each key's
    /// last write only.
    pub fn into_ops(self) -> (Vec<Vec<u8>>, Vec<Pair>) {
        let removed: std::collections::HashSet<&[u8]> =
            self.removes.iter().map(Vec::as_slice).collect();
        let mut last: std::collections::HashMap<&[u8], usize> = Default::default();
        for (i, (k, _)) in self.puts.iter().enumerate() {
            last.insert(k.as_slice(), i);
        }
        let keep: Vec<bool> = self
            .puts
            .iter()
            .enumerate()
            .map(|(i, (k, _))| {
                !removed.contains(k.as_slice()) && last.get(k.as_slice()) == Some(&i)
            })
            .collect();
        drop(removed);
        drop(last);
        let puts = self
            .puts
            .into_iter()
            .zip(keep)
            .filter_map(|(p, keep)| keep.then_some(p))
            .collect();
        (self.removes, puts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_wins_over_a_write_of_the_same_key_and_the_last_write_wins() {
        let mut w = WriteSet::default();
        w.put("out/a", "1");
        w.put("k", "old");
        w.remove("out/a");
        w.put("k", "new");
        w.put("out/a", "2");
        let (removes, puts) = w.into_ops();
        assert_eq!(removes, vec![b"out/a".to_vec()]);
        assert_eq!(puts, vec![(b"k".to_vec(), b"new".to_vec())]);
    }

    /// Marks every value it protects.
    #[derive(Debug)]
    struct Marking;

    impl super::super::AtRest for Marking {
        fn protect(&self, _: &[u8], mut value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
            value.extend_from_slice(b"+sealed");
            Ok(value)
        }
        fn reveal(&self, _: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
            Ok(stored)
        }
        fn lookup_token(&self, data: &[u8]) -> String {
            String::from_utf8_lossy(data).into_owned()
        }
        fn stale(&self, stored: &[u8]) -> bool {
            stored.ends_with(b"@old")
        }
        fn fingerprints(&self) -> std::collections::BTreeMap<String, String> {
            Default::default()
        }
        fn reseal(&self, _: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
            let mut v = stored[..stored.len() - b"@old".len()].to_vec();
            v.extend_from_slice(b"@new");
            Ok(v)
        }
    }

    #[test]
    fn a_value_put_as_stored_is_not_protected_twice_but_resealed_if_under_an_older_key() {
        let mut w = WriteSet::default();
        w.put("a", "1");
        w.put_stored("b", "2");
        w.put("c", "3");
        w.put_stored("d", "4@old");
        let (_, puts) = w.protect(&Marking).unwrap().into_ops();
        assert_eq!(
            puts,
            vec![
                (b"a".to_vec(), b"1+sealed".to_vec()),
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3+sealed".to_vec()),
                (b"d".to_vec(), b"4@new".to_vec()),
            ]
        );
    }
}
