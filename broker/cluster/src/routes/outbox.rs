//! A shard's forwards to one peer shard, kept until the peer acknowledges them.
//!
//! Invariants: entries are re-sent in the order they entered, on every new link; a durable entry
//! (QoS 1/2 on a durable engine) is written in the publish's own commit batch — so it exists
//! before the publisher is acknowledged — keeps its (epoch, sequence) across restarts so the peer
//! can recognise a repeat, and is deleted once the peer acknowledged it; the bytes held are bounded
//! by the caller, who drops the oldest entries past the limit (deleting their stored copies).

use crate::wire::{RouteKey, ShardMsg};
use bytes::{BufMut, Bytes, BytesMut};
use fleetmq_core::store::{Batch, Cf, Store};
use std::collections::{BTreeMap, HashMap};

/// One forward waiting for its acknowledgement.
pub(super) struct Entry {
    pub header: ShardMsg,
    pub body: Bytes,
    /// Its key in [`Cf::Outbox`], when stored.
    pub stored: Option<Bytes>,
}

/// Where a forward goes and what the target does with it.
pub(super) struct Target {
    pub peer: usize,
    /// Deliver to the target's direct subscriptions.
    pub direct: bool,
    /// Shared groups the target serves.
    pub groups: Vec<RouteKey>,
    /// Store as the topic's retained message (the target owns the topic).
    pub retain: bool,
    /// ... only if the target has none (a hand-over of the topic to its new owner).
    pub moved: bool,
}

/// The forwards to one peer.
pub(super) struct Outbox {
    next_seq: u64,
    /// Position of the next entry; also the storage key order.
    next_slot: u64,
    entries: BTreeMap<u64, Entry>,
    /// (epoch, seq) → slot.
    ids: HashMap<(u64, u64), u64>,
    pub bytes: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox { next_seq: 1, next_slot: 1, entries: BTreeMap::new(), ids: HashMap::new(), bytes: 0 }
    }
}

fn key(peer: &str, slot: u64) -> Bytes {
    let mut k = BytesMut::with_capacity(peer.len() + 9);
    k.extend_from_slice(peer.as_bytes());
    k.put_u8(0);
    k.put_u64(slot);
    k.freeze()
}

impl Outbox {
    /// Adds a forward of `body` in `epoch`; when `store` is given (a durable forward), its record
    /// joins that batch. Returns the frame header to send.
    pub fn push(&mut self, epoch: u64, target: Target, body: Bytes, store: Option<(&str, &mut Batch)>) -> ShardMsg {
        let Target { direct, groups, retain, moved, .. } = target;
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.next_slot;
        self.next_slot += 1;
        let header = ShardMsg::Forward { epoch, seq, direct, groups, retain, moved };
        // Stored as the frame header it is sent with, then the message record.
        let stored = store.and_then(|(peer, batch)| {
            let mut value = postcard::to_stdvec(&header).ok()?;
            value.extend_from_slice(&body);
            let k = key(peer, slot);
            batch.put(Cf::Outbox, k.clone(), value);
            Some(k)
        });
        self.bytes += body.len();
        self.ids.insert((epoch, seq), slot);
        self.entries.insert(slot, Entry { header: header.clone(), body, stored });
        header
    }

    /// Removes the oldest entry (over the byte limit).
    pub fn pop_oldest(&mut self) -> Option<Entry> {
        let (_, e) = self.entries.pop_first()?;
        self.forget(&e);
        Some(e)
    }

    /// Removes the entry the peer acknowledged.
    pub fn ack(&mut self, epoch: u64, seq: u64) -> Option<Entry> {
        let slot = self.ids.get(&(epoch, seq)).copied()?;
        let e = self.entries.remove(&slot)?;
        self.forget(&e);
        Some(e)
    }

    fn forget(&mut self, e: &Entry) {
        self.bytes -= e.body.len();
        if let ShardMsg::Forward { epoch, seq, .. } = e.header {
            self.ids.remove(&(epoch, seq));
        }
    }

    /// The entries in the order they are (re-)sent.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The stored forwards to `peer` (a shard restarting), oldest first.
    pub fn load(store: &dyn Store, peer: &str) -> fleetmq_core::store::Result<Outbox> {
        let mut outbox = Outbox::default();
        let prefix = key(peer, 0);
        let prefix = &prefix[..peer.len() + 1];
        let mut bad = 0usize;
        store.scan_prefix(Cf::Outbox, prefix, &mut |k, v| {
            let slot = k.get(prefix.len()..).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_be_bytes);
            match (slot, postcard::take_from_bytes::<ShardMsg>(v)) {
                (Some(slot), Ok((header @ ShardMsg::Forward { epoch, seq, .. }, record))) => {
                    let body = Bytes::copy_from_slice(record);
                    outbox.bytes += body.len();
                    outbox.ids.insert((epoch, seq), slot);
                    outbox.entries.insert(slot, Entry { header, body, stored: Some(Bytes::copy_from_slice(k)) });
                    outbox.next_slot = outbox.next_slot.max(slot + 1);
                }
                _ => bad += 1,
            }
            true
        })?;
        if bad > 0 {
            tracing::warn!(%peer, bad, "unreadable stored forwards skipped");
        }
        Ok(outbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetmq_core::store::MemoryStore;

    #[test]
    fn stored_forwards_come_back_in_order_with_their_identity_and_acks_remove_them() {
        let store = MemoryStore::new();
        let mut outbox = Outbox::default();
        let mut batch = Batch::new();
        let group = RouteKey { filter: "jobs/#".into(), group: Some("g".into()) };
        let direct = || Target { peer: 0, direct: true, groups: vec![], retain: false, moved: false };
        let grouped = Target { peer: 0, direct: false, groups: vec![group.clone()], retain: true, moved: false };
        outbox.push(5, direct(), Bytes::from_static(b"one"), Some(("shard-2", &mut batch)));
        outbox.push(5, grouped, Bytes::from_static(b"two"), Some(("shard-2", &mut batch)));
        outbox.push(5, direct(), Bytes::from_static(b"qos0"), None);
        outbox.push(5, direct(), Bytes::from_static(b"other"), Some(("shard-3", &mut batch)));
        store.write(batch).unwrap();

        let loaded = Outbox::load(&store, "shard-2").unwrap();
        let got: Vec<(ShardMsg, Bytes)> = loaded.entries().map(|e| (e.header.clone(), e.body.clone())).collect();
        assert_eq!(
            got,
            vec![
                (
                    ShardMsg::Forward { epoch: 5, seq: 1, direct: true, groups: vec![], retain: false, moved: false },
                    Bytes::from_static(b"one")
                ),
                (
                    ShardMsg::Forward {
                        epoch: 5,
                        seq: 2,
                        direct: false,
                        groups: vec![group],
                        retain: true,
                        moved: false
                    },
                    Bytes::from_static(b"two")
                ),
            ]
        );
        let mut loaded = loaded;
        let acked = loaded.ack(5, 1).unwrap();
        let mut delete = Batch::new();
        delete.delete(Cf::Outbox, acked.stored.unwrap());
        store.write(delete).unwrap();
        assert!(loaded.ack(5, 1).is_none(), "an ack counts once");
        let again = Outbox::load(&store, "shard-2").unwrap();
        assert_eq!(again.entries().count(), 1);
        assert_eq!(again.bytes, 3);
        // New entries go after the recovered ones.
        let mut again = again;
        let mut b = Batch::new();
        again.push(6, direct(), Bytes::from_static(b"three"), Some(("shard-2", &mut b)));
        store.write(b).unwrap();
        let order: Vec<Bytes> = Outbox::load(&store, "shard-2").unwrap().entries().map(|e| e.body.clone()).collect();
        assert_eq!(order, vec![Bytes::from_static(b"two"), Bytes::from_static(b"three")]);
    }
}
