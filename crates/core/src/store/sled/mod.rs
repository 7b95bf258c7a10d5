//! The embedded engine: one sled database under the data directory, the zero-setup default.
//!
//! Why one tree: sled applies a `Batch` to one tree atomically, so after a crash (kill -9)
//! either all of a write set is there or none of it.
//!
//! Durability: sled 0.34 flushes with `sync_file_range` on Linux, which survives a crash of the
//! process, not every power loss. With [`super::Durability::PowerLoss`] every flush also
//! `fsync`s sled's data file.
//!
//! Fenced after a failed write: when sled fails to apply or flush (ENOSPC, EIO), its pages in
//! memory may be ahead of its log on disk, and sled 0.34 may keep serving them. Anything decided
//! on them afterwards (an idempotency check that finds a record "already stored", an audit head)
//! would be acknowledged on data a restart does not bring back: the acknowledged receipt without
//! its records of issue #31. So the first failure fences the engine: every later write, flush and
//! id is refused with [`StoreError::Fenced`] until the process restarts and sled recovers from
//! what is durable. Reads stay possible (nothing is acknowledged on them).
//!
//! Never does: interpret a key or a value (that is the domain modules' and `store`'s).

pub mod compact;

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::engine::{Engine, Pair, Pairs, WriteSet};
use super::{Durability, StoreError};

/// sled behind the [`Engine`] seam.
#[derive(Debug, Clone)]
pub struct SledEngine {
    db: ::sled::Db,
    /// sled's data file, fsynced after every flush when power-loss durability is asked for.
    fsync: Option<Arc<std::fs::File>>,
    /// The first write failure, after which nothing more is written (see the module doc).
    fence: Arc<Mutex<Option<String>>>,
}

impl SledEngine {
    /// `cache_mb` bounds sled's page cache, the largest part of the gateway's memory.
    pub fn open(dir: &Path, durability: Durability, cache_mb: u64) -> Result<Self, StoreError> {
        let config = ::sled::Config::new()
            .path(dir)
            .mode(::sled::Mode::HighThroughput)
            .cache_capacity(cache_mb.max(8) * 1024 * 1024);
        let db = open_when_released(&config)?;
        let fsync = match durability {
            Durability::ProcessCrash => None,
            Durability::PowerLoss => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.join("db"))
                    .map_err(::sled::Error::Io)?;
                // The directory entry of the data file must be durable too.
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(::sled::Error::Io)?;
                Some(Arc::new(file))
            }
        };
        Ok(Self {
            db,
            fsync,
            fence: Arc::default(),
        })
    }

    /// Refuse when fenced.
    fn check_fence(&self) -> Result<(), StoreError> {
        match self.fence.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(StoreError::Fenced(why)),
            Err(_) => Err(StoreError::Fenced("a writer panicked".into())),
        }
    }

    /// Fence the engine on a failed write: the failure is returned as it was.
    fn fence_on<T>(&self, result: Result<T, ::sled::Error>) -> Result<T, StoreError> {
        result.map_err(|e| {
            let why = e.to_string();
            if let Ok(mut fence) = self.fence.lock() {
                if fence.is_none() {
                    tracing::error!(error = %why, "a write to the data directory failed: no more writes until a restart recovers what is durable");
                    *fence = Some(why);
                }
            }
            StoreError::Sled(e)
        })
    }
}

/// How long an open waits for the directory's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Open the database, waiting up to [`LOCK_WAIT`] for its file lock: sled lets go of it when
/// the last of its background threads does, which can be a moment after the handle was dropped
/// (a command that reopens what it just closed, on a loaded machine). A lock another process
/// holds (a gateway running on the directory) is still an error, after the wait.
fn open_when_released(config: &::sled::Config) -> Result<::sled::Db, ::sled::Error> {
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Err(::sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn pair(item: ::sled::Result<(::sled::IVec, ::sled::IVec)>) -> Result<Pair, StoreError> {
    let (k, v) = item?;
    Ok((k.to_vec(), v.to_vec()))
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Pairs<'_> {
        Box::new(self.db.scan_prefix(prefix).map(pair))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Pairs<'_> {
        match end {
            Some(end) => Box::new(self.db.range(start.to_vec()..end.to_vec()).map(pair)),
            None => Box::new(self.db.range(start.to_vec()..).map(pair)),
        }
    }

    fn last_under(&self, prefix: &[u8]) -> Result<Option<Pair>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .next_back()
            .map(pair)
            .transpose()
    }

    fn apply(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.check_fence()?;
        let (removes, puts) = writes.into_ops();
        let mut batch = ::sled::Batch::default();
        for k in removes {
            batch.remove(k);
        }
        for (k, v) in puts {
            batch.insert(k, v);
        }
        self.fence_on(self.db.apply_batch(batch))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.check_fence()?;
        self.fence_on(self.db.flush())?;
        if let Some(file) = &self.fsync {
            self.fence_on(file.sync_data().map_err(::sled::Error::Io))?;
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.check_fence()?;
        self.fence_on(self.db.generate_id())
    }

    fn fenced(&self) -> Option<String> {
        self.fence.lock().ok().and_then(|f| f.clone())
    }

    fn raise_ids(&self, floor: u64) -> Result<(), StoreError> {
        // sled's counter only moves up one at a time (a fresh directory's starts at 0).
        while self.db.generate_id()? < floor {}
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ranges_and_prefixes_come_in_byte_order_and_a_write_set_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let e = SledEngine::open(dir.path(), Durability::ProcessCrash, 8).unwrap();
        let mut w = WriteSet::default();
        for k in ["t/3", "t/1", "t/2", "u/1"] {
            w.put(k, k);
        }
        e.apply(w).unwrap();
        let keys: Vec<Vec<u8>> = e.scan_prefix(b"t/").map(|p| p.unwrap().0).collect();
        assert_eq!(
            keys,
            vec![b"t/1".to_vec(), b"t/2".to_vec(), b"t/3".to_vec()]
        );
        let ranged: Vec<Vec<u8>> = e.range(b"t/2", Some(b"u/")).map(|p| p.unwrap().0).collect();
        assert_eq!(ranged, vec![b"t/2".to_vec(), b"t/3".to_vec()]);
        assert_eq!(e.last_under(b"t/").unwrap().unwrap().0, b"t/3".to_vec());
        let (a, b) = (e.next_id().unwrap(), e.next_id().unwrap());
        assert!(b > a);
    }
}
