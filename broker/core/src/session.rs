//! The session layer: sessions are values owned by their own task, separate from the network
//! connection that currently carries them.
//!
//! A connection reaches its session through [`attach`]; from then on the session task owns it
//! (one task per connection and session, no channel between reading, the session and writing).
//! Everything the task does with the connection goes through its `Link`, the one place a
//! connection carried by another node would plug in.
//!
//! Invariants:
//! - The registry maps a client id to at most one live session; replacing an entry is a
//!   compare-and-swap on the [`SessionId`], so two simultaneous CONNECTs with the same client id
//!   cannot both win.
//! - A session task has at most one attached connection; attaching a new one first closes the old
//!   one (5.0: DISCONNECT 0x8E), so there are never two live owners.

use crate::connection::ClientIo;
use crate::ids::{ClientId, SessionId};
use crate::message::Delivery;
use fleetmq_codec::{ConnAck, Connect, Protocol};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

mod backpressure;
mod durable;
mod flow;
pub mod handover;
pub mod inbox;
mod link;
pub(crate) mod park;
pub mod qos;
mod subscribe;
mod task;

pub use durable::restore_sessions;

use inbox::{Enqueued, Inbox, InboxLimits};
use task::spawn_session;

/// A connection asking to be attached to the session of `connect.client_id`. Once attached, the
/// session task serves the connection itself: reads, writes and keep-alive.
pub struct AttachRequest {
    /// Validated CONNECT; `client_id` is non-empty (assigned by the connection layer if needed).
    pub connect: Box<Connect>,
    pub username: Option<String>,
    pub peer: SocketAddr,
    /// The client connection, CONNECT consumed, outbound options set.
    pub io: ClientIo,
    /// The CONNACK to send, properties filled; the session sets `session_present` and expiry.
    pub connack: ConnAck,
    /// Keep-alive enforced, in seconds (0: none).
    pub keepalive: u16,
}

/// Messages to a session task from outside its connection.
pub(crate) enum Control {
    Attach(Box<AttachRequest>),
    /// End the session now: a clean-start CONNECT with the same client id took over.
    Discard,
    /// Hand the (offline, stored) session over to shard `peer` (cluster membership changed).
    HandOut {
        peer: usize,
        link: Arc<dyn handover::HandoverLink>,
        done: tokio::sync::oneshot::Sender<bool>,
    },
    /// Take in the deliveries the session's previous owner handed over.
    Merge {
        entries: Vec<handover::HandedEntry>,
        inbound: Vec<u16>,
        done: Option<tokio::sync::oneshot::Sender<bool>>,
    },
}

/// The part of a session that publishers and the registry share with its task.
pub struct SessionShared {
    /// The incarnation; also part of the session's storage keys.
    pub id: SessionId,
    pub client_id: ClientId,
    /// Whether QoS 1/2 deliveries to this session are stored (a persistent session on a durable
    /// engine). Decided when the session is created and fixed for its life.
    pub durable: bool,
    next_seq: AtomicU64,
    pub(crate) inbox: Mutex<Inbox>,
    /// Set when a delivery was queued since the task last looked (a permit, like `Notify`'s).
    deliveries: AtomicBool,
    online: AtomicBool,
    /// Attach and discard requests for the task: rare, so a locked list and the task's waker
    /// rather than a channel (which allocates a block of slots per session up front). `None`: the
    /// task ended and takes no more.
    control: Mutex<Option<Vec<Control>>>,
    /// Set while `control` holds requests: the task checks it without locking.
    control_pending: AtomicBool,
    /// The task's waker, for requests, deliveries and node shutdown: registered on every poll of
    /// the task, so waking needs no future stored in it.
    waker: AtomicWaker,
    /// Paused publishers wait here for the inbox to drain (see [`backpressure`]); made by the
    /// first one (every idle connection holds this record).
    room: OnceLock<Box<Notify>>,
    /// A publisher is waiting on `room`.
    room_wanted: AtomicBool,
    /// Until when (ms since the Unix epoch; 0: not) publishers do not wait for this session: it
    /// hardly drained during a whole pause.
    slow_until_ms: AtomicU64,
}

impl SessionShared {
    /// Queues a delivery and wakes the session task.
    pub fn enqueue(&self, d: Delivery, limits: &InboxLimits) -> Enqueued {
        let online = self.is_online();
        let result = {
            let mut inbox = self.inbox.lock();
            let mut r = inbox.push(d, online, limits);
            r.congested = online && inbox.above_high_water(limits) && !self.is_slow();
            r
        };
        if result.accepted {
            self.deliveries.store(true, Ordering::Release);
            self.waker.wake();
        }
        result
    }

    /// The next delivery sequence number (storage key order, and the packet id of a stored delivery).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a connection is attached.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Hands a request to the session task; gives it back if the task has ended.
    fn send_control(&self, c: Control) -> Result<(), Control> {
        let mut control = self.control.lock();
        let Some(queue) = control.as_mut() else { return Err(c) };
        queue.push(c);
        self.control_pending.store(true, Ordering::Release);
        drop(control);
        self.waker.wake();
        Ok(())
    }

    /// Registers the task's waker; the task polls this first on every turn.
    fn register(&self, cx: &std::task::Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// The next request for the session task, if any (no lock while there is none: this is
    /// checked on every turn of the task's loop). Call [`SessionShared::register`] first.
    fn take_control(&self) -> Option<Control> {
        if !self.control_pending.load(Ordering::Acquire) {
            return None;
        }
        let mut control = self.control.lock();
        let queue = control.as_mut()?;
        let c = (!queue.is_empty()).then(|| queue.remove(0));
        if queue.is_empty() {
            // Requests are rare (a reconnect, a takeover): an idle session keeps no list.
            *queue = Vec::new();
        }
        self.control_pending.store(!queue.is_empty(), Ordering::Release);
        c
    }

    /// Takes the "deliveries queued" permit. Call [`SessionShared::register`] first.
    fn take_deliveries(&self) -> bool {
        self.deliveries.swap(false, Ordering::AcqRel)
    }

    /// Refuses further requests and returns those not taken yet (the task is ending).
    fn close_control(&self) -> Vec<Control> {
        let taken = self.control.lock().take().unwrap_or_default();
        self.control_pending.store(false, Ordering::Release);
        taken
    }

    /// Whether the inbox can take a delivery without dropping (used for shared-subscription fall-over).
    pub fn has_room(&self, limits: &InboxLimits) -> bool {
        self.inbox.lock().has_room(limits)
    }
}

/// The registry of live sessions by client id. Only CONNECT and session end touch its lock; the
/// publish path never does.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<ClientId, Arc<SessionShared>>>,
}

impl Sessions {
    /// Wakes every session task (the node is shutting down: online ones close their connection).
    pub fn wake_all(&self) {
        for s in self.map.lock().values() {
            s.waker.wake();
        }
    }

    pub(crate) fn get(&self, id: &ClientId) -> Option<Arc<SessionShared>> {
        self.map.lock().get(id).cloned()
    }

    /// Installs `new` if the entry for its client id is still `expected` (compare-and-swap).
    pub(crate) fn replace(&self, expected: Option<SessionId>, new: Arc<SessionShared>) -> bool {
        let mut map = self.map.lock();
        let current = map.get(&new.client_id).map(|s| s.id);
        if current != expected {
            return false;
        }
        map.insert(new.client_id.clone(), new);
        true
    }

    /// Removes the entry only if it still belongs to session `id`.
    pub(crate) fn remove(&self, client_id: &ClientId, id: SessionId) -> bool {
        let mut map = self.map.lock();
        if map.get(client_id).is_some_and(|s| s.id == id) {
            map.remove(client_id);
            true
        } else {
            false
        }
    }

    /// Every session (online and offline); a copy, so the registry stays unlocked meanwhile.
    pub fn all(&self) -> Vec<Arc<SessionShared>> {
        self.map.lock().values().cloned().collect()
    }

    /// Number of sessions (online and offline).
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attaches a connection to its session, creating, resuming or replacing it as the CONNECT asks;
/// the session answers the CONNACK. A session that ends with the request still queued passes it
/// on to a fresh session, so the request is never lost while the node runs.
pub fn attach(broker: &Arc<crate::broker::Broker>, mut req: AttachRequest) {
    let client_id = ClientId::new(&req.connect.client_id);
    loop {
        let existing = broker.sessions.get(&client_id);
        let durable = broker.durability.enabled() && requests_persistence(&req.connect);
        if let Some(old) = &existing {
            // A session that was not persistent ends with its connection, so a persistent takeover
            // starts a new (stored) session either way; doing it here makes that one durable.
            let upgrade = durable && !old.durable;
            if !req.connect.clean_start && !upgrade {
                // Refused only by a session that ended meanwhile: forget it and go again.
                let Err(Control::Attach(back)) = old.send_control(Control::Attach(Box::new(req))) else { return };
                req = *back;
                broker.sessions.remove(&client_id, old.id);
                continue;
            }
        }
        let shared = new_shared(client_id.clone(), SessionId::next(), durable, 0);
        if !broker.sessions.replace(existing.as_ref().map(|s| s.id), shared.clone()) {
            continue;
        }
        if let Some(old) = existing {
            let _ = old.send_control(Control::Discard);
        }
        spawn_session(broker.clone(), shared, req);
        return;
    }
}

/// Whether a CONNECT asks for a session that outlives its connection.
fn requests_persistence(c: &Connect) -> bool {
    match c.protocol {
        Protocol::V5 => c.properties.session_expiry_interval.unwrap_or(0) > 0,
        _ => !c.clean_start,
    }
}

pub(crate) fn new_shared(client_id: ClientId, id: SessionId, durable: bool, next_seq: u64) -> Arc<SessionShared> {
    Arc::new(SessionShared {
        id,
        durable,
        next_seq: AtomicU64::new(next_seq),
        client_id,
        inbox: Mutex::new(Inbox::default()),
        deliveries: AtomicBool::new(false),
        online: AtomicBool::new(false),
        control: Mutex::new(Some(Vec::new())),
        control_pending: AtomicBool::new(false),
        waker: AtomicWaker::new(),
        room: OnceLock::new(),
        room_wanted: AtomicBool::new(false),
        slow_until_ms: AtomicU64::new(0),
    })
}
