//! Framing over one client byte stream (TCP or TLS): a reader that turns bytes into packets and a
//! writer task that turns the session's packets into batched writes.
//!
//! Invariants: the reader holds at most one packet of `max_packet_size` bytes plus one read's worth
//! of buffer (an oversize packet is refused from its fixed header); the writer encodes every packet
//! queued at once into one buffer and issues one write per batch; between packets an idle
//! connection keeps only small buffers (`READ_MIN` to read, at most `IDLE_WRITE_BUFFER` to write); a close request or node shutdown
//! interrupts even a write blocked on a stalled client, so a dead peer can never pin a task.

use crate::broker::Broker;
use crate::codec::{self, Disconnect, Packet, Protocol, ReasonCode};
use crate::session::ToClient;
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Largest batch the writer builds before writing.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Write buffer kept between batches when nothing else is queued (larger ones are freed, so an
/// idle connection holds at most this much).
const IDLE_WRITE_BUFFER: usize = 4 * 1024;
/// Read buffer of a connection between packets: enough for CONNECT, PINGREQ and small publishes.
const READ_MIN: usize = 256;
/// Read buffer reserved while a larger packet is being received.
const READ_CHUNK: usize = 4096;
/// Outbound topic aliases per connection at most, whatever the client allows (bounds memory).
const OUTBOUND_ALIAS_CAP: usize = 1024;
/// How long the writer tries to deliver a final DISCONNECT.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why reading from a client stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] codec::Error),
    #[error("connection closed mid-packet")]
    Truncated,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Decodes packets from the read half of a client stream.
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    pub protocol: Option<Protocol>,
    max_packet_size: usize,
    broker: Arc<Broker>,
    /// The last read filled all the room it had: the client is streaming, read in big chunks.
    streaming: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R, max_packet_size: usize, broker: Arc<Broker>) -> Self {
        let buf = BytesMut::with_capacity(READ_MIN);
        FrameReader { rd, buf, protocol: None, max_packet_size, broker, streaming: false }
    }

    /// Reads the next packet; `Ok(None)` on a clean end of stream between packets. Cancel-safe:
    /// bytes already read stay buffered.
    pub async fn read_packet(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(p) = codec::decode(&mut self.buf, self.protocol, self.max_packet_size)? {
                return Ok(Some(p));
            }
            if self.buf.capacity() - self.buf.len() < READ_MIN {
                // Idle and empty: stay small; streaming or mid-packet: read in big chunks.
                let want =
                    if self.buf.is_empty() && !self.streaming { READ_MIN } else { READ_CHUNK.max(self.buf.len()) };
                self.buf.reserve(want);
            }
            let room = self.buf.capacity() - self.buf.len();
            let n = self.rd.read_buf(&mut self.buf).await?;
            self.streaming = n == room;
            if n == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(Error::Truncated) };
            }
            self.broker.stats.bytes_received(n);
        }
    }
}

/// Connection parameters the writer needs.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub protocol: Protocol,
    /// Client's Topic Alias Maximum (5.0); 0 disables outbound aliases.
    pub topic_alias_maximum: u16,
    /// Client's Maximum Packet Size, if it announced one.
    pub max_packet_size: Option<u32>,
}

/// Runs the writer until the channel closes, a close is requested or the node shuts down.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<ToClient>,
    mut close: watch::Receiver<Option<Disconnect>>,
    mut shutdown: watch::Receiver<bool>,
    opts: WriterOptions,
    broker: Arc<Broker>,
) {
    let mut buf = BytesMut::new();
    let mut aliases = OutboundAliases::new(opts);
    // A dropped close sender or shutdown sender means no further request can come: stop watching.
    let (mut close_open, mut shutdown_open) = (true, true);
    let final_disconnect: Option<Disconnect> = loop {
        if let Some(d) = close.borrow().clone() {
            break Some(d);
        }
        if *shutdown.borrow() {
            break Some(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN));
        }
        tokio::select! {
            biased;
            r = close.changed(), if close_open => close_open = r.is_ok(),
            r = shutdown.changed(), if shutdown_open => shutdown_open = r.is_ok(),
            m = rx.recv() => {
                let Some(ToClient::Packet(p)) = m else { break None };
                buf.clear();
                aliases.encode(*p, &mut buf);
                while buf.len() < WRITE_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(ToClient::Packet(p)) => aliases.encode(*p, &mut buf),
                        Err(_) => break,
                    }
                }
                let len = buf.len();
                let write = async {
                    wr.write_all(&buf).await?;
                    wr.flush().await
                };
                tokio::select! {
                    r = write => match r {
                        Ok(()) => {
                            broker.stats.bytes_sent(len);
                            if buf.capacity() > 4 * WRITE_BATCH_BYTES
                                || (rx.is_empty() && buf.capacity() > IDLE_WRITE_BUFFER)
                            {
                                buf = BytesMut::new();
                            }
                        }
                        Err(_) => break None,
                    },
                    // Abandoning a half-written batch: the stream cannot carry a DISCONNECT any more.
                    r = close.changed(), if close_open => match r {
                        Ok(()) => break None,
                        Err(_) => close_open = false,
                    },
                    r = shutdown.changed(), if shutdown_open => match r {
                        Ok(()) => break None,
                        Err(_) => shutdown_open = false,
                    },
                }
            }
        }
    };
    if let Some(d) = final_disconnect {
        if opts.protocol.is_v5() {
            buf.clear();
            if codec::encode(&Packet::Disconnect(d), opts.protocol, &mut buf).is_ok() {
                let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
                    wr.write_all(&buf).await?;
                    wr.flush().await
                })
                .await;
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, wr.shutdown()).await;
}

/// Assigns outbound topic aliases up to the client's Topic Alias Maximum: the first PUBLISH on a
/// topic carries topic and alias, later ones only the alias. Aliases are never reassigned.
struct OutboundAliases {
    opts: WriterOptions,
    map: HashMap<String, u16>,
}

impl OutboundAliases {
    fn new(opts: WriterOptions) -> Self {
        OutboundAliases { opts, map: HashMap::new() }
    }

    fn encode(&mut self, mut p: Packet, buf: &mut BytesMut) {
        if let Packet::Publish(publish) = &mut p {
            if self.opts.protocol.is_v5() && self.opts.topic_alias_maximum > 0 {
                if let Some(&alias) = self.map.get(&publish.topic) {
                    publish.topic.clear();
                    publish.properties.topic_alias = Some(alias);
                } else if self.map.len() < usize::from(self.opts.topic_alias_maximum).min(OUTBOUND_ALIAS_CAP) {
                    let alias = self.map.len() as u16 + 1;
                    publish.properties.topic_alias = Some(alias);
                    let fits = self
                        .opts
                        .max_packet_size
                        .is_none_or(|max| codec::encoded_len(&p, self.opts.protocol) <= max as usize);
                    if let Packet::Publish(publish) = &mut p {
                        if fits {
                            self.map.insert(publish.topic.clone(), alias);
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
