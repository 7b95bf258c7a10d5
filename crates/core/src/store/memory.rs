//! An in-memory engine for unit tests: an ordered `BTreeMap` behind the [`Engine`] seam, so the
//! domain modules above `store` (archive, exchange, outbox, audit) are tested on their real
//! logic without a data directory, sled's background threads or its file lock.
//!
//! Owns: nothing durable. "Durable" here is a second map, the state as of the last
//! [`Engine::flush`]; [`MemoryEngine::crash`] drops whatever was applied after it, which is what a
//! process crash does to sled, so a test can tell "applied" from "acknowledged".
//!
//! Invariants it keeps, as every engine must (see [`super::engine`]): keys compare as bytes and
//! scans return them in that order (a `BTreeMap<Vec<u8>, _>` orders exactly so); a write set is
//! made visible whole under one lock, or not at all when a failure is injected; ids only grow.
//!
//! Test hooks (never in a release: the module is compiled for tests only): the next apply or
//! flush can be made to fail ([`MemoryEngine::fail_next_apply`], [`MemoryEngine::fail_next_flush`]),
//! and flushes can be held until released ([`MemoryEngine::hold_flushes`]), so a test can observe
//! the window between an apply and its flush; the n-th apply from now can be made to fail
//! ([`MemoryEngine::fail_apply_in`]), to stop a migration midway.
//!
//! Never does: interpret a key or a value, or persist anything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::engine::{Engine, Pair, Pairs, WriteSet};
use super::{Store, StoreError};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A `BTreeMap` behind the [`Engine`] seam (tests only).
#[derive(Debug, Default)]
pub struct MemoryEngine {
    live: Mutex<Map>,
    /// The state as of the last flush (what survives [`MemoryEngine::crash`]).
    durable: Mutex<Map>,
    ids: AtomicU64,
    applies: AtomicUsize,
    flushes: AtomicUsize,
    fail_apply: AtomicBool,
    /// Applies still to succeed before one fails (0: none is set to fail).
    fail_apply_in: AtomicUsize,
    fail_flush: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
}

/// A store over a fresh in-memory engine (format recorded, no protection at rest, no keys), and
/// the engine, for the test's hooks.
pub fn store() -> (Store, Arc<MemoryEngine>) {
    let engine = Arc::new(MemoryEngine::default());
    let store = Store::over(engine.clone()).expect("an empty in-memory store opens");
    (store, engine)
}

fn lock(m: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    // A test that panicked while holding the lock left a whole map: keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryEngine {
    /// The next [`Engine::apply`] fails without changing anything.
    pub fn fail_next_apply(&self) {
        self.fail_apply.store(true, Ordering::SeqCst);
    }

    /// The `n`-th [`Engine::apply`] from now fails without changing anything (1: the next), so a
    /// test can stop a multi-step job (a migration) midway, as a crash would.
    pub fn fail_apply_in(&self, n: usize) {
        self.fail_apply_in.store(n, Ordering::SeqCst);
    }

    /// The next [`Engine::flush`] fails (what was applied stays applied, not durable).
    pub fn fail_next_flush(&self) {
        self.fail_flush.store(true, Ordering::SeqCst);
    }

    /// Flushes wait (`true`) until released (`false`).
    pub fn hold_flushes(&self, hold: bool) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = hold;
        self.released.notify_all();
    }

    /// Write sets applied so far.
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    /// Flushes completed so far.
    pub fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }

    /// A process crash: whatever was applied after the last flush is gone.
    pub fn crash(&self) {
        let durable = lock(&self.durable).clone();
        *lock(&self.live) = durable;
    }

    /// Every key, in order, under `prefix` (for assertions on raw layout).
    pub fn keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        lock(&self.live)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Overwrite one stored value behind every layer above (a tampered or corrupted store).
    pub fn overwrite(&self, key: &[u8], value: Vec<u8>) {
        lock(&self.live).insert(key.to_vec(), value);
    }

    fn collect(&self, from: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<Pair> {
        lock(&self.live)
            .range(from.to_vec()..)
            .take_while(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.live).get(key).cloned())
    }

    // A snapshot taken under the lock: a scan never sees half of a write set.
    fn scan_prefix(&self, prefix: &[u8]) -> Pairs<'_> {
        let pairs = self.collect(prefix, |k| k.starts_with(prefix));
        Box::new(pairs.into_iter().map(Ok))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Pairs<'_> {
        let pairs = self.collect(start, |k| end.is_none_or(|end| k < end));
        Box::new(pairs.into_iter().map(Ok))
    }

    fn last_under(&self, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        Ok(self.collect(prefix, |k| k.starts_with(prefix)).pop())
    }

    fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        let countdown = self
            .fail_apply_in
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if self.fail_apply.swap(false, Ordering::SeqCst) || countdown == Ok(1) {
            return Err(StoreError::Database("injected apply failure".into()));
        }
        let (removes, puts) = writes.into_ops();
        let mut live = lock(&self.live);
        for k in removes {
            live.remove(&k);
        }
        for (k, v) in puts {
            live.insert(k, v);
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        drop(held);
        if self.fail_flush.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Database("injected flush failure".into()));
        }
        let live = lock(&self.live).clone();
        *lock(&self.durable) = live;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn raise_ids(&self, floor: u64) -> Result<(), StoreError> {
        self.ids.fetch_max(floor, Ordering::SeqCst);
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_come_in_byte_order_and_a_failed_apply_changes_nothing() {
        let e = MemoryEngine::default();
        let mut w = WriteSet::default();
        for k in ["t/3", "t/1", "t/2", "u/1", "t"] {
            w.put(k, k);
        }
        e.apply(w).unwrap();
        let keys: Vec<Vec<u8>> = e.scan_prefix(b"t/").map(|p| p.unwrap().0).collect();
        assert_eq!(
            keys,
            vec![b"t/1".to_vec(), b"t/2".to_vec(), b"t/3".to_vec()]
        );
        let ranged: Vec<Vec<u8>> = e
            .range(b"t/2", Some(b"u/1"))
            .map(|p| p.unwrap().0)
            .collect();
        assert_eq!(ranged, vec![b"t/2".to_vec(), b"t/3".to_vec()]);
        assert_eq!(e.last_under(b"t/").unwrap().unwrap().0, b"t/3".to_vec());

        e.fail_next_apply();
        let mut w = WriteSet::default();
        w.put("t/4", "4");
        w.remove("t/1");
        assert!(e.apply(w).is_err());
        assert!(e.get(b"t/4").unwrap().is_none());
        assert!(e.get(b"t/1").unwrap().is_some());
    }

    #[test]
    fn a_crash_keeps_only_what_was_flushed() {
        let e = MemoryEngine::default();
        let mut w = WriteSet::default();
        w.put("a", "1");
        e.apply(w).unwrap();
        e.flush().unwrap();
        let mut w = WriteSet::default();
        w.put("b", "2");
        e.apply(w).unwrap();
        e.crash();
        assert!(e.get(b"a").unwrap().is_some());
        assert!(e.get(b"b").unwrap().is_none());
        assert!(e.next_id().unwrap() < e.next_id().unwrap());
    }
}
