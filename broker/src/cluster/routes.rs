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
//!   re-sent sequence numbers it already applied in this epoch (the sender's process).
//! - The outbox is bounded (`cluster.max_forward_bytes`); past it the oldest forward is dropped and
//!   counted, so a dead peer never costs unbounded memory.
//! - A shard never forwards a message it received by forward (no loops), nor `$SYS` topics.
//! - A retained message is stored only by the shard owning its topic on the ring; the shard that
//!   accepted it forwards it there with `retain` set ([`retained`] gathers them on subscribe).

use super::mux::{Link, LinkOptions, Received};
use super::ring::ShardRing;
use super::wire::{RouteKey, ShardMsg};
use crate::broker::{Broker, Scope};
use crate::codec::QoS;
use crate::message::Message;
use crate::persist::Durability;
use crate::router::{Match, SubscriptionTable};
use crate::store::{record, Batch, Cf, Store};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

mod outbox;
mod retained;

use outbox::{Outbox, Target};

/// A shard's routing state.
pub struct ShardRouting {
    me: String,
    /// This process's epoch: forward sequence numbers restart with it.
    epoch: u64,
    /// Local subscriptions per route key (announced on 0 ↔ 1).
    local: Mutex<HashMap<RouteKey, usize>>,
    /// Remote routes: key = peer index.
    remote: SubscriptionTable<usize, ()>,
    /// What each peer announced, by peer index.
    known: Mutex<Vec<HashSet<RouteKey>>>,
    /// Per peer: (epoch, highest sequence applied) of forwards received.
    applied: Mutex<Vec<(u64, u64)>>,
    peers: Vec<Peer>,
    opts: LinkOptions,
    max_forward_bytes: usize,
    /// Rotation over the shards serving a shared group.
    shared_turn: AtomicUsize,
    durability: Arc<Durability>,
    /// Owners of retained topics (the same ring as sessions).
    ring: ShardRing,
    /// Retained queries waiting for their reply, by id.
    queries: Mutex<HashMap<u64, oneshot::Sender<Vec<Vec<u8>>>>>,
    /// Route announcements waiting for their acks, by id.
    route_syncs: Mutex<HashMap<u64, RouteSync>>,
    next_query: AtomicU64,
}

/// A route announcement not yet acknowledged by every shard it went to.
struct RouteSync {
    key: RouteKey,
    waiting: usize,
    done: Vec<oneshot::Sender<()>>,
}

fn key_of(filter: &str, group: Option<&str>) -> RouteKey {
    RouteKey { filter: filter.into(), group: group.map(str::to_string) }
}

/// What [`ShardRouting::forward`] did.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Shards the message went to.
    pub shards: usize,
    /// Shared groups another shard serves: this shard's members of them must not get it.
    pub served_elsewhere: Vec<RouteKey>,
    /// Peers (live links) whose outbox is past [`FORWARD_HIGH_WATER`]: the publisher's ack waits
    /// for them ([`ShardRouting::wait_for_room`]).
    pub congested: Vec<usize>,
}

/// Unacknowledged forward bytes to one peer beyond which publishers wait before their ack: the
/// other shards deliver slower than this one accepts.
const FORWARD_HIGH_WATER: usize = 1 << 20;
/// ... until the outbox is back under this.
const FORWARD_LOW_WATER: usize = FORWARD_HIGH_WATER / 2;

struct Peer {
    id: String,
    addr: SocketAddr,
    /// The live outbound link, while there is one.
    link: Mutex<Option<Link>>,
    outbox: Mutex<Outbox>,
    /// Woken when the outbox falls under [`FORWARD_LOW_WATER`].
    room: tokio::sync::Notify,
}

impl ShardRouting {
    /// The routing state of shard `me` among `shards` (id, internal address).
    pub fn new(
        me: &str,
        shards: &[(String, SocketAddr)],
        opts: LinkOptions,
        max_forward_bytes: usize,
        durability: Arc<Durability>,
        vnodes: u32,
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
            local: Mutex::new(HashMap::new()),
            remote: SubscriptionTable::new(16),
            known: Mutex::new(vec![HashSet::new(); peers.len()]),
            applied: Mutex::new(vec![(0, 0); peers.len()]),
            peers,
            opts,
            max_forward_bytes,
            shared_turn: AtomicUsize::new(0),
            durability,
            ring: ShardRing::new(shards.iter().map(|(id, _)| id.as_str()), vnodes),
            queries: Mutex::new(HashMap::new()),
            route_syncs: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
        }
    }

    /// Loads what a previous run left: unacknowledged forwards per peer and, per peer, the last
    /// forward applied here (blocking; called while the node starts).
    pub fn recover(&self, store: &dyn Store) -> crate::store::Result<()> {
        let mut applied = self.applied.lock();
        for (i, p) in self.peers.iter().enumerate() {
            let outbox = Outbox::load(store, &p.id)?;
            if outbox.entries().next().is_some() {
                tracing::info!(peer = %p.id, forwards = outbox.entries().count(), "stored forwards to re-send");
            }
            *p.outbox.lock() = outbox;
            if let Some(v) = store.get(Cf::Meta, &applied_key(&p.id))? {
                if let (Some(e), Some(s)) = (v.get(..8), v.get(8..16)) {
                    let epoch = u64::from_be_bytes(e.try_into().unwrap_or_default());
                    let seq = u64::from_be_bytes(s.try_into().unwrap_or_default());
                    applied[i] = (epoch, seq);
                }
            }
        }
        Ok(())
    }

    /// Index of peer `id`.
    pub fn peer_index(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// A local session subscribed to `filter` (plain) in `group`. Returns what resolves once every
    /// reachable shard knows the route, when it is new (or still being announced): the SUBACK
    /// waits for it, so a publish on any shard after the SUBACK reaches this subscriber.
    pub fn subscribed(&self, filter: &str, group: Option<&str>) -> Option<oneshot::Receiver<()>> {
        let key = RouteKey { filter: filter.into(), group: group.map(str::to_string) };
        let mut local = self.local.lock();
        let n = local.entry(key.clone()).or_insert(0);
        *n += 1;
        let mut syncs = self.route_syncs.lock();
        let (tx, rx) = oneshot::channel();
        if *n == 1 {
            let id = self.next_query.fetch_add(1, Ordering::Relaxed);
            let sent = self.announce(ShardMsg::RouteAdd { key: key.clone(), id });
            if sent == 0 {
                return None;
            }
            syncs.insert(id, RouteSync { key, waiting: sent, done: vec![tx] });
            return Some(rx);
        }
        let pending = syncs.values_mut().find(|s| s.key == key)?;
        pending.done.push(tx);
        Some(rx)
    }

    /// A peer acknowledged route announcement `id`.
    fn route_acked(&self, id: u64) {
        let mut syncs = self.route_syncs.lock();
        let Some(sync) = syncs.get_mut(&id) else { return };
        sync.waiting = sync.waiting.saturating_sub(1);
        if sync.waiting == 0 {
            if let Some(sync) = syncs.remove(&id) {
                for tx in sync.done {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// A local session's subscription to `filter` in `group` ended.
    pub fn unsubscribed(&self, filter: &str, group: Option<&str>) {
        let key = RouteKey { filter: filter.into(), group: group.map(str::to_string) };
        let mut local = self.local.lock();
        let Some(n) = local.get_mut(&key) else { return };
        *n -= 1;
        if *n == 0 {
            local.remove(&key);
            self.announce(ShardMsg::RouteDel(key));
            // A pending announcement of the same route no longer matters.
            self.route_syncs.lock().retain(|_, s| s.key != key_of(filter, group));
        }
    }

    /// Sends a route change to every live peer link (called under the `local` lock, so changes
    /// and snapshots never cross); returns to how many.
    fn announce(&self, msg: ShardMsg) -> usize {
        let mut sent = 0;
        for p in &self.peers {
            if let Some(link) = p.link.lock().as_ref() {
                sent += usize::from(link.send(msg.clone(), Bytes::new()));
            }
        }
        sent
    }

    /// Forwards a locally published message to every other shard with a matching subscriber, and
    /// decides which shard serves each shared group with members on other shards.
    /// QoS 1/2 forwards on a durable engine join `batch` (the publish's commit), so they are stored
    /// before the publisher is acknowledged.
    pub fn forward(&self, broker: &Broker, msg: &Message, batch: &mut Batch) -> Forwarded {
        let mut out = Forwarded::default();
        if msg.topic.starts_with('$') {
            return out;
        }
        // Per target shard: whether it has direct subscribers, and the groups it serves.
        let mut targets: Vec<Target> = Vec::new();
        let mut groups: Vec<(usize, RouteKey)> = Vec::new();
        let mut direct: Vec<usize> = Vec::new();
        self.remote.for_each_match(&msg.topic, |m| match m {
            Match::Direct { key, .. } => direct.push(*key),
            Match::Shared { group, members } => {
                let key = RouteKey { filter: members.filter().to_string(), group: Some(group.to_string()) };
                // This shard is a candidate too when it has members; turns rotate over all.
                let here = self.local.lock().contains_key(&key);
                let turn = self.shared_turn.fetch_add(1, Ordering::Relaxed) % (members.len() + usize::from(here));
                if here && turn == members.len() {
                    return;
                }
                if let Some((peer, _)) = members.pick(|_, _| true) {
                    groups.push((*peer, key.clone()));
                    out.served_elsewhere.push(key);
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
        let mut deletes = Batch::new();
        for target in targets {
            let target_peer = target.peer;
            let peer = &self.peers[target_peer];
            let mut outbox = peer.outbox.lock();
            let store = durable.then_some((peer.id.as_str(), &mut *batch));
            let header = outbox.push(self.epoch, target, body.clone(), store);
            let mut dropped = 0;
            while outbox.bytes > self.max_forward_bytes {
                let Some(old) = outbox.pop_oldest() else { break };
                if let Some(k) = old.stored {
                    deletes.delete(Cf::Outbox, k);
                }
                dropped += 1;
            }
            if dropped > 0 {
                broker.stats.dropped(crate::metrics::DropReason::QueueFull, dropped);
                broker.stats.limit_rejection("max_forward_bytes");
            }
            let congested = outbox.bytes > FORWARD_HIGH_WATER;
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
        if !deletes.is_empty() {
            self.durability.fire(deletes);
        }
        out
    }

    /// Keeps the outbound link to peer `index` up until shutdown: dials, announces the routes,
    /// re-sends the outbox, and takes acks.
    pub async fn run_peer(self: Arc<Self>, index: usize, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let peer = &self.peers[index];
        let mut logged_down = false;
        loop {
            let dial = async {
                let tcp = tokio::net::TcpStream::connect(peer.addr).await?;
                tcp.set_nodelay(true)?;
                Link::dial(tcp, &self.me, self.opts).await.map_err(std::io::Error::other)
            };
            let dialed = tokio::select! {
                _ = super::shutting_down(&mut shutdown) => return,
                d = tokio::time::timeout(self.opts.heartbeat_timeout, dial) => d,
            };
            let (link, mut replies) = match dialed {
                Ok(Ok(l)) => l,
                failed => {
                    if !logged_down {
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
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
                let local = self.local.lock();
                let routes = local.keys().cloned().collect();
                link.send(ShardMsg::Routes { epoch: self.epoch, routes }, Bytes::new());
                let outbox = peer.outbox.lock();
                for e in outbox.entries() {
                    link.send(e.header.clone(), e.body.clone());
                }
                *peer.link.lock() = Some(link.clone());
            }
            loop {
                tokio::select! {
                    _ = super::shutting_down(&mut shutdown) => { link.close(); return; }
                    _ = link.dead() => break,
                    r = replies.recv() => match r {
                        Some((ShardMsg::ForwardAck { epoch, seq }, _)) => {
                            let (acked, room) = {
                                let mut outbox = peer.outbox.lock();
                                let acked = outbox.ack(epoch, seq);
                                (acked, outbox.bytes <= FORWARD_LOW_WATER)
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
                        Some((ShardMsg::RouteAck { id }, _)) => self.route_acked(id),
                        Some((ShardMsg::RetainedReply { id, records }, _)) => {
                            if let Some(tx) = self.queries.lock().remove(&id) {
                                let _ = tx.send(records);
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            *peer.link.lock() = None;
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
                if peer.outbox.lock().bytes <= FORWARD_LOW_WATER || peer.link.lock().is_none() {
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
        &self,
        broker: &Arc<Broker>,
        index: usize,
        link: Link,
        mut messages: mpsc::UnboundedReceiver<Received>,
    ) {
        while let Some((msg, body)) = messages.recv().await {
            match msg {
                ShardMsg::Routes { routes, .. } => self.replace_routes(index, routes),
                ShardMsg::RouteAdd { key, id } => {
                    if self.known.lock()[index].insert(key.clone()) {
                        self.remote.subscribe(&key.filter, key.group.as_deref(), index, ());
                    }
                    link.send(ShardMsg::RouteAck { id }, Bytes::new());
                }
                ShardMsg::RouteDel(key) => {
                    if self.known.lock()[index].remove(&key) {
                        self.remote.unsubscribe(&key.filter, key.group.as_deref(), &index);
                    }
                }
                ShardMsg::Forward { epoch, seq, direct, groups, retain } => {
                    let scope = Scope::Forwarded { direct, groups: &groups };
                    self.apply(broker, index, (epoch, seq, retain), scope, &body, &link)
                }
                ShardMsg::RetainedQuery { id, filter } => retained::answer(broker, &link, id, filter),
                ShardMsg::ForwardAck { .. } | ShardMsg::RetainedReply { .. } | ShardMsg::RouteAck { .. } => {}
            }
        }
    }

    fn replace_routes(&self, index: usize, routes: Vec<RouteKey>) {
        let new: HashSet<RouteKey> = routes.into_iter().collect();
        let mut known = self.known.lock();
        for gone in known[index].difference(&new) {
            self.remote.unsubscribe(&gone.filter, gone.group.as_deref(), &index);
        }
        for added in new.difference(&known[index]) {
            self.remote.subscribe(&added.filter, added.group.as_deref(), index, ());
        }
        known[index] = new;
    }

    /// Queues a forwarded message for local subscribers and acks it once committed. A repeat of
    /// what was applied already (a re-send after a lost ack) is only acked again; on a durable
    /// engine the applied position is stored with the message's queue entries, so this holds
    /// across a restart of this shard too.
    fn apply(
        &self,
        broker: &Arc<Broker>,
        index: usize,
        (epoch, seq, retain): (u64, u64, bool),
        scope: Scope<'_>,
        body: &[u8],
        link: &Link,
    ) {
        let ack = ShardMsg::ForwardAck { epoch, seq };
        {
            let mut applied = self.applied.lock();
            let (e, upto) = &mut applied[index];
            if *e == epoch && seq <= *upto {
                link.send(ack, Bytes::new());
                return;
            }
            *e = epoch;
            *upto = seq;
        }
        let msg = match record::decode_message(body, Instant::now()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::warn!(peer = %self.peers[index].id, error = %e, "bad forwarded message dropped");
                link.send(ack, Bytes::new());
                return;
            }
        };
        let mut batch = Batch::new();
        if retain {
            broker.store_retained(&msg, &mut batch);
        }
        if self.durability.enabled() && msg.qos != QoS::AtMostOnce {
            let mut position = Vec::with_capacity(16);
            position.extend_from_slice(&epoch.to_be_bytes());
            position.extend_from_slice(&seq.to_be_bytes());
            batch.put(Cf::Meta, applied_key(&self.peers[index].id), position);
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

/// Key in [`Cf::Meta`] of the last forward from `peer` applied here.
fn applied_key(peer: &str) -> Bytes {
    Bytes::from(format!("fwd-applied/{peer}"))
}

/// The entry of `peer` in a forward's target list, added if missing.
fn target_index(targets: &mut Vec<Target>, peer: usize) -> usize {
    match targets.iter().position(|t| t.peer == peer) {
        Some(i) => i,
        None => {
            targets.push(Target { peer, direct: false, groups: Vec::new(), retain: false });
            targets.len() - 1
        }
    }
}

#[cfg(test)]
mod tests;
