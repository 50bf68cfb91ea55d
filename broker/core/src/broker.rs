//! The node's shared state and the publish path: subscription table, retained messages, session
//! registry, authorization and statistics.
//!
//! Invariants: routing reads only the subscription-table shards the topic can match (never a global
//! lock) and enqueues into each target session's own bounded inbox, so a slow subscriber costs the
//! publisher nothing but a possible drop (counted). A message is delivered at most once per
//! subscriber session for all of its overlapping non-shared subscriptions, at the highest granted
//! QoS, with every matching subscription identifier; each shared group gets one copy.

use crate::acl::Acl;
use crate::auth::PasswordFile;
use crate::config::Config;
use crate::ids::SessionId;
use crate::message::record;
use crate::message::DurableRef;
use crate::message::{Delivery, Message};
use crate::metrics::{DropReason, Stats};
use crate::persist::records::QueueEntry;
use crate::persist::{Commit, Durability};
use crate::port::{RouteKey, Routing};
use crate::router::{Match, SubscriptionTable};
use crate::session::inbox::InboxLimits;
use crate::session::{SessionShared, Sessions};
use crate::store::{Batch, Cf, Store};
use crate::topic::TopicLimits;
use fleetmq_codec::{QoS, SubOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// What a publish did: sessions it was queued for, the commit that must complete before the
/// publisher is acknowledged, and the online subscribers whose queues are past high water (the
/// publisher pauses for them, see `session::backpressure`).
pub struct Published {
    pub queued: usize,
    pub commit: Option<Commit>,
    pub congested: Vec<Arc<SessionShared>>,
    /// Refused and not delivered: the bridge buffer is full (5.0: 0x97 Quota exceeded).
    pub refused: bool,
}

/// What one enqueue did.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub accepted: bool,
    pub congested: bool,
}

/// One subscription as the router stores it.
#[derive(Clone)]
pub struct SubEntry {
    pub session: Arc<SessionShared>,
    pub options: SubOptions,
    pub sub_id: Option<u32>,
}

/// Everything a node shares between its connections and sessions.
pub struct Broker {
    pub config: Arc<Config>,
    pub router: SubscriptionTable<SessionId, SubEntry>,
    pub retained: Retained,
    pub sessions: Sessions,
    pub acl: Option<Acl>,
    pub passwords: Option<PasswordFile>,
    /// Shared with every connection's guard, which counts bytes and open connections.
    pub stats: Arc<Stats>,
    pub inbox_limits: InboxLimits,
    pub topic_limits: TopicLimits,
    pub started: Instant,
    pub store: Arc<dyn Store>,
    pub durability: Arc<Durability>,
    /// On a shard node: routes to and forwards for the other shards (`None`: a standalone node).
    pub routing: Option<Arc<dyn Routing>>,
    /// Copies bridged topics into the partitioned log (`[[bridge.rule]]`).
    pub bridge: Option<Arc<crate::bridge::Bridge>>,
    /// Where idle sessions park (`limits.idle_park_ms`), started by the first one to park.
    lot: std::sync::OnceLock<Option<Arc<crate::session::park::Lot>>>,
    shutdown: watch::Receiver<bool>,
}

/// What [`Broker::builder`] assembles: the required parts, then what a node may have (ACL,
/// password file, a cluster's routing), each set at most once.
pub struct BrokerBuilder {
    config: Arc<Config>,
    durability: Arc<Durability>,
    shutdown: watch::Receiver<bool>,
    acl: Option<Acl>,
    passwords: Option<PasswordFile>,
    routing: Option<Arc<dyn Routing>>,
}

impl BrokerBuilder {
    /// Authorizes publishes and subscribes by these rules (without: everything is allowed).
    pub fn acl(mut self, acl: Option<Acl>) -> Self {
        self.acl = acl;
        self
    }

    /// Authenticates clients against this password file (without: `auth.allow_anonymous` rules).
    pub fn passwords(mut self, passwords: Option<PasswordFile>) -> Self {
        self.passwords = passwords;
        self
    }

    /// Makes this node a shard that routes through `routing` to the other shards.
    pub fn routing(mut self, routing: Arc<dyn Routing>) -> Self {
        self.routing = Some(routing);
        self
    }

    /// Builds the broker, rebuilding the retained index from the store (blocking: call it off
    /// the reactor threads).
    pub fn build(self) -> crate::store::Result<Broker> {
        Broker::new(self)
    }
}

/// Which matching subscriptions one routing of a message serves.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// All of them (a standalone node).
    All,
    /// Published on this shard: all but the shared groups another shard was chosen to serve.
    Except(&'a [RouteKey]),
    /// Forwarded by another shard: direct subscriptions only if `direct`, and exactly `groups`.
    Forwarded { direct: bool, groups: &'a [RouteKey] },
}

impl Scope<'_> {
    fn direct(&self) -> bool {
        match self {
            Scope::All | Scope::Except(_) => true,
            Scope::Forwarded { direct, .. } => *direct,
        }
    }

    fn serves_group(&self, filter: &str, group: &str) -> bool {
        let is = |k: &RouteKey| k.filter == filter && k.group.as_deref() == Some(group);
        match self {
            Scope::All => true,
            Scope::Except(skip) => !skip.iter().any(is),
            Scope::Forwarded { groups, .. } => groups.iter().any(is),
        }
    }
}

/// Above this many targets, routing dedupes overlapping subscriptions through a hash index.
const INDEX_THRESHOLD: usize = 8;

struct Target {
    session: Arc<SessionShared>,
    qos: QoS,
    retain: bool,
    sub_ids: Vec<u32>,
}

impl Broker {
    /// Starts assembling a node's broker over `durability` (which carries the store); `shutdown`
    /// flips to `true` when the node starts shutting down.
    pub fn builder(config: Arc<Config>, durability: Arc<Durability>, shutdown: watch::Receiver<bool>) -> BrokerBuilder {
        BrokerBuilder { config, durability, shutdown, acl: None, passwords: None, routing: None }
    }

    fn new(b: BrokerBuilder) -> crate::store::Result<Broker> {
        let BrokerBuilder { config, durability, shutdown, acl, passwords, routing } = b;
        let store = durability.store().clone();
        let limits = &config.limits;
        let inbox_limits = InboxLimits {
            max_messages: limits.max_queued_messages,
            max_bytes: limits.max_queued_bytes,
            overflow: limits.queue_overflow,
            queue_qos0_offline: config.mqtt.queue_qos0_offline,
        };
        let topic_limits = TopicLimits { max_length: limits.max_topic_length, max_levels: limits.max_topic_levels };
        let retained = Retained::new(limits.max_retained_bytes, limits.retained_overflow);
        load_retained(store.as_ref(), &retained)?;
        let stats = Arc::new(Stats::new());
        stats.retained.set(retained.len() as f64);
        let bridge = match config.bridge.enabled() {
            true => Some(Arc::new(crate::bridge::Bridge::open(&config.bridge, &config.node.id, durability.clone())?)),
            false => None,
        };
        Ok(Broker {
            router: SubscriptionTable::new(64),
            retained,
            sessions: Sessions::default(),
            acl,
            passwords,
            stats,
            inbox_limits,
            topic_limits,
            started: Instant::now(),
            store,
            durability,
            bridge,
            routing,
            lot: std::sync::OnceLock::new(),
            shutdown,
            config,
        })
    }

    /// A receiver that turns `true` when the node shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The node's parking lot, started on first use (call on a runtime thread); `None` when
    /// parking is off or the lot could not start or has closed.
    pub(crate) fn parking_lot(this: &Arc<Broker>) -> Option<&Arc<crate::session::park::Lot>> {
        if this.config.limits.idle_park_ms == 0 {
            return None;
        }
        this.lot.get_or_init(|| crate::session::park::Lot::start(this)).as_ref().filter(|lot| lot.is_open())
    }

    /// Sessions parked now (0 before the first one parks).
    pub fn parked(&self) -> usize {
        self.lot.get().and_then(Option::as_ref).map_or(0, |lot| lot.len())
    }

    /// Publishes an accepted message: updates the retained store when the retain flag is set, then
    /// delivers to every matching subscription. Returns the number of sessions it was queued for
    /// and the commit that must complete before the publisher is acknowledged (the retained update
    /// and the queue entries of persistent subscribers, plus `batch` — e.g. the publisher's own
    /// inbound QoS 2 record — all in one atomic write).
    pub fn publish(&self, msg: Arc<Message>, batch: Batch) -> Published {
        self.publish_as(msg, batch, true)
    }

    /// Publishes a message no client waits to have acknowledged (a will, `$SYS`): a full bridge
    /// buffer drops its bridge copy instead of refusing it, since nobody would publish it again.
    pub fn publish_unacknowledged(&self, msg: Arc<Message>) -> Published {
        self.publish_as(msg, Batch::new(), false)
    }

    fn publish_as(&self, msg: Arc<Message>, mut batch: Batch, may_refuse: bool) -> Published {
        // Buffered for the log in the publish's own commit, so before its acknowledgement.
        let mut bridged = None;
        if let Some(bridge) = &self.bridge {
            match bridge.capture(&msg, &mut batch, &self.stats, may_refuse) {
                crate::bridge::Capture::Refused => {
                    return Published { queued: 0, commit: None, congested: Vec::new(), refused: true }
                }
                crate::bridge::Capture::Buffered { seq, cost, records } => {
                    bridged = Some((bridge.clone(), seq, cost, records))
                }
                crate::bridge::Capture::Passed => {}
            }
        }
        let mut published = self.publish_routed(&msg, batch);
        if let Some((bridge, seq, cost, records)) = bridged {
            if let Some(commit) = published.commit.take() {
                // Records whose commit fails never reach the buffer: stop counting them.
                published.commit = Some(Box::pin(async move {
                    let result = commit.await;
                    if result.is_err() {
                        bridge.abandon(seq, cost, records);
                    }
                    result
                }));
            }
        }
        published
    }

    fn publish_routed(&self, msg: &Arc<Message>, mut batch: Batch) -> Published {
        // In a cluster the retained message is stored by the shard owning its topic.
        if msg.retain && self.routing.as_ref().is_none_or(|r| !r.retained_elsewhere(&msg.topic)) {
            self.retain(msg, &mut batch);
        }
        let Some(routing) = &self.routing else { return self.route(msg, batch, Scope::All) };
        let forwarded = routing.forward(&self.stats, msg, &mut batch);
        let mut published = self.route(msg, batch, Scope::Except(&forwarded.served_elsewhere));
        // Subscribers on other shards count as matching (5.0: no 0x10 for them).
        published.queued += forwarded.shards;
        let wait = self.config.limits.backpressure_wait_ms;
        if !forwarded.congested.is_empty() && msg.qos != QoS::AtMostOnce && wait > 0 {
            // Other shards deliver slower than this one accepts: the ack waits for them (bounded
            // by `backpressure_wait_ms`), so the publisher's in-flight window slows it down.
            let limit = std::time::Duration::from_millis(wait);
            let room = routing.clone().wait_for_room(forwarded.congested, limit);
            let commit = published.commit.take();
            published.commit = Some(Box::pin(async move {
                if let Some(c) = commit {
                    c.await?;
                }
                room.await;
                Ok(())
            }));
        }
        published
    }

    /// Adds a session's subscription to the router (and, on a shard, to the routes other shards
    /// know); `filter` is plain, `group` the share group.
    /// On a shard, returns what resolves once the other shards know a new route (see
    /// [`Routing::subscribed`]).
    pub fn subscribe(
        &self,
        filter: &str,
        group: Option<&str>,
        entry: SubEntry,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let id = entry.session.id;
        if self.router.subscribe(filter, group, id, entry).is_none() {
            if let Some(routing) = &self.routing {
                return routing.subscribed(filter, group);
            }
        }
        None
    }

    /// Removes a session's subscription (see [`Broker::subscribe`]).
    pub fn unsubscribe(&self, filter: &str, group: Option<&str>, session: SessionId) {
        if self.router.unsubscribe(filter, group, &session).is_some() {
            if let Some(routing) = &self.routing {
                routing.unsubscribed(filter, group);
            }
        }
    }

    /// Updates the retained message of `msg`'s topic (in a cluster: on the shard owning the topic,
    /// also for one forwarded by the shard that accepted it).
    pub fn retain(&self, msg: &Arc<Message>, durable: &mut Batch) {
        let mut batch = Batch::new();
        let key = |t: &str| bytes::Bytes::copy_from_slice(t.as_bytes());
        if msg.payload.is_empty() {
            self.retained.remove(&msg.topic);
            batch.delete(Cf::Retained, key(&msg.topic));
        } else {
            match self.retained.set(msg.clone()) {
                Stored::Rejected => {
                    self.stats.limit_rejection("max_retained_bytes");
                    return;
                }
                Stored::Yes { evicted } => {
                    if !evicted.is_empty() {
                        self.stats.limit_rejection("max_retained_bytes");
                        self.stats.dropped(DropReason::RetainedEvicted, evicted.len());
                    }
                    for t in evicted {
                        batch.delete(Cf::Retained, key(&t));
                    }
                }
            }
            match record::encode_message(msg, Instant::now()) {
                Ok(value) => {
                    batch.put(Cf::Retained, key(&msg.topic), value);
                }
                Err(e) => tracing::warn!(topic = %msg.topic, error = %e, "retained message not stored"),
            }
        }
        self.stats.retained.set(self.retained.len() as f64);
        self.write_retained(batch, durable);
    }

    /// Retained updates join the publish's durable batch, or go straight to a volatile store.
    fn write_retained(&self, mut batch: Batch, durable: &mut Batch) {
        if self.durability.enabled() {
            durable.ops.append(&mut batch.ops);
        } else if let Err(e) = self.store.write(batch) {
            tracing::warn!(error = %e, "retained message not stored");
        }
    }

    /// Whether this node holds a retained message for `topic`.
    pub fn has_retained(&self, topic: &str) -> bool {
        self.retained.contains(topic)
    }

    /// Removes the retained message of `topic` here (it moved to another shard), its delete
    /// joining `durable`.
    pub fn drop_retained(&self, topic: &str, durable: &mut Batch) {
        self.retained.remove(topic);
        let mut batch = Batch::new();
        batch.delete(Cf::Retained, bytes::Bytes::copy_from_slice(topic.as_bytes()));
        self.stats.retained.set(self.retained.len() as f64);
        self.write_retained(batch, durable);
    }

    /// Removes expired retained messages from memory and storage (run periodically).
    pub fn purge_expired_retained(&self) -> usize {
        let expired = self.retained.purge_expired(Instant::now());
        self.forget_retained(&expired);
        expired.len()
    }

    fn forget_retained(&self, topics: &[Arc<str>]) {
        if topics.is_empty() {
            return;
        }
        let mut batch = Batch::new();
        for t in topics {
            batch.delete(Cf::Retained, bytes::Bytes::copy_from_slice(t.as_bytes()));
        }
        self.stats.dropped(DropReason::Expired, topics.len());
        self.stats.retained.set(self.retained.len() as f64);
        let mut durable = Batch::new();
        self.write_retained(batch, &mut durable);
        self.durability.fire(durable);
    }

    /// Delivers `msg` to matching subscribers (not touching the retained store). Queue entries of
    /// persistent subscribers join `batch`, which is submitted before any delivery becomes
    /// visible, so a subscriber's acknowledgement can never be written before the entry it removes.
    pub fn route(&self, msg: &Arc<Message>, mut batch: Batch, scope: Scope<'_>) -> Published {
        let mut targets: Vec<Target> = Vec::new();
        // Overlapping subscriptions of one session merge into one delivery. Small fan-outs search
        // the vector; large ones switch to an index so a 1 → N publish stays O(N).
        let mut index: HashMap<SessionId, usize> = HashMap::new();
        let mut shared: Vec<Target> = Vec::new();
        self.router.for_each_match(&msg.topic, |m| match m {
            Match::Direct { value, .. } => {
                if !scope.direct() {
                    return;
                }
                if value.options.no_local && value.session.client_id == msg.publisher {
                    return;
                }
                let qos = msg.qos.min(value.options.qos);
                let retain = msg.retain && value.options.retain_as_published;
                let id = value.session.id;
                let found = if targets.len() <= INDEX_THRESHOLD {
                    targets.iter().position(|t| t.session.id == id)
                } else {
                    if index.is_empty() {
                        index.extend(targets.iter().enumerate().map(|(i, t)| (t.session.id, i)));
                    }
                    index.get(&id).copied()
                };
                match found {
                    Some(i) => {
                        let t = &mut targets[i];
                        t.qos = t.qos.max(qos);
                        t.retain |= retain;
                        t.sub_ids.extend(value.sub_id);
                    }
                    None => {
                        if !index.is_empty() {
                            index.insert(id, targets.len());
                        }
                        targets.push(Target {
                            session: value.session.clone(),
                            qos,
                            retain,
                            sub_ids: value.sub_id.into_iter().collect(),
                        });
                    }
                }
            }
            Match::Shared { group, members } => {
                if !scope.serves_group(members.filter(), group) {
                    return;
                }
                let picked = members
                    .pick(|_, v| v.session.is_online() && v.session.has_room(&self.inbox_limits))
                    .or_else(|| members.pick(|_, _| true));
                if let Some((_, v)) = picked {
                    shared.push(Target {
                        session: v.session.clone(),
                        qos: msg.qos.min(v.options.qos),
                        retain: msg.retain && v.options.retain_as_published,
                        sub_ids: v.sub_id.into_iter().collect(),
                    });
                }
            }
        });
        let mut deliveries = Vec::with_capacity(targets.len() + shared.len());
        let mut stored = 0u32;
        let msg_id =
            if self.durability.enabled() && msg.qos != QoS::AtMostOnce { self.durability.next_message_id() } else { 0 };
        for t in targets.into_iter().chain(shared) {
            let durable = (msg_id != 0 && t.session.durable && t.qos != QoS::AtMostOnce).then(|| {
                let r = DurableRef { incarnation: t.session.id.0, seq: t.session.next_seq(), msg_id, recovered: false };
                let entry = QueueEntry::new(msg_id, t.qos, t.retain, t.sub_ids.clone());
                self.durability.put_entry(t.session.client_id.as_str(), r, &entry, &mut batch);
                stored += 1;
                r
            });
            deliveries.push((
                t.session,
                Delivery { msg: msg.clone(), qos: t.qos, retain: t.retain, sub_ids: t.sub_ids, durable },
            ));
        }
        if stored > 0 {
            if let Err(e) = self.durability.put_message(msg_id, msg, stored, &mut batch) {
                tracing::warn!(error = %e, "message cannot be encoded for storage");
            }
        }
        let commit = self.durability.submit(batch);
        let mut published = Published { queued: 0, commit, congested: Vec::new(), refused: false };
        let mut releases = Batch::new();
        for (session, d) in deliveries {
            let q = self.deliver(&session, d, &mut releases);
            published.queued += usize::from(q.accepted);
            if q.congested {
                published.congested.push(session);
            }
        }
        self.durability.fire(releases);
        published
    }

    /// Queues one delivery for a session, counting what the queue limits drop; stored deliveries
    /// that are dropped get their release added to `releases`.
    pub fn deliver(&self, session: &SessionShared, d: Delivery, releases: &mut Batch) -> Queued {
        let (qos, durable) = (d.qos, d.durable);
        let result = session.enqueue(d, &self.inbox_limits);
        self.stats.dropped(DropReason::QueueFull, result.dropped.len());
        for old in &result.dropped {
            if let Some(r) = old.durable {
                self.durability.release(session.client_id.as_str(), r, releases);
            }
        }
        if !result.accepted {
            let reason = if qos == QoS::AtMostOnce && !session.is_online() {
                DropReason::OfflineQos0
            } else {
                DropReason::QueueFull
            };
            self.stats.dropped(reason, 1);
            if let Some(r) = durable {
                self.durability.release(session.client_id.as_str(), r, releases);
            }
        }
        Queued { accepted: result.accepted, congested: result.congested }
    }

    /// Retained messages matching `filter` that have not expired (expired ones are purged); those
    /// only in the store are read with [`Broker::read_retained`].
    pub fn retained_matching(&self, filter: &str, now: Instant) -> Vec<Found> {
        let (found, expired) = self.retained.matching(filter, now);
        self.forget_retained(&expired);
        found
    }

    /// Reads retained messages that are only in the store, in the order given; missing, expired
    /// and unreadable ones are left out. Reads stop at one session queue's limits (more could not
    /// be queued; the rest are counted as dropped), so a wide subscription after a restart cannot
    /// pull the whole retained set into memory. Blocks on disk: call it off the reactor threads.
    pub fn read_retained(&self, topics: &[Arc<str>]) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let limits = &self.inbox_limits;
        let mut out = Vec::with_capacity(topics.len().min(limits.max_messages));
        let mut bytes = 0usize;
        for (i, topic) in topics.iter().enumerate() {
            if out.len() >= limits.max_messages || bytes >= limits.max_bytes {
                self.stats.dropped(DropReason::QueueFull, topics.len() - i);
                break;
            }
            let read = self.store.get(Cf::Retained, topic.as_bytes()).and_then(|v| match v {
                Some(v) => record::decode_message(&v, now).map(Some),
                None => Ok(None),
            });
            match read {
                Ok(Some(m)) if !m.is_expired(now) => {
                    bytes += m.cost();
                    out.push(Arc::new(m));
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.storage_read_error();
                    tracing::debug!(topic = %topic, error = %e, "retained message could not be read");
                }
            }
        }
        out
    }

    /// Whether the ACL (if any) lets this client publish to `topic`.
    pub fn may_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_publish(username, client_id, topic))
    }

    /// Whether the ACL (if any) lets this client subscribe to `filter`.
    pub fn may_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_subscribe(username, client_id, filter))
    }
}

/// Rebuilds the retained index from the store by metadata only (payloads stay on disk until a
/// subscriber needs them), skipping expired and unreadable records and deleting what no longer
/// fits the budget.
fn load_retained(store: &dyn Store, retained: &Retained) -> crate::store::Result<()> {
    let now = Instant::now();
    let mut bad = 0usize;
    let mut gone = Batch::new();
    store.scan_prefix(Cf::Retained, b"", &mut |k, v| {
        match record::decode_message(v, now) {
            Ok(m) if !m.is_expired(now) => match retained.set_stored(m.topic.clone(), m.cost(), m.expires_at) {
                Stored::Yes { evicted } => {
                    for t in evicted {
                        gone.delete(Cf::Retained, bytes::Bytes::copy_from_slice(t.as_bytes()));
                    }
                }
                Stored::Rejected => {
                    gone.delete(Cf::Retained, bytes::Bytes::copy_from_slice(k));
                }
            },
            Ok(_) => {
                gone.delete(Cf::Retained, bytes::Bytes::copy_from_slice(k));
            }
            Err(_) => bad += 1,
        }
        true
    })?;
    if bad > 0 {
        tracing::warn!(records = bad, "skipped unreadable retained records");
    }
    if !gone.is_empty() {
        tracing::info!(records = gone.ops.len(), "deleting expired or over-budget retained records");
        store.write(gone)?;
    }
    Ok(())
}

mod retained;
#[cfg(test)]
mod tests;

pub use retained::{Found, Retained, Stored};
