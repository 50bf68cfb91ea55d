//! Moves one session's bytes between the client and its shard stream, both directions at once,
//! and ends the connection the way the client should see it.
//!
//! Invariants: each direction has one bounded buffer and waits for its writer, so a slow client
//! or a shard stream without credit holds back only this connection; the bytes written to the
//! client are tracked to packet boundaries, so a DISCONNECT the front adds (shard lost, keepalive,
//! drain) is never spliced into the middle of a packet — if the last packet is incomplete, the
//! connection just closes.

use crate::mux::MuxStream;
use bytes::{Buf, BytesMut};
use fleetmq_codec::{self as codec, ConnAck, Disconnect, Packet, Protocol, ReasonCode};
use fleetmq_core::broker::Broker;
use fleetmq_core::connection::{ClientIo, ClientStream, ConnGuard};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

/// Buffer per direction.
const CHUNK: usize = 8 * 1024;

/// Why forwarding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed or failed.
    Client,
    /// The shard closed the session's stream (its last bytes were passed on).
    Shard,
    /// The internal link to the shard died.
    LinkLost,
    /// Nothing from the client for 1.5 × keepalive.
    KeepAlive,
}

/// Tracks whether the bytes passed so far end on an MQTT packet boundary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    #[default]
    Start,
    /// Reading the Remaining Length: value so far and shift.
    Length(u32, u32),
    Body(u32),
}

impl Boundary {
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(&b) = bytes.first() {
            match *self {
                Boundary::Start => {
                    *self = Boundary::Length(0, 0);
                    bytes = &bytes[1..];
                }
                Boundary::Length(value, shift) => {
                    let value = value | (u32::from(b & 0x7F) << shift);
                    bytes = &bytes[1..];
                    *self = if b & 0x80 != 0 && shift < 21 {
                        Boundary::Length(value, shift + 7)
                    } else if value == 0 {
                        Boundary::Start
                    } else {
                        Boundary::Body(value)
                    };
                }
                Boundary::Body(left) => {
                    let n = (left as usize).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u32;
                    *self = if left == 0 { Boundary::Start } else { Boundary::Body(left) };
                }
            }
        }
    }
}

struct Pump {
    client: ClientStream,
    shard: MuxStream,
    /// Client bytes waiting for the shard stream.
    up: BytesMut,
    /// Shard bytes waiting for the client.
    down: BytesMut,
    boundary: Boundary,
    /// Bytes passed to the client (0: the shard never answered the CONNECT).
    delivered: u64,
    unflushed: bool,
    keepalive: Duration,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
    guard: ConnGuard,
}

impl Pump {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            let mut progress = false;
            // Client to shard.
            if !self.up.is_empty() {
                match Pin::new(&mut self.shard).poll_write(cx, &self.up) {
                    Poll::Ready(Ok(n)) => {
                        self.up.advance(n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(shard_end(&e)),
                    Poll::Pending => {}
                }
            } else {
                self.up.reserve(CHUNK);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.client), cx, &mut self.up) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(End::Client),
                    Poll::Ready(Ok(n)) => {
                        self.guard.stats().bytes_received(n);
                        self.last_read = Instant::now();
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // Shard to client.
            if !self.down.is_empty() {
                match Pin::new(&mut self.client).poll_write(cx, &self.down) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(End::Client),
                    Poll::Ready(Ok(n)) => {
                        self.guard.stats().bytes_sent(n);
                        self.boundary.feed(&self.down[..n]);
                        self.delivered += n as u64;
                        self.down.advance(n);
                        self.unflushed = true;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            } else {
                if self.unflushed {
                    match Pin::new(&mut self.client).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.unflushed = false,
                        Poll::Ready(Err(_)) => return Poll::Ready(End::Client),
                        Poll::Pending => {}
                    }
                }
                self.down.reserve(CHUNK);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.shard), cx, &mut self.down) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(End::Shard),
                    Poll::Ready(Ok(_)) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(shard_end(&e)),
                    Poll::Pending => {}
                }
            }
            if !progress {
                break;
            }
        }
        if !self.keepalive.is_zero() {
            let deadline = self.last_read + self.keepalive;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::KeepAlive);
            }
        }
        Poll::Pending
    }
}

fn shard_end(e: &io::Error) -> End {
    if e.kind() == io::ErrorKind::ConnectionReset {
        End::LinkLost
    } else {
        End::Shard
    }
}

/// Forwards until one side ends, then closes the client with what it should be told.
pub(super) async fn run(
    broker: &Broker,
    io: ClientIo,
    shard: MuxStream,
    protocol: Protocol,
    keepalive: Duration,
    server_reference: Option<String>,
) {
    let (client, leftover, guard) = io.into_parts();
    let mut pump = Pump {
        client,
        shard,
        // Packets the client sent right behind its CONNECT go first.
        up: leftover,
        down: BytesMut::new(),
        boundary: Boundary::Start,
        delivered: 0,
        unflushed: false,
        keepalive,
        last_read: Instant::now(),
        timer: Box::pin(tokio::time::sleep(keepalive)),
        guard,
    };
    let mut shutdown = broker.shutdown_signal();
    let end = tokio::select! {
        end = std::future::poll_fn(|cx| pump.poll(cx)) => Some(end),
        _ = crate::shutting_down(&mut shutdown) => None,
    };
    // A link that ends because this front is stopping is the drain, not a lost shard.
    let end = end.filter(|e| !(*e == End::LinkLost && broker.is_shutting_down()));
    let closing = match end {
        Some(End::Client) => return,
        // The shard ended the stream before answering the CONNECT (shutting down, or lost).
        Some(End::Shard | End::LinkLost) if pump.delivered == 0 => {
            Some(Packet::ConnAck(ConnAck { reason: ReasonCode::SERVER_UNAVAILABLE, ..Default::default() }))
        }
        Some(End::Shard) => None,
        Some(End::LinkLost) => disconnect(protocol, ReasonCode::SERVER_UNAVAILABLE, None),
        Some(End::KeepAlive) => disconnect(protocol, ReasonCode::KEEP_ALIVE_TIMEOUT, None),
        None => disconnect(protocol, ReasonCode::SERVER_SHUTTING_DOWN, server_reference),
    };
    let Pump { mut client, shard, down, boundary, guard, .. } = pump;
    // The shard sees the stream close: for the session this is the connection ending.
    drop(shard);
    let mut tail = down;
    if let Some(p) = closing {
        // Only on a packet boundary; a DISCONNECT after part of a packet would be garbage.
        let mut b = boundary;
        b.feed(&tail);
        if b == Boundary::Start {
            let _ = codec::encode(&p, protocol, &mut tail);
        }
    }
    fleetmq_core::connection::finish(&mut client, &tail).await;
    drop(guard);
}

/// A DISCONNECT for 5.0 clients (3.1.1 has none: the connection just closes).
fn disconnect(protocol: Protocol, reason: ReasonCode, server_reference: Option<String>) -> Option<Packet> {
    if !protocol.is_v5() {
        return None;
    }
    let mut d = Disconnect::new(reason);
    d.properties.server_reference = server_reference;
    Some(Packet::Disconnect(d))
}

#[cfg(test)]
mod tests;
