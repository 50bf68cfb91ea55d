//! `fleetmq-relay`: the ceiling of the comparison benchmark (`loadtest/bench.sh`). It moves the
//! bytes of a QoS 0 fan-in run from publishers to subscribers with as little work as a TCP relay
//! can do, so a broker's delivered rate can be put next to what the same machine, sockets and load
//! tool allow at all.
//!
//! What it does, exactly: every connection is split into a reader and a writer task. The reader
//! frames the byte stream with the MQTT fixed header only (first byte + remaining length) and
//! looks at nothing else, except for three fixed-offset fields needed to keep a client happy: the
//! protocol level of CONNECT (to answer 3.1.1 or 5.0 CONNACK), and the packet identifier of
//! SUBSCRIBE / UNSUBSCRIBE (echoed in the acknowledgement). It answers CONNECT with CONNACK
//! accepted, SUBSCRIBE with SUBACK granting QoS 0 for one filter, UNSUBSCRIBE with UNSUBACK and
//! PINGREQ with PINGRESP, all as fixed bytes; DISCONNECT ends the connection. A connection that
//! has sent SUBSCRIBE receives a verbatim copy of every PUBLISH packet any connection sends from
//! then on: topics and filters are not read, so every subscriber gets everything (which is what
//! a fan-in run with `+` wildcard subscribers expects). Consecutive PUBLISH packets from one read
//! are forwarded as one shared buffer (no copy per subscriber); each writer coalesces what is
//! queued into one write. A full subscriber queue makes the publisher's reader wait (TCP
//! back-pressure, never a drop).
//!
//! Invariants: no `unsafe`, no panic on any input; a QoS 1/2 PUBLISH (which would need
//! acknowledgements the relay does not give) or a malformed or oversize fixed header closes that
//! connection; nothing is ever dropped silently.
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};
use clap::Parser;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest packet accepted; larger ones close the connection.
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Read buffer growth step and write coalescing bound.
const CHUNK: usize = 64 * 1024;

const PUBLISH: u8 = 3;
const CONNECT: u8 = 1;
const SUBSCRIBE: u8 = 8;
const UNSUBSCRIBE: u8 = 10;
const PINGREQ: u8 = 12;
const DISCONNECT: u8 = 14;

/// Raw TCP relay with MQTT fixed-header framing (benchmark ceiling; QoS 0 only).
#[derive(Debug, Parser)]
#[command(name = "fleetmq-relay", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1885")]
    bind: SocketAddr,
    /// Runtime worker threads [default: cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Buffers queued per subscriber before publishers wait.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

/// Why the relay stopped or a connection was closed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed remaining length")]
    Malformed,
    #[error("packet of {0} bytes is over the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("PUBLISH with QoS {0}: the relay forwards QoS 0 only")]
    QoS(u8),
}

type Result<T> = std::result::Result<T, Error>;

/// One complete packet at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    /// First byte (type and flags).
    first: u8,
    /// Bytes of fixed header (1 + remaining-length bytes).
    header: usize,
    /// Remaining length (variable header + payload).
    body: usize,
}

impl Frame {
    fn kind(&self) -> u8 {
        self.first >> 4
    }

    fn len(&self) -> usize {
        self.header + self.body
    }
}

/// Frames the packet at the front of `buf`: `Ok(None)` until the whole packet is there.
fn frame(buf: &[u8]) -> Result<Option<Frame>> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut body = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Ok(None) };
        body |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if body > MAX_PACKET {
                return Err(Error::TooLarge(body));
            }
            let f = Frame { first, header: 2 + i, body };
            return Ok((buf.len() >= f.len()).then_some(f));
        }
    }
    Err(Error::Malformed)
}

/// Packet identifier at the start of a SUBSCRIBE/UNSUBSCRIBE body.
fn packet_id(body: &[u8]) -> [u8; 2] {
    [body.first().copied().unwrap_or(0), body.get(1).copied().unwrap_or(0)]
}

/// True when a CONNECT body asks for MQTT 5.0 (protocol level 5 after the protocol name).
fn connect_is_v5(body: &[u8]) -> bool {
    let name_len = usize::from(u16::from_be_bytes(packet_id(body)));
    body.get(2 + name_len) == Some(&5)
}

type SubList = Arc<RwLock<Arc<Vec<(u64, mpsc::Sender<Bytes>)>>>>;

/// Shared relay state: the current subscribers (copy-on-write snapshot, read per forwarded buffer).
#[derive(Clone, Default)]
struct Relay {
    subs: SubList,
    next_id: Arc<AtomicU64>,
}

impl Relay {
    fn snapshot(&self) -> Arc<Vec<(u64, mpsc::Sender<Bytes>)>> {
        self.subs.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<(u64, mpsc::Sender<Bytes>)>)) {
        if let Ok(mut g) = self.subs.write() {
            let mut list: Vec<_> = g.as_ref().clone();
            f(&mut list);
            *g = Arc::new(list);
        }
    }

    async fn forward(&self, chunk: Bytes) {
        for (_, tx) in self.snapshot().iter() {
            let _ = tx.send(chunk.clone()).await;
        }
    }

    async fn serve(self, listener: TcpListener, queue: usize) -> Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let relay = self.clone();
            tokio::spawn(async move {
                let _ = relay.connection(stream, queue).await;
            });
        }
    }

    async fn connection(self, stream: TcpStream, queue: usize) -> Result<()> {
        stream.set_nodelay(true)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(queue.max(1));
        let writer = tokio::spawn(write_loop(wr, rx));
        let result = self.read_loop(id, rd, tx).await;
        self.update(|l| l.retain(|(i, _)| *i != id));
        let _ = writer.await;
        result
    }

    async fn read_loop(&self, id: u64, mut rd: OwnedReadHalf, tx: mpsc::Sender<Bytes>) -> Result<()> {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut v5 = false;
        loop {
            let mut run = 0usize;
            while let Some(f) = frame(buf.get(run..).unwrap_or_default())? {
                if f.kind() == PUBLISH {
                    let qos = (f.first >> 1) & 0x03;
                    if qos != 0 {
                        return Err(Error::QoS(qos));
                    }
                    run += f.len();
                    continue;
                }
                if run > 0 {
                    self.forward(buf.split_to(run).freeze()).await;
                    run = 0;
                }
                let pkt = buf.split_to(f.len());
                let body = pkt.get(f.header..).unwrap_or_default();
                let reply: &[u8] = match f.kind() {
                    CONNECT => {
                        v5 = connect_is_v5(body);
                        if v5 {
                            &[0x20, 0x03, 0x00, 0x00, 0x00]
                        } else {
                            &[0x20, 0x02, 0x00, 0x00]
                        }
                    }
                    SUBSCRIBE | UNSUBSCRIBE => {
                        let [a, b] = packet_id(body);
                        let ack = match (f.kind(), v5) {
                            (SUBSCRIBE, false) => vec![0x90, 0x03, a, b, 0x00],
                            (SUBSCRIBE, true) => vec![0x90, 0x04, a, b, 0x00, 0x00],
                            (_, false) => vec![0xB0, 0x02, a, b],
                            (_, true) => vec![0xB0, 0x04, a, b, 0x00, 0x00],
                        };
                        if f.kind() == SUBSCRIBE {
                            let sub = tx.clone();
                            self.update(|l| {
                                if !l.iter().any(|(i, _)| *i == id) {
                                    l.push((id, sub));
                                }
                            });
                        } else {
                            self.update(|l| l.retain(|(i, _)| *i != id));
                        }
                        let _ = tx.send(Bytes::from(ack)).await;
                        &[]
                    }
                    PINGREQ => &[0xD0, 0x00],
                    DISCONNECT => return Ok(()),
                    _ => &[],
                };
                if !reply.is_empty() {
                    let _ = tx.send(Bytes::from_static(reply)).await;
                }
            }
            if run > 0 {
                self.forward(buf.split_to(run).freeze()).await;
            }
            if buf.capacity() - buf.len() < CHUNK / 4 {
                buf.reserve(CHUNK);
            }
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }
}

/// Writes everything queued for one connection, coalescing queued buffers into one write.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut out = BytesMut::with_capacity(CHUNK);
    while let Some(first) = rx.recv().await {
        out.extend_from_slice(&first);
        while out.len() < CHUNK {
            match rx.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = wr.shutdown().await;
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let run = async {
        let listener = TcpListener::bind(cli.bind).await?;
        println!("fleetmq-relay listening {}", listener.local_addr()?);
        Relay::default().serve(listener, cli.queue).await
    };
    match rt.enable_all().build().map_err(Error::from).and_then(|rt| rt.block_on(run)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_needs_the_whole_packet() {
        assert_eq!(frame(&[]).unwrap(), None);
        assert_eq!(frame(&[0x30]).unwrap(), None);
        assert_eq!(frame(&[0x30, 0x02, 0x00]).unwrap(), None);
        assert_eq!(frame(&[0x30, 0x02, 0x00, 0x00, 0xFF]).unwrap(), Some(Frame { first: 0x30, header: 2, body: 2 }));
        let mut long = vec![0x30, 0xC8, 0x01];
        long.resize(3 + 200, 0);
        assert_eq!(frame(&long).unwrap(), Some(Frame { first: 0x30, header: 3, body: 200 }));
    }

    #[test]
    fn frame_rejects_malformed_and_oversize_lengths() {
        assert!(matches!(frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Err(Error::Malformed)));
        assert!(matches!(frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]), Err(Error::TooLarge(_))));
    }

    #[test]
    fn connect_level_is_read_after_the_protocol_name() {
        assert!(connect_is_v5(&[0, 4, b'M', b'Q', b'T', b'T', 5, 2]));
        assert!(!connect_is_v5(&[0, 4, b'M', b'Q', b'T', b'T', 4, 2]));
        assert!(!connect_is_v5(&[0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2]));
        assert!(!connect_is_v5(&[]));
    }

    async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut v)).await.unwrap().unwrap();
        v
    }

    const CONNECT_311: [u8; 14] = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 0];

    #[tokio::test]
    async fn publishes_reach_every_subscriber_verbatim_and_control_packets_get_fixed_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Relay::default().serve(listener, 16));

        let mut subs = Vec::new();
        for pid in [7u8, 9] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&CONNECT_311).await.unwrap();
            assert_eq!(read_n(&mut s, 4).await, [0x20, 0x02, 0x00, 0x00]);
            s.write_all(&[0x82, 6, 0, pid, 0, 1, b'#', 0]).await.unwrap();
            assert_eq!(read_n(&mut s, 5).await, [0x90, 0x03, 0, pid, 0x00]);
            s.write_all(&[0xC0, 0x00]).await.unwrap();
            assert_eq!(read_n(&mut s, 2).await, [0xD0, 0x00]);
            subs.push(s);
        }

        let mut p = TcpStream::connect(addr).await.unwrap();
        p.write_all(&CONNECT_311).await.unwrap();
        assert_eq!(read_n(&mut p, 4).await, [0x20, 0x02, 0x00, 0x00]);
        let one = [0x30, 5, 0, 1, b't', b'h', b'i'];
        let two = [0x31, 4, 0, 1, b'u', b'!'];
        let mut both = one.to_vec();
        both.extend_from_slice(&two);
        p.write_all(&one[..3]).await.unwrap();
        p.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        p.write_all(&both[3..]).await.unwrap();
        for s in &mut subs {
            assert_eq!(read_n(s, both.len()).await, both);
        }
    }

    #[tokio::test]
    async fn qos1_publish_closes_the_connection_and_v5_gets_v5_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Relay::default().serve(listener, 16));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 30, 0, 0, 0]).await.unwrap();
        assert_eq!(read_n(&mut s, 5).await, [0x20, 0x03, 0x00, 0x00, 0x00]);
        s.write_all(&[0x82, 7, 0, 3, 0, 0, 1, b'#', 0]).await.unwrap();
        assert_eq!(read_n(&mut s, 6).await, [0x90, 0x04, 0, 3, 0x00, 0x00]);
        s.write_all(&[0x32, 5, 0, 1, b't', 0, 1]).await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(n.unwrap(), 0);
    }
}
