//! The in-memory engine: one ordered map per column family behind a read-write lock.
//!
//! It keeps nothing across restarts; it exists for the embedded default node and as the reference
//! the disk engine is checked against. Invariant: a batch (or a `write_many` group) is applied under
//! one write lock, so readers see all of it or none of it. `sync` and `sync_wal` are no-ops.

use super::{Batch, Cf, Op, Result, Store};
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};

/// Volatile store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    cfs: RwLock<HashMap<Cf, BTreeMap<Bytes, Bytes>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.cfs.read().get(&cf).and_then(|m| m.get(key).cloned()))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let cfs = self.cfs.read();
        let Some(map) = cfs.get(&cf) else { return Ok(()) };
        for (k, v) in map.range(Bytes::copy_from_slice(prefix)..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_from(&self, cf: Cf, start: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let cfs = self.cfs.read();
        let Some(map) = cfs.get(&cf) else { return Ok(()) };
        for (k, v) in map.range(Bytes::copy_from_slice(start)..) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.write_many(vec![batch], true)
    }

    fn write_many(&self, batches: Vec<Batch>, _sync: bool) -> Result<()> {
        let mut cfs = self.cfs.write();
        for op in batches.into_iter().flat_map(|b| b.ops) {
            match op {
                Op::Put { cf, key, value } => {
                    cfs.entry(cf).or_default().insert(key, value);
                }
                Op::Delete { cf, key } => {
                    if let Some(m) = cfs.get_mut(&cf) {
                        m.remove(&key);
                    }
                }
                Op::DeleteRange { cf, from, to } => {
                    if let Some(m) = cfs.get_mut(&cf) {
                        let mut tail = m.split_off(&from);
                        m.append(&mut tail.split_off(&to));
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_conformance() {
        crate::store::conformance::run_all(MemoryStore::new);
    }
}
