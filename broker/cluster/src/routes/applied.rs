//! The duplicate filter for the forwards a shard receives from one source shard: the highest
//! sequence applied in each of the source's recent epochs (one epoch per source process).
//!
//! Invariants: a source sends and re-sends in sequence order within an epoch, and a restarted
//! source re-sends its stored forwards of older epochs before new ones — possibly interleaved
//! again after another lost link — so a position is kept per epoch, not one for the source: a
//! sequence at or below its epoch's position is a repeat. The last [`KEEP`] epochs are kept; on a
//! durable engine each position is stored in the batch of the message that advanced it (and an
//! evicted epoch's position deleted in the same batch).

use bytes::{BufMut, Bytes, BytesMut};
use fleetmq_core::store::{Batch, Cf, Store};

/// Epochs remembered per source: more than a source restarts while its stored forwards to this
/// shard are still unacknowledged.
const KEEP: usize = 4;

/// Positions of one source shard.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// (epoch, highest sequence applied, last use), least recently used first.
    epochs: Vec<(u64, u64, u64)>,
}

fn prefix(peer: &str) -> Vec<u8> {
    format!("fwd-applied/{peer}/").into_bytes()
}

fn key(peer: &str, epoch: u64) -> Bytes {
    let mut k = BytesMut::from(&prefix(peer)[..]);
    k.put_u64(epoch);
    k.freeze()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Applied {
    /// Records forward (`epoch`, `seq`) of `peer` unless it was applied already (then `false`).
    /// With `batch` (a durable forward), the new position — and the deletion of an evicted
    /// epoch's — joins it.
    pub fn admit(&mut self, peer: &str, epoch: u64, seq: u64, batch: Option<&mut Batch>) -> bool {
        let stamp = now_ms();
        match self.epochs.iter().position(|e| e.0 == epoch) {
            Some(i) if seq <= self.epochs[i].1 => return false,
            Some(i) => {
                let mut e = self.epochs.remove(i);
                e.1 = seq;
                e.2 = stamp;
                self.epochs.push(e);
            }
            None => self.epochs.push((epoch, seq, stamp)),
        }
        let evicted = (self.epochs.len() > KEEP).then(|| self.epochs.remove(0));
        if let Some(batch) = batch {
            let mut value = BytesMut::with_capacity(16);
            value.put_u64(seq);
            value.put_u64(stamp);
            batch.put(Cf::Meta, key(peer, epoch), value.freeze());
            if let Some((old, _, _)) = evicted {
                batch.delete(Cf::Meta, key(peer, old));
            }
        }
        true
    }

    /// The stored positions of `peer` (a shard restarting).
    pub fn load(store: &dyn Store, peer: &str) -> fleetmq_core::store::Result<Applied> {
        let prefix = prefix(peer);
        let mut epochs = Vec::new();
        store.scan_prefix(Cf::Meta, &prefix, &mut |k, v| {
            let epoch = k.get(prefix.len()..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            let seq = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            let stamp = v.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes);
            if let (Some(epoch), Some(seq)) = (epoch, seq) {
                epochs.push((epoch, seq, stamp));
            }
            true
        })?;
        epochs.sort_by_key(|e| e.2);
        Ok(Applied { epochs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetmq_core::store::MemoryStore;

    #[test]
    fn repeats_are_recognised_per_epoch_even_when_epochs_interleave() {
        let mut a = Applied::default();
        assert!(a.admit("s2", 7, 1, None));
        assert!(a.admit("s2", 7, 2, None));
        // The source restarted (epoch 9) and re-sends its old epoch's stored forwards first.
        assert!(!a.admit("s2", 7, 2, None), "a repeat of epoch 7");
        assert!(a.admit("s2", 9, 1, None));
        // The link dropped; the re-send starts again at epoch 7, then 9.
        assert!(!a.admit("s2", 7, 1, None), "still a repeat after epoch 9 was seen");
        assert!(!a.admit("s2", 9, 1, None));
        assert!(a.admit("s2", 9, 2, None));
    }

    #[test]
    fn positions_survive_a_restart_and_old_epochs_are_evicted() {
        let store = MemoryStore::new();
        let mut a = Applied::default();
        let mut batch = Batch::new();
        for epoch in 1..=(KEEP as u64 + 1) {
            assert!(a.admit("s2", epoch, 10, Some(&mut batch)));
        }
        store.write(batch).unwrap();
        let mut back = Applied::load(&store, "s2").unwrap();
        assert_eq!(back.epochs.len(), KEEP, "the oldest epoch was evicted from the store too");
        assert!(!back.admit("s2", KEEP as u64 + 1, 10, None));
        assert!(back.admit("s2", 1, 10, None), "epoch 1 was forgotten");
        assert!(Applied::load(&store, "s3").unwrap().epochs.is_empty());
    }
}
