//! The per-connection handler: the CONNECT phase (timeout, validation, authentication), then the
//! hand-over of the connection to its session, whose task serves it from then on.
//!
//! Invariants: nothing but a valid CONNECT is processed before the session accepts the connection
//! (the session writes the CONNACK, ahead of anything else it sends); a refused CONNECT gets a
//! CONNACK with the reason and the connection closes.

use crate::broker::Broker;
use crate::connection::{ClientIo, ClientStream, ConnGuard, WriterOptions};
use crate::port::Forward;
use crate::session::{self, AttachRequest};
use fleetmq_codec::{ConnAck, Packet, ReasonCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod connect;

/// What the listener knows about an accepted stream.
pub struct Accepted {
    pub peer: SocketAddr,
    /// Username taken from a verified client certificate (`cn_as_username`).
    pub cert_username: Option<String>,
    /// Set when a limit refuses this connection: its CONNECT is answered with this reason.
    pub refuse: Option<ReasonCode>,
    /// When the socket was accepted: PROXY header, TLS handshake and CONNECT share one connect timeout.
    pub at: tokio::time::Instant,
    /// On a front node: where admitted clients go instead of a local session.
    pub forward: Option<Arc<dyn Forward>>,
}

/// Serves one client stream until its session owns it (or it is refused).
pub async fn serve(broker: Arc<Broker>, stream: ClientStream, accepted: Accepted, guard: ConnGuard) {
    let max_packet = broker.config.mqtt.max_packet_size as usize;
    let mut io = ClientIo::new(stream, max_packet, guard);
    let deadline = accepted.at + Duration::from_millis(broker.config.mqtt.connect_timeout_ms);
    // The listener ends this future when the node shuts down.
    let connect = match tokio::time::timeout_at(deadline, io.read_packet()).await {
        Err(_) => {
            tracing::debug!(peer = %accepted.peer, "no CONNECT within connect_timeout_ms");
            broker.stats.limit_rejection("connect_timeout");
            return;
        }
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            connect::refuse_decode_error(&broker, &mut io, &e, accepted.peer).await;
            return;
        }
    };
    let protocol = connect.protocol;
    // Setup futures are boxed so their state does not stay in this connection future.
    let admitted = match Box::pin(connect::admit(&broker, connect, &accepted)).await {
        Ok(a) => a,
        Err(connack) => {
            io.write_now(&Packet::ConnAck(connack), protocol).await;
            return;
        }
    };
    let connect::Admitted { connect, username, connack_props, keepalive } = admitted;
    if let Some(front) = accepted.forward {
        let admitted = crate::port::Admitted {
            connect,
            username,
            peer: accepted.peer,
            keepalive,
            assigned_client_id: connack_props.assigned_client_identifier.is_some(),
            server_keep_alive: connack_props.server_keep_alive,
        };
        // A task of its own, like a session's: the listener ends this future at shutdown, while
        // forwarding must live on to tell the client where to go (the guard keeps the drain waiting).
        tokio::spawn(front.forward(broker, io, admitted));
        return;
    }
    io.set_options(WriterOptions::of(&connect));
    let client_id = connect.client_id.clone();
    let connack = ConnAck { properties: connack_props, ..Default::default() };
    let req = AttachRequest { connect, username, peer: accepted.peer, io, connack, keepalive };
    session::attach(&broker, req);
    tracing::debug!(%client_id, peer = %accepted.peer, ?protocol, "client connected");
}

/// Metric label for a codec rejection.
pub(crate) fn reason_label(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::MALFORMED_PACKET => "malformed",
        ReasonCode::PROTOCOL_ERROR => "protocol_error",
        ReasonCode::PACKET_TOO_LARGE => "packet_too_large",
        ReasonCode::TOPIC_NAME_INVALID => "topic_name_invalid",
        ReasonCode::PAYLOAD_FORMAT_INVALID => "payload_format_invalid",
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => "unsupported_protocol",
        _ => "other",
    }
}
