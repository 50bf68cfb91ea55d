//! The connection's framing state, driven over an in-memory byte stream (the `Remote` variant
//! takes any stream): CONNECT first, read modes that hold packets back in order, limits decided
//! from the fixed header, and how the end of a stream is told apart from a truncated packet.

use super::*;
use crate::metrics::Stats;
use fleetmq_codec::PubResp;
use std::task::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// 5.0 CONNECT of client "c", clean start, keepalive 60.
const CONNECT_V5: &[u8] = &[0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 1, b'c'];
/// 5.0 PUBLISH QoS 0 of "x" to "t".
const PUBLISH_V5: &[u8] = &[0x30, 5, 0, 1, b't', 0, b'x'];
/// 5.0 PUBACK of packet id 1 (success, short form).
const PUBACK_V5: &[u8] = &[0x40, 2, 0, 1];

fn pair(max_packet: usize) -> (ClientIo, DuplexStream) {
    let (ours, client) = tokio::io::duplex(64 * 1024);
    let io = ClientIo::new(ClientStream::Remote(Box::new(ours)), max_packet, ConnGuard::new(Arc::new(Stats::new())));
    (io, client)
}

/// Polls once: what the connection has now, without waiting.
async fn poll(io: &mut ClientIo, mode: ReadMode) -> Poll<IoEvent> {
    poll_fn(|cx| Poll::Ready(io.poll_event(cx, mode))).await
}

async fn connected() -> (ClientIo, DuplexStream) {
    connected_with(1 << 20).await
}

async fn connected_with(max_packet: usize) -> (ClientIo, DuplexStream) {
    let (mut io, mut client) = pair(max_packet);
    client.write_all(CONNECT_V5).await.unwrap();
    let Packet::Connect(connect) = io.read_packet().await.unwrap() else { panic!("CONNECT expected") };
    assert_eq!((connect.protocol, connect.client_id.as_str()), (Protocol::V5, "c"));
    io.set_options(WriterOptions::of(&connect));
    (io, client)
}

#[tokio::test]
async fn a_packet_split_across_reads_is_decoded_once_whole() {
    let (mut io, mut client) = pair(1 << 20);
    let (head, tail) = CONNECT_V5.split_at(5);
    client.write_all(head).await.unwrap();
    assert!(poll(&mut io, ReadMode::All).await.is_pending(), "half a CONNECT is not a packet");
    client.write_all(tail).await.unwrap();
    let Poll::Ready(IoEvent::Packet(Packet::Connect(c))) = poll(&mut io, ReadMode::All).await else {
        panic!("the whole CONNECT decodes")
    };
    assert_eq!(c.client_id, "c");
}

#[tokio::test]
async fn acks_only_takes_acknowledgements_and_holds_the_rest_back_in_order() {
    let (mut io, mut client) = connected().await;
    client.write_all(&[PUBACK_V5, PUBLISH_V5, PUBACK_V5].concat()).await.unwrap();
    let Poll::Ready(IoEvent::Packet(Packet::PubAck(_))) = poll(&mut io, ReadMode::AcksOnly).await else {
        panic!("a PUBACK is taken while paused")
    };
    assert!(poll(&mut io, ReadMode::AcksOnly).await.is_pending(), "the PUBLISH and what follows it wait");
    assert!(poll(&mut io, ReadMode::None).await.is_pending(), "nothing is taken in ReadMode::None");
    let Poll::Ready(IoEvent::Packet(Packet::Publish(p))) = poll(&mut io, ReadMode::All).await else {
        panic!("the held PUBLISH comes first once reading resumes")
    };
    assert_eq!(p.topic, "t");
    let Poll::Ready(IoEvent::Packet(Packet::PubAck(a))) = poll(&mut io, ReadMode::All).await else {
        panic!("then the PUBACK behind it")
    };
    assert_eq!(a.packet_id, 1);
}

#[tokio::test]
async fn an_oversize_packet_is_refused_from_its_fixed_header() {
    let (mut io, mut client) = connected_with(64).await;
    // Remaining length 16383: only the fixed header is sent.
    client.write_all(&[0x30, 0xff, 0x7f]).await.unwrap();
    let Poll::Ready(IoEvent::Closed(Error::Codec(e))) = poll(&mut io, ReadMode::All).await else {
        panic!("refused before the body arrives")
    };
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[tokio::test]
async fn a_clean_end_is_eof_and_an_end_inside_a_packet_is_truncation() {
    let (mut io, client) = connected().await;
    drop(client);
    assert!(matches!(poll(&mut io, ReadMode::All).await, Poll::Ready(IoEvent::Closed(Error::Eof))));
    let (mut io, mut client) = connected().await;
    client.write_all(&PUBLISH_V5[..4]).await.unwrap();
    drop(client);
    assert!(matches!(poll(&mut io, ReadMode::All).await, Poll::Ready(IoEvent::Closed(Error::Truncated))));
}

#[tokio::test]
async fn queued_packets_are_written_and_close_ends_with_the_reason() {
    let (mut io, mut client) = connected().await;
    io.send(Packet::PubAck(PubResp { packet_id: 7, ..Default::default() }));
    assert!(poll(&mut io, ReadMode::All).await.is_pending());
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, [0x40, 2, 0, 7]);
    io.close(Some(ReasonCode::SERVER_SHUTTING_DOWN));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, [0xe0, 1, ReasonCode::SERVER_SHUTTING_DOWN.0], "DISCONNECT 0x8B, then the end of the stream");
}
