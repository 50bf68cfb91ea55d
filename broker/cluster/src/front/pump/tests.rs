//! The front's forwarding of one session, over an in-memory internal link: bytes both ways, and
//! how the client is told that forwarding ended (never inside a packet).

use super::*;
use crate::mux::tests::{open, pair};
use crate::mux::{Incoming, Link};
use bytes::Bytes;
use fleetmq_core::persist::Durability;
use fleetmq_core::store::{MemoryStore, Store};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A node that does not shut down while the returned sender lives.
fn broker() -> (Arc<Broker>, tokio::sync::watch::Sender<bool>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durability = Arc::new(Durability::new(store, None));
    (Arc::new(Broker::builder(Arc::new(Default::default()), durability, rx).build().unwrap()), tx)
}

/// A front's side of one forwarded session: the client's connection (the test holds the client
/// end), the front's stream to the shard, the shard's end of that stream, and the links (kept
/// alive by the caller).
async fn session(leftover: &[u8]) -> (ClientIo, DuplexStream, MuxStream, Incoming, (Link, Link)) {
    let (front, shard, mut incoming) = pair(64 * 1024).await;
    let stream = front.open(open(), Bytes::from_static(b"CONNECT")).unwrap();
    let at_shard = incoming.recv().await.unwrap();
    let (ours, mut client) = tokio::io::duplex(64 * 1024);
    let guard = ConnGuard::new(Arc::new(fleetmq_core::metrics::Stats::new()));
    let mut io = ClientIo::new(ClientStream::Remote(Box::new(ours)), 1 << 20, guard);
    // What the client sent behind its CONNECT sits in the connection's read buffer.
    client
        .write_all(&[&[0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 1, b'c'], leftover].concat())
        .await
        .unwrap();
    io.read_packet().await.unwrap();
    (io, client, stream, at_shard, (front, shard))
}

#[tokio::test]
async fn bytes_flow_both_ways_and_the_shards_end_closes_the_client() {
    let (io, mut client, stream, at_shard, _links) = session(&[0xc0, 0]).await;
    let (b, _shutdown) = broker();
    let pump = tokio::spawn(async move { run(&b, io, stream, Protocol::V5, Duration::ZERO, None).await });
    let mut shard = at_shard.stream;
    let mut ping = [0u8; 2];
    shard.read_exact(&mut ping).await.unwrap();
    assert_eq!(ping, [0xc0, 0], "the PINGREQ sent right behind CONNECT goes first");
    client.write_all(&[0xc0, 0]).await.unwrap();
    shard.read_exact(&mut ping).await.unwrap();
    shard.write_all(&[0x20, 3, 0, 0, 0, 0xd0, 0]).await.unwrap();
    let mut back = [0u8; 7];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, [0x20, 3, 0, 0, 0, 0xd0, 0], "CONNACK and PINGRESP reach the client as sent");
    shard.shutdown().await.unwrap();
    drop(shard);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the shard ended the session: nothing added, the client is closed");
    pump.await.unwrap();
}

#[tokio::test]
async fn a_shard_that_ends_before_answering_gets_the_client_server_unavailable() {
    let (io, mut client, stream, at_shard, _links) = session(&[]).await;
    let (b, _shutdown) = broker();
    let pump = tokio::spawn(async move { run(&b, io, stream, Protocol::V5, Duration::ZERO, None).await });
    drop(at_shard);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    let mut buf = BytesMut::from(&rest[..]);
    let Ok(Some(Packet::ConnAck(ack))) = codec::decode(&mut buf, Some(Protocol::V5), 1 << 20) else {
        panic!("a CONNACK, got {rest:?}")
    };
    assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE);
    pump.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_past_its_keepalive_gets_disconnect_0x8d_on_a_packet_boundary() {
    let (io, mut client, stream, at_shard, _links) = session(&[]).await;
    let (b, _shutdown) = broker();
    let pump = tokio::spawn(async move { run(&b, io, stream, Protocol::V5, Duration::from_millis(300), None).await });
    let mut shard = at_shard.stream;
    // Half a PUBLISH, then the rest: the DISCONNECT must come after the whole packet.
    shard.write_all(&[0x30, 5, 0, 1]).await.unwrap();
    shard.write_all(&[b't', 0, b'x']).await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    let mut buf = BytesMut::from(&rest[..]);
    let Ok(Some(Packet::Publish(p))) = codec::decode(&mut buf, Some(Protocol::V5), 1 << 20) else {
        panic!("the PUBLISH first, got {rest:?}")
    };
    assert_eq!(p.topic, "t");
    let Ok(Some(Packet::Disconnect(d))) = codec::decode(&mut buf, Some(Protocol::V5), 1 << 20) else {
        panic!("then a DISCONNECT, got {rest:?}")
    };
    assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT);
    pump.await.unwrap();
}

#[test]
fn boundary_follows_packets_split_anywhere() {
    let mut packets = BytesMut::new();
    let big = Packet::Publish(fleetmq_codec::Publish {
        topic: "t".into(),
        payload: bytes::Bytes::from(vec![7u8; 300]),
        ..Default::default()
    });
    let mut ends = Vec::new();
    for p in [Packet::PingResp, big.clone(), Packet::PingResp, big] {
        codec::encode(&p, Protocol::V5, &mut packets).unwrap();
        ends.push(packets.len());
    }
    assert!(ends[1] - ends[0] > 300, "the publish needs a two-byte remaining length");
    for split in 0..=packets.len() {
        let mut b = Boundary::Start;
        b.feed(&packets[..split]);
        assert_eq!(b == Boundary::Start, split == 0 || ends.contains(&split), "split at {split}");
        b.feed(&packets[split..]);
        assert_eq!(b, Boundary::Start);
    }
}
