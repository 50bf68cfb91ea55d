//! A session task turning into a parked record and back (the lot that holds parked records is
//! `session::park`).
//!
//! An idle connection's task costs a task cell and a reactor registration (~900 bytes on tokio)
//! on top of the session's state. A parked session keeps only what the next packet, delivery or
//! request needs: the shared record stays in the registry, the socket stays open (the kernel keeps
//! whatever arrives), and everything else is one compact [`Parked`] record.
//!
//! Invariants: only a session whose every in-flight, pending and buffered thing is settled parks
//! (nothing is queued for it, nothing is half read or unwritten, no storage acknowledgement or
//! pause is awaited, the node is not shutting down), so the record carries no work; resuming
//! rebuilds the task exactly as it was, and a connection lost on the way is handled as any lost
//! connection (will, expiry).

use super::SessionTask;
use crate::broker::Broker;
use crate::session::link::{Link, ParkedLink};
use crate::session::qos::QosState;
use crate::session::SessionShared;
use fleetmq_codec::{LastWill, SubOptions};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The subscriptions of a session, as the task holds them.
type Subscriptions = HashMap<String, (SubOptions, Option<u32>)>;

/// A parked session: what its task held that outlives an idle spell.
pub(in crate::session) struct Parked {
    pub shared: Arc<SessionShared>,
    qos: QosState,
    /// Boxed, and `None` when empty (8 bytes instead of the map's 48): most parked sessions hold
    /// a few or none.
    subscriptions: Option<Box<Subscriptions>>,
    owner: Option<Box<str>>,
    will: Option<Box<(LastWill, Option<String>)>>,
    pub link: ParkedLink,
    expiry_secs: u32,
    generation: u32,
    resets: u32,
}

impl SessionTask {
    /// How long a quiet connection waits before it parks (`None`: parking is off).
    pub(super) fn park_after(&self) -> Option<Duration> {
        let ms = self.broker.config.limits.idle_park_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Whether the session has nothing under way and can park now. Takes the "deliveries queued"
    /// permit: the inbox is looked at here.
    pub(super) fn parkable(&mut self) -> bool {
        if !self.link.as_ref().is_some_and(Link::parkable)
            || !self.pending.is_empty()
            || !self.releases.is_empty()
            || self.pause.is_some()
            || self.receiving.is_some()
            || self.cold.is_some()
            || self.ended
            || self.broker.is_shutting_down()
            || self.shared.control_pending.load(Ordering::Acquire)
        {
            return false;
        }
        let permit = self.shared.take_deliveries();
        let empty = self.shared.inbox.lock().is_empty();
        if empty && self.qos.settle() {
            return true;
        }
        if permit || !empty {
            // Not parking after all: a delivery queued meanwhile must still be pumped next turn.
            self.shared.deliveries.store(true, Ordering::Release);
        }
        false
    }

    /// Hands the session to the node's parking lot; the task then ends. Call only when
    /// [`SessionTask::parkable`]. Gives the task back if parking is off, or if the connection was
    /// lost on the way (then already detached).
    pub(super) fn park(mut self) -> Option<SessionTask> {
        let Some(lot) = Broker::parking_lot(&self.broker).cloned() else { return Some(self) };
        let Some(link) = self.link.take() else { return Some(self) };
        let link = match link.park(self.broker.started) {
            Ok(link) => link,
            Err(e) => {
                tracing::debug!(client_id = %self.shared.client_id, error = %e, "connection lost while parking");
                self.link_lost();
                return Some(self);
            }
        };
        let SessionTask {
            broker,
            shared,
            qos,
            subscriptions,
            expiry_secs,
            link: _,
            owner,
            will,
            will_at: _,
            expire_at: _,
            offline_since: _,
            pending: _,
            releases: _,
            generation,
            resets,
            cold: _,
            pause: _,
            receiving: _,
            ended: _,
            timer: _,
            timer_armed: _,
            park_at: _,
            quiet: _,
            park_now: _,
        } = self;
        let subscriptions = (!subscriptions.is_empty()).then(|| Box::new(subscriptions));
        let owner = owner.map(String::into_boxed_str);
        let parked = Parked { shared, qos, subscriptions, owner, will, link, expiry_secs, generation, resets };
        lot.park(Box::new(parked), &broker);
        None
    }
}

impl Parked {
    /// The session's task again, its connection back in the reactor (call on a runtime thread).
    /// A connection that cannot be resumed is handled as lost.
    pub fn resume(self, broker: &Arc<Broker>) -> SessionTask {
        let Parked { shared, qos, subscriptions, owner, will, link, expiry_secs, generation, resets } = self;
        let mut task = SessionTask::blank(broker.clone(), shared);
        task.qos = qos;
        task.subscriptions = subscriptions.map(|s| *s).unwrap_or_default();
        task.owner = owner.map(String::from);
        task.will = will;
        task.expiry_secs = expiry_secs;
        task.generation = generation;
        task.resets = resets;
        match link.resume(broker.started) {
            Ok(link) => {
                task.link = Some(link);
                task.park_at = task.park_after().map(|d| Instant::now() + d);
                task.quiet = true;
            }
            Err(e) => {
                tracing::debug!(client_id = %task.shared.client_id, error = %e, "connection lost while resuming");
                task.link_lost();
            }
        }
        task
    }
}
