//! The per-session QoS 1/2 state machine, in both directions. It does no I/O: every method takes a
//! packet or a delivery and returns the packets to send, like rumqttc's `MqttState`.
//!
//! Invariants:
//! - outbound: at most `send_window` QoS 1/2 deliveries are in flight; each has a distinct non-zero
//!   packet id that is not reused until its flow completes (PUBACK, or PUBREC then PUBCOMP, or a
//!   PUBREC with an error reason); `resume` replays them in original send order, PUBLISH with DUP=1
//!   and the same packet id, or PUBREL for those already released.
//! - inbound: a QoS 2 packet id stays in `incoming_qos2` from the PUBREC until its PUBREL, so a
//!   retransmitted PUBLISH with that id is acknowledged again but never delivered twice. The number of
//!   inbound QoS 1/2 messages not yet fully acknowledged never exceeds our Receive Maximum; the packet
//!   that would exceed it is a `RECEIVE_MAXIMUM_EXCEEDED` violation.

use crate::message::Delivery;
use fleetmq_codec::{Packet, PubResp, Publish, QoS, ReasonCode};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a packet id with one multiplication (Fibonacci hashing spreads the 16 bits over the
/// whole word, as the table needs): the maps below are keyed only by packet ids the session
/// handed out or the client sent within Receive Maximum, so SipHash's flooding resistance buys
/// nothing and costs a measurable share of each acknowledgement.
#[derive(Default)]
struct PacketIdHasher(u64);

impl Hasher for PacketIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u16, V, BuildHasherDefault<PacketIdHasher>>;
type IdSet = HashSet<u16, BuildHasherDefault<PacketIdHasher>>;
use std::time::Instant;

/// What a PUBREC leads to.
#[derive(Debug, PartialEq)]
pub enum PubRecOutcome {
    /// Send this PUBREL (after storing the released state for a stored delivery).
    Release(Packet),
    /// The flow ended with an error reason; the delivery is complete.
    Ended(Delivery),
    /// Nothing to do (PUBREC for a QoS 1 id).
    Ignore,
}

/// Where an outbound QoS 1/2 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// One outbound delivery in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct OutFlight {
    pub seq: u64,
    pub packet_id: u16,
    pub delivery: Delivery,
    pub phase: Phase,
}

/// Outcome of starting an outbound delivery.
#[derive(Debug)]
pub enum Started {
    Sent(Publish),
    /// The message expired before onward delivery started; it is dropped.
    Expired(Delivery),
    /// A stored delivery's packet id (derived from its sequence) is still in flight: retry later.
    Blocked(Delivery),
}

/// The packet id of a stored delivery: a pure function of its sequence, so it survives restarts
/// without an extra write before sending.
pub fn stored_packet_id(seq: u64) -> u16 {
    (seq % 65_535) as u16 + 1
}

/// What to do with an inbound PUBLISH that passed the QoS checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Route it, then acknowledge with [`QosState::publish_done`].
    Deliver,
    /// A retransmission of a QoS 2 message already received: answer PUBREC, do not route again.
    Duplicate,
}

/// QoS bookkeeping for one session. The flow tables live in a box allocated by the session's
/// first QoS 1/2 flow: most sessions of an idle fleet never have one, and every byte held inline
/// is held by every connection.
#[derive(Debug, Clone)]
pub struct QosState {
    next_packet_id: u16,
    send_window: u16,
    receive_maximum: u16,
    next_seq: u64,
    flows: Option<Box<Flows>>,
}

/// The packet ids and deliveries of QoS 1/2 flows under way.
#[derive(Debug, Clone, Default)]
struct Flows {
    outgoing: IdMap<OutFlight>,
    incoming_qos2: IdSet,
    pending_qos1: IdSet,
    /// In-flight packet ids still to retransmit on the current connection, in send order.
    resend: VecDeque<u16>,
}

/// What a session without a flow table reads.
static NO_FLOWS: Flows = Flows {
    outgoing: HashMap::with_hasher(BuildHasherDefault::new()),
    incoming_qos2: HashSet::with_hasher(BuildHasherDefault::new()),
    pending_qos1: HashSet::with_hasher(BuildHasherDefault::new()),
    resend: VecDeque::new(),
};

impl QosState {
    /// A fresh state; `receive_maximum` is ours (inbound), `send_window` the client's (outbound).
    pub fn new(receive_maximum: u16, send_window: u16) -> QosState {
        QosState {
            next_packet_id: 1,
            send_window: send_window.max(1),
            receive_maximum: receive_maximum.max(1),
            next_seq: 0,
            flows: None,
        }
    }

    fn flows(&self) -> &Flows {
        self.flows.as_deref().unwrap_or(&NO_FLOWS)
    }

    fn flows_mut(&mut self) -> &mut Flows {
        self.flows.get_or_insert_default()
    }

    /// Applies the limits of a newly attached connection.
    pub fn set_limits(&mut self, receive_maximum: u16, send_window: u16) {
        self.receive_maximum = receive_maximum.max(1);
        self.send_window = send_window.max(1);
    }

    /// Called when a connection goes away: inbound QoS 1 messages whose PUBACK was not sent are the
    /// client's to retransmit, so they no longer count against Receive Maximum.
    pub fn detach(&mut self) {
        if let Some(f) = self.flows.as_mut() {
            f.pending_qos1.clear();
        }
    }

    /// Checks an inbound PUBLISH (QoS 1/2 carry a non-zero packet id, guaranteed by the decoder).
    pub fn on_publish(&mut self, p: &Publish) -> Result<Inbound, ReasonCode> {
        let full = || self.inbound_in_flight() >= usize::from(self.receive_maximum);
        match p.qos {
            QoS::AtMostOnce => Ok(Inbound::Deliver),
            QoS::AtLeastOnce => {
                if !self.flows().pending_qos1.contains(&p.packet_id) && full() {
                    return Err(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                }
                self.flows_mut().pending_qos1.insert(p.packet_id);
                Ok(Inbound::Deliver)
            }
            QoS::ExactlyOnce => {
                if self.flows().incoming_qos2.contains(&p.packet_id) {
                    return Ok(Inbound::Duplicate);
                }
                if full() {
                    return Err(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                }
                self.flows_mut().incoming_qos2.insert(p.packet_id);
                Ok(Inbound::Deliver)
            }
        }
    }

    /// The acknowledgement for an inbound PUBLISH once it has been routed (and stored as durably as
    /// configured). An error `reason` ends a QoS 2 flow at PUBREC (the client sends no PUBREL).
    pub fn publish_done(&mut self, qos: QoS, packet_id: u16, reason: ReasonCode) -> Option<Packet> {
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                if let Some(f) = self.flows.as_mut() {
                    f.pending_qos1.remove(&packet_id);
                }
                Some(Packet::PubAck(PubResp::with_reason(packet_id, reason)))
            }
            QoS::ExactlyOnce => {
                if let Some(f) = self.flows.as_mut().filter(|_| reason.is_error()) {
                    f.incoming_qos2.remove(&packet_id);
                }
                Some(Packet::PubRec(PubResp::with_reason(packet_id, reason)))
            }
        }
    }

    /// PUBREL from the client: releases the packet id and answers PUBCOMP (0x92 if unknown).
    pub fn on_pubrel(&mut self, packet_id: u16) -> Packet {
        if self.flows.as_mut().is_some_and(|f| f.incoming_qos2.remove(&packet_id)) {
            Packet::PubComp(PubResp::new(packet_id))
        } else {
            Packet::PubComp(PubResp::with_reason(packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND))
        }
    }

    /// Whether another new QoS 1/2 delivery may be sent now (retransmissions go first).
    pub fn window_open(&self) -> bool {
        let f = self.flows();
        f.resend.is_empty() && f.outgoing.len() < usize::from(self.send_window)
    }

    /// Whether no QoS 1/2 flow is under way in either direction; then frees the flow tables (a
    /// session about to park keeps no empty tables).
    pub fn settle(&mut self) -> bool {
        let f = self.flows();
        let idle =
            f.outgoing.is_empty() && f.incoming_qos2.is_empty() && f.pending_qos1.is_empty() && f.resend.is_empty();
        if idle {
            self.flows = None;
        }
        idle
    }

    /// Number of outbound deliveries in flight.
    pub fn in_flight(&self) -> usize {
        self.flows().outgoing.len()
    }

    /// Inbound QoS 1/2 messages not yet fully acknowledged.
    pub fn inbound_in_flight(&self) -> usize {
        let f = self.flows();
        f.incoming_qos2.len() + f.pending_qos1.len()
    }

    /// Starts an outbound delivery. QoS 1/2 deliveries must only be started while `window_open()`.
    /// Stored deliveries use the packet id derived from their sequence; others get a free one.
    pub fn send(&mut self, delivery: Delivery, now: Instant) -> Started {
        if delivery.msg.is_expired(now) {
            return Started::Expired(delivery);
        }
        let mut publish = delivery.to_publish(now);
        if delivery.qos == QoS::AtMostOnce {
            return Started::Sent(publish);
        }
        let id = match delivery.durable {
            Some(r) => Some(stored_packet_id(r.seq)).filter(|id| !self.flows().outgoing.contains_key(id)),
            None => self.allocate_packet_id(),
        };
        let Some(packet_id) = id else { return Started::Blocked(delivery) };
        publish.packet_id = packet_id;
        publish.dup = delivery.durable.is_some_and(|r| r.recovered);
        self.insert_flight(packet_id, delivery, Phase::Published);
        Started::Sent(publish)
    }

    fn insert_flight(&mut self, packet_id: u16, delivery: Delivery, phase: Phase) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.flows_mut().outgoing.insert(packet_id, OutFlight { seq, packet_id, delivery, phase });
    }

    /// Puts back a stored QoS 2 delivery whose PUBREL was sent before a restart: it resumes with
    /// PUBREL.
    pub fn restore_released(&mut self, delivery: Delivery, packet_id: u16) {
        self.insert_flight(packet_id, delivery, Phase::Released);
    }

    /// Restores inbound QoS 2 packet ids that were awaiting PUBREL before a restart.
    pub fn restore_incoming(&mut self, ids: impl IntoIterator<Item = u16>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_some() {
            self.flows_mut().incoming_qos2.extend(ids);
        }
    }

    /// One in-flight delivery.
    pub fn flight(&self, packet_id: u16) -> Option<&OutFlight> {
        self.flows().outgoing.get(&packet_id)
    }

    /// The stored location of an in-flight delivery.
    pub fn stored_ref(&self, packet_id: u16) -> Option<crate::message::DurableRef> {
        self.flight(packet_id).and_then(|f| f.delivery.durable)
    }

    /// Takes every in-flight delivery out (the session ends or starts over), for release.
    pub fn take_all(&mut self) -> Vec<Delivery> {
        let Some(f) = self.flows.as_mut() else { return Vec::new() };
        f.resend.clear();
        f.outgoing.drain().map(|(_, f)| f.delivery).collect()
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        let outgoing = &self.flows().outgoing;
        let mut id = self.next_packet_id;
        for _ in 0..=u16::MAX {
            let next = if id == u16::MAX { 1 } else { id + 1 };
            if !outgoing.contains_key(&id) {
                self.next_packet_id = next;
                return Some(id);
            }
            id = next;
        }
        None
    }

    /// Forgets an outbound delivery that will not be sent (too large for the client): the spec
    /// says to behave as if its delivery had completed. Returns it for release.
    pub fn abandon(&mut self, packet_id: u16) -> Option<Delivery> {
        let f = self.flows.as_mut()?;
        f.resend.retain(|&id| id != packet_id);
        f.outgoing.remove(&packet_id).map(|f| f.delivery)
    }

    /// PUBACK from the client: the completed QoS 1 delivery (a window slot freed), if any.
    pub fn on_puback(&mut self, packet_id: u16) -> Option<Delivery> {
        let outgoing = &mut self.flows.as_mut()?.outgoing;
        match outgoing.get(&packet_id) {
            Some(f) if f.delivery.qos == QoS::AtLeastOnce => outgoing.remove(&packet_id).map(|f| f.delivery),
            _ => None,
        }
    }

    /// PUBREC from the client: the PUBREL to send, or the delivery whose flow the error reason
    /// ended (a window slot freed). An unknown id is answered with PUBREL 0x92.
    pub fn on_pubrec(&mut self, packet_id: u16, reason: ReasonCode) -> PubRecOutcome {
        let unknown = || {
            PubRecOutcome::Release(Packet::PubRel(PubResp::with_reason(
                packet_id,
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            )))
        };
        let Some(flows) = self.flows.as_mut() else { return unknown() };
        match flows.outgoing.get_mut(&packet_id) {
            Some(f) if f.delivery.qos == QoS::ExactlyOnce => {
                if reason.is_error() {
                    return match flows.outgoing.remove(&packet_id) {
                        Some(f) => PubRecOutcome::Ended(f.delivery),
                        None => PubRecOutcome::Ignore,
                    };
                }
                f.phase = Phase::Released;
                PubRecOutcome::Release(Packet::PubRel(PubResp::new(packet_id)))
            }
            Some(_) => PubRecOutcome::Ignore,
            None => unknown(),
        }
    }

    /// PUBCOMP from the client: the completed QoS 2 delivery, if any.
    pub fn on_pubcomp(&mut self, packet_id: u16) -> Option<Delivery> {
        let outgoing = &mut self.flows.as_mut()?.outgoing;
        match outgoing.get(&packet_id) {
            Some(f) if f.phase == Phase::Released => outgoing.remove(&packet_id).map(|f| f.delivery),
            _ => None,
        }
    }

    /// Called when a session resumes on a new connection: every in-flight delivery is queued for
    /// retransmission in original send order, to be released by [`QosState::next_resend`] within
    /// the new connection's window.
    pub fn resume(&mut self) {
        let Some(f) = self.flows.as_mut() else { return };
        let mut flights: Vec<&OutFlight> = f.outgoing.values().collect();
        flights.sort_by_key(|f| f.seq);
        f.resend = flights.into_iter().map(|f| f.packet_id).collect();
    }

    /// The next retransmission allowed by the send window: PUBLISH with DUP=1 and the same packet
    /// id, or PUBREL for flows already released. Retransmissions count against the window as they
    /// are sent, so a client that lowered its Receive Maximum is never flooded.
    pub fn next_resend(&mut self, now: Instant) -> Option<Packet> {
        let window = usize::from(self.send_window);
        let flows = self.flows.as_mut()?;
        loop {
            let sent = flows.outgoing.len() - flows.resend.len();
            if sent >= window {
                return None;
            }
            let id = flows.resend.pop_front()?;
            let Some(f) = flows.outgoing.get(&id) else { continue };
            return Some(match f.phase {
                Phase::Published => {
                    let mut p = f.delivery.to_publish(now);
                    p.packet_id = f.packet_id;
                    p.dup = true;
                    Packet::Publish(p)
                }
                Phase::Released => Packet::PubRel(PubResp::new(f.packet_id)),
            });
        }
    }

    /// The in-flight deliveries in send order (for persistence and inspection).
    pub fn outgoing(&self) -> Vec<&OutFlight> {
        let mut flights: Vec<&OutFlight> = self.flows().outgoing.values().collect();
        flights.sort_by_key(|f| f.seq);
        flights
    }

    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub fn incoming_qos2(&self) -> impl Iterator<Item = u16> + '_ {
        self.flows().incoming_qos2.iter().copied()
    }
}

#[cfg(test)]
mod tests;
