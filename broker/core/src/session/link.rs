//! The connection attached to a session, as the session task sees it: the client I/O, the
//! connection's parameters, inbound topic aliases and keep-alive bookkeeping.
//!
//! The second half of the file is the session task's side of the link: reading and validating
//! client packets, closing from the server side, and a takeover's last look at the old link.
//!
//! Invariants: every packet the session handles in the normal flow passed [`Link::validate`] (a
//! client-to-server packet, topic alias resolved, topic name valid; a takeover's last look at the
//! old link takes only DISCONNECT and acknowledgements); a link ends exactly once, consumed by
//! [`Link::close`], which sends the recorded server reason (5.0) if any.

use super::task::SessionTask;
use crate::broker::Broker;
use crate::connection::{self, ClientIo, IoEvent, ReadMode};
use crate::topic;
use fleetmq_codec::{Packet, Protocol, Publish, ReasonCode};
use std::collections::HashMap;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Packets already buffered from the client handled in one turn of the loop at most.
const READ_BATCH: usize = 32;
/// Packets a takeover collects from the old connection at most before closing it.
const DRAIN_LIMIT: usize = 1024;

/// A protocol violation found while validating a client packet: the reason to disconnect with
/// and the metric label.
pub(super) type Violation = (ReasonCode, &'static str);

/// The attached connection.
pub(super) struct Link {
    pub protocol: Protocol,
    pub max_packet_size: Option<u32>,
    /// Session expiry of the CONNECT was 0 (then DISCONNECT may not raise it).
    pub connect_expiry_zero: bool,
    pub io: ClientIo,
    /// Why the server closes this connection (set by a kick; sent as DISCONNECT to 5.0 clients).
    pub close_reason: Option<ReasonCode>,
    /// Inbound topic aliases the client set up (boxed: most clients set up none).
    #[expect(clippy::box_collection, reason = "8 bytes per idle connection instead of the map's 48")]
    aliases: Option<Box<HashMap<u16, String>>>,
    alias_max: u16,
    /// The keep-alive in seconds (0: none); the client may stay silent 1.5 times as long.
    keepalive: u16,
    pub last_packet: Instant,
}

/// A parked connection's link: its parameters and socket, no buffers (see `park`). The protocol
/// and the client's Maximum Packet Size are the connection's outbound options; the last packet's
/// time is kept in ms since an epoch the caller gives (8 bytes instead of 16).
pub(super) struct ParkedLink {
    connect_expiry_zero: bool,
    io: connection::ParkedIo,
    #[expect(clippy::box_collection, reason = "as in `Link`")]
    aliases: Option<Box<HashMap<u16, String>>>,
    alias_max: u16,
    keepalive: u16,
    last_packet_ms: u64,
}

impl ParkedLink {
    /// When the client has been silent too long (if it has a keep-alive).
    pub fn keepalive_due(&self, epoch: Instant) -> Option<Instant> {
        due(self.keepalive, epoch + Duration::from_millis(self.last_packet_ms))
    }

    /// The socket, for the lot's poller.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.io)
    }

    /// The link again, its socket back in the reactor; on error the connection is gone.
    pub fn resume(self, epoch: Instant) -> std::io::Result<Link> {
        let ParkedLink { connect_expiry_zero, io, aliases, alias_max, keepalive, last_packet_ms } = self;
        let (protocol, max_packet_size) = io.options();
        Ok(Link {
            protocol,
            max_packet_size,
            connect_expiry_zero,
            io: io.resume()?,
            close_reason: None,
            aliases,
            alias_max,
            keepalive,
            last_packet: epoch + Duration::from_millis(last_packet_ms),
        })
    }
}

/// When a client with this keep-alive, last heard from at `last`, has been silent too long.
fn due(keepalive: u16, last: Instant) -> Option<Instant> {
    (keepalive > 0).then(|| last + Duration::from_millis(u64::from(keepalive) * 1500))
}

impl Link {
    pub fn new(broker: &Broker, io: ClientIo, protocol: Protocol, keepalive: u16) -> Link {
        Link {
            protocol,
            max_packet_size: None,
            connect_expiry_zero: false,
            io,
            close_reason: None,
            aliases: None,
            alias_max: broker.config.mqtt.topic_alias_maximum,
            keepalive,
            last_packet: Instant::now(),
        }
    }

    /// When the client has been silent too long (if it has a keep-alive).
    pub fn keepalive_due(&self) -> Option<Instant> {
        due(self.keepalive, self.last_packet)
    }

    /// Whether the connection can park (nothing buffered, plain TCP, not being closed).
    pub fn parkable(&self) -> bool {
        self.close_reason.is_none() && self.io.parkable()
    }

    /// Takes the connection out of the reactor (see `park`), its last packet's time kept relative
    /// to `epoch` (not after it). Call only when [`Link::parkable`]; on error the connection is gone.
    pub fn park(self, epoch: Instant) -> std::io::Result<ParkedLink> {
        let Link {
            protocol,
            max_packet_size,
            connect_expiry_zero,
            io,
            close_reason: _,
            aliases,
            alias_max,
            keepalive,
            last_packet,
        } = self;
        let io = io.park()?;
        debug_assert_eq!(io.options(), (protocol, max_packet_size), "the link's options are the connection's");
        Ok(ParkedLink {
            connect_expiry_zero,
            io,
            aliases,
            alias_max,
            keepalive,
            // Rounded up: the client never gets less keep-alive grace for having been parked.
            last_packet_ms: last_packet.saturating_duration_since(epoch).as_nanos().div_ceil(1_000_000) as u64,
        })
    }

    /// Closes the connection, with the recorded server reason if any.
    pub fn close(self) {
        self.io.close(self.close_reason);
    }

    /// Checks a client packet the way the spec requires before the session acts on it.
    pub fn validate(&mut self, p: Packet, broker: &Broker) -> Result<Packet, Violation> {
        match p {
            Packet::Publish(mut publish) => {
                if !publish.properties.subscription_identifiers.is_empty() {
                    return Err((ReasonCode::PROTOCOL_ERROR, "subscription identifier from client"));
                }
                self.resolve_alias(&mut publish)?;
                if topic::validate_topic_name(&publish.topic, &broker.topic_limits).is_err() {
                    broker.stats.limit_rejection("topic");
                    return Err((ReasonCode::TOPIC_NAME_INVALID, "topic name invalid"));
                }
                Ok(Packet::Publish(publish))
            }
            Packet::Auth(_) => Err((ReasonCode::PROTOCOL_ERROR, "AUTH without authentication method")),
            p @ (Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Disconnect(_)) => Ok(p),
            other => Err((ReasonCode::PROTOCOL_ERROR, other.name())),
        }
    }

    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), Violation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            if publish.topic.is_empty() {
                return Err((ReasonCode::PROTOCOL_ERROR, "empty topic without alias"));
            }
            return Ok(());
        };
        if self.protocol != Protocol::V5 || alias == 0 || alias > self.alias_max {
            return Err((ReasonCode::TOPIC_ALIAS_INVALID, "topic alias invalid"));
        }
        if publish.topic.is_empty() {
            match self.aliases.as_ref().and_then(|a| a.get(&alias)) {
                Some(t) => publish.topic = t.clone(),
                None => return Err((ReasonCode::PROTOCOL_ERROR, "unknown topic alias")),
            }
        } else {
            self.aliases.get_or_insert_default().insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}

impl SessionTask {
    /// Which client packets are taken now: none while too much waits to be written, only
    /// acknowledgements and PINGREQ while paused (the rest waits in the read buffer, in order).
    pub(super) fn read_mode(&self) -> ReadMode {
        match &self.link {
            Some(l) if !l.io.out_full() && self.pause.is_none() => ReadMode::All,
            Some(l) if !l.io.out_full() => ReadMode::AcksOnly,
            _ => ReadMode::None,
        }
    }

    pub(super) fn on_io(&mut self, ev: IoEvent) {
        match ev {
            IoEvent::Drained => {}
            IoEvent::Closed(e) => self.on_closed(e),
            IoEvent::Packet(p) => {
                self.on_client_packet(p);
                // Packets that arrived in the same read are handled in this turn.
                for _ in 0..READ_BATCH {
                    let mode = self.read_mode();
                    let Some(link) = self.link.as_mut() else { break };
                    match link.io.try_decode(mode) {
                        Ok(Some(p)) => self.on_client_packet(p),
                        Ok(None) => break,
                        Err(e) => return self.on_closed(e),
                    }
                }
            }
        }
    }

    fn on_client_packet(&mut self, p: Packet) {
        let Some(link) = self.link.as_mut() else { return };
        link.last_packet = Instant::now();
        match link.validate(p, &self.broker) {
            Err((reason, what)) => self.violation(reason, what),
            Ok(p) => self.handle(p),
        }
    }

    /// The connection ended: the peer closed or broke it, or sent an undecodable packet.
    fn on_closed(&mut self, e: connection::Error) {
        if let connection::Error::Codec(c) = &e {
            let reason = c.reason_code();
            self.broker.stats.malformed(crate::handler::reason_label(reason));
            tracing::debug!(client_id = %self.shared.client_id, error = %c, "closing connection: invalid packet");
            self.kick(reason);
        }
        self.detach(true);
    }

    /// Applies what the attached connection already delivered before it is replaced: a DISCONNECT
    /// (its will and expiry effects) and acknowledgements; anything else is dropped with it (the
    /// client resends per its QoS).
    pub(super) fn drain_link(&mut self) {
        for _ in 0..DRAIN_LIMIT {
            let Some(link) = self.link.as_mut() else { return };
            match link.io.poll_now() {
                Poll::Pending => return,
                Poll::Ready(IoEvent::Packet(Packet::Disconnect(d))) => self.on_disconnect_keep(d),
                Poll::Ready(IoEvent::Packet(p @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)))) => {
                    self.handle(p)
                }
                Poll::Ready(IoEvent::Packet(_) | IoEvent::Drained) => {}
                Poll::Ready(IoEvent::Closed(_)) => self.close_link(true),
            }
        }
    }

    /// Records why the server closes the attached connection (the first reason wins); the
    /// DISCONNECT goes out (5.0) when the link is dropped, which the caller does next.
    pub(super) fn kick(&mut self, reason: ReasonCode) {
        if let Some(link) = self.link.as_mut() {
            link.close_reason.get_or_insert(reason);
        }
    }

    /// Closes the attached connection from the server side and detaches it.
    pub(super) fn close_for(&mut self, reason: ReasonCode, publish_will: bool) {
        self.kick(reason);
        self.detach(publish_will);
    }
}
