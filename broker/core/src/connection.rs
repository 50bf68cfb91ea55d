//! Framing over one client byte stream (TCP or TLS): [`ClientIo`] decodes packets from a read
//! buffer and encodes outbound packets into a write buffer that is written as the socket allows.
//!
//! It does no waiting of its own: the task that owns the connection (first the CONNECT handler,
//! then the session task) polls it beside its other work, so one task serves a connection and no
//! channel sits between reading, the session and writing.
//!
//! Invariants: the read buffer holds at most one packet of `max_packet_size` bytes plus one read's
//! worth (an oversize packet is refused from its fixed header); every packet queued before a poll is
//! written in as few writes as the socket takes; an idle plain-TCP connection keeps no read buffer
//! and at most `IDLE_WRITE_BUFFER` to write; packets the owner does not take yet stay in the read
//! buffer, in order; closing never blocks the owner — what is queued, then the final DISCONNECT,
//! goes out from a short-lived task bounded by `CLOSE_WRITE_TIMEOUT`.

use crate::metrics::Stats;
use bytes::{Buf, BytesMut};
use fleetmq_codec::{self as codec, Disconnect, Packet, Protocol, ReasonCode};
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::server::TlsStream;
use tokio_util::task::task_tracker::TaskTrackerToken;

mod park;
#[cfg(test)]
mod tests;
pub use park::ParkedIo;

/// Bytes queued for writing beyond which the owner stops reading until the client takes some.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Bytes queued beyond which the owner stops pulling deliveries. Below the read mark, so a steady
/// backlog of deliveries never keeps the client's own packets (PINGREQ, acks) unread.
const PUMP_HIGH_WATER: usize = WRITE_HIGH_WATER / 2;
const _: () = assert!(PUMP_HIGH_WATER < WRITE_HIGH_WATER, "pumping must stop before reading does");
/// Write buffer kept once everything is written (larger ones are freed).
const IDLE_WRITE_BUFFER: usize = 4 * 1024;
/// Read buffer of a connection between packets: enough for CONNECT, PINGREQ and small publishes.
const READ_MIN: usize = 256;
/// Read buffer reserved while a larger packet is being received or the client streams.
const READ_CHUNK: usize = 4096;
/// Outbound topic aliases per connection at most, whatever the client allows (bounds memory).
const OUTBOUND_ALIAS_CAP: usize = 1024;
/// How long a closing connection tries to deliver its final DISCONNECT.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] codec::Error),
    #[error("connection closed mid-packet")]
    Truncated,
    #[error("connection closed")]
    Eof,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A client byte stream. An enum rather than a trait object: plain TCP needs no extra allocation
/// and can wait for readability without a read buffer (TLS may hold decrypted bytes, so it reads).
pub enum ClientStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A client connected through a front node: its session's stream on an internal link
    /// (whose type the cluster owns).
    Remote(Box<dyn RemoteStream>),
}

/// A byte stream of a client another node forwards (one allocation per forwarded session).
pub trait RemoteStream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> RemoteStream for T {}

impl ClientStream {
    /// Ready when a read may make progress; always for TLS.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            ClientStream::Tcp(s) => s.poll_read_ready(cx),
            ClientStream::Tls(_) | ClientStream::Remote(_) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Remote(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Remote(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Remote(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientStream::Remote(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a connection holds for its whole life: its slots in the connection caps, its place in the
/// node's shutdown drain, and (once attached) its count in the open-connections gauge.
pub struct ConnGuard {
    pub permits: (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>),
    pub token: Option<TaskTrackerToken>,
    stats: Arc<Stats>,
    opened: bool,
}

impl ConnGuard {
    /// A guard counting into the node's `stats` (`Broker::stats`).
    pub fn new(stats: Arc<Stats>) -> Self {
        ConnGuard { permits: (None, None), token: None, stats, opened: false }
    }

    /// The node's statistics (bytes in and out; a front counting forwarded bytes).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts the connection as open until the guard drops.
    pub fn opened(&mut self) {
        if !self.opened {
            self.opened = true;
            self.stats.connection_opened();
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.opened {
            self.stats.connection_closed();
        }
    }
}

/// Which client packets the owner takes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    All,
    /// Only PUBACK, PUBREC, PUBCOMP and PINGREQ (a paused publisher): the first other packet and
    /// everything after it wait in the read buffer.
    AcksOnly,
    /// None (too much is waiting to be written); the end of the stream is still noticed.
    None,
}

impl ReadMode {
    /// Whether a packet with this first byte is taken now.
    fn takes(self, first_byte: u8) -> bool {
        match self {
            ReadMode::All => true,
            ReadMode::AcksOnly => matches!(first_byte >> 4, 4 | 5 | 7 | 12),
            ReadMode::None => false,
        }
    }
}

/// What polling a connection produced.
#[derive(Debug)]
pub enum IoEvent {
    /// A decoded packet.
    Packet(Packet),
    /// The write buffer fell below [`PUMP_HIGH_WATER`]: the owner may pull deliveries again.
    Drained,
    /// The stream ended or failed; a codec error means the client sent an invalid packet.
    Closed(Error),
}

/// Parameters of the outbound side, known once CONNECT is accepted.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub protocol: Protocol,
    /// Client's Topic Alias Maximum (5.0); 0 disables outbound aliases.
    pub topic_alias_maximum: u16,
    /// Client's Maximum Packet Size, if it announced one.
    pub max_packet_size: Option<u32>,
}

impl WriterOptions {
    /// What an accepted CONNECT asks of the outbound side.
    pub fn of(connect: &codec::Connect) -> WriterOptions {
        WriterOptions {
            protocol: connect.protocol,
            topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
            max_packet_size: connect.properties.maximum_packet_size,
        }
    }
}

/// One client connection: stream, read and write buffers, outbound aliases.
pub struct ClientIo {
    stream: ClientStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Protocol of the accepted CONNECT (`None` before it: the first packet must be CONNECT).
    protocol: Option<Protocol>,
    max_packet_size: usize,
    /// The last read filled all the room it had: the client is streaming, read in big chunks.
    streaming: bool,
    /// Bytes were written since the last flush (TLS buffers records until flushed).
    unflushed: bool,
    /// The client closed its side; packets still buffered are handled before the end is reported.
    eof: bool,
    aliases: OutboundAliases,
    pub guard: ConnGuard,
}

impl ClientIo {
    pub fn new(stream: ClientStream, max_packet_size: usize, guard: ConnGuard) -> Self {
        ClientIo {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            protocol: None,
            max_packet_size,
            streaming: false,
            unflushed: false,
            eof: false,
            // Replaced by `set_options` once CONNECT is accepted.
            aliases: OutboundAliases::new(WriterOptions {
                protocol: Protocol::V3_1_1,
                topic_alias_maximum: 0,
                max_packet_size: None,
            }),
            guard,
        }
    }

    /// Fixes the protocol and outbound options once CONNECT is accepted.
    pub fn set_options(&mut self, opts: WriterOptions) {
        self.protocol = Some(opts.protocol);
        self.aliases = OutboundAliases::new(opts);
    }

    /// Takes the connection apart (a front forwarding it): the stream, the bytes read past the
    /// CONNECT, and the guard.
    pub fn into_parts(self) -> (ClientStream, BytesMut, ConnGuard) {
        (self.stream, self.rbuf, self.guard)
    }

    /// Decodes a packet the mode takes from bytes already read, without touching the socket.
    pub fn try_decode(&mut self, mode: ReadMode) -> Result<Option<Packet>> {
        if self.rbuf.first().is_some_and(|b| !mode.takes(*b)) {
            return Ok(None);
        }
        Ok(codec::decode(&mut self.rbuf, self.protocol, self.max_packet_size)?)
    }

    /// Reads until a whole packet is buffered; `Err(Eof)` on a clean end between packets;
    /// `Ok(None)` if the next packet is one the mode does not take.
    fn poll_read_packet(&mut self, cx: &mut Context<'_>, mode: ReadMode) -> Poll<Result<Option<Packet>>> {
        loop {
            if self.rbuf.first().is_some_and(|b| !mode.takes(*b)) {
                return Poll::Ready(Ok(None));
            }
            if let Some(p) = self.try_decode(mode)? {
                return Poll::Ready(Ok(Some(p)));
            }
            if self.rbuf.capacity() == 0 {
                // Released while idle: allocate only once there is something to read.
                std::task::ready!(self.stream.poll_read_ready(cx))?;
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_MIN {
                // Idle and empty: stay small; streaming or mid-packet: read in big chunks.
                let want =
                    if self.rbuf.is_empty() && !self.streaming { READ_MIN } else { READ_CHUNK.max(self.rbuf.len()) };
                self.rbuf.reserve(want);
            }
            if self.eof {
                return Poll::Ready(Err(if self.rbuf.is_empty() { Error::Eof } else { Error::Truncated }));
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    // Nothing more to read between packets: an idle TCP connection keeps no buffer.
                    if self.rbuf.is_empty() && matches!(self.stream, ClientStream::Tcp(_)) {
                        self.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            };
            self.streaming = n == room;
            if n == 0 {
                return Poll::Ready(Err(if self.rbuf.is_empty() { Error::Eof } else { Error::Truncated }));
            }
            self.guard.stats.bytes_received(n);
        }
    }

    /// Reads the next packet (the CONNECT phase, before a session owns the connection).
    pub async fn read_packet(&mut self) -> Result<Packet> {
        let p = poll_fn(|cx| self.poll_read_packet(cx, ReadMode::All)).await?;
        Ok(p.expect("ReadMode::All takes every packet"))
    }

    /// Writes what is queued as far as the socket takes it, then reads what `mode` takes. Returns
    /// when a packet is decoded, the write buffer fell below the delivery mark, or the stream
    /// ended. Cancel-safe: progress is kept in the buffers.
    pub fn poll_event(&mut self, cx: &mut Context<'_>, mode: ReadMode) -> Poll<IoEvent> {
        // Room made for deliveries is reported only after trying to read: a client that keeps up
        // with its deliveries would otherwise never have its own packets read.
        let mut drained = false;
        loop {
            if !self.wbuf.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(IoEvent::Closed(Error::Eof)),
                    Poll::Ready(Ok(n)) => {
                        self.guard.stats.bytes_sent(n);
                        let was_full = !self.pump_room();
                        self.wbuf.advance(n);
                        self.unflushed = true;
                        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_WRITE_BUFFER {
                            self.wbuf = BytesMut::new();
                        }
                        drained |= was_full && self.pump_room();
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(IoEvent::Closed(e.into())),
                    Poll::Pending => {}
                }
            } else if self.unflushed {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(IoEvent::Closed(e.into())),
                    Poll::Pending => {}
                }
            }
            return match self.poll_read_packet(cx, mode) {
                Poll::Ready(Ok(Some(p))) => Poll::Ready(IoEvent::Packet(p)),
                Poll::Ready(Ok(None)) => match self.poll_eof(cx) {
                    Poll::Pending if drained => Poll::Ready(IoEvent::Drained),
                    other => other,
                },
                Poll::Ready(Err(e)) => Poll::Ready(IoEvent::Closed(e)),
                Poll::Pending if drained => Poll::Ready(IoEvent::Drained),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// While the owner takes no more packets: still reads (into a bounded buffer, nothing decoded) so a
    /// client that closed its side is noticed, not left holding its connection slot.
    fn poll_eof(&mut self, cx: &mut Context<'_>) -> Poll<IoEvent> {
        while !self.eof && self.rbuf.len() < READ_CHUNK {
            if self.rbuf.capacity() == self.rbuf.len() {
                self.rbuf.reserve(READ_MIN);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => self.guard.stats.bytes_received(n),
                Poll::Ready(Err(e)) => return Poll::Ready(IoEvent::Closed(e.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Buffered packets are handled once the owner reads again; only a bare end is final now.
        if self.eof && self.rbuf.is_empty() {
            return Poll::Ready(IoEvent::Closed(Error::Eof));
        }
        Poll::Pending
    }

    /// Polls once without waiting (a takeover collecting what the old connection already sent).
    pub fn poll_now(&mut self) -> Poll<IoEvent> {
        self.poll_event(&mut Context::from_waker(std::task::Waker::noop()), ReadMode::All)
    }

    /// Queues a packet for writing (outbound topic aliases applied).
    pub fn send(&mut self, p: Packet) {
        self.aliases.encode(p, &mut self.wbuf);
    }

    /// Whether enough is queued that the owner should stop reading until the client reads.
    pub fn out_full(&self) -> bool {
        self.wbuf.len() >= WRITE_HIGH_WATER
    }

    /// Whether the owner may queue more deliveries.
    pub fn pump_room(&self) -> bool {
        self.wbuf.len() < PUMP_HIGH_WATER
    }

    /// Writes one packet and waits until it is written (CONNACK refusals, before any session).
    pub async fn write_now(&mut self, p: &Packet, protocol: Protocol) -> bool {
        let mut buf = BytesMut::new();
        if codec::encode(p, protocol, &mut buf).is_err() {
            return false;
        }
        self.stream.write_all(&buf).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Closes: what is queued (a CONNACK, a half-written packet) goes out, then a DISCONNECT with
    /// `reason` to 5.0 clients, then the stream is shut down — on a task of its own, bounded in
    /// time, so the caller never waits on a client that stopped reading.
    pub fn close(mut self, reason: Option<ReasonCode>) {
        if let (Some(reason), Some(Protocol::V5)) = (reason, self.protocol) {
            let _ = codec::encode(&Packet::Disconnect(Disconnect::new(reason)), Protocol::V5, &mut self.wbuf);
        }
        let ClientIo { mut stream, wbuf, guard, .. } = self;
        tokio::spawn(async move {
            // Held until the last write is done: the node's shutdown drain waits for it.
            let _guard = guard;
            finish(&mut stream, &wbuf).await;
        });
    }
}

/// Writes a closing connection's last bytes and shuts the stream down, bounded by
/// `CLOSE_WRITE_TIMEOUT` so a client that stopped reading cannot hold it.
pub async fn finish(stream: &mut ClientStream, last: &[u8]) {
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
        stream.write_all(last).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

/// Assigns outbound topic aliases up to the client's Topic Alias Maximum: the first PUBLISH on a
/// topic carries topic and alias, later ones only the alias. Aliases are never reassigned.
struct OutboundAliases {
    opts: WriterOptions,
    /// Boxed: allocated for the first alias, so a client without aliases holds 8 bytes.
    #[expect(clippy::box_collection, reason = "8 bytes per idle connection instead of the map's 48")]
    map: Option<Box<HashMap<String, u16>>>,
}

impl OutboundAliases {
    fn new(opts: WriterOptions) -> Self {
        OutboundAliases { opts, map: None }
    }

    fn encode(&mut self, mut p: Packet, buf: &mut BytesMut) {
        if let Packet::Publish(publish) = &mut p {
            if self.opts.protocol.is_v5() && self.opts.topic_alias_maximum > 0 {
                let map = self.map.get_or_insert_default();
                if let Some(&alias) = map.get(&publish.topic) {
                    publish.topic.clear();
                    publish.properties.topic_alias = Some(alias);
                } else if map.len() < usize::from(self.opts.topic_alias_maximum).min(OUTBOUND_ALIAS_CAP) {
                    let alias = map.len() as u16 + 1;
                    publish.properties.topic_alias = Some(alias);
                    let fits = self
                        .opts
                        .max_packet_size
                        .is_none_or(|max| codec::encoded_len(&p, self.opts.protocol) <= max as usize);
                    if let Packet::Publish(publish) = &mut p {
                        if fits {
                            map.insert(publish.topic.clone(), alias);
                        } else {
                            publish.properties.topic_alias = None;
                        }
                    }
                }
            }
        }
        if let Err(e) = codec::encode(&p, self.opts.protocol, buf) {
            tracing::warn!(error = %e, packet = p.name(), "dropping packet that cannot be encoded");
        }
    }
}

/// Accepts the next connection; a failed accept (e.g. out of file descriptors) is logged and
/// retried after a growing pause (10 ms up to 5 s), never ends the loop.
pub async fn accept(tcp: &tokio::net::TcpListener) -> (TcpStream, std::net::SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match tcp.accept().await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
