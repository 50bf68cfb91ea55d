//! The task that owns one session: it applies client packets to the session's state, pulls
//! deliveries from the session's inbox into the connection as the send window allows, and runs the
//! will-delay and session-expiry timers while the client is away.
//!
//! Invariants: the task never awaits a full connection channel (packets it cannot hand over wait in
//! `out`, and while `out` is non-empty it neither pulls deliveries nor reads more client packets), so
//! a stalled client only fills its own bounded inbox; while `pause` is set (a subscriber this client
//! published to is congested) it reads no client packets either; when the session ends, its
//! subscriptions and registry entry are removed before the task exits.

use super::backpressure::{self, Outcome, Pause};
use super::flow::PendingAck;
use super::qos::QosState;
use super::{AttachRequest, Attached, CloseCause, ConnHandle, Control, FromClient, SessionShared, ToClient};
use crate::broker::Broker;
use crate::codec::{Disconnect, LastWill, Packet, Protocol, ReasonCode, SubOptions};
use crate::message::Message;
use crate::metrics::DropReason;
use crate::store::Batch;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::future::pending;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

/// Packets waiting for channel space beyond which the task stops reading from the client.
const OUT_HIGH_WATER: usize = 256;

/// The attached connection.
pub(super) struct Link {
    pub protocol: Protocol,
    pub conn: ConnHandle,
    pub username: Option<String>,
    pub max_packet_size: Option<u32>,
    /// Session expiry of the CONNECT was 0 (then DISCONNECT may not raise it).
    pub connect_expiry_zero: bool,
}

pub(super) struct SessionTask {
    pub broker: Arc<Broker>,
    pub shared: Arc<SessionShared>,
    control: mpsc::UnboundedReceiver<Control>,
    pub qos: QosState,
    /// Full filters (with any `$share/group/` prefix) this session subscribed to, with options.
    pub subscriptions: HashMap<String, (SubOptions, Option<u32>)>,
    pub expiry_secs: u32,
    pub link: Option<Link>,
    pub rx: Option<mpsc::Receiver<FromClient>>,
    /// Username of the connection that owns the session (resuming under another one starts fresh).
    pub owner: Option<String>,
    pub will: Option<(LastWill, Option<String>)>,
    pub will_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    /// When the client went offline (wall clock, for the stored record).
    pub offline_since: Option<SystemTime>,
    pub out: VecDeque<Box<Packet>>,
    /// Acknowledgements waiting for their writes, in arrival order.
    pub pending: FuturesOrdered<PendingAck>,
    /// Releases of finished stored deliveries, written once per loop iteration.
    pub releases: Batch,
    /// Counts attachments, so a late acknowledgement never reaches a newer connection.
    pub generation: u64,
    /// Counts resets of the session state (a takeover that does not resume it), so retained
    /// messages of a subscription made before are not queued after.
    pub resets: u64,
    /// Recovered after a restart with deliveries still on disk, loaded at the first attach.
    pub cold: bool,
    /// While set, a subscriber this client published to is congested (publisher back-pressure):
    /// acknowledgements of our deliveries are still read, anything else is held in `held` and
    /// reading stops until the pause ends.
    pub pause: Option<Pause>,
    pub held: Option<Packet>,
    pub ended: bool,
}

/// Creates a new session for `req`, attaches the connection and starts the session task.
pub(crate) fn spawn_session(
    broker: Arc<Broker>,
    shared: Arc<SessionShared>,
    control: mpsc::UnboundedReceiver<Control>,
    req: AttachRequest,
) -> Attached {
    let mut task = SessionTask::new(broker, shared, control);
    let attached = task.attach(req, false);
    tokio::spawn(task.run());
    attached
}

impl SessionTask {
    /// A session with no state yet.
    pub(super) fn new(
        broker: Arc<Broker>,
        shared: Arc<SessionShared>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        broker.stats.sessions.increment(1.0);
        let mqtt = &broker.config.mqtt;
        SessionTask {
            qos: QosState::new(mqtt.receive_maximum, broker.config.limits.max_inflight),
            broker: broker.clone(),
            shared,
            control,
            subscriptions: HashMap::new(),
            expiry_secs: 0,
            link: None,
            rx: None,
            owner: None,
            will: None,
            will_at: None,
            expire_at: None,
            offline_since: None,
            out: VecDeque::new(),
            pending: FuturesOrdered::new(),
            releases: Batch::new(),
            generation: 0,
            resets: 0,
            cold: false,
            pause: None,
            held: None,
            ended: false,
        }
    }

    pub(super) async fn run(mut self) {
        while !self.ended {
            let deadline = match (self.will_at, self.expire_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let out_pending = !self.out.is_empty();
            let online = self.link.is_some();
            let tx = self.link.as_ref().map(|l| l.conn.to_client.clone());
            tokio::select! {
                c = self.control.recv() => match c {
                    Some(Control::Attach(req, reply)) => {
                        if self.cold {
                            self.load_cold().await;
                        }
                        let attached = self.attach(*req, true);
                        let _ = reply.send(attached);
                    }
                    Some(Control::Discard) => {
                        // A DISCONNECT the old connection sent first still decides its will.
                        self.drain_link();
                        self.kick(ReasonCode::SESSION_TAKEN_OVER);
                        self.end();
                    }
                    None => self.end(),
                },
                outcome = backpressure::wait(&mut self.pause) => {
                    self.pause = None;
                    if outcome == Outcome::MarkedSlow {
                        self.broker.stats.backpressure_slow_mark();
                    }
                    if let Some(p) = self.held.take() {
                        self.handle(p);
                    }
                },
                m = recv(&mut self.rx), if self.out.len() < OUT_HIGH_WATER && self.held.is_none() => match m {
                    Some(FromClient::Packet(p)) => match *p {
                        p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)) => self.handle(p),
                        p if self.pause.is_some() => self.held = Some(p),
                        p => self.handle(p),
                    },
                    Some(FromClient::Closed(cause)) => self.detach(cause == CloseCause::Abnormal),
                    None => self.detach(true),
                },
                permit = reserve(tx), if out_pending => {
                    match (permit, self.out.pop_front()) {
                        (Some(permit), Some(p)) => {
                            permit.send(ToClient::Packet(p));
                            self.flush_out();
                        }
                        // The writer is gone: nothing parked can be delivered on this connection.
                        (None, _) => self.out.clear(),
                        (Some(_), None) => {}
                    }
                },
                _ = self.shared.notify.notified(), if online && !out_pending => {}
                _ = sleep_until(deadline.unwrap_or_else(far_future).into()), if deadline.is_some() => self.on_timer(),
                Some((op, result)) = self.pending.next(), if !self.pending.is_empty() => self.complete(op, result),
            }
            self.pump();
            self.shared.after_pump(&self.broker.inbox_limits);
            if !self.releases.is_empty() {
                self.broker.durability.fire(std::mem::take(&mut self.releases));
            }
        }
        self.finish();
    }

    /// Attaches a connection; `existing` says whether this session already existed.
    fn attach(&mut self, req: AttachRequest, mut existing: bool) -> Attached {
        if self.link.is_some() && !self.take_over() {
            existing = false;
        }
        if existing && self.owner != req.username {
            // A session resumed under another identity would hand its subscriptions (authorized for
            // the previous user) to the new one: treat it as a clean start instead.
            self.reset();
            existing = false;
        }
        self.owner = req.username.clone();
        let c = &req.connect;
        let mqtt = &self.broker.config.mqtt;
        let requested = match c.protocol {
            Protocol::V5 => c.properties.session_expiry_interval.unwrap_or(0),
            _ if c.clean_start => 0,
            _ => u32::MAX,
        };
        self.expiry_secs = requested.min(mqtt.max_session_expiry_secs);
        let send_window = c.properties.receive_maximum.unwrap_or(u16::MAX).min(self.broker.config.limits.max_inflight);
        // 3.1.1 clients were never told our Receive Maximum, so it is not enforced on them.
        let receive_maximum = if c.protocol.is_v5() { mqtt.receive_maximum } else { u16::MAX };
        self.qos.set_limits(receive_maximum, send_window);
        self.will = c.will.clone().map(|w| (w, req.username.clone()));
        self.will_at = None;
        self.expire_at = None;
        self.out.clear();
        self.link = Some(Link {
            protocol: c.protocol,
            conn: req.conn,
            username: req.username,
            max_packet_size: c.properties.maximum_packet_size,
            connect_expiry_zero: requested == 0,
        });
        self.rx = Some(req.from_client);
        self.shared.online.store(true, Ordering::Relaxed);
        self.offline_since = None;
        self.generation += 1;
        self.qos.resume();
        self.persist_record();
        Attached { session_present: existing, session_expiry: self.expiry_secs }
    }

    /// Ends the attached connection because a new one takes the session over. Packets the old
    /// connection already delivered (a DISCONNECT among them) are applied first, so they decide
    /// its will and expiry. Returns `false` if the session would have ended with the old connection
    /// (its state is then reset and the new connection starts fresh).
    fn take_over(&mut self) -> bool {
        self.drain_link();
        if self.link.is_some() {
            self.kick(ReasonCode::SESSION_TAKEN_OVER);
            self.close_link(true);
        }
        self.will_at = None;
        if self.expiry_secs == 0 {
            self.reset();
            return false;
        }
        true
    }

    /// Applies what the attached connection already delivered before it is replaced: a DISCONNECT
    /// (its will and expiry effects) and acknowledgements; anything else is dropped with it.
    fn drain_link(&mut self) {
        while let Some(rx) = self.rx.as_mut() {
            match rx.try_recv() {
                Ok(FromClient::Packet(p)) => match *p {
                    Packet::Disconnect(d) => self.on_disconnect_keep(d),
                    // Acknowledgements still settle in-flight messages; anything else the old
                    // connection sent is dropped with it (the client resends per its QoS).
                    p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)) => self.handle(p),
                    _ => {}
                },
                Ok(FromClient::Closed(cause)) => {
                    self.close_link(cause == CloseCause::Abnormal);
                }
                Err(_) => break,
            }
        }
    }

    /// A DISCONNECT during takeover: its will and expiry effects apply, but the session stays.
    fn on_disconnect_keep(&mut self, d: Disconnect) {
        if let Some(new) = d.properties.session_expiry_interval {
            if !self.link.as_ref().is_some_and(|l| l.connect_expiry_zero && new != 0) {
                self.expiry_secs = new.min(self.broker.config.mqtt.max_session_expiry_secs);
            }
        }
        self.close_link(d.reason != ReasonCode::NORMAL_DISCONNECTION);
    }

    /// Drops the link, publishing the will now if it has no delay (a takeover ends the old
    /// connection; a delayed will is cancelled by the new connection arriving).
    fn close_link(&mut self, publish_will: bool) {
        if !self.drop_link() {
            return;
        }
        if !publish_will {
            self.will = None;
        }
        if self.will.as_ref().is_some_and(|(w, _)| w.properties.will_delay_interval.unwrap_or(0) == 0) {
            self.publish_will();
        }
    }

    /// Forgets all session state (subscriptions, queue, in-flight): the session starts over.
    fn reset(&mut self) {
        self.resets += 1;
        self.unsubscribe_all();
        self.release_all();
        let mqtt = &self.broker.config.mqtt;
        self.qos = QosState::new(mqtt.receive_maximum, self.broker.config.limits.max_inflight);
        self.will = None;
        self.will_at = None;
        self.expire_at = None;
    }

    fn unsubscribe_all(&mut self) {
        for (filter, _) in self.subscriptions.drain() {
            let (group, inner) = super::subscribe::split(&filter);
            self.broker.router.unsubscribe(inner, group, &self.shared.id);
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
    }

    /// Drops every queued and in-flight delivery, releasing the stored ones.
    fn release_all(&mut self) {
        let queued = self.shared.inbox.lock().take_all();
        for d in queued.iter().chain(self.qos.take_all().iter()) {
            self.release(d);
        }
    }

    /// Closes the attached connection from the server side.
    pub(super) fn kick(&mut self, reason: ReasonCode) {
        if let Some(link) = &self.link {
            link.conn.closer.close_with(reason);
        }
    }

    /// The connection is gone: start will-delay and expiry timers, or end the session.
    pub(super) fn detach(&mut self, publish_will: bool) {
        if !self.drop_link() {
            return;
        }
        let now = Instant::now();
        if !publish_will {
            self.will = None;
        }
        if let Some((will, _)) = &self.will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(self.expiry_secs);
            if delay == 0 {
                self.publish_will();
            } else {
                self.will_at = Some(now + Duration::from_secs(u64::from(delay)));
            }
        }
        self.offline_since = Some(SystemTime::now());
        match self.expiry_secs {
            0 => self.end(),
            u32::MAX => self.persist_record(),
            secs => {
                self.expire_at = Some(now + Duration::from_secs(u64::from(secs)));
                self.persist_record();
            }
        }
    }

    /// Forgets the attached connection; `false` if there was none.
    fn drop_link(&mut self) -> bool {
        if self.link.take().is_none() {
            return false;
        }
        self.rx = None;
        self.out.clear();
        self.pause = None;
        self.held = None;
        self.shared.online.store(false, Ordering::Relaxed);
        self.shared.wake_publishers(false);
        self.qos.detach();
        true
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.will_at.is_some_and(|t| t <= now) {
            self.will_at = None;
            self.publish_will();
        }
        if self.expire_at.is_some_and(|t| t <= now) {
            self.end();
        }
    }

    fn publish_will(&mut self) {
        let Some((will, username)) = self.will.take() else { return };
        if !self.broker.may_publish(username.as_deref(), self.shared.client_id.as_str(), &will.topic) {
            self.broker.stats.dropped(DropReason::NotAuthorized, 1);
            return;
        }
        let msg = Message::from_will(&will, self.shared.client_id.clone(), Instant::now());
        let _ = self.broker.publish(Arc::new(msg), Batch::new());
    }

    /// Ends the session: the pending will goes out now, subscriptions and registry entry go away.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.detach(true);
        self.publish_will();
        self.unsubscribe_all();
        self.broker.sessions.remove(&self.shared.client_id, self.shared.id);
        if self.shared.durable {
            // Everything stored for this incarnation goes, including what was never loaded.
            self.shared.inbox.lock().take_all();
            self.qos.take_all();
            self.broker.durability.purge(self.shared.client_id.to_string(), self.shared.id.0);
        } else {
            self.release_all();
        }
        self.broker.stats.sessions.decrement(1.0);
    }

    /// After the session ended: hand any attach that raced with the end to a fresh session.
    fn finish(mut self) {
        self.control.close();
        while let Ok(c) = self.control.try_recv() {
            if let Control::Attach(req, reply) = c {
                let broker = self.broker.clone();
                tokio::spawn(async move {
                    if let Ok(attached) = super::attach(&broker, *req).await {
                        let _ = reply.send(attached);
                    }
                });
            }
        }
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<FromClient>>) -> Option<FromClient> {
    match rx {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}

async fn reserve(tx: Option<mpsc::Sender<ToClient>>) -> Option<mpsc::OwnedPermit<ToClient>> {
    match tx {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
