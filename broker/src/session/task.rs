//! The task that owns one session: it applies client packets to the session's state, pulls
//! deliveries from the session's inbox into the connection as the send window allows, and runs the
//! will-delay and session-expiry timers while the client is away.
//!
//! Invariants: the task never awaits a full connection channel (packets it cannot hand over wait in
//! `out`, and while `out` is non-empty it neither pulls deliveries nor reads more client packets), so
//! a stalled client only fills its own bounded inbox; when the session ends, its subscriptions and
//! registry entry are removed before the task exits.

use super::qos::{Inbound, QosState};
use super::{AttachRequest, Attached, CloseCause, ConnHandle, Control, FromClient, SessionShared, ToClient};
use crate::broker::Broker;
use crate::codec::{self, Disconnect, LastWill, Packet, Protocol, PubResp, Publish, QoS, ReasonCode};
use crate::message::Message;
use crate::metrics::DropReason;
use std::collections::{HashSet, VecDeque};
use std::future::pending;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
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
    /// Full filters (with any `$share/group/` prefix) this session subscribed to; the router holds
    /// their options.
    pub subscriptions: HashSet<String>,
    expiry_secs: u32,
    pub link: Option<Link>,
    rx: Option<mpsc::Receiver<FromClient>>,
    /// Username of the connection that owns the session (resuming under another one starts fresh).
    owner: Option<String>,
    will: Option<(LastWill, Option<String>)>,
    will_at: Option<Instant>,
    expire_at: Option<Instant>,
    out: VecDeque<Packet>,
    ended: bool,
}

/// Creates a new session for `req`, attaches the connection and starts the session task.
pub(crate) fn spawn_session(
    broker: Arc<Broker>,
    shared: Arc<SessionShared>,
    control: mpsc::UnboundedReceiver<Control>,
    req: AttachRequest,
) -> Attached {
    broker.stats.sessions.increment(1.0);
    let mqtt = &broker.config.mqtt;
    let mut task = SessionTask {
        qos: QosState::new(mqtt.receive_maximum, broker.config.limits.max_inflight),
        broker: broker.clone(),
        shared,
        control,
        subscriptions: HashSet::new(),
        expiry_secs: 0,
        link: None,
        rx: None,
        owner: None,
        will: None,
        will_at: None,
        expire_at: None,
        out: VecDeque::new(),
        ended: false,
    };
    let attached = task.attach(req, false);
    tokio::spawn(task.run());
    attached
}

impl SessionTask {
    async fn run(mut self) {
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
                        let attached = self.attach(*req, true);
                        let _ = reply.send(attached);
                    }
                    Some(Control::Discard) => {
                        self.kick(ReasonCode::SESSION_TAKEN_OVER);
                        self.end();
                    }
                    None => self.end(),
                },
                m = recv(&mut self.rx), if self.out.len() < OUT_HIGH_WATER => match m {
                    Some(FromClient::Packet(p)) => self.handle(p),
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
            }
            self.pump();
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
        self.qos.resume();
        Attached { session_present: existing, session_expiry: self.expiry_secs }
    }

    /// Ends the attached connection because a new one takes the session over. Packets the old
    /// connection already delivered (a DISCONNECT among them) are applied first, so they decide
    /// its will and expiry. Returns `false` if the session would have ended with the old connection
    /// (its state is then reset and the new connection starts fresh).
    fn take_over(&mut self) -> bool {
        while let Some(rx) = self.rx.as_mut() {
            match rx.try_recv() {
                Ok(FromClient::Packet(Packet::Disconnect(d))) => {
                    self.on_disconnect_keep(d);
                }
                // Acknowledgements still settle in-flight messages; anything else the old
                // connection sent is dropped with it (the client resends per its QoS).
                Ok(FromClient::Packet(p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)))) => {
                    self.handle(p)
                }
                Ok(FromClient::Packet(_)) => {}
                Ok(FromClient::Closed(cause)) => {
                    self.close_link(cause == CloseCause::Abnormal);
                }
                Err(_) => break,
            }
        }
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
        for filter in self.subscriptions.drain() {
            let (group, inner) = super::subscribe::split(&filter);
            self.broker.router.unsubscribe(inner, group, &self.shared.id);
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
        self.shared.inbox.lock().clear();
        let mqtt = &self.broker.config.mqtt;
        self.qos = QosState::new(mqtt.receive_maximum, self.broker.config.limits.max_inflight);
        self.will = None;
        self.will_at = None;
        self.expire_at = None;
    }

    /// Closes the attached connection from the server side.
    pub(super) fn kick(&mut self, reason: ReasonCode) {
        if let Some(link) = &self.link {
            link.conn.closer.close_with(reason);
        }
    }

    /// The connection is gone: start will-delay and expiry timers, or end the session.
    fn detach(&mut self, publish_will: bool) {
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
        match self.expiry_secs {
            0 => self.end(),
            u32::MAX => {}
            secs => self.expire_at = Some(now + Duration::from_secs(u64::from(secs))),
        }
    }

    /// Forgets the attached connection; `false` if there was none.
    fn drop_link(&mut self) -> bool {
        if self.link.take().is_none() {
            return false;
        }
        self.rx = None;
        self.out.clear();
        self.shared.online.store(false, Ordering::Relaxed);
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
        self.broker.publish(Arc::new(msg));
    }

    /// Ends the session: the pending will goes out now, subscriptions and registry entry go away.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.detach(true);
        self.publish_will();
        for filter in self.subscriptions.drain() {
            let (group, inner) = super::subscribe::split(&filter);
            self.broker.router.unsubscribe(inner, group, &self.shared.id);
        }
        self.broker.stats.subscriptions.set(self.broker.router.len() as f64);
        self.broker.sessions.remove(&self.shared.client_id, self.shared.id);
        self.shared.inbox.lock().clear();
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

    fn handle(&mut self, p: Packet) {
        match p {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => {
                self.qos.on_puback(r.packet_id);
            }
            Packet::PubRec(r) => {
                if let Some(rel) = self.qos.on_pubrec(r.packet_id, r.reason) {
                    self.emit(rel);
                }
            }
            Packet::PubRel(r) => {
                let comp = self.qos.on_pubrel(r.packet_id);
                self.emit(comp);
            }
            Packet::PubComp(r) => {
                self.qos.on_pubcomp(r.packet_id);
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.emit(Packet::PingResp),
            Packet::Disconnect(d) => self.on_disconnect(d),
            other => self.violation(ReasonCode::PROTOCOL_ERROR, other.name()),
        }
    }

    fn on_disconnect(&mut self, d: Disconnect) {
        if let (Some(link), Some(new)) = (&self.link, d.properties.session_expiry_interval) {
            if link.connect_expiry_zero && new != 0 {
                return self.violation(ReasonCode::PROTOCOL_ERROR, "session expiry raised at DISCONNECT");
            }
            self.expiry_secs = new.min(self.broker.config.mqtt.max_session_expiry_secs);
        }
        // Only reason 0x00 discards the will (MQTT-3.14.4-3); 0x04 and every error reason keep it.
        self.detach(d.reason != ReasonCode::NORMAL_DISCONNECTION);
    }

    /// A protocol violation detected by the session: count it and close the connection.
    /// Packets the client sent after the violating one are dropped unprocessed, and the close counts
    /// as abnormal, so the will is published.
    pub(super) fn violation(&mut self, reason: ReasonCode, what: &'static str) {
        tracing::debug!(client_id = %self.shared.client_id, ?reason, what, "closing connection: protocol violation");
        self.broker.stats.malformed(what);
        self.kick(reason);
        self.detach(true);
    }

    fn on_publish(&mut self, p: Publish) {
        let Some(link) = &self.link else { return };
        let v5 = link.protocol.is_v5();
        let mqtt = &self.broker.config.mqtt;
        if (p.qos as u8) > mqtt.max_qos {
            return self.violation(ReasonCode::QOS_NOT_SUPPORTED, "qos not supported");
        }
        if p.retain && !mqtt.retain_available {
            return self.violation(ReasonCode::RETAIN_NOT_SUPPORTED, "retain not supported");
        }
        let allowed = self.broker.may_publish(link.username.as_deref(), self.shared.client_id.as_str(), &p.topic);
        let (qos, packet_id) = (p.qos, p.packet_id);
        match self.qos.on_publish(&p) {
            Err(reason) => self.violation(reason, "receive maximum exceeded"),
            Ok(Inbound::Duplicate) => self.emit(Packet::PubRec(PubResp::new(packet_id))),
            Ok(Inbound::Deliver) => {
                self.broker.stats.message_received(qos);
                let reason = if !allowed {
                    self.broker.stats.dropped(DropReason::NotAuthorized, 1);
                    if v5 {
                        ReasonCode::NOT_AUTHORIZED
                    } else {
                        ReasonCode::SUCCESS
                    }
                } else {
                    let msg = Message::from_publish(p, self.shared.client_id.clone(), Instant::now());
                    let queued = self.broker.publish(Arc::new(msg));
                    if queued == 0 && v5 {
                        ReasonCode::NO_MATCHING_SUBSCRIBERS
                    } else {
                        ReasonCode::SUCCESS
                    }
                };
                if let Some(ack) = self.qos.publish_done(qos, packet_id, reason) {
                    self.emit(ack);
                }
            }
        }
    }

    /// Hands a packet to the connection, or parks it in `out` when the channel is full.
    pub(super) fn emit(&mut self, p: Packet) {
        let Some(link) = &self.link else { return };
        if let Packet::Publish(publish) = &p {
            self.broker.stats.message_sent(publish.qos);
        }
        if !self.out.is_empty() {
            self.out.push_back(p);
            return;
        }
        match link.conn.to_client.try_send(ToClient::Packet(p)) {
            Ok(()) => {}
            Err(TrySendError::Full(ToClient::Packet(p))) => self.out.push_back(p),
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn flush_out(&mut self) {
        let Some(link) = &self.link else { return };
        while let Some(p) = self.out.pop_front() {
            match link.conn.to_client.try_send(ToClient::Packet(p)) {
                Ok(()) => {}
                Err(TrySendError::Full(ToClient::Packet(p))) => {
                    self.out.push_front(p);
                    return;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Moves deliveries from the inbox to the connection while the channel and window allow.
    pub(super) fn pump(&mut self) {
        let now = Instant::now();
        while self.out.is_empty() {
            let Some(link) = &self.link else { return };
            let (protocol, max_packet) = (link.protocol, link.max_packet_size);
            let too_large = |p: &Packet| max_packet.is_some_and(|max| codec::encoded_len(p, protocol) > max as usize);
            if let Some(p) = self.qos.next_resend(now) {
                match &p {
                    Packet::Publish(publish) if too_large(&p) => {
                        self.qos.abandon(publish.packet_id);
                        self.broker.stats.dropped(DropReason::TooLarge, 1);
                    }
                    _ => self.emit(p),
                }
                continue;
            }
            let next = {
                let mut inbox = self.shared.inbox.lock();
                match inbox.front_qos() {
                    None => None,
                    Some(q) if q != QoS::AtMostOnce && !self.qos.window_open() => None,
                    Some(_) => inbox.pop(),
                }
            };
            let Some(d) = next else { return };
            let Some(publish) = self.qos.send(d, now) else {
                self.broker.stats.dropped(DropReason::Expired, 1);
                continue;
            };
            let packet = Packet::Publish(publish);
            if too_large(&packet) {
                if let Packet::Publish(p) = &packet {
                    self.qos.abandon(p.packet_id);
                }
                self.broker.stats.dropped(DropReason::TooLarge, 1);
                continue;
            }
            self.emit(packet);
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
