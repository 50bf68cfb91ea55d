//! Hand-over between shards after a membership change: stored sessions and retained messages
//! whose owner on the (new) ring is another shard move there, so every client finds its session
//! — subscriptions, queued and in-flight messages — at the shard the fronts now send it to.
//!
//! When a link to a peer comes up, this shard hands over every offline stored session the ring
//! gives to that peer (session side: `session::handover`) and every stored retained message whose
//! topic the peer now owns (through the durable outbox, deleted here in the same commit).
//!
//! Invariants: a session's stored copy here is deleted only after the new owner stored what it
//! was sent; the new owner reports ready only when it has a live link to every other shard (so
//! each routes the session's subscriptions to it), otherwise the session stays here and the pass
//! is tried again later. Requests are answered on the link they came on; a request whose answer
//! does not come in time counts as refused.

use super::outbox::Target;
use super::ShardRouting;
use crate::mux::Link;
use crate::wire::ShardMsg;
use bytes::Bytes;
use fleetmq_core::broker::Broker;
use fleetmq_core::message::record;
use fleetmq_core::persist::records::SessionRecord;
use fleetmq_core::session::handover::{self as session_handover, BoxFuture, HandedEntry, HandoverLink};
use fleetmq_core::store::{Batch, Cf};
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Sessions handed over at once to one peer.
const CONCURRENT: usize = 16;

/// Longest pause between hand-over passes to one peer.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Hand-over state of a shard.
#[derive(Default)]
pub(super) struct Handovers {
    /// Answers awaited by this shard's requests, by request id.
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>,
    /// Entries received per (peer, request id) until the request's end.
    incoming: Mutex<HashMap<(usize, u64), Vec<HandedEntry>>>,
    /// Peers a hand-over pass runs for.
    busy: Mutex<HashSet<usize>>,
    /// Peers every stored retained message they own was handed to.
    retained_moved: Mutex<HashSet<usize>>,
}

impl HandoverLink for ShardRouting {
    fn begin(&self, peer: usize, client_id: &str, next_seq: u64, record: &SessionRecord) -> BoxFuture<bool> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let begin = ShardMsg::HandoverBegin { id, client_id: client_id.into(), next_seq };
        self.request(peer, id, vec![(begin, record.encode())], self.opts.heartbeat_timeout * 2 + Duration::from_secs(1))
    }

    fn end(&self, peer: usize, client_id: &str, entries: &[HandedEntry], inbound: &[u16]) -> BoxFuture<bool> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut frames = Vec::with_capacity(entries.len() + 1);
        for e in entries {
            let Ok(body) = record::encode_message(&e.msg, now) else { continue };
            let header = ShardMsg::HandoverEntry {
                id,
                seq: e.seq,
                qos: e.qos as u8,
                retain: e.retain,
                sub_ids: e.sub_ids.clone(),
                released: e.released,
            };
            frames.push((header, body));
        }
        let end = ShardMsg::HandoverEnd {
            id,
            client_id: client_id.into(),
            entries: frames.len() as u32,
            inbound: inbound.to_vec(),
        };
        frames.push((end, Bytes::new()));
        self.request(peer, id, frames, self.opts.heartbeat_timeout * 2 + Duration::from_secs(5))
    }

    fn retry_delay(&self) -> Duration {
        self.opts.heartbeat_timeout
    }
}

impl ShardRouting {
    /// Sends `frames` to `peer` and waits (at most `limit`) for the answer to request `id`.
    fn request(&self, peer: usize, id: u64, frames: Vec<(ShardMsg, Bytes)>, limit: Duration) -> BoxFuture<bool> {
        let waiting = self.handovers.waiting.clone();
        let (tx, rx) = oneshot::channel();
        waiting.lock().insert(id, tx);
        let sent = match self.peers[peer].link.lock().as_ref() {
            Some(link) => frames.into_iter().all(|(h, b)| link.send(h, b)),
            None => false,
        };
        Box::pin(async move {
            let answer = if sent { tokio::time::timeout(limit, rx).await.ok().and_then(Result::ok) } else { None };
            waiting.lock().remove(&id);
            answer.unwrap_or(false)
        })
    }

    /// An answer to one of this shard's hand-over requests.
    pub(super) fn handover_answered(&self, id: u64, ok: bool) {
        if let Some(tx) = self.handovers.waiting.lock().remove(&id) {
            let _ = tx.send(ok);
        }
    }

    /// Owner of `client_id` on this shard's ring.
    pub fn owner_of(&self, client_id: &str) -> Option<&str> {
        self.ring.owner(client_id)
    }

    /// Whether this shard has a live link to every other shard.
    fn all_linked(&self) -> bool {
        self.peers.iter().all(|p| p.link.lock().is_some())
    }

    /// Hands over what peer `index` now owns (its link just came up); tried again, with growing
    /// pauses, while some of it stays here (a session online here, a peer not ready) and the link
    /// is up.
    pub(super) async fn hand_out(self: Arc<Self>, broker: Arc<Broker>, index: usize) {
        if !self.handovers.busy.lock().insert(index) {
            return;
        }
        let peer = self.peers[index].id.clone();
        let mut pause = self.opts.heartbeat_timeout;
        loop {
            // The ring is fixed for the life of the process: once moved, retained messages are
            // not looked for again until the next start.
            let mut retained_left = !self.handovers.retained_moved.lock().contains(&index);
            if retained_left {
                match self.move_retained(&broker, index).await {
                    Ok(all) => retained_left = !all,
                    Err(e) => tracing::warn!(%peer, error = %e, "retained messages could not be handed over"),
                }
                if !retained_left {
                    self.handovers.retained_moved.lock().insert(index);
                }
            }
            let (online, due): (Vec<_>, Vec<_>) = broker
                .sessions
                .all()
                .into_iter()
                .filter(|s| s.durable && self.owner_of(s.client_id.as_str()) == Some(peer.as_str()))
                .partition(|s| s.is_online());
            let link: Arc<dyn HandoverLink> = self.clone();
            let results: Vec<bool> = futures_util::stream::iter(due)
                .map(|s| {
                    let done = session_handover::hand_out(&s, index, link.clone());
                    async move { done.await.unwrap_or(false) }
                })
                .buffer_unordered(CONCURRENT)
                .collect()
                .await;
            let moved = results.iter().filter(|ok| **ok).count();
            // A session online here (served while its owner was away) goes once it is offline.
            let left = results.len() - moved + online.len();
            if moved > 0 {
                broker.stats.sessions_handed_over(moved);
                tracing::info!(%peer, moved, left, "sessions handed over to their new owner");
            }
            if (left == 0 && !retained_left) || broker.is_shutting_down() || self.peers[index].link.lock().is_none() {
                break;
            }
            tracing::debug!(%peer, left, retained_left, "hand-over not complete yet; trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        self.handovers.busy.lock().remove(&index);
    }

    /// Moves the stored retained messages whose topic peer `index` owns now: each becomes a
    /// durable forward to it, deleted here in the same commit. Stops while the peer's outbox is
    /// past its high-water mark (so nothing moved is dropped for room); `Ok(true)` when all moved.
    async fn move_retained(self: &Arc<Self>, broker: &Arc<Broker>, index: usize) -> fleetmq_core::store::Result<bool> {
        if !self.durability.enabled() {
            return Ok(true);
        }
        let peer = self.peers[index].id.clone();
        let store = self.durability.store().clone();
        let this = self.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            store.scan_prefix(Cf::Retained, b"", &mut |k, v| {
                let moves = std::str::from_utf8(k).is_ok_and(|t| this.retained_owner(t) == Some(index));
                if moves {
                    out.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
                }
                true
            })?;
            Ok::<_, fleetmq_core::store::Error>(out)
        })
        .await
        .map_err(|e| fleetmq_core::store::Error::Engine(e.to_string()))??;
        let mut moved = 0;
        let mut all = true;
        let mut batch = Batch::new();
        let p = &self.peers[index];
        for (topic, body) in &found {
            if p.outbox.lock().bytes > self.pacing.high_water {
                self.commit(std::mem::take(&mut batch)).await?;
                self.clone().wait_for_room(vec![index], self.opts.heartbeat_timeout).await;
                if p.outbox.lock().bytes > self.pacing.high_water || p.link.lock().is_none() {
                    all = false;
                    break;
                }
            }
            let target = Target { peer: index, direct: false, groups: Vec::new(), retain: true, moved: true };
            let mut outbox = p.outbox.lock();
            let header = outbox.push(self.epoch, target, body.clone(), Some((p.id.as_str(), &mut batch)));
            if let Some(link) = p.link.lock().as_ref() {
                link.send(header, body.clone());
            }
            drop(outbox);
            broker.drop_retained(std::str::from_utf8(topic).unwrap_or_default(), &mut batch);
            moved += 1;
        }
        self.commit(batch).await?;
        if moved > 0 {
            tracing::info!(%peer, moved, "retained messages handed over to their new owner");
        }
        Ok(all)
    }

    async fn commit(&self, batch: Batch) -> fleetmq_core::store::Result<()> {
        match self.durability.submit(batch) {
            Some(commit) => commit.await,
            None => Ok(()),
        }
    }

    /// Peer `index` asks this shard to take a session (`HandoverBegin`): creates it (unless it
    /// exists) and answers once every shard routes its subscriptions here.
    pub(super) fn take_session(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        link: &Link,
        (id, client_id, next_seq): (u64, String, u64),
        body: &[u8],
    ) {
        let (this, broker, link) = (self.clone(), broker.clone(), link.clone());
        let record = SessionRecord::decode(body);
        tokio::spawn(async move {
            let ok = match record {
                Err(e) => {
                    tracing::warn!(%client_id, error = %e, "bad handed-over session record");
                    false
                }
                // Another ring here (a membership change half rolled out): not ours to take.
                Ok(_) if this.owner_of(&client_id) != Some(this.me.as_str()) => false,
                Ok(record) => match session_handover::take_in(&broker, &client_id, record, next_seq).await {
                    Ok(synced) => {
                        // Ready only once every shard routes the session here: the old owner
                        // unsubscribes next, and a shard still routing to it alone would lose
                        // publishes.
                        let limit = this.opts.heartbeat_timeout;
                        let routed = tokio::time::timeout(limit, futures_util::future::join_all(synced)).await;
                        routed.is_ok_and(|r| r.iter().all(Result::is_ok)) && this.all_linked()
                    }
                    Err(e) => {
                        tracing::warn!(%client_id, error = %e, "handed-over session not taken");
                        false
                    }
                },
            };
            link.send(ShardMsg::HandoverReady { id, ok }, Bytes::new());
        });
    }

    /// One entry of a session peer `index` hands over.
    pub(super) fn take_entry(&self, index: usize, id: u64, entry: (u64, u8, bool, Vec<u32>, bool), body: &[u8]) {
        let (seq, qos, retain, sub_ids, released) = entry;
        let Ok(msg) = record::decode_message(body, Instant::now()) else {
            tracing::warn!(peer = %self.peers[index].id, "bad handed-over message dropped");
            return;
        };
        let qos = fleetmq_codec::QoS::from_u8(qos).unwrap_or(fleetmq_codec::QoS::AtLeastOnce);
        let e = HandedEntry { seq, qos, retain, sub_ids, released, msg: Arc::new(msg) };
        self.handovers.incoming.lock().entry((index, id)).or_default().push(e);
    }

    /// The last of a handed-over session's entries: merges them into the session and answers.
    pub(super) fn take_end(
        &self,
        broker: &Arc<Broker>,
        link: &Link,
        index: usize,
        (id, client_id, count, inbound): (u64, String, u32, Vec<u16>),
    ) {
        let entries = self.handovers.incoming.lock().remove(&(index, id)).unwrap_or_default();
        let (broker, link) = (broker.clone(), link.clone());
        tokio::spawn(async move {
            // Entries lost on the way (a frame that did not decode): the sender tries again.
            let ok =
                entries.len() == count as usize && session_handover::merge(&broker, &client_id, entries, inbound).await;
            link.send(ShardMsg::HandoverDone { id, ok }, Bytes::new());
        });
    }

    /// The link from peer `index` ended: entries of its unfinished hand-overs are dropped (it
    /// sends them again).
    pub(super) fn handover_link_ended(&self, index: usize) {
        self.handovers.incoming.lock().retain(|(peer, _), _| *peer != index);
    }
}
