//! Durability of persistent sessions: what a session with a non-zero expiry keeps on disk, and the
//! ordering rules that make a QoS 1/2 acknowledgement mean "stored".
//!
//! What is stored (column families in `store.rs`, key layout in [`keys`]): the session record
//! (owner, expiry, offline time, subscriptions, will), every QoS 1/2 delivery queued for or in flight
//! to the session (a queue entry pointing at a shared message record, reference-counted), and inbound
//! QoS 2 packet ids awaiting PUBREL. Clean sessions and QoS 0 never touch the disk.
//!
//! Invariants:
//! - Writes go through the group [`Committer`] on its own thread, never a reactor thread; batches
//!   are applied in the order they were submitted, and a publish's batch is submitted before its
//!   deliveries are visible to subscribers, so a subscriber's later delete always lands after the put.
//! - A message record lives exactly as long as some queue entry references it (`refs`).
//! - With the in-memory engine, durability is off and every call here is a no-op.

use crate::message::{record, DurableRef, Message};
use crate::store::commit::Committer;
use crate::store::{Batch, Cf, Result, Store};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub mod keys;
pub mod records;
mod recover;

use records::QueueEntry;
pub use recover::RecoveredSession;

/// A boxed commit completion.
pub type Commit = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// The durability service of a node.
pub struct Durability {
    store: Arc<dyn Store>,
    committer: Option<Committer>,
    next_msg: AtomicU64,
    refs: Mutex<HashMap<u64, u32>>,
}

impl Durability {
    /// `committer` is `None` for the in-memory engine (no session durability).
    pub fn new(store: Arc<dyn Store>, committer: Option<Committer>) -> Durability {
        Durability { store, committer, next_msg: AtomicU64::new(1), refs: Mutex::new(HashMap::new()) }
    }

    /// Whether persistent sessions are stored.
    pub fn enabled(&self) -> bool {
        self.committer.is_some()
    }

    /// The store sessions are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Queues `batch` now; the returned future resolves when it is durable. `None` when there
    /// was nothing to write (or durability is off).
    pub fn submit(&self, batch: Batch) -> Option<Commit> {
        match &self.committer {
            Some(c) if !batch.is_empty() => Some(Box::pin(c.submit(batch))),
            _ => None,
        }
    }

    /// Queues `batch` now without waiting for it; failures are logged.
    pub fn fire(&self, batch: Batch) {
        let Some(done) = self.submit(batch) else { return };
        tokio::spawn(async move {
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "background storage write failed");
            }
        });
    }

    /// A fresh message id.
    pub fn next_message_id(&self) -> u64 {
        self.next_msg.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds the message record with `refs` references to `batch`.
    pub fn put_message(&self, id: u64, msg: &Message, refs: u32, batch: &mut Batch) -> Result<()> {
        batch.put(Cf::Messages, keys::message(id), record::encode_message(msg, Instant::now())?);
        self.refs.lock().insert(id, refs);
        Ok(())
    }

    /// Adds a queue entry for a delivery to `batch`.
    pub fn put_entry(&self, client_id: &str, r: DurableRef, entry: &QueueEntry, batch: &mut Batch) {
        batch.put(Cf::Queue, keys::queue(client_id, r.incarnation, r.seq), entry.encode());
    }

    /// Removes a delivery's queue entry and, with its last reference, the message record.
    pub fn release(&self, client_id: &str, r: DurableRef, batch: &mut Batch) {
        batch.delete(Cf::Queue, keys::queue(client_id, r.incarnation, r.seq));
        let mut refs = self.refs.lock();
        if let Some(n) = refs.get_mut(&r.msg_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                refs.remove(&r.msg_id);
                batch.delete(Cf::Messages, keys::message(r.msg_id));
            }
        }
    }

    /// Deletes everything stored for one session incarnation, after every batch submitted so far
    /// has landed (so nothing of it is written back afterwards).
    pub fn purge(self: &Arc<Self>, client_id: String, incarnation: u64) {
        if !self.enabled() {
            return;
        }
        let drained = self.submit_barrier();
        let this = self.clone();
        tokio::spawn(async move {
            let _ = drained.await;
            let job = this.clone();
            let batch = tokio::task::spawn_blocking(move || job.purge_batch(&client_id, incarnation)).await;
            match batch {
                Ok(Ok(batch)) => this.fire(batch),
                Ok(Err(e)) => tracing::warn!(error = %e, "purging a session's stored state failed"),
                Err(e) => tracing::warn!(error = %e, "purge task failed"),
            }
        });
    }

    /// Resolves once every batch submitted so far has landed.
    pub async fn barrier(&self) {
        let _ = self.submit_barrier().await;
    }

    fn submit_barrier(&self) -> Commit {
        match &self.committer {
            Some(c) => Box::pin(c.submit(Batch::new())),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// Blocking: the deletes that remove one session incarnation's state.
    fn purge_batch(&self, client_id: &str, incarnation: u64) -> Result<Batch> {
        let prefix = keys::session(client_id, incarnation);
        let mut batch = Batch::new();
        batch.delete(Cf::Sessions, prefix.clone());
        let mut entries = Vec::new();
        self.store.scan_prefix(Cf::Queue, &prefix, &mut |k, v| {
            entries.push((bytes::Bytes::copy_from_slice(k), QueueEntry::decode(v).ok().map(|e| e.msg_id)));
            true
        })?;
        for (key, msg) in entries {
            let seq = keys::parse(&key).and_then(|(_, _, rest)| keys::parse_u64(rest)).unwrap_or(0);
            match msg {
                Some(msg_id) => {
                    self.release(client_id, DurableRef { incarnation, seq, msg_id, recovered: true }, &mut batch)
                }
                None => {
                    batch.delete(Cf::Queue, key);
                }
            }
        }
        let mut inbound = Vec::new();
        self.store.scan_prefix(Cf::Inbound, &prefix, &mut |k, _| {
            inbound.push(bytes::Bytes::copy_from_slice(k));
            true
        })?;
        for k in inbound {
            batch.delete(Cf::Inbound, k);
        }
        Ok(batch)
    }

    /// Blocking: the stored deliveries of a session incarnation with a sequence below `below`, in
    /// sequence order, with their messages (expired ones are released instead and reported in the
    /// returned batch).
    pub fn load_queue(&self, client_id: &str, incarnation: u64, below: u64, now: Instant) -> Result<LoadedQueue> {
        let prefix = keys::session(client_id, incarnation);
        let mut raw = Vec::new();
        self.store.scan_prefix(Cf::Queue, &prefix, &mut |k, v| {
            let seq = keys::parse(k).and_then(|(_, _, rest)| keys::parse_u64(rest));
            raw.push((seq, QueueEntry::decode(v)));
            true
        })?;
        let mut cache: HashMap<u64, Option<Arc<Message>>> = HashMap::new();
        let mut loaded = LoadedQueue::default();
        for (seq, entry) in raw {
            let (Some(seq), Ok(entry)) = (seq, entry) else { continue };
            if seq >= below {
                continue;
            }
            let r = DurableRef { incarnation, seq, msg_id: entry.msg_id, recovered: true };
            let msg = match cache.get(&entry.msg_id) {
                Some(m) => m.clone(),
                None => {
                    let m = self
                        .store
                        .get(Cf::Messages, &keys::message(entry.msg_id))?
                        .and_then(|b| record::decode_message(&b, now).ok())
                        .map(Arc::new);
                    cache.insert(entry.msg_id, m.clone());
                    m
                }
            };
            match msg {
                Some(m) if entry.released || !m.is_expired(now) => loaded.entries.push((r, entry, m)),
                _ => self.release(client_id, r, &mut loaded.cleanup),
            }
        }
        Ok(loaded)
    }

    /// Startup: rebuilds reference counts and message ids, deletes orphans, and returns the stored
    /// sessions (without loading any payload).
    pub fn recover(&self) -> Result<Vec<RecoveredSession>> {
        recover::run(self)
    }
}

/// Stored deliveries of one session, ready to be put back in its queue.
#[derive(Default)]
pub struct LoadedQueue {
    pub entries: Vec<(DurableRef, QueueEntry, Arc<Message>)>,
    /// Deletes for entries that expired or lost their message while the broker was down.
    pub cleanup: Batch,
}
