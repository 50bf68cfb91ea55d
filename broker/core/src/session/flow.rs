//! Packet flow of a session task: client packets in, deliveries out, and acknowledgements that
//! wait for storage.
//!
//! Invariants: an acknowledgement (PUBACK/PUBREC for an inbound PUBLISH, PUBCOMP after PUBREL,
//! PUBREL for a stored outbound QoS 2 delivery, SUBACK/UNSUBACK of a persistent session) is sent
//! only after the write it stands for is durable, and all of them leave in the order their packets
//! arrived (they queue behind each other in `pending`); a storage failure is never acknowledged as
//! success (5.0: reason 0x80; 3.1.1: the connection is closed instead).

use super::qos::{Inbound, PubRecOutcome, Started};
use super::task::SessionTask;
use super::{backpressure, SessionShared};
use crate::message::{Delivery, Message};
use crate::metrics::DropReason;
use crate::persist::records::QueueEntry;
use crate::persist::{keys, Commit};
use crate::store::{self, Batch, Cf};
use fleetmq_codec::{self as codec, Disconnect, Packet, PubResp, Publish, QoS, ReasonCode};
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An acknowledgement waiting for its write.
pub(super) enum Deferred {
    /// PUBACK/PUBREC of an inbound PUBLISH.
    Ack { generation: u32, qos: QoS, packet_id: u16, reason: ReasonCode },
    /// A reply computed already, sent once the write lands (PUBCOMP, PUBREL, SUBACK, UNSUBACK).
    Reply { generation: u32, packet: Box<Packet> },
    /// Retained messages for a new subscription (with their retained entries' versions), queued
    /// after its SUBACK unless the session was reset meanwhile.
    Retained { resets: u32, deliveries: Vec<(Delivery, u64)> },
}

/// A deferred acknowledgement with the write it waits for.
pub(super) type PendingAck = Pin<Box<dyn Future<Output = (Deferred, store::Result<()>)> + Send>>;

/// Deferred acknowledgements in arrival order, allocated at first use (an empty `FuturesOrdered`
/// allocates, and a session that never waits for storage never needs one).
#[derive(Default)]
pub(super) struct PendingAcks(Option<Box<FuturesOrdered<PendingAck>>>);

impl PendingAcks {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    pub fn push_back(&mut self, ack: PendingAck) {
        self.0.get_or_insert_with(Default::default).push_back(ack);
    }

    /// The next acknowledgement whose write finished (pending while there is none).
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<(Deferred, store::Result<()>)> {
        match self.0.as_mut() {
            Some(q) if !q.is_empty() => match q.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some(done)) => std::task::Poll::Ready(done),
                _ => std::task::Poll::Pending,
            },
            _ => std::task::Poll::Pending,
        }
    }
}

impl SessionTask {
    pub(super) fn handle(&mut self, p: Packet) {
        match p {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => {
                if let Some(d) = self.qos.on_puback(r.packet_id) {
                    self.release(&d);
                }
            }
            Packet::PubRec(r) => self.on_pubrec(r),
            Packet::PubRel(r) => {
                let comp = self.qos.on_pubrel(r.packet_id);
                let commit = self.shared.durable.then(|| {
                    let mut b = Batch::new();
                    b.delete(Cf::Inbound, keys::inbound(self.shared.client_id.as_str(), self.shared.id.0, r.packet_id));
                    self.broker.durability.submit(b)
                });
                self.defer(Deferred::Reply { generation: self.generation, packet: Box::new(comp) }, commit.flatten());
            }
            Packet::PubComp(r) => {
                if let Some(d) = self.qos.on_pubcomp(r.packet_id) {
                    self.release(&d);
                }
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.emit(Packet::PingResp),
            Packet::Disconnect(d) => self.on_disconnect(d),
            other => self.violation(ReasonCode::PROTOCOL_ERROR, other.name()),
        }
    }

    fn on_pubrec(&mut self, r: PubResp) {
        match self.qos.on_pubrec(r.packet_id, r.reason) {
            PubRecOutcome::Release(rel) => {
                // Once PUBREL is out the client may forget the id, so the released state must be
                // stored first: after a restart the flow resumes with PUBREL, never a new PUBLISH.
                let commit = self.qos.flight(r.packet_id).and_then(|f| {
                    let d = &f.delivery;
                    let stored = d.durable?;
                    let mut entry = QueueEntry::new(stored.msg_id, d.qos, d.retain, d.sub_ids.clone());
                    entry.released = true;
                    let mut b = Batch::new();
                    self.broker.durability.put_entry(self.shared.client_id.as_str(), stored, &entry, &mut b);
                    self.broker.durability.submit(b)
                });
                self.defer(Deferred::Reply { generation: self.generation, packet: Box::new(rel) }, commit);
            }
            PubRecOutcome::Ended(d) => self.release(&d),
            PubRecOutcome::Ignore => {}
        }
    }

    pub(super) fn on_disconnect(&mut self, d: Disconnect) {
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
        let allowed = self.broker.may_publish(self.owner.as_deref(), self.shared.client_id.as_str(), &p.topic);
        let (qos, packet_id) = (p.qos, p.packet_id);
        match self.qos.on_publish(&p) {
            Err(reason) => self.violation(reason, "receive maximum exceeded"),
            Ok(Inbound::Duplicate) => {
                let packet = Box::new(Packet::PubRec(PubResp::new(packet_id)));
                self.defer(Deferred::Reply { generation: self.generation, packet }, None);
            }
            Ok(Inbound::Deliver) => {
                self.broker.stats.message_received(qos);
                let generation = self.generation;
                if !allowed {
                    self.broker.stats.dropped(DropReason::NotAuthorized, 1);
                    let reason = if v5 { ReasonCode::NOT_AUTHORIZED } else { ReasonCode::SUCCESS };
                    return self.defer(Deferred::Ack { generation, qos, packet_id, reason }, None);
                }
                let mut batch = Batch::new();
                if qos == QoS::ExactlyOnce && self.shared.durable {
                    let key = keys::inbound(self.shared.client_id.as_str(), self.shared.id.0, packet_id);
                    batch.put(Cf::Inbound, key, bytes::Bytes::new());
                }
                let msg = Message::from_publish(p, self.shared.client_id.clone(), Instant::now());
                let published = self.broker.publish(Arc::new(msg), batch);
                if published.refused {
                    let reason = ReasonCode::QUOTA_EXCEEDED;
                    return self.defer(Deferred::Ack { generation, qos, packet_id, reason }, None);
                }
                let reason =
                    if published.queued == 0 && v5 { ReasonCode::NO_MATCHING_SUBSCRIBERS } else { ReasonCode::SUCCESS };
                let commit = published.commit;
                if !published.congested.is_empty() {
                    self.pause_for(published.congested);
                }
                self.defer(Deferred::Ack { generation, qos, packet_id, reason }, commit);
            }
        }
    }

    /// Stops reading this client's packets until the congested subscribers drained (bounded).
    fn pause_for(&mut self, mut congested: Vec<Arc<SessionShared>>) {
        let wait = self.broker.config.limits.backpressure_wait_ms;
        congested.retain(|s| !Arc::ptr_eq(s, &self.shared));
        if wait == 0 || self.pause.is_some() || congested.is_empty() {
            return;
        }
        self.broker.stats.backpressure_pause();
        self.pause = Some(backpressure::pause(congested, Duration::from_millis(wait), self.broker.inbox_limits));
    }

    /// Sends `op` once `commit` is durable and every earlier deferred acknowledgement went out.
    pub(super) fn defer(&mut self, op: Deferred, commit: Option<Commit>) {
        match commit {
            None if self.pending.is_empty() => self.complete(op, Ok(())),
            commit => self.pending.push_back(Box::pin(async move {
                let result = match commit {
                    Some(c) => c.await,
                    None => Ok(()),
                };
                (op, result)
            })),
        }
    }

    /// Sends a deferred acknowledgement whose write finished with `result`.
    pub(super) fn complete(&mut self, op: Deferred, result: store::Result<()>) {
        let failed = result.is_err();
        if failed {
            self.broker.stats.storage_refusal();
        }
        let v5 = self.link.as_ref().is_some_and(|l| l.protocol.is_v5());
        match op {
            Deferred::Ack { generation, qos, packet_id, reason } => {
                let reason = if failed { ReasonCode::UNSPECIFIED_ERROR } else { reason };
                // The flow ends here either way, so a resent DUP is a new publish, not a repeat.
                let ack = self.qos.publish_done(qos, packet_id, reason);
                if generation != self.generation {
                    return;
                }
                if !v5 && (failed || reason == ReasonCode::QUOTA_EXCEEDED) {
                    // 3.1.1 cannot say "not stored" or "refused" in an acknowledgement: close rather
                    // than ack.
                    return self.close_for(reason, false);
                }
                if let Some(ack) = ack {
                    self.emit(ack);
                }
            }
            Deferred::Reply { generation, packet } => {
                if generation != self.generation {
                    return;
                }
                if failed {
                    return self.close_for(ReasonCode::UNSPECIFIED_ERROR, false);
                }
                self.emit(*packet);
            }
            Deferred::Retained { resets, deliveries } => {
                if resets != self.resets {
                    return;
                }
                for (d, version) in deliveries {
                    // A newer retained message replaced this one meanwhile and reached the
                    // subscription live (it was subscribed first): do not deliver the older one.
                    let current = version == super::subscribe::REMOTE_RETAINED
                        || self.broker.retained.is_current(&d.msg.topic, version);
                    if current {
                        self.broker.deliver(&self.shared, d, &mut self.releases);
                    }
                }
            }
        }
    }

    /// Removes a finished (or dropped) stored delivery from disk, batched per loop iteration.
    pub(super) fn release(&mut self, d: &Delivery) {
        if let Some(r) = d.durable {
            self.broker.durability.release(self.shared.client_id.as_str(), r, &mut self.releases);
        }
    }

    /// Queues a packet for the attached connection (dropped when none is attached).
    pub(super) fn emit(&mut self, p: Packet) {
        let Some(link) = self.link.as_mut() else { return };
        if let Packet::Publish(publish) = &p {
            self.broker.stats.message_sent(publish.qos);
        }
        link.io.send(p);
    }

    /// Moves deliveries from the inbox to the connection while its write buffer and the send
    /// window allow.
    pub(super) fn pump(&mut self) {
        let now = Instant::now();
        loop {
            let Some(link) = &self.link else { return };
            if !link.io.pump_room() {
                return;
            }
            let (protocol, max_packet) = (link.protocol, link.max_packet_size);
            let too_large = |p: &Packet| max_packet.is_some_and(|max| codec::encoded_len(p, protocol) > max as usize);
            if let Some(p) = self.qos.next_resend(now) {
                match &p {
                    Packet::Publish(publish) if too_large(&p) => {
                        if let Some(d) = self.qos.abandon(publish.packet_id) {
                            self.release(&d);
                        }
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
            let publish = match self.qos.send(d, now) {
                Started::Sent(p) => p,
                Started::Expired(d) => {
                    self.release(&d);
                    self.broker.stats.dropped(DropReason::Expired, 1);
                    continue;
                }
                Started::Blocked(d) => {
                    self.shared.inbox.lock().push_front(d);
                    return;
                }
            };
            let packet = Packet::Publish(publish);
            if too_large(&packet) {
                if let Packet::Publish(p) = &packet {
                    if let Some(d) = self.qos.abandon(p.packet_id) {
                        self.release(&d);
                    }
                }
                self.broker.stats.dropped(DropReason::TooLarge, 1);
                continue;
            }
            self.emit(packet);
        }
    }
}
