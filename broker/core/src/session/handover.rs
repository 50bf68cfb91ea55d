//! The session's side of a hand-over between shards (cluster membership changed, so a stored
//! session's owner on the ring is now another shard).
//!
//! The old owner's task ([`SessionTask::hand_out`]) asks the new owner to take the session; the
//! new owner creates it from the session record ([`take_in`]) and every shard routes its
//! subscriptions there before the old owner lets go. Then the old owner stops taking deliveries,
//! collects everything it stored for the session and sends it; the new owner's task merges it in
//! front of what it queued meanwhile ([`SessionTask::merge`]).
//!
//! Invariants:
//! - No acknowledged delivery is lost: the old owner keeps its subscriptions until the new owner
//!   has them on every shard, and deletes its stored copy only after the new owner stored the
//!   handed entries. Between the two, a publish can reach both: the new owner drops the copy it
//!   already holds by the message's uid, so a QoS 2 message is still delivered once.
//! - Handed entries keep their order, in front of anything queued at the new owner since; a
//!   session created by the hand-over keeps the old owner's sequence numbers (its own start above
//!   them), so the order survives a restart too.
//! - While the new owner waits for the entries (bounded by [`HOLD`]), a client attaching to the
//!   session waits with it, so it never sees newer messages before older ones.

use super::qos::stored_packet_id;
use super::task::SessionTask;
use super::{new_shared, AttachRequest, Control, SessionShared};
use crate::broker::Broker;
use crate::ids::{ClientId, MessageUid, SessionId};
use crate::message::DurableRef;
use crate::message::{Delivery, Message};
use crate::persist::records::{QueueEntry, SessionRecord};
use crate::persist::{keys, RecoveredSession};
use crate::store::{Batch, Cf};
use fleetmq_codec::QoS;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Sequence numbers a session created by a hand-over leaves free below its own, for the entries
/// the old owner sends (which keep theirs): more than any session queues while it is handed over.
const RESERVED_SEQS: u64 = 1 << 32;

/// Attempts to send a session's entries before the old owner gives up until its next start.
const END_ATTEMPTS: u32 = 10;

/// How long a session being handed over holds an attaching client back while its entries are
/// on their way.
pub const HOLD: Duration = Duration::from_secs(10);

/// One delivery of a session being handed over, as it travels between shards.
#[derive(Debug, Clone)]
pub struct HandedEntry {
    /// The old owner's delivery sequence.
    pub seq: u64,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// QoS 2 with PUBREC received: resumes with PUBREL.
    pub released: bool,
    pub msg: Arc<Message>,
}

/// What the old owner's cluster layer does for a hand-over (implemented by the shard routing).
pub trait HandoverLink: Send + Sync {
    /// Asks shard `peer` to take the session; `true` once it holds it and every shard routes the
    /// session's subscriptions to it.
    fn begin(&self, peer: usize, client_id: &str, next_seq: u64, record: &SessionRecord) -> BoxFuture<bool>;
    /// Sends the session's entries; `true` once `peer` stored them.
    fn end(&self, peer: usize, client_id: &str, entries: &[HandedEntry], inbound: &[u16]) -> BoxFuture<bool>;
    /// Pause between attempts to send the entries.
    fn retry_delay(&self) -> Duration;
}

/// A boxed future of the hand-over link.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl SessionTask {
    /// Hands this session over to shard `peer`. `false`: nothing changed (the session is online,
    /// not stored, or the peer cannot take it now) and the session stays here.
    pub(super) async fn hand_out(&mut self, peer: usize, link: Arc<dyn HandoverLink>) -> bool {
        if self.link.is_some() || !self.shared.durable || self.ended {
            return false;
        }
        let client_id = self.shared.client_id.to_string();
        let next_seq = self.shared.next_seq.load(Ordering::Relaxed);
        if !link.begin(peer, &client_id, next_seq, &self.record()).await {
            return false;
        }
        // Every shard now routes this session's subscriptions to the new owner: stop taking
        // deliveries here. The will went with the record.
        self.ended = true;
        self.will = None;
        self.unsubscribe_all();
        self.broker.sessions.remove(&self.shared.client_id, self.shared.id);
        let entries = self.handed_entries().await;
        let inbound: Vec<u16> = self.qos.incoming_qos2().collect();
        let mut attempts = 0;
        while !link.end(peer, &client_id, &entries, &inbound).await {
            attempts += 1;
            if self.broker.is_shutting_down() || attempts >= END_ATTEMPTS {
                // The stored copy stays (the new owner drops what it already has by uid); the
                // next start hands it over again.
                tracing::warn!(%client_id, attempts, "handed-over session's entries not taken; kept for the next start");
                return false;
            }
            tokio::time::sleep(link.retry_delay()).await;
        }
        self.shared.inbox.lock().take_all();
        self.qos.take_all();
        self.broker.durability.purge(client_id, self.shared.id.0);
        // Counted as a session here until its stored copy is gone (operators wait for 0).
        self.broker.stats.sessions.decrement(1.0);
        true
    }

    /// Everything this session holds, oldest first: the stored deliveries (after every commit
    /// already submitted has landed, so racing publishes are among them) and QoS 0 ones in memory.
    async fn handed_entries(&mut self) -> Vec<HandedEntry> {
        self.broker.durability.barrier().await;
        let in_memory = self.shared.inbox.lock().take_all();
        let d = self.broker.durability.clone();
        let (id, inc) = (self.shared.client_id.to_string(), self.shared.id.0);
        let mut out = Vec::new();
        match tokio::task::spawn_blocking(move || d.load_queue(&id, inc, u64::MAX, Instant::now())).await {
            Ok(Ok(loaded)) => out.extend(loaded.entries.into_iter().map(|(r, e, msg)| HandedEntry {
                seq: r.seq,
                qos: e.qos(),
                retain: e.retain,
                sub_ids: e.sub_ids,
                released: e.released,
                msg,
            })),
            Ok(Err(e)) => tracing::warn!(error = %e, "stored deliveries of a handed-over session unreadable"),
            Err(e) => tracing::warn!(error = %e, "loading a handed-over session failed"),
        }
        out.extend(in_memory.into_iter().filter(|d| d.durable.is_none()).map(|d| HandedEntry {
            seq: 0,
            qos: d.qos,
            retain: d.retain,
            sub_ids: d.sub_ids,
            released: false,
            msg: d.msg,
        }));
        out
    }

    /// Takes in the entries the old owner handed over: stores them (each message once more, under
    /// this shard's ids), drops those this session already holds, and puts them in front of the
    /// queue. `false` if they could not be stored (the old owner sends them again).
    pub(super) async fn merge(&mut self, entries: Vec<HandedEntry>, inbound: Vec<u16>) -> bool {
        self.load_cold().await;
        // Copies this session got itself (a publish reaching both owners). Only those: one message
        // can legitimately be handed over twice (a direct and a shared subscription).
        let mut have: HashSet<MessageUid> = self.qos.outgoing().iter().map(|f| f.delivery.msg.uid).collect();
        have.extend(self.shared.inbox.lock().uids());
        let base = self.receiving.as_ref().and_then(|r| r.base);
        let now = Instant::now();
        let (client_id, inc) = (self.shared.client_id.to_string(), self.shared.id.0);
        let d = self.broker.durability.clone();
        let mut batch = Batch::new();
        let (mut queued, mut released, mut repeats) = (Vec::new(), Vec::new(), 0usize);
        for e in entries {
            if have.contains(&e.msg.uid) {
                repeats += 1;
                continue;
            }
            if e.msg.is_expired(now) && !e.released {
                continue;
            }
            let mut durable = None;
            if self.shared.durable && e.qos != QoS::AtMostOnce {
                let seq = match base {
                    Some(b) if e.seq < b => e.seq,
                    _ => self.shared.next_seq(),
                };
                let msg_id = d.next_message_id();
                if d.put_message(msg_id, &e.msg, 1, &mut batch).is_err() {
                    continue;
                }
                let r = DurableRef { incarnation: inc, seq, msg_id, recovered: true };
                let mut entry = QueueEntry::new(msg_id, e.qos, e.retain, e.sub_ids.clone());
                entry.released = e.released;
                d.put_entry(&client_id, r, &entry, &mut batch);
                durable = Some(r);
            }
            let delivery = Delivery { msg: e.msg, qos: e.qos, retain: e.retain, sub_ids: e.sub_ids, durable };
            match durable {
                Some(r) if e.released => released.push((delivery, stored_packet_id(r.seq))),
                _ => queued.push(delivery),
            }
        }
        if self.shared.durable {
            for &pid in &inbound {
                batch.put(Cf::Inbound, keys::inbound(&client_id, inc, pid), bytes::Bytes::new());
            }
        }
        if let Some(commit) = d.submit(batch) {
            if let Err(e) = commit.await {
                tracing::warn!(%client_id, error = %e, "storing a handed-over session failed");
                return false;
            }
        }
        // The reserved sequences are used up: a later hand-over gets fresh ones.
        if let Some(r) = self.receiving.as_mut() {
            r.base = None;
        }
        tracing::debug!(%client_id, entries = queued.len() + released.len(), repeats, "session handed over to this shard");
        self.qos.restore_incoming(inbound);
        for (delivery, packet_id) in released {
            self.qos.restore_released(delivery, packet_id);
        }
        self.shared.inbox.lock().prepend(queued);
        self.release_held();
        true
    }

    /// Attaches the clients held back while the session waited for its entries.
    pub(super) fn release_held(&mut self) {
        let Some(receiving) = self.receiving.take() else { return };
        for req in receiving.held {
            self.attach(req, true);
        }
    }

    /// Holds an attaching client back while the session waits for handed-over entries; gives the
    /// request back when it may attach now.
    pub(super) fn hold(&mut self, req: Box<AttachRequest>) -> Option<Box<AttachRequest>> {
        match self.receiving.as_mut() {
            Some(r) if Instant::now() < r.hold_until => {
                r.held.push(*req);
                None
            }
            _ => Some(req),
        }
    }

    /// When held clients stop waiting, if any are held.
    pub(super) fn hold_deadline(&self) -> Option<Instant> {
        self.receiving.as_ref().filter(|r| !r.held.is_empty()).map(|r| r.hold_until)
    }
}

/// State of a session created by a hand-over until its entries arrive (boxed in the task: most
/// sessions never have it).
pub(super) struct Receiving {
    /// Entries with a sequence below this keep it (see [`RESERVED_SEQS`]).
    base: Option<u64>,
    hold_until: Instant,
    held: Vec<AttachRequest>,
}

/// Asks the session task of `shared` to hand the session over to shard `peer`; resolves to
/// whether it did.
pub fn hand_out(shared: &SessionShared, peer: usize, link: Arc<dyn HandoverLink>) -> oneshot::Receiver<bool> {
    let (done, rx) = oneshot::channel();
    let _ = shared.send_control(Control::HandOut { peer, link, done });
    rx
}

/// Gives the session of `client_id` the entries its previous owner handed over; resolves to
/// whether they are stored (`true` as well when the session no longer exists: it ended here).
pub async fn merge(broker: &Broker, client_id: &str, entries: Vec<HandedEntry>, inbound: Vec<u16>) -> bool {
    let mut request = Control::Merge { entries, inbound, done: None };
    loop {
        let Some(session) = broker.sessions.get(&ClientId::new(client_id)) else { return true };
        let (tx, rx) = oneshot::channel();
        if let Control::Merge { done, .. } = &mut request {
            *done = Some(tx);
        }
        match session.send_control(request) {
            Ok(()) => return rx.await.unwrap_or(false),
            // That session just ended: go again with whatever replaced it.
            Err(back) => {
                broker.sessions.remove(&session.client_id, session.id);
                request = back;
            }
        }
    }
}

/// Creates the session being handed over to this shard from its record, unless one exists for the
/// client id already (an earlier attempt, or the client connected here first: that session stays
/// and gets the entries). Returns what resolves once other shards route its subscriptions here;
/// `Err` if the session could not be stored.
pub async fn take_in(
    broker: &Arc<Broker>,
    client_id: &str,
    record: SessionRecord,
    next_seq: u64,
) -> Result<Vec<oneshot::Receiver<()>>, crate::store::Error> {
    let id = ClientId::new(client_id);
    if broker.sessions.get(&id).is_some() {
        return Ok(Vec::new());
    }
    if !broker.durability.enabled() {
        return Err(crate::store::Error::Engine("persistent sessions are not stored on this shard".into()));
    }
    let incarnation = SessionId::next();
    let mut batch = Batch::new();
    batch.put(Cf::Sessions, keys::session(client_id, incarnation.0), record.encode());
    if let Some(commit) = broker.durability.submit(batch) {
        commit.await?;
    }
    let base = next_seq.saturating_add(RESERVED_SEQS);
    let shared = new_shared(id, incarnation, true, base);
    if !broker.sessions.replace(None, shared.clone()) {
        // A client connected meanwhile: its session gets the entries.
        broker.durability.purge(client_id.to_string(), incarnation.0);
        return Ok(Vec::new());
    }
    let rs = RecoveredSession {
        client_id: client_id.to_string(),
        incarnation: incarnation.0,
        record,
        inbound: Vec::new(),
        next_seq: base,
        queued: 0,
    };
    let (mut task, synced) = super::durable::restore_one(broker, shared, rs, Instant::now(), SystemTime::now());
    task.receiving =
        Some(Box::new(Receiving { base: Some(base), hold_until: Instant::now() + HOLD, held: Vec::new() }));
    broker.stats.subscriptions.set(broker.router.len() as f64);
    tokio::spawn(task.run());
    Ok(synced)
}

#[cfg(test)]
mod tests;
