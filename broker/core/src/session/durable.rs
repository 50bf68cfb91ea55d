//! The session task's side of durability: writing the session record, loading a recovered
//! session's stored deliveries at its first attach, and bringing stored sessions back at startup.
//!
//! Invariants: only sessions created persistent on a durable engine (`SessionShared::durable`) write
//! anything; a recovered session keeps its incarnation, so its storage keys stay valid; its stored
//! deliveries come back before anything queued since the restart, in their original order.

use super::new_shared;
use super::qos::stored_packet_id;
use super::task::SessionTask;
use crate::broker::Broker;
use crate::ids::{ClientId, SessionId};
use crate::message::Delivery;
use crate::persist::records::{SessionRecord, SubscriptionRecord, WillRecord};
use crate::persist::{keys, Commit, RecoveredSession};
use crate::store::{Batch, Cf};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A wall-clock time as stored: milliseconds since the Unix epoch (`None` for the epoch itself
/// or before it).
pub(super) fn wall_ms(t: SystemTime) -> Option<NonZeroU64> {
    NonZeroU64::new(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

impl SessionTask {
    /// The stored form of this session.
    pub(super) fn record(&self) -> SessionRecord {
        let now = Instant::now();
        let mut r = SessionRecord::new(self.owner.clone(), self.expiry_secs);
        r.offline_since_ms = self.offline_since.map(NonZeroU64::get);
        r.subscriptions = self.subscriptions.iter().map(|(f, (o, id))| SubscriptionRecord::new(f, *o, *id)).collect();
        r.will = self.will.as_deref().and_then(|(w, _)| WillRecord::new(w, &self.shared.client_id, now).ok());
        r
    }

    /// Writes the session record (without waiting) if the session is durable.
    pub(super) fn persist_record(&mut self) {
        if let Some(b) = self.record_batch() {
            self.broker.durability.fire(b);
        }
    }

    /// Submits the session record; the commit resolves when it is durable.
    pub(super) fn record_commit(&self) -> Option<Commit> {
        self.record_batch().and_then(|b| self.broker.durability.submit(b))
    }

    /// The write of the session record, if the session is durable.
    fn record_batch(&self) -> Option<Batch> {
        if !self.shared.durable {
            return None;
        }
        let mut b = Batch::new();
        b.put(Cf::Sessions, keys::session(self.shared.client_id.as_str(), self.shared.id.0), self.record().encode());
        Some(b)
    }

    /// Loads the deliveries a recovered session had on disk: QoS 2 flows already released resume
    /// with PUBREL; the rest go back to the front of the queue in sequence order.
    /// Entries queued since the restart are in memory already and stored at or above the cold
    /// bound, so only those below it are loaded.
    pub(super) async fn load_cold(&mut self) {
        let Some(below) = self.cold.take().map(NonZeroU64::get) else { return };
        let d = self.broker.durability.clone();
        let (id, inc) = (self.shared.client_id.to_string(), self.shared.id.0);
        let loaded = match tokio::task::spawn_blocking(move || d.load_queue(&id, inc, below, Instant::now())).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return tracing::warn!(error = %e, "stored deliveries could not be loaded"),
            Err(e) => return tracing::warn!(error = %e, "loading stored deliveries failed"),
        };
        self.broker.durability.fire(loaded.cleanup);
        let mut queued = Vec::new();
        for (r, entry, msg) in loaded.entries {
            let d = Delivery {
                msg,
                qos: entry.qos(),
                retain: entry.retain,
                sub_ids: entry.sub_ids.clone(),
                durable: Some(r),
            };
            if entry.released {
                self.qos.restore_released(d, stored_packet_id(r.seq));
            } else {
                queued.push(d);
            }
        }
        self.shared.inbox.lock().prepend(queued);
    }
}

/// Brings stored sessions back as offline sessions (subscriptions routed, timers running). All are
/// registered before any task starts, so a will due at startup reaches every restored subscriber.
pub fn restore_sessions(broker: &Arc<Broker>, sessions: Vec<RecoveredSession>) {
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut tasks = Vec::with_capacity(sessions.len());
    for rs in sessions {
        let shared = new_shared(ClientId::new(&rs.client_id), SessionId(rs.incarnation), true, rs.next_seq);
        if !broker.sessions.replace(None, shared.clone()) {
            continue;
        }
        tasks.push(restore_one(broker, shared, rs, now, wall).0);
    }
    broker.stats.subscriptions.set(broker.router.len() as f64);
    for task in tasks {
        tokio::spawn(task.run());
    }
}

/// The task of a stored session, subscriptions routed; with what resolves once other shards
/// route each new one here.
pub(super) fn restore_one(
    broker: &Arc<Broker>,
    shared: Arc<super::SessionShared>,
    rs: RecoveredSession,
    now: Instant,
    wall: SystemTime,
) -> (SessionTask, Vec<tokio::sync::oneshot::Receiver<()>>) {
    let mut synced = Vec::new();
    let mut task = SessionTask::new(broker.clone(), shared.clone());
    let r = rs.record;
    task.owner = r.owner;
    task.expiry_secs = r.expiry_secs;
    task.cold = NonZeroU64::new(rs.next_seq).filter(|_| rs.queued > 0);
    task.qos.restore_incoming(rs.inbound);
    for s in r.subscriptions {
        let options = s.options();
        let (group, inner) = super::subscribe::split(&s.filter);
        let entry = crate::broker::SubEntry { session: shared.clone(), options, sub_id: s.sub_id };
        // Other shards learn restored routes from the snapshot when their links come up.
        synced.extend(broker.subscribe(inner, group, entry));
        task.subscriptions.insert(s.filter, (options, s.sub_id));
    }
    // Offline since the record says, or (connected at the crash) since now: that connection died.
    let offline = r.offline_since_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)).unwrap_or(wall);
    let elapsed = wall.duration_since(offline).unwrap_or(Duration::ZERO);
    let at = |secs: u32| now + Duration::from_secs(u64::from(secs)).saturating_sub(elapsed);
    task.offline_since = wall_ms(offline);
    if let Some(w) = r.will.and_then(|w| w.will(now).ok()) {
        let delay = w.properties.will_delay_interval.unwrap_or(0).min(r.expiry_secs);
        task.will_at = Some(at(delay));
        task.will = Some(Box::new((w, task.owner.clone())));
    }
    if r.expiry_secs != u32::MAX {
        task.expire_at = Some(at(r.expiry_secs));
    }
    (task, synced)
}
