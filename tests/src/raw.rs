//! A raw MQTT client over a plain TCP socket: sends hand-built bytes and reads whole packets, for
//! protocol-violation and exact-wire-format tests that a real client library would never produce.
//!
//! Invariants: every read and write is bounded by a timeout; bytes are buffered internally so a
//! timed-out read never loses a partial packet; packets skipped while waiting for a specific kind
//! are kept and returned by later reads, in order.

use crate::parse::{self, kind, Connack, Packet};
use crate::wire::{self, Connect, Proto};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Default bound for a single expected packet.
pub const WAIT: Duration = Duration::from_secs(5);

/// Why a read did not yield a packet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no complete packet within the timeout")]
    Timeout,
    #[error("connection closed by the broker")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("cannot parse what the broker sent: {0}")]
    Parse(#[from] parse::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A unique client id or topic segment: `prefix` plus a process-wide counter and the process id.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// One raw TCP connection to the broker.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<Packet>,
    v5: bool,
}

impl RawClient {
    /// The client's own address on this connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"))
    }

    /// Opens a TCP connection (no MQTT traffic yet).
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("TCP connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("TCP connect to {addr} failed: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient { stream, buf: Vec::new(), pending: VecDeque::new(), v5: false }
    }

    /// Connects, sends `connect` and returns the client with the CONNACK it got.
    pub async fn handshake(addr: SocketAddr, connect: &Connect) -> (RawClient, Connack) {
        let mut c = RawClient::connect(addr).await;
        c.send_connect(connect).await;
        let ack = c.expect_connack(WAIT).await;
        (c, ack)
    }

    /// Connects with `connect` and asserts the CONNACK is a success.
    pub async fn connect_ok(addr: SocketAddr, connect: &Connect) -> RawClient {
        let (c, ack) = RawClient::handshake(addr, connect).await;
        assert_eq!(ack.code, 0, "CONNACK for {:?} was not success: {ack:?}", connect.client_id);
        c
    }

    /// Connects a 3.1.1 client with a clean session.
    pub async fn v4(addr: SocketAddr, client_id: &str) -> RawClient {
        RawClient::connect_ok(addr, &Connect::v4(client_id)).await
    }

    /// Connects a 5.0 client with clean start.
    pub async fn v5(addr: SocketAddr, client_id: &str) -> RawClient {
        RawClient::connect_ok(addr, &Connect::v5(client_id)).await
    }

    /// Sends a CONNECT and remembers its protocol level for parsing what follows.
    pub async fn send_connect(&mut self, connect: &Connect) {
        self.v5 = connect.proto == Proto::V5;
        self.send(&connect.encode()).await;
    }

    /// Whether PUBLISH/SUBACK parsing uses the 5.0 layout.
    pub fn is_v5(&self) -> bool {
        self.v5
    }

    /// Writes bytes, panicking if the write fails or takes longer than [`WAIT`].
    pub async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes).await {
            panic!("sending {} bytes failed: {e}", bytes.len());
        }
    }

    /// Writes bytes; errors (the broker may already have closed) are returned, not raised.
    pub async fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// Half-closes the connection (sends FIN) while still reading.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Reads the next packet, or an error on timeout, close or garbage.
    pub async fn try_read_packet(&mut self, timeout: Duration) -> Result<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Ok(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.take_frame()? {
                return Ok(p);
            }
            let mut chunk = [0u8; 8192];
            match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Ok(0)) => return Err(Error::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) if is_reset(&e) => return Err(Error::Closed),
                Ok(Err(e)) => return Err(Error::Io(e)),
            }
        }
    }

    /// Reads the next packet; panics if none arrives within `timeout`.
    pub async fn read_packet(&mut self, timeout: Duration) -> Packet {
        self.try_read_packet(timeout).await.unwrap_or_else(|e| panic!("expected a packet within {timeout:?}: {e}"))
    }

    /// Reads until a packet of type `k` arrives; packets of other types are kept for later reads.
    pub async fn next_of_kind(&mut self, k: u8, timeout: Duration) -> Packet {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_packet(left).await {
                Ok(p) if p.kind() == k => break p,
                Ok(p) => skipped.push(p),
                Err(e) => panic!("expected a packet of type {k} within {timeout:?}: {e}; got instead: {skipped:?}"),
            }
        };
        for p in skipped.into_iter().rev() {
            self.pending.push_front(p);
        }
        found
    }

    /// Reads a CONNACK (it must be the next packet).
    pub async fn expect_connack(&mut self, timeout: Duration) -> Connack {
        let p = self.read_packet(timeout).await;
        parse::connack(&p).unwrap_or_else(|e| panic!("expected CONNACK: {e}: {p:?}"))
    }

    /// Reads the next PUBLISH (other packets are kept) and parses it.
    pub async fn read_publish(&mut self, timeout: Duration) -> parse::Publish {
        let p = self.next_of_kind(kind::PUBLISH, timeout).await;
        parse::publish(&p, self.v5).unwrap_or_else(|e| panic!("bad PUBLISH: {e}: {p:?}"))
    }

    /// Reads the next PUBLISH and completes its QoS flow as a subscriber (PUBACK, or PUBREC and
    /// PUBCOMP once the PUBREL came).
    pub async fn receive(&mut self) -> parse::Publish {
        let p = self.read_publish(WAIT).await;
        self.complete(&p).await;
        p
    }

    /// Every PUBLISH that arrives until nothing comes for `quiet` (each completed as in
    /// [`RawClient::receive`]); other packets are dropped.
    pub async fn receive_until_quiet(&mut self, quiet: Duration) -> Vec<parse::Publish> {
        let mut got = Vec::new();
        while let Ok(p) = self.try_read_packet(quiet).await {
            if p.kind() == kind::PUBLISH {
                let p = parse::publish(&p, self.v5).unwrap_or_else(|e| panic!("bad PUBLISH: {e}: {p:?}"));
                self.complete(&p).await;
                got.push(p);
            }
        }
        got
    }

    async fn complete(&mut self, p: &parse::Publish) {
        let pid = p.pid.unwrap_or(0);
        match p.qos {
            1 => self.send(&wire::puback(pid)).await,
            2 => {
                self.send(&wire::pubrec(pid)).await;
                self.expect_ack(kind::PUBREL, pid).await;
                self.send(&wire::pubcomp(pid)).await;
            }
            _ => {}
        }
    }

    /// Panics if a PUBLISH arrives within `dur`; other packets are kept.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        let mut kept = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_packet(left).await {
                Ok(p) if p.kind() == kind::PUBLISH => {
                    panic!("unexpected PUBLISH: {:?}", parse::publish(&p, self.v5))
                }
                Ok(p) => kept.push(p),
                Err(Error::Timeout) => break,
                Err(e) => panic!("connection failed while expecting silence: {e}"),
            }
        }
        self.pending.extend(kept);
    }

    /// Waits for the broker to close the connection; returns every packet received before that.
    /// Panics if the connection is still open after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Packet> = self.pending.drain(..).collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_packet(left).await {
                Ok(p) => got.push(p),
                Err(Error::Closed) | Err(Error::Io(_)) => return got,
                Err(Error::Parse(e)) => panic!("garbage from the broker: {e}; before it: {got:?}"),
                Err(Error::Timeout) => {
                    panic!("connection still open after {timeout:?}; received: {got:?}")
                }
            }
        }
    }

    /// 3.1.1 expectation: the broker closes the connection without sending a DISCONNECT (which
    /// 3.1.1 does not allow a server to send) or a successful CONNACK.
    pub async fn expect_closed_v4(&mut self, timeout: Duration) {
        let got = self.expect_closed(timeout).await;
        for p in &got {
            assert_ne!(p.kind(), kind::DISCONNECT, "3.1.1 server sent DISCONNECT: {got:?}");
            if let Ok(ack) = parse::connack(p) {
                assert_ne!(ack.code, 0, "got a successful CONNACK before the close: {got:?}");
            }
        }
    }

    /// 5.0 expectation: a DISCONNECT arrives (other packets before it are ignored) and then the
    /// connection closes; returns the DISCONNECT reason code.
    pub async fn expect_disconnect(&mut self, timeout: Duration) -> u8 {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let reason = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_packet(left).await {
                Ok(p) if p.kind() == kind::DISCONNECT => break parse::disconnect_reason(&p).unwrap_or(0),
                Ok(p) => seen.push(p),
                Err(e) => panic!("expected DISCONNECT within {timeout:?}: {e}; got {seen:?}"),
            }
        };
        let after = self.expect_closed(WAIT).await;
        assert!(after.is_empty(), "packets after DISCONNECT: {after:?}");
        reason
    }

    /// Subscribes (3.1.1: options byte = QoS) and returns the SUBACK codes.
    pub async fn subscribe(&mut self, pid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(pid, filters, &wire::Props::new()).await
    }

    /// Subscribes with 5.0 SUBSCRIBE properties and returns the SUBACK codes.
    pub async fn subscribe_with(&mut self, pid: u16, filters: &[(&str, u8)], props: &wire::Props) -> Vec<u8> {
        let bytes = wire::subscribe(self.v5, pid, filters, props);
        self.send(&bytes).await;
        let p = self.next_of_kind(kind::SUBACK, WAIT).await;
        let ack = parse::suback(&p, self.v5).unwrap_or_else(|e| panic!("bad SUBACK: {e}: {p:?}"));
        assert_eq!(ack.pid, pid, "SUBACK for the wrong packet id");
        ack.codes
    }

    /// Sends a PUBLISH and, for QoS 1/2, completes the handshake; returns the PUBACK/PUBREC reason.
    pub async fn publish(&mut self, publish: &wire::Publish) -> u8 {
        self.send(&publish.encode()).await;
        match publish.qos {
            1 => self.expect_ack(kind::PUBACK, publish.pid).await,
            2 => {
                let rec = self.expect_ack(kind::PUBREC, publish.pid).await;
                if rec < 0x80 {
                    self.send(&wire::pubrel(publish.pid)).await;
                    self.expect_ack(kind::PUBCOMP, publish.pid).await;
                }
                rec
            }
            _ => 0,
        }
    }

    /// Waits for an acknowledgement of type `k` for `pid` and returns its reason code.
    pub async fn expect_ack(&mut self, k: u8, pid: u16) -> u8 {
        let p = self.next_of_kind(k, WAIT).await;
        let ack = parse::ack(&p).unwrap_or_else(|e| panic!("bad ack: {e}: {p:?}"));
        assert_eq!(ack.pid, pid, "ack of type {k} for the wrong packet id");
        ack.reason
    }

    fn take_frame(&mut self) -> Result<Option<Packet>> {
        let Some(&first_byte) = self.buf.first() else {
            return Ok(None);
        };
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let Some(&b) = self.buf.get(i) else {
                return Ok(None);
            };
            len |= usize::from(b & 0x7F) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i > 4 {
                return Err(parse::Error::Invalid("remaining length longer than 4 bytes").into());
            }
        }
        if self.buf.len() < i + len {
            return Ok(None);
        }
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Ok(Some(Packet { first_byte, body }))
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
}

/// Proves the broker still serves clients: a fresh 3.1.1 subscriber receives a QoS 1 message
/// from a fresh publisher on a unique topic.
pub async fn assert_roundtrip(addr: SocketAddr) {
    let topic = unique("health");
    let mut sub = RawClient::v4(addr, &unique("health-sub")).await;
    assert_eq!(sub.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let mut publ = RawClient::v4(addr, &unique("health-pub")).await;
    publ.publish(&wire::Publish::new(false, &topic, b"alive").qos(1, 1)).await;
    let got = sub.read_publish(WAIT).await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), (topic.as_str(), &b"alive"[..]));
}
