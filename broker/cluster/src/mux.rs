//! One internal link between two nodes, carrying many session streams (multiplexing) with
//! per-stream credit, plus heartbeats.
//!
//! A [`Link`] owns a reader task and a writer task over one TCP connection. Each [`MuxStream`] is
//! a byte stream (`AsyncRead` + `AsyncWrite`) the session layer uses like a client socket.
//!
//! Invariants:
//! - Flow control per stream: a sender never has more than the receiver's granted window
//!   unacknowledged, and the receiver buffers at most that much, so one session that stops reading
//!   stalls only itself — never the link or the other sessions on it.
//! - The writer batches every frame queued while it was writing into one write (few syscalls); what
//!   is queued is bounded by the windows of the open streams.
//! - A link silent for `heartbeat_timeout` (no frame at all, heartbeats included) is dead: every
//!   stream on it fails with `ConnectionReset` and the link never carries data again.

use super::wire::{Frame, FrameCodec, Header, Hello, SessionOpen, ShardMsg, StreamId, PROTOCOL_VERSION};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

mod stream;

pub use stream::MuxStream;
use stream::StreamShared;

/// Why a link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] super::wire::Error),
    #[error("timed out")]
    Timeout,
    #[error("handshake: {0}")]
    Handshake(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Tunables of a link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub heartbeat: Duration,
    pub heartbeat_timeout: Duration,
    /// Credit granted to the peer for each stream.
    pub window: u32,
    /// Mutual TLS for links this node dials and accepts; plain TCP when `None`.
    pub tls: Option<Arc<super::secure::LinkTls>>,
}

/// A stream the peer opened, for the accepting side to serve.
pub struct Incoming {
    pub stream: MuxStream,
    pub open: SessionOpen,
    /// The CONNECT packet.
    pub connect: Bytes,
}

/// A shard message and its body, as the link received it.
pub type Received = (ShardMsg, Bytes);

/// What the accepting side of a link gets.
pub struct Accepted {
    pub link: Link,
    /// Session streams the peer opens (fronts).
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Routes and forwards the peer sends (shards).
    pub messages: mpsc::UnboundedReceiver<Received>,
}

/// The state both tasks and every stream share.
pub(crate) struct LinkShared {
    /// Node id of the peer.
    pub peer: String,
    out: mpsc::UnboundedSender<Frame>,
    streams: Mutex<HashMap<StreamId, Arc<StreamShared>>>,
    next_id: AtomicU64,
    window: u32,
    dead: AtomicBool,
    /// Cancelled when the link dies: stops both tasks.
    died: CancellationToken,
}

impl LinkShared {
    /// Queues a frame for the writer; false once the link is dead.
    pub(crate) fn send(&self, frame: Frame) -> bool {
        !self.dead.load(Ordering::Acquire) && self.out.send(frame).is_ok()
    }

    pub(crate) fn forget(&self, id: StreamId) {
        self.streams.lock().remove(&id);
    }

    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Marks the link dead once and fails every stream on it.
    fn kill(&self, why: &str) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(peer = %self.peer, reason = why, "internal link down");
        let streams: Vec<_> = self.streams.lock().drain().map(|(_, s)| s).collect();
        for s in streams {
            s.break_link();
        }
        self.died.cancel();
    }
}

/// A handle on a live (or dead) link; clones share it.
#[derive(Clone)]
pub struct Link {
    shared: Arc<LinkShared>,
}

impl Link {
    /// Dials side: says hello, waits for the peer's, and starts the link; shard messages the peer
    /// sends back arrive on the returned receiver.
    pub async fn dial<S>(io: S, me: &str, opts: LinkOptions) -> Result<(Link, mpsc::UnboundedReceiver<Received>)>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let mut reader = FramedRead::new(r, FrameCodec::default());
        let mut writer = FramedWrite::new(w, FrameCodec::default());
        writer.send(Frame::bare(Header::Hello(Hello { version: PROTOCOL_VERSION, node: me.into() }))).await?;
        let hello = read_hello(&mut reader, opts.heartbeat_timeout).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((Link::start(reader, writer, hello.node, 1, opts, None, tx), rx))
    }

    /// Accepting side: waits for the peer's hello, checks it with `admit`, answers, and starts the
    /// link.
    pub async fn accept<S>(io: S, me: &str, opts: LinkOptions, admit: impl FnOnce(&str) -> bool) -> Result<Accepted>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let mut reader = FramedRead::new(r, FrameCodec::default());
        let mut writer = FramedWrite::new(w, FrameCodec::default());
        let hello = read_hello(&mut reader, opts.heartbeat_timeout).await?;
        if !admit(&hello.node) {
            return Err(Error::Handshake(format!("`{}` is not a member of this cluster", hello.node)));
        }
        writer.send(Frame::bare(Header::Hello(Hello { version: PROTOCOL_VERSION, node: me.into() }))).await?;
        let (tx, incoming) = mpsc::unbounded_channel();
        let (mtx, messages) = mpsc::unbounded_channel();
        Ok(Accepted { link: Link::start(reader, writer, hello.node, 2, opts, Some(tx), mtx), incoming, messages })
    }

    fn start<R, W>(
        reader: FramedRead<R, FrameCodec>,
        writer: FramedWrite<W, FrameCodec>,
        peer: String,
        first_id: StreamId,
        opts: LinkOptions,
        incoming: Option<mpsc::UnboundedSender<Incoming>>,
        messages: mpsc::UnboundedSender<Received>,
    ) -> Link
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (out, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(LinkShared {
            peer,
            out,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(first_id),
            window: opts.window,
            dead: AtomicBool::new(false),
            died: CancellationToken::new(),
        });
        tokio::spawn(write_loop(shared.clone(), writer.into_inner(), rx, opts.heartbeat));
        tokio::spawn(read_loop(shared.clone(), reader, opts.heartbeat_timeout, incoming, messages));
        Link { shared }
    }

    /// Opens a session stream: the peer receives `open` and `connect` as an [`Incoming`].
    pub fn open(&self, open: SessionOpen, connect: Bytes) -> Option<MuxStream> {
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let s = StreamShared::new(id, 0);
        self.shared.streams.lock().insert(id, s.clone());
        let header = Header::Open { stream: id, window: self.shared.window, open };
        if !self.shared.send(Frame { header, body: connect }) {
            self.shared.forget(id);
            return None;
        }
        Some(MuxStream::new(s, self.shared.clone()))
    }

    /// Sends a shard message; false once the link is dead.
    pub fn send(&self, msg: ShardMsg, body: Bytes) -> bool {
        self.shared.send(Frame { header: Header::Shard(msg), body })
    }

    /// Whether the link has failed (it never recovers; dial a new one).
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::Acquire)
    }

    /// Resolves once the link is dead.
    pub async fn dead(&self) {
        self.shared.died.cancelled().await
    }

    /// Node id of the peer.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// Ends the link now (shutdown); streams on it fail.
    pub fn close(&self) {
        self.shared.kill("closed");
    }
}

/// Dials a peer's internal address and sets up the link (TLS handshake included when configured),
/// all within the heartbeat timeout.
pub async fn connect(
    addr: std::net::SocketAddr,
    me: &str,
    opts: &LinkOptions,
) -> Result<(Link, mpsc::UnboundedReceiver<Received>)> {
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match &opts.tls {
            Some(tls) => {
                let tls = tls.connect(tcp, addr).await.map_err(|e| Error::Handshake(format!("TLS: {e}")))?;
                Link::dial(tls, me, opts.clone()).await
            }
            None => Link::dial(tcp, me, opts.clone()).await,
        }
    };
    tokio::time::timeout(opts.heartbeat_timeout, dial).await.map_err(|_| Error::Timeout)?
}

async fn read_hello<R: AsyncRead + Unpin>(reader: &mut FramedRead<R, FrameCodec>, timeout: Duration) -> Result<Hello> {
    match tokio::time::timeout(timeout, reader.next()).await {
        Err(_) => Err(Error::Timeout),
        Ok(None) => Err(Error::Handshake("closed before hello".into())),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(Some(Ok(Frame { header: Header::Hello(h), .. }))) if h.version == PROTOCOL_VERSION => Ok(h),
        Ok(Some(Ok(Frame { header: Header::Hello(h), .. }))) => {
            Err(Error::Handshake(format!("peer speaks internal protocol {}, we speak {PROTOCOL_VERSION}", h.version)))
        }
        Ok(Some(Ok(_))) => Err(Error::Handshake("first frame was not a hello".into())),
    }
}

/// Most bytes gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<LinkShared>,
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    heartbeat: Duration,
) {
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Encoder;
    let mut codec = FrameCodec::default();
    let mut buf = bytes::BytesMut::new();
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pings = 0u64;
    let result: std::result::Result<(), String> = async {
        loop {
            let first = tokio::select! {
                f = rx.recv() => match f { Some(f) => f, None => return Ok(()) },
                _ = tick.tick() => { pings += 1; Frame::bare(Header::Ping(pings)) }
                _ = shared.died.cancelled() => return Ok(()),
            };
            codec.encode(first, &mut buf).map_err(|e| e.to_string())?;
            while buf.len() < WRITE_BATCH {
                let Ok(f) = rx.try_recv() else { break };
                codec.encode(f, &mut buf).map_err(|e| e.to_string())?;
            }
            w.write_all(&buf).await.map_err(|e| e.to_string())?;
            buf.clear();
            if buf.capacity() > WRITE_BATCH * 2 {
                buf = bytes::BytesMut::new();
            }
        }
    }
    .await;
    match result {
        Ok(()) => shared.kill("closed"),
        Err(e) => shared.kill(&format!("write failed: {e}")),
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<LinkShared>,
    mut reader: FramedRead<R, FrameCodec>,
    timeout: Duration,
    incoming: Option<mpsc::UnboundedSender<Incoming>>,
    messages: mpsc::UnboundedSender<Received>,
) {
    let why = loop {
        let frame = tokio::select! {
            r = tokio::time::timeout(timeout, reader.next()) => r,
            _ = shared.died.cancelled() => return,
        };
        let frame = match frame {
            Err(_) => break "heartbeat timeout".to_string(),
            Ok(None) => break "closed by peer".to_string(),
            Ok(Some(Err(e))) => break format!("read failed: {e}"),
            Ok(Some(Ok(f))) => f,
        };
        match frame.header {
            Header::Ping(n) => {
                shared.send(Frame::bare(Header::Pong(n)));
            }
            Header::Pong(_) | Header::Hello(_) => {}
            Header::Open { stream, window, open } => {
                let s = StreamShared::new(stream, window);
                let Some(tx) = &incoming else {
                    shared.send(Frame::bare(Header::Close { stream }));
                    continue;
                };
                shared.streams.lock().insert(stream, s.clone());
                shared.send(Frame::bare(Header::Credit { stream, bytes: shared.window }));
                let mux = MuxStream::new(s, shared.clone());
                let _ = tx.send(Incoming { stream: mux, open, connect: frame.body });
            }
            Header::Data { stream } => {
                if let Some(s) = shared.streams.lock().get(&stream).cloned() {
                    s.received(frame.body);
                }
            }
            Header::Credit { stream, bytes } => {
                if let Some(s) = shared.streams.lock().get(&stream).cloned() {
                    s.credited(bytes);
                }
            }
            Header::Close { stream } => {
                if let Some(s) = shared.streams.lock().remove(&stream) {
                    s.peer_closed();
                }
            }
            Header::Shard(msg) => {
                let _ = messages.send((msg, frame.body));
            }
        }
    };
    shared.kill(&why);
}

#[cfg(test)]
pub(crate) mod tests;
