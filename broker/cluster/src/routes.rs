//! Routing between shards: which shards have subscribers for which filters, and the forwarding of
//! each publish once to every other shard that needs it.
//!
//! Every shard keeps one outbound link per other shard ([`ShardRouting::run_peer`]). On it, the
//! shard announces its own routes (a full snapshot whenever the link comes up, then one message
//! per filter gaining its first or losing its last local subscriber) and sends forwards; the peer
//! answers each forward with an ack once the message is queued (and stored, when durable) for its
//! subscribers.
//!
//! Invariants:
//! - A forward stays in the sender's outbox until acked and is re-sent, in sequence order, on every
//!   new link, so a peer restart or a lost link loses nothing the outbox holds; the receiver drops
//!   re-sent forwards it already applied ([`applied`]).
//! - The outbox is bounded (`cluster.max_forward_bytes`); past it the oldest forward is dropped and
//!   counted, so a dead peer never costs unbounded memory. While a live peer lags, publishers'
//!   acks wait (bounded) instead.
//! - A SUBACK that creates a route waits (bounded) until every shard with a live link has it.
//! - A shard never forwards a message it received by forward (no loops), nor its own `$SYS`
//!   topics, whose retained messages it also keeps itself.
//! - A retained message is stored only by the shard owning its topic on the ring; the shard that
//!   accepted it forwards it there with `retain` set ([`retained`] gathers them on subscribe).

use super::mux::{Link, LinkOptions, Received};
use super::ring::ShardRing;
use super::secure::LinkTls;
use super::wire::{RouteKey, ShardMsg};
use bytes::Bytes;
use fleetmq_codec::QoS;
use fleetmq_core::broker::{Broker, Scope};
use fleetmq_core::config::Config;
use fleetmq_core::message::record;
use fleetmq_core::message::Message;
use fleetmq_core::metrics::Stats;
use fleetmq_core::persist::Durability;
use fleetmq_core::router::{Match, SubscriptionTable};
use fleetmq_core::store::{Batch, Cf, Store};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

mod announce;
mod applied;
mod handover;
mod outbox;
mod port;
mod retained;

use announce::Routes;
use applied::Applied;

use outbox::{Outbox, Target};

/// A shard's routing state.
pub struct ShardRouting {
    me: String,
    /// This process's epoch: forward sequence numbers restart with it.
    epoch: u64,
    /// Which filters are subscribed where.
    routes: Routes,
    /// Per peer: what was applied of its forwards.
    applied: Mutex<Vec<Applied>>,
    peers: Vec<Peer>,
    opts: LinkOptions,
    /// How much may wait in an outbox, and when publishers wait for it.
    pacing: Pacing,
    durability: Arc<Durability>,
    /// Owners of retained topics and sessions.
    ring: Arc<ShardRing>,
    /// Retained queries waiting for their reply, by id.
    queries: Mutex<HashMap<u64, oneshot::Sender<Vec<Vec<u8>>>>>,
    /// Ids of route announcements, retained queries and hand-overs.
    next_id: AtomicU64,
    handovers: handover::Handovers,
}

/// Bounds of the outbox to one peer. Invariant: `low_water < high_water <= max_forward_bytes / 4`
/// (or both 0 for a tiny bound), so publishers wait before anything is dropped.
struct Pacing {
    /// Past this many unacknowledged bytes the oldest forwards are dropped.
    max_forward_bytes: usize,
    /// Outbox bytes to one live peer beyond which publishers' acks wait, and below which they go.
    high_water: usize,
    low_water: usize,
}

impl Pacing {
    fn new(max_forward_bytes: usize) -> Pacing {
        let high_water = FORWARD_HIGH_WATER.min(max_forward_bytes / 4);
        Pacing { max_forward_bytes, high_water, low_water: high_water / 2 }
    }
}

/// Key under which this shard's own members of a shared group are also in the remote table, so a
/// publish picks the serving shard among all of them in one rotation.
const HERE: usize = usize::MAX;

/// Topics each node keeps to itself: its `$SYS` statistics.
fn node_local(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

pub use fleetmq_core::port::Forwarded;

/// Unacknowledged forward bytes to one live peer beyond which publishers wait before their ack
/// (the other shards deliver slower than this one accepts), at most; a quarter of
/// `max_forward_bytes` when that is smaller, so the wait starts before anything is dropped.
const FORWARD_HIGH_WATER: usize = 1 << 20;

struct Peer {
    id: String,
    addr: SocketAddr,
    /// The live outbound link, while there is one.
    link: Mutex<Option<Link>>,
    outbox: Mutex<Outbox>,
    /// Woken when the outbox falls under the low-water mark or the link drops.
    room: tokio::sync::Notify,
}

impl ShardRouting {
    /// The routing state of shard `me` among `shards` (id, internal address); `ring` places
    /// sessions and retained topics on them.
    pub fn new(
        me: &str,
        shards: &[(String, SocketAddr)],
        opts: LinkOptions,
        max_forward_bytes: usize,
        durability: Arc<Durability>,
        ring: ShardRing,
    ) -> Self {
        let peers: Vec<Peer> = shards
            .iter()
            .filter(|(id, _)| id != me)
            .map(|(id, addr)| Peer {
                id: id.clone(),
                addr: *addr,
                link: Mutex::new(None),
                outbox: Mutex::new(Outbox::default()),
                room: tokio::sync::Notify::new(),
            })
            .collect();
        ShardRouting {
            me: me.into(),
            epoch: rand::random::<u64>() | 1,
            routes: Routes {
                local: Mutex::new(HashMap::new()),
                remote: SubscriptionTable::new(16),
                known: Mutex::new(vec![HashSet::new(); peers.len()]),
                syncs: Mutex::new(HashMap::new()),
            },
            applied: Mutex::new(peers.iter().map(|_| Applied::default()).collect()),
            peers,
            opts,
            pacing: Pacing::new(max_forward_bytes),
            durability,
            ring: Arc::new(ring),
            queries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            handovers: handover::Handovers::default(),
        }
    }

    /// The routing state of the shard `config` describes (`[node] id` among `[[cluster.shard]]`),
    /// its links secured by `tls`.
    pub fn from_config(config: &Config, durability: Arc<Durability>, tls: Option<Arc<LinkTls>>) -> Self {
        let c = &config.cluster;
        let shards: Vec<_> = c.shards.iter().filter_map(|s| Some((s.id.clone(), s.addr.parse().ok()?))).collect();
        let ring = ShardRing::new(c.ring_shards(), c.vnodes);
        ShardRouting::new(&config.node.id, &shards, super::link_options(c, tls), c.max_forward_bytes, durability, ring)
    }

    /// Loads what a previous run left: unacknowledged forwards per peer and, per peer, the last
    /// forward applied here (blocking; called while the node starts).
    pub fn recover(&self, store: &dyn Store) -> fleetmq_core::store::Result<()> {
        let mut applied = self.applied.lock();
        for (i, p) in self.peers.iter().enumerate() {
            let outbox = Outbox::load(store, &p.id)?;
            if outbox.entries().next().is_some() {
                tracing::info!(peer = %p.id, forwards = outbox.entries().count(), "stored forwards to re-send");
            }
            *p.outbox.lock() = outbox;
            applied[i] = Applied::load(store, &p.id)?;
        }
        Ok(())
    }

    /// Index of peer `id`.
    pub fn peer_index(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// Forwards a locally published message to every other shard with a matching subscriber, and
    /// decides which shard serves each shared group with members on other shards.
    /// QoS 1/2 forwards on a durable engine join `batch` (the publish's commit), so they are stored
    /// before the publisher is acknowledged.
    pub fn forward(&self, stats: &Stats, msg: &Message, batch: &mut Batch) -> Forwarded {
        let mut out = Forwarded::default();
        if node_local(&msg.topic) {
            return out;
        }
        // Per target shard: whether it has direct subscribers, and the groups it serves.
        let mut targets: Vec<Target> = Vec::new();
        let mut groups: Vec<(usize, RouteKey)> = Vec::new();
        let mut direct: Vec<usize> = Vec::new();
        self.routes.remote.for_each_match(&msg.topic, |m| match m {
            Match::Direct { key, .. } => direct.push(*key),
            Match::Shared { group, members } => {
                // Rotates over the shards with members (this one too, as `HERE`), preferring those
                // reachable now; an unreachable one only when no other is left.
                let live = |p: &usize| *p == HERE || self.peers[*p].link.lock().is_some();
                let picked = members.pick(|p, _| live(p)).or_else(|| members.pick(|_, _| true));
                match picked {
                    Some((&peer, _)) if peer != HERE => {
                        let key = RouteKey::new(members.filter(), Some(group));
                        groups.push((peer, key.clone()));
                        out.served_elsewhere.push(key);
                    }
                    _ => {}
                }
            }
        });
        for peer in direct {
            let i = target_index(&mut targets, peer);
            targets[i].direct = true;
        }
        for (peer, key) in groups {
            let i = target_index(&mut targets, peer);
            targets[i].groups.push(key);
        }
        if msg.retain {
            if let Some(owner) = self.retained_owner(&msg.topic) {
                let i = target_index(&mut targets, owner);
                targets[i].retain = true;
            }
        }
        if targets.is_empty() {
            return out;
        }
        let body = match record::encode_message(msg, Instant::now()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(topic = %msg.topic, error = %e, "message cannot be forwarded");
                return Forwarded::default();
            }
        };
        // A forward only to store the retained message is not a subscriber.
        out.shards = targets.iter().filter(|t| t.direct || !t.groups.is_empty()).count();
        let durable = self.durability.enabled() && msg.qos != QoS::AtMostOnce;
        let mut deletes = Vec::new();
        for target in targets {
            let target_peer = target.peer;
            let peer = &self.peers[target_peer];
            let mut outbox = peer.outbox.lock();
            let store = durable.then_some((peer.id.as_str(), &mut *batch));
            let header = outbox.push(self.epoch, target, body.clone(), store);
            let mut dropped = 0;
            while outbox.bytes > self.pacing.max_forward_bytes {
                let Some(old) = outbox.pop_oldest() else { break };
                deletes.extend(old.stored);
                dropped += 1;
            }
            if dropped > 0 {
                stats.dropped(fleetmq_core::metrics::DropReason::QueueFull, dropped);
                stats.limit_rejection("max_forward_bytes");
            }
            let congested = outbox.bytes > self.pacing.high_water;
            // Sent while the outbox is still locked: frames leave in sequence order, which the
            // target's duplicate filter relies on (a later sequence applied first would make it
            // drop the earlier one as a repeat).
            if let Some(link) = peer.link.lock().as_ref() {
                link.send(header, body.clone());
                if congested && !out.congested.contains(&target_peer) {
                    out.congested.push(target_peer);
                }
            }
            drop(outbox);
        }
        // In the publish's own batch: after any put of these entries that is still to commit.
        for k in deletes {
            batch.delete(Cf::Outbox, k);
        }
        out
    }

    /// Keeps the outbound link to peer `index` up until shutdown: dials, announces the routes,
    /// re-sends the outbox, hands over what the peer owns now, and takes acks and answers.
    pub async fn run_peer(self: Arc<Self>, broker: Arc<Broker>, index: usize) {
        let mut shutdown = broker.shutdown_signal();
        let peer = &self.peers[index];
        let mut logged_down = false;
        loop {
            let dialed = tokio::select! {
                _ = super::shutting_down(&mut shutdown) => return,
                d = super::mux::connect(peer.addr, &self.me, &self.opts) => d,
            };
            let (link, mut replies) = match dialed {
                Ok(l) => l,
                Err(error) => {
                    if !logged_down {
                        tracing::warn!(peer = %peer.id, addr = %peer.addr, %error, "shard unreachable");
                        logged_down = true;
                    }
                    tokio::time::sleep(self.opts.heartbeat).await;
                    continue;
                }
            };
            logged_down = false;
            tracing::info!(peer = %peer.id, "shard link up");
            {
                // Snapshot, then the outbox in order, then live traffic: under both locks, so no
                // route change or forward slips between them.
                let local = self.routes.local.lock();
                let routes = local.keys().cloned().collect();
                link.send(ShardMsg::Routes { routes }, Bytes::new());
                let outbox = peer.outbox.lock();
                for e in outbox.entries() {
                    link.send(e.header.clone(), e.body.clone());
                }
                *peer.link.lock() = Some(link.clone());
            }
            tokio::spawn(self.clone().hand_out(broker.clone(), index));
            loop {
                tokio::select! {
                    _ = super::shutting_down(&mut shutdown) => { link.close(); return; }
                    _ = link.dead() => break,
                    r = replies.recv() => match r {
                        Some((ShardMsg::ForwardAck { epoch, seq }, _)) => {
                            let (acked, room) = {
                                let mut outbox = peer.outbox.lock();
                                let acked = outbox.ack(epoch, seq);
                                (acked, outbox.bytes <= self.pacing.low_water)
                            };
                            if room {
                                peer.room.notify_waiters();
                            }
                            if let Some(k) = acked.and_then(|e| e.stored) {
                                let mut b = Batch::new();
                                b.delete(Cf::Outbox, k);
                                self.durability.fire(b);
                            }
                        }
                        Some((ShardMsg::RouteAck { id }, _)) => self.route_acked(index, Some(id)),
                        Some((ShardMsg::RetainedReply { id, records }, _)) => {
                            if let Some(tx) = self.queries.lock().remove(&id) {
                                let _ = tx.send(records);
                            }
                        }
                        Some((ShardMsg::HandoverReady { id, ok } | ShardMsg::HandoverDone { id, ok }, _)) => {
                            self.handover_answered(id, ok)
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            *peer.link.lock() = None;
            // Nobody waits on a peer that is gone: not SUBACKs, not publishers' acks.
            self.route_acked(index, None);
            peer.room.notify_waiters();
            tokio::time::sleep(self.opts.heartbeat).await;
        }
    }

    /// Waits (at most `limit`) until the outboxes of `peers` are back under the low-water mark, or
    /// their link is gone: a publisher's ack waits here, so publishers slow down to the pace the
    /// other shards deliver at instead of filling the outbox.
    pub async fn wait_for_room(self: Arc<Self>, peers: Vec<usize>, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for i in peers {
            let peer = &self.peers[i];
            loop {
                let notified = peer.room.notified();
                if peer.outbox.lock().bytes <= self.pacing.low_water || peer.link.lock().is_none() {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Number of peers (one `run_peer` task each).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Serves what peer `index` sends on the link it dialed to us, until the link ends.
    pub async fn serve_peer(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        index: usize,
        link: Link,
        mut messages: mpsc::UnboundedReceiver<Received>,
    ) {
        while let Some((msg, body)) = messages.recv().await {
            match msg {
                ShardMsg::Routes { routes, .. } => self.replace_routes(index, routes),
                ShardMsg::RouteAdd { key, id } => {
                    if self.routes.known.lock()[index].insert(key.clone()) {
                        self.routes.remote.subscribe(&key.filter, key.group.as_deref(), index, ());
                    }
                    link.send(ShardMsg::RouteAck { id }, Bytes::new());
                }
                ShardMsg::RouteDel(key) => {
                    if self.routes.known.lock()[index].remove(&key) {
                        self.routes.remote.unsubscribe(&key.filter, key.group.as_deref(), &index);
                    }
                }
                ShardMsg::Forward { epoch, seq, direct, groups, retain, moved } => {
                    let scope = Scope::Forwarded { direct, groups: &groups };
                    self.apply(broker, index, (epoch, seq, retain, moved), scope, &body, &link)
                }
                ShardMsg::RetainedQuery { id, filter } => retained::answer(broker, &link, id, filter),
                ShardMsg::HandoverBegin { id, client_id, next_seq } => {
                    self.take_session(broker, &link, (id, client_id, next_seq), &body)
                }
                ShardMsg::HandoverEntry { id, seq, qos, retain, sub_ids, released } => {
                    self.take_entry(index, id, (seq, qos, retain, sub_ids, released), &body)
                }
                ShardMsg::HandoverEnd { id, client_id, entries, inbound } => {
                    self.take_end(broker, &link, index, (id, client_id, entries, inbound))
                }
                ShardMsg::ForwardAck { .. }
                | ShardMsg::RetainedReply { .. }
                | ShardMsg::RouteAck { .. }
                | ShardMsg::HandoverReady { .. }
                | ShardMsg::HandoverDone { .. } => {}
            }
        }
        self.handover_link_ended(index);
    }

    /// Queues a forwarded message for local subscribers and acks it once committed. A repeat of
    /// what was applied already (a re-send after a lost ack) is only acked again; on a durable
    /// engine the applied position is stored with the message's queue entries, so this holds
    /// across a restart of this shard too.
    fn apply(
        &self,
        broker: &Arc<Broker>,
        index: usize,
        (epoch, seq, retain, moved): (u64, u64, bool, bool),
        scope: Scope<'_>,
        body: &[u8],
        link: &Link,
    ) {
        let ack = ShardMsg::ForwardAck { epoch, seq };
        let msg = match record::decode_message(body, Instant::now()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::warn!(peer = %self.peers[index].id, error = %e, "bad forwarded message dropped");
                link.send(ack, Bytes::new());
                return;
            }
        };
        let mut batch = Batch::new();
        let durable = self.durability.enabled() && msg.qos != QoS::AtMostOnce;
        let fresh = self.applied.lock()[index].admit(&self.peers[index].id, epoch, seq, durable.then_some(&mut batch));
        if !fresh {
            link.send(ack, Bytes::new());
            return;
        }
        // A handed-over retained message yields to one published since.
        if retain && !(moved && broker.has_retained(&msg.topic)) {
            broker.retain(&msg, &mut batch);
        }
        let published = broker.route(&msg, batch, scope);
        match published.commit {
            None => {
                link.send(ack, Bytes::new());
            }
            Some(commit) => {
                let link = link.clone();
                tokio::spawn(async move {
                    if commit.await.is_ok() {
                        link.send(ack, Bytes::new());
                    }
                });
            }
        }
    }
}

/// The entry of `peer` in a forward's target list, added if missing.
fn target_index(targets: &mut Vec<Target>, peer: usize) -> usize {
    match targets.iter().position(|t| t.peer == peer) {
        Some(i) => i,
        None => {
            targets.push(Target { peer, direct: false, groups: Vec::new(), retain: false, moved: false });
            targets.len() - 1
        }
    }
}

#[cfg(test)]
mod tests;
