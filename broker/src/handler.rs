//! The per-connection handler: CONNECT phase (timeout, validation, authentication, CONNACK), then
//! the read loop that validates client packets and forwards them to the session.
//!
//! This is the front half of the broker: it owns framing, keepalive, inbound topic aliases and
//! authentication, and talks to the session only through the session-layer messages. Invariants:
//! nothing but a valid CONNECT is processed before CONNACK; every packet forwarded to the session
//! is a client-to-server packet with its topic alias resolved and its topic within limits; every
//! way out of the read loop tells the session why (or sent it the client's DISCONNECT).

use crate::broker::Broker;
use crate::codec::{self, ConnAck, Packet, Protocol, ReasonCode};
use crate::connection::{run_writer, FrameReader, WriterOptions};
use crate::session::{self, AttachRequest, CloseCause, Closer, ConnHandle, FromClient, ToClient};
use crate::topic;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod connect;

/// Capacity of the channel from the connection to its session.
const TO_SESSION_CAPACITY: usize = 64;
/// Capacity of the channel from the session to the connection writer.
const TO_CLIENT_CAPACITY: usize = 256;

/// What the listener knows about an accepted stream.
pub struct Accepted {
    pub peer: SocketAddr,
    /// Username taken from a verified client certificate (`cn_as_username`).
    pub cert_username: Option<String>,
    /// Set when a limit refuses this connection: its CONNECT is answered with this reason.
    pub refuse: Option<ReasonCode>,
    /// When the socket was accepted: the TLS handshake and CONNECT share one connect timeout.
    pub at: tokio::time::Instant,
}

/// Serves one client stream to the end.
pub async fn serve<S>(broker: Arc<Broker>, stream: S, accepted: Accepted)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let max_packet = broker.config.mqtt.max_packet_size as usize;
    let mut reader = FrameReader::new(rd, max_packet, broker.clone());
    let deadline = accepted.at + Duration::from_millis(broker.config.mqtt.connect_timeout_ms);
    let mut shutdown = broker.shutdown_signal();
    let first = tokio::select! {
        r = tokio::time::timeout_at(deadline, reader.read_packet()) => r,
        _ = shutdown.wait_for(|s| *s) => return,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!(peer = %accepted.peer, "no CONNECT within connect_timeout_ms");
            broker.stats.limit_rejection("connect_timeout");
            return;
        }
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            connect::refuse_decode_error(&broker, &mut wr, &e, accepted.peer).await;
            return;
        }
    };
    let protocol = connect.protocol;
    reader.protocol = Some(protocol);
    // Setup futures are boxed so their state does not stay in this long-lived connection future.
    let accepted_connect = match Box::pin(connect::admit(&broker, connect, &accepted)).await {
        Ok(a) => a,
        Err(connack) => {
            write_raw(&mut wr, &Packet::ConnAck(connack), protocol).await;
            return;
        }
    };
    let connect::Admitted { connect, username, connack_props, keepalive } = accepted_connect;
    let writer_opts = WriterOptions {
        protocol,
        topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
        max_packet_size: connect.properties.maximum_packet_size,
    };
    let (to_session, from_client) = mpsc::channel(TO_SESSION_CAPACITY);
    let (to_client, client_rx) = mpsc::channel(TO_CLIENT_CAPACITY);
    let (closer, close_rx) = Closer::new();
    let conn = ConnHandle { to_client: to_client.clone(), closer: closer.clone() };
    let client_id = connect.client_id.clone();
    let alias_max = broker.config.mqtt.topic_alias_maximum;
    let req = AttachRequest { connect, username, peer: accepted.peer, conn, from_client };
    let attached = match Box::pin(session::attach(&broker, req)).await {
        Ok(a) => a,
        Err(reason) => {
            let connack = ConnAck { reason, ..Default::default() };
            write_raw(&mut wr, &Packet::ConnAck(connack), protocol).await;
            return;
        }
    };
    let mut props = connack_props;
    if protocol.is_v5() {
        props.session_expiry_interval = Some(attached.session_expiry);
    }
    let connack = ConnAck { session_present: attached.session_present, reason: ReasonCode::SUCCESS, properties: props };
    if !write_raw(&mut wr, &Packet::ConnAck(connack), protocol).await {
        let _ = to_session.send(FromClient::Closed(CloseCause::Abnormal)).await;
        return;
    }
    broker.stats.connection_opened();
    tracing::debug!(%client_id, peer = %accepted.peer, ?protocol, "client connected");
    let writer = tokio::spawn(run_writer(
        wr,
        client_rx,
        close_rx.clone(),
        broker.shutdown_signal(),
        writer_opts,
        broker.clone(),
    ));
    let mut ctx =
        ReadLoop { broker: &broker, protocol, to_session, to_client, closer, aliases: HashMap::new(), alias_max };
    let exit = ctx.run(&mut reader, keepalive, close_rx).await;
    if exit.peer_gone {
        // Nothing more can reach the client: stop the writer now, even mid-write on a peer that
        // stopped reading, so the session below can drain and the connection slot is freed.
        writer.abort();
    }
    if let Some(cause) = exit.cause {
        let _ = ctx.to_session.send(FromClient::Closed(cause)).await;
    }
    drop(ctx);
    let _ = writer.await;
    broker.stats.connection_closed();
    tracing::debug!(%client_id, "client disconnected");
}

struct ReadLoop<'a> {
    broker: &'a Arc<Broker>,
    protocol: Protocol,
    to_session: mpsc::Sender<FromClient>,
    to_client: mpsc::Sender<ToClient>,
    closer: Closer,
    aliases: HashMap<u16, String>,
    alias_max: u16,
}

impl ReadLoop<'_> {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        keepalive: u16,
        mut close: tokio::sync::watch::Receiver<Option<codec::Disconnect>>,
    ) -> Exit {
        let mut shutdown = self.broker.shutdown_signal();
        let idle = (keepalive > 0).then(|| Duration::from_millis(u64::from(keepalive) * 1500));
        let (mut close_open, mut shutdown_open) = (true, true);
        // One keep-alive timer for the connection's life: a packet only records its arrival time,
        // and the timer is re-armed from that when it fires (no timer re-registration per packet).
        let mut last_packet = Instant::now();
        let timer = tokio::time::sleep_until(last_packet + idle.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(timer);
        loop {
            if close.borrow().is_some() || *shutdown.borrow() {
                return Exit::closing(CloseCause::Server);
            }
            let result = tokio::select! {
                biased;
                r = reader.read_packet() => Some(r),
                () = &mut timer, if idle.is_some() => {
                    let due = last_packet + idle.unwrap_or_default();
                    if Instant::now() < due {
                        timer.as_mut().reset(due);
                        continue;
                    }
                    None
                }
                r = close.changed(), if close_open => {
                    close_open = r.is_ok();
                    continue;
                }
                r = shutdown.changed(), if shutdown_open => {
                    shutdown_open = r.is_ok();
                    continue;
                }
            };
            match result {
                None => {
                    tracing::debug!("keepalive timeout");
                    self.broker.stats.limit_rejection("keepalive_timeout");
                    self.closer.close_with(ReasonCode::KEEP_ALIVE_TIMEOUT);
                    return Exit::closing(CloseCause::Abnormal);
                }
                Some(Ok(None)) => return Exit { peer_gone: true, cause: Some(CloseCause::Abnormal) },
                Some(Err(e)) => {
                    let codec_error = self.on_error(&e);
                    return Exit { peer_gone: !codec_error, cause: Some(CloseCause::Abnormal) };
                }
                Some(Ok(Some(p))) => {
                    let flow = self.forward(p).await;
                    // After forwarding: time blocked on a paused session is not the client's idling.
                    last_packet = Instant::now();
                    match flow {
                        Flow::Continue => {}
                        Flow::Disconnected => return Exit { peer_gone: true, cause: None },
                        Flow::Violation(reason, what) => {
                            self.broker.stats.malformed(what);
                            tracing::debug!(?reason, what, "closing connection: protocol violation");
                            self.closer.close_with(reason);
                            return Exit::closing(CloseCause::Abnormal);
                        }
                    }
                }
            }
        }
    }

    /// Handles a read error; `true` if it was an invalid packet (the writer then sends DISCONNECT).
    fn on_error(&self, e: &crate::connection::Error) -> bool {
        use crate::connection::Error;
        match e {
            Error::Io(_) | Error::Truncated => false,
            Error::Codec(c) => {
                let reason = c.reason_code();
                self.broker.stats.malformed(reason_label(reason));
                tracing::debug!(error = %c, "closing connection: invalid packet");
                self.closer.close_with(reason);
                true
            }
        }
    }

    async fn forward(&mut self, p: Packet) -> Flow {
        let p = match p {
            Packet::Publish(mut publish) => {
                if !publish.properties.subscription_identifiers.is_empty() {
                    return Flow::Violation(ReasonCode::PROTOCOL_ERROR, "subscription identifier from client");
                }
                if let Err(flow) = self.resolve_alias(&mut publish) {
                    return flow;
                }
                if topic::validate_topic_name(&publish.topic, &self.broker.topic_limits).is_err() {
                    self.broker.stats.limit_rejection("topic");
                    return Flow::Violation(ReasonCode::TOPIC_NAME_INVALID, "topic name invalid");
                }
                Packet::Publish(publish)
            }
            Packet::PingReq => {
                let _ = self.to_client.send(ToClient::Packet(Box::new(Packet::PingResp))).await;
                return Flow::Continue;
            }
            Packet::Auth(_) => {
                return Flow::Violation(ReasonCode::PROTOCOL_ERROR, "AUTH without authentication method")
            }
            p @ (Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)) => p,
            Packet::Disconnect(d) => {
                let _ = self.to_session.send(FromClient::Packet(Box::new(Packet::Disconnect(d)))).await;
                return Flow::Disconnected;
            }
            other => return Flow::Violation(ReasonCode::PROTOCOL_ERROR, other.name()),
        };
        if self.to_session.send(FromClient::Packet(Box::new(p))).await.is_err() {
            return Flow::Disconnected;
        }
        Flow::Continue
    }

    fn resolve_alias(&mut self, publish: &mut codec::Publish) -> Result<(), Flow> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            if publish.topic.is_empty() {
                return Err(Flow::Violation(ReasonCode::PROTOCOL_ERROR, "empty topic without alias"));
            }
            return Ok(());
        };
        if self.protocol != Protocol::V5 || alias == 0 || alias > self.alias_max {
            return Err(Flow::Violation(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias invalid"));
        }
        if publish.topic.is_empty() {
            match self.aliases.get(&alias) {
                Some(t) => publish.topic = t.clone(),
                None => return Err(Flow::Violation(ReasonCode::PROTOCOL_ERROR, "unknown topic alias")),
            }
        } else {
            self.aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}

/// How the read loop ended.
struct Exit {
    /// The client closed or broke the stream (or sent DISCONNECT): nothing more can be written.
    peer_gone: bool,
    /// What to tell the session (`None`: it already got the client's DISCONNECT).
    cause: Option<CloseCause>,
}

impl Exit {
    /// A server-side close: the writer sends the DISCONNECT (5.0) and ends on its own.
    fn closing(cause: CloseCause) -> Exit {
        Exit { peer_gone: false, cause: Some(cause) }
    }
}

enum Flow {
    Continue,
    /// The client sent DISCONNECT (already forwarded).
    Disconnected,
    Violation(ReasonCode, &'static str),
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

/// Writes a final packet on a stream that has no writer task yet; `false` if the write failed.
pub(crate) async fn write_raw<W: AsyncWrite + Unpin>(wr: &mut W, p: &Packet, protocol: Protocol) -> bool {
    let mut buf = bytes::BytesMut::new();
    if codec::encode(p, protocol, &mut buf).is_err() {
        return false;
    }
    wr.write_all(&buf).await.is_ok() && wr.flush().await.is_ok()
}
